"""The race test of issue 3: 8 writers and 8 readers on one collection of one cairnd.

Writers PUT, PATCH, DELETE and POST on a small set of ids (some with If-Match)
and record every acknowledged write with the revision it returned (X-Revision,
equal to the ETag). Readers GET documents by id (some with If-None-Match),
lists (plain, filtered and sorted, sliced), GET /v1 and GET /v1/_export.
Writes are serialized by the store and every ack carries its revision, so the
acks sorted by revision replay deterministically in Python; then:

  - no reply is a 5xx, and every status is one the operation allows;
  - the acknowledged revisions are exactly 1..N (nothing lost, nothing doubled);
  - every write's reply body equals the replay's document after it;
  - every export, list and GET /v1 read at X-Revision R equals the replay at R;
  - every document read by id at ETag e equals the replay's document at e;
  - per reader, snapshots never go backwards: there is one non-decreasing
    sequence of snapshot revisions that explains all its reads in order (a
    document at ETag e was read from a snapshot in [e, the doc's next change),
    a 404 from one where the doc was absent), so in particular every document's
    revision only ever grows;
  - the final export equals the replay of all acks; the daemon stops with 0 and,
    under a sanitizer build, without a report.

CAIRN_RACE_SECONDS sets the duration (default 30); each thread also stops after
CAIRN_RACE_MAX_OPS operations (default 200000). Run it under SANITIZE=thread:
  CAIRND=build-thread/cairnd python3 tests/integration/run.py test_race
"""
import copy
import http.client
import json
import os
import random
import re
import threading
import time
import traceback

from cairn import Daemon

SECONDS = float(os.environ.get("CAIRN_RACE_SECONDS", "30"))
MAX_OPS = int(os.environ.get("CAIRN_RACE_MAX_OPS", "200000"))
SEED = int(os.environ.get("CAIRN_RACE_SEED", str(int(time.time()))))
WRITERS = 8
READERS = 8
COLL = "items"
BASE_KEYS = ["1", "2", "3", "4", "5", "s"]   # "s": a string id, so POST sometimes makes random ids
MAX_GENERATED_PER_WRITER = 8                  # POSTs without an id, each a new document
HEADERS = {"Content-Type": "application/json"}
INF = float("inf")
INT64_MAX = 2 ** 63 - 1


