#!/bin/bash
# tests/systemd/lab.sh -- a disposable machine for the systemd tests: this host's
# own systemd runs as PID 1 of new PID, mount, UTS, IPC, network and cgroup
# namespaces, on an overlay whose lower layer is the host's / and whose upper
# layer is a tmpfs. Nothing written inside reaches the host's disk.
#
#   LAB=DIR lab.sh up [STAGE]   boot; STAGE (a `make install DESTDIR=`) is
#                               copied onto the lab's / before PID 1 starts
#   LAB=DIR lab.sh run CMD...   run CMD inside (clean environment, bounded by
#                               LAB_CMD_TIMEOUT seconds, default 60); stdin,
#                               stdout and the exit status pass through
#   LAB=DIR lab.sh put SRC DST  copy the host file SRC to DST inside
#   LAB=DIR lab.sh down         power off, kill leftovers, remove the cgroup;
#                               safe to call twice or on a half-booted lab
#
# DIR is per run and holds the state: pid1 (host PID of the lab's PID 1),
# cgroup, launcher.pid (unshare), go (set-up handshake), fs/ (mount point, used
# inside only) and console.log (output of the set-up before systemd starts).
# Needs root, util-linux (unshare, nsenter, setpriv, pivot_root), systemd, and
# a kernel with overlayfs and cgroup2.
set -euo pipefail

SELF=$0
case "$SELF" in /*) ;; *) SELF=$PWD/$SELF ;; esac
: "${LAB:?set LAB to a per-run state directory}"
LAB_BOOT_TIMEOUT=${LAB_BOOT_TIMEOUT:-30}
LAB_CMD_TIMEOUT=${LAB_CMD_TIMEOUT:-60}
LAB_TARGET=cairn-lab.target
SYSTEMD=/lib/systemd/systemd

die() { echo "lab.sh: $*" >&2; exit 1; }
now_ms() { date +%s%3N; }

# The host's cgroup2 mount: /sys/fs/cgroup when unified, .../unified when hybrid.
cgroup2_mount() {
    local m
    for m in /sys/fs/cgroup /sys/fs/cgroup/unified; do
        if [ "$(stat -fc %T "$m" 2>/dev/null)" = cgroup2fs ]; then echo "$m"; return 0; fi
    done
    return 1
}

# ---- inside: runs as PID 1 of the new namespaces, ends by exec'ing systemd ----
pid1_main() {
    local fs="$LAB/fs" root d
    root="$fs/root"
    umask 022
    mount --make-rprivate /
    mkdir -p "$fs"
    mount -t tmpfs -o mode=0755,size=2g cairn-lab-fs "$fs"
    mkdir "$fs/upper" "$fs/work" "$root"
    mount -t overlay -o "lowerdir=/,upperdir=$fs/upper,workdir=$fs/work" cairn-lab "$root"

    # /proc of the new PID namespace; /proc/sys read-only (few sysctls are
    # namespaced, PID 1 and systemd-sysctl would change the host's) except
    # net/, which belongs to the lab's own network namespace.
    mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
    mount --bind "$root/proc/sys" "$root/proc/sys"
    mount --bind "$root/proc/sys/net" "$root/proc/sys/net"
    mount -o remount,bind,ro "$root/proc/sys"
    # read-only sysfs keeps udev and friends away from the host's devices
    # (their units carry ConditionPathIsReadWrite=/sys); cgroup2 is rooted at
    # the lab's cgroup by the cgroup namespace, and systemd owns it.
    mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
    mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$root/sys/fs/cgroup"

    # a minimal /dev: a few harmless character devices bound from the host
    mount -t tmpfs -o mode=0755,nosuid,size=1m dev "$root/dev"
    for d in null zero full random urandom tty; do
        : > "$root/dev/$d"
        mount --bind "/dev/$d" "$root/dev/$d"
    done
    # PID 1 logs to the journal; its console is a sink
    : > "$root/dev/console"
    mount --bind /dev/null "$root/dev/console"
    mkdir -m 0755 "$root/dev/pts" "$root/dev/shm" "$root/dev/mqueue"
    mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts "$root/dev/pts"
    mount -t tmpfs -o mode=1777,nosuid,nodev shm "$root/dev/shm"
    mount -t mqueue mqueue "$root/dev/mqueue"
    ln -s pts/ptmx "$root/dev/ptmx"
    ln -s /proc/self/fd "$root/dev/fd"
    for d in stdin:0 stdout:1 stderr:2; do ln -s "/proc/self/fd/${d#*:}" "$root/dev/${d%:*}"; done
    mount -t tmpfs -o mode=0755,nosuid,nodev run "$root/run"
    mount -t tmpfs -o mode=1777,nosuid,nodev tmp "$root/tmp"

    # boot only what a service needs (sysinit: journald, tmpfiles; sockets), none
    # of the host's enabled units
    cat > "$root/etc/systemd/system/$LAB_TARGET" <<'EOF'
[Unit]
Description=cairn systemd test lab
Requires=basic.target
After=basic.target
AllowIsolate=yes
EOF
    # the host's timers (apt, man-db...) have no business firing in here
    ln -sf /dev/null "$root/etc/systemd/system/timers.target"
    # Stage files land at their paths; directories that exist keep their owner
    # and mode (a 0700 mktemp stage must not turn / into 0700).
    if [ -n "${LAB_STAGE:-}" ]; then
        tar -C "$LAB_STAGE" -cf - . | tar -C "$root" -xf - --no-overwrite-dir
    fi
    echo cairn-lab > "$root/etc/hostname"
    hostname cairn-lab
    # a machine id of its own, so the lab's journal is not mistaken for the host's
    systemd-id128 new > "$root/etc/machine-id"

    # our PID as the host sees it: the host's /proc is still mounted at /proc,
    # and the builtin `read` opens /proc/self/stat in this very process
    local hostpid rest
    read -r hostpid rest < /proc/self/stat
    echo "$hostpid" > "$LAB/pid1.new"
    mv "$LAB/pid1.new" "$LAB/pid1"
    # wait (bounded) until `up` has moved unshare out of our cgroup, so that
    # systemd finds its root cgroup holding nothing but itself
    for d in $(seq 100); do [ -e "$LAB/go" ] && break; sleep 0.05; done

    cd "$root"
    mkdir .lab-old-root
    pivot_root . .lab-old-root
    cd /
    umount -l /.lab-old-root
    rmdir /.lab-old-root
    # No capability that reaches beyond the namespaces: clock, modules, raw I/O,
    # kernel log, alarms, accounting, MAC.
    exec setpriv --bounding-set=-sys_time,-sys_module,-sys_rawio,-syslog,-wake_alarm,-sys_pacct,-block_suspend,-mac_admin,-mac_override \
        env -i container=cairn-lab TERM=dumb LANG=C.UTF-8 PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        "$SYSTEMD" --system --unit="$LAB_TARGET" --show-status=no
}

# ---- outside ----
# (builtins only: `run` is called a hundred times per test run)
pid1() { local p; read -r p 2>/dev/null < "$LAB/pid1" && echo "$p"; }

# true when the PID in $LAB/pid1 still is our lab's PID 1 (not a reused PID)
pid1_alive() {
    local p cg line
    p=$(pid1) || return 1
    [ -n "$p" ] && [ -d "/proc/$p" ] || return 1
    read -r cg 2>/dev/null < "$LAB/cgroup" || return 1
    while read -r line; do
        case "$line" in 0::/"${cg##*/}"/*) return 0 ;; esac
    done 2>/dev/null < "/proc/$p/cgroup"
    return 1
}

