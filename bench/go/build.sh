#!/bin/sh
# bench/go/build.sh OUTDIR -- builds the Go peers offline, in GOPATH mode,
# against Debian's packaged sources (golang-go, golang-github-gin-gonic-gin-dev
# put them under /usr/share/gocode/src). Debian ships those libraries as plain
# source trees without a module cache, so modules are off: GO111MODULE=off and
# a GOPATH of our own tree (cairnbench -> bench/go) followed by
# /usr/share/gocode. GOPROXY=off and GOFLAGS empty make any attempt to fetch
# fail at once instead of going to the network.
set -eu
out=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
gopath="$out/gopath"
mkdir -p "$gopath/src"
ln -sfn "$here" "$gopath/src/cairnbench"
export GO111MODULE=off GOPROXY=off GOFLAGS= GOPATH="$gopath:/usr/share/gocode" \
    GOCACHE="$out/gocache" CGO_ENABLED=0
go build -o "$out/gin-server" cairnbench/gin
go build -o "$out/nethttp-server" cairnbench/nethttp
