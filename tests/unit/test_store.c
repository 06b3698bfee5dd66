/* tests/unit/test_store.c -- the snapshot store: writes, ids, revisions, isolation, import/export.
 */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/coll.h"
#include "store/doc.h"
#include "store/idmap.h"
#include "store/pmap.h"
#include "store/snap.h"
#include "store/store.h"
#include "util.h"

#include "check.h"

/* ---- helpers ---- */

/* New reference: 'text' parsed; aborts on a typo in the test itself. */
static json_t *J(const char *text)
{
    json_error_t err;
    json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (j == NULL)
        panic("test JSON '%s': %s", text, err.text);
    return j;
}

static bool json_eq_text(const json_t *j, const char *text)
{
    json_t *want = J(text);
    bool eq = json_equal(j, want);
    json_decref(want);
    return eq;
}

/* Whether doc 'd' (its bytes, parsed) equals 'want'. */
static bool doc_equal(const struct doc *d, const json_t *want)
{
    json_t *j = doc_parse(d);
    bool eq = j != NULL && json_equal(j, want);
    json_decref(j);
    return eq;
}

static bool doc_eq_text(const struct doc *d, const char *text)
{
    json_t *want = J(text);
    bool eq = doc_equal(d, want);
    json_decref(want);
    return eq;
}

/* One write; 'body' is JSON text or NULL. Fills 'res' (caller cleans up). */
static enum store_result wr(struct store *st, enum store_op_kind kind, const char *name,
                            const char *id, const char *body, struct store_res *res)
{
    struct store_op op = {.kind = kind, .name = name, .id = id};
    json_t *j = body != NULL ? J(body) : NULL;
    enum store_result rc;

    op.body = j;
    rc = store_write(st, &op, res);
    json_decref(j);
    return rc;
}

/* The same, when only the result code matters. */
static enum store_result wr1(struct store *st, enum store_op_kind kind, const char *name,
                             const char *id, const char *body)
{
    struct store_res res;
    enum store_result rc = wr(st, kind, name, id, body, &res);
    store_res_cleanup(&res);
    return rc;
}

/* With If-Match: 'any' or a list of up to 3 revisions (0 ends the list). */
static enum store_result wr_if(struct store *st, enum store_op_kind kind, const char *name,
                               const char *id, const char *body, bool any, uint64_t r0, uint64_t r1,
                               struct store_res *res)
{
    struct store_op op = {.kind = kind, .name = name, .id = id, .if_match_any = any};
    json_t *j = body != NULL ? J(body) : NULL;
    enum store_result rc;

    if (r0 != 0)
        op.if_match[op.n_if_match++] = r0;
    if (r1 != 0)
        op.if_match[op.n_if_match++] = r1;
    op.body = j;
    rc = store_write(st, &op, res);
    json_decref(j);
    return rc;
}

static uint64_t cur_rev(struct store *st)
{
    struct snap *s = store_acquire(st);
    uint64_t r = snap_revision(s);
    snap_release(s);
    return r;
}

/* Malloc'd export of the snapshot (NUL-terminated). */
static char *export_text(const struct snap *s)
{
    struct buf b;
    buf_init(&b, (size_t)1 << 30);
    if (snap_export(s, &b) != 0)
        panic("export failed");
    return buf_steal(&b, NULL);
}

static char *export_store(struct store *st)
{
    struct snap *s = store_acquire(st);
    char *t = export_text(s);
    snap_release(s);
    return t;
}

/* Borrowed from 's': the doc's stored bytes, or "" when absent. */
static const char *doc_text(const struct snap *s, const char *name, const char *id)
{
    const struct coll *c = snap_coll(s, name);
    struct doc *d = c != NULL ? coll_get(c, id, strlen(id)) : NULL;
    return d != NULL ? d->bytes : "";
}

static bool is_random_id(const char *s)
{
    if (strlen(s) != STORE_RANDOM_ID_LEN)
        return false;
    for (; *s; s++)
        if (!(strchr("_-", *s) || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9')))
            return false;
    return true;
}

/* ---- validation ---- */

static void test_names_and_ids(void)
{
    static const struct {
        const char *s;
        bool name_ok, id_ok;
    } cases[] = {
        {"posts", true, true},
        {"a", true, true},
        {"A9_.-x", true, true},
        {"9lives", true, true},
        {"_export", false, true},
        {"-x", false, true},
        {".x", false, true},
        {"a~b", false, true},
        {"~", false, true},
        {".", false, false},
        {"..", false, false},
        {"...", false, true},
        {"", false, false},
        {"a b", false, false},
        {"a/b", false, false},
        {"a%20", false, false},
        {"caf\xc3\xa9", false, false},
        {"x\n", false, false},
    };
    char long_name[STORE_NAME_MAX + 2], long_id[STORE_ID_MAX + 2];

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        CHECK(store_name_valid(cases[i].s) == cases[i].name_ok);
        CHECK(store_id_valid(cases[i].s) == cases[i].id_ok);
        if (store_name_valid(cases[i].s) != cases[i].name_ok ||
            store_id_valid(cases[i].s) != cases[i].id_ok)
            fprintf(stderr, "  case '%s'\n", cases[i].s);
    }
    CHECK(!store_name_valid(NULL) && !store_id_valid(NULL));
    memset(long_name, 'n', sizeof(long_name));
    long_name[STORE_NAME_MAX] = '\0';
    CHECK(store_name_valid(long_name));
    long_name[STORE_NAME_MAX] = 'n';
    long_name[STORE_NAME_MAX + 1] = '\0';
    CHECK(!store_name_valid(long_name));
    memset(long_id, 'i', sizeof(long_id));
    long_id[STORE_ID_MAX] = '\0';
    CHECK(store_id_valid(long_id));
    long_id[STORE_ID_MAX] = 'i';
    long_id[STORE_ID_MAX + 1] = '\0';
    CHECK(!store_id_valid(long_id));

    static const struct {
        const char *json;
        const char *key; /* NULL: invalid */
    } keys[] = {
        {"0", "0"},
        {"7", "7"},
        {"9223372036854775807", "9223372036854775807"},
        {"-1", NULL},
        {"1.0", NULL},
        {"true", NULL},
        {"null", NULL},
        {"[1]", NULL},
        {"{}", NULL},
        {"\"007\"", "007"},
        {"\"a-b_c.d~e\"", "a-b_c.d~e"},
        {"\"\"", NULL},
        {"\"a b\"", NULL},
        {"\".\"", NULL},
        {"\"a\\u0000b\"", NULL},
    };
    for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
        char key[STORE_ID_MAX + 1];
        json_t *j = J(keys[i].json);
        int rc = store_id_key(j, key);
        CHECK(keys[i].key == NULL ? rc == -EINVAL : rc == 0 && strcmp(key, keys[i].key) == 0);
        json_decref(j);
    }
}

/* Bad input is rejected before the lock and changes nothing. */
static void test_invalid_ops(void)
{
    static const struct {
        enum store_op_kind kind;
        const char *name, *id, *body;
    } cases[] = {
        {STORE_POST, "_x", NULL, "{}"},
        {STORE_POST, "", NULL, "{}"},
        {STORE_POST, NULL, NULL, "{}"},
        {STORE_POST, "p", NULL, "[]"},
        {STORE_POST, "p", NULL, "1"},
        {STORE_POST, "p", NULL, NULL},
        {STORE_POST, "p", NULL, "{\"id\":1.5}"},
        {STORE_POST, "p", NULL, "{\"id\":-1}"},
        {STORE_POST, "p", NULL, "{\"id\":true}"},
        {STORE_POST, "p", NULL, "{\"id\":\"a/b\"}"},
        {STORE_POST, "p", NULL, "{\"id\":\"\"}"},
        {STORE_POST, "p", NULL, "{\"id\":[1]}"},
        {STORE_PUT, "p", "a b", "{}"},
        {STORE_PUT, "p", NULL, "{}"},
        {STORE_PUT, "p", "1", "{\"id\":2}"},
        {STORE_PUT, "p", "1", "{\"id\":\"01\"}"},
        {STORE_PUT, "p", "x", "{\"id\":1}"},
        {STORE_PUT, "p", "1", "\"x\""},
        {STORE_PATCH, "p", "1", "[1]"},
        {STORE_PATCH, "p", "1", "null"},
        {STORE_PATCH, "p", "..", "{}"},
        {STORE_DELETE, "p", "", NULL},
        {STORE_DELETE, "p/q", "1", NULL},
        {STORE_PUT_SINGLE, "profile", NULL, "[]"},
        {STORE_PATCH_SINGLE, "_stats", NULL, "{}"},
        {STORE_IMPORT, NULL, NULL, "[]"},
        {(enum store_op_kind)99, "p", "1", "{}"},
    };
    struct store *st = store_new(NULL);
    struct store_res res;

    CHECK(wr1(st, STORE_POST, "p", NULL, "{\"id\":1}") == STORE_CREATED);
    uint64_t rev = cur_rev(st);
    char *before = export_store(st);
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        enum store_result rc =
            wr(st, cases[i].kind, cases[i].name, cases[i].id, cases[i].body, &res);
        CHECK(rc == STORE_INVALID && res.code == STORE_INVALID);
        CHECK(res.msg[0] != '\0' && res.doc == NULL && res.rev == rev);
        if (rc != STORE_INVALID)
            fprintf(stderr, "  case %zu gave %s\n", i, store_result_str(rc));
        store_res_cleanup(&res);
    }
    /* An If-Match list longer than the limit. */
    struct store_op op = {
        .kind = STORE_DELETE, .name = "p", .id = "1", .n_if_match = STORE_IF_MATCH_MAX + 1};
    CHECK(store_write(st, &op, &res) == STORE_INVALID);
    store_res_cleanup(&res);
    char *after = export_store(st);
    CHECK(strcmp(before, after) == 0);
    CHECK(cur_rev(st) == rev);
    free(before);
    free(after);
    store_free(st);
}

/* ---- POST ---- */

