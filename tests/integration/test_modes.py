"""Regression guards for the threading mode (docs/ARCHITECTURE.md, bench/modes/).

The shipped mode is a pool of poll() workers with suspend/resume. These tests
fail on the libmicrohttpd 0.9.75 modes the project rejected:
  - pool + epoll leaves uploads that die with the data and FIN arriving
    together until the connection timeout (test_aborted_uploads_reaped_at_once);
  - a single epoll worker stalls when exactly 128, 256 or 512 connections are
    ready at once (test_no_stall_at_128_256_512);
  - thread-per-connection delays a resumed (deferred) request until its
    connection's poll times out, and a handler that blocks its worker stalls
    the pool (test_waiting_request_does_not_stall_others).
Every loop is bounded in count and time.
"""
import http.client
import os
import selectors
import signal
import socket
import struct
import threading
import time

import cairn

UPLOAD_HEAD = (b"POST /_debug/echo HTTP/1.1\r\nHost: modes\r\nContent-Type: application/json\r\n"
               b"Content-Length: 100000\r\n\r\n" + b"[1,2,3,4,")
TERMS = ("completed_ok", "with_error", "timeout_reached", "daemon_shutdown", "read_error",
         "client_abort")


def faults_binary():
    if not os.path.exists(cairn.FAULTS_BINARY):
        raise AssertionError("the FAULTS build is needed (make FAULTS=1): %s" % cairn.FAULTS_BINARY)
    return cairn.FAULTS_BINARY


def outstanding(st):
    """Request contexts not freed, less the one of the stats request that reported them."""
    c = st["counters"]
    return c["request_contexts_created"] - c["request_contexts_freed"] - 1


class Counted:
    """d.stats() that knows how many contexts its own requests created."""

    def __init__(self, d):
        self.d = d
        self.calls = 0
        first = self()
        self.created0 = first["counters"]["request_contexts_created"]
        self.calls0 = self.calls
        self.first = first

    def __call__(self):
        self.calls += 1
        return self.d.stats()

    def by_clients(self, st):
        """Contexts created since construction by requests other than these stats calls."""
        return st["counters"]["request_contexts_created"] - self.created0 - (self.calls - self.calls0)


def settle(stats, open0, expect_created, timeout):
    """Waits until expect_created client contexts exist and all are freed, and
    open connections are back to open0. Returns (last stats, ok)."""
    deadline = time.time() + timeout
    while True:
        st = stats()
        # open0 + 1: the previous stats connection may not be reaped yet
        if (stats.by_clients(st) >= expect_created and outstanding(st) == 0
                and st["gauges"]["open_connections"] <= open0 + 1):
            return st, True
        if time.time() >= deadline:
            return st, False
        time.sleep(0.02)


