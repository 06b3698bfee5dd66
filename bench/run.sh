#!/usr/bin/env bash
# bench/run.sh -- cairnd side by side with nginx, gin, Go net/http and
# json-server 0.17 (issue 5). `make bench` runs it; `make bench-quick` runs
# `bench/run.sh --quick` (under 5 minutes).
#
#   bench/run.sh [--quick] [--no-doc]
#
# Phases (each can be skipped: SKIP_MATRIX=1 SKIP_SCALE=1 SKIP_CALLGRIND=1
# SKIP_DURABILITY=1):
#   1. matrix    scenarios S1..S7 x peers, REPS repetitions interleaved: for
#                each repetition, for each scenario, for each peer (the peer
#                order rotates between repetitions): start the server pinned to
#                CPU $SERVER_CPU, warm up, run wrk -t1 pinned to CPU $CLIENT_CPU
#                for DURATION seconds, read the server's CPU time
#                (/proc/PID/stat utime+stime, process tree) and RSS, stop it.
#                A fresh server per measurement: S4/S5 grow the data.
#   2. scale     cairnd with 1,000 / 100,000 / 1,000,000 posts: import time,
#                RSS idle and under load, GET-by-id p50 at 64 and at 1 connection.
#   3. callgrind instructions per request for fixed batches of S1 and S2
#                requests (bench/callgrind_client.py), machine-noise free.
#   4. durability  durable writes/s with store.sync = always at 1, 16 and 64
#                concurrent writers, fsyncs/s and writes per fsync, beside the
#                raw fdatasync rate of the same file system, and sync = none at
#                64 (tests/integration/durability_bench.py, DURABILITY_SECONDS
#                per run; not pinned: the disk is the limit, not a core).
#   5. report    bench/report.py: medians and ratios as markdown in
#                $OUT/summary.md and, unless --no-doc, in docs/PERFORMANCE.md
#                (between the markers of the full or the quick section).
#
# Knobs (environment): REPS DURATION WARMUP SCENARIOS PEERS NICE CAIRN_THREADS
#   SCALE_SIZES SCALE_REPS CG_REQUESTS DURABILITY_SECONDS SERVER_CPU CLIENT_CPU OUT
#   CAIRN_CONF_EXTRA (lines appended to cairnd's config, e.g. 'max_header_bytes = 8192;')
# Every server is started here and stopped by its PID (trap on exit); every
# load loop is bounded by wrk's -d and by `timeout`; everything is on 127.0.0.1.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
T_START=$(date +%s)

MODE=full
WRITE_DOC=1
ARGS="$*"
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) MODE=quick ;;
    --no-doc) WRITE_DOC=0 ;;
    -h | --help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "bench/run.sh: unknown argument $1" >&2; exit 64 ;;
    esac
    shift
done

ALL_PEERS="cairnd nginx-mem nginx-file gin nethttp jsonserver"
if [ "$MODE" = quick ]; then
    REPS=${REPS:-1}
    DURATION=${DURATION:-3}
    WARMUP=${WARMUP:-1}
    SCALE_SIZES=${SCALE_SIZES:-"1000 100000"}
    SCALE_REPS=${SCALE_REPS:-1}
    SCALE_DURATION=${SCALE_DURATION:-3}
    CG_REQUESTS=${CG_REQUESTS:-1000}
    DURABILITY_SECONDS=${DURABILITY_SECONDS:-2}
else
    REPS=${REPS:-3}
    DURATION=${DURATION:-10}
    WARMUP=${WARMUP:-2}
    SCALE_SIZES=${SCALE_SIZES:-"1000 100000 1000000"}
    SCALE_REPS=${SCALE_REPS:-3}
    SCALE_DURATION=${SCALE_DURATION:-5}
    CG_REQUESTS=${CG_REQUESTS:-2000}
    DURABILITY_SECONDS=${DURABILITY_SECONDS:-5}