static void test_post_ids(void)
{
    struct store *st = store_new(NULL);
    struct store_res res;
    struct snap *s;

    /* Empty collection: integers from 1, "id" appended after the body's members. */
    CHECK(wr(st, STORE_POST, "posts", NULL, "{\"title\":\"a\",\"n\":1}", &res) == STORE_CREATED);
    CHECK(res.doc != NULL && strcmp(res.doc->id, "1") == 0 && res.doc->int_id &&
          res.doc->int_val == 1);
    CHECK(res.doc != NULL && strcmp(res.doc->bytes, "{\"title\":\"a\",\"n\":1,\"id\":1}") == 0);
    CHECK(res.rev == 1 && res.doc->rev == 1 && res.doc->seq == 1);
    store_res_cleanup(&res);
    CHECK(wr(st, STORE_POST, "posts", NULL, "{\"title\":\"b\"}", &res) == STORE_CREATED);
    CHECK(res.doc != NULL && strcmp(res.doc->id, "2") == 0 && res.doc->seq == 2);
    store_res_cleanup(&res);

    /* A client id is kept where it was; the next integer goes above it. */
    CHECK(wr(st, STORE_POST, "posts", NULL, "{\"id\":10,\"title\":\"c\"}", &res) == STORE_CREATED);
    CHECK(res.doc != NULL && strcmp(res.doc->bytes, "{\"id\":10,\"title\":\"c\"}") == 0);
    store_res_cleanup(&res);
    CHECK(wr(st, STORE_POST, "posts", NULL, "{}", &res) == STORE_CREATED);
    CHECK(res.doc != NULL && strcmp(res.doc->id, "11") == 0);
    store_res_cleanup(&res);
    /* "id": null counts as absent and is replaced in place. */
    CHECK(wr(st, STORE_POST, "posts", NULL, "{\"id\":null,\"x\":1}", &res) == STORE_CREATED);
    CHECK(res.doc != NULL && strcmp(res.doc->bytes, "{\"id\":12,\"x\":1}") == 0);
    store_res_cleanup(&res);
    /* Id 0 is an id (json-server would have replaced it). */
    CHECK(wr(st, STORE_POST, "posts", NULL, "{\"id\":0}", &res) == STORE_CREATED);
    CHECK(res.doc != NULL && strcmp(res.doc->id, "0") == 0 && res.doc->int_id);
    store_res_cleanup(&res);

    /* Taken ids conflict, whatever the JSON type of the same key. */
    CHECK(wr(st, STORE_POST, "posts", NULL, "{\"id\":1}", &res) == STORE_CONFLICT);
    CHECK(res.doc == NULL && res.rev == 6 && strstr(res.msg, "already exists") != NULL);
    store_res_cleanup(&res);
    CHECK(wr1(st, STORE_POST, "posts", NULL, "{\"id\":\"2\"}") == STORE_CONFLICT);

    /* Deleting the highest id does not hand it out again. */
    CHECK(wr1(st, STORE_DELETE, "posts", "12", NULL) == STORE_OK);
    CHECK(wr(st, STORE_POST, "posts", NULL, "{}", &res) == STORE_CREATED);
    CHECK(res.doc != NULL && strcmp(res.doc->id, "13") == 0);
    store_res_cleanup(&res);

    /* One string id: the collection's ids are mixed, new ids are random strings. */
    CHECK(wr(st, STORE_POST, "posts", NULL, "{\"id\":\"abc\"}", &res) == STORE_CREATED);
    CHECK(res.doc != NULL && !res.doc->int_id && strcmp(res.doc->bytes, "{\"id\":\"abc\"}") == 0);
    store_res_cleanup(&res);
    CHECK(wr(st, STORE_POST, "posts", NULL, "{\"t\":1}", &res) == STORE_CREATED);
    CHECK(res.doc != NULL && is_random_id(res.doc->id) && !res.doc->int_id);
    if (res.doc != NULL) {
        json_t *want = json_pack("{s:i,s:s}", "t", 1, "id", res.doc->id);
        CHECK(doc_equal(res.doc, want));
        json_decref(want);
    }
    char first[64];
    snprintf(first, sizeof(first), "%s", res.doc != NULL ? res.doc->id : "");
    store_res_cleanup(&res);
    CHECK(wr(st, STORE_POST, "posts", NULL, "{}", &res) == STORE_CREATED);
    CHECK(res.doc != NULL && is_random_id(res.doc->id) && strcmp(res.doc->id, first) != 0);
    store_res_cleanup(&res);

    /* Removing the only string id makes the ids integers again. */
    CHECK(wr1(st, STORE_DELETE, "posts", "abc", NULL) == STORE_OK);
    s = store_acquire(st);
    CHECK(!coll_ids_all_int(snap_coll(s, "posts")));
    snap_release(s);

    /* A collection whose first id is a string generates strings. */
    CHECK(wr1(st, STORE_POST, "tags", NULL, "{\"id\":\"x\"}") == STORE_CREATED);
    CHECK(wr(st, STORE_POST, "tags", NULL, "{}", &res) == STORE_CREATED);
    CHECK(res.doc != NULL && is_random_id(res.doc->id));
    store_res_cleanup(&res);

    /* Integer ids at the top of int64 fall back to random strings. */
    CHECK(wr1(st, STORE_POST, "big", NULL, "{\"id\":9223372036854775807}") == STORE_CREATED);
    CHECK(wr(st, STORE_POST, "big", NULL, "{}", &res) == STORE_CREATED);
    CHECK(res.doc != NULL && is_random_id(res.doc->id));
    store_res_cleanup(&res);

    s = store_acquire(st);
    const struct coll *c = snap_coll(s, "posts");
    CHECK(c != NULL && coll_count(c) == 8);
    CHECK(coll_max_int_id(c) == 13);
    snap_release(s);
    store_free(st);
}

/* ---- PUT ---- */

static void test_put(void)
{
    struct store *st = store_new(NULL);
    struct store_res res;
    struct snap *s;

    /* PUT to a missing id creates it; an integer path in an integer collection is an integer. */
    CHECK(wr(st, STORE_PUT, "users", "7", "{\"name\":\"a\"}", &res) == STORE_CREATED);
    CHECK(res.doc != NULL && res.doc->int_id &&
          strcmp(res.doc->bytes, "{\"name\":\"a\",\"id\":7}") == 0);
    store_res_cleanup(&res);
    CHECK(wr1(st, STORE_POST, "users", NULL, "{\"name\":\"b\"}") == STORE_CREATED); /* id 8 */

    /* Replace: same position, new revision, members exactly as sent. */
    CHECK(wr(st, STORE_PUT, "users", "7", "{\"z\":1}", &res) == STORE_OK);
    CHECK(res.doc != NULL && strcmp(res.doc->bytes, "{\"z\":1,\"id\":7}") == 0);
    CHECK(res.doc != NULL && res.doc->seq == 1 && res.doc->rev == 3 && res.rev == 3);
    store_res_cleanup(&res);
    s = store_acquire(st);
    CHECK(strcmp(coll_at(snap_coll(s, "users"), 0)->id, "7") == 0);
    snap_release(s);

    /* A body id equal to the path id, as integer or string, is accepted and keeps its type. */
    CHECK(wr(st, STORE_PUT, "users", "8", "{\"id\":8,\"k\":true}", &res) == STORE_OK);
    CHECK(res.doc != NULL && strcmp(res.doc->bytes, "{\"id\":8,\"k\":true}") == 0);
    store_res_cleanup(&res);
    CHECK(wr(st, STORE_PUT, "users", "9", "{\"id\":\"9\"}", &res) == STORE_CREATED);
    CHECK(res.doc != NULL && !res.doc->int_id && strcmp(res.doc->bytes, "{\"id\":\"9\"}") == 0);
    store_res_cleanup(&res);
    /* Not canonical integers, or a mixed collection: string ids. */
    CHECK(wr(st, STORE_PUT, "users", "10", "{}", &res) == STORE_CREATED);
    CHECK(res.doc != NULL && !res.doc->int_id && strcmp(res.doc->bytes, "{\"id\":\"10\"}") == 0);
    store_res_cleanup(&res);
    CHECK(wr(st, STORE_PUT, "nums", "007", "{}", &res) == STORE_CREATED);
    CHECK(res.doc != NULL && strcmp(res.doc->bytes, "{\"id\":\"007\"}") == 0);
    store_res_cleanup(&res);
    CHECK(wr(st, STORE_PUT, "words", "hello", "{\"a\":[1,{\"b\":null}]}", &res) == STORE_CREATED);
    CHECK(res.doc != NULL &&
          strcmp(res.doc->bytes, "{\"a\":[1,{\"b\":null}],\"id\":\"hello\"}") == 0);
    store_res_cleanup(&res);

    /* A body id that differs from the path: invalid, nothing changes. */
    uint64_t rev = cur_rev(st);
    CHECK(wr(st, STORE_PUT, "users", "7", "{\"id\":70}", &res) == STORE_INVALID);
    CHECK(res.rev == rev && strstr(res.msg, "differs") != NULL);
    store_res_cleanup(&res);
    CHECK(cur_rev(st) == rev);

    s = store_acquire(st);
    CHECK(coll_count(snap_coll(s, "users")) == 4);
    CHECK(strcmp(doc_text(s, "users", "7"), "{\"z\":1,\"id\":7}") == 0);
    snap_release(s);
    store_free(st);
}

/* ---- PATCH: RFC 7396 Appendix A ---- */

static const struct {
    const char *target, *patch, *result;
} rfc7396[] = {
    {"{\"a\":\"b\"}", "{\"a\":\"c\"}", "{\"a\":\"c\"}"},
    {"{\"a\":\"b\"}", "{\"b\":\"c\"}", "{\"a\":\"b\",\"b\":\"c\"}"},
    {"{\"a\":\"b\"}", "{\"a\":null}", "{}"},
    {"{\"a\":\"b\",\"b\":\"c\"}", "{\"a\":null}", "{\"b\":\"c\"}"},
    {"{\"a\":[\"b\"]}", "{\"a\":\"c\"}", "{\"a\":\"c\"}"},
    {"{\"a\":\"c\"}", "{\"a\":[\"b\"]}", "{\"a\":[\"b\"]}"},
    {"{\"a\":{\"b\":\"c\"}}", "{\"a\":{\"b\":\"d\",\"c\":null}}", "{\"a\":{\"b\":\"d\"}}"},
    {"{\"a\":[{\"b\":\"c\"}]}", "{\"a\":[1]}", "{\"a\":[1]}"},
    {"[\"a\",\"b\"]", "[\"c\",\"d\"]", "[\"c\",\"d\"]"},
    {"{\"a\":\"b\"}", "[\"c\"]", "[\"c\"]"},
    {"{\"a\":\"foo\"}", "null", "null"},
    {"{\"a\":\"foo\"}", "\"bar\"", "\"bar\""},
    {"{\"e\":null}", "{\"a\":1}", "{\"e\":null,\"a\":1}"},
    {"[1,2]", "{\"a\":\"b\",\"c\":null}", "{\"a\":\"b\"}"},
    {"{}", "{\"a\":{\"bb\":{\"ccc\":null}}}", "{\"a\":{\"bb\":{}}}"},
};

/* Every row through the merge function itself; the inputs must come out unchanged. */
static void test_merge_patch_rfc(void)
{
    for (size_t i = 0; i < ARRAY_LEN(rfc7396); i++) {
        json_t *t = J(rfc7396[i].target), *p = J(rfc7396[i].patch);
        json_t *t0 = json_deep_copy(t), *p0 = json_deep_copy(p);
        json_t *r = store_merge_patch(t, p);
        CHECK(json_eq_text(r, rfc7396[i].result));
        CHECK(json_equal(t, t0) && json_equal(p, p0));
        if (!json_eq_text(r, rfc7396[i].result))
            fprintf(stderr, "  RFC 7396 row %zu\n", i);
        json_decref(r);
        json_decref(t);
        json_decref(p);
        json_decref(t0);
        json_decref(p0);
    }
    json_t *p = J("{\"a\":1}"), *r = store_merge_patch(NULL, p);
    CHECK(json_eq_text(r, "{\"a\":1}"));
    json_decref(r);
    json_decref(p);
}

/*
 * The rows whose target and patch are objects, as stored documents: the doc
 * carries "id" as well. A non-object patch is INVALID: a stored doc is an object.
 */
