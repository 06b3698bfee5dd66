#!/usr/bin/env python3
"""Correctness probes for one cairnd build (a FAULTS build); prints one JSON line.

  probe.py --name NAME --binary PATH --threads N [--timeout S]

(a) abort_fin / abort_rst: 100 clients send the headers of a POST with
    Content-Length: 100000 and 10 body bytes, then close (FIN, or RST with
    SO_LINGER 0). How many request contexts are freed within 1 s, when all
    are, and with which termination codes (connection_timeout = --timeout).
(b) stall: 8 concurrent GET /_debug/sleep?ms=2000 (the handler defers with
    suspend/resume), while 10 /healthz on fresh connections and 10 on a
    keep-alive connection measure whether anything else is held up.
Every wait is bounded; the daemon is stopped with SIGTERM by the harness.
"""
import argparse
import http.client
import json
import os
import socket
import statistics
import struct
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "integration"))
import cairn  # noqa: E402

TERMS = ("completed_ok", "with_error", "timeout_reached", "daemon_shutdown", "read_error",
         "client_abort")


class Stats:
    """GET /v1/_stats, counting its own calls: each one creates a context too."""

    def __init__(self, d):
        self.d = d
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return self.d.stats()


def outstanding(st):
    """Contexts not yet freed, less the one of the stats request that reported them."""
    c = st["counters"]
    return c["request_contexts_created"] - c["request_contexts_freed"] - 1


def abort_probe(d, rst, n=100, timeout=10, wait_for_contexts=True):
    """n uploads abort after the headers and 10 body bytes.

    wait_for_contexts: close only once every request has reached the handler
    (FIN/RST arrives on its own); otherwise close right after sending, so the
    data and the FIN/RST arrive together.
    """
    stats = Stats(d)
    s0 = stats()
    base_calls = stats.calls
    created0 = s0["counters"]["request_contexts_created"]
    open0 = s0["gauges"]["open_connections"]
    head = (b"POST /_debug/echo HTTP/1.1\r\nHost: probe\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n" + b"[1,2,3,4,")

    def by_clients(st):
        return st["counters"]["request_contexts_created"] - created0 - (stats.calls - base_calls)

    socks = []
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
            s.sendall(head)
            if wait_for_contexts:
                socks.append(s)
            else:
                if rst:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
        if wait_for_contexts:
            d.wait_for(lambda: by_clients(stats()) >= n, timeout=5)
    finally:
        for s in socks:
            if rst:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
    t0 = time.time()
    at_1s = None
    all_freed = None
    waited = timeout + 5
    while time.time() - t0 < waited:
        st = stats()
        el = time.time() - t0
        left = outstanding(st)
        opened = st["gauges"]["open_connections"] - open0
        if at_1s is None and el >= 1.0:
            at_1s = (by_clients(st), left, opened)
        if left <= 0 and opened <= 0 and all_freed is None:
            all_freed = el
        if all_freed is not None and at_1s is not None:
            break
        time.sleep(0.05)
    end = stats()
    if at_1s is None:
        at_1s = (by_clients(end), outstanding(end), end["gauges"]["open_connections"] - open0)
    created = by_clients(end)
    term = {k: end["terminations"][k] - s0["terminations"][k] for k in TERMS}
    return {"created": created, "freed_1s": at_1s[0] - at_1s[1], "all_freed_s": all_freed,
            "open_1s": at_1s[2], "waited_s": waited, "term": term,
            "close": "after contexts" if wait_for_contexts else "at once"}


def timed_get(conn_factory, path):
    t = time.time()
    c = conn_factory()
    c.request("GET", path)
    r = c.getresponse()
    r.read()
    return r.status, (time.time() - t) * 1000.0, c


def stall_probe(d, sleepers=8, sleep_ms=2000):
    results = []
    lock = threading.Lock()

    def sleeper():
        t = time.time()
        try:
            c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=15)
            c.request("GET", "/_debug/sleep?ms=%d" % sleep_ms)
            r = c.getresponse()
            r.read()
            c.close()
            ok = r.status == 200
        except Exception:
            ok = False
        with lock:
            results.append((ok, time.time() - t))

    keep = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
    keep.request("GET", "/healthz")
    keep.getresponse().read()
    threads = [threading.Thread(target=sleeper, daemon=True) for _ in range(sleepers)]
    t0 = time.time()
    for t in threads:
        t.start()
    time.sleep(0.2)
    lat, ok, sent = [], 0, 0
    for i in range(20):
        sent += 1
        try:
            if i % 2 == 0:
                st, ms, c = timed_get(lambda: http.client.HTTPConnection("127.0.0.1", d.port, timeout=5),
                                      "/healthz")
                c.close()
            else:
                st, ms, _ = timed_get(lambda: keep, "/healthz")
            lat.append(ms)
            ok += st == 200
        except Exception:
            lat.append(5000.0)
        time.sleep(0.05)
    during = time.time() - t0
    for t in threads:
        t.join(15)
    keep.close()
    return {"healthz_sent": sent, "healthz_ok": ok, "healthz_median_ms": statistics.median(lat),
            "healthz_max_ms": max(lat), "healthz_done_after_s": during,
            "sleepers": sleepers, "sleepers_ok": sum(1 for r in results if r[0]),
            "sleeper_max_s": max((r[1] for r in results), default=0.0)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--binary", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--timeout", type=int, default=10)
    a = ap.parse_args()
    out = {"name": a.name, "binary": a.binary, "threads": a.threads, "timeout": a.timeout}
    d = cairn.Daemon(binary=a.binary, settings={
        "threads": a.threads, "connection_timeout": a.timeout, "max_connections": 4096,
        "max_body_bytes": 1 << 20, "log_level": "notice"})
    phases = [("abort_fin", lambda: abort_probe(d, rst=False, timeout=a.timeout)),
              ("abort_rst", lambda: abort_probe(d, rst=True, timeout=a.timeout)),
              ("abort_fin_now", lambda: abort_probe(d, rst=False, timeout=a.timeout,
                                                    wait_for_contexts=False)),
              ("abort_rst_now", lambda: abort_probe(d, rst=True, timeout=a.timeout,
                                                    wait_for_contexts=False)),
              ("stall", lambda: stall_probe(d))]
    try:
        for key, fn in phases:
            try:
                out[key] = fn()
            except Exception as e:  # record and go on: a probe reports, it does not stop
                out[key + "_error"] = repr(e)
        try:
            out["exit_status"] = d.stop(timeout=20)
        except Exception as e:
            out["exit_status"] = "did not exit on SIGTERM within 20 s: killed"
            out["stop_error"] = str(e)[-600:]
    finally:
        d.cleanup()
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
