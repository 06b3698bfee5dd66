#!/bin/sh
# bench/deps.sh -- installs what bench/run.sh needs on Debian 12 (as root), on
# top of tools/deps.sh: the peers (nginx, Go + gin from Debian, node/npm for
# json-server), valgrind (instructions per request) and perf (profiles).
# json-server itself comes from npm into bench/jsonserver/node_modules
# (bench/run.sh runs `npm ci` there when it is missing).
set -eu
export DEBIAN_FRONTEND=noninteractive
pkgs="nginx-light golang-go golang-github-gin-gonic-gin-dev valgrind linux-perf wrk curl python3 procps util-linux"
command -v node >/dev/null 2>&1 || pkgs="$pkgs nodejs"
command -v npm >/dev/null 2>&1 || pkgs="$pkgs npm"
missing=
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