static void test_patch_docs(void)
{
    struct store *st = store_new(NULL);
    struct store_res res;
    char id[16];

    for (size_t i = 0; i < ARRAY_LEN(rfc7396); i++) {
        json_t *t = J(rfc7396[i].target);
        if (!json_is_object(t)) {
            json_decref(t);
            continue;
        }
        snprintf(id, sizeof(id), "%zu", i + 1);
        CHECK(wr1(st, STORE_PUT, "docs", id, rfc7396[i].target) == STORE_CREATED);
        uint64_t rev = cur_rev(st);
        enum store_result rc = wr(st, STORE_PATCH, "docs", id, rfc7396[i].patch, &res);
        json_t *want = J(rfc7396[i].result);
        if (json_is_object(want)) {
            json_object_set_new(want, "id", json_integer((json_int_t)i + 1));
            CHECK(rc == STORE_OK && res.doc != NULL && doc_equal(res.doc, want));
            CHECK(res.rev == rev + 1 && res.doc != NULL && res.doc->rev == rev + 1);
        } else {
            CHECK(rc == STORE_INVALID && res.rev == rev);
        }
        store_res_cleanup(&res);
        json_decref(want);
        json_decref(t);
    }

    /* The stored bytes keep the member order: replaced keys stay, new keys go last. */
    CHECK(wr1(st, STORE_POST, "o", NULL, "{\"b\":1,\"a\":2}") == STORE_CREATED);
    CHECK(wr(st, STORE_PATCH, "o", "1", "{\"c\":3,\"b\":4}", &res) == STORE_OK);
    CHECK(res.doc != NULL && strcmp(res.doc->bytes, "{\"b\":4,\"a\":2,\"id\":1,\"c\":3}") == 0);
    CHECK(res.doc != NULL && res.doc->seq == 1);
    store_res_cleanup(&res);

    /* The id may be repeated but not changed, retyped or removed. */
    CHECK(wr1(st, STORE_PATCH, "o", "1", "{\"id\":1,\"x\":1}") == STORE_OK);
    uint64_t rev = cur_rev(st);
    CHECK(wr1(st, STORE_PATCH, "o", "1", "{\"id\":2}") == STORE_INVALID);
    CHECK(wr1(st, STORE_PATCH, "o", "1", "{\"id\":\"1\"}") == STORE_INVALID);
    CHECK(wr1(st, STORE_PATCH, "o", "1", "{\"id\":null}") == STORE_INVALID);
    CHECK(cur_rev(st) == rev);

    /* Missing doc or collection. */
    CHECK(wr1(st, STORE_PATCH, "o", "2", "{}") == STORE_NOT_FOUND);
    CHECK(wr1(st, STORE_PATCH, "nope", "1", "{}") == STORE_NOT_FOUND);
    CHECK(cur_rev(st) == rev);
    /* An empty patch is still a write: new revision, same content. */
    CHECK(wr(st, STORE_PATCH, "o", "1", "{}", &res) == STORE_OK);
    CHECK(res.rev == rev + 1 && res.doc != NULL && res.doc->rev == rev + 1);
    store_res_cleanup(&res);
    store_free(st);
}

/* ---- DELETE ---- */

static void test_delete(void)
{
    struct store *st = store_new(NULL);
    struct store_res res;
    struct snap *s;

    for (int i = 0; i < 3; i++)
        CHECK(wr1(st, STORE_POST, "c", NULL, "{}") == STORE_CREATED);
    CHECK(wr(st, STORE_DELETE, "c", "2", NULL, &res) == STORE_OK);
    CHECK(res.doc == NULL && res.rev == 4);
    store_res_cleanup(&res);
    CHECK(wr(st, STORE_DELETE, "c", "2", NULL, &res) == STORE_NOT_FOUND);
    CHECK(res.rev == 4);
    store_res_cleanup(&res);
    CHECK(wr1(st, STORE_DELETE, "none", "1", NULL) == STORE_NOT_FOUND);
    CHECK(wr1(st, STORE_DELETE, "c", "1", NULL) == STORE_OK);
    CHECK(wr1(st, STORE_DELETE, "c", "3", NULL) == STORE_OK);
    /* The emptied collection stays, as an empty array. */
    s = store_acquire(st);
    CHECK(snap_coll(s, "c") != NULL && coll_count(snap_coll(s, "c")) == 0);
    CHECK(coll_revision(snap_coll(s, "c")) == 6);
    char *t = export_text(s);
    CHECK(strcmp(t, "{\"c\":[]}") == 0);
    free(t);
    snap_release(s);
    store_free(st);
}

/* ---- If-Match ---- */

static void test_if_match(void)
{
    struct store *st = store_new(NULL);
    struct store_res res;

    CHECK(wr1(st, STORE_POST, "c", NULL, "{\"v\":1}") == STORE_CREATED); /* rev 1 */
    CHECK(wr1(st, STORE_POST, "c", NULL, "{\"v\":2}") == STORE_CREATED); /* rev 2 */
    char *before = export_store(st);

    static const struct {
        enum store_op_kind kind;
        const char *id, *body;
    } writes[] = {
        {STORE_PUT, "1", "{\"v\":9}"},
        {STORE_PATCH, "1", "{\"v\":9}"},
        {STORE_DELETE, "1", NULL},
    };
    for (size_t i = 0; i < ARRAY_LEN(writes); i++) {
        /* Doc 1 is at revision 1: 2 (another doc's) and 5 do not match. */
        CHECK(wr_if(st, writes[i].kind, "c", writes[i].id, writes[i].body, false, 2, 5, &res) ==
              STORE_PRECONDITION_FAILED);
        CHECK(res.rev == 2 && res.doc != NULL && res.doc->rev == 1);
        store_res_cleanup(&res);
    }
    char *after = export_store(st);
    CHECK(strcmp(before, after) == 0 && cur_rev(st) == 2);
    free(after);

    /* A matching list entry passes. */
    CHECK(wr_if(st, STORE_PATCH, "c", "1", "{\"v\":3}", false, 7, 1, &res) == STORE_OK);
    CHECK(res.rev == 3);
    store_res_cleanup(&res);
    CHECK(wr_if(st, STORE_PUT, "c", "1", "{\"v\":4}", false, 3, 0, &res) == STORE_OK);
    store_res_cleanup(&res);
    CHECK(wr_if(st, STORE_DELETE, "c", "1", NULL, true, 0, 0, &res) == STORE_OK);
    store_res_cleanup(&res);
    /* "*" or a revision needs a current doc: PUT would create, so it fails the precondition... */
    CHECK(wr_if(st, STORE_PUT, "c", "1", "{}", true, 0, 0, &res) == STORE_PRECONDITION_FAILED);
    CHECK(res.doc == NULL);
    store_res_cleanup(&res);
    /* ...while PATCH and DELETE of a missing doc are 404 with or without it (RFC 9110 13.2.1). */
    CHECK(wr_if(st, STORE_PATCH, "c", "1", "{}", true, 0, 0, &res) == STORE_NOT_FOUND);
    store_res_cleanup(&res);
    CHECK(wr_if(st, STORE_DELETE, "c", "1", NULL, false, 3, 0, &res) == STORE_NOT_FOUND);
    store_res_cleanup(&res);
    /* POST compares with the collection's revision. */
    uint64_t crev = cur_rev(st);
    CHECK(wr_if(st, STORE_POST, "c", NULL, "{}", false, crev - 1, 0, &res) ==
          STORE_PRECONDITION_FAILED);
    store_res_cleanup(&res);
    CHECK(wr_if(st, STORE_POST, "c", NULL, "{}", false, crev, 0, &res) == STORE_CREATED);
    store_res_cleanup(&res);
    CHECK(wr_if(st, STORE_POST, "new", NULL, "{}", true, 0, 0, &res) == STORE_PRECONDITION_FAILED);
    store_res_cleanup(&res);
    CHECK(cur_rev(st) == crev + 1);
    free(before);
    store_free(st);
}

/* ---- revisions ---- */

static void test_revisions(void)
{
    struct store *st = store_new(NULL);
    struct snap *s;

    CHECK(cur_rev(st) == 0);
    CHECK(wr1(st, STORE_POST, "a", NULL, "{}") == STORE_CREATED); /* 1 */
    CHECK(wr1(st, STORE_POST, "b", NULL, "{}") == STORE_CREATED); /* 2 */
    CHECK(wr1(st, STORE_POST, "a", NULL, "{}") == STORE_CREATED); /* 3 */
    CHECK(wr1(st, STORE_POST, "a", NULL, "{\"id\":1}") == STORE_CONFLICT);
    CHECK(wr1(st, STORE_PATCH, "b", "1", "{\"x\":1}") == STORE_OK);           /* 4 */
    CHECK(wr1(st, STORE_PUT_SINGLE, "profile", NULL, "{}") == STORE_CREATED); /* 5 */
    s = store_acquire(st);
    CHECK(snap_revision(s) == 5);
    CHECK(coll_revision(snap_coll(s, "a")) == 3);
    CHECK(coll_revision(snap_coll(s, "b")) == 4);
    CHECK(coll_get(snap_coll(s, "a"), "1", 1)->rev == 1);
    CHECK(coll_get(snap_coll(s, "a"), "2", 1)->rev == 3);
    CHECK(coll_get(snap_coll(s, "b"), "1", 1)->rev == 4);
    CHECK(snap_single(s, "profile")->rev == 5);
    snap_release(s);
    CHECK(wr1(st, STORE_DELETE, "a", "1", NULL) == STORE_OK); /* 6 */
    s = store_acquire(st);
    CHECK(snap_revision(s) == 6 && coll_revision(snap_coll(s, "a")) == 6);
    CHECK(coll_revision(snap_coll(s, "b")) == 4);
    snap_release(s);
    CHECK(strcmp(store_result_str(STORE_PRECONDITION_FAILED), "precondition failed") == 0);
    CHECK(strcmp(store_result_str(STORE_COMMIT_FAILED), "commit failed") == 0);
    store_free(st);
}

/* ---- snapshot isolation ---- */

