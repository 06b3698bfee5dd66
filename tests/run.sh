#!/bin/bash
# tests/run.sh -- the whole test suite (`make test`). Each suite prints
# `ok`/`not ok` lines and `N passed, N failed`; this script adds them up and
# ends with the total on one line. CAIRN_TEST_QUICK=1 runs the plain build only.
set -uo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-2}
total_pass=0
total_fail=0
log_dir=$(mktemp -d /tmp/cairn-tests.XXXXXX)
trap 'rm -rf "$log_dir"' EXIT

# run_suite NAME CMD...: runs CMD, echoes its output, adds its summary line to the totals
run_suite() {
    local name=$1; shift
    local out="$log_dir/$(echo "$name" | tr ' /' '__').log"
    local t0=$(date +%s)
    echo "# --- $name"
    "$@" > "$out" 2>&1
    local rc=$?
    cat "$out"
    local line
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -1)
    if [ -z "$line" ]; then
        echo "not ok - $name: exited $rc without a summary"
        total_fail=$((total_fail + 1))
        return
    fi
    local p f
    p=$(echo "$line" | awk '{print $1}')
    f=$(echo "$line" | awk '{print $3}')
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "not ok - $name: exited $rc"
        f=1
    fi
    total_pass=$((total_pass + p))
    total_fail=$((total_fail + f))
    echo "# $name: $p passed, $f failed in $(( $(date +%s) - t0 )) s"
}

build() {  # build VARIANT-ARGS...: make quietly, show errors
    if ! make -j"$JOBS" "$@" all unit-tests > "$log_dir/build.log" 2>&1; then
        cat "$log_dir/build.log"
        echo "not ok - build: make $*"
        echo "$total_pass passed, $((total_fail + 1)) failed"
        exit 1
    fi
}

unit_suites() {  # unit_suites BUILD_DIR LABEL
    local t
    for t in "$1"/tests/test_*; do
        case "$t" in *.d) continue;; esac
        run_suite "unit $2 $(basename "$t")" "$t"
    done
}

integration() {  # integration LABEL BUILD_DIR FAULTS_BUILD_DIR [MODULES...]
    local label=$1 b=$2 fb=$3; shift 3
    run_suite "integration $label" env CAIRND="$b/cairnd" CAIRND_FAULTS="$fb/cairnd" \
        python3 tests/integration/run.py "$@"
}

build
build FAULTS=1
unit_suites build plain
# the race test's 30 s run is the thread-sanitizer one; the others are shorter
CAIRN_RACE_SECONDS=10 integration plain build build-faults

if [ -z "${CAIRN_TEST_QUICK:-}" ]; then
    build SANITIZE=address,undefined
    build SANITIZE=address,undefined FAULTS=1
    unit_suites build-address-undefined asan+ubsan
    CAIRN_RACE_SECONDS=10 integration asan+ubsan build-address-undefined \
        build-address-undefined-faults

    build SANITIZE=thread
    build SANITIZE=thread FAULTS=1
    for t in build-thread/tests/test_store build-thread/tests/test_idmap; do
        [ -x "$t" ] && run_suite "unit tsan $(basename "$t")" env TSAN_OPTIONS=halt_on_error=1 "$t"
    done
    CAIRN_RACE_SECONDS=30 integration tsan build-thread build-thread-faults

    if [ -x tests/systemd/run.sh ]; then
        run_suite "systemd" tests/systemd/run.sh
    fi
fi

echo "# ---"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