def merge_patch(target, patch):
    """RFC 7396."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    target = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        else:
            target[k] = merge_patch(target.get(k), v)
    return target


def path_is_int(s):
    return re.fullmatch(r"0|[1-9][0-9]{0,18}", s) is not None and int(s) <= INT64_MAX


def key_of(jid):
    return str(jid) if isinstance(jid, int) else jid


class Shared:
    def __init__(self, deadline):
        self.deadline = deadline
        self.stop = threading.Event()
        self.errors = []              # unexpected statuses, exceptions
        self.generated = []           # keys made by POSTs without an id
        self.lock = threading.Lock()

    def keys(self):
        return BASE_KEYS + self.generated

    def fail(self, msg):
        with self.lock:
            if len(self.errors) < 200:
                self.errors.append(msg)
        self.stop.set()

    def running(self):
        return not self.stop.is_set() and time.time() < self.deadline


def request(conn, method, path, body=None, headers=None):
    h = dict(HEADERS if body is not None else {})
    h.update(headers or {})
    conn.request(method, path, body=None if body is None else json.dumps(body), headers=h)
    r = conn.getresponse()
    data = r.read()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, data


def parse_etag(h):
    m = re.fullmatch(r'"(\d+)"', h.get("etag", ""))
    assert m, h
    return int(m.group(1))


# ---- writers ----

class Writer(threading.Thread):
    def __init__(self, d, sh, n):
        super().__init__(name="writer-%d" % n)
        self.d, self.sh, self.n = d, sh, n
        self.rng = random.Random(SEED * 100 + n)
        self.acks = []       # (rev, op, key, body, reply doc or None)
        self.mismatch = []   # (key, etag rev) from 412 replies
        self.seen = {}       # key -> last revision this writer saw for it
        self.generated = 0
        self.statuses = {}

    def body(self, tag, kind):
        r = self.rng
        if kind == "PATCH":
            b = {"w": tag, "v": r.randrange(100)}
            roll = r.random()
            if roll < 0.6:
                b["nest"] = {"a": r.choice([None, r.randrange(10)]), "c": r.randrange(10),
                             "deep": {"z": r.choice([None, "q", [1, {"k": None}]])}}
            elif roll < 0.7:
                b["nest"] = None
            elif roll < 0.8:
                b["nest"] = r.randrange(5)
            b["x"] = r.choice([None, "x%d" % r.randrange(9), {"y": [r.randrange(3)]}])
            return b
        return {"w": tag, "v": r.randrange(100), "nest": {"a": r.randrange(10), "b": [tag]},
                "t": "text %s" % tag}

    def run(self):
        conn = self.d.conn(timeout=60)
        try:
            for i in range(MAX_OPS):
                if not self.sh.running():
                    break
                self.step("w%d-%d" % (self.n, i), conn)
        except Exception:
            self.sh.fail("%s: %s" % (self.name, traceback.format_exc()))
        finally:
            conn.close()

    def step(self, tag, conn):
        r = self.rng
        key = r.choice(self.sh.keys())
        roll = r.random()
        cond = {}
        if roll < 0.30:
            op = "PUT"
        elif roll < 0.60:
            op = "PATCH"
        elif roll < 0.78:
            op = "DELETE"
        else:
            op = "POST"
        if op in ("PUT", "PATCH", "DELETE") and key in self.seen and r.random() < 0.3:
            cond = {"If-Match": '"%d"' % self.seen[key]}
        if op == "POST":
            body = self.body(tag, "POST")
            if self.generated < MAX_GENERATED_PER_WRITER and r.random() < 0.1:
                self.generated += 1
                key = None
            else:
                body["id"] = int(key) if path_is_int(key) else key
            status, h, data = request(conn, "POST", "/v1/%s" % COLL, body)
            allowed = (201, 409)
        elif op == "DELETE":
            body = None
            status, h, data = request(conn, "DELETE", "/v1/%s/%s" % (COLL, key), None, cond)
            allowed = (200, 404, 412)
        else:
            body = self.body(tag, op)
            status, h, data = request(conn, op, "/v1/%s/%s" % (COLL, key), body, cond)
            allowed = {"PUT": (200, 201, 412), "PATCH": (200, 404, 412)}[op]
        self.statuses[(op, status)] = self.statuses.get((op, status), 0) + 1
        if status not in allowed:
            self.sh.fail("%s %s %s -> %d %r" % (self.name, op, key, status, data[:300]))
            return
        if status == 412:
            if not cond:
                self.sh.fail("%s: 412 without If-Match" % self.name)
            if "etag" not in h:        # the document is gone: nothing to match
                self.seen.pop(key, None)
                return
            e = parse_etag(h)
            self.mismatch.append((key, e, int(cond["If-Match"].strip('"'))))
            self.seen[key] = e
            return
        if status in (404, 409):
            self.seen.pop(key, None)
            return
        rev = int(h["x-revision"])
        doc = None
        if op != "DELETE":
            doc = json.loads(data)
            if parse_etag(h) != rev:
                self.sh.fail("%s: ETag %s != X-Revision %d" % (self.name, h.get("etag"), rev))
            if key is None:
                key = key_of(doc["id"])
                with self.sh.lock:
                    self.sh.generated.append(key)
            if status == 201 and h.get("location") != "/v1/%s/%s" % (COLL, key):
                self.sh.fail("%s: Location %r for %s" % (self.name, h.get("location"), key))
            self.seen[key] = rev
        else:
            if data != b"{}":
                self.sh.fail("%s: DELETE replied %r" % (self.name, data))
            self.seen.pop(key, None)
        self.acks.append((rev, op, key, body, doc))


# ---- readers ----

class Reader(threading.Thread):
    def __init__(self, d, sh, n):
        super().__init__(name="reader-%d" % n)
        self.d, self.sh, self.n = d, sh, n
        self.rng = random.Random(SEED * 100 + 50 + n)
        # in order: ("doc", key, etag, body or None for 304), ("absent", key),
        # ("export" | "list" | "filtered" | "sliced" | "root", R, body, total)
        self.obs = []
        self.etags = {}

    def run(self):
        conn = self.d.conn(timeout=60)
        try:
            for _ in range(MAX_OPS):
                if not self.sh.running():
                    break
                self.step(conn)
        except Exception:
            self.sh.fail("%s: %s" % (self.name, traceback.format_exc()))
        finally:
            conn.close()

    def expect(self, status, want, what, data):
        if status != want:
            self.sh.fail("%s: %s -> %d %r" % (self.name, what, status, data[:300]))
            return False
        return True

    def step(self, conn):
        r = self.rng
        roll = r.random()
        if roll < 0.45:
            key = r.choice(self.sh.keys())
            cond = {}
            if key in self.etags and r.random() < 0.3:
                cond = {"If-None-Match": '"%d"' % self.etags[key]}
            status, h, data = request(conn, "GET", "/v1/%s/%s" % (COLL, key), headers=cond)
            if status == 404:
                self.obs.append(("absent", key))
                self.etags.pop(key, None)
            elif status == 304 and cond:
                e = parse_etag(h)
                if '"%d"' % e != cond["If-None-Match"] or data:
                    self.sh.fail("%s: 304 with ETag %d for %s" % (self.name, e, cond))
                self.obs.append(("doc", key, e, None))
            elif self.expect(status, 200, "GET " + key, data):
                e = parse_etag(h)
                self.obs.append(("doc", key, e, json.loads(data)))
                self.etags[key] = e
            return
        if roll < 0.60:
            kind, path = "export", "/v1/_export"
        elif roll < 0.72:
            kind, path = "list", "/v1/%s" % COLL
        elif roll < 0.82:
            kind, path = "filtered", "/v1/%s?v_gte=50&_sort=v&_order=desc" % COLL
        elif roll < 0.92:
            kind, path = "sliced", "/v1/%s?_start=1&_limit=3" % COLL
        else:
            kind, path = "root", "/v1"
        status, h, data = request(conn, "GET", path)
        if self.expect(status, 200, "GET " + path, data):
            total = int(h["x-total-count"]) if "x-total-count" in h else None
            self.obs.append((kind, int(h["x-revision"]), json.loads(data), total))


# ---- the replay ----

class Replay:
    """The store as Python sees it: one collection, replayed ack by ack."""

    def __init__(self):
        self.docs = {}          # key -> doc, in insertion order (dicts keep it)
        self.max_int = 0        # high-water mark of integer ids
        self.exists = False     # the collection exists after its first write

    def all_int(self):
        return all(isinstance(doc["id"], int) for doc in self.docs.values())

    def apply(self, op, key, body, got):
        """Applies one ack; returns the resulting doc (None for DELETE). Raises on a mismatch."""
        self.exists = True
        old = self.docs.get(key)
        if op == "DELETE":
            assert old is not None, ("DELETE acked on an absent doc", key)
            del self.docs[key]
            return None
        if op == "PATCH":
            assert old is not None, ("PATCH acked on an absent doc", key)
            doc = merge_patch(old, body)
        elif op == "PUT":
            doc = copy.deepcopy(body)
            if old is not None:
                as_int = isinstance(old["id"], int)
            else:
                as_int = path_is_int(key) and self.all_int()
            doc["id"] = int(key) if as_int else key
        else:  # POST
            doc = copy.deepcopy(body)
            if "id" in body:
                assert old is None, ("POST acked on a taken id", key)
            elif self.all_int() and self.max_int < INT64_MAX:
                doc["id"] = self.max_int + 1
                assert key == str(doc["id"]), ("POST generated id", key, doc["id"])
            else:
                assert re.fullmatch(r"[A-Za-z0-9_-]{21}", key) and old is None, \
                    ("POST generated a bad random id", key)
                doc["id"] = key
        if isinstance(doc["id"], int):
            self.max_int = max(self.max_int, doc["id"])
        self.docs[key] = doc
        return doc

    def export(self):
        return {COLL: list(self.docs.values())} if self.exists else {}


def check_reads(kind, R, body, total, replay):
    docs = list(replay.docs.values())
    if kind == "export":
        assert body == replay.export(), (kind, R)
    elif kind == "list":
        assert body == docs and total == len(docs), (kind, R)
    elif kind == "filtered":
        want = sorted([x for x in docs if x["v"] >= 50], key=lambda x: -x["v"])
        assert body == want and total == len(want), (kind, R)
    elif kind == "sliced":
        assert body == docs[1:4] and total == len(docs), (kind, R)
    elif kind == "root":
        assert body["revision"] == R, (kind, R, body)
        assert body["collections"][COLL] == {"count": len(docs), "revision": R}, (kind, R, body)
    else:
        raise AssertionError(kind)


def test_race_writers_readers():
    d = Daemon(settings={"threads": 4, "connection_timeout": 120, "shutdown_timeout": 30})
    try:
        # the collection exists before the threads start: revision 1
        c = d.conn()
        status, h, data = request(c, "PUT", "/v1/%s/1" % COLL, {"w": "setup", "v": 0})
        c.close()
        assert status == 201 and h["x-revision"] == "1", (status, data)
        setup_ack = (1, "PUT", "1", {"w": "setup", "v": 0}, json.loads(data))

        t0 = time.time()
        sh = Shared(t0 + SECONDS)
        writers = [Writer(d, sh, i) for i in range(WRITERS)]
        readers = [Reader(d, sh, i) for i in range(READERS)]
        for t in writers + readers:
            t.start()
        for t in writers + readers:
            t.join(SECONDS + 300)
            assert not t.is_alive(), "%s did not finish" % t.name
        elapsed = time.time() - t0
        assert not sh.errors, "seed %d:\n%s" % (SEED, "\n".join(sh.errors[:20]))

        c = d.conn()
        status, h, final = request(c, "GET", "/v1/_export")
        c.close()
        assert status == 200, status
        final_rev = int(h["x-revision"])

        acks = sorted([setup_ack] + [a for w in writers for a in w.acks])
        revs = [a[0] for a in acks]
        assert revs == list(range(1, len(acks) + 1)), \
            "acked revisions are not exactly 1..N (seed %d): %r" % (
                SEED, [r for i, r in enumerate(revs) if r != i + 1][:10])
        assert final_rev == len(acks), (final_rev, len(acks))
        for w in writers:
            mine = [a[0] for a in w.acks]
            assert mine == sorted(mine), "%s saw its own revisions go backwards" % w.name

        # replay, checking every ack's reply, every read at its revision
        by_rev = {}
        for rd in readers:
            for o in rd.obs:
                if o[0] not in ("doc", "absent"):
                    by_rev.setdefault(o[1], []).append(o)
        assert min(by_rev, default=1) >= 1, "a read before the setup write"
        replay = Replay()
        doc_at = {}            # rev -> (key, doc) for writes that left a document
        changes = {}           # key -> [(rev, exists after)]
        tag_rev = {}           # "w" tag -> revision of the write that put it there
        for rev, op, key, body, got in acks:
            try:
                doc = replay.apply(op, key, body, got)
            except AssertionError as e:
                raise AssertionError("replay failed at revision %d (seed %d): %s" % (rev, SEED, e))
            if doc is not None:
                assert got == doc, ("reply differs from the replay", rev, op, key, got, doc)
                doc_at[rev] = (key, copy.deepcopy(doc))
            if body is not None:
                tag_rev[body["w"]] = rev
            changes.setdefault(key, []).append((rev, doc is not None))
            for kind, R, rbody, total in by_rev.pop(rev, []):
                try:
                    check_reads(kind, R, rbody, total, replay)
                except AssertionError:
                    raise AssertionError("%s read at X-Revision %d differs from the replay "
                                         "(seed %d):\n%s\n%s" % (kind, R, SEED,
                                                                 json.dumps(rbody)[:2000],
                                                                 json.dumps(replay.export())[:2000]))
        assert not by_rev, "reads at revisions never acknowledged: %r" % sorted(by_rev)[:10]
        assert json.loads(final) == replay.export(), "final export differs from the replay"

        # 412 replies named a revision that really was the doc's, and not the one sent
        for w in writers:
            for key, e, sent in w.mismatch:
                assert e != sent and e in doc_at and doc_at[e][0] == key, (w.name, key, e, sent)

        # per reader: one non-decreasing snapshot sequence explains every read
        def live_interval(key, e):
            nxt = INF
            for rev, _ in changes.get(key, []):
                if rev > e:
                    nxt = rev
                    break
            return e, nxt

        def absent_intervals(key):
            out, start = [], 0
            for rev, exists in changes.get(key, []):
                if exists and start is not None:
                    out.append((start, rev))
                    start = None
                elif not exists:
                    start = rev
            if start is not None:
                out.append((start, INF))
            return out

        counts = {}
        for rd in readers:
            low = 0
            last_doc_rev = {}
            for o in rd.obs:
                counts[o[0]] = counts.get(o[0], 0) + 1
                if o[0] == "doc":
                    _, key, e, body = o
                    assert e in doc_at and doc_at[e][0] == key, \
                        ("%s: ETag %d is no write of %s" % (rd.name, e, key))
                    if body is not None:
                        assert body == doc_at[e][1], (rd.name, key, e, body, doc_at[e][1])
                    lo, hi = live_interval(key, e)
                    low = max(low, lo)
                    assert low < hi, ("%s went back in time: %s at ETag %d after a snapshot at "
                                      "%d" % (rd.name, key, e, low))
                    assert e >= last_doc_rev.get(key, 0), (rd.name, key, e, last_doc_rev[key])
                    last_doc_rev[key] = e
                elif o[0] == "absent":
                    key = o[1]
                    fits = [(a, b) for a, b in absent_intervals(key) if b > low]
                    assert fits, ("%s: %s absent, but it exists in every snapshot from %d on"
                                  % (rd.name, key, low))
                    low = max(low, fits[0][0])
                else:
                    R = o[1]
                    assert R >= low, ("%s: a %s at X-Revision %d after a snapshot at %d"
                                      % (rd.name, o[0], R, low))
                    low = R
                    docs = o[2] if o[0] != "export" else o[2].get(COLL, [])
                    if o[0] != "root":
                        for doc in docs:
                            k, e = key_of(doc["id"]), tag_rev[doc["w"]]
                            assert e >= last_doc_rev.get(k, 0), (rd.name, k, e, last_doc_rev[k])
                            last_doc_rev[k] = e

        assert d.stop() == 0
        wstat = {}
        for w in writers:
            for k, v in w.statuses.items():
                wstat["%s %d" % k] = wstat.get("%s %d" % k, 0) + v
        print("# race: seed %d, %.1f s, %d acked writes (%.0f/s), reads %s, writes %s" % (
            SEED, elapsed, len(acks), len(acks) / elapsed, counts, dict(sorted(wstat.items()))))
        # the test must have tested something
        assert len(acks) >= min(200, 20 * SECONDS), len(acks)
        for kind in ["doc", "export", "list", "filtered", "sliced", "root"]:
            assert counts.get(kind, 0) >= min(20, SECONDS), (kind, counts)
        assert wstat.get("PATCH 412", 0) + wstat.get("PUT 412", 0) + \
            wstat.get("DELETE 412", 0) > 0 or SECONDS < 5, wstat
    finally:
        d.cleanup()