static void test_isolation(void)
{
    struct store *st = store_new(NULL);
    struct snap *old;
    char *before, *after;
    struct doc *d;

    for (int i = 0; i < 200; i++)
        CHECK(wr1(st, STORE_POST, "c", NULL, "{\"v\":0}") == STORE_CREATED);
    CHECK(wr1(st, STORE_PUT_SINGLE, "cfg", NULL, "{\"k\":1}") == STORE_CREATED);
    old = store_acquire(st);
    before = export_text(old);
    d = coll_get(snap_coll(old, "c"), "50", 2);
    const char *dj = d->bytes;
    char dbytes[64];
    snprintf(dbytes, sizeof(dbytes), "%s", d->bytes);

    for (int i = 1; i <= 200; i++) {
        char id[16];
        snprintf(id, sizeof(id), "%d", i);
        if (i % 3 == 0)
            CHECK(wr1(st, STORE_DELETE, "c", id, NULL) == STORE_OK);
        else if (i % 3 == 1)
            CHECK(wr1(st, STORE_PATCH, "c", id, "{\"v\":1}") == STORE_OK);
        else
            CHECK(wr1(st, STORE_PUT, "c", id, "{\"w\":2}") == STORE_OK);
    }
    CHECK(wr1(st, STORE_POST, "other", NULL, "{}") == STORE_CREATED);
    CHECK(wr1(st, STORE_PATCH_SINGLE, "cfg", NULL, "{\"k\":2}") == STORE_OK);

    after = export_text(old);
    CHECK(strcmp(before, after) == 0);
    CHECK(snap_revision(old) == 201 && coll_count(snap_coll(old, "c")) == 200);
    CHECK(snap_coll(old, "other") == NULL);
    CHECK(d == coll_get(snap_coll(old, "c"), "50", 2) && d->bytes == dj &&
          strcmp(d->bytes, dbytes) == 0);
    CHECK(doc_eq_text(d, "{\"v\":0,\"id\":50}"));
    free(after);

    struct snap *now = store_acquire(st);
    CHECK(snap_revision(now) == 403 && coll_count(snap_coll(now, "c")) == 134);
    CHECK(strcmp(doc_text(now, "c", "50"), "{\"w\":2,\"id\":50}") == 0);
    CHECK(doc_eq_text(snap_single(now, "cfg"), "{\"k\":2}"));
    CHECK(doc_eq_text(snap_single(old, "cfg"), "{\"k\":1}"));
    snap_release(now);

    /* The old snapshot outlives the store itself. */
    store_free(st);
    after = export_text(old);
    CHECK(strcmp(before, after) == 0);
    free(after);
    free(before);
    snap_release(old);
}

/* ---- collections: order, pagination helpers, listing ---- */

static void test_order_and_paging(void)
{
    struct store *st = store_new(NULL);
    struct snap *s;
    struct coll_iter it;
    struct doc *d;
    static const char *ids[] = {"m", "b", "z", "a", "k"};

    for (size_t i = 0; i < ARRAY_LEN(ids); i++) {
        char body[32];
        snprintf(body, sizeof(body), "{\"id\":\"%s\"}", ids[i]);
        CHECK(wr1(st, STORE_POST, "letters", NULL, body) == STORE_CREATED);
    }
    CHECK(wr1(st, STORE_PUT, "letters", "b", "{\"x\":1}") == STORE_OK); /* keeps its place */
    CHECK(wr1(st, STORE_DELETE, "letters", "z", NULL) == STORE_OK);
    CHECK(wr1(st, STORE_POST, "letters", NULL, "{\"id\":\"z\"}") == STORE_CREATED); /* goes last */
    s = store_acquire(st);
    const struct coll *c = snap_coll(s, "letters");
    static const char *order[] = {"m", "b", "a", "k", "z"};
    CHECK(coll_count(c) == 5);
    for (size_t i = 0; i < ARRAY_LEN(order); i++) {
        d = coll_at(c, i);
        CHECK(d != NULL && strcmp(d->id, order[i]) == 0);
        CHECK(d != NULL && coll_index_of(c, d) == i);
    }
    CHECK(coll_at(c, 5) == NULL);
    coll_iter_init(&it, c, 2);
    for (size_t i = 2; i < ARRAY_LEN(order); i++) {
        d = coll_iter_next(&it);
        CHECK(d != NULL && strcmp(d->id, order[i]) == 0);
    }
    CHECK(coll_iter_next(&it) == NULL);
    coll_iter_init(&it, c, 99);
    CHECK(coll_iter_next(&it) == NULL);
    CHECK(strcmp(coll_name(c), "letters") == 0);
    CHECK(coll_get(c, "nope", 4) == NULL);
    snap_release(s);

    /* Listing: names in byte order, collections and resources apart. */
    CHECK(wr1(st, STORE_POST, "B", NULL, "{}") == STORE_CREATED);
    CHECK(wr1(st, STORE_POST, "a", NULL, "{}") == STORE_CREATED);
    CHECK(wr1(st, STORE_PUT_SINGLE, "c", NULL, "{}") == STORE_CREATED);
    CHECK(wr1(st, STORE_PUT_SINGLE, "0", NULL, "{}") == STORE_CREATED);
    s = store_acquire(st);
    CHECK(snap_ncolls(s) == 3 && snap_nsingles(s) == 2);
    CHECK(strcmp(coll_name(snap_coll_at(s, 0)), "B") == 0);
    CHECK(strcmp(coll_name(snap_coll_at(s, 1)), "a") == 0);
    CHECK(strcmp(coll_name(snap_coll_at(s, 2)), "letters") == 0);
    CHECK(snap_coll_at(s, 3) == NULL);
    CHECK(strcmp(snap_single_at(s, 0)->id, "0") == 0 && strcmp(snap_single_at(s, 1)->id, "c") == 0);
    CHECK(snap_single_at(s, 2) == NULL);
    CHECK(snap_coll(s, "c") == NULL && snap_single(s, "a") == NULL);
    snap_release(s);
    store_free(st);
}

/* ---- singular resources and no_create ---- */

static void test_singular(void)
{
    struct store *st = store_new(NULL);
    struct store_res res;
    struct snap *s;

    CHECK(wr1(st, STORE_PATCH_SINGLE, "profile", NULL, "{\"a\":1}") == STORE_NOT_FOUND);
    CHECK(wr(st, STORE_PUT_SINGLE, "profile", NULL, "{\"name\":\"t\",\"id\":5}", &res) ==
          STORE_CREATED);
    CHECK(res.doc != NULL && strcmp(res.doc->bytes, "{\"name\":\"t\",\"id\":5}") == 0);
    CHECK(res.doc != NULL && strcmp(res.doc->id, "profile") == 0 && res.doc->seq == 0);
    store_res_cleanup(&res);
    CHECK(wr(st, STORE_PATCH_SINGLE, "profile", NULL, "{\"name\":null,\"x\":{\"y\":1}}", &res) ==
          STORE_OK);
    CHECK(res.doc != NULL && strcmp(res.doc->bytes, "{\"id\":5,\"x\":{\"y\":1}}") == 0);
    store_res_cleanup(&res);
    CHECK(wr(st, STORE_PUT_SINGLE, "profile", NULL, "{}", &res) == STORE_OK);
    CHECK(res.doc != NULL && strcmp(res.doc->bytes, "{}") == 0 && res.rev == 3);
    store_res_cleanup(&res);

    /* A name is a collection or a resource, not both. */
    CHECK(wr1(st, STORE_POST, "profile", NULL, "{}") == STORE_CONFLICT);
    CHECK(wr1(st, STORE_PUT, "profile", "1", "{}") == STORE_CONFLICT);
    CHECK(wr1(st, STORE_PATCH, "profile", "1", "{}") == STORE_CONFLICT);
    CHECK(wr1(st, STORE_DELETE, "profile", "1", NULL) == STORE_CONFLICT);
    CHECK(wr1(st, STORE_POST, "posts", NULL, "{}") == STORE_CREATED);
    CHECK(wr1(st, STORE_PUT_SINGLE, "posts", NULL, "{}") == STORE_CONFLICT);
    CHECK(wr1(st, STORE_PATCH_SINGLE, "posts", NULL, "{}") == STORE_CONFLICT);
    CHECK(wr_if(st, STORE_PATCH_SINGLE, "profile", NULL, "{}", false, 2, 0, &res) ==
          STORE_PRECONDITION_FAILED);
    CHECK(res.doc != NULL && res.doc->rev == 3);
    store_res_cleanup(&res);
    CHECK(cur_rev(st) == 4);

    /* no_create: existing names still take writes; new ones are NOT_FOUND. */
    struct store_op op = {.kind = STORE_POST, .name = "fresh", .no_create = true};
    json_t *body = J("{}");
    op.body = body;
    CHECK(store_write(st, &op, &res) == STORE_NOT_FOUND);
    store_res_cleanup(&res);
    op.kind = STORE_PUT;
    op.id = "1";
    CHECK(store_write(st, &op, &res) == STORE_NOT_FOUND);
    store_res_cleanup(&res);
    op.kind = STORE_PUT_SINGLE;
    CHECK(store_write(st, &op, &res) == STORE_NOT_FOUND);
    store_res_cleanup(&res);
    op.name = "posts";
    op.kind = STORE_POST;
    CHECK(store_write(st, &op, &res) == STORE_CREATED);
    store_res_cleanup(&res);
    op.kind = STORE_PUT;
    op.id = "77";
    CHECK(store_write(st, &op, &res) == STORE_CREATED); /* new doc, existing collection */
    store_res_cleanup(&res);
    op.name = "profile";
    op.kind = STORE_PUT_SINGLE;
    CHECK(store_write(st, &op, &res) == STORE_OK);
    store_res_cleanup(&res);
    json_decref(body);

    s = store_acquire(st);
    CHECK(snap_coll(s, "fresh") == NULL && snap_single(s, "fresh") == NULL);
    CHECK(snap_single(s, "profile") != NULL && snap_coll(s, "profile") == NULL);
    snap_release(s);
    store_free(st);
}

/* The name table is bounded. */
static void test_name_limit(void)
{
    struct store *st = store_new(NULL);
    char name[16];

    for (int i = 0; i < STORE_MAX_NAMES; i++) {
        snprintf(name, sizeof(name), "c%d", i);
        CHECK(wr1(st, i % 2 ? STORE_POST : STORE_PUT_SINGLE, name, NULL, "{}") == STORE_CREATED);
    }
    CHECK(wr1(st, STORE_POST, "one-more", NULL, "{}") == STORE_INVALID);
    CHECK(wr1(st, STORE_PUT_SINGLE, "one-more", NULL, "{}") == STORE_INVALID);
    CHECK(wr1(st, STORE_POST, "c1", NULL, "{}") == STORE_CREATED);
    CHECK(cur_rev(st) == STORE_MAX_NAMES + 1);
    store_free(st);
}

/* ---- import / export ---- */

static const char *db_json =
    "{\"posts\":[{\"id\":1,\"title\":\"json-server\",\"author\":\"typicode\"},"
    "{\"id\":2,\"title\":\"second\",\"tags\":[\"a\",\"b\"],\"meta\":{\"x\":1.5,\"y\":null}}],"
    "\"comments\":[{\"id\":\"c1\",\"body\":\"some comment\",\"postId\":1}],"
    "\"empty\":[],"
    "\"profile\":{\"name\":\"typicode\"},"
    "\"Zeta\":[{\"id\":0}]}";

static enum store_result import_text(struct store *st, const char *text, struct store_res *res)
{
    return wr(st, STORE_IMPORT, NULL, NULL, text, res);
}

