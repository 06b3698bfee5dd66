"""Crash tests of the durable store (docs/DURABILITY.md, RELIABILITY.md T9, T9b, T10).

- kill -9 during write load at random moments, restart, check the history;
- a power-loss simulation (FAULTS build, src/store/iofault.c): the daemon crashes at a random
  I/O call after dropping every byte and directory change that was not fsynced, or random
  unsynced pages of it (holes of zeros or stale bytes with valid records after them);
- torn and corrupt logs and snapshots.

CAIRN_CRASH_CYCLES (default 10) and CAIRN_POWERLOSS_POINTS (default 100) set the loop sizes;
`make crash-soak` runs 50 and 300. Sanitizer builds run a fifth of them.
"""
import os
import random
import re
import shutil
import signal
import threading
import time

import cairn
import durability as du

BIN = cairn.BINARY
FAULTS_BIN = cairn.FAULTS_BINARY
SCALE = 5 if du.sanitized(BIN) else 1


def _settings(extra=None):
    s = {"store.sync": "always", "store.compact_bytes": 65536, "threads": 2,
         "log_level": "notice"}
    s.update(extra or {})
    return s


def test_kill9_during_write_load():
    cycles = max(2, du.env_int("CAIRN_CRASH_CYCLES", 10) // SCALE)
    seed = du.env_int("CAIRN_CRASH_SEED", int(time.time()))
    rnd = random.Random(seed)
    wl = du.Workload(writers=8, pad=400, seed=seed, snapshot_every=97)
    d = cairn.Daemon(settings=_settings(), start=False)
    restart_max = 0.0
    try:
        for cycle in range(cycles):
            t0 = time.time()
            d.start()
            restart_max = max(restart_max, time.time() - t0)
            if cycle > 0:
                wl.verify(d)
            stop = threading.Event()
            ts = wl.run(d.port, 10)
            time.sleep(rnd.uniform(0.2, 1.5))
            d.stop(signal.SIGKILL)
            stop.set()
            for t in ts:
                t.join(15)
        d.start()
        wl.verify(d)
        assert wl.counts[du.ACKED] >= 200 * cycles // SCALE, wl.counts
        print("# kill -9: seed %d, %d cycles, %r, slowest start %.2f s"
              % (seed, cycles, wl.counts, restart_max))
        assert restart_max < 5.0, restart_max
        assert d.stop() == 0
    finally:
        d.cleanup()


# crash points that must be hit by name, besides the random ones: between a snapshot's
# rename and its directory fsync, and the other steps of a snapshot and of a log rotation
TARGETED = ["snap-dirsync", "snap-rename", "snap-sync", "log-create-dirsync", "log-create-sync",
            "cleanup-dirsync", "log-unlink", "snap-unlink"]


def test_power_loss_simulation():
    points = max(20, du.env_int("CAIRN_POWERLOSS_POINTS", 100) // SCALE)
    seed = du.env_int("CAIRN_CRASH_SEED", int(time.time()))
    rnd = random.Random(seed)
    wl = du.Workload(writers=4, pad=900, seed=seed, snapshot_every=23)
    base = _settings()
    crashes = labels = holes = 0
    hit = set()
    d = cairn.Daemon(binary=FAULTS_BIN, settings=base, start=False)
    try:
        for i in range(points):
            env = {"CAIRN_CRASH_SEED": str(rnd.randrange(1 << 30))}
            target = TARGETED[(i // 3) % len(TARGETED)] if i % 3 == 2 else None
            if target:
                env["CAIRN_CRASH_AT"] = "%s:%d" % (target, rnd.randint(1, 2))
            else:
                env["CAIRN_CRASH_AFTER_IO"] = str(rnd.randint(1, 160))
            if target or rnd.random() < 0.75:
                # a random prefix of the unsynced bytes, or random pages of it (holes)
                env["CAIRN_CRASH_KEEP"] = rnd.choice(["random", "pages", "pages"])
            d.env.update(env)
            try:
                d.start()
            except RuntimeError as e:  # the crash came during recovery
                assert "exited with %d" % 86 in str(e), str(e)[-3000:]
                d.proc = None
                d._log.close()
                crashes += 1
            else:
                ts = wl.run(d.port, 4)
                for t in ts:
                    t.join(20)
                if d.proc.poll() is None:
                    d.stop(signal.SIGKILL)  # this point was not reached: still a crash
                else:
                    rc = d.proc.wait()
                    assert rc == 86, "status %s:\n%s" % (rc, d.log()[-3000:])
                    crashes += 1
                    if target:
                        labels += 1
                        hit.add(target)
                    d.proc = None
                    d._log.close()
            for k in ("CAIRN_CRASH_AT", "CAIRN_CRASH_AFTER_IO", "CAIRN_CRASH_KEEP"):
                d.env.pop(k, None)
            mark = len(d.log())
            d.start()  # a normal start of the same build: recovery after the "power loss"
            recovered = d.log()[mark:]
            if "a hole left by a power loss" in recovered:
                holes += 1
                g = d.stats()["gauges"]
                assert g["store_recovery_cut_bytes"] > 0 and g["store_recovery_cut_records"] > 0, g
            assert "refusing to start" not in recovered, recovered[-3000:]
            wl.verify(d)
            d.stop(signal.SIGKILL)
        print("# power loss: seed %d, %d points, %d crashed (%d at a named step: %s), "
              "%d recoveries cut a hole, %r"
              % (seed, points, crashes, labels, sorted(hit), holes, wl.counts))
        assert crashes >= points * 3 // 4, (crashes, points)
        assert "snap-dirsync" in hit or SCALE > 1, hit
        assert wl.counts[du.ACKED] > 0
    finally:
        d.cleanup()


def test_power_loss_holes_in_the_unsynced_tail():
    """Power loss just before a group commit's fdatasync, with the batch's pages reaching the
    disk in any order (CAIRN_CRASH_KEEP=pages): holes of zeros or stale bytes with valid
    records after them. Recovery cuts the log at the hole (nothing there was acknowledged)
    instead of refusing to start, and every acknowledged write is there."""
    points = max(8, du.env_int("CAIRN_POWERLOSS_POINTS", 100) // 4 // SCALE)
    seed = du.env_int("CAIRN_CRASH_SEED", int(time.time()))
    rnd = random.Random(seed)
    wl = du.Workload(writers=16, pad=2500, seed=seed)
    holes = crashes = unsynced = mark = ran = 0
    d = cairn.Daemon(binary=FAULTS_BIN, settings=_settings({"store.compact_bytes": 1 << 30}),
                     start=False)
    try:
        for i in range(points * 4):
            if i >= points and (holes > 0 or SCALE > 1):
                break  # a hole needs a batch over several pages: go on until one was made
            d.env.update({"CAIRN_CRASH_SEED": str(rnd.randrange(1 << 30)),
                          "CAIRN_CRASH_AT": "log-sync:%d" % rnd.randint(3, 12),
                          "CAIRN_CRASH_KEEP": "pages",
                          # a slow fsync: the writers' records pile up unsynced meanwhile
                          "CAIRN_IO_DELAY": "log-sync:100000"})
            d.start()
            ts = wl.run(d.port, 4)
            for t in ts:
                t.join(20)
            if d.proc.poll() is None:
                d.stop(signal.SIGKILL)
            else:
                assert d.proc.wait() == 86, d.log()[-3000:]
                crashes += 1
                d.proc = None
                d._log.close()
            for k in ("CAIRN_CRASH_AT", "CAIRN_CRASH_KEEP", "CAIRN_IO_DELAY"):
                d.env.pop(k, None)
            log = d.log()
            unsynced += sum(int(x) for x in re.findall(r"(\d+) bytes were not synced", log[mark:]))
            mark = len(log)
            d.start()
            recovered = d.log()[mark:]
            if "a hole left by a power loss" in recovered:
                holes += 1
                g = d.stats()["gauges"]
                assert g["store_recovery_cut_bytes"] > 0 and g["store_recovery_cut_records"] > 0, g
            wl.verify(d)
            d.stop(signal.SIGKILL)
            mark = len(d.log())
            ran += 1
        points = ran
        print("# power-loss holes: seed %d, %d points, %d crashed (%d unsynced bytes on average), "
              "%d recoveries cut a hole, %r"
              % (seed, points, crashes, unsynced // max(1, crashes), holes, wl.counts))
        assert crashes >= points * 3 // 4, (crashes, points)
        assert holes > 0 or SCALE > 1, "no hole was made: the test did not test anything"
        assert wl.counts[du.ACKED] > 0
    finally:
        d.cleanup()


def test_restart_syncs_the_directory_before_accepting_writes():
    """kill -9 during a rotation, after log.R+1 was created but before the directory fsync: on
    restart that record-less segment is the place to append, and its directory entry may not be
    durable yet (CAIRN_CRASH_DIR_UNSYNCED models that). The restart fsyncs the directory before
    it accepts a write, so a later power loss keeps every acknowledged write."""
    d, docs = _log_with_records(3)
    try:
        # the rotation's leftover: an empty segment starting right after the last revision
        open(os.path.join(d.data_dir, "log.%020d" % 4), "wb").close()
        d.binary = FAULTS_BIN
        d.env.update({"CAIRN_CRASH_DIR_UNSYNCED": "1", "CAIRN_CRASH_AT": "log-sync:2"})
        d.start()
        r = d.request("POST", "/v1/posts", {"title": "acked after the restart"})
        assert r.status == 201, r
        acked = r.json()
        try:
            d.request("POST", "/v1/posts", {"title": "never acknowledged"}, timeout=5)
        except Exception:
            pass
        assert d.proc.wait(10) == 86, d.log()[-3000:]
        d.proc = None
        d._log.close()
        for k in ("CAIRN_CRASH_DIR_UNSYNCED", "CAIRN_CRASH_AT"):
            d.env.pop(k, None)
        d.start()
        got = d.get("/v1/posts").json()
        assert got == docs + [acked], (got, d.log()[-3000:])
        d.stop()
    finally:
        d.cleanup()


# ---- torn and corrupt files ----

def _log_with_records(n=12, settings=None):
    """A daemon's data dir whose only log holds n writes, left by kill -9 (no snapshot)."""
    d = cairn.Daemon(settings=_settings(settings))
    docs = []
    for i in range(n):
        r = d.request("POST", "/v1/posts", {"title": "post %d" % i, "n": i})
        assert r.status == 201, r
        docs.append(r.json())
    d.stop(signal.SIGKILL)
    return d, docs


def _start_copy(d, data, args=()):
    """Starts a copy of data dir 'data'; returns (status or None if it started, log, daemon)."""
    c = cairn.Daemon(settings=dict(d.settings), args=args, start=False)
    shutil.rmtree(c.data_dir)
    shutil.copytree(data, c.data_dir)
    c.settings["store.data_dir"] = c.data_dir
    c.write_config(c.settings)
    try:
        c.start()
    except RuntimeError:
        return c.proc.wait(), c.log(), c
    return None, c.log(), c


def test_torn_last_record_every_offset():
    d, docs = _log_with_records()
    try:
        seg = du.segments(d.data_dir)[-1]
        offs, size = du.record_offsets(seg)
        last = offs[-1]
        step = 1 if SCALE == 1 else 7
        for cut in list(range(last, size, step)):
            work = os.path.join(d.dir, "cut")
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(d.data_dir, work)
            os.truncate(os.path.join(work, os.path.basename(seg)), cut)
            status, log, c = _start_copy(d, work)
            try:
                assert status is None, "cut at %d: exit %s\n%s" % (cut, status, log)
                if cut > last:
                    assert re.search(r"%s: offset %d: .*cut off" % (os.path.basename(seg), last),
                                     log), log
                r = c.get("/v1/posts")
                assert [p["n"] for p in r.json()] == list(range(len(docs) - 1)), r
                assert c.stop() == 0
            finally:
                c.cleanup()
    finally:
        d.cleanup()


def test_flipped_byte_in_last_record_is_cut_off():
    d, docs = _log_with_records()
    try:
        seg = du.segments(d.data_dir)[-1]
        offs, size = du.record_offsets(seg)
        step = 3 if SCALE == 1 else 7  # every byte: tests/unit/test_wal.c
        for i in range(offs[-1], size, step):
            work = os.path.join(d.dir, "flip")
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(d.data_dir, work)
            du.flip(os.path.join(work, os.path.basename(seg)), i, 0x40)
            status, log, c = _start_copy(d, work)
            try:
                assert status is None, "flip at %d: exit %s\n%s" % (i, status, log)
                assert "offset %d" % offs[-1] in log, log
                assert len(c.get("/v1/posts").json()) == len(docs) - 1
                g = c.stats()["gauges"]
                assert g["store_recovery_cut_bytes"] == size - offs[-1], g
                assert g["store_recovery_cut_records"] == 0, g
                m = c.get("/metrics").body.decode()
                assert "\ncairn_store_recovery_cut_bytes %d\n" % (size - offs[-1]) in m, m
                assert c.stop() == 0
            finally:
                c.cleanup()
    finally:
        d.cleanup()


def test_flipped_byte_in_middle_record_refuses_with_65():
    d, docs = _log_with_records()
    try:
        seg = du.segments(d.data_dir)[-1]
        name = os.path.basename(seg)
        offs, size = du.record_offsets(seg)
        mid = offs[len(offs) // 2]
        for i in (mid, mid + 5, mid + 20, offs[len(offs) // 2 + 1] - 1, 3):
            work = os.path.join(d.dir, "mid")
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(d.data_dir, work)
            du.flip(os.path.join(work, name), i)
            status, log, c = _start_copy(d, work)
            c.cleanup()
            assert status == 65, (i, status, log)
            rec = mid if i >= mid else 0
            assert re.search(r"%s: offset %d: " % (re.escape(name), rec), log), log
            assert "--recover-truncate" in log
            assert os.path.getsize(os.path.join(work, name)) == size  # nothing was changed
        # the operator accepts the loss: it starts without that record, once
        du.flip(os.path.join(work, name), i)  # restore the last flip
        du.flip(os.path.join(work, name), mid + 20)
        status, log, c = _start_copy(d, work, args=["--recover-truncate"])
        try:
            assert status is None, log
            assert "skipped" in log or "dropped" in log or "damaged" in log, log
            assert len(c.get("/v1/posts").json()) == len(docs) - 1
            assert c.stop() == 0
            c.start()  # clean again: a normal start works
            assert len(c.get("/v1/posts").json()) == len(docs) - 1
            assert c.stop() == 0
        finally:
            c.cleanup()
    finally:
        d.cleanup()


def test_damaged_or_missing_snapshot_refuses_with_65():
    d = cairn.Daemon(settings=_settings())
    try:
        for i in range(20):
            assert d.request("POST", "/v1/posts", {"n": i}).status == 201
        r = d.request("POST", "/v1/_admin/snapshot")
        assert r.status == 200 and r.json()["revision"] == 20, r
        for i in range(5):
            assert d.request("POST", "/v1/posts", {"n": 20 + i}).status == 201
        d.stop(signal.SIGKILL)
        snap = du.snapshots(d.data_dir)[-1]
        name = os.path.basename(snap)
        offs, size = du.record_offsets(snap)
        for i in (2, offs[1] + 1, offs[len(offs) // 2] + 40, size - 3):
            work = os.path.join(d.dir, "snapflip")
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(d.data_dir, work)
            du.flip(os.path.join(work, name), i)
            status, log, c = _start_copy(d, work)
            c.cleanup()
            assert status == 65, (i, status, log)
            assert re.search(r"%s: offset \d+: " % re.escape(name), log), log
        work = os.path.join(d.dir, "snapgone")
        shutil.copytree(d.data_dir, work)
        os.unlink(os.path.join(work, name))
        status, log, c = _start_copy(d, work)
        c.cleanup()
        assert status == 65 and "revisions 1..20" in log, (status, log)
        # intact, it loads: snapshot + log
        status, log, c = _start_copy(d, d.data_dir)
        try:
            assert status is None, log
            assert [p["n"] for p in c.get("/v1/posts").json()] == list(range(25))
            assert c.stop() == 0
        finally:
            c.cleanup()
    finally:
        d.cleanup()
