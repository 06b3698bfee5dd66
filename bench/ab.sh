#!/usr/bin/env bash
# bench/ab.sh -- two cairnd binaries side by side, interleaved in one session:
# a before/after check of one change, where bench/run.sh compares peers.
#
#   bench/ab.sh OLD_BINARY NEW_BINARY
#
# For each of REPS repetitions, for each scenario of SCENARIOS (bench/lib.sh
# has the table, S1..S7 as in bench/run.sh; S4a with store.sync=always), for
# OLD then NEW: a fresh server on the bench db (bench/gen_db.py, written to
# OUT/db.json once) pinned to CPU 0, a WARMUP-second wrk run, then a
# DURATION-second wrk -t1 run pinned to CPU 1 (bench/wrk/bench.lua). Then,
# unless SKIP_CALLGRIND=1, each binary under callgrind with
# bench/callgrind_client.py (CG_REQUESTS requests per batch).
# The server config is bench/lib.sh's cairnd_conf (threads = CAIRN_THREADS,
# default 1; CAIRN_CONF_EXTRA appended).
# Results: OUT/ab.tsv (one line per run: req/s, latency percentiles, wrk errors,
# the server's CPU in cores and req/s per server core) and
# OUT/callgrind-{old,new}.tsv. Like bench/run.sh it sets this session's
# autogroup nice to NICE for the run.
#
# Knobs: REPS (3) DURATION (5) WARMUP (1) SCENARIOS ("S1 S7") CG_REQUESTS (2000)
#        CAIRN_THREADS (1) NICE (-10) OUT (build-bench/ab-<date>) PORT (18480)
# Building the old binary from a commit, e.g.:
#   git archive BASE | tar -x -C /tmp/base && make -C /tmp/base -j2
set -euo pipefail
[ $# = 2 ] || { sed -n '2,20p' "$0"; exit 64; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OLD=$(realpath "$1")
NEW=$(realpath "$2")
cd "$ROOT"
REPS=${REPS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
SCENARIOS=${SCENARIOS:-"S1 S7"}
CG_REQUESTS=${CG_REQUESTS:-2000}
CAIRN_THREADS=${CAIRN_THREADS:-1}
NICE=${NICE:--10}
PORT=${PORT:-18480}
OUT=${OUT:-$ROOT/build-bench/ab-$(date -u +%Y%m%dT%H%M%SZ)}
PY=$(python3 -c 'import sys; print(sys.executable)')
mkdir -p "$OUT/raw"
WORK=$(mktemp -d /tmp/cairn-ab-XXXXXX)
SPID=
log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
stop_server() {
    if [ -n "$SPID" ] && kill -0 "$SPID" 2>/dev/null; then
        kill -TERM "$SPID" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SPID" 2>/dev/null || true
        wait "$SPID" 2>/dev/null || true
    fi
    SPID=
}
# as bench/run.sh: with autogroup scheduling nice alone does not beat other sessions
AUTOGROUP_OLD=
if [ "$NICE" != 0 ] && [ -w /proc/self/autogroup ] &&
    [ "$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null)" = 1 ]; then
    AUTOGROUP_OLD=$(sed -n 's/.* nice \(-*[0-9]*\).*/\1/p' /proc/self/autogroup)
    echo "$NICE" >/proc/self/autogroup 2>/dev/null || AUTOGROUP_OLD=
fi
trap 'stop_server; rm -rf "$WORK"; [ -z "$AUTOGROUP_OLD" ] || echo "$AUTOGROUP_OLD" >/proc/self/autogroup 2>/dev/null || true' EXIT
trap 'exit 130' INT TERM
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

[ -s "$OUT/db.json" ] || "$PY" bench/gen_db.py "$OUT/db.json" >/dev/null
NPOSTS=$("$PY" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["posts"]))' "$OUT/db.json")

. "$ROOT/bench/lib.sh" # SCENARIO_TABLE, scenario(), cairnd_conf()
conf() { # dir sync
    rm -rf "$1"
    mkdir -p "$1"
    mkdir -m 700 "$1/data"
    cairnd_conf "$1" "$PORT" "$2"
}

start() { # binary sync
    conf "$WORK/srv" "$2"
    nice -n "$NICE" taskset -c 0 "$1" -c "$WORK/srv/cairnd.conf" --import "$OUT/db.json" \
        2>"$WORK/srv/log" &
    SPID=$!
    for _ in $(seq 300); do
        curl -sf -o /dev/null "http://127.0.0.1:$PORT/v1/posts/1" && return 0
        kill -0 "$SPID" 2>/dev/null || break
        sleep 0.1
    done
    log "server did not start:"
    tail -5 "$WORK/srv/log" >&2
    return 1
}

wrk_run() { # raw conns seconds mode args...
    local raw=$1 c=$2 d=$3
    shift 3
    timeout $((d + 30)) nice -n "$NICE" taskset -c 1 wrk -t1 -c"$c" -d"${d}s" --timeout 10s \
        -s bench/wrk/bench.lua "http://127.0.0.1:$PORT/" -- "$@" >"$raw" 2>&1 || true
}

ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
HZ=$(getconf CLK_TCK)
printf 'rep\tscenario\tbinary\tconns\trps\tp50_us\tp99_us\tp999_us\tmax_us\terrors\tserver_cpu\trps_per_core\n' >"$OUT/ab.tsv"
for rep in $(seq "$REPS"); do
    for sc in $SCENARIOS; do
        scenario "$sc" "$NPOSTS" || { log "unknown scenario $sc"; exit 64; }
        c=$SC_CONNS
        args=("$SC_MODE" /v1 "${SC_ARGS[@]}")
        sync=none
        [ "$SC_PEERS" = cairnd-always ] && sync=always
        for which in old new; do
            bin=$OLD
            [ "$which" = new ] && bin=$NEW
            raw="$OUT/raw/$sc-$which-r$rep.txt"
            start "$bin" "$sync" || { printf '%s\t%s\t%s\t%s\tSTARTFAIL\n' "$rep" "$sc" "$which" "$c" >>"$OUT/ab.tsv"; continue; }
            wrk_run "$raw.warmup" "$c" "$WARMUP" "${args[@]}"
            tk0=$(ticks "$SPID")
            wrk_run "$raw" "$c" "$DURATION" "${args[@]}"
            tk1=$(ticks "$SPID")
            stop_server
            "$PY" - "$raw" "$rep" "$sc" "$which" "$c" "$((tk1 - tk0))" "$HZ" >>"$OUT/ab.tsv" <<'EOF'
import json, sys
raw, rep, sc, which, c, ticks, hz = sys.argv[1:]
line = [l for l in open(raw) if l.startswith("WRKJSON ")]
if not line:
    print("\t".join([rep, sc, which, c, "NORESULT"]))
    sys.exit(0)
w = json.loads(line[-1][8:])
err = w["connect"] + w["read"] + w["write"] + w["status"] + w["timeout"]
secs = w["duration_us"] / 1e6
rps = w["requests"] / secs
share = int(ticks) / int(hz) / secs  # the server's CPU over the run, in cores
print("\t".join([rep, sc, which, c, "%.0f" % rps, str(w["p50_us"]), str(w["p99_us"]),
                 str(w["p999_us"]), str(w["max_us"]), str(err), "%.2f" % share,
                 "%.0f" % (rps / share) if share > 0 else "-"]))
EOF
            tail -1 "$OUT/ab.tsv" >&2
        done
    done
done

[ -n "${SKIP_CALLGRIND:-}" ] && exit 0
for which in old new; do
    bin=$OLD
    [ "$which" = new ] && bin=$NEW
    conf "$WORK/cg" none
    log "callgrind: $which"
    valgrind --tool=callgrind --compress-strings=no --compress-pos=no \
        --callgrind-out-file="$WORK/cg/cg.out" \
        "$bin" -c "$WORK/cg/cairnd.conf" --import "$OUT/db.json" >/dev/null 2>"$WORK/cg/log" &
    SPID=$!
    timeout 600 "$PY" bench/callgrind_client.py --port "$PORT" --pid "$SPID" \
        --requests "$CG_REQUESTS" --nids "$NPOSTS" --dir "$WORK/cg" \
        --out "$OUT/callgrind-$which.tsv" || log "callgrind client failed ($which)"
    stop_server
    cat "$OUT/callgrind-$which.tsv" >&2 || true
done