# true when the lab's PID 1 is alive and already is systemd
pid1_is_systemd() {
    local comm
    pid1_alive && read -r comm 2>/dev/null < "/proc/$(pid1)/comm" && [ "$comm" = systemd ]
}

enter() {
    local p
    p=$(pid1) || die "no lab is up in $LAB"
    # Never nsenter a PID 1 that is not (yet) systemd: before its pivot_root the
    # lab still sees the host's /run, and systemctl would talk to the host's
    # systemd.
    pid1_is_systemd || die "the lab's PID 1 ($p) is not running systemd"
    timeout -k 5 "$LAB_CMD_TIMEOUT" nsenter -t "$p" -m -u -i -n -p -C -r -w \
        env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 TERM=dumb \
        SYSTEMD_PAGER= SYSTEMD_COLORS=0 SYSTEMD_LESS= "$@"
}

# alive PID: PID exists and is not a zombie
alive() {
    local st
    st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "${st:0:1}" != Z ]
}

# wait_gone PID MS: wait until PID is gone, at most MS milliseconds
wait_gone() {
    local deadline=$(( $(now_ms) + $2 ))
    while alive "$1" && [ "$(now_ms)" -lt "$deadline" ]; do sleep 0.05; done
    ! alive "$1"
}

up() {
    local stage=${1:-} cgm cg t0 deadline state="" launcher
    [ "$(id -u)" = 0 ] || die "needs root"
    [ -x "$SYSTEMD" ] || die "no $SYSTEMD"
    for t in unshare nsenter setpriv pivot_root timeout; do
        command -v "$t" >/dev/null || die "needs $t"
    done
    if [ -n "$stage" ]; then
        [ -d "$stage" ] || die "no stage directory $stage"
        stage=$(cd "$stage" && pwd)
    fi
    mkdir -p "$LAB"
    [ ! -e "$LAB/pid1" ] && [ ! -e "$LAB/launcher.pid" ] || down
    rm -f "$LAB/go"
    cgm=$(cgroup2_mount) || die "no cgroup2 hierarchy on this host"
    # One cgroup per lab, named after its state directory (parallel labs
    # coexist), with two children: sys/, the root of the lab's cgroup namespace,
    # owned by its systemd, and launcher/, where unshare waits for its child.
    # sys/ thus holds no foreign process and the lab's systemd may enable the
    # controllers we hand down (cgroup v2: no processes in inner nodes).
    cg="$cgm/cairn-lab-$(printf '%s' "$(cd "$LAB" && pwd)" | md5sum | cut -c1-12)"
    mkdir -p "$cg/sys" "$cg/launcher"
    echo "$cg" > "$LAB/cgroup"
    local c
    for c in $(cat "$cg/cgroup.controllers" 2>/dev/null); do
        echo "+$c" > "$cg/cgroup.subtree_control" 2>/dev/null || true
    done
    t0=$(now_ms)
    # The subshell joins sys/ before unshare, so the new cgroup namespace is
    # rooted there; before PID 1 execs systemd, unshare itself moves to
    # launcher/ (pid1_main waits for the file "go").
    (
        echo "$BASHPID" > "$cg/sys/cgroup.procs"
        export LAB LAB_STAGE="$stage"
        exec unshare --pid --fork --mount --uts --ipc --net --cgroup \
            --propagation private "$SELF" __pid1
    ) < /dev/null > "$LAB/console.log" 2>&1 &
    launcher=$!
    echo "$launcher" > "$LAB/launcher.pid"

    deadline=$(( $(now_ms) + LAB_BOOT_TIMEOUT * 1000 ))
    while [ "$(now_ms)" -lt "$deadline" ]; do
        alive "$launcher" || break # the setup or PID 1 died
        if [ -e "$LAB/pid1" ]; then
            if [ ! -e "$LAB/go" ]; then
                echo "$launcher" > "$cg/launcher/cgroup.procs" || true
                : > "$LAB/go"
            fi
            if pid1_is_systemd; then
                state=$(enter systemctl is-system-running 2>/dev/null) || true
            fi
            case "$state" in running|degraded) break;; esac
        fi
        sleep 0.05
    done
    case "$state" in
    running|degraded)
        echo "# lab booted ($state) in $(( $(now_ms) - t0 )) ms; host PID of its PID 1: $(pid1)"
        if [ "$state" = degraded ]; then
            enter systemctl --failed --no-legend 2>&1 | sed 's/^/# failed unit: /' || true
        fi
        ;;
    *)
        echo "lab.sh: boot failed (state '${state:-none}' after ${LAB_BOOT_TIMEOUT}s)" >&2
        sed 's/^/console: /' "$LAB/console.log" >&2 || true
        [ -e "$LAB/pid1" ] && enter journalctl -b --no-pager -n 40 2>&1 | sed 's/^/journal: /' >&2
        down
        return 1
        ;;
    esac
}