fi
# quick: Go net/http has no target of its own and is left out
[ "$MODE" = quick ] && PEERS=${PEERS:-"cairnd nginx-mem nginx-file gin jsonserver"}
PEERS=${PEERS:-$ALL_PEERS}
SCENARIOS=${SCENARIOS:-"S1 S2 S3 S4 S4a S5 S6 S7"}
NICE=${NICE:--10}
# One worker thread: the server has one core (CPU 0). threads=2 on one core
# only adds a second poll loop competing for it (see bench/modes/).
CAIRN_THREADS=${CAIRN_THREADS:-1}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
BUILD_DIR=$ROOT/build-bench
OUT=${OUT:-$BUILD_DIR/results/$(date -u +%Y%m%dT%H%M%SZ)-$MODE}
PORT_BASE=${PORT_BASE:-18400}

# the scenario table (SCENARIO_TABLE, scenario()) and cairnd_conf()
. "$ROOT/bench/lib.sh"
WRITERS="cairnd gin nethttp jsonserver"

mkdir -p "$OUT/raw" "$BUILD_DIR"
# the interpreter itself, not a version manager's shim (one shim call costs ~0.1 s)
PY=$(python3 -c 'import sys; print(sys.executable)')
WORK=$(mktemp -d /tmp/cairn-bench-XXXXXX)
SPID=
log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

tree_pids() { # pid -> the pid and its descendants
    local p c
    for p in "$@"; do
        echo "$p"
        for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do tree_pids "$c"; done
    done
}

kill_tree() { # pid signal
    local pids p
    pids=$(tree_pids "$1")
    for p in $pids; do kill "-$2" "$p" 2>/dev/null || true; done
}

# With autogroup scheduling (kernel.sched_autogroup_enabled=1) nice only
# ranks processes within one session: every other session still gets an
# equal share of CPU 0. Give this session's group the same nice for the run
# and put the old value back at the end.
AUTOGROUP_OLD=
if [ "$NICE" != 0 ] && [ -w /proc/self/autogroup ] &&
    [ "$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null)" = 1 ]; then
    AUTOGROUP_OLD=$(sed -n 's/.* nice \(-*[0-9]*\).*/\1/p' /proc/self/autogroup)
    echo "$NICE" >/proc/self/autogroup 2>/dev/null || AUTOGROUP_OLD=
fi
cleanup() {
    if [ -n "$SPID" ] && kill -0 "$SPID" 2>/dev/null; then
        kill_tree "$SPID" KILL
        wait "$SPID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
    [ -z "$AUTOGROUP_OLD" ] || echo "$AUTOGROUP_OLD" >/proc/self/autogroup 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

# ---- 0. prepare ----------------------------------------------------------------
prepare() {
    local t missing=
    for t in nginx go wrk valgrind node npm curl taskset; do
        command -v "$t" >/dev/null 2>&1 || missing="$missing $t"
    done
    if [ -n "$missing" ]; then
        log "missing:$missing: bench/deps.sh (Debian packages)"
        bench/deps.sh
    fi
    log "building cairnd (make)"
    (unset MAKEFLAGS MFLAGS MAKELEVEL; make -s -j2 build/cairnd)
    if [ ! -x "$BUILD_DIR/peers/gin-server" ] || [ ! -x "$BUILD_DIR/peers/nethttp-server" ] ||
        [ -n "$(find bench/go -name '*.go' -newer "$BUILD_DIR/peers/gin-server" 2>/dev/null)" ]; then
        log "building the Go peers (GOPATH mode against /usr/share/gocode, offline)"
        mkdir -p "$BUILD_DIR/peers"
        bench/go/build.sh "$BUILD_DIR/peers"
    fi
    if [ ! -x bench/jsonserver/node_modules/.bin/json-server ]; then
        log "installing json-server 0.17.4 into bench/jsonserver (npm ci)"
        (cd bench/jsonserver && timeout 600 npm ci --no-audit --no-fund --loglevel=error)
    fi
    mkdir -p "$BUILD_DIR/data"
    if [ ! -s "$BUILD_DIR/data/db.json" ] || [ bench/gen_db.py -nt "$BUILD_DIR/data/db.json" ]; then
        rm -rf "$BUILD_DIR/data/static"
        "$PY" bench/gen_db.py --static "$BUILD_DIR/data/static" "$BUILD_DIR/data/db.json"
    fi
    DB=$BUILD_DIR/data/db.json
    NPOSTS=$("$PY" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["posts"]))' "$DB")
}

