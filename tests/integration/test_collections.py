"""The collections API (issue 3): every route, status code and header, against the real cairnd.

Conventions: every 4xx goes through bad(), which checks the problem+json body
(request_id equal to X-Request-Id) and that the store is untouched: the same
revision in GET /v1 and the same GET /v1/_export as before the request.
"""
import glob
import json
import os
import re
import signal
import struct
import tempfile
import urllib.parse

from cairn import Daemon, problem

JSON = {"Content-Type": "application/json"}


# ---- helpers ----

def with_daemon(fn, **kw):
    d = Daemon(**kw)
    try:
        fn(d)
        assert d.stop() == 0
    finally:
        d.cleanup()


def revision(d):
    r = d.get("/v1")
    assert r.status == 200, r
    body = r.json()
    assert r.headers["x-revision"] == str(body["revision"]), r
    return body["revision"]


def state(d):
    """(revision, export bytes): what a rejected request must leave as it was."""
    r = d.get("/v1/_export")
    assert r.status == 200, r
    return revision(d), r.body


def send(d, method, path, body=None, headers=None):
    """Like d.request, but str/bytes bodies still get Content-Type: application/json."""
    h = dict(JSON)
    h.update(headers or {})
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    return d.request(method, path, body=body, headers=h)


def bad(d, method, path, body=None, status=400, headers=None, raw_headers=False):
    """Sends a request that must fail with 'status' and change nothing; returns the problem doc."""
    before = state(d)
    if raw_headers:
        r = d.request(method, path, body=body, headers=headers)
    else:
        r = send(d, method, path, body, headers)
    doc = problem(r, status)
    assert state(d) == before, (method, path, body, r)
    return doc


def ok(r, status=200):
    assert r.status == status, r
    assert r.headers["content-type"] == "application/json", r
    return r.json()


def etag(rev):
    return '"%d"' % rev


def ids(r):
    return [x["id"] for x in ok(r)]