static void test_import_export(void)
{
    struct store *st = store_new(NULL);
    struct store_res res;
    struct snap *s;
    json_t *want = J(db_json);

    CHECK(wr1(st, STORE_POST, "old", NULL, "{}") == STORE_CREATED);
    CHECK(import_text(st, db_json, &res) == STORE_OK);
    CHECK(res.rev == 2 && res.doc == NULL);
    store_res_cleanup(&res);
    s = store_acquire(st);
    CHECK(snap_coll(s, "old") == NULL); /* import replaces everything */
    char *text = export_text(s);
    json_t *got = J(text);
    CHECK(json_equal(got, want));
    /* Names in byte order, docs in insertion order, bytes as stored. */
    CHECK(strcmp(text, "{\"Zeta\":[{\"id\":0}],"
                       "\"comments\":[{\"id\":\"c1\",\"body\":\"some comment\",\"postId\":1}],"
                       "\"empty\":[],"
                       "\"posts\":[{\"id\":1,\"title\":\"json-server\",\"author\":\"typicode\"},"
                       "{\"id\":2,\"title\":\"second\",\"tags\":[\"a\",\"b\"],"
                       "\"meta\":{\"x\":1.5,\"y\":null}}],"
                       "\"profile\":{\"name\":\"typicode\"}}") == 0);
    CHECK(coll_revision(snap_coll(s, "posts")) == 2 && snap_single(s, "profile")->rev == 2);
    CHECK(coll_max_int_id(snap_coll(s, "posts")) == 2);
    json_decref(got);

    /* Export -> import into a new store -> export: the same bytes. */
    struct store *st2 = store_new(NULL);
    CHECK(import_text(st2, text, &res) == STORE_OK);
    store_res_cleanup(&res);
    char *text2 = export_store(st2);
    CHECK(strcmp(text, text2) == 0);
    free(text2);
    store_free(st2);
    free(text);
    snap_release(s);

    /* The imported store takes writes like any other. */
    CHECK(wr(st, STORE_POST, "posts", NULL, "{}", &res) == STORE_CREATED);
    CHECK(res.doc != NULL && strcmp(res.doc->id, "3") == 0 && res.rev == 3);
    store_res_cleanup(&res);
    CHECK(wr(st, STORE_POST, "comments", NULL, "{}", &res) == STORE_CREATED);
    CHECK(res.doc != NULL && is_random_id(res.doc->id));
    store_res_cleanup(&res);

    /* Elements without ids get them: integers above every explicit one, or random strings. */
    CHECK(import_text(st,
                      "{\"a\":[{\"n\":1},{\"id\":5},{\"n\":2,\"id\":null}],"
                      "\"b\":[{\"id\":\"s\"},{}],\"c\":[{}]}",
                      &res) == STORE_OK);
    store_res_cleanup(&res);
    s = store_acquire(st);
    CHECK(strcmp(doc_text(s, "a", "6"), "{\"n\":1,\"id\":6}") == 0);
    CHECK(strcmp(doc_text(s, "a", "7"), "{\"n\":2,\"id\":7}") == 0);
    CHECK(strcmp(coll_at(snap_coll(s, "a"), 0)->id, "6") == 0);
    CHECK(strcmp(coll_at(snap_coll(s, "a"), 1)->id, "5") == 0);
    CHECK(is_random_id(coll_at(snap_coll(s, "b"), 1)->id));
    CHECK(strcmp(doc_text(s, "c", "1"), "{\"id\":1}") == 0);
    snap_release(s);

    /* Bad db.json: INVALID with a message, and the store is untouched. */
    static const struct {
        const char *db, *msg;
    } bad[] = {
        {"[]", "object"},
        {"{\"posts\":[1]}", "posts[0] is not an object"},
        {"{\"posts\":[{\"id\":1},{\"id\":1}]}", "repeats id '1'"},
        {"{\"posts\":[{\"id\":1},{\"id\":\"1\"}]}", "repeats id '1'"},
        {"{\"posts\":[{\"id\":-3}]}", "invalid \"id\""},
        {"{\"posts\":[{\"id\":\"a b\"}]}", "invalid \"id\""},
        {"{\"_meta\":[]}", "invalid name"},
        {"{\"n\":1}", "neither an array nor an object"},
        {"{\"s\":\"x\"}", "neither"},
        {"{\"ok\":[],\"n\":null}", "neither"},
    };
    uint64_t rev = cur_rev(st);
    char *before = export_store(st);
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        CHECK(import_text(st, bad[i].db, &res) == STORE_INVALID);
        CHECK(strstr(res.msg, bad[i].msg) != NULL);
        if (strstr(res.msg, bad[i].msg) == NULL)
            fprintf(stderr, "  import '%s': '%s'\n", bad[i].db, res.msg);
        store_res_cleanup(&res);
    }
    char *after = export_store(st);
    CHECK(strcmp(before, after) == 0 && cur_rev(st) == rev);
    free(before);
    free(after);

    /* An export that does not fit the buffer's limit says so. */
    struct buf b;
    buf_init(&b, 10);
    s = store_acquire(st);
    CHECK(snap_export(s, &b) == -E2BIG);
    snap_release(s);
    buf_cleanup(&b);

    json_decref(want);
    store_free(st);
}

/* ---- commit hook ---- */

struct hook_state {
    struct store *st;
    int fail_with; /* returned by the hook when non-zero */
    int calls;
    uint64_t seen_rev;    /* ch->rev */
    uint64_t cur_in_hook; /* what a reader saw during the hook */
    bool next_has_doc;
    char doc_bytes[128];
};

static int hook(void *cls, const struct store_change *ch)
{
    struct hook_state *h = cls;
    struct snap *s = store_acquire(h->st); /* readers are not blocked by a writer in its hook */

    h->calls++;
    h->seen_rev = ch->rev;
    h->cur_in_hook = snap_revision(s);
    snap_release(s);
    h->next_has_doc = false;
    h->doc_bytes[0] = '\0';
    if (ch->doc != NULL) {
        const struct coll *c = snap_coll(ch->next, ch->name);
        snprintf(h->doc_bytes, sizeof(h->doc_bytes), "%s", ch->doc->bytes);
        h->next_has_doc = c != NULL && coll_get(c, ch->doc->id, ch->doc->id_len) == ch->doc;
    }
    return h->fail_with;
}

static void test_commit_hook(void)
{
    struct hook_state h = {0};
    struct store_opts opts = {.commit = hook, .commit_cls = &h};
    struct store *st = store_new(&opts);
    struct store_res res;

    h.st = st;
    CHECK(wr(st, STORE_POST, "c", NULL, "{\"v\":1}", &res) == STORE_CREATED);
    CHECK(h.calls == 1 && h.seen_rev == 1 && h.cur_in_hook == 0 && h.next_has_doc);
    CHECK(strcmp(h.doc_bytes, "{\"v\":1,\"id\":1}") == 0);
    store_res_cleanup(&res);
    /* Rejected writes never reach the hook. */
    CHECK(wr1(st, STORE_POST, "c", NULL, "{\"id\":1}") == STORE_CONFLICT);
    CHECK(wr1(st, STORE_POST, "c", NULL, "[]") == STORE_INVALID);
    CHECK(h.calls == 1);

    char *before = export_store(st);
    h.fail_with = -EIO;
    static const struct {
        enum store_op_kind kind;
        const char *name, *id, *body;
    } writes[] = {
        {STORE_POST, "c", NULL, "{}"},        {STORE_POST, "newcoll", NULL, "{}"},
        {STORE_PUT, "c", "1", "{\"v\":2}"},   {STORE_PUT, "c", "2", "{}"},
        {STORE_PATCH, "c", "1", "{\"v\":3}"}, {STORE_DELETE, "c", "1", NULL},
        {STORE_PUT_SINGLE, "p", NULL, "{}"},  {STORE_IMPORT, NULL, NULL, "{}"},
    };
    for (size_t i = 0; i < ARRAY_LEN(writes); i++) {
        CHECK(wr(st, writes[i].kind, writes[i].name, writes[i].id, writes[i].body, &res) ==
              STORE_COMMIT_FAILED);
        CHECK(res.err == -EIO && res.rev == 1 && res.doc == NULL && res.msg[0] != '\0');
        store_res_cleanup(&res);
    }
    CHECK(h.calls == 1 + (int)ARRAY_LEN(writes));
    char *after = export_store(st);
    CHECK(strcmp(before, after) == 0 && cur_rev(st) == 1);
    free(after);
    free(before);

    /* A failed commit does not use up the revision or the id. */
    h.fail_with = 0;
    CHECK(wr(st, STORE_POST, "c", NULL, "{}", &res) == STORE_CREATED);
    CHECK(res.rev == 2 && res.doc != NULL && strcmp(res.doc->id, "2") == 0);
    CHECK(h.seen_rev == 2 && h.cur_in_hook == 1);
    store_res_cleanup(&res);
    store_free(st);
}

/* ---- threads: run under -fsanitize=thread by the Makefile ---- */

enum { NWRITERS = 4, NREADERS = 4, NIDS = 8 };

static struct store *mt_store;
static atomic_bool mt_stop;
static atomic_int mt_errors;
static atomic_ulong mt_writes, mt_reads;

static void *writer_main(void *arg)
{
    uint64_t r = (uint64_t)(uintptr_t)arg * 2654435761u + 1;
    char id[16], body[64];

    while (!atomic_load(&mt_stop)) {
        r = r * 6364136223846793005u + 1442695040888963407u;
        unsigned what = (unsigned)(r >> 33) % 5;
        snprintf(id, sizeof(id), "%u", (unsigned)(r >> 40) % NIDS + 1);
        snprintf(body, sizeof(body), "{\"w\":%u,\"n\":%" PRIu64 "}", (unsigned)(uintptr_t)arg,
                 r >> 50);
        struct store_res res;
        enum store_result rc;
        switch (what) {
        case 0:
            rc = wr(mt_store, STORE_PUT, "c", id, body, &res);
            break;
        case 1:
            rc = wr(mt_store, STORE_PATCH, "c", id, "{\"p\":1}", &res);
            break;
        case 2:
            rc = wr(mt_store, STORE_DELETE, "c", id, NULL, &res);
            break;
        case 3:
            snprintf(body, sizeof(body), "{\"id\":%s}", id);
            rc = wr(mt_store, STORE_POST, "c", NULL, body, &res);
            break;
        default:
            rc = wr(mt_store, STORE_PATCH_SINGLE, "meta", NULL, body, &res);
            break;
        }
        if (rc == STORE_OK || rc == STORE_CREATED) {
            atomic_fetch_add(&mt_writes, 1);
            if (res.doc != NULL && res.doc->rev != res.rev)
                atomic_fetch_add(&mt_errors, 1);
        } else if (rc != STORE_NOT_FOUND && rc != STORE_CONFLICT) {
            atomic_fetch_add(&mt_errors, 1);
        }
        store_res_cleanup(&res);
    }
    return NULL;
}