# ---- one server ----------------------------------------------------------------
peer_port() { # name -> port
    local i=0 p
    for p in cairnd cairnd-always nginx-mem nginx-file gin nethttp jsonserver cairnd-scale; do
        [ "$p" = "$1" ] && { echo $((PORT_BASE + i)); return; }
        i=$((i + 1))
    done
    return 1
}
peer_prefix() { [ "$1" = jsonserver ] && echo "" || echo "/v1"; }

# start_peer NAME [DB] -> SPID, PORT, PREFIX; waits until it answers
start_peer() {
    local name=$1 db=${2:-$DB} dir="$WORK/$1" ready_path cmd=()
    rm -rf "$dir"
    mkdir -p "$dir/tmp"
    mkdir -m 700 "$dir/data"
    PORT=$(peer_port "$name")
    PREFIX=$(peer_prefix "$name")
    ready_path=$PREFIX/posts/1
    case "$name" in
    cairnd | cairnd-always | cairnd-scale)
        cairnd_conf "$dir" "$PORT" "$([ "$name" = cairnd-always ] && echo always || echo none)"
        cmd=(build/cairnd -c "$dir/cairnd.conf")
        [ "$db" = none ] && ready_path=/healthz || cmd+=(--import "$db")
        ;;
    nginx-mem | nginx-file)
        # generated once per run: the memory variant holds 10,000 map entries
        if [ ! -s "$WORK/conf/$name.conf" ]; then
            mkdir -p "$WORK/conf"
            "$PY" bench/nginx_conf.py --mode "${name#nginx-}" --port "$PORT" \
                --static "$BUILD_DIR/data/static" --work "$dir" >"$WORK/conf/$name.conf"
        fi
        cmd=(nginx -c "$WORK/conf/$name.conf" -e "$dir/error.log")
        ;;
    gin) cmd=("$BUILD_DIR/peers/gin-server" -addr "127.0.0.1:$PORT" -db "$db") ;;
    nethttp) cmd=("$BUILD_DIR/peers/nethttp-server" -addr "127.0.0.1:$PORT" -db "$db") ;;
    jsonserver)
        # json-server rewrites its db.json on every write: give it a copy
        cp "$db" "$dir/db.json"
        cmd=(node bench/jsonserver/node_modules/json-server/lib/cli/bin.js --quiet
            --host 127.0.0.1 --port "$PORT" "$dir/db.json")
        ;;
    *) log "unknown peer $name"; return 1 ;;
    esac
    T_LAUNCH=$(date +%s%N)
    nice -n "$NICE" taskset -c "$SERVER_CPU" "${cmd[@]}" >"$dir/stdout.log" 2>"$dir/stderr.log" &
    SPID=$!
    local i code
    for i in $(seq 1 "${READY_TRIES:-600}"); do
        code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$PORT$ready_path" || true)
        if [ "$code" = 200 ]; then
            T_READY=$(date +%s%N)
            return 0
        fi
        kill -0 "$SPID" 2>/dev/null || break
        sleep 0.02
    done
    log "$name did not start (last status $code):"
    tail -5 "$dir/stderr.log" "$dir/stdout.log" >&2 || true
    stop_peer || true
    return 1
}

stop_peer() { # SIGTERM, SIGKILL after 10 s; -> the server's exit status
    local i rc=0
    [ -n "$SPID" ] || return 0
    local kids
    kids=$(tree_pids "$SPID" | tail -n +2)
    kill -TERM "$SPID" 2>/dev/null || true
    for i in $(seq 1 100); do
        kill -0 "$SPID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$SPID" 2>/dev/null; then
        log "server $SPID ignored SIGTERM for 10 s: SIGKILL"
        kill_tree "$SPID" KILL
    fi
    wait "$SPID" 2>/dev/null || rc=$?
    for i in $kids; do kill -KILL "$i" 2>/dev/null || true; done
    SPID=
    return $rc
}

