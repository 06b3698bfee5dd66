"""The durable store against the real binary (docs/DURABILITY.md, RELIABILITY.md T11-T13):
data dir lock and modes, group commit, snapshots and compaction, metrics, ENOSPC on a small
tmpfs in a private mount namespace, EIO injected into fdatasync and pwrite with strace, and
a slow disk (fdatasync delayed 200 ms) that must not slow reads.
"""
import json
import multiprocessing
import os
import shutil
import signal
import stat
import struct
import threading
import time
import http.client

import cairn
import durability as du

BIN = cairn.BINARY
SLOW = du.sanitized(BIN)


def _always(extra=None):
    s = {"store.sync": "always", "log_level": "info"}
    s.update(extra or {})
    return s


def test_data_dir_is_locked_and_private():
    d = cairn.Daemon(settings=_always(), start=False)
    try:
        data = os.path.join(d.dir, "fresh", "data")
        os.makedirs(os.path.dirname(data))
        d.settings["store.data_dir"] = data
        d.write_config(d.settings)
        d.start()
        assert d.request("POST", "/v1/posts", {"t": 1}).status == 201
        assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
        for name in os.listdir(data):
            assert stat.S_IMODE(os.stat(os.path.join(data, name)).st_mode) == 0o600, name
        # a second daemon on the same data dir
        status, out = du.run_to_exit(BIN, d.config_path, timeout=20)
        assert status == 75, (status, out)
        assert "in use by another cairnd (pid %d)" % d.pid() in out, out
        assert d.stop() == 0
        status, out = du.run_to_exit(BIN, d.config_path, args=["--check-config"])
        assert status == 0
    finally:
        d.cleanup()