static void *reader_main(void *arg)
{
    uint64_t last_snap = 0, last_doc[NIDS + 1] = {0}, last_meta = 0;
    (void)arg;

    while (!atomic_load(&mt_stop)) {
        struct snap *s = store_acquire(mt_store);
        uint64_t rev = snap_revision(s);
        const struct coll *c = snap_coll(s, "c");
        struct doc *meta = snap_single(s, "meta");
        bool bad = rev < last_snap;

        last_snap = rev;
        if (meta != NULL) {
            bad |= meta->rev < last_meta || meta->rev > rev || !meta->indexed;
            last_meta = meta->rev;
        }
        if (c != NULL) {
            struct coll_iter it;
            struct doc *d;
            size_t n = 0;
            bad |= coll_revision(c) > rev;
            coll_iter_init(&it, c, 0);
            while ((d = coll_iter_next(&it)) != NULL) {
                n++;
                bad |= d->rev > coll_revision(c) || strlen(d->bytes) != d->len || !d->int_id;
            }
            bad |= n != coll_count(c) || n > NIDS;
            for (int i = 1; i <= NIDS; i++) {
                char id[16];
                snprintf(id, sizeof(id), "%d", i);
                d = coll_get(c, id, strlen(id));
                /* A doc's revision never goes backwards while it exists. */
                if (d != NULL) {
                    bad |= d->rev < last_doc[i];
                    last_doc[i] = d->rev;
                }
            }
        }
        if (atomic_fetch_add(&mt_reads, 1) % 64 == 0) {
            char *t = export_text(s);
            json_error_t err;
            json_t *j = json_loads(t, 0, &err);
            bad |= j == NULL;
            json_decref(j);
            free(t);
        }
        snap_release(s);
        if (bad)
            atomic_fetch_add(&mt_errors, 1);
    }
    return NULL;
}

static void test_threads(void)
{
    pthread_t w[NWRITERS], r[NREADERS];

    mt_store = store_new(NULL);
    atomic_store(&mt_stop, false);
    CHECK(wr1(mt_store, STORE_PUT_SINGLE, "meta", NULL, "{}") == STORE_CREATED);
    for (uintptr_t i = 0; i < NWRITERS; i++)
        CHECK(pthread_create(&w[i], NULL, writer_main, (void *)(i + 1)) == 0);
    for (uintptr_t i = 0; i < NREADERS; i++)
        CHECK(pthread_create(&r[i], NULL, reader_main, NULL) == 0);
    usleep(1500 * 1000);
    atomic_store(&mt_stop, true);
    for (int i = 0; i < NWRITERS; i++)
        pthread_join(w[i], NULL);
    for (int i = 0; i < NREADERS; i++)
        pthread_join(r[i], NULL);
    printf("# threads: %lu writes, %lu snapshot reads, %d errors\n", atomic_load(&mt_writes),
           atomic_load(&mt_reads), atomic_load(&mt_errors));
    CHECK(atomic_load(&mt_errors) == 0);
    CHECK(atomic_load(&mt_writes) > 100 && atomic_load(&mt_reads) > 100);
    CHECK(cur_rev(mt_store) == atomic_load(&mt_writes) + 1);
    store_free(mt_store);
}

/* Runs last: with every store and snapshot released, nothing may be left. */
/* ---- documents: the scanner and the member index (doc.c) ---- */

static void test_doc_index(void)
{
    static const char text[] =
        "{\"id\":7,\"s\":\"abc\",\"e\":\"a\\\"b\",\"i\":-9223372036854775808,"
        "\"r\":1.5e3,\"t\":true,\"f\":false,\"n\":null,"
        "\"a\":[1,\"]\",{\"x\":\"}\"}],\"o\":{\"k\":[{}]}}";
    struct doc *d;
    const struct doc_member *m;

    CHECK(doc_new_bytes("7", 1, 1, 1, text, strlen(text), &d) == 0);
    CHECK(d->indexed && d->nmembers == 10 && d->int_id && d->int_val == 7);
    CHECK(strcmp(d->bytes, text) == 0 && d->len == strlen(text));
    m = doc_member(d, "s", 1);
    CHECK(m != NULL && m->type == DOC_STRING && m->flags == 0 && m->v.s.len == 3 &&
          memcmp(d->bytes + m->v.s.off, "abc", 3) == 0);
    m = doc_member(d, "e", 1);
    CHECK(m != NULL && m->type == DOC_STRING && (m->flags & DOC_ESCAPED));
    m = doc_member(d, "i", 1);
    CHECK(m != NULL && m->type == DOC_INT && m->v.i == INT64_MIN);
    m = doc_member(d, "r", 1);
    CHECK(m != NULL && m->type == DOC_REAL && m->v.d == 1500.0);
    CHECK(doc_member(d, "t", 1)->type == DOC_TRUE && doc_member(d, "f", 1)->type == DOC_FALSE &&
          doc_member(d, "n", 1)->type == DOC_NULL);
    m = doc_member(d, "a", 1);
    CHECK(m != NULL && m->type == DOC_ARRAY && m->v.s.len == strlen("[1,\"]\",{\"x\":\"}\"}]") &&
          memcmp(d->bytes + m->v.s.off, "[1,\"]\",{\"x\":\"}\"}]", m->v.s.len) == 0);
    m = doc_member(d, "o", 1);
    CHECK(m != NULL && m->type == DOC_OBJECT && m->v.s.len == strlen("{\"k\":[{}]}"));
    CHECK(doc_member(d, "x", 1) == NULL && doc_member(d, "id2", 3) == NULL);
    char key[STORE_ID_MAX + 1];
    bool is_int = false;
    CHECK(doc_id_key(d, key, &is_int) == 0 && strcmp(key, "7") == 0 && is_int);
    json_t *j = doc_parse(d);
    CHECK(j != NULL && json_integer_value(json_object_get(j, "id")) == 7);
    json_decref(j);
    doc_release(d);

    /* whitespace (not made by json_dumps(JSON_COMPACT), but valid) and a string id */
    static const char spaced[] = " {\n \"id\" : \"ab-c\" ,\t\"v\" : [ 1 , 2 ] }\r\n";
    CHECK(doc_new_bytes("ab-c", 4, 1, 1, spaced, strlen(spaced), &d) == 0);
    CHECK(d->indexed && d->nmembers == 2 && !d->int_id);
    CHECK(doc_id_key(d, key, &is_int) == 0 && strcmp(key, "ab-c") == 0 && !is_int);
    doc_release(d);

    /* an escaped member name: indexed, that member marked and never found by its raw text */
    static const char esc[] = "{\"a\\\"b\":1,\"id\":2}";
    CHECK(doc_new_bytes("2", 1, 1, 1, esc, strlen(esc), &d) == 0);
    CHECK(d->indexed && d->esc_names && d->nmembers == 2 && doc_member(d, "id", 2) != NULL);
    CHECK((doc_members(d)[0].flags & DOC_NAME_ESCAPED) && doc_member(d, "a\\\"b", 4) == NULL);
    CHECK(!(doc_members(d)[1].flags & DOC_NAME_ESCAPED));
    /* its "id" is found: recovery checks it, and lists know its type */
    CHECK(doc_id_key(d, key, &is_int) == 0 && strcmp(key, "2") == 0 && is_int);
    CHECK(d->int_id && d->int_val == 2);
    doc_release(d);

    /* a wide doc (more members than the scanner's first pass holds) */
    struct buf b;
    buf_init(&b, SIZE_MAX);
    buf_puts(&b, "{");
    for (int i = 0; i < 100; i++)
        buf_printf(&b, "%s\"m%d\":%d", i ? "," : "", i, i * 3);
    buf_puts(&b, "}");
    CHECK(doc_new_bytes("w", 1, 1, 1, b.data, b.len, &d) == 0);
    CHECK(d->indexed && d->nmembers == 100 && doc_member(d, "m99", 3) != NULL &&
          doc_member(d, "m99", 3)->v.i == 297 && doc_member(d, "m0", 2)->v.i == 0);
    doc_release(d);
    buf_cleanup(&b);

    /* What is not one JSON object is a clean error, never a doc (nor a crash under ASan). */
    static const char *const bad[] = {
        "",
        "[]",
        "1",
        "{",
        "}",
        "{\"a\":1",
        "{\"a\":1}x",
        "{\"a\":1}{}",
        "{\"a\" 1}",
        "{\"a\":}",
        "{\"a\":1,}",
        "{,}",
        "{a:1}",
        "{\"a:1}",
        "{\"a\":\"x}",
        "{\"a\":\"x\\\"}",
        "{\"a\":[1,2}",
        "{\"a\":[1,2]]}",
        "{\"a\":{\"b\":[}}",
        "{\"a\":tru}",
        "{\"a\":nul}",
        "{\"a\":falsey}",
        "{\"a\":-}",
        "{\"a\":01}",
        "{\"a\":1.}",
        "{\"a\":.5}",
        "{\"a\":1e}",
        "{\"a\":+1}",
        "{\"a\":9223372036854775808}",
        "{\"a\":-9223372036854775809}",
        "{\"a\":\"tab\there\"}",
    };
    /*
     * Each case and each prefix is copied into a buffer of exactly its length,
     * with no NUL after it, so that a read past the end is an ASan report.
     */
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        size_t n = strlen(bad[i]);
        char *exact = xmalloc(n ? n : 1);
        memcpy(exact, bad[i], n);
        d = (struct doc *)&d; /* must be reset */
        int rc = doc_new_bytes("1", 1, 1, 1, exact, n, &d);
        if (rc != -EINVAL || d != NULL)
            fprintf(stderr, "  bad doc accepted: %s\n", bad[i]);
        CHECK(rc == -EINVAL && d == NULL);
        free(exact);
    }
    /* every prefix of a good doc is bad (truncation inside any token) */
    for (size_t n = 0; n < strlen(text); n++) {
        char *exact = xmalloc(n ? n : 1);
        memcpy(exact, text, n);
        d = NULL;
        CHECK(doc_new_bytes("7", 1, 1, 1, exact, n, &d) == -EINVAL && d == NULL);
        free(exact);
    }
}

/* ---- take_body: the store keeps the caller's parsed body instead of a deep copy ---- */

static atomic_ulong take_allocs;

static void *take_counting_malloc(size_t n)
{
    atomic_fetch_add_explicit(&take_allocs, 1, memory_order_relaxed);
    return malloc(n);
}

/* One write of 'text' with take_body (the store owns the only reference); jansson allocations. */
static unsigned long wr_take(struct store *st, enum store_op_kind kind, const char *name,
                             const char *id, const char *text, bool take, enum store_result want)
{
    struct store_op op = {.kind = kind, .name = name, .id = id, .take_body = take};
    struct store_res res;
    json_t *j = J(text);
    unsigned long a0;

    op.body = j;
    /* A reference of our own: the store drops exactly the one it was given, and keeps none. */
    if (take)
        json_incref(j);
    json_set_alloc_funcs(take_counting_malloc, free);
    a0 = atomic_load(&take_allocs);
    CHECK(store_write(st, &op, &res) == want);
    unsigned long made = atomic_load(&take_allocs) - a0;
    json_set_alloc_funcs(malloc, free);
    if (j->refcount != 1)
        fprintf(stderr, "  %s %s: body refcount %zu after the write\n", store_result_str(want),
                name != NULL ? name : "", j->refcount);
    CHECK(j->refcount == 1);
    json_decref(j);
    store_res_cleanup(&res);
    return made;
}

