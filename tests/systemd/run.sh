#!/bin/bash
# tests/systemd/run.sh -- cairnd under a real systemd (252) as PID 1.
#
# Builds with `make` and `make FAULTS=1` (no-ops when up to date), stages
# `make install DESTDIR=...` plus the fault build's binary, boots a lab
# (tests/systemd/lab.sh) on it and checks the units' behaviour: start waits for
# READY=1, reload good and bad, the journal, stop, a bad config at start, the
# watchdog killing a wedged daemon, socket activation, and the sd_notify messages
# PID 1 received. Prints `ok - NAME` / `not ok - NAME` per check, then
# `N passed, N failed`; exits 1 if any failed. The lab is always torn down.
#
# Needs root, systemd, util-linux, curl, tar (plus the build's packages).
# Skips (exit 0) only when not root or when there is no systemd.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
LABSH=$HERE/lab.sh
SVC=cairnd.service
SOCK=cairnd.socket
UNITDIR=/etc/systemd/system
CONF=/etc/cairn/cairnd.conf
FAULTS_BIN=/usr/local/libexec/cairn-test/cairnd-faults
DROPIN=$UNITDIR/$SVC.d/90-test-watchdog.conf
URL=http://127.0.0.1:8080

pass=0
fail=0
section_fail=0
now_ms() { date +%s%3N; }
T0=$(now_ms)
note() { echo "# $*"; }
ok() { echo "ok - $1"; pass=$((pass + 1)); }
notok() { echo "not ok - $1"; fail=$((fail + 1)); }
# check NAME CMD...: ok when CMD succeeds
check() {
    local name=$1
    shift
    if "$@"; then ok "$name"; else notok "$name"; fi
}
# expect NAME GOT WANT: ok when equal, else say what came instead
expect() {
    if [ "$2" = "$3" ]; then ok "$1"; else notok "$1"; note "  got '$2', want '$3'"; fi
}
finish() {
    note "total $(($(now_ms) - T0)) ms"
    echo "$pass passed, $fail failed"
    [ "$fail" = 0 ]
    exit
}

if [ "$(id -u)" != 0 ]; then
    echo "# SKIP not root: the lab needs root to create namespaces"
    echo "0 passed, 0 failed"
    exit 0
fi
if [ ! -x /lib/systemd/systemd ] || ! command -v systemctl > /dev/null; then
    echo "# SKIP no systemd installed (/lib/systemd/systemd)"
    echo "0 passed, 0 failed"
    exit 0
fi
for tool in unshare nsenter setpriv curl tar make; do
    command -v "$tool" > /dev/null || { notok "needed tool present: $tool"; finish; }
done

