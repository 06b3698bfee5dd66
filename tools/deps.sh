#!/bin/sh
# tools/deps.sh -- installs the Debian 12 packages cairn needs to build and test (run as root).
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    build-essential pkg-config ca-certificates \
    libmicrohttpd-dev libjansson-dev libconfig-dev libsystemd-dev \
    python3 curl wrk strace systemd util-linux iproute2 procps \
    clang-format cppcheck >/dev/null