def test_group_commit_shares_fsyncs():
    d = cairn.Daemon(settings=_always({"threads": 2}))
    try:
        n_threads, per = 32, 20 if not SLOW else 5
        errors = []

        def writer(w):
            c = d.conn()
            for i in range(per):
                try:
                    r = d.request("POST", "/v1/gc", {"w": w, "i": i}, conn=c)
                    if r.status != 201:
                        errors.append(r)
                except Exception as e:  # noqa: BLE001 -- reported below
                    errors.append(e)
            c.close()

        s0 = d.stats()["counters"]
        ts = [threading.Thread(target=writer, args=(w,)) for w in range(n_threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not errors, errors[:3]
        st = d.stats()
        c = st["counters"]
        writes = c["store_fsync_writes"] - s0["store_fsync_writes"]
        fsyncs = c["store_fsyncs"] - s0["store_fsyncs"]
        assert writes == n_threads * per, (writes, c)
        assert fsyncs < writes, (fsyncs, writes)  # shared
        assert st["gauges"]["store_durable_revision"] == n_threads * per
        assert st["gauges"]["store_commit_queue"] == 0
        print("# group commit: %d writes in %d fsyncs (%.1f per fsync)"
              % (writes, fsyncs, writes / max(1, fsyncs)))
        assert d.stop() == 0
    finally:
        d.cleanup()


def test_snapshot_on_request_size_and_shutdown():
    d = cairn.Daemon(settings=_always({"store.compact_bytes": 65536}))
    try:
        r = d.request("POST", "/v1/_admin/snapshot")
        assert r.status == 200 and r.json()["revision"] == 0, r
        for i in range(10):
            d.request("POST", "/v1/notes", {"i": i})
        r = d.request("POST", "/v1/_admin/snapshot")
        body = r.json()
        assert r.status == 200 and body["revision"] == 10 and body["bytes"] > 0, r
        assert [os.path.basename(p) for p in du.snapshots(d.data_dir)] == ["snap.%020d" % 10]
        assert [os.path.basename(p) for p in du.segments(d.data_dir)] == ["log.%020d" % 11]
        # past compact_bytes the log snapshots by itself
        for i in range(200):
            assert d.request("POST", "/v1/notes", {"i": i, "pad": "x" * 1000}).status == 201
        assert d.wait_for(lambda: d.stats()["counters"]["store_snapshots"] >= 3, timeout=10)
        # the last snapshot the writes triggered may still be running
        assert d.wait_for(lambda: d.stats()["gauges"]["store_log_bytes"] < 65536 + 4096, 10), \
            d.stats()["gauges"]
        st = d.stats()["gauges"]
        assert st["store_snapshot_revision"] > 10
        assert st["store_snapshot_age_seconds"] < 60
        m = d.get("/metrics").body.decode()
        for name in ("cairn_store_durable_revision", "cairn_store_log_bytes", "cairn_store_fsyncs_total",
                     "cairn_store_fsync_writes_total", "cairn_store_snapshot_age_seconds",
                     "cairn_store_snapshot_duration_ms", "cairn_store_recovery_ms",
                     "cairn_store_read_only"):
            assert "\n%s " % name in m, name
        etag = d.get("/v1/notes/5").headers["etag"]
        rev = int(d.get("/v1").headers["x-revision"])
        assert d.stop() == 0
        # a clean stop leaves one snapshot at the last revision and an empty log
        assert [os.path.basename(p) for p in du.snapshots(d.data_dir)] == ["snap.%020d" % rev]
        d.start()
        assert d.get("/v1/notes/5").headers["etag"] == etag
        assert int(d.get("/v1").headers["x-revision"]) == rev
        assert d.stats()["gauges"]["store_recovery_ms"] >= 0
        assert d.stop() == 0
    finally:
        d.cleanup()


def test_sync_periodic_and_none():
    for policy in ("periodic", "none"):
        d = cairn.Daemon(settings=_always({"store.sync": policy, "store.sync_interval_ms": 50}))
        try:
            for i in range(20):
                assert d.request("POST", "/v1/p", {"i": i}).status == 201
            if policy == "periodic":
                assert d.wait_for(lambda: d.stats()["gauges"]["store_durable_revision"] == 20, 3)
            d.stop(signal.SIGKILL)  # the page cache keeps what was written
            d.start()
            assert len(d.get("/v1/p").json()) == 20
            assert d.stop() == 0
        finally:
            d.cleanup()


# ---- ENOSPC ----

def test_enospc_507_reads_go_on_and_writes_come_back():
    ns = du.Namespace(os.path.join("/tmp", "cairn-enospc-%d" % os.getpid()), "2m")
    d = None
    try:
        data = os.path.join(ns.mountpoint, "data")
        d = du.make_daemon(settings=_always({"store.data_dir": data,
                                             "store.compact_bytes": 1 << 30}),
                           prefix=ns.prefix())
        d.start()
        acked = {}
        for i in range(5):
            r = d.request("POST", "/v1/big", {"i": i, "pad": "a" * 3000})
            assert r.status == 201
            acked[r.json()["id"]] = r.json()
        r = d.request("POST", "/v1/_admin/snapshot")
        assert r.status == 200, r
        old_snap = os.path.basename(du.snapshots(ns.path("data"))[0])
        # fill the file system with a hog the test can remove
        with open(ns.path("hog"), "wb") as f:
            try:
                while True:
                    f.write(b"h" * 65536)
                    f.flush()
            except OSError:
                pass
        # writes fail with 507 problem+json and change nothing; reads go on
        full = 0
        for i in range(40):
            r = d.request("POST", "/v1/big", {"i": 100 + i, "pad": "b" * 3000})
            if r.status == 201:
                acked[r.json()["id"]] = r.json()
                continue
            assert r.status == 507, r
            assert r.headers["content-type"] == "application/problem+json", r.headers
            assert r.json()["status"] == 507 and "full" in r.json()["detail"], r.json()
            full += 1
        assert full > 0
        assert d.stats()["counters"]["store_writes_enospc"] == full
        rev = int(d.get("/v1").headers["x-revision"])
        assert rev == len(acked), (rev, len(acked))  # failed writes took no revision
        for k, v in acked.items():
            assert d.get("/v1/big/%s" % k).json() == v
        assert d.get("/readyz").status == 200  # disk full is not an I/O error
        # a snapshot on a full disk fails, keeps the old one and leaves no temp file
        r = d.request("POST", "/v1/_admin/snapshot")
        assert r.status == 507, r
        names = os.listdir(ns.path("data"))
        assert old_snap in names and not [n for n in names if n.endswith(".tmp")], names
        # space comes back: writes work again at once, without a restart
        os.unlink(ns.path("hog"))
        t0 = time.time()
        r = d.request("POST", "/v1/big", {"i": 999, "pad": "c" * 3000})
        assert r.status == 201 and time.time() - t0 < 1.0, r
        acked[r.json()["id"]] = r.json()
        # and the log is sound: a restart (same file system) has every acknowledged write
        assert d.stop() == 0
        d.start()
        got = {doc["id"]: doc for doc in d.get("/v1/big").json()}
        assert got == acked
        assert d.stop() == 0
    finally:
        if d is not None:
            d.cleanup()
        ns.close()


# ---- EIO ----

def _traced(inject, settings=None, trace="fdatasync"):
    prefix = ["strace", "-f", "--seccomp-bpf", "-qq", "-o", "/dev/null",
              "-e", "trace=%s" % trace, "-e", "inject=%s" % inject]
    return du.make_daemon(settings=_always(settings), prefix=prefix)


def _eio_case(inject, ok_before, trace="fdatasync", settings=None):
    d = _traced(inject, settings=settings, trace=trace)
    notify = du.NotifyListener(os.path.join(d.dir, "notify.sock"))
    d.env["NOTIFY_SOCKET"] = notify.path
    try:
        d.start()
        acked = []
        for i in range(ok_before):
            r = d.request("POST", "/v1/e", {"i": i})
            assert r.status == 201, r
            acked.append(r.json())
        # the write whose fsync (or append) fails: 5xx, never 2xx
        r = d.request("POST", "/v1/e", {"i": "doomed"})
        assert 500 <= r.status < 600, r
        assert r.headers["content-type"] == "application/problem+json"
        # read-only from now on: writes 503, reads fine, readiness degraded, flag set, STATUS=
        for body in ({"i": "later"}, {"i": "later2"}):
            r = d.request("POST", "/v1/e", body)
            assert r.status == 503 and "read-only" in r.json()["detail"], r
        assert d.request("DELETE", "/v1/e/1").status == 503
        assert d.request("POST", "/v1/_admin/snapshot").status == 503
        assert d.get("/v1/e").status == 200
        r = d.get("/readyz")
        assert r.status == 503 and "degraded" in r.json()["detail"], r
        assert d.stats()["gauges"]["store_read_only"] == 1
        assert d.wait_for(lambda: any("STATUS=degraded" in m for m in notify.messages), 2), \
            notify.messages
        assert "read-only until restart" in d.log()
        assert du.stop_traced(d) == 0
        # after a restart (no fault) every acknowledged write is there
        d.binary = d.real_binary
        d.start()
        got = d.get("/v1/e").json()
        for doc in acked:
            assert doc in got, (doc, got)
        assert all(doc["i"] not in ("later", "later2") for doc in got), got
        assert len(got) in (len(acked), len(acked) + 1)  # the doomed one: either way
        assert d.get("/readyz").status == 200
        assert d.stop() == 0
    finally:
        notify.close()
        d.cleanup()


def test_eio_on_first_fdatasync():
    _eio_case("fdatasync:error=EIO:when=1", 0)


def test_eio_on_third_fdatasync():
    _eio_case("fdatasync:error=EIO:when=3", 2)


def test_eio_on_log_write():
    # strace counts calls per thread: one worker thread makes every append
    _eio_case("pwrite64:error=EIO:when=3", 2, trace="pwrite64", settings={"threads": 1})


# ---- a slow disk does not slow reads ----

def _write_load(port, writers, stop):
    """In a child process (its own GIL): 'writers' threads POST as fast as they can."""
    def writer(w):
        i = 0
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while not stop.is_set():
            i += 1
            try:
                c.request("POST", "/v1/slow", body=json.dumps({"w": w, "i": i}),
                          headers={"Content-Type": "application/json"})
                c.getresponse().read()
            except (OSError, http.client.HTTPException):
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.close()

    ts = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def _read_p99(d, seconds, writers):
    """p99 of GETs (ms) while another process keeps 'writers' writes in flight."""
    ctx = multiprocessing.get_context("fork")
    stop = ctx.Event()
    load = ctx.Process(target=_write_load, args=(d.port, writers, stop))
    load.start()
    time.sleep(0.5)
    lat = []
    c = d.conn()
    deadline = time.time() + seconds
    while time.time() < deadline:
        t0 = time.perf_counter()
        r = d.request("GET", "/v1/docs/1", conn=c)
        lat.append((time.perf_counter() - t0) * 1000)
        assert r.status == 200
    c.close()
    stop.set()
    load.join(30)
    lat.sort()
    return lat[int(len(lat) * 0.99)], len(lat)


def test_slow_fsync_does_not_slow_reads():
    """RELIABILITY.md T13. The same FAULTS binary with and without CAIRN_IO_DELAY (a 200 ms
    sleep before each log fdatasync, outside every lock): read p99 within 2x (or 2 ms, the
    noise floor of a shared 2-core VM). Then the same under strace's delay_enter, which adds
    ptrace costs of its own: there the bound is that no read waits for an fsync (p99 < 100 ms)."""
    seconds = 3 if not SLOW else 2
    results = {}
    for name, env, prefix in (
            ("normal", {}, None),
            ("fdatasync +200 ms", {"CAIRN_IO_DELAY": "log-sync:200000"}, None),
            ("strace delay_enter=200ms", {}, ["strace", "-f", "--seccomp-bpf", "-qq", "-o",
                                              "/dev/null", "-e", "trace=fdatasync", "-e",
                                              "inject=fdatasync:delay_enter=200000"])):
        d = du.make_daemon(binary=cairn.FAULTS_BINARY, settings=_always({"threads": 2}), env=env,
                           prefix=prefix)
        try:
            d.start()
            assert d.request("POST", "/v1/docs", {"id": 1, "t": "x" * 200}).status == 201
            s0 = d.stats()["counters"]
            p99, n = _read_p99(d, seconds, 8)
            s1 = d.stats()["counters"]
            fsyncs = s1["store_fsyncs"] - s0["store_fsyncs"]
            results[name] = (p99, n, fsyncs)
            print("# read p99 %-26s %6.2f ms (%d reads; %d fsyncs under 8 writers)"
                  % (name + ":", p99, n, fsyncs))
            assert du.stop_traced(d) == 0
        finally:
            d.cleanup()
    p_normal, _, f_normal = results["normal"]
    p_slow, _, f_slow = results["fdatasync +200 ms"]
    assert f_slow <= seconds * 5 + 5 < f_normal, (f_slow, f_normal)  # the delay was real
    assert p_slow <= max(2 * p_normal, p_normal + 2.0), (p_normal, p_slow)
    assert results["strace delay_enter=200ms"][0] < 100, results


def test_eio_on_the_snapshot_rotation_sync_is_fail_stop():
    """The rotation before a snapshot fdatasyncs the old segment; when that fails (with any
    errno) the store turns read-only at once, as for the committer's own sync."""
    # ENOSPC from fdatasync means lost pages just as EIO does: not a "disk full, try later"
    d = _traced("fdatasync:error=ENOSPC:when=1", settings={"store.sync": "none"})
    try:
        d.start()
        for i in range(3):
            assert d.request("POST", "/v1/r", {"i": i}).status == 201
        r = d.request("POST", "/v1/_admin/snapshot")
        assert 500 <= r.status < 600, r
        r = d.request("POST", "/v1/r", {"i": "after"})
        assert r.status == 503 and "read-only" in r.json()["detail"], r
        assert d.get("/readyz").status == 503
        assert d.stats()["gauges"]["store_read_only"] == 1
        assert du.stop_traced(d) == 0
    finally:
        d.cleanup()


def test_failed_rotation_sync_advances_the_claim():
    """The rotation before a snapshot fdatasyncs the old segment. When the new segment then
    cannot be made (disk full on the directory fsync) the appends go on in the old one, and
    their records claim what that fdatasync covered (with sync = none nothing else syncs)."""
    d = cairn.Daemon(binary=cairn.FAULTS_BINARY,
                     settings={"store.sync": "none", "log_level": "info"},
                     env={"CAIRN_IO_FAIL": "log-create-dirsync:2:ENOSPC"}, start=False)
    try:
        d.start()
        for i in range(5):
            assert d.request("POST", "/v1/r", {"i": i}).status == 201
        seg = du.segments(d.data_dir)[-1]
        synced = os.path.getsize(seg)
        r = d.request("POST", "/v1/_admin/snapshot")
        assert r.status == 507, r
        assert du.segments(d.data_dir) == [seg]
        for i in range(3):
            assert d.request("POST", "/v1/r", {"i": "after %d" % i}).status == 201
        d.stop(signal.SIGKILL)
        offs, size = du.record_offsets(seg)
        with open(seg, "rb") as f:
            data = f.read()
        after = [off for off in offs if off >= synced]
        assert len(after) == 3, (offs, synced)
        for off in after:
            (claim,) = struct.unpack_from("<Q", data, off + 16)
            assert claim == synced, (off, claim, synced)
    finally:
        d.cleanup()


def test_oversized_record_is_413_and_changes_nothing():
    """A write whose log record would pass the record limit can never be logged: 413, not
    the 503 of a failing disk. The FAULTS build's CAIRN_RECORD_MAX lowers the 1 GiB limit."""
    d = du.make_daemon(binary=cairn.FAULTS_BINARY, settings=_always(),
                       env={"CAIRN_RECORD_MAX": "2048"})
    try:
        d.start()
        assert d.request("POST", "/v1/big", {"id": 1, "t": "x" * 100}).status == 201
        rev = d.stats()["gauges"]["store_revision"]
        for method, path in (("POST", "/v1/big"), ("PUT", "/v1/big/1"), ("PUT", "/v1/one")):
            r = d.request(method, path, {"t": "x" * 3000})
            doc = cairn.problem(r, 413)
            assert "record limit" in doc["detail"] and "nothing changed" in doc["detail"], doc
            assert "(2048 bytes)" in doc["detail"], doc  # the limit in force, not the default
        assert d.stats()["gauges"]["store_revision"] == rev
        assert d.get("/v1/big/1").json()["t"] == "x" * 100
        assert d.request("POST", "/v1/big", {"t": "small"}).status == 201  # writes go on
        assert d.get("/readyz").status == 200
        assert d.stop() == 0
    finally:
        d.cleanup()


def test_pending_writes_are_bounded_503_retry_after():
    """Past store.max_pending_writes writes waiting for the committer (here behind a 300 ms
    fsync), a write gets 503 problem+json with Retry-After, changes nothing and is counted."""
    d = du.make_daemon(binary=cairn.FAULTS_BINARY,
                       settings=_always({"threads": 2, "store.max_pending_writes": 4}),
                       env={"CAIRN_IO_DELAY": "log-sync:300000"})
    try:
        d.start()
        s0 = d.stats()
        results = []
        lock = threading.Lock()

        def writer(i):
            r = d.request("POST", "/v1/q", {"i": i})
            with lock:
                results.append(r)

        ts = [threading.Thread(target=writer, args=(i,)) for i in range(24)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        ok = [r for r in results if r.status == 201]
        busy = [r for r in results if r.status == 503]
        assert len(ok) + len(busy) == 24, [r.status for r in results]
        assert ok and busy, (len(ok), len(busy))
        for r in busy:
            doc = cairn.problem(r, 503)
            assert r.headers["retry-after"] == "1", r.headers
            assert "max_pending_writes" in doc["detail"] and "nothing changed" in doc["detail"]
        s1 = d.stats()
        assert (s1["counters"]["store_writes_busy"] - s0["counters"]["store_writes_busy"]
                == len(busy))
        # the bound held: no batch larger than it plus the worker threads (checked unlocked)
        assert 0 < s1["gauges"]["store_last_batch_writes"] <= 4 + 2, s1["gauges"]
        # and what it counts drains back to nothing
        assert d.wait_for(lambda: d.stats()["gauges"]["store_writes_pending"] == 0, 5), \
            d.stats()["gauges"]
        assert b"\ncairn_store_writes_pending 0\n" in d.get("/metrics").body
        # nothing changed: one revision per 201, and the list holds exactly those docs
        assert s1["gauges"]["store_revision"] - s0["gauges"]["store_revision"] == len(ok)
        assert sorted(x["i"] for x in d.get("/v1/q").json()) == \
            sorted(r.json()["i"] for r in ok)
        assert b"cairn_store_writes_busy_total %d" % len(busy) in d.get("/metrics").body
        assert d.request("POST", "/v1/q", {"i": "later"}).status == 201  # nothing stuck
        assert d.stop() == 0
    finally:
        d.cleanup()
