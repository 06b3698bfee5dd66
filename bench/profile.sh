#!/usr/bin/env bash
# bench/profile.sh -- where cairnd spends its CPU in one scenario of bench/run.sh.
#
#   bench/profile.sh [S1|S2|S3|S4|S4a|S5|S6|S7] [seconds]     (default S1, 10 s)
#
# Starts build/cairnd on the bench db (bench/run.sh's build-bench/data, made
# by a run of bench/run.sh first) pinned to CPU 0, drives it with wrk pinned to
# CPU 1 as the scenario does, records `perf record -g` (cpu-clock: works
# without a hardware PMU, as in a VM) on the server's PID, and prints the top
# entries by own time and the call graphs of the top cairnd functions. Output
# in build-bench/profile/SCENARIO/. The server is stopped by its PID.
# Knobs: CAIRN_THREADS=1 NICE=-10 CAIRN_CONF_EXTRA='max_header_bytes = 8192;'
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
SC=${1:-S1}
SECS=${2:-10}
NICE=${NICE:--10}
CAIRN_THREADS=${CAIRN_THREADS:-1}
DB=build-bench/data/db.json
[ -s "$DB" ] || { echo "no $DB: run bench/run.sh (or bench/gen_db.py --static build-bench/data/static $DB) first" >&2; exit 1; }
OUT=build-bench/profile/$SC
rm -rf "$OUT"
mkdir -p "$OUT/data"
PORT=${PORT:-18480}
NPOSTS=10000
. "$ROOT/bench/lib.sh" # scenario(), cairnd_conf()
scenario "$SC" "$NPOSTS" || { echo "unknown scenario $SC" >&2; exit 64; }
C=$SC_CONNS
ARGS=("$SC_MODE" /v1 "${SC_ARGS[@]}")
SYNC=none
[ "$SC_PEERS" = cairnd-always ] && SYNC=always
ulimit -n 65536 2>/dev/null || true
CAIRN_CONF_EXTRA=${CAIRN_CONF_EXTRA:-${CONF_EXTRA:-}}
cairnd_conf "$ROOT/$OUT" "$PORT" "$SYNC"
make -s build/cairnd
SPID=
cleanup() {
    if [ -n "$SPID" ] && kill -0 "$SPID" 2>/dev/null; then
        kill -TERM "$SPID" 2>/dev/null || true
        sleep 1
        kill -KILL "$SPID" 2>/dev/null || true
    fi
}
trap cleanup EXIT
nice -n "$NICE" taskset -c 0 build/cairnd -c "$OUT/cairnd.conf" --import "$DB" 2>"$OUT/cairnd.log" &
SPID=$!
for _ in $(seq 1 500); do
    curl -sf -o /dev/null "http://127.0.0.1:$PORT/healthz" && break
    kill -0 "$SPID" || { cat "$OUT/cairnd.log"; exit 1; }
    sleep 0.02
done
timeout $((SECS + 40)) nice -n "$NICE" taskset -c 1 wrk -t1 -c"$C" -d$((SECS + 4))s --timeout 10s \
    -s bench/wrk/bench.lua "http://127.0.0.1:$PORT/" -- "${ARGS[@]}" >"$OUT/wrk.txt" 2>&1 &
WPID=$!
sleep 2
perf record -e cpu-clock -F 4999 -g -p "$SPID" -o "$OUT/perf.data" -- sleep "$SECS" 2>"$OUT/perf-record.log" || true
wait "$WPID" || true
kill -TERM "$SPID"
wait "$SPID" || true
SPID=
grep -E 'Requests/sec|WRKJSON' "$OUT/wrk.txt" || true
perf report -i "$OUT/perf.data" --no-children --sort dso,symbol --stdio -g none --percent-limit 0.7 \
    2>/dev/null | grep -v '^$' | grep -v '^#' | head -40 | tee "$OUT/top.txt"
perf report -i "$OUT/perf.data" --children --sort symbol --stdio -g caller,0.5,callee --percent-limit 3 \
    2>/dev/null >"$OUT/callgraph.txt" || true
echo "call graphs: $OUT/callgraph.txt"