umask 022
WORK=$(mktemp -d /var/tmp/cairn-systemd-test.XXXXXX)
chmod 755 "$WORK"
STAGE=$WORK/stage
FILES=$WORK/files
export LAB=$WORK/lab
mkdir -p "$STAGE" "$FILES" "$LAB"
cleanup() {
    "$LABSH" down
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# ---- build and stage ----
mk() { env -u SANITIZE -u FAULTS -u BUILD make -s -C "$TOP" "$@"; }
if ! mk > "$FILES/build.log" 2>&1 || ! mk FAULTS=1 >> "$FILES/build.log" 2>&1; then
    notok "build (make, make FAULTS=1)"
    sed 's/^/#   /' "$FILES/build.log" | tail -20
    finish
fi
if ! mk install DESTDIR="$STAGE" PREFIX=/usr/local > "$FILES/install.log" 2>&1; then
    notok "make install DESTDIR=stage"
    sed 's/^/#   /' "$FILES/install.log"
    finish
fi
install -D -m 755 "$TOP/build-faults/cairnd" "$STAGE$FAULTS_BIN"
for f in usr/local/sbin/cairnd etc/cairn/cairnd.conf etc/systemd/system/$SVC etc/systemd/system/$SOCK; do
    [ -e "$STAGE/$f" ] || { notok "make install put /$f in place"; finish; }
done
note "built and staged at $(($(now_ms) - T0)) ms"

# Config variants, made on the host from the shipped file.
GOOD=$STAGE$CONF
sed 's/^max_body_bytes = .*/max_body_bytes = 2097152;/' "$GOOD" > "$FILES/good2.conf"
sed 's/^listen_port = .*/listen_port = 18080;/' "$FILES/good2.conf" > "$FILES/port18080.conf"
cp "$FILES/good2.conf" "$FILES/bad-syntax.conf"
echo 'this line is not libconfig' >> "$FILES/bad-syntax.conf"
BAD_SYNTAX_LINE=$(wc -l < "$FILES/bad-syntax.conf")
cp "$FILES/good2.conf" "$FILES/bad-key.conf"
echo 'no_such_key = 1;' >> "$FILES/bad-key.conf"
BAD_KEY_LINE=$(wc -l < "$FILES/bad-key.conf")
cat > "$FILES/watchdog.conf" << EOF
# test only: the fault build (SIGUSR2 wedges the worker pool) and a short watchdog
[Service]
ExecStart=
ExecStart=$FAULTS_BIN -c $CONF
WatchdogSec=2s
RestartSec=100ms
LimitCORE=0
EOF
if cmp -s "$GOOD" "$FILES/good2.conf" || cmp -s "$FILES/good2.conf" "$FILES/port18080.conf"; then
    notok "the shipped config has the max_body_bytes and listen_port lines the test edits"
    finish
fi

# ---- boot ----
if ! "$LABSH" up "$STAGE"; then
    notok "lab boots systemd as PID 1"
    finish
fi
note "lab up at $(($(now_ms) - T0)) ms"
LAB_PID1=$(cat "$LAB/pid1")
lab_alive() { [ -d "/proc/$LAB_PID1" ]; }

# ---- helpers that act inside the lab ----
L() { "$LABSH" run "$@"; }
put() { "$LABSH" put "$1" "$2"; }
prop() { L systemctl show -P "$2" "$1"; }
# status PATH [curl args...]: the HTTP status code (000 when no answer)
status() {
    local path=$1
    shift
    L curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" "$URL$path"
}
generation() {
    L curl -s --max-time 5 "$URL/v1/_stats" | grep -o '"config_generation":[0-9]*' | cut -d: -f2
}
in_flight() {
    L curl -s --max-time 5 "$URL/v1/_stats" | grep -o '"requests_in_flight":[0-9]*' | cut -d: -f2
}
# wait_for SECONDS CMD...: poll CMD every 50 ms until it succeeds or time is up
wait_for() {
    local deadline=$(($(now_ms) + $1 * 1000))
    shift
    while :; do
        "$@" > /dev/null 2>&1 && return 0
        [ "$(now_ms)" -lt "$deadline" ] && lab_alive || return 1
        sleep 0.05
    done
}
# journal_has UNIT ERE [journalctl matches...]: the unit's journal has a matching line
journal_has() {
    local unit=$1 re=$2
    shift 2
    L journalctl -b -u "$unit" -o cat --no-pager "$@" | grep -Eq -- "$re"
}
is() { [ "$(L systemctl is-active "$1")" = "$2" ]; }
gen_is() { [ "$(generation)" = "$1" ]; }
restarted() { # restarted OLDPID N: N restarts, active, a new MainPID
    local p
    p=$(prop $SVC MainPID)
    [ "$(prop $SVC NRestarts)" = "$2" ] && is $SVC active && [ "$p" != 0 ] && [ "$p" != "$1" ]
}
journal_cursor() { L journalctl -n 0 --show-cursor -q | sed -n 's/^-- cursor: //p'; }
# journal_since CURSOR: the unit's journal after CURSOR
journal_since() { L journalctl -u $SVC --after-cursor="$1" -o cat --no-pager; }
stopped_clean() {
    local j
    j=$(journal_since "$1")
    grep -q 'Deactivated successfully' <<< "$j" && ! grep -Eq 'Failed with result|Main process exited' <<< "$j"
}
# section TITLE: starts a group of checks; section_end shows the unit's recent
# journal if one of them failed, to make CI logs useful
section() {
    if ! lab_alive; then
        notok "the lab's systemd is still running"
        finish
    fi
    echo "# --- $*"
    section_fail=$fail
}
section_end() {
    [ "$fail" = "$section_fail" ] && return
    lab_alive && L journalctl -b -u $SVC -o short-monotonic --no-pager -n 15 | sed 's/^/#   /'
}

section "the units, checked by the real systemd"
out=$(L systemd-analyze verify "$UNITDIR/$SVC" "$UNITDIR/$SOCK" 2>&1)
rc=$?
if [ $rc = 0 ] && [ -z "$out" ]; then ok "systemd-analyze verify: both units clean"; else
    notok "systemd-analyze verify: both units clean"
    printf '%s\n' "$out" | sed 's/^/#   /'
fi
out=$(L systemd-analyze security --offline=true --threshold=20 "$UNITDIR/$SVC" 2>&1)
rc=$?
exposure=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
note "systemd-analyze security exposure: ${exposure:-?}"
check "systemd-analyze security --offline=true --threshold=20 (exposure <= 2.0)" [ $rc = 0 ]

section_end
section "start waits for READY=1"
t=$(now_ms)
L systemctl start $SVC
rc=$?
note "systemctl start took $(($(now_ms) - t)) ms"
expect "systemctl start succeeds" $rc 0
# no polling: Type=notify means start returned only after READY=1
expect "is-active right after start returns" "$(L systemctl is-active $SVC)" active
expect "GET /healthz answers 200 right after start returns" "$(status /healthz)" 200
expect "GET /readyz answers 200" "$(status /readyz)" 200
expect "StatusText shows serving" "$(prop $SVC StatusText)" "serving on 127.0.0.1:8080, config generation 1"
check "journalctl -u has the daemon's own start line" \
    wait_for 5 journal_has $SVC '^cairnd [0-9.]+ listening on 127\.0\.0\.1:8080 \('
pid=$(prop $SVC MainPID)
gen=$(generation)
expect "config generation 1 after start" "$gen" 1

section_end
section "reload: good, then broken"
put "$FILES/good2.conf" $CONF
t=$(now_ms)
L systemctl reload $SVC
rc=$?
expect "systemctl reload with a good changed config succeeds" $rc 0
check "reload: config generation goes up ($gen -> $((gen + 1)))" wait_for 5 gen_is $((gen + 1))
note "reload took $(($(now_ms) - t)) ms (until the new generation served)"
expect "reload: same MainPID" "$(prop $SVC MainPID)" "$pid"
status_gen() { prop $SVC StatusText | grep -q "config generation $1\$"; }
check "reload: StatusText names the new generation" wait_for 5 status_gen $((gen + 1))
check "reload: the daemon logged it" journal_has $SVC "config reloaded from $CONF: generation $((gen + 1))"

put "$FILES/bad-syntax.conf" $CONF
L systemctl reload $SVC 2> /dev/null
rc=$?
check "systemctl reload with a broken config fails (exit $rc)" [ $rc != 0 ]
expect "broken reload: still active" "$(L systemctl is-active $SVC)" active
expect "broken reload: same MainPID" "$(prop $SVC MainPID)" "$pid"
expect "broken reload: old generation kept (daemon not signalled)" "$(generation)" $((gen + 1))
check "broken reload: journal has the file:line: error" \
    wait_for 5 journal_has $SVC "^$CONF:$BAD_SYNTAX_LINE: "
expect "broken reload: still serving" "$(status /healthz)" 200
put "$FILES/good2.conf" $CONF

section_end
section "the journal: native fields"
rid="systemd-test-404-$$"
expect "an unknown path answers 404" "$(status /no/such/path -H "X-Request-Id: $rid")" 404
check "journalctl -u $SVC REQUEST_ID=$rid finds the 404's line" \
    wait_for 5 journal_has $SVC ' -> 404' "REQUEST_ID=$rid"
check "that entry is native: SYSLOG_IDENTIFIER=cairnd, PRIORITY=6 (info)" \
    journal_has $SVC '/no/such/path' "REQUEST_ID=$rid" SYSLOG_IDENTIFIER=cairnd PRIORITY=6

section_end
section "stop"
timeout_stop=$(prop $SVC TimeoutStopUSec)
cursor=$(journal_cursor)
t=$(now_ms)
L systemctl stop $SVC
rc=$?
dt=$(($(now_ms) - t))
note "systemctl stop took $dt ms (TimeoutStopSec=$timeout_stop)"
expect "systemctl stop succeeds" $rc 0
check "stop finished well within TimeoutStopSec (${dt} ms < 5000 ms)" [ $dt -lt 5000 ]
# An inactive unit is garbage-collected at once, so `systemctl show` would
# only report defaults here: read PID 1's verdict from the journal instead
# (exit status 0 itself is checked in section 9, where PID 1 logs at debug).
check "stop: Result=success (\"Deactivated successfully\", no failure logged)" stopped_clean "$cursor"
expect "stop: inactive" "$(L systemctl is-active $SVC)" inactive
check "stop: the daemon logged its drain and exit" journal_has $SVC '^stopped$'

section_end
section "a bad config at start"
put "$FILES/bad-key.conf" $CONF
L systemctl start $SVC 2> /dev/null
rc=$?
check "start with a bad config fails (exit $rc)" [ $rc != 0 ]
expect "bad config at start: ExecMainStatus=78" "$(prop $SVC ExecMainStatus)" 78
expect "bad config at start: Result=exit-code" "$(prop $SVC Result)" exit-code
# RestartPreventExitStatus=78: no restart loop on a broken file
expect "bad config at start: failed, not restarting" "$(L systemctl is-active $SVC)" failed
check "bad config at start: journal has the file:line: error" \
    wait_for 5 journal_has $SVC "^$CONF:$BAD_KEY_LINE: "
put "$FILES/good2.conf" $CONF
L systemctl reset-failed $SVC

section_end
section "watchdog: the fault build, wedged by SIGUSR2"
L mkdir -p "$UNITDIR/$SVC.d"
put "$FILES/watchdog.conf" "$DROPIN"
L systemctl daemon-reload
L systemctl start $SVC
expect "fault build started under a 2 s watchdog" "$(L systemctl is-active $SVC)/$(prop $SVC WatchdogUSec)" active/2s
pid=$(prop $SVC MainPID)
n0=$(prop $SVC NRestarts)
expect "fault build serves" "$(status /healthz)" 200
L kill -USR2 "$pid"
t=$(now_ms)
check "wedged pool: systemd kills it and Restart=on-failure brings a new MainPID" \
    wait_for 15 restarted "$pid" $((n0 + 1))
note "wedge -> restarted in $(($(now_ms) - t)) ms"
check "journal: watchdog timeout" journal_has $SVC 'Watchdog timeout'
check "journal: killed with SIGABRT" journal_has $SVC "Killing process $pid \\(cairnd(-faults)?\\) with signal SIGABRT"
check "the daemon warned that its probe failed" journal_has $SVC 'watchdog: the worker pool did not answer a probe'
expect "the restarted daemon serves" "$(status /healthz)" 200

section_end
section "stop drains a request in flight (the fault build's /_debug/sleep)"
L curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$URL/_debug/sleep?ms=1500" > "$FILES/drain.out" 2>&1 &
curl_pid=$!
# the stats request is in flight itself: 2 means the sleeper is too
# twice in a row, so that a passing watchdog probe cannot fake it
sleeper_in_flight() { [ "$(in_flight)" -ge 2 ] && [ "$(in_flight)" -ge 2 ]; }
check "a slow request is in flight" wait_for 5 sleeper_in_flight
cursor=$(journal_cursor)
t=$(now_ms)
L systemctl stop $SVC
rc=$?
dt=$(($(now_ms) - t))
wait $curl_pid
note "stop with a request in flight took $dt ms"
expect "stop drains: the in-flight request got its 200" "$(cat "$FILES/drain.out")" 200
expect "stop drains: systemctl stop succeeds within TimeoutStopSec" "$rc/$([ $dt -lt 20000 ] && echo in-time)" 0/in-time
check "stop drains: Result=success" stopped_clean "$cursor"
L rm -f "$DROPIN"
L systemctl daemon-reload

section_end
section "socket activation"
put "$FILES/port18080.conf" $CONF # ignored under socket activation
L systemctl start $SOCK
expect "cairnd.socket listening, cairnd.service not started" \
    "$(L systemctl is-active $SOCK)/$(L systemctl is-active $SVC)" active/inactive
t=$(now_ms)
expect "the first connection starts cairnd.service and is answered" "$(status /healthz --max-time 20)" 200
note "first request via socket activation took $(($(now_ms) - t)) ms"
expect "cairnd.service active after the first request" "$(L systemctl is-active $SVC)" active
pid=$(prop $SVC MainPID)
check "the daemon used the inherited socket, not the config's port 18080" \
    wait_for 5 journal_has $SVC 'listening on 127\.0\.0\.1:8080 \(socket activation\)' "_PID=$pid"
L systemctl stop $SVC 2> /dev/null
rc=$?
# the socket keeps the stopped service loaded, so these are its real values
expect "systemctl stop cairnd.service: exit 0, Result=success" \
    "$rc/$(prop $SVC ExecMainPID)/$(prop $SVC Result)/$(prop $SVC ExecMainCode)/$(prop $SVC ExecMainStatus)" "0/$pid/success/1/0"
expect "socket still listening after the service stopped" \
    "$(L systemctl is-active $SOCK)/$(L systemctl is-active $SVC)" active/inactive
expect "the inherited socket survived: a new connection is answered" "$(status /healthz --max-time 20)" 200
p2=$(prop $SVC MainPID)
new_main() { [ "$(L systemctl is-active $SVC)" = active ] && [ "$p2" != "$pid" ] && [ "$p2" != 0 ]; }
check "... by a newly started cairnd (MainPID $pid -> $p2)" new_main
L systemctl stop $SOCK $SVC 2> /dev/null
expect "socket and service stopped: nothing listens" "$(status /healthz)" 000
put "$FILES/good2.conf" $CONF

section_end
section "the sd_notify protocol, from PID 1's debug log"
# Last: at debug level systemd 252 can attribute a service's stdout to
# init.scope (its move into the unit's cgroup comes later), so the
# journalctl -u checks above must not run while it is on.
cursor=$(journal_cursor)
L systemctl log-level debug
notes() {
    L journalctl -u $SVC --after-cursor="$cursor" -o cat --no-pager |
        sed -n 's/.*Got notification message from PID [0-9]* (\(.*\))$/\1/p'
}
notified() { notes | grep -qF -- "$1"; }
L systemctl start $SVC
check "protocol: READY=1 with STATUS= at start" \
    wait_for 5 notified "READY=1, STATUS=serving on 127.0.0.1:8080, config generation 1"
check "protocol: WATCHDOG=1 keep-alives (after a probe)" wait_for 5 notified "WATCHDOG=1"
L systemctl reload $SVC
reloading_notified() { notes | grep -Eq '^RELOADING=1, MONOTONIC_USEC=[0-9]+$'; }
check "protocol: RELOADING=1 with MONOTONIC_USEC on reload" wait_for 5 reloading_notified
check "protocol: READY=1 after the reload" wait_for 5 notified "READY=1, STATUS=serving on 127.0.0.1:8080, config generation 2"
reload_order() { notes | awk '/^RELOADING=1/ { r = NR } /^READY=1.*generation 2$/ { if (r && NR > r) ok = 1 } END { exit !ok }'; }
check "protocol: RELOADING=1 came before that READY=1" reload_order
L systemctl stop $SVC
check "protocol: STOPPING=1 on stop" wait_for 5 notified "STOPPING=1, STATUS=draining"
exited_zero() { journal_since "$cursor" | grep -q 'Main process exited, code=exited, status=0/SUCCESS'; }
check "stop: the main process exited with status 0 (PID 1's debug log)" wait_for 5 exited_zero
L systemctl log-level info
if [ "$fail" != "$section_fail" ]; then
    note "notifications seen:"
    notes | sed 's/^/#   /'
fi
section_end
finish
