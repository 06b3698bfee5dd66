#!/usr/bin/env bash
# bench/modes/sweep.sh -- libmicrohttpd 0.9.75 threading-mode sweep for cairnd.
#
# Builds cairnd in the three modes http.c can be compiled in (CAIRN_MHD_MODE:
# 0 = pool + poll, the shipped default; 1 = pool + epoll; 2 = thread per
# connection + poll), then
#   1. throughput: wrk -t1 keep-alive against GET /healthz, server pinned to
#      CPU 0 and wrk to CPU 1, at each connection count, ROUNDS rounds
#      interleaved across servers (a fresh server per measurement);
#   2. probes (bench/modes/probe.py, FAULTS builds): (a) reaping of clients
#      that abort mid-upload, (b) whether waiting requests stall others.
# Results go to $OUT (raw wrk output, results.tsv, probes.json, summary.md).
#
# Usage: bench/modes/sweep.sh            (or: make bench-modes)
# Knobs (environment): ROUNDS=3 DURATION=5 WARMUP=1 CONNS="16 64 ..."
#   SERVERS="poll-t1 poll-t2 epoll-t1 epoll-t2 tpc" NICE=-10 SKIP_BUILD=1
#   SKIP_THROUGHPUT=1 SKIP_PROBES=1 OUT=dir
# NICE: the machine may be shared; server and wrk run at this nice value so
# that other nice-0 work steals less of their cores (0 disables).
#
# Every server is started here and stopped by its PID; every loop is bounded.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
CONNS=${CONNS:-"16 64 127 128 129 256 300 512 1024"}
SERVERS=${SERVERS:-"poll-t1 poll-t2 epoll-t1 epoll-t2 tpc"}
NICE=${NICE:--10}
OUT=${OUT:-build-bench-results/$(date -u +%Y%m%dT%H%M%SZ)}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}

mkdir -p "$OUT/raw"
WORK=$(mktemp -d "$OUT/work.XXXXXX")   # the servers' configs and logs
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# ---- builds --------------------------------------------------------------
# CFLAGS goes through the environment, not the make command line: Makefile
# appends its own flags (-std=c11, -Werror, -DCAIRN_FAULTS ...) to an
# environment CFLAGS, while a command-line CFLAGS would replace them all.
mode_number() {
    case "$1" in poll) echo 0 ;; epoll) echo 1 ;; tpc) echo 2 ;; *) return 1 ;; esac
}
build_all() {
    local m
    for m in poll epoll tpc; do
        log "building build-bench-$m and build-bench-$m-faults"
        (unset MAKEFLAGS MFLAGS MAKELEVEL
         CFLAGS="-O2 -g -DCAIRN_MHD_MODE=$(mode_number $m)" make -s -j2 BUILD="build-bench-$m"
         CFLAGS="-O2 -g -DCAIRN_MHD_MODE=$(mode_number $m)" make -s -j2 FAULTS=1 \
             BUILD="build-bench-$m-faults")
    done
}
[ -n "${SKIP_BUILD:-}" ] || build_all

# ---- one server ----------------------------------------------------------
server_mode() { echo "${1%%-*}"; }                   # poll-t2 -> poll
server_threads() { case "$1" in *-t*) echo "${1##*-t}" ;; *) echo 1 ;; esac; }

start_server() { # name -> sets SERVER_PID, PORT
    local name=$1 mode threads dir
    mode=$(server_mode "$name")
    threads=$(server_threads "$name")
    dir="$WORK/$name"
    rm -rf "$dir"
    mkdir -p "$dir/data"
    cat >"$dir/cairnd.conf" <<EOF
listen_address = "127.0.0.1";
listen_port = 0;
threads = $threads;
max_connections = 4096;
connection_timeout = 30;
log_level = "notice";
shutdown_timeout = 5;
store = { data_dir = "$dir/data"; sync = "none"; };
EOF
    nice -n "$NICE" taskset -c "$SERVER_CPU" "build-bench-$mode/cairnd" -c "$dir/cairnd.conf" \
        >"$dir/stderr.log" 2>&1 &
    SERVER_PID=$!
    PORT=
    local i
    for i in $(seq 1 200); do
        # the log may not exist yet: the background job opens it after the fork
        PORT=$(sed -n 's/.*listening on [0-9.]*:\([0-9][0-9]*\).*/\1/p' "$dir/stderr.log" \
            2>/dev/null | head -1 || true)
        [ -n "$PORT" ] && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.05
    done
    log "server $name did not start:"; cat "$dir/stderr.log" >&2
    return 1
}

stop_server() { # -> exit status of the server (SIGTERM, then SIGKILL after 10 s)
    local i rc=0
    [ -n "$SERVER_PID" ] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for i in $(seq 1 100); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        log "server $SERVER_PID ignored SIGTERM for 10 s: SIGKILL"
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    wait "$SERVER_PID" || rc=$?
    SERVER_PID=
    return $rc
}

