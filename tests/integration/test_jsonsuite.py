"""Every JSONTestSuite parsing case POSTed to /v1/suite (issue 3).

n_*: must be rejected: 400, and the store's revision unchanged.
y_*: valid JSON. A top-level object is stored (201) and reads back equal to what
     Python's json module makes of the file (duplicate keys: the last one wins),
     plus the id the store gave it; any other top-level value is a 400.
i_*: the parser may go either way: 2xx or 400.
Nothing is ever a 5xx, and the daemon stops with exit status 0.

The suite lives in shared/, beside the repository: <repo>/../shared/data/
JSONTestSuite/test_parsing (CAIRN_JSONTESTSUITE overrides the path).
"""
import json
import os

from cairn import Daemon, ROOT

SUITE = os.environ.get("CAIRN_JSONTESTSUITE") or os.path.join(
    ROOT, "..", "shared", "data", "JSONTestSuite", "test_parsing")

HEADERS = {"Content-Type": "application/json"}

# y_* objects that cairnd cannot store, each with its reason. They must get a
# 400 (never a 5xx) and change nothing.
UNSTORABLE = {
    # {"foo\u0000bar": 42}: jansson keeps object keys as NUL-terminated C strings and
    # refuses a key with an escaped NUL ("NUL byte in object key not supported").
    "y_object_escaped_null_in_key.json",
}


def suite_files():
    if not os.path.isdir(SUITE):
        raise AssertionError("JSONTestSuite not found at %s (expected <repo>/../shared/data/"
                             "JSONTestSuite/test_parsing, or set CAIRN_JSONTESTSUITE)"
                             % os.path.abspath(SUITE))
    names = sorted(f for f in os.listdir(SUITE) if f.endswith(".json"))
    kinds = {k: [f for f in names if f.startswith(k + "_")] for k in "yni"}
    # the suite as published: 95 y, 188 n, 35 i; a truncated copy must not pass quietly
    assert len(kinds["y"]) >= 90 and len(kinds["n"]) >= 180 and len(kinds["i"]) >= 30, \
        {k: len(v) for k, v in kinds.items()}
    assert sum(len(v) for v in kinds.values()) == len(names), "unexpected file names"
    return names


def python_value(data):
    """What Python's json module reads: (True, value) or (False, None). Last duplicate key wins."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False, None
    try:
        return True, json.loads(text, object_pairs_hook=dict)
    except (ValueError, RecursionError):
        return False, None


def test_json_test_suite():
    names = suite_files()
    d = Daemon()
    conn = None
    failures = []
    try:
        conn = d.conn()

        def req(method, path, body=None):
            return d.request(method, path, body=body, headers=HEADERS if body is not None
                             else None, conn=conn)

        def rev():
            r = req("GET", "/v1")
            assert r.status == 200, r
            return r.json()["revision"]

        # a document for the PATCH half of the n_ checks
        r = req("POST", "/v1/target", b'{"id":"t","v":1}')
        assert r.status == 201, r
        target = req("GET", "/v1/target/t").body
        stored = 0
        for name in names:
            with open(os.path.join(SUITE, name), "rb") as f:
                data = f.read()
            before = rev()
            r = req("POST", "/v1/suite", data)
            after = rev()
            kind = name[0]
            why = None
            if r.status >= 500:
                why = "5xx"
            elif kind == "n":
                if r.status != 400:
                    why = "n_ accepted"
                elif after != before:
                    why = "n_ changed the revision"
                else:
                    # the same body as a merge patch: rejected, the target untouched
                    p = req("PATCH", "/v1/target/t", data)
                    if p.status != 400 or rev() != before or \
                            req("GET", "/v1/target/t").body != target:
                        why = "n_ as a PATCH: %d" % p.status
            elif kind == "y":
                parsed_ok, value = python_value(data)
                assert parsed_ok, "Python rejects %s" % name
                if not isinstance(value, dict):
                    if r.status != 400 or after != before:
                        why = "y_ non-object not rejected cleanly"
                elif name in UNSTORABLE:
                    if r.status != 400 or after != before:
                        why = "listed as unstorable but got %d" % r.status
                elif r.status != 201 or after != before + 1:
                    why = "y_ object not stored"
                else:
                    doc = r.json()
                    want = dict(value)
                    want.setdefault("id", doc.get("id"))
                    g = req("GET", "/v1/suite/%s" % doc["id"])
                    if g.status != 200 or g.json() != want or doc != want:
                        why = "y_ object reads back different: %r" % g.body[:200]
                    elif r.headers.get("location") != "/v1/suite/%s" % doc["id"]:
                        why = "no Location"
                    stored += 1
            else:
                if r.status not in (200, 201, 400):
                    why = "i_ got %d" % r.status
                elif r.status == 400 and after != before:
                    why = "i_ rejected but the revision moved"
                elif r.status == 201 and after != before + 1:
                    why = "i_ stored but the revision did not move by one"
            if r.status >= 400 and why is None:
                try:
                    p = json.loads(r.body)
                    if r.headers.get("content-type") != "application/problem+json" or \
                            p.get("request_id") != r.headers.get("x-request-id"):
                        why = "error is not problem+json with the request id"
                except ValueError:
                    why = "error body is not JSON"
            if why:
                failures.append("%s: %s (%d %r)" % (name, why, r.status, r.body[:160]))
        assert stored == sum(1 for n in names if n.startswith("y_") and n not in UNSTORABLE
                             and isinstance(python_value(
                                 open(os.path.join(SUITE, n), "rb").read())[1], dict)), stored
        # every stored object is still there, in order, in one list
        lst = req("GET", "/v1/suite")
        assert lst.status == 200 and len(lst.json()) == int(lst.headers["x-total-count"]) \
            == stored, lst
        conn.close()
        conn = None
        assert not failures, "\n".join(failures)
        assert d.stop() == 0
    finally:
        if conn is not None:
            conn.close()
        d.cleanup()