tree_ticks() { # pid -> utime+stime of the process tree, in clock ticks
    local p t=0 v
    for p in $(tree_pids "$1"); do
        v=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)
        t=$((t + v))
    done
    echo $t
}
tree_rss() { # pid -> VmRSS of the process tree, kB
    local p t=0 v
    for p in $(tree_pids "$1"); do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        t=$((t + ${v:-0}))
    done
    echo $t
}
tree_threads() {
    local p t=0 v
    for p in $(tree_pids "$1"); do
        v=$(awk '/^Threads:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        t=$((t + ${v:-0}))
    done
    echo $t
}
cpu_busy() { # cpuN -> "busy total" jiffies
    awk -v c="$1" '$1 == c {b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6}' /proc/stat
}
HZ=$(getconf CLK_TCK)

# run_wrk RAW CONNS SECONDS MODE ARGS... -> the WRKJSON line in RAW, wrk's CPU in RAW.time
run_wrk() {
    local raw=$1 c=$2 d=$3
    shift 3
    local TIMEFORMAT='%U %S %R'
    { time timeout $((d + 30)) nice -n "$NICE" taskset -c "$CLIENT_CPU" \
        wrk -t1 -c"$c" -d"${d}s" --timeout 10s -s bench/wrk/bench.lua \
        "http://127.0.0.1:$PORT/" -- "$@" >"$raw" 2>&1 || true; } 2>"$raw.time"
}

# measure NAME SCENARIO REP CONNS MODE ARGS... -> one line of results.tsv
measure() {
    local name=$1 sc=$2 rep=$3 c=$4
    shift 4
    local raw="$OUT/raw/$sc-$name-r$rep.txt"
    if ! start_peer "$name"; then
        printf '%s\t%s\t%s\t%s\tSTARTFAIL\n' "$rep" "$sc" "$name" "$c" >>"$OUT/results.tsv"
        return 0
    fi
    local rss_idle
    rss_idle=$(tree_rss "$SPID")
    run_wrk "$raw.warmup" "$c" "$WARMUP" "$@"
    local tk0 tk1 s0b s0t s1b s1t c0b c0t c1b c1t t0 t1 rss thr rc=0
    tk0=$(tree_ticks "$SPID")
    read -r s0b s0t < <(cpu_busy "cpu$SERVER_CPU")
    read -r c0b c0t < <(cpu_busy "cpu$CLIENT_CPU")
    t0=$(date +%s%N)
    run_wrk "$raw" "$c" "$DURATION" "$@"
    t1=$(date +%s%N)
    tk1=$(tree_ticks "$SPID")
    read -r s1b s1t < <(cpu_busy "cpu$SERVER_CPU")
    read -r c1b c1t < <(cpu_busy "cpu$CLIENT_CPU")
    rss=$(tree_rss "$SPID")
    thr=$(tree_threads "$SPID")
    stop_peer || rc=$?
    local wall=$((t1 - t0))
    "$PY" - "$raw" "$rep" "$sc" "$name" "$c" "$((tk1 - tk0))" "$HZ" "$wall" "$rss" "$rss_idle" \
        "$thr" "$((s1b - s0b))" "$((s1t - s0t))" "$((c1b - c0b))" "$((c1t - c0t))" "$rc" \
        "$(cut -d' ' -f1 /proc/loadavg)" >>"$OUT/results.tsv" <<'EOF'
import json, sys
raw, rep, sc, name, c, ticks, hz, wall, rss, rss_idle, thr, sb, st, cb, ct, rc, load = sys.argv[1:]
w = None
for line in open(raw, errors="replace"):
    if line.startswith("WRKJSON "):
        w = json.loads(line[8:])
if w is None:
    print("\t".join([rep, sc, name, c, "NORESULT"]))
    sys.exit(0)
try:
    u, s, r = (float(x) for x in open(raw + ".time").read().split()[-3:])
    wrk_cpu = 100 * (u + s) / r
except Exception:
    wrk_cpu = float("nan")
secs = w["duration_us"] / 1e6
wall_s = int(wall) / 1e9
srv = 100 * int(ticks) / int(hz) / wall_s
cpu0 = 100 * int(sb) / int(st) if int(st) else 0
cpu1 = 100 * int(cb) / int(ct) if int(ct) else 0
sock = w["connect"] + w["read"] + w["write"] + w["timeout"]
print("\t".join(str(x) for x in [
    rep, sc, name, c, "%.1f" % (w["requests"] / secs), w["p50_us"], w["p99_us"], w["requests"],
    w["status"], sock, "%.1f" % srv, rss, rss_idle, thr, "%.1f" % wrk_cpu, "%.1f" % cpu0,
    "%.1f" % cpu1, rc, load, w["bytes"]]))
EOF
    log "r$rep $sc $name c=$c: $(tail -1 "$OUT/results.tsv" | cut -f5-12)"
}

# ---- 1. matrix -----------------------------------------------------------------
matrix() {
    printf 'rep\tscenario\tpeer\tconns\trps\tp50_us\tp99_us\trequests\tnon2xx\tsockerr\tserver_cpu\trss_kb\trss_idle_kb\tthreads\twrk_cpu\tcpu0\tcpu1\tserver_rc\tload1\tbytes\n' \
        >"$OUT/results.tsv"
    : >"$OUT/scenarios.tsv"
    local row id c wmode wargs peers enabled what
    for row in "${SCENARIO_TABLE[@]}"; do
        IFS='|' read -r id c wmode wargs peers enabled what <<<"$row"
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$id" "$c" "$wmode" "$wargs" "$enabled" "$what" >>"$OUT/scenarios.tsv"
    done
    local rep sc list p k n
    for rep in $(seq 1 "$REPS"); do
        for sc in $SCENARIOS; do
            scenario "$sc" "$NPOSTS" || { log "no scenario $sc"; continue; }
            [ "$SC_ENABLED" = yes ] || { [ "$rep" = 1 ] && log "$sc skipped: $SC_WHAT"; continue; }
            case "$SC_PEERS" in
            all) list=$PEERS ;;
            writers) list=$(for p in $PEERS; do case " $WRITERS " in *" $p "*) echo "$p" ;; esac; done) ;;
            *) list=$SC_PEERS ;;
            esac
            # rotate the order by repetition so no peer always runs first
            list=($list)
            n=${#list[@]}
            for k in $(seq 0 $((n - 1))); do
                p=${list[$(((k + rep - 1) % n))]}
                measure "$p" "$sc" "$rep" "$SC_CONNS" "$SC_MODE" "$(peer_prefix "$p")" "${SC_ARGS[@]}"
            done
        done
    done
}

