#!/usr/bin/env python3
"""Recovery time to READY (not a test; docs/DURABILITY.md "Measured", issue 4's 5 s targets).

usage: CAIRND=build/cairnd python3 tests/integration/recovery_bench.py [N] [REPS]

Makes a data dir holding only a log of N small writes (default 1,000,000; the 92-byte docs
of docs/STORE.md, written by `build/tests/test_wal --measure` with sync = none, left by a
crash), then REPS times (default 3), interleaved:
  - replay: cairnd started on a copy of that dir (log only), timed from spawn to "listening";
  - load:   cairnd started on a dir holding the snapshot of the same N docs.
Prints wall time, cairnd's own "recovered ... in N ms" and the split it logs (files read and
checked / docs built), and CPU user + sys of the process at READY (/proc/PID/stat). The
machine is shared: compare figures of one run, and look at CPU as well as wall time.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn  # noqa: E402

TEST_WAL = os.environ.get("TEST_WAL", os.path.join(os.path.dirname(cairn.BINARY) or ".",
                                                   "tests", "test_wal"))


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def start_on(data, label):
    d = cairn.Daemon(settings={"store.sync": "always", "log_level": "info"}, start=False)
    shutil.rmtree(d.data_dir)
    shutil.copytree(data, d.data_dir)
    subprocess.run(["sync"], check=True)
    t0 = time.time()
    d.start(timeout=600)
    wall = time.time() - t0
    user, sys_ = cpu_seconds(d.pid())
    log = d.log()
    rec = re.search(r"recovered revision (\d+) .* in (\d+) ms", log)
    split = re.search(r"read the files in (\d+) ms, built (\d+) docs in (\d+) ms", log)
    row = (label, wall, int(rec.group(2)) if rec else -1,
           int(split.group(1)) if split else -1, int(split.group(3)) if split else -1,
           user, sys_)
    return d, row


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000000
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    tmp = tempfile.mkdtemp(prefix="cairn-recovery-bench-")
    logdir = os.path.join(tmp, "log-only")
    snapdir = os.path.join(tmp, "snapshot")
    try:
        env = dict(os.environ, CAIRN_MEASURE_LOG_ONLY="1")
        subprocess.run([TEST_WAL, "--measure", str(n), logdir], env=env, check=True)
        # the snapshot of the same docs: a clean stop of a daemon that replayed the log
        d, _ = start_on(logdir, "prepare")
        assert d.stop() == 0
        shutil.copytree(d.data_dir, snapdir)
        d.cleanup()
        assert any(x.startswith("snap.") for x in os.listdir(snapdir)), os.listdir(snapdir)
        with open("/proc/loadavg") as f:
            print("# %d writes, load average %s" % (n, f.read().split()[0]))
        print("| start | wall to READY | cairnd's recovery | files read + checked | docs built "
              "| CPU user + sys at READY |")
        print("|---|---:|---:|---:|---:|---:|")
        for _ in range(reps):
            for label, data in (("replay of the log", logdir), ("load of the snapshot", snapdir)):
                d, row = start_on(data, label)
                d.stop()
                d.cleanup()
                print("| %s | %.2f s | %d ms | %d ms | %d ms | %.2f + %.2f s |" % row, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