def _rst(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_aborted_uploads_reaped_at_once():
    d = cairn.Daemon(binary=faults_binary(), settings={"connection_timeout": 30})
    try:
        stats = Counted(d)
        s0 = stats.first
        open0 = s0["gauges"]["open_connections"]

        # 1: 100 uploads die at once: headers, 10 body bytes and the FIN arrive together
        for _ in range(100):
            s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
            s.sendall(UPLOAD_HEAD)
            s.close()
        t0 = time.time()
        st, ok = settle(stats, open0, 100, 2.0)
        assert ok, ("aborted uploads not reaped within 2 s (connection_timeout 30): %d of %d "
                    "contexts outstanding, %d connections open (baseline %d); terminations %r"
                    % (outstanding(st), stats.by_clients(st), st["gauges"]["open_connections"],
                       open0, st["terminations"]))
        reaped = time.time() - t0

        # 2: 100 uploads reach the handler first, then 50 close with FIN and 50 with RST
        socks = []
        try:
            for _ in range(100):
                s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
                s.sendall(UPLOAD_HEAD)
                socks.append(s)
            assert d.wait_for(lambda: stats.by_clients(stats()) >= 200, timeout=5), \
                "100 uploads did not reach the handler"
        finally:
            for i, s in enumerate(socks):
                if i % 2:
                    _rst(s)
                s.close()
        st, ok = settle(stats, open0, 200, 2.0)
        assert ok, ("aborted uploads (FIN/RST) not reaped within 2 s: %d of %d contexts "
                    "outstanding, %d connections open (baseline %d); terminations %r"
                    % (outstanding(st), stats.by_clients(st), st["gauges"]["open_connections"],
                       open0, st["terminations"]))

        term = {k: st["terminations"][k] - s0["terminations"][k] for k in TERMS}
        assert stats.by_clients(st) == 200, stats.by_clients(st)
        assert term["timeout_reached"] == 0, term
        assert term["client_abort"] >= 150, term   # batch 1 and the FIN half of batch 2
        assert term["read_error"] >= 50, term      # the RST half of batch 2
        print("# aborted uploads: first batch reaped in %.2f s; terminations %r" % (reaped, term))
        assert d.stop() == 0
    finally:
        d.cleanup()


def test_waiting_request_does_not_stall_others():
    d = cairn.Daemon(binary=faults_binary(), settings={"threads": 1, "connection_timeout": 30})
    try:
        results = []
        lock = threading.Lock()

        def sleeper():
            t = time.time()
            try:
                c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
                c.request("GET", "/_debug/sleep?ms=2000")
                r = c.getresponse()
                body = r.read()
                c.close()
                ok = r.status == 200 and b"slept" in body
            except Exception as e:  # reported below
                ok = repr(e)
            with lock:
                results.append((ok, time.time() - t))

        keep = http.client.HTTPConnection("127.0.0.1", d.port, timeout=5)
        keep.request("GET", "/healthz")
        keep.getresponse().read()
        threads = [threading.Thread(target=sleeper, daemon=True) for _ in range(4)]
        t0 = time.time()
        for t in threads:
            t.start()
        # the sleepers are in (deferred) before the probes start
        assert d.wait_for(lambda: d.stats()["gauges"]["requests_in_flight"] >= 5, timeout=1.5), \
            "the 4 sleeping requests did not start"
        worst = 0.0
        for i in range(20):
            t = time.time()
            if i % 2:
                c = keep
            else:
                c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=5)
            c.request("GET", "/healthz")
            r = c.getresponse()
            r.read()
            if c is not keep:
                c.close()
            ms = (time.time() - t) * 1000
            worst = max(worst, ms)
            assert r.status == 200
            assert ms < 200, "GET /healthz took %.0f ms while 4 requests waited" % ms
        during = time.time() - t0
        assert during < 2.0, "the probes ran %.2f s: not all while the sleepers waited" % during
        for t in threads:
            t.join(10)
        keep.close()
        assert len(results) == 4 and all(ok is True for ok, _ in results), results
        slowest = max(s for _, s in results)
        assert 1.9 < slowest < 4.0, "a 2 s sleep was answered after %.2f s" % slowest
        print("# /healthz worst %.1f ms while 4 requests slept; sleepers answered in <= %.2f s"
              % (worst, slowest))
        assert d.stop() == 0
    finally:
        d.cleanup()


def _reply_complete(b):
    """True once b holds one whole 200 reply with a Content-Length body."""
    head, sep, body = b.partition(b"\r\n\r\n")
    if not sep:
        return False
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    raise AssertionError("a reply without Content-Length: %r" % head[:200])


def _all_answered(d, n, rounds=3, timeout=8.0):
    """Opens n keep-alive connections; per round, sends one GET /healthz on every
    one while the daemon is stopped (SIGSTOP), so all n are ready at once when it
    continues, then waits for n complete replies. Returns (rounds done, answered in
    the failing round or n, seconds of the slowest round)."""
    socks = []
    sel = selectors.DefaultSelector()
    req = b"GET /healthz HTTP/1.1\r\nHost: modes\r\n\r\n"
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
            s.setblocking(False)
            socks.append(s)
        # every connection accepted before the burst (plus the stats connection itself)
        assert d.wait_for(lambda: d.stats()["gauges"]["open_connections"] >= n + 1, timeout=5), \
            "the daemon did not accept %d connections" % n
        slowest = 0.0
        for rnd in range(rounds):
            os.kill(d.pid(), signal.SIGSTOP)
            try:
                deadline = time.time() + 2
                while time.time() < deadline:  # wait until really stopped
                    with open("/proc/%d/stat" % d.pid()) as f:
                        if f.read().rsplit(")", 1)[1].split()[0] == "T":
                            break
                    time.sleep(0.005)
                for s in socks:
                    s.send(req)
            finally:
                os.kill(d.pid(), signal.SIGCONT)
            t0 = time.time()
            bufs = {s.fileno(): b"" for s in socks}
            done = set()
            for s in socks:
                sel.register(s, selectors.EVENT_READ)
            try:
                while len(done) < n and time.time() - t0 < timeout:
                    for key, _ in sel.select(timeout=0.2):
                        s = key.fileobj
                        data = s.recv(65536)
                        if not data:
                            raise AssertionError("the daemon closed a keep-alive connection")
                        bufs[s.fileno()] += data
                        if _reply_complete(bufs[s.fileno()]):
                            done.add(s.fileno())
                            sel.unregister(s)
            finally:
                for s in socks:
                    if s.fileno() not in done:
                        sel.unregister(s)
            slowest = max(slowest, time.time() - t0)
            if len(done) < n:
                return rnd, len(done), slowest
        return rounds, n, slowest
    finally:
        sel.close()
        for s in socks:
            s.close()