static void test_take_body(void)
{
    struct store *st = store_new(NULL);
    static const char big[] =
        "{\"a\":[1,2,3,{\"b\":\"c\"}],\"d\":{\"e\":true},\"f\":\"g\",\"h\":1.5}";

    /* Every kind that takes a body, and the failures (the reference is dropped on those too). */
    CHECK(wr_take(st, STORE_POST, "p", NULL, big, true, STORE_CREATED) <
          wr_take(st, STORE_POST, "p", NULL, big, false, STORE_CREATED));
    wr_take(st, STORE_PUT, "p", "1", big, true, STORE_OK);
    wr_take(st, STORE_PUT, "p", "9", "{\"x\":1}", true, STORE_CREATED);
    wr_take(st, STORE_PATCH, "p", "9", "{\"x\":2}", true, STORE_OK);
    wr_take(st, STORE_PUT_SINGLE, "s", NULL, big, true, STORE_CREATED);
    wr_take(st, STORE_PATCH_SINGLE, "s", NULL, "{\"f\":null}", true, STORE_OK);
    wr_take(st, STORE_POST, "p", NULL, "{\"id\":1}", true, STORE_CONFLICT);
    wr_take(st, STORE_POST, "bad name", NULL, "{}", true, STORE_INVALID);
    wr_take(st, STORE_PUT, "p", "1", "{\"id\":2}", true, STORE_INVALID);

    struct snap *s = store_acquire(st);
    const struct coll *c = snap_coll(s, "p");
    CHECK(coll_count(c) == 3);
    CHECK(
        strcmp(coll_get(c, "1", 1)->bytes,
               "{\"a\":[1,2,3,{\"b\":\"c\"}],\"d\":{\"e\":true},\"f\":\"g\",\"h\":1.5,\"id\":1}") ==
        0);
    CHECK(strcmp(coll_get(c, "9", 1)->bytes, "{\"x\":2,\"id\":9}") == 0);
    CHECK(strcmp(snap_single(s, "s")->bytes,
                 "{\"a\":[1,2,3,{\"b\":\"c\"}],\"d\":{\"e\":true},\"h\":1.5}") == 0);
    snap_release(s);

    /* IMPORT takes the elements of the parsed file instead of copying each. */
    static const char db[] =
        "{\"posts\":[{\"id\":1,\"t\":[\"a\",\"b\"]},{\"t\":{}}],\"cfg\":{\"k\":[1]}}";
    unsigned long taken = wr_take(st, STORE_IMPORT, NULL, NULL, db, true, STORE_OK);
    unsigned long copied = wr_take(st, STORE_IMPORT, NULL, NULL, db, false, STORE_OK);
    CHECK(taken < copied);
    s = store_acquire(st);
    c = snap_coll(s, "posts");
    CHECK(coll_count(c) == 2 && strcmp(coll_get(c, "2", 1)->bytes, "{\"t\":{},\"id\":2}") == 0);
    CHECK(strcmp(snap_single(s, "cfg")->bytes, "{\"k\":[1]}") == 0);
    snap_release(s);
    wr_take(st, STORE_IMPORT, NULL, NULL, "{\"x\":[1]}", true, STORE_INVALID);
    store_free(st);
}

/* ---- the whole-list cache of a collection version (coll_list_bytes) ---- */

struct list_race {
    const struct coll *c;
    const char *got;
    size_t len;
};

static void *list_racer(void *arg)
{
    struct list_race *r = arg;
    r->got = coll_list_bytes(r->c, &r->len);
    return NULL;
}

static void test_list_cache(void)
{
    struct store *st = store_new(NULL);
    struct snap *s0, *s1;
    const char *a, *b;
    size_t alen = 0, blen = 0;

    CHECK(wr1(st, STORE_POST, "c", NULL, "{\"v\":1}") == STORE_CREATED);
    CHECK(wr1(st, STORE_POST, "c", NULL, "{\"v\":\"x,]\"}") == STORE_CREATED);
    s0 = store_acquire(st);

    /* first use by four threads at once: one list wins, every thread gets it */
    struct list_race r[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        r[i].c = snap_coll(s0, "c");
        CHECK(pthread_create(&th[i], NULL, list_racer, &r[i]) == 0);
    }
    for (int i = 0; i < 4; i++)
        CHECK(pthread_join(th[i], NULL) == 0);
    for (int i = 1; i < 4; i++)
        CHECK(r[i].got == r[0].got && r[i].len == r[0].len);

    a = coll_list_bytes(snap_coll(s0, "c"), &alen);
    CHECK(a == r[0].got && alen == r[0].len);
    static const char want0[] = "[{\"v\":1,\"id\":1},{\"v\":\"x,]\",\"id\":2}]";
    CHECK(a != NULL && alen == strlen(want0) && memcmp(a, want0, alen) == 0);

    /* a write makes a new version with its own list; the old one keeps its own */
    CHECK(wr1(st, STORE_DELETE, "c", "1", NULL) == STORE_OK);
    s1 = store_acquire(st);
    b = coll_list_bytes(snap_coll(s1, "c"), &blen);
    CHECK(b != NULL && b != a && blen == strlen("[{\"v\":\"x,]\",\"id\":2}]") &&
          memcmp(b, "[{\"v\":\"x,]\",\"id\":2}]", blen) == 0);
    CHECK(coll_list_bytes(snap_coll(s0, "c"), &alen) == a && memcmp(a, want0, alen) == 0);
    snap_release(s0);
    snap_release(s1);

    /* empty, and over the cap: none is kept (the caller builds the reply itself) */
    CHECK(wr1(st, STORE_DELETE, "c", "2", NULL) == STORE_OK);
    s1 = store_acquire(st);
    b = coll_list_bytes(snap_coll(s1, "c"), &blen);
    CHECK(b != NULL && blen == 2 && memcmp(b, "[]", 2) == 0);
    snap_release(s1);
    char body[256];
    memset(body, 0, sizeof(body));
    snprintf(body, sizeof(body), "{\"pad\":\"%0200d\"}", 0);
    size_t need = COLL_LIST_CACHE_MAX / 200 + 1;
    for (size_t i = 0; i < need; i++)
        CHECK(wr1(st, STORE_POST, "big", NULL, body) == STORE_CREATED);
    s1 = store_acquire(st);
    CHECK(coll_list_bytes(snap_coll(s1, "big"), &blen) == NULL);
    CHECK(coll_list_bytes(snap_coll(s1, "big"), &blen) == NULL);
    snap_release(s1);
    store_free(st);
}

struct column_race {
    const struct coll *c;
    const char *name;
    const struct coll_cell *got;
    struct doc *const *docs;
};

static void *column_racer(void *arg)
{
    struct column_race *r = arg;
    r->docs = coll_docs(r->c);
    r->got = coll_column(r->c, r->name, strlen(r->name));
    return NULL;
}

static void test_query_caches(void)
{
    struct store *st = store_new(NULL);
    CHECK(wr1(st, STORE_POST, "c", NULL, "{\"v\":7,\"s\":\"a\",\"o\":{\"k\":1}}") == STORE_CREATED);
    CHECK(wr1(st, STORE_POST, "c", NULL, "{\"v\":2.5,\"s\":\"q\\\"q\",\"o\":[1]}") ==
          STORE_CREATED);
    CHECK(wr1(st, STORE_POST, "c", NULL, "{\"s\":null,\"o\":{}}") == STORE_CREATED);
    struct snap *s0 = store_acquire(st);
    const struct coll *c = snap_coll(s0, "c");

    /* first use by eight threads at once, on two names: one column a name, every thread gets it */
    struct column_race r[8];
    pthread_t th[8];
    for (int i = 0; i < 8; i++) {
        r[i].c = c;
        r[i].name = i % 2 ? "v" : "s";
        CHECK(pthread_create(&th[i], NULL, column_racer, &r[i]) == 0);
    }
    for (int i = 0; i < 8; i++)
        CHECK(pthread_join(th[i], NULL) == 0);
    for (int i = 2; i < 8; i++)
        CHECK(r[i].got != NULL && r[i].got == r[i % 2].got && r[i].docs == r[0].docs);
    struct doc *const *docs = coll_docs(c);
    CHECK(docs == r[0].docs && docs[0]->seq == 1 && docs[2]->seq == 3);

    /* the cells: what the query engine's fast path reads, or "read the doc" */
    const struct coll_cell *v = coll_column(c, "v", 1), *sc = coll_column(c, "s", 1);
    CHECK(v == r[1].got && sc == r[0].got);
    CHECK(v[0].kind == COLL_CELL_SCALAR && v[0].type == DOC_INT && v[0].v.i == 7);
    CHECK(v[1].kind == COLL_CELL_SCALAR && v[1].type == DOC_REAL && v[1].v.d == 2.5);
    CHECK(v[2].kind == COLL_CELL_MISSING);
    CHECK(sc[0].kind == COLL_CELL_SCALAR && sc[0].type == DOC_STRING && sc[0].len == 1 &&
          sc[0].v.s[0] == 'a');
    CHECK(sc[1].kind == COLL_CELL_READ_DOC); /* an escaped string */
    CHECK(sc[2].kind == COLL_CELL_SCALAR && sc[2].type == DOC_NULL);
    /* no scalar under the name (objects, arrays, or none at all): nothing kept */
    CHECK(coll_column(c, "o", 1) == NULL && coll_column(c, "o", 1) == NULL);
    CHECK(coll_column(c, "zz", 2) == NULL);
    /* at most COLL_MAX_COLUMNS columns, and COLL_MAX_MARKERS markers, a version */
    CHECK(wr1(st, STORE_POST, "w", NULL,
              "{\"a\":1,\"b\":1,\"c\":1,\"d\":1,\"e\":1,\"f\":1}") == STORE_CREATED);
    struct snap *s1 = store_acquire(st);
    const struct coll *w = snap_coll(s1, "w");
    const char *names[] = {"a", "b", "c", "d", "e"};
    for (size_t i = 0; i < 5; i++)
        CHECK((coll_column(w, names[i], 1) != NULL) == (i < COLL_MAX_COLUMNS));
    for (int i = 0; i < COLL_MAX_MARKERS + 2; i++) {
        char miss[16];
        snprintf(miss, sizeof(miss), "m%d", i);
        CHECK(coll_column(w, miss, strlen(miss)) == NULL);
    }
    CHECK(coll_column(w, "a", 1) != NULL);
    /* a new version has its own; the old one keeps its own */
    CHECK(wr1(st, STORE_DELETE, "c", "1", NULL) == STORE_OK);
    struct snap *s2 = store_acquire(st);
    const struct coll *c2 = snap_coll(s2, "c");
    const struct coll_cell *v2 = coll_column(c2, "v", 1);
    CHECK(v2 != NULL && v2 != v && v2[0].type == DOC_REAL && coll_count(c2) == 2);
    CHECK(coll_column(c, "v", 1) == v && v[0].v.i == 7);
    snap_release(s0);
    snap_release(s1);
    snap_release(s2);
    store_free(st);
}

static void test_nothing_leaks(void)
{
    CHECK(snap_live() == 0);
    CHECK(coll_live() == 0);
    CHECK(pmap_live_nodes() == 0);
    CHECK(idmap_live_nodes() == 0);
    CHECK(doc_live() == 0);
}

/* ---- measurement (not a test): ./test_store --measure, on a build without sanitizers ---- */

static atomic_ulong json_allocs;

static void *counting_malloc(size_t n)
{
    atomic_fetch_add_explicit(&json_allocs, 1, memory_order_relaxed);
    return malloc(n);
}

