#!/usr/bin/env python3
"""bench/callgrind_client.py -- instructions per request of cairnd under callgrind.

    callgrind_client.py --port P --pid PID --requests N --nids K --dir D --out TSV
    callgrind_client.py --annotate DIR      # top functions of each batch's dump

bench/run.sh starts `valgrind --tool=callgrind --callgrind-out-file=D/cg.out
cairnd ...` and then this client, which waits for cairnd to answer, warms it
up, and for each batch: zeroes the counters (callgrind_control -z), sends N
requests one after another on one keep-alive connection, and dumps
(callgrind_control -d NAME). A dump holds the instructions executed by every
thread of cairnd since the zeroing: the batch's requests and nothing else
but the idle work of the same wall time, which the "idle" batch (no requests,
as long as the S1 batch took) measures. Batches:

  s1    GET /v1/posts/{id}, ids from a fixed-seed generator over 1..K
  s2    GET /v1/comments (the ~10 KB list)
  idle  no requests
"""
import argparse
import glob
import http.client
import os
import random
import re
import subprocess
import sys
import time


def wait_ready(port, pid, limit=300):
    end = time.time() + limit
    while time.time() < end:
        try:
            os.kill(pid, 0)
        except OSError:
            sys.exit("cairnd exited before answering")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/healthz")
            r = c.getresponse()
            r.read()
            c.close()
            if r.status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit("cairnd did not answer within %d s" % limit)


def batch(conn, paths):
    for p in paths:
        conn.request("GET", p)
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            sys.exit("GET %s: %d" % (p, r.status))


def control(pid, *args):
    subprocess.run(["callgrind_control", *args, str(pid)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)


def dumps(d):
    """{trigger name: (path, Ir)} of the dump files in d."""
    out = {}
    for f in glob.glob(os.path.join(d, "cg.out*")):
        name = ir = None
        with open(f, errors="replace") as fh:
            for line in fh:
                m = re.match(r"desc: Trigger: (?:Client Request: |dump )(\S+)", line)
                if m:
                    name = m.group(1)
                m = re.match(r"summary: (\d+)", line)
                if m:
                    ir = int(m.group(1))
        if name:
            out[name] = (f, ir)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int)
    ap.add_argument("--pid", type=int)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--nids", type=int, default=10000)
    ap.add_argument("--dir")
    ap.add_argument("--out")
    ap.add_argument("--annotate", metavar="DIR")
    a = ap.parse_args()

    if a.annotate:
        for name, (path, ir) in sorted(dumps(a.annotate).items()):
            print("== batch %s: %s Ir (%s)" % (name, "{:,}".format(ir or 0), os.path.basename(path)))
            r = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", "--auto=no", path],
                               capture_output=True, text=True, timeout=120)
            # own (exclusive) cost per function; thread entry points show up with
            # their callees' cost (a callgrind_annotate quirk with zeroed counters)
            body = r.stdout.split("file:function", 1)[-1].split("\n-----", 2)
            body = body[1] if len(body) > 1 else ""
            lines = [l for l in body.splitlines() if re.match(r"\s*[\d,]+ \(", l)
                     and not re.search(r":clone |:start_thread |\(below main\)|libc_start", l)]
            print("\n".join(re.sub(r" \[/[^\]]*/([^/\]]+)\]$", r" [\1]", l) for l in lines[:20]))
            print()
        return

    wait_ready(a.port, a.pid)
    rng = random.Random(20240501)
    s1 = ["/v1/posts/%d" % rng.randint(1, a.nids) for _ in range(a.requests)]
    s2 = ["/v1/comments"] * a.requests
    conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=60)
    batch(conn, s1[:100] + s2[:100])  # warm-up: allocator, caches, the connection

    times = {}
    for name, paths in (("s1", s1), ("s2", s2), ("idle", None)):
        control(a.pid, "-z")
        t0 = time.time()
        if paths is None:
            time.sleep(times["s1"])
        else:
            batch(conn, paths)
        times[name] = time.time() - t0
        control(a.pid, "--dump=" + name)
    conn.close()
    time.sleep(0.5)
    got = dumps(a.dir)
    with open(a.out, "w") as f:
        f.write("batch\trequests\tIr\tIr_per_request\tseconds\n")
        for name in ("s1", "s2", "idle"):
            if name not in got:
                sys.exit("no dump for batch %s in %s" % (name, a.dir))
            ir = got[name][1]
            n = a.requests if name != "idle" else 0
            f.write("%s\t%d\t%d\t%s\t%.2f\n" % (name, n, ir, "%.0f" % (ir / n) if n else "-",
                                                times[name]))


if __name__ == "__main__":
    main()