def test_no_stall_at_128_256_512():
    for threads, counts in ((1, (127, 128, 256, 512)), (2, (128, 256, 512))):
        d = cairn.Daemon(settings={"threads": threads, "connection_timeout": 30,
                                   "max_connections": 1024})
        try:
            for n in counts:
                rounds, answered, slowest = _all_answered(d, n)
                assert answered == n, ("threads=%d: %d keep-alive connections ready at once: only %d "
                                       "answered within 8 s in round %d (a stall)"
                                       % (threads, n, answered, rounds + 1))
                assert slowest < 5.0, slowest
            assert d.wait_for(lambda: outstanding(d.stats()) == 0, timeout=3), d.stats()["counters"]
            assert d.stop() == 0
        finally:
            d.cleanup()


def _read_replies(sel, socks, want, deadline):
    """Reads until each socket in 'socks' has 'want' replies (counted by status lines) or the
    deadline; returns {fileno: time the last wanted reply arrived}."""
    bufs = {s.fileno(): b"" for s in socks}
    done = {}
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    try:
        while len(done) < len(socks) and time.time() < deadline:
            for key, _ in sel.select(timeout=0.2):
                s = key.fileobj
                try:
                    chunk = s.recv(1 << 20)
                except OSError:
                    chunk = b""
                fd = s.fileno()
                bufs[fd] += chunk
                if bufs[fd].count(b"HTTP/1.1 200") >= want or not chunk:
                    done[fd] = time.time()
                    sel.unregister(s)
    finally:
        for s in socks:
            if s.fileno() not in done:
                sel.unregister(s)
    return {fd: t for fd, t in done.items() if bufs[fd].count(b"HTTP/1.1 200") >= want}


def test_new_connections_accepted_while_busy():
    # libmicrohttpd 0.9.75's poll loop accepted one connection per iteration, and an
    # iteration serves every ready connection: under load the connections that arrived
    # last waited for hundreds of iterations (S7's p99 in docs/PERFORMANCE.md). A cairnd
    # worker that took a connection takes the rest of the backlog in a burst. Here one worker has 300 connections with
    # 150 pipelined requests each queued (one is served per connection per iteration),
    # and 300 new connections then send one request each: they must all be answered long
    # before the backlog is worked off (one connection per iteration: at its end).
    busy, pipelined, new = 300, 150, 300
    d = cairn.Daemon(settings={"threads": 1, "max_connections": 1024, "connection_timeout": 60})
    sel = selectors.DefaultSelector()
    olds, news = [], []
    try:
        req = b"GET /healthz HTTP/1.1\r\nHost: busy\r\n\r\n"
        for _ in range(busy):
            olds.append(socket.create_connection(("127.0.0.1", d.port), timeout=10))
        for s in olds:
            s.sendall(req)
        assert len(_read_replies(sel, olds, 1, time.time() + 20)) == busy
        for s in olds:
            s.setblocking(False)
            s.sendall(req * pipelined)
        t0 = time.time()
        for _ in range(new):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", d.port))
            news.append(s)
        for s in news:
            sel.register(s, selectors.EVENT_WRITE)
        pending = set(s.fileno() for s in news)
        while pending and time.time() < t0 + 20:
            for key, _ in sel.select(timeout=0.2):
                key.fileobj.send(req)
                sel.unregister(key.fileobj)
                pending.discard(key.fileobj.fileno())
        assert not pending
        got_new = _read_replies(sel, news, 1, time.time() + 30)
        t_new = max(got_new.values()) - t0 if got_new else float("inf")
        got_old = _read_replies(sel, olds, pipelined, time.time() + 60)
        t_old = max(got_old.values()) - t0 if got_old else float("inf")
        assert len(got_new) == new and len(got_old) == busy, (len(got_new), len(got_old))
        assert t_new < t_old / 3, ("the last new connection was answered after %.2f s, the busy "
                                   "backlog took %.2f s" % (t_new, t_old))
        st = d.stats()
        assert st["counters"]["connections_refused"] == 0, st["counters"]
        # the burst did it (this test fails without one), and every socket it queued is open
        assert st["counters"]["connections_burst_accepted"] > 0, st["counters"]
        assert st["gauges"]["connections_live"] == st["gauges"]["open_connections"], st["gauges"]
        assert d.stop() == 0
    finally:
        sel.close()
        for s in olds + news:
            s.close()
        d.cleanup()