static uint64_t allocs_now(void)
{
    /* jansson's allocations (hooked) plus the store's own: docs, nodes, collections, snapshots. */
    return atomic_load(&json_allocs) + pmap_nodes_made() + idmap_nodes_made();
}

static long rss_kb(void)
{
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f != NULL) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

static int measure(void)
{
    enum { N = 100000 };
    struct store *st;
    struct store_res res;
    char body[160];
    size_t raw = 0;
    struct mallinfo2 m0, m1;
    long rss0, rss1;
    uint64_t t0, t1, a0, a1;

    json_set_alloc_funcs(counting_malloc, free);
    st = store_new(NULL);
    m0 = mallinfo2();
    rss0 = rss_kb();
    t0 = now_nsec();
    for (int i = 0; i < N; i++) {
        snprintf(body, sizeof(body),
                 "{\"title\":\"post number %06d\",\"author\":\"someone\",\"views\":%d,"
                 "\"published\":true}",
                 i, i * 7);
        CHECK(wr(st, STORE_POST, "posts", NULL, body, &res) == STORE_CREATED);
        raw += res.doc->len;
        store_res_cleanup(&res);
    }
    t1 = now_nsec();
    m1 = mallinfo2();
    rss1 = rss_kb();
    printf("# %d docs, mean stored JSON %.1f bytes (with id)\n", N, (double)raw / N);
    printf("# POST into a growing collection: %.2f us per write\n", (double)(t1 - t0) / N / 1000);
    if (m1.uordblks > 0)
        printf("# heap in use: %.1f bytes per doc (mallinfo2), RSS %.1f bytes per doc\n",
               (double)(m1.uordblks - m0.uordblks) / N, (double)(rss1 - rss0) * 1024 / N);

    /* Allocation count per write at 100k docs. */
    static const struct {
        enum store_op_kind kind;
        const char *label, *body;
    } ops[] = {
        {STORE_POST, "POST", "{\"title\":\"new\",\"author\":\"x\",\"views\":1}"},
        {STORE_PUT, "PUT (replace)", "{\"title\":\"put\",\"author\":\"x\",\"views\":2}"},
        {STORE_PATCH, "PATCH", "{\"views\":3}"},
        {STORE_DELETE, "DELETE", NULL},
    };
    for (size_t k = 0; k < ARRAY_LEN(ops); k++) {
        enum { W = 2000 };
        a0 = allocs_now();
        uint64_t nodes0 = pmap_nodes_made() + idmap_nodes_made();
        t0 = now_nsec();
        for (int i = 0; i < W; i++) {
            char id[24];
            /* PUT/PATCH: spread over the collection; DELETE: ids 1..W, each once. */
            int n = ops[k].kind == STORE_DELETE ? i + 1 : 1 + (int)((uint64_t)i * 7919 % N);
            snprintf(id, sizeof(id), "%d", n);
            CHECK(wr(st, ops[k].kind, "posts", id, ops[k].body, &res) <= STORE_CREATED);
            store_res_cleanup(&res);
        }
        t1 = now_nsec();
        a1 = allocs_now();
        /* + 3 per write: the doc, the collection header and the snapshot (xmalloc, not hooked). */
        uint64_t nodes = pmap_nodes_made() + idmap_nodes_made() - nodes0;
        printf("# %-14s %.1f allocations per write (%.1f pmap/idmap nodes, %.1f jansson), %.2f us\n",
               ops[k].label, (double)(a1 - a0) / W + 3, (double)nodes / W,
               (double)(a1 - a0 - nodes) / W, (double)(t1 - t0) / W / 1000);
    }

    /* Export and import of the whole store. */
    struct snap *s = store_acquire(st);
    struct buf b;
    buf_init(&b, (size_t)1 << 31);
    t0 = now_nsec();
    CHECK(snap_export(s, &b) == 0);
    t1 = now_nsec();
    printf("# export of %zu docs: %zu bytes in %.1f ms\n", coll_count(snap_coll(s, "posts")), b.len,
           (double)(t1 - t0) / 1e6);
    json_t *db = json_loadb(b.data, b.len, 0, NULL);
    struct store *st2 = store_new(NULL);
    struct store_op op = {.kind = STORE_IMPORT, .body = db};
    t0 = now_nsec();
    CHECK(store_write(st2, &op, &res) == STORE_OK);
    t1 = now_nsec();
    printf("# import of the same: %.1f ms\n", (double)(t1 - t0) / 1e6);
    store_res_cleanup(&res);
    json_decref(db);
    buf_cleanup(&b);
    snap_release(s);
    store_free(st2);
    store_free(st);
    return check_failures ? 1 : 0;
}

/*
 * A stored doc the scanner accepted but jansson will not parse (recovery
 * scans, it does not parse): a PATCH of it is the server's fault, STORE_DAMAGED
 * (500), not the client's (400), and changes nothing.
 */
static void test_damaged_doc(void)
{
    struct store *st = store_new(NULL);
    static const char bad[] = "{\"id\":1,\"a\":[1,,2]}"; /* nested: skipped by brackets */
    struct doc *d, *single;
    struct store_res res;

    CHECK(doc_new_bytes("1", 1, 1, 1, bad, strlen(bad), &d) == 0);
    CHECK(doc_new_bytes("cfg", 3, 0, 1, bad, strlen(bad), &single) == 0);
    struct coll *c0 = coll_new("o", 1), *c = coll_with(c0, d, 1);
    struct snap *s0 = snap_new(1), *s1 = snap_with_coll(s0, c, 1),
                *s = snap_with_single(s1, single, 1);
    coll_release(c0);
    coll_release(c);
    snap_release(s0);
    snap_release(s1);
    doc_release(d);
    doc_release(single);
    store_install(st, s);

    CHECK(wr(st, STORE_PATCH, "o", "1", "{\"x\":1}", &res) == STORE_DAMAGED);
    CHECK(res.doc == NULL && res.rev == 1 && strstr(res.msg, "cannot be parsed") != NULL);
    store_res_cleanup(&res);
    CHECK(wr(st, STORE_PATCH_SINGLE, "cfg", NULL, "{\"x\":1}", &res) == STORE_DAMAGED);
    store_res_cleanup(&res);
    CHECK(strcmp(store_result_str(STORE_DAMAGED), "damaged") == 0);
    s = store_acquire(st);
    CHECK(snap_revision(s) == 1 && strcmp(coll_get(snap_coll(s, "o"), "1", 1)->bytes, bad) == 0);
    snap_release(s);
    /* a PUT replaces it: the store works on */
    CHECK(wr1(st, STORE_PUT, "o", "1", "{\"x\":2}") == STORE_OK);
    store_free(st);
}

/*
 * A doc whose serialization is too long for a doc's 32-bit lengths (4 GiB;
 * lowered here to 40 bytes) is STORE_TOO_LARGE from every write and from an
 * import, which changes nothing -- never an abort.
 */
static void test_too_large_doc(void)
{
    struct store *st = store_new(NULL);
    struct store_res res;
    struct snap *s;

    CHECK(wr1(st, STORE_POST, "p", NULL, "{\"t\":\"short\"}") == STORE_CREATED);
    CHECK(wr1(st, STORE_PUT_SINGLE, "cfg", NULL, "{\"k\":1}") == STORE_CREATED);
    doc_test_max_len(40);
    static const char big[] = "{\"t\":\"0123456789012345678901234567890123456789\"}";
    CHECK(wr(st, STORE_POST, "p", NULL, big, &res) == STORE_TOO_LARGE && res.doc == NULL &&
          res.rev == 2);
    store_res_cleanup(&res);
    CHECK(wr1(st, STORE_PUT, "p", "1", big) == STORE_TOO_LARGE);
    CHECK(wr1(st, STORE_PUT, "p", "7", big) == STORE_TOO_LARGE);
    CHECK(wr1(st, STORE_PATCH, "p", "1", "{\"u\":\"01234567890123456789\"}") == STORE_TOO_LARGE);
    CHECK(wr1(st, STORE_PUT_SINGLE, "cfg", NULL, big) == STORE_TOO_LARGE);
    CHECK(wr1(st, STORE_PATCH_SINGLE, "cfg", NULL, big) == STORE_TOO_LARGE);
    CHECK(wr(st, STORE_IMPORT, NULL, NULL,
             "{\"a\":[{\"id\":1},{\"id\":2,\"t\":\"01234567890123456789012345678901\"}]}",
             &res) == STORE_TOO_LARGE);
    CHECK(strstr(res.msg, "a[1]") != NULL);
    store_res_cleanup(&res);
    CHECK(wr(st, STORE_IMPORT, NULL, NULL,
             "{\"c\":{\"t\":\"0123456789012345678901234567890123456789\"}}",
             &res) == STORE_TOO_LARGE &&
          strstr(res.msg, "'c'") != NULL);
    store_res_cleanup(&res);
    CHECK(strcmp(store_result_str(STORE_TOO_LARGE), "too large") == 0);
    s = store_acquire(st);
    CHECK(snap_revision(s) == 2 && coll_count(snap_coll(s, "p")) == 1 &&
          strcmp(coll_get(snap_coll(s, "p"), "1", 1)->bytes, "{\"t\":\"short\",\"id\":1}") == 0 &&
          strcmp(snap_single(s, "cfg")->bytes, "{\"k\":1}") == 0);
    snap_release(s);
    doc_test_max_len(0);
    CHECK(wr1(st, STORE_POST, "p", NULL, big) == STORE_CREATED);
    store_free(st);
}

static const struct test_case all_cases[] = {
    {"name and id validation", test_names_and_ids},
    {"invalid operations change nothing", test_invalid_ops},
    {"POST id rules", test_post_ids},
    {"PUT create, replace, id checks", test_put},
    {"RFC 7396 Appendix A through store_merge_patch", test_merge_patch_rfc},
    {"PATCH of stored docs (RFC 7396 rows) and id protection", test_patch_docs},
    {"DELETE", test_delete},
    {"If-Match", test_if_match},
    {"revisions: global, collection, document", test_revisions},
    {"an old snapshot is unchanged by later writes", test_isolation},
    {"insertion order, pagination helpers, listing", test_order_and_paging},
    {"singular resources and no_create", test_singular},
    {"name table limit", test_name_limit},
    {"import and export of db.json", test_import_export},
    {"commit hook: sees the next snapshot; failure changes nothing", test_commit_hook},
    {"4 writers and 4 readers", test_threads},
    {"take_body: the parsed body is kept, not copied", test_take_body},
    {"documents: member index, scanner errors", test_doc_index},
    {"PATCH of a stored doc that cannot be parsed: STORE_DAMAGED", test_damaged_doc},
    {"a doc of 4 GiB or more: STORE_TOO_LARGE, no abort", test_too_large_doc},
    {"the whole-list cache of a collection version", test_list_cache},
    {"the query caches of a collection version: doc array and columns", test_query_caches},
    {"everything is freed", test_nothing_leaks},
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* results interleave sanely with sanitizer reports */
    if (argc > 1 && strcmp(argv[1], "--measure") == 0)
        return measure();
    return run_cases(all_cases);
}
