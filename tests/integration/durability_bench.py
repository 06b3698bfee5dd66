#!/usr/bin/env python3
"""Durable write throughput (not a test; docs/DURABILITY.md "Measured").

usage: CAIRND=build/cairnd python3 tests/integration/durability_bench.py [SECONDS]

In one run: the raw fdatasync rate of the file system that holds the data dir
(append 128 bytes + fdatasync, one thread), then cairnd with store.sync = always
under wrk at 1, 16 and 64 concurrent writers (POST of a small doc), with the
fsyncs per second and writes per fsync from /v1/_stats, then sync = none at 64
for comparison. Prints a Markdown table.
"""
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn  # noqa: E402

LUA = """wrk.method = "POST"
wrk.body = '{"title":"a small document","author":"someone","views":1,"published":true}'
wrk.headers["Content-Type"] = "application/json"
"""


def raw_fdatasync_rate(directory, seconds):
    path = os.path.join(directory, "fdatasync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    n, t0 = 0, time.time()
    while time.time() - t0 < seconds:
        os.write(fd, b"r" * 128)
        os.fdatasync(fd)
        n += 1
    rate = n / (time.time() - t0)
    os.close(fd)
    os.unlink(path)
    return rate


def wrk(port, conns, seconds, lua):
    threads = 1 if conns == 1 else 2
    out = subprocess.run(["wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % seconds, "-s", lua,
                          "--latency", "http://127.0.0.1:%d/v1/bench" % port],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=True).stdout.decode()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1, "s": 1000}[p99.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, float(p99.group(1)) * scale, int(non2xx.group(1)) if non2xx else 0


def main():
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    tmp = tempfile.mkdtemp(prefix="cairn-bench-")
    lua = os.path.join(tmp, "post.lua")
    with open(lua, "w") as f:
        f.write(LUA)
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    raw = raw_fdatasync_rate(tmp, seconds)
    rows = []
    for policy, conns_list in (("always", (1, 16, 64)), ("none", (64,))):
        d = cairn.Daemon(settings={"store.sync": policy, "threads": 2, "log_level": "notice",
                                   "store.compact_bytes": 1 << 30})
        try:
            for conns in conns_list:
                s0 = d.stats()["counters"]
                t0 = time.time()
                rps, p99, bad = wrk(d.port, conns, seconds, lua)
                el = time.time() - t0
                s1 = d.stats()["counters"]
                fsyncs = s1["store_fsyncs"] - s0["store_fsyncs"]
                writes = s1["store_fsync_writes"] - s0["store_fsync_writes"]
                rows.append((policy, conns, rps, fsyncs / el, writes / fsyncs if fsyncs else 0, p99,
                             bad))
            d.stop()
        finally:
            d.cleanup()
    print("raw fdatasync rate of the data dir's file system (append 128 B + fdatasync, 1 thread): "
          "%.0f/s; load average %s" % (raw, load))
    print()
    print("| store.sync | concurrent writers | durable writes/s | fsyncs/s | writes per fsync "
          "| p99 latency | non-2xx |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for policy, conns, rps, fps, wpf, p99, bad in rows:
        print("| %s | %d | %.0f | %.0f | %.1f | %.1f ms | %d |"
              % (policy, conns, rps, fps, wpf, p99, bad))
    single = [r for r in rows if r[0] == "always" and r[1] == 1][0][2]
    top = [r for r in rows if r[0] == "always" and r[1] == 64][0][2]
    print()
    print("64 writers / 1 writer: %.1fx; 1 writer / raw fdatasync rate: %.2f" % (top / single,
                                                                               single / raw))
    subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