down() {
    local p l cg procs deadline
    p=$(pid1) || p=""
    l=$(cat "$LAB/launcher.pid" 2>/dev/null) || l=""
    cg=$(cat "$LAB/cgroup" 2>/dev/null) || cg=""
    if [ -n "$p" ] && pid1_alive; then
        kill -s RTMIN+4 "$p" 2>/dev/null || true # systemd: SIGRTMIN+4 = poweroff
        wait_gone "$p" 10000 || kill -KILL "$p" 2>/dev/null || true
        wait_gone "$p" 5000 || true
    fi
    # Whatever is left in the lab's cgroup (PID 1 killed early, stray nsenter
    # children): kill it all, then remove the tree deepest first.
    if [ -n "$cg" ] && [ -d "$cg" ]; then
        if [ -e "$cg/cgroup.kill" ]; then echo 1 > "$cg/cgroup.kill" 2>/dev/null || true; fi
        deadline=$(( $(now_ms) + 5000 ))
        while [ "$(now_ms)" -lt "$deadline" ]; do
            procs=$(find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null) || procs=""
            [ -z "$procs" ] && break
            # kernels without cgroup.kill
            for p in $procs; do kill -KILL "$p" 2>/dev/null || true; done
            sleep 0.05
        done
        find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
        [ ! -d "$cg" ] || echo "lab.sh: could not remove cgroup $cg" >&2
    fi
    if [ -n "$l" ]; then wait_gone "$l" 5000 || kill -KILL "$l" 2>/dev/null || true; fi
    rm -f "$LAB/pid1" "$LAB/pid1.new" "$LAB/go" "$LAB/launcher.pid" "$LAB/cgroup"
    rmdir "$LAB/fs" 2>/dev/null || true
}

cmd=${1:-}
shift || true
case "$cmd" in
up) up "$@" ;;
run) [ $# -gt 0 ] || die "run: no command"; enter "$@" ;;
put) [ $# = 2 ] || die "put SRC DST"; enter sh -c 'cat > "$1"' put "$2" < "$1" ;;
down) down ;;
__pid1) pid1_main ;;
*) echo "usage: LAB=DIR $0 up [STAGE] | run CMD... | put SRC DST | down" >&2; exit 2 ;;
esac