def write_json(obj):
    fd, path = tempfile.mkstemp(prefix="cairn-db-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f)
    return path


# ---- GET /v1 ----

def test_root_lists_collections_resources_counts_revisions():
    def t(d):
        r = d.get("/v1")
        assert ok(r) == {"revision": 0, "collections": {}, "resources": {}}, r
        assert r.headers["x-revision"] == "0"
        send(d, "POST", "/v1/posts", {"t": 1})           # rev 1
        send(d, "POST", "/v1/posts", {"t": 2})           # rev 2
        send(d, "POST", "/v1/comments", {"t": 3})        # rev 3
        send(d, "PUT", "/v1/profile", {"name": "x"})     # rev 4
        send(d, "DELETE", "/v1/comments/1")              # rev 5
        r = d.get("/v1")
        assert ok(r) == {"revision": 5,
                         "collections": {"comments": {"count": 0, "revision": 5},
                                         "posts": {"count": 2, "revision": 2}},
                         "resources": {"profile": {"revision": 4}}}, r
        assert r.headers["x-revision"] == "5"
        # HEAD /v1: the headers without the body
        h = d.request("HEAD", "/v1")
        assert h.status == 200 and h.body == b"" and h.headers["x-revision"] == "5", h
        assert h.headers["content-length"] == str(len(r.body)), (h, r)
    with_daemon(t)


# ---- POST ----

def test_post_201_location_etag_body():
    def t(d):
        r = send(d, "POST", "/v1/posts", {"title": "hello", "tags": ["a"], "n": {"x": 1}})
        assert ok(r, 201) == {"title": "hello", "tags": ["a"], "n": {"x": 1}, "id": 1}, r
        assert r.headers["location"] == "/v1/posts/1", r
        assert r.headers["etag"] == '"1"' and r.headers["x-revision"] == "1", r
        g = d.get(r.headers["location"])
        assert ok(g) == r.json() and g.body == r.body and g.headers["etag"] == '"1"', g
        # the stored document is the compact serialization, "id" appended at the end
        assert r.body == b'{"title":"hello","tags":["a"],"n":{"x":1},"id":1}', r.body
        r = send(d, "POST", "/v1/posts", {"title": "again"})
        assert ok(r, 201)["id"] == 2 and r.headers["location"] == "/v1/posts/2", r
        assert r.headers["etag"] == '"2"', r
        # application/merge-patch+json and other +json types are JSON too
        r = send(d, "POST", "/v1/posts", {"v": 1},
                 headers={"Content-Type": "application/vnd.api+json; charset=utf-8"})
        assert ok(r, 201)["id"] == 3, r
    with_daemon(t)


def test_post_client_ids_kept_and_409_when_taken():
    def t(d):
        r = send(d, "POST", "/v1/posts", {"id": 7, "a": 1})
        assert ok(r, 201) == {"id": 7, "a": 1} and r.headers["location"] == "/v1/posts/7", r
        r = send(d, "POST", "/v1/posts", {"a": 2, "id": "slug-1.v2_x~"})
        assert ok(r, 201) == {"a": 2, "id": "slug-1.v2_x~"}, r
        assert r.headers["location"] == "/v1/posts/slug-1.v2_x~", r
        assert isinstance(ok(d.get("/v1/posts/7"))["id"], int)
        assert ok(d.get("/v1/posts/slug-1.v2_x~"))["id"] == "slug-1.v2_x~"
        # taken: the same integer, the same string, and "7" (a string with the same key)
        for body in [{"id": 7}, {"id": "slug-1.v2_x~", "b": 1}, {"id": "7"}]:
            doc = bad(d, "POST", "/v1/posts", body, 409)
            assert "already exists" in doc["detail"], doc
        # "id": null counts as no id
        r = send(d, "POST", "/v1/nulls", {"id": None, "x": 1})
        assert ok(r, 201) == {"id": 1, "x": 1}, r
        # the largest id
        r = send(d, "POST", "/v1/big", {"id": 9223372036854775807})
        assert ok(r, 201)["id"] == 9223372036854775807, r
        assert ok(d.get("/v1/big/9223372036854775807"))["id"] == 9223372036854775807
        # 0 is a valid integer id
        assert ok(send(d, "POST", "/v1/zero", {"id": 0}), 201)["id"] == 0
        assert ok(d.get("/v1/zero/0"))["id"] == 0
    with_daemon(t)


def test_post_next_integer_id_never_reused():
    def t(d):
        assert ok(send(d, "POST", "/v1/c", {}), 201)["id"] == 1
        assert ok(send(d, "POST", "/v1/c", {"id": 10}), 201)["id"] == 10
        assert ok(send(d, "POST", "/v1/c", {}), 201)["id"] == 11
        ok(send(d, "DELETE", "/v1/c/11"))
        ok(send(d, "DELETE", "/v1/c/10"))
        # the high-water mark stays: 11 is not handed out again
        assert ok(send(d, "POST", "/v1/c", {}), 201)["id"] == 12
        assert ok(send(d, "POST", "/v1/c", {"id": 5}), 201)["id"] == 5
        assert ok(send(d, "POST", "/v1/c", {}), 201)["id"] == 13
        assert ids(d.get("/v1/c")) == [1, 12, 5, 13]   # insertion order, not id order
    with_daemon(t)


def test_post_random_string_ids_when_ids_are_not_all_integers():
    def t(d):
        ok(send(d, "POST", "/v1/m", {"id": 3}), 201)
        ok(send(d, "POST", "/v1/m", {"id": "s"}), 201)
        seen = set()
        for _ in range(20):
            r = send(d, "POST", "/v1/m", {"x": 1})
            i = ok(r, 201)["id"]
            assert isinstance(i, str) and re.fullmatch(r"[A-Za-z0-9_-]{21}", i), i
            assert r.headers["location"] == "/v1/m/" + i, r
            assert ok(d.get("/v1/m/" + i))["id"] == i
            seen.add(i)
        assert len(seen) == 20
        # once every string id is gone, the integers resume above the highest one
        ok(send(d, "DELETE", "/v1/m/s"))
        for i in seen:
            ok(send(d, "DELETE", "/v1/m/" + i))
        assert ok(send(d, "POST", "/v1/m", {}), 201)["id"] == 4
        # a collection whose first id is a string
        ok(send(d, "POST", "/v1/s", {"id": "first"}), 201)
        assert isinstance(ok(send(d, "POST", "/v1/s", {}), 201)["id"], str)
    with_daemon(t)


# ---- PUT ----

def test_put_replace_200_create_201_and_id_rules():
    def t(d):
        ok(send(d, "POST", "/v1/posts", {"a": 1, "b": 2}), 201)         # id 1, rev 1
        ok(send(d, "POST", "/v1/posts", {"a": 3}), 201)                 # id 2, rev 2
        r = send(d, "PUT", "/v1/posts/1", {"c": 3})
        assert ok(r) == {"c": 3, "id": 1}, r                            # replaced: a, b gone
        assert r.headers["etag"] == '"3"' and r.headers["x-revision"] == "3", r
        assert "location" not in r.headers, r
        assert ids(d.get("/v1/posts")) == [1, 2]                        # keeps its place
        # the body may repeat the path id, as an integer or as the same string
        assert ok(send(d, "PUT", "/v1/posts/1", {"id": 1, "d": 4})) == {"id": 1, "d": 4}
        # create: 201 with Location; an integer path id in an integer collection is an integer
        r = send(d, "PUT", "/v1/posts/9", {"e": 5})
        assert ok(r, 201) == {"e": 5, "id": 9}, r
        assert r.headers["location"] == "/v1/posts/9" and r.headers["etag"] == '"5"', r
        assert ok(send(d, "POST", "/v1/posts", {}), 201)["id"] == 10
        r = send(d, "PUT", "/v1/posts/abc", {"f": 6})
        assert ok(r, 201) == {"f": 6, "id": "abc"}, r
        # a PUT that creates its collection
        r = send(d, "PUT", "/v1/fresh/7", {})
        assert ok(r, 201) == {"id": 7} and r.headers["location"] == "/v1/fresh/7", r
        # the body's id must name the path's document
        for body in [{"id": 2}, {"id": "2"}, {"id": "x"}, {"id": -1}, {"id": 1.0}, {"id": True},
                     {"id": [1]}]:
            doc = bad(d, "PUT", "/v1/posts/1", body)
            assert "id" in doc["detail"], doc
        assert ok(d.get("/v1/posts/1")) == {"id": 1, "d": 4}
    with_daemon(t)


# ---- PATCH ----

def test_patch_is_rfc7396_merge_patch():
    def t(d):
        ok(send(d, "POST", "/v1/p", {"title": "t", "author": {"name": "a", "tags": [1, 2],
                                                             "deep": {"x": 1, "y": 2}},
                                     "n": 1, "gone": True}), 201)
        r = send(d, "PATCH", "/v1/p/1", {"author": {"tags": [3], "deep": {"y": None, "z": 3},
                                                    "new": {"k": None}},
                                         "gone": None, "n": {"now": "object"}, "added": [None]})
        want = {"title": "t", "author": {"name": "a", "tags": [3], "deep": {"x": 1, "z": 3},
                                         "new": {}},
                "n": {"now": "object"}, "id": 1, "added": [None]}
        assert ok(r) == want, r
        assert r.headers["etag"] == '"2"' and r.headers["x-revision"] == "2", r
        assert ok(d.get("/v1/p/1")) == want
        # an empty patch is a write that changes nothing but the revision
        r = send(d, "PATCH", "/v1/p/1", {})
        assert ok(r) == want and r.headers["etag"] == '"3"', r
        # a value replacing an object; null for a missing key is a no-op
        r = send(d, "PATCH", "/v1/p/1", {"author": "plain", "missing": None})
        want.update(author="plain")
        assert ok(r) == want, r
        # the id may be repeated but not changed or removed
        assert ok(send(d, "PATCH", "/v1/p/1", {"id": 1, "k": 1}))["k"] == 1
        for body in [{"id": 2}, {"id": "1"}, {"id": None}]:
            doc = bad(d, "PATCH", "/v1/p/1", body)
            assert '"id"' in doc["detail"], doc
        # missing document, unknown collection
        bad(d, "PATCH", "/v1/p/99", {"a": 1}, 404)
        bad(d, "PATCH", "/v1/nope/1", {"a": 1}, 404)
        assert "nope" not in ok(d.get("/v1"))["collections"]
    with_daemon(t)


# ---- DELETE ----

def test_delete_200_empty_object_then_404():
    def t(d):
        ok(send(d, "POST", "/v1/posts", {"a": 1}), 201)
        ok(send(d, "POST", "/v1/posts", {"a": 2}), 201)
        r = d.request("DELETE", "/v1/posts/1")
        assert ok(r) == {} and r.body == b"{}", r
        assert r.headers["x-revision"] == "3", r
        problem(d.get("/v1/posts/1"), 404)
        bad(d, "DELETE", "/v1/posts/1", status=404)
        assert ids(d.get("/v1/posts")) == [2]
        ok(d.request("DELETE", "/v1/posts/2"))
        # the collection stays, empty
        r = d.get("/v1/posts")
        assert ok(r) == [] and r.headers["x-total-count"] == "0", r
        assert ok(d.get("/v1"))["collections"]["posts"] == {"count": 0, "revision": 4}
        bad(d, "DELETE", "/v1/nope/1", status=404)
        # DELETE takes no body
        bad(d, "DELETE", "/v1/posts/2", {"x": 1})
    with_daemon(t)


def test_missing_document_and_unknown_collection_404():
    def t(d):
        ok(send(d, "POST", "/v1/posts", {}), 201)
        for path in ["/v1/posts/2", "/v1/posts/abc", "/v1/nope", "/v1/nope/1", "/v1/_nope",
                     "/v1/posts/1/extra"]:
            doc = problem(d.get(path), 404)
            assert doc["instance"] == path, doc
        h = d.request("HEAD", "/v1/posts/2")
        assert h.status == 404 and h.body == b"", h
        # 405 with Allow on known shapes
        r = d.request("DELETE", "/v1/posts")
        problem(r, 405)
        assert r.headers["allow"] == "GET, HEAD, POST, PUT, PATCH", r.headers
        r = send(d, "POST", "/v1/posts/1", {})
        problem(r, 405)
        assert r.headers["allow"] == "GET, HEAD, PUT, PATCH, DELETE", r.headers
        r = send(d, "POST", "/v1/_export", {})
        problem(r, 405)
        assert r.headers["allow"] == "GET, HEAD", r.headers
        problem(d.request("PUT", "/v1"), 405)
        assert revision(d) == 1
    with_daemon(t)


# ---- singular resources ----

def test_singular_resources_put_patch_get():
    def t(d):
        bad(d, "PATCH", "/v1/profile", {"a": 1}, 404)          # no resource yet
        r = send(d, "PUT", "/v1/profile", {"name": "n", "prefs": {"a": 1, "b": 2}})
        assert ok(r, 201) == {"name": "n", "prefs": {"a": 1, "b": 2}}, r  # no id added
        assert r.headers["etag"] == '"1"' and r.headers["x-revision"] == "1", r
        g = d.get("/v1/profile")
        assert ok(g) == r.json() and g.headers["etag"] == '"1"', g
        assert "x-total-count" not in g.headers
        r = send(d, "PATCH", "/v1/profile", {"prefs": {"a": None, "c": 3}, "age": 5})
        assert ok(r) == {"name": "n", "prefs": {"b": 2, "c": 3}, "age": 5}, r
        assert r.headers["etag"] == '"2"', r
        r = send(d, "PUT", "/v1/profile", {"only": True})
        assert ok(r) == {"only": True} and r.headers["etag"] == '"3"', r
        assert ok(d.get("/v1")) == {"revision": 3, "collections": {},
                                    "resources": {"profile": {"revision": 3}}}
        assert json.loads(d.get("/v1/_export").body) == {"profile": {"only": True}}
        # conditional requests on a resource
        bad(d, "PATCH", "/v1/profile", {"x": 1}, 412, headers={"If-Match": '"2"'})
        assert ok(send(d, "PATCH", "/v1/profile", {"x": 1}, headers={"If-Match": '"3"'}))["x"] == 1
        assert d.get("/v1/profile", headers={"If-None-Match": '"4"'}).status == 304
        # a resource is not a collection and the other way round: 409
        bad(d, "POST", "/v1/profile", {"a": 1}, 409)
        bad(d, "PUT", "/v1/profile/1", {"a": 1}, 409)
        bad(d, "PATCH", "/v1/profile/1", {"a": 1}, 409)
        bad(d, "DELETE", "/v1/profile/1", status=409)
        problem(d.get("/v1/profile/1"), 404)
        ok(send(d, "POST", "/v1/posts", {}), 201)
        bad(d, "PUT", "/v1/posts", {"a": 1}, 409)
        bad(d, "PATCH", "/v1/posts", {"a": 1}, 409)
        # non-object bodies
        for body in ["[]", "1", '"s"', "null", "{"]:
            bad(d, "PUT", "/v1/profile", body)
            bad(d, "PATCH", "/v1/profile", body)
    with_daemon(t)


# ---- auto_create = false, seed_file ----

def test_auto_create_false_404_on_writes_to_unknown_names():
    seed = write_json({"posts": [{"id": 1, "t": "a"}], "profile": {"n": 1}})
    try:
        def t(d):
            r0 = revision(d)
            assert r0 == 1, r0
            bad(d, "POST", "/v1/comments", {"a": 1}, 404)
            bad(d, "PUT", "/v1/comments/1", {"a": 1}, 404)
            bad(d, "PATCH", "/v1/comments/1", {"a": 1}, 404)
            bad(d, "DELETE", "/v1/comments/1", status=404)
            bad(d, "PUT", "/v1/settings", {"a": 1}, 404)
            bad(d, "PATCH", "/v1/settings", {"a": 1}, 404)
            assert "comments" not in ok(d.get("/v1"))["collections"]
            # existing names are still writable, PUT still creates documents
            assert ok(send(d, "POST", "/v1/posts", {"t": "b"}), 201)["id"] == 2
            assert ok(send(d, "PUT", "/v1/posts/5", {}), 201) == {"id": 5}
            assert ok(send(d, "PUT", "/v1/profile", {"n": 2})) == {"n": 2}
        with_daemon(t, settings={"collections.auto_create": False, "store.seed_file": seed})
    finally:
        os.unlink(seed)


def test_reload_turns_auto_create_off_and_changes_depth():
    def t(d):
        assert send(d, "POST", "/v1/a", '{"x":{"y":1}}').status == 201
        settings = dict(d.settings)
        settings.update({"collections.auto_create": False, "max_json_depth": 2})
        d.write_config(settings)
        os.kill(d.pid(), signal.SIGHUP)
        assert d.wait_for(lambda: d.stats()["gauges"]["config_generation"] == 2), d.log()
        bad(d, "POST", "/v1/b", {}, 404)
        bad(d, "PUT", "/v1/r", {}, 404)
        bad(d, "POST", "/v1/a", '{"x":{"y":[1]}}')
        assert send(d, "POST", "/v1/a", '{"x":{"y":1}}').status == 201
        assert send(d, "POST", "/v1/a", '{"x":1}').status == 201
    with_daemon(t)


def test_api_prefix_in_location_and_link():
    def t(d):
        r = send(d, "POST", "/api/posts", {})
        assert r.status == 201 and r.headers["location"] == "/api/posts/1", r
        send(d, "POST", "/api/posts", {})
        r = d.get("/api/posts?_page=1&_limit=1")
        assert r.headers["link"].startswith('</api/posts?_page=1&_limit=1>; rel="first"'), r
        assert ok(d.get("/api"))["collections"]["posts"]["count"] == 2
        assert d.get("/api/_export").status == 200
        problem(d.get("/v1/posts"), 404)
    with_daemon(t, settings={"api_prefix": "/api"})


def test_seed_file_loads_when_empty():
    db = {"posts": [{"id": 1, "title": "a"}, {"title": "no id"}, {"id": 5, "x": [1, {"y": None}]}],
          "users": [{"id": "u1"}, {"name": "random id"}],
          "empty": [],
          "profile": {"name": "typicode"}}
    seed = write_json(db)
    try:
        def t(d):
            assert "imported" in d.log() and seed in d.log()
            ex = json.loads(d.get("/v1/_export").body)
            assert ex["posts"] == [{"id": 1, "title": "a"}, {"title": "no id", "id": 6},
                                   {"id": 5, "x": [1, {"y": None}]}], ex
            assert ex["users"][0] == {"id": "u1"}
            rid = ex["users"][1]["id"]
            assert isinstance(rid, str) and re.fullmatch(r"[A-Za-z0-9_-]{21}", rid), ex
            assert ex["empty"] == [] and ex["profile"] == {"name": "typicode"}
            assert sorted(ex) == ["empty", "posts", "profile", "users"]
            root = ok(d.get("/v1"))
            assert root == {"revision": 1,
                            "collections": {"empty": {"count": 0, "revision": 1},
                                            "posts": {"count": 3, "revision": 1},
                                            "users": {"count": 2, "revision": 1}},
                            "resources": {"profile": {"revision": 1}}}, root
            assert d.get("/v1/posts/6").headers["etag"] == '"1"'
            assert ok(send(d, "POST", "/v1/posts", {}), 201)["id"] == 7
        with_daemon(t, settings={"store.seed_file": seed})
    finally:
        os.unlink(seed)


def test_bad_seed_or_import_file_fails_start():
    for content, code in [("{", 65), ('{"posts": [1]}', 65), ('{"posts": 1}', 65),
                          ('{"_bad": []}', 65), ('{"p": [{"id": "a b"}]}', 65),
                          ('{"p": [{"id": 1}, {"id": 1}]}', 65), ("[]", 65)]:
        fd, path = tempfile.mkstemp(prefix="cairn-db-", suffix=".json")
        os.write(fd, content.encode())
        os.close(fd)
        try:
            for kw in [{"settings": {"store.seed_file": path}}, {"args": ["--import", path]}]:
                d = Daemon(start=False, **kw)
                try:
                    try:
                        d.start()
                    except RuntimeError:
                        pass
                    else:
                        raise AssertionError("cairnd started with %r (%r)" % (content, kw))
                    assert d.proc.wait(10) == code, (content, kw, d.proc.returncode, d.log())
                    assert "AddressSanitizer" not in d.log() and "runtime error" not in d.log()
                finally:
                    d.cleanup()
        finally:
            os.unlink(path)
    d = Daemon(start=False, args=["--import", "/nonexistent/db.json"])
    try:
        try:
            d.start()
            raise AssertionError("started without its import file")
        except RuntimeError:
            pass
        assert d.proc.wait(10) == 66, d.log()   # EX_NOINPUT
    finally:
        d.cleanup()


# ---- names and ids ----

def test_invalid_names_and_ids_400():
    def t(d):
        ok(send(d, "POST", "/v1/posts", {"id": 1}), 201)
        long_name, long_id = "n" * 64, "i" * 128
        assert ok(send(d, "POST", "/v1/" + long_name, {}), 201)["id"] == 1
        assert ok(send(d, "PUT", "/v1/posts/" + long_id, {}), 201)["id"] == long_id
        for name in ["_under", "-dash", ".dot", "a~b", "n" * 65, "a%20b", "%C3%A9", "a%3Fb"]:
            bad(d, "POST", "/v1/" + name, {"a": 1})
            bad(d, "PUT", "/v1/" + name, {"a": 1})
            bad(d, "PUT", "/v1/" + name + "/1", {"a": 1})
        for ident in ["i" * 129, "a%20b", "%C3%A9", "a:b", "a%3Fb", "%2E%2E"]:
            bad(d, "PUT", "/v1/posts/" + ident, {"a": 1})
            bad(d, "PATCH", "/v1/posts/" + ident, {"a": 1})
            bad(d, "DELETE", "/v1/posts/" + ident)
        # ids in bodies: integer >= 0 or a string of unreserved characters
        for ident in [-1, 1.5, 1e3, True, [], {}, "", "a b", "a/b", ".", "..",
                      "i" * 129, "\u00e9"]:
            bad(d, "POST", "/v1/posts", {"id": ident})
        # reads of impossible names are plain 404s
        problem(d.get("/v1/a~b"), 404)
        problem(d.get("/v1/" + "n" * 65), 404)
    with_daemon(t)


def test_encoded_slash_is_not_a_path_separator():
    """%2F inside a segment is data, not structure: 'a%2Fb' is one (invalid) name or id.

    Decoding it before routing would let PUT /v1/a%2Fb write document "b" of collection
    "a", a path a proxy or an audit log in front of cairnd sees as something else.
    """
    def t(d):
        ok(send(d, "POST", "/v1/posts", {"id": 1}), 201)
        for method, path in [("PUT", "/v1/a%2Fb"), ("PATCH", "/v1/a%2Fb"), ("POST", "/v1/a%2Fb"),
                             ("PUT", "/v1/posts%2F1"), ("PUT", "/v1/posts/1%2Fx"),
                             ("DELETE", "/v1/posts%2F1"), ("PATCH", "/v1/posts%2f1")]:
            body = None if method == "DELETE" else {"x": 1}
            bad(d, method, path, body)
        assert ok(d.get("/v1/posts/1")) == {"id": 1}
        assert "a" not in ok(d.get("/v1"))["collections"]
    with_daemon(t)


# ---- bodies ----

def test_bad_bodies_400_and_415():
    def t(d):
        ok(send(d, "POST", "/v1/posts", {}), 201)
        ok(send(d, "PUT", "/v1/profile", {}), 201)
        bodies = ["[]", "[{}]", "1", '"s"', "null", "true",                 # not an object
                  "{", '{"a":1', '{"a":1}}', '{"a":1} x', "{'a':1}", '{"a":01}',  # malformed
                  '{"a":"\xff"}'.encode("latin-1"), b'{"a":"\\ud800"}x',
                  "", "  ", b"\x00", '{"a":NaN}', '{"a":1,}']
        for body in bodies:
            for method, path in [("POST", "/v1/posts"), ("PUT", "/v1/posts/1"),
                                 ("PATCH", "/v1/posts/1"), ("PUT", "/v1/profile"),
                                 ("PATCH", "/v1/profile"), ("POST", "/v1/newcoll")]:
                bad(d, method, path, body)
        doc = bad(d, "POST", "/v1/posts", '{"a":')
        assert doc["detail"].startswith("malformed JSON at line 1"), doc
        # no body at all
        bad(d, "POST", "/v1/posts", raw_headers=True, headers={"Content-Length": "0"})
        # not JSON: 415
        bad(d, "POST", "/v1/posts", b"a=1", 415,
            headers={"Content-Type": "application/x-www-form-urlencoded"}, raw_headers=True)
        bad(d, "POST", "/v1/posts", b"{}", 415, headers={}, raw_headers=True)
        bad(d, "PATCH", "/v1/posts/1", b"{}", 415, headers={"Content-Type": "text/json"},
            raw_headers=True)
        assert "newcoll" not in ok(d.get("/v1"))["collections"]
    with_daemon(t)


def test_body_depth_limit():
    def nest(depth, inner="1"):
        """An object 'depth' containers deep: {"a":{"a":...1...}}."""
        return '{"a":' * depth + inner + "}" * depth

    def t(d):
        r = send(d, "POST", "/v1/deep", nest(64))
        assert r.status == 201, r
        doc = bad(d, "POST", "/v1/deep", nest(65))
        assert "deeper than 64" in doc["detail"], doc
        # arrays count too; brackets inside strings do not
        assert send(d, "POST", "/v1/deep", '{"a":' + "[" * 63 + "]" * 63 + "}").status == 201
        bad(d, "POST", "/v1/deep", '{"a":' + "[" * 64 + "]" * 64 + "}")
        s = json.dumps("[{" * 200 + '\\"' + "{[" * 200)
        assert send(d, "POST", "/v1/deep", '{"s":%s}' % s).status == 201
        # far deeper than any parser stack: still a 400, and fast
        bad(d, "POST", "/v1/deep", "[" * 100000)
        bad(d, "POST", "/v1/deep", nest(100000))
        bad(d, "PATCH", "/v1/deep/1", nest(65))
        bad(d, "PUT", "/v1/deep/1", nest(65))
        # the stored 64-deep document reads back and can be patched at its depth
        got = ok(d.get("/v1/deep/1"))
        depth = 0
        while isinstance(got, dict) and "a" in got:
            got, depth = got["a"], depth + 1
        assert depth == 64, depth
    with_daemon(t)

    def small(d):
        assert send(d, "POST", "/v1/s", nest(3)).status == 201
        bad(d, "POST", "/v1/s", nest(4))
        bad(d, "PUT", "/v1/conf", '{"a":[[[1]]]}')
        assert send(d, "PUT", "/v1/conf", '{"a":[[1]]}').status == 201
        # max_body_bytes: a larger body is 413, declared or chunked
        assert send(d, "POST", "/v1/s", {"x": "y" * 80}).status == 201
        bad(d, "POST", "/v1/s", {"x": "y" * 200}, 413)
        c = d.conn()
        try:
            c.putrequest("POST", "/v1/s")
            c.putheader("Content-Type", "application/json")
            c.putheader("Transfer-Encoding", "chunked")
            c.endheaders()
            data = json.dumps({"x": "y" * 300}).encode()
            c.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
            r = c.getresponse()
            assert r.status == 413, r.status
            r.read()
        finally:
            c.close()
        assert len(ok(d.get("/v1/s"))) == 2
    with_daemon(small, settings={"max_json_depth": 3, "max_body_bytes": 128})


# ---- conditional requests ----

def test_etag_and_if_match():
    def t(d):
        r = send(d, "POST", "/v1/posts", {"v": 1})           # rev 1
        assert r.headers["etag"] == etag(1)
        send(d, "POST", "/v1/other", {})                     # rev 2
        g = d.get("/v1/posts/1")
        assert g.headers["etag"] == etag(1), g              # the doc's own revision, not the store's
        for method, body in [("PUT", {"v": 9}), ("PATCH", {"v": 9}), ("DELETE", None)]:
            for tag in ['"2"', '"0"', 'W/"1"', '"1 "', "1", '"abc"', '""', "garbage", 'W/"1", "3"',
                        '"' + "9" * 25 + '"']:
                before = d.get("/v1/posts/1")
                doc = bad(d, method, "/v1/posts/1", body, 412, headers={"If-Match": tag})
                assert "If-Match" in doc["detail"], doc
                after = d.get("/v1/posts/1")
                assert after.body == before.body and after.headers["etag"] == etag(1)
            # the 412 carries the current ETag
            r = send(d, method, "/v1/posts/1", body, headers={"If-Match": '"7"'})
            assert r.status == 412 and r.headers["etag"] == etag(1), r
        # a list of tags: one match is enough
        r = send(d, "PATCH", "/v1/posts/1", {"w": 2}, headers={"If-Match": '"5", "1" ,W/"9"'})
        assert ok(r)["w"] == 2 and r.headers["etag"] == etag(3), r
        r = send(d, "PUT", "/v1/posts/1", {"v": 3}, headers={"If-Match": etag(3)})
        assert ok(r) == {"v": 3, "id": 1} and r.headers["etag"] == etag(4), r
        # *: any current representation
        r = send(d, "PATCH", "/v1/posts/1", {"x": 1}, headers={"If-Match": "*"})
        assert r.status == 200 and r.headers["etag"] == etag(5), r
        # * on a missing document: PUT must not create it
        bad(d, "PUT", "/v1/posts/2", {"v": 1}, 412, headers={"If-Match": "*"})
        bad(d, "PUT", "/v1/posts/2", {"v": 1}, 412, headers={"If-Match": '"5"'})
        problem(d.get("/v1/posts/2"), 404)
        # and a PUT with a tag to a fresh collection neither
        bad(d, "PUT", "/v1/newc/1", {}, 412, headers={"If-Match": "*"})
        assert "newc" not in ok(d.get("/v1"))["collections"]
        # POST: the target is the collection, its revision the tag
        coll_rev = ok(d.get("/v1"))["collections"]["posts"]["revision"]
        bad(d, "POST", "/v1/posts", {}, 412, headers={"If-Match": etag(coll_rev - 1)})
        bad(d, "POST", "/v1/brandnew", {}, 412, headers={"If-Match": "*"})
        r = send(d, "POST", "/v1/posts", {}, headers={"If-Match": etag(coll_rev)})
        assert r.status == 201 and r.json()["id"] == 2 and r.headers["etag"] == etag(6), r
        ok(d.request("DELETE", "/v1/posts/2", headers={"If-Match": etag(6)}))
        # DELETE with the right tag
        r = d.request("DELETE", "/v1/posts/1", headers={"If-Match": etag(5)})
        assert ok(r) == {} and r.headers["x-revision"] == "8", r
    with_daemon(t)


def test_if_match_many_tags():
    """RFC 9110 13.1.1: If-Match is true when any listed tag matches, however many are listed."""
    def t(d):
        send(d, "POST", "/v1/posts", {"v": 1})  # rev 1
        for n in [2, 8]:
            cur = revision(d)
            tags = ", ".join(['"%d"' % (100 + i) for i in range(n - 1)] + [etag(cur)])
            r = send(d, "PATCH", "/v1/posts/1", {"n": n}, headers={"If-Match": tags})
            assert r.status == 200 and r.headers["etag"] == etag(cur + 1), (n, r)
        # nine tags, the current one last: honoured (or refused as too many, 400), never a
        # 412 that claims the current tag does not match
        cur = revision(d)
        tags = ", ".join(['"%d"' % (100 + i) for i in range(8)] + [etag(cur)])
        r = send(d, "PATCH", "/v1/posts/1", {"n": 9}, headers={"If-Match": tags})
        assert r.status in (200, 400), r
    with_daemon(t)


def test_if_none_match_304():
    def t(d):
        send(d, "POST", "/v1/posts", {"v": 1})     # rev 1
        send(d, "PUT", "/v1/profile", {"p": 1})    # rev 2
        for path, tag in [("/v1/posts/1", '"1"'), ("/v1/profile", '"2"')]:
            for h in [tag, "W/" + tag, '"9", ' + tag, "*"]:
                r = d.get(path, headers={"If-None-Match": h})
                assert r.status == 304 and r.body == b"", (h, r)
                assert r.headers["etag"] == tag, r
                r = d.request("HEAD", path, headers={"If-None-Match": h})
                assert r.status == 304 and r.body == b"", (h, r)
            for h in ['"3"', '"11"', '"1' + tag[1:], 'W/"0"', '"abc"']:
                if h == tag:
                    continue
                r = d.get(path, headers={"If-None-Match": h})
                assert r.status == 200 and r.headers["etag"] == tag and r.json(), (h, r)
        # stale after a write
        send(d, "PATCH", "/v1/posts/1", {"v": 2})   # rev 3
        r = d.get("/v1/posts/1", headers={"If-None-Match": '"1"'})
        assert r.status == 200 and r.headers["etag"] == '"3"' and ok(r)["v"] == 2, r
        assert d.get("/v1/posts/1", headers={"If-None-Match": '"3"'}).status == 304
        # a missing doc is still 404
        problem(d.get("/v1/posts/2", headers={"If-None-Match": "*"}), 404)
    with_daemon(t)


def test_304_content_length_is_that_of_the_200():
    """RFC 9110 8.6: a 304 may carry Content-Length only as the length the 200 would have had."""
    def t(d):
        send(d, "POST", "/v1/posts", {"title": "some title", "n": 1})
        send(d, "PUT", "/v1/profile", {"name": "p"})
        for path in ["/v1/posts/1", "/v1/profile"]:
            full = d.get(path)
            c = d.conn()
            try:
                for method in ["GET", "HEAD"]:
                    r = d.request(method, path, headers={"If-None-Match": full.headers["etag"]},
                                  conn=c)
                    assert r.status == 304 and r.body == b"", r
                    assert r.headers.get("content-length", str(len(full.body))) == \
                        str(len(full.body)), (path, method, r.headers, len(full.body))
                    # the connection stays usable: the framing was right
                    assert d.get(path, conn=c).body == full.body
            finally:
                c.close()
    with_daemon(t)


def test_head_on_a_document():
    def t(d):
        send(d, "POST", "/v1/posts", {"title": "héllo", "n": [1, 2]})
        g = d.get("/v1/posts/1")
        h = d.request("HEAD", "/v1/posts/1")
        assert h.status == 200 and h.body == b"", h
        assert h.headers["etag"] == g.headers["etag"] == '"1"'
        assert h.headers["content-length"] == g.headers["content-length"] == str(len(g.body))
        assert h.headers["content-type"] == "application/json"
        h = d.request("HEAD", "/v1/posts")
        assert h.status == 200 and h.body == b"" and h.headers["x-revision"] == "1", h
        assert h.headers["x-total-count"] == "1"
        h = d.request("HEAD", "/v1/_export")
        assert h.status == 200 and h.body == b"" and h.headers["x-revision"] == "1", h
    with_daemon(t)


def test_list_x_revision_is_the_snapshot_revision():
    def t(d):
        r = d.get("/v1/_export")
        assert ok(r) == {} and r.headers["x-revision"] == "0", r
        send(d, "POST", "/v1/a", {})      # 1
        send(d, "POST", "/v1/b", {})      # 2
        r = d.get("/v1/a")
        assert r.headers["x-revision"] == "2" and r.headers["x-total-count"] == "1", r
        send(d, "PUT", "/v1/r", {})       # 3
        for path in ["/v1/a", "/v1/b", "/v1/a?id=1", "/v1/a?_page=1", "/v1/_export", "/v1"]:
            assert d.get(path).headers["x-revision"] == "3", path
        # a rejected write takes no revision
        bad(d, "POST", "/v1/a", {"id": 1}, 409)
        assert d.get("/v1/a").headers["x-revision"] == "3"
    with_daemon(t)


# ---- the query dialect ----

POSTS = [
    {"id": 1, "title": "Hello World", "views": 10, "author": {"name": "Ann", "age": 30},
     "tags": ["a", "b"], "draft": False},
    {"id": 2, "title": "hello again", "views": 25, "author": {"name": "Bob", "age": 25},
     "tags": ["b"], "draft": True, "rating": 4.5},
    {"id": 3, "title": "Third", "views": 5, "author": {"name": "ann", "age": 41}, "tags": [],
     "draft": False, "rating": 3},
    {"id": 4, "title": "Fourth post", "views": 25, "author": {"name": "Cy", "age": 30},
     "draft": False},
    {"id": 5, "title": "fifth", "views": 100, "author": {"name": "Dee", "age": 19},
     "tags": ["c"], "draft": None, "note": "100 percent"},
]


def with_posts(fn):
    seed = write_json({"posts": POSTS})
    try:
        with_daemon(fn, settings={"store.seed_file": seed})
    finally:
        os.unlink(seed)


def q(d, query):
    r = d.get("/v1/posts?" + query)
    assert r.status == 200, (query, r)
    got = r.json()
    assert r.headers["x-revision"] == "1", r
    return [x["id"] for x in got], r


def test_query_field_equality_repeats_and_paths():
    def t(d):
        cases = {
            "": [1, 2, 3, 4, 5],
            "views=25": [2, 4],
            "id=1&id=3": [1, 3],                   # repeat = OR
            "views=25&id=4": [4],                  # different fields = AND
            "id=1&id=3&views=5": [3],
            "title=Third": [3],
            "title=third": [],                     # exact, case-sensitive
            "draft=true": [2],
            "draft=false": [1, 3, 4],
            "draft=null": [5],
            "rating=4.5": [2],
            "rating=3": [3],
            "author.name=Ann": [1],
            "author.age=30": [1, 4],
            "author.age=30&author.name=Cy": [4],
            "tags=b": [1, 2],                      # an array matches on any element
            "tags.0=a": [1],                       # numeric segments index arrays
            "nope=1": [],
            "title=Hello%20World": [1],
            "title=Hello+World": [1],
            "_=12345": [1, 2, 3, 4, 5],            # jQuery's cache buster is ignored
        }
        for query, want in cases.items():
            got, r = q(d, query)
            assert got == want, (query, got, want)
            assert r.headers["x-total-count"] == str(len(want)), (query, r.headers)
    with_posts(t)


def test_query_operators_gte_lte_ne_like_q():
    def t(d):
        cases = {
            "views_gte=25": [2, 4, 5],
            "views_lte=10": [1, 3],
            "views_gte=10&views_lte=25": [1, 2, 4],
            "views_gte=1e2": [5],
            "author.age_gte=30": [1, 3, 4],
            "title_gte=h": [2],                    # strings compare bytewise
            "views_ne=25": [1, 3, 5],
            "views_ne=25&views_ne=5": [1, 5],      # _ne repeats: none of them
            "author.name_ne=Ann": [2, 3, 4, 5],
            "rating_ne=3": [2],                    # a missing field fails every operator
            "title_like=hello": [1, 2],            # case-insensitive
            "title_like=^h": [1, 2],
            "title_like=^f": [4, 5],
            "title_like=th$": [5],
            "title_like=st$": [4],
            "title_like=o.*o": [1, 4],
            "title_like=hello&title_like=third": [1, 2, 3],   # repeats = OR
            "author.name_like=^ann$": [1, 3],
            "title_like=%5Bxyz%5D": [],
            "q=hello": [1, 2],
            "q=ANN": [1, 3],                       # nested strings, case-insensitive
            "q=100": [5],                          # numbers and strings
            "q=percent": [5],
            "q=": [1, 2, 3, 4, 5],                 # empty q filters nothing
            "q=hello&views=25": [2],
            "q=zzz": [],
        }
        for query, want in cases.items():
            got, r = q(d, query)
            assert got == want, (query, got, want)
            assert r.headers["x-total-count"] == str(len(want)), (query, r.headers)
        for query in ["title_like=(", "title_like=a)", "title_like=%5B", "title_like=(a)%5C1",
                      "title_like=" + "a" * 300, "title_like=(a%7B1,100%7D)%7B1,100%7D",
                      "q=" + "x" * 300]:
            bad(d, "GET", "/v1/posts?" + query)
    with_posts(t)


def test_query_sort_order_multi_key():
    def t(d):
        cases = {
            "_sort=views": [3, 1, 2, 4, 5],                       # ties keep insertion order
            "_sort=views&_order=asc": [3, 1, 2, 4, 5],
            "_sort=views&_order=desc": [5, 2, 4, 1, 3],
            "_sort=views&_order=DESC": [5, 2, 4, 1, 3],
            "_sort=views,author.age&_order=desc,asc": [5, 2, 4, 1, 3],
            "_sort=views,author.age&_order=asc,desc": [3, 1, 4, 2, 5],
            "_sort=views,author.age&_order=,desc": [3, 1, 4, 2, 5],
            "_sort=author.age,views&_order=desc,desc": [3, 4, 1, 2, 5],
            "_sort=author.name": [1, 2, 4, 5, 3],                 # bytewise: uppercase first
            "_sort=title&_order=desc": [2, 5, 3, 1, 4],      # h > f > T > H > F
            "_sort=rating": [3, 2, 1, 4, 5],                      # missing sorts last
            "_sort=views&views_gte=10&_order=desc": [5, 2, 4, 1],
        }
        for query, want in cases.items():
            got, _ = q(d, query)
            assert got == want, (query, got, want)
        for query in ["_order=asc", "_sort=", "_sort=a,,b", "_sort=views&_order=up",
                      "_sort=views&_order=asc,desc", "_sort=views&_sort=id",
                      "_sort=" + ",".join(["a"] * 9)]:
            bad(d, "GET", "/v1/posts?" + query)
    with_posts(t)


def test_query_page_limit_link_total():
    def t(d):
        got, r = q(d, "_page=2&_limit=2")
        assert got == [3, 4] and r.headers["x-total-count"] == "5", r
        assert r.headers["link"] == (
            '</v1/posts?_page=1&_limit=2>; rel="first", '
            '</v1/posts?_page=1&_limit=2>; rel="prev", '
            '</v1/posts?_page=3&_limit=2>; rel="next", '
            '</v1/posts?_page=3&_limit=2>; rel="last"'), r.headers["link"]
        got, r = q(d, "_page=1&_limit=2")
        assert got == [1, 2]
        assert r.headers["link"] == (
            '</v1/posts?_page=1&_limit=2>; rel="first", '
            '</v1/posts?_page=2&_limit=2>; rel="next", '
            '</v1/posts?_page=3&_limit=2>; rel="last"'), r.headers["link"]
        got, r = q(d, "_limit=2&_page=3")
        assert got == [5]
        assert r.headers["link"] == (
            '</v1/posts?_limit=2&_page=1>; rel="first", '
            '</v1/posts?_limit=2&_page=2>; rel="prev", '
            '</v1/posts?_limit=2&_page=3>; rel="last"'), r.headers["link"]
        # other parameters ride along, encoded, in their order
        got, r = q(d, "views_gte=10&_page=2&_limit=1&title_like=o%20")
        assert got == [2] and r.headers["x-total-count"] == "2", r
        assert r.headers["link"] == (
            '</v1/posts?views_gte=10&_page=1&_limit=1&title_like=o%20>; rel="first", '
            '</v1/posts?views_gte=10&_page=1&_limit=1&title_like=o%20>; rel="prev", '
            '</v1/posts?views_gte=10&_page=2&_limit=1&title_like=o%20>; rel="last"'), \
            r.headers["link"]
        # one page holds everything, or the page is past the end: no Link
        for query, want in [("_page=1", [1, 2, 3, 4, 5]), ("_page=1&_limit=5", [1, 2, 3, 4, 5]),
                            ("_page=4&_limit=2", []), ("_page=1000000000", [])]:
            got, r = q(d, query)
            assert got == want and "link" not in r.headers, (query, r)
            assert r.headers["x-total-count"] == "5", r
        # filters, sorting and pages together
        got, r = q(d, "_sort=views&_order=desc&_page=2&_limit=2")
        assert got == [4, 1] and r.headers["x-total-count"] == "5", r
        got, r = q(d, "draft=false&_sort=views&_page=1&_limit=2")
        assert got == [3, 1] and r.headers["x-total-count"] == "3", r
        for query in ["_page=0", "_page=-1", "_page=x", "_page=1&_limit=0", "_limit=10001",
                      "_page=1&_start=1", "_page=1&_end=1", "_page=1&_page=2",
                      "_limit=1.5", "_page=1000000001"]:
            bad(d, "GET", "/v1/posts?" + query)
    with_posts(t)


def test_query_start_end_limit():
    def t(d):
        cases = {
            "_start=1&_end=3": [2, 3],
            "_end=2": [1, 2],
            "_start=3": [4, 5],
            "_start=1&_limit=2": [2, 3],
            "_limit=3": [1, 2, 3],
            "_limit=0": [],
            "_start=4&_end=100": [5],
            "_start=10": [],
            "_start=3&_end=1": [],
            "_sort=views&_start=1&_end=3": [1, 2],
            "views=25&_start=1": [4],
        }
        for query, want in cases.items():
            got, r = q(d, query)
            assert got == want, (query, got, want)
            total = "2" if query.startswith("views=25") else "5"
            assert r.headers["x-total-count"] == total, (query, r.headers)
            assert "link" not in r.headers
        for query in ["_start=-1", "_end=x", "_end=2&_limit=1", "_start=1&_start=2"]:
            bad(d, "GET", "/v1/posts?" + query)
    with_posts(t)


def test_query_unknown_underscore_params_400():
    def t(d):
        for name in ["_x", "_embed", "_expand", "_foo", "__", "_like", "_sort_", "_Page"]:
            doc = bad(d, "GET", "/v1/posts?%s=1" % name)
            assert name in doc["detail"] or "?" in doc["detail"], doc
        # bad paths in field names
        for query in ["a..b=1", ".a=1", "a.=1", ".".join("a" * 17) + "=1", "=1"]:
            bad(d, "GET", "/v1/posts?" + query)
        # too many parameters
        bad(d, "GET", "/v1/posts?" + "&".join("f%d=1" % i for i in range(65)))
        assert q(d, "&".join("id=%d" % i for i in range(64)))[0] == [1, 2, 3, 4, 5]
    with_posts(t)


# ---- export and import ----

def build_state(d):
    send(d, "POST", "/v1/posts", {"title": "a", "nested": {"x": [1, 2, {"y": None}]}})
    send(d, "POST", "/v1/posts", {"id": 10, "title": "b"})
    send(d, "POST", "/v1/posts", {"title": "c"})
    send(d, "PATCH", "/v1/posts/1", {"title": "a2", "nested": {"x": None}})
    send(d, "DELETE", "/v1/posts/10")
    send(d, "POST", "/v1/users", {"id": "alice", "n": "\u00e9\u4e2d\U0001f600\n\"\\"})
    send(d, "POST", "/v1/users", {"n": "gen"})
    send(d, "PUT", "/v1/users/bob", {"n": 1.5, "big": 12345678901234567, "f": -0.0})
    send(d, "POST", "/v1/emptied", {})
    send(d, "DELETE", "/v1/emptied/1")
    send(d, "PUT", "/v1/profile", {"name": "p", "list": []})
    send(d, "PUT", "/v1/a.b-c_d", {})


def test_export_is_the_state():
    def t(d):
        build_state(d)
        r = d.get("/v1/_export")
        ex = ok(r)
        assert r.headers["x-revision"] == str(revision(d)), r
        assert list(ex) == sorted(ex), list(ex)          # names in byte order
        assert ex["posts"] == [{"title": "a2", "nested": {}, "id": 1},
                               {"title": "c", "id": 11}], ex["posts"]
        users = ex["users"]
        assert users[0] == {"id": "alice", "n": "\u00e9\u4e2d\U0001f600\n\"\\"}
        assert users[1]["n"] == "gen" and isinstance(users[1]["id"], str)
        assert users[2] == {"n": 1.5, "big": 12345678901234567, "f": -0.0, "id": "bob"}
        assert ex["emptied"] == [] and ex["profile"] == {"name": "p", "list": []}
        assert ex["a.b-c_d"] == {}
        # every list and document agrees with the export
        for name, value in ex.items():
            if isinstance(value, list):
                assert ok(d.get("/v1/" + name)) == value, name
                for doc in value:
                    assert ok(d.get("/v1/%s/%s" % (name, doc["id"]))) == doc
            else:
                assert ok(d.get("/v1/" + name)) == value, name
    with_daemon(t)


def test_export_import_round_trip():
    d = Daemon()
    path = None
    try:
        build_state(d)
        exported = d.get("/v1/_export").body
        root = ok(d.get("/v1"))
        fd, path = tempfile.mkstemp(prefix="cairn-export-", suffix=".json")
        os.write(fd, exported)
        os.close(fd)
        assert d.stop() == 0
        e = Daemon(args=["--import", path])
        try:
            r = e.get("/v1/_export")
            assert r.body == exported, (r.body, exported)
            assert r.headers["x-revision"] == "1"
            root2 = ok(e.get("/v1"))
            assert {k: v["count"] for k, v in root2["collections"].items()} == \
                {k: v["count"] for k, v in root["collections"].items()}
            assert set(root2["resources"]) == set(root["resources"])
            # generated ids continue above the imported ones
            assert ok(send(e, "POST", "/v1/posts", {}), 201)["id"] == 12
            # --import replaces, even over a seed file
            assert e.stop() == 0
        finally:
            e.cleanup()
        seed = write_json({"other": [{"id": 1}]})
        try:
            f = Daemon(args=["--import", path], settings={"store.seed_file": seed})
            try:
                assert f.get("/v1/_export").body == exported
                assert f.stop() == 0
            finally:
                f.cleanup()
        finally:
            os.unlink(seed)
        # json-server's own db.json: pretty-printed, ids of both kinds
        db = {"posts": [{"id": 1, "title": "json-server", "author": "typicode"}],
              "comments": [{"id": 1, "body": "some comment", "postId": 1}],
              "profile": {"name": "typicode"}}
        with open(path, "w") as fp:
            json.dump(db, fp, indent=2)
        g = Daemon(args=["--import", path])
        try:
            assert json.loads(g.get("/v1/_export").body) == db
            assert ok(g.get("/v1/comments?postId=1")) == db["comments"]
            assert g.stop() == 0
        finally:
            g.cleanup()
    finally:
        d.cleanup()
        if path:
            os.unlink(path)




def test_whole_list_is_served_from_the_version_cache():
    """GET of a whole collection is serialized once per collection version and sent
    borrowed: it must still follow every write, and keep its headers."""
    def t(d):
        for i in range(3):
            ok(send(d, "POST", "/v1/c", {"v": i}), 201)
        first = d.get("/v1/c")
        again = d.get("/v1/c")
        assert first.status == again.status == 200
        assert first.body == again.body == b'[{"v":0,"id":1},{"v":1,"id":2},{"v":2,"id":3}]'
        assert first.headers["x-total-count"] == "3"
        assert first.headers["x-revision"] == again.headers["x-revision"] == str(revision(d))
        ok(send(d, "PATCH", "/v1/c/2", {"v": "two"}))
        ok(send(d, "DELETE", "/v1/c/1"))
        after = d.get("/v1/c")
        assert after.body == b'[{"v":"two","id":2},{"v":2,"id":3}]', after.body
        assert after.headers["x-total-count"] == "2"
        assert after.headers["x-revision"] == str(revision(d))
        # with any query the list is built per request, and agrees
        assert d.get("/v1/c?_start=0").body == after.body
        assert d.get("/v1/c?_=1").body == after.body
    with_daemon(t)

def test_queries_agree_after_recovery_from_log_and_snapshot():
    """Docs keep bytes and a member index; recovery rebuilds the index by scanning the
    logged bytes. Queries over the fast path (top-level scalars), the escaped and nested
    slow paths, and a doc with no index must answer the same before and after restarts."""
    docs = [
        {"id": 1, "s": 'say "hi"', "n": {"k": [1, 2]}, "t": ["u", "v"], "v": 5, "r": 1.5},
        {"id": 2, "s": "plain", "n": {"k": [3]}, "t": "u", "v": 7, "w": "caf\u00e9 w\u00f6rld"},
        {"id": 3, 'we"ird': 1, "s": "tab\there", "v": 5, "n.k": 2, "r": -0.0},
        {"id": 4, "s": "back\\slash", "v": None, "t": [["u"]], "w": "WORLD", "r": 1e20},
        {"id": 5, "s": "plain", "v": 7, "big": 9223372036854775807, "neg": -9223372036854775808},
    ]
    queries = ["s=say%20%22hi%22", "s=tab%09here", "s=back%5Cslash", "s=plain", "n.k=2",
               "n.k=3", "n.k_gte=2", "t=u", "t_ne=u", "v=5", "v=null", "v_gte=6", "v_ne=5",
               "q=world", "q=%22hi", "w_like=%C3%B6", "we%22ird=1", "r=1.5", "r=-0",
               "r_gte=100", "big=9223372036854775807", "neg_lte=-1",
               "_sort=v&_order=desc&_limit=2", "_sort=s&_limit=3", "_sort=n.k,id",
               "_sort=t&_order=desc", "_sort=r&_start=1&_end=3", "s=plain&_sort=id&_order=desc"]

    # The expected answers, worked out here from docs/QUERY.md's rules, not from cairnd.
    missing = object()

    def get(doc, path):
        if "." in path and path in doc:
            return doc[path]  # lodash: the literal dotted key wins
        v = doc
        for seg in path.split("."):
            if isinstance(v, dict) and seg in v:
                v = v[seg]
            elif isinstance(v, list) and seg.isdigit() and (seg == "0" or seg[0] != "0") \
                    and int(seg) < len(v):
                v = v[int(seg)]
            else:
                return missing
        return v

    def canon(v):
        if v is None:
            return "null"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        if isinstance(v, float):
            for prec in (15, 16, 17):
                t = "%.*g" % (prec, v)
                if float(t) == v:
                    return t
        return v

    def scalars(v):  # the values an operator tests: an array's scalar elements
        if isinstance(v, list):
            return [x for x in v if not isinstance(x, (list, dict))]
        return [] if isinstance(v, dict) else [v]

    def is_num(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    def test(op, v, want):
        if v is missing:
            return False
        if op == "ne":
            return isinstance(v, dict) or all(canon(x) != want for x in scalars(v))
        for x in scalars(v):
            if op == "eq" and canon(x) == want:
                return True
            if op in ("gte", "lte") and x is not None:
                if is_num(x) and re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", want):
                    a, b = x, float(want)
                else:
                    a, b = canon(x).encode(), want.encode()
                if (a >= b) if op == "gte" else (a <= b):
                    return True
            if op == "like" and x is not None and re.search(want, canon(x), re.I):
                return True
        return False

    def text_hit(v, needle):  # q: strings and numbers anywhere, ASCII case folded
        if isinstance(v, dict):
            return any(text_hit(x, needle) for x in v.values())
        if isinstance(v, list):
            return any(text_hit(x, needle) for x in v)
        if isinstance(v, str) or is_num(v):
            fold = lambda t: "".join(c.lower() if c.isascii() else c for c in t)
            return needle in fold(canon(v))
        return False

    def expected(query):
        name, value = query.split("=", 1)
        value = urllib.parse.unquote(value)
        if name == "q":
            return [x["id"] for x in docs if text_hit(x, value.lower())]
        field, op = name, "eq"
        for suffix in ("ne", "gte", "lte", "like"):
            if name.endswith("_" + suffix):
                field, op = name[:-len(suffix) - 1], suffix
        return [x["id"] for x in docs if test(op, get(x, urllib.parse.unquote(field)), value)]

    # sorts, by hand: null < numbers < strings < arrays (element-wise) < missing; desc reverses
    # all of it; ties keep insertion order
    sorted_ids = {"_sort=v&_order=desc&_limit=2": ([2, 5], 5), "_sort=s&_limit=3": ([4, 2, 5], 5),
                  "_sort=n.k,id": ([3, 1, 2, 4, 5], 5), "_sort=t&_order=desc": ([3, 5, 4, 1, 2], 5),
                  "_sort=r&_start=1&_end=3": ([1, 4], 5),
                  "s=plain&_sort=id&_order=desc": ([5, 2], 2)}

    def answers(d):
        out = {}
        for query in queries:
            r = d.get("/v1/items?" + query)
            assert r.status == 200, (query, r)
            out[query] = (r.body, r.headers["x-total-count"])
            got = [x["id"] for x in json.loads(r.body)]
            want, total = sorted_ids.get(query) or (expected(query), None)
            assert got == want, (query, got, want)
            assert int(r.headers["x-total-count"]) == (total if total is not None else len(want))
        return out

    d = Daemon()
    try:
        for doc in docs:
            ok(send(d, "POST", "/v1/items", doc), 201)
        before = answers(d)
        assert json.loads(before["s=say%20%22hi%22"][0]) == [docs[0]]
        assert [x["id"] for x in json.loads(before["_sort=v&_order=desc&_limit=2"][0])] == [2, 5]
        assert before["we%22ird=1"][1] == "1" and before["n.k=2"][1] == "2"
        assert d.stop() == 0
        d.start()  # recovery from the log: documents made from their logged bytes
        assert answers(d) == before
        ok(send(d, "POST", "/v1/_admin/snapshot"))
        assert d.stop() == 0
        d.start()  # recovery from the snapshot file
        assert answers(d) == before
        # PATCH parses the stored bytes
        assert ok(send(d, "PATCH", "/v1/items/3", {"s": "x", "new": [1]})) == \
            {"id": 3, 'we"ird': 1, "s": "x", "v": 5, "n.k": 2, "r": -0.0, "new": [1]}
        assert d.stop() == 0
    finally:
        d.cleanup()


def _crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_patch_of_a_damaged_stored_doc_is_500():
    """Recovery scans a doc's bytes (it does not parse nested values), so a doc damaged inside
    a nested value with a valid checksum loads; a PATCH of it, which must parse it, is the
    server's fault: 500 problem+json, logged at error level with the request id."""
    d = Daemon()
    try:
        ok(send(d, "POST", "/v1/items", {"id": 1, "a": [1, 2]}), 201)
        assert d.stop() == 0
        damaged = 0
        for path in glob.glob(os.path.join(d.data_dir, "*")):
            with open(path, "rb") as f:
                data = bytearray(f.read())
            at = data.find(b'"a":[1,2]')
            if at < 0:
                continue
            data[at + 4:at + 9] = b"[1,,]"  # same length: only the checksum needs redoing
            off = 0
            while off + 32 <= len(data):
                (length,) = struct.unpack_from("<I", data, off + 4)
                if off <= at < off + length:
                    struct.pack_into("<I", data, off, _crc32c(data[off + 4:off + length]))
                off += length
            with open(path, "wb") as f:
                f.write(data)
            damaged += 1
        assert damaged >= 1
        d.start()
        r = send(d, "PATCH", "/v1/items/1", {"b": 1}, headers={"X-Request-Id": "damaged-doc.1"})
        doc = problem(r, 500)
        assert doc["request_id"] == "damaged-doc.1" and "cannot be parsed" in doc["detail"], doc
        assert re.search(r"damaged-doc\.1.*PATCH /v1/items/1 -> 500", d.log()), d.log()
        # nothing changed, and a PUT replaces the doc
        assert d.get("/v1/items/1").body == b'{"id":1,"a":[1,,]}'
        assert ok(send(d, "PUT", "/v1/items/1", {"a": [3]})) == {"a": [3], "id": 1}
        assert d.stop() == 0
    finally:
        d.cleanup()


# ---- errors ----

def test_every_error_is_problem_json_with_request_id():
    def t(d):
        send(d, "POST", "/v1/posts", {})
        cases = [("GET", "/v1/posts/9", None, 404), ("GET", "/v1/nope", None, 404),
                 ("POST", "/v1/posts", "[]", 400), ("POST", "/v1/posts", {"id": 1}, 409),
                 ("PATCH", "/v1/posts/1", {}, 412), ("GET", "/v1/posts?_x=1", None, 400),
                 ("DELETE", "/v1/posts", None, 405)]
        for method, path, body, status in cases:
            h = {"If-Match": '"99"'} if status == 412 else {}
            r = send(d, method, path, body, headers=h)
            doc = problem(r, status)
            assert doc["instance"] == urllib.parse.urlsplit(path).path, doc
            h["X-Request-Id"] = "test-req.%d" % status
            r = send(d, method, path, body, headers=h)
            assert problem(r, status)["request_id"] == "test-req.%d" % status
            assert r.headers["x-request-id"] == "test-req.%d" % status
    with_daemon(t)