# ---- 2. scale ------------------------------------------------------------------
scale() {
    printf 'rep\tdocs\tdb_bytes\tdoc_bytes\tload_ms\trss_idle_kb\trss_load_kb\trps\tp50_us\tp99_us\tp50_c1_us\tp99_c1_us\terrors\tserver_cpu\trps_paced\tp50_paced_us\tp99_paced_us\n' \
        >"$OUT/scale.tsv"
    local n rep db meta
    for rep in $(seq 1 "$SCALE_REPS"); do
        for n in 0 $SCALE_SIZES; do
            if [ "$n" = 0 ]; then
                db=none
                meta="0 0"
            else
                db=$BUILD_DIR/data/posts-$n.json
                if [ ! -s "$db" ] || [ bench/gen_db.py -nt "$db" ]; then
                    "$PY" bench/gen_db.py --only-posts --posts "$n" "$db"
                fi
                meta="$(stat -c %s "$db") $(cat "$db.meta")"
            fi
            READY_TRIES=3000 start_peer cairnd-scale "$db" || continue
            local load_ms=$(((T_READY - T_LAUNCH) / 1000000))
            sleep 1
            local rss_idle rss_load
            rss_idle=$(tree_rss "$SPID")
            local r64=- r1=- rp=- cpu64=- tk0 tk1 t0 t1
            if [ "$n" != 0 ]; then
                r64="$OUT/raw/scale-$n-c64-r$rep.txt"
                r1="$OUT/raw/scale-$n-c1-r$rep.txt"
                rp="$OUT/raw/scale-$n-paced-r$rep.txt"
                run_wrk "$r64.warmup" 64 1 get /v1 "$n"
                tk0=$(tree_ticks "$SPID")
                t0=$(date +%s%N)
                run_wrk "$r64" 64 "$SCALE_DURATION" get /v1 "$n"
                tk1=$(tree_ticks "$SPID")
                t1=$(date +%s%N)
                cpu64=$(awk -v t="$((tk1 - tk0))" -v hz="$HZ" -v ns="$((t1 - t0))" \
                    'BEGIN { printf "%.1f", 100 * t / hz / (ns / 1e9) }')
                run_wrk "$r1" 1 "$SCALE_DURATION" get /v1 "$n"
                # 64 connections, each pausing 1 ms after every reply: about half of what
                # either side can do, so the queue is neither's (the saturated run above is
                # a closed loop: its p50 says which side the 64 requests wait on)
                run_wrk "$rp" 64 "$SCALE_DURATION" paced /v1 "$n" 1
            fi
            rss_load=$(tree_rss "$SPID")
            stop_peer || true
            "$PY" - "$rep" "$n" $meta "$load_ms" "$rss_idle" "$rss_load" "$r64" "$r1" \
                "$T_LAUNCH" "$WORK/cairnd-scale/stderr.log" "$cpu64" "$rp" >>"$OUT/scale.tsv" <<'EOF'
import datetime, json, re, sys
rep, n, dbb, docb, load_ms, ri, rl, r64, r1, t_launch, logf, cpu64, rp = sys.argv[1:]
# launch -> cairnd's own "listening" log line (ms resolution), which leaves out
# the readiness poll's granularity; the poll's figure stays as a fallback.
for line in open(logf, errors="replace"):
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z .*listening on", line)
    if m:
        t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(
            tzinfo=datetime.timezone.utc).timestamp()
        load_ms = "%d" % max(0, round(t * 1000 - int(t_launch) / 1e6))
        break
def w(path):
    if path == "-":
        return None
    for line in open(path, errors="replace"):
        if line.startswith("WRKJSON "):
            return json.loads(line[8:])
a, b, c = w(r64), w(r1), w(rp)
def g(x, k):
    return "-" if x is None else str(x[k])
def rate(x):
    return "-" if x is None else "%.1f" % (x["requests"] / (x["duration_us"] / 1e6))
rps = rate(a)
err = 0
for x in (a, b, c):
    if x:
        err += x["connect"] + x["read"] + x["write"] + x["timeout"] + x["status"]
print("\t".join([rep, n, dbb, docb, load_ms, ri, rl, rps, g(a, "p50_us"), g(a, "p99_us"),
                 g(b, "p50_us"), g(b, "p99_us"), str(err), cpu64, rate(c), g(c, "p50_us"),
                 g(c, "p99_us")]))
EOF
            log "scale r$rep n=$n: $(tail -1 "$OUT/scale.tsv" | cut -f5-12)"
        done
    done
}