proc_cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
cpu_busy() { # cpuN -> "busy total" jiffies
    awk -v c="$1" '$1 == c {b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6}' /proc/stat
}
pct() { # busy0 total0 busy1 total1
    awk -v b0="$1" -v t0="$2" -v b1="$3" -v t1="$4" \
        'BEGIN { d = t1 - t0; printf "%.0f", (d > 0 ? 100 * (b1 - b0) / d : 0) }'
}

# ---- 1. throughput -------------------------------------------------------
throughput() {
    local tsv="$OUT/results.tsv" hz round c name raw
    hz=$(getconf CLK_TCK)
    printf 'round\tserver\tconns\trps\tp99_ms\terrors\ttimeouts\tnon2xx\tserver_cpu\tcpu0\tcpu1\tload1\tserver_rc\n' >"$tsv"
    for round in $(seq 1 "$ROUNDS"); do
        for c in $CONNS; do
            for name in $SERVERS; do
                raw="$OUT/raw/r$round-$name-c$c.txt"
                start_server "$name"
                local url="http://127.0.0.1:$PORT/healthz"
                timeout $((WARMUP + 20)) nice -n "$NICE" taskset -c "$CLIENT_CPU" \
                    wrk -t1 -c"$c" -d"${WARMUP}s" "$url" >/dev/null 2>&1 || true
                local tk0 tk1 sb0 st0 sb1 st1 cb0 ct0 cb1 ct1 start_ns end_ns
                tk0=$(proc_cpu_ticks "$SERVER_PID")
                read -r sb0 st0 < <(cpu_busy cpu"$SERVER_CPU")
                read -r cb0 ct0 < <(cpu_busy cpu"$CLIENT_CPU")
                start_ns=$(date +%s%N)
                timeout $((DURATION + 30)) nice -n "$NICE" taskset -c "$CLIENT_CPU" \
                    wrk -t1 -c"$c" -d"${DURATION}s" --latency "$url" >"$raw" 2>&1 || true
                end_ns=$(date +%s%N)
                tk1=$(proc_cpu_ticks "$SERVER_PID")
                read -r sb1 st1 < <(cpu_busy cpu"$SERVER_CPU")
                read -r cb1 ct1 < <(cpu_busy cpu"$CLIENT_CPU")
                local load1 srv_cpu cpu0 cpu1 rc=0
                load1=$(cut -d' ' -f1 /proc/loadavg)
                srv_cpu=$(awk -v t="$((tk1 - tk0))" -v hz="$hz" -v ns="$((end_ns - start_ns))" \
                    'BEGIN { printf "%.0f", 100 * t / hz / (ns / 1e9) }')
                cpu0=$(pct "$sb0" "$st0" "$sb1" "$st1")
                cpu1=$(pct "$cb0" "$ct0" "$cb1" "$ct1")
                stop_server || rc=$?
                python3 bench/modes/summarize.py --parse "$raw" |
                    awk -v r="$round" -v n="$name" -v c="$c" -v sc="$srv_cpu" -v c0="$cpu0" \
                        -v c1="$cpu1" -v l="$load1" -v rc="$rc" -F'\t' -v OFS='\t' \
                        '{print r, n, c, $1, $2, $3, $4, $5, sc, c0, c1, l, rc}' >>"$tsv"
                log "round $round $name c=$c: $(tail -1 "$tsv" | cut -f4-8) cpu=$srv_cpu% rc=$rc"
            done
        done
    done
}

# ---- 2. probes -----------------------------------------------------------
probes() {
    local name mode threads
    : >"$OUT/probes.jsonl"
    for name in $SERVERS; do
        mode=$(server_mode "$name")
        threads=$(server_threads "$name")
        log "probes: $name"
        timeout 120 python3 bench/modes/probe.py --name "$name" --threads "$threads" \
            --binary "build-bench-$mode-faults/cairnd" >>"$OUT/probes.jsonl" ||
            log "probe $name failed (status $?)"
    done
}

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%SZ')"
    echo "host: $(uname -r), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
    echo "libmicrohttpd: $(dpkg-query -W -f='${Version}' libmicrohttpd12 2>/dev/null || echo ?)"
    echo "wrk: $(wrk -v 2>&1 | head -1)"
    echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo ?)"
    echo "command: ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP NICE=$NICE CONNS=\"$CONNS\" SERVERS=\"$SERVERS\" bench/modes/sweep.sh"
    echo "load before: $(cat /proc/loadavg)"
} >"$OUT/env.txt"
cat "$OUT/env.txt" >&2

[ -n "${SKIP_THROUGHPUT:-}" ] || throughput
[ -n "${SKIP_PROBES:-}" ] || probes
python3 bench/modes/summarize.py --out "$OUT" >"$OUT/summary.md"
cat "$OUT/summary.md"
log "results in $OUT"