def test_watchdog_probe_answers_when_full():
    # the watchdog's self-probe does not go through the listening socket: with
    # max_connections (and the per-IP limit for 127.0.0.1) taken, it is still served and the
    # keep-alives go on -- a full daemon is not a hung one
    import tempfile
    tmp = tempfile.mkdtemp(prefix="cairn-notify-")
    path = os.path.join(tmp, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.2)
    d = cairn.Daemon(settings={"threads": 2, "max_connections": 3, "max_connections_per_ip": 3},
                     env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "600000"})
    held = []
    try:
        held = [cairn.held_connection(d.port) for _ in range(3)]
        s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                assert s.recv(4096) == b"", "a 4th connection was served"
            except ConnectionResetError:
                pass
        finally:
            s.close()
        # drain what came before the daemon was full, then count keep-alives while it is
        t_end = time.time() + 0.3
        while time.time() < t_end:
            try:
                sock.recv(4096)
            except socket.timeout:
                pass
        pings = 0
        t_end = time.time() + 1.5
        while time.time() < t_end:
            try:
                if b"WATCHDOG=1" in sock.recv(4096):
                    pings += 1
            except socket.timeout:
                pass
        assert pings >= 3, (pings, d.log()[-2000:])
        assert "did not answer a probe" not in d.log(), d.log()[-2000:]
        for c in held:
            c.close()
        held = []
        def stats():
            try:
                return d.get("/v1/_stats").json()
            except (ConnectionError, OSError):
                return None
        st = d.wait_for(stats)
        assert st["counters"]["watchdog_probes_failed"] == 0, st["counters"]
        # the probes' slots are given back too: only this request's connection is left
        st = d.wait_for(lambda: (lambda s: s if s and s["gauges"]["connections_live"] <= 2 and
                                 s["gauges"]["connections_live"] ==
                                 s["gauges"]["open_connections"] else None)(stats()))
        assert st, stats()["gauges"]
        assert d.stop() == 0
    finally:
        for c in held:
            c.close()
        sock.close()
        os.unlink(path)
        os.rmdir(tmp)
        d.cleanup()


def _worker_ticks(pid):
    """{tid: utime+stime clock ticks} of libmicrohttpd's threads, by their names."""
    out = {}
    for task in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, task)) as f:
                name = f.read().strip()
            with open("/proc/%d/task/%s/stat" % (pid, task)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if name.startswith("MHD-"):
            out[(name, int(task))] = int(fields[11]) + int(fields[12])
    return out


def _worker_names(pid, want):
    """libmicrohttpd's thread names once they equal want, or as they are after 10 s: a worker
    names itself when it starts running, which may be after the daemon first answers."""
    deadline = time.monotonic() + 10
    while True:
        names = sorted(n for n, _ in _worker_ticks(pid))
        if names == want or time.monotonic() > deadline:
            return names
        time.sleep(0.02)


def test_thread_pool_size_is_honoured():
    # MHD_OPTION_THREAD_POOL_SIZE (microhttpd.h warns some versions ignore the pool size with
    # some flags): threads = 1 runs one internal thread, threads = 2 and 3 that many pool
    # workers, and under load from keep-alive clients every worker serves
    for threads in (1, 2, 3):
        d = cairn.Daemon(settings={"threads": threads})
        try:
            want = ["MHD-single"] if threads == 1 else ["MHD-worker"] * threads
            names = _worker_names(d.pid(), want)
            assert names == want, names
            # libmicrohttpd 0.9.75 warns when handed a pool size of 0: none is passed then
            assert " warning " not in d.log(), d.log()
            if threads == 2:
                def client():
                    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
                    for _ in range(400):
                        c.request("GET", "/v1/_stats")
                        r = c.getresponse()
                        r.read()
                        assert r.status == 200
                    c.close()
                ts = [threading.Thread(target=client) for _ in range(8)]
                for t in ts:
                    t.start()
                for t in ts:
                    t.join()
                ticks = _worker_ticks(d.pid())
                assert len(ticks) == 2 and min(ticks.values()) > 0, ticks
            assert d.stop() == 0
        finally:
            d.cleanup()