# ---- 3. callgrind --------------------------------------------------------------
callgrind() {
    local dir="$WORK/callgrind" port
    port=$(peer_port cairnd)
    rm -rf "$dir"
    mkdir -p "$dir"
    mkdir -m 700 "$dir/data"
    cairnd_conf "$dir" "$port" none
    log "callgrind: cairnd under valgrind, $CG_REQUESTS requests per batch"
    T_LAUNCH=$(date +%s%N)
    valgrind --tool=callgrind --compress-strings=no --compress-pos=no --callgrind-out-file="$dir/cg.out" \
        build/cairnd -c "$dir/cairnd.conf" --import "$DB" >"$dir/stdout.log" 2>"$dir/stderr.log" &
    SPID=$!
    local rc=0
    timeout 600 "$PY" bench/callgrind_client.py --port "$port" --pid "$SPID" \
        --requests "$CG_REQUESTS" --nids "$NPOSTS" --dir "$dir" --out "$OUT/callgrind.tsv" || rc=$?
    stop_peer || true
    if [ "$rc" != 0 ]; then
        log "callgrind client failed ($rc)"
        tail -5 "$dir/stderr.log" >&2 || true
        return 0
    fi
    cp "$dir"/cg.out* "$OUT/raw/" 2>/dev/null || true
    "$PY" bench/callgrind_client.py --annotate "$OUT/raw" >"$OUT/callgrind_top.txt" || true
    cat "$OUT/callgrind.tsv" >&2
}

# ---- 4. durability --------------------------------------------------------------
durability() {
    log "durability: group commit at 1/16/64 writers, ${DURABILITY_SECONDS}s each"
    if ! CAIRND=build/cairnd TMPDIR="$WORK" timeout 600 "$PY" tests/integration/durability_bench.py \
        "$DURABILITY_SECONDS" >"$OUT/durability.md" 2>"$OUT/durability.err"; then
        log "durability bench failed"
        tail -5 "$OUT/durability.err" >&2 || true
        rm -f "$OUT/durability.md"
        return 0
    fi
    cat "$OUT/durability.md" >&2
}

# ---- environment ---------------------------------------------------------------
write_env() {
    {
        echo "date: $(date -u '+%Y-%m-%d %H:%M:%SZ')"
        echo "command: $(env | grep -E '^(REPS|DURATION|WARMUP|SCENARIOS|PEERS|NICE|CAIRN_THREADS|CAIRN_CONF_EXTRA|SCALE_SIZES|SCALE_REPS|CG_REQUESTS|DURABILITY_SECONDS)=' | tr '\n' ' ')bench/run.sh $ARGS"
        echo "mode: $MODE (reps $REPS, ${WARMUP}s warm-up, ${DURATION}s runs; scale reps $SCALE_REPS, ${SCALE_DURATION}s; callgrind $CG_REQUESTS requests per batch)"
        echo "host: $(uname -r), $(nproc) CPUs,$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
        echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo ?)$(git diff --quiet HEAD -- src 2>/dev/null || echo ' (src modified)')"
        echo "cairnd: $(build/cairnd --version 2>&1 | head -1), threads = $CAIRN_THREADS, libmicrohttpd $(dpkg-query -W -f='${Version}' libmicrohttpd12 2>/dev/null), jansson $(dpkg-query -W -f='${Version}' libjansson4 2>/dev/null)"
        echo "nginx: $(nginx -v 2>&1 | sed 's/.*: //') ($(dpkg-query -W -f='${Package} ${Version}' nginx-light 2>/dev/null || echo ?))"
        echo "go: $(go version | cut -d' ' -f3), gin $(dpkg-query -W -f='${Version}' golang-github-gin-gonic-gin-dev 2>/dev/null)"
        echo "json-server: $(node bench/jsonserver/node_modules/json-server/lib/cli/bin.js --version 2>/dev/null) on node $(node --version)"
        echo "wrk: $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
        echo "valgrind: $(valgrind --version)"
        echo "pinning: server on CPU $SERVER_CPU, wrk -t1 on CPU $CLIENT_CPU, both at nice $NICE; $(cat /proc/self/autogroup 2>/dev/null || echo 'no autogroup')"
        echo "load before: $(cat /proc/loadavg)"
    } >"$OUT/env.txt"
}

prepare
write_env
cat "$OUT/env.txt" >&2
[ -n "${SKIP_MATRIX:-}" ] || matrix
[ -n "${SKIP_SCALE:-}" ] || scale
[ -n "${SKIP_CALLGRIND:-}" ] || callgrind
[ -n "${SKIP_DURABILITY:-}" ] || durability
echo "elapsed: $(($(date +%s) - T_START)) s" >>"$OUT/env.txt"
echo "load after: $(cat /proc/loadavg)" >>"$OUT/env.txt"
doc_args=()
[ "$WRITE_DOC" = 1 ] && doc_args=(--doc docs/PERFORMANCE.md)
"$PY" bench/report.py --out "$OUT" --section "$MODE" "${doc_args[@]}" >"$OUT/summary.md"
cat "$OUT/summary.md"
log "results in $OUT ($(($(date +%s) - T_START)) s)"
