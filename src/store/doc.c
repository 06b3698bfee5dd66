/* src/store/doc.c -- see doc.h. */
#include "store/doc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "util.h"

/* Relaxed: a statistic, not a synchronisation point. */
static _Atomic uint64_t live_docs;

/* Beyond these a doc keeps no index (and the query engine parses it): never in practice. */
/* A scanned member whose name is too long for the index: the doc gets none. */
#define NAME_TOO_LONG 0x80

#define MAX_MEMBERS UINT16_MAX
#define MAX_NAME UINT16_MAX

/* ---- the scanner: compact JSON text -> member index ---- */

/*
 * A scanner over one document's text. It checks the top level strictly (an
 * object of "name": value pairs, nothing after it) and skips nested values by
 * their brackets, outside strings; jansson made the text (json_dumps) and the
 * log's checksum guards it, so this finds the members, it does not re-validate
 * every byte. Every read is bounds-checked: bad input is an error, never UB.
 */
struct scan {
    const char *p;
    size_t len, pos;
};

static void skip_ws(struct scan *s)
{
    while (s->pos < s->len && (s->p[s->pos] == ' ' || s->p[s->pos] == '\t' ||
                               s->p[s->pos] == '\n' || s->p[s->pos] == '\r'))
        s->pos++;
}

/* At a quote: skips the string; its text between the quotes is [*off, *off + *n). -EINVAL if
 * unclosed. */
static int scan_string(struct scan *s, size_t *off, size_t *n, bool *escaped)
{
    size_t i = s->pos + 1;

    *escaped = false;
    while (i < s->len && s->p[i] != '"') {
        if ((unsigned char)s->p[i] < 0x20)
            return -EINVAL;
        if (s->p[i] == '\\') {
            *escaped = true;
            i++;
        }
        i++;
    }
    if (i >= s->len)
        return -EINVAL;
    *off = s->pos + 1;
    *n = i - *off;
    s->pos = i + 1;
    return 0;
}

/* At a '[' or '{': skips to its matching bracket. */
static int scan_nested(struct scan *s)
{
    size_t depth = 0;

    while (s->pos < s->len) {
        char c = s->p[s->pos];
        if (c == '"') {
            size_t off, n;
            bool esc;
            if (scan_string(s, &off, &n, &esc) != 0)
                return -EINVAL;
            continue;
        }
        if (c == '[' || c == '{') {
            depth++;
        } else if (c == ']' || c == '}') {
            if (depth == 0)
                return -EINVAL;
            if (--depth == 0) {
                s->pos++;
                return 0;
            }
        }
        s->pos++;
    }
    return -EINVAL;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/*
 * A number, classified as jansson does: with '.', 'e' or 'E' a real
 * (strtod), else an integer (one that overflows int64 is an error, as it is
 * to jansson). The grammar is RFC 8259's.
 */
static int scan_number(struct scan *s, struct doc_member *m)
{
    size_t i = s->pos, start = s->pos;
    bool real = false;

    if (i < s->len && s->p[i] == '-')
        i++;
    if (i >= s->len || !is_digit(s->p[i]))
        return -EINVAL;
    if (s->p[i] == '0')
        i++;
    else
        while (i < s->len && is_digit(s->p[i]))
            i++;
    if (i < s->len && s->p[i] == '.') {
        real = true;
        if (++i >= s->len || !is_digit(s->p[i]))
            return -EINVAL;
        while (i < s->len && is_digit(s->p[i]))
            i++;
    }
    if (i < s->len && (s->p[i] == 'e' || s->p[i] == 'E')) {
        real = true;
        i++;
        if (i < s->len && (s->p[i] == '+' || s->p[i] == '-'))
            i++;
        if (i >= s->len || !is_digit(s->p[i]))
            return -EINVAL;
        while (i < s->len && is_digit(s->p[i]))
            i++;
    }
    if (real) {
        /*
         * strtod reads the radix character of LC_NUMERIC, which is '.' only
         * in the C locale: cairnd stays in it (nothing calls setlocale, and
         * must not). jansson swaps '.' for the locale's radix before its own
         * strtod; this scanner does not, so under another locale it would
         * stop at the '.' and read 1.5 as 1.
         */
        char tmp[64], *end;
        if (i - start >= sizeof(tmp)) {
            /* Longer than any json_dumps real: copy to the heap once. */
            char *big = xstrndup(s->p + start, i - start);
            m->v.d = strtod(big, &end);
            free(big);
        } else {
            memcpy(tmp, s->p + start, i - start);
            tmp[i - start] = '\0';
            m->v.d = strtod(tmp, &end);
        }
        m->type = DOC_REAL;
    } else {
        bool neg = s->p[start] == '-';
        uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        for (size_t k = start + neg; k < i; k++) {
            unsigned dgt = (unsigned)(s->p[k] - '0');
            if (v > (lim - dgt) / 10)
                return -EINVAL;
            v = v * 10 + dgt;
        }
        m->v.i = neg ? (int64_t)(0 - v) : (int64_t)v;
        m->type = DOC_INT;
    }
    s->pos = i;
    return 0;
}

static int scan_literal(struct scan *s, const char *word, enum doc_type t, struct doc_member *m)
{
    size_t n = strlen(word);
    if (s->len - s->pos < n || memcmp(s->p + s->pos, word, n) != 0)
        return -EINVAL;
    s->pos += n;
    m->type = (uint8_t)t;
    return 0;
}

/* One value into 'm' (type and value; the name is the caller's). */
static int scan_value(struct scan *s, struct doc_member *m)
{
    size_t off, n;
    bool esc;

    if (s->pos >= s->len)
        return -EINVAL;
    switch (s->p[s->pos]) {
    case '"':
        if (scan_string(s, &off, &n, &esc) != 0)
            return -EINVAL;
        m->type = DOC_STRING;
        m->flags |= esc ? DOC_ESCAPED : 0;
        m->v.s.off = (uint32_t)off;
        m->v.s.len = (uint32_t)n;
        return 0;
    case '[':
    case '{':
        off = s->pos;
        m->type = s->p[s->pos] == '[' ? DOC_ARRAY : DOC_OBJECT;
        if (scan_nested(s) != 0)
            return -EINVAL;
        m->v.s.off = (uint32_t)off;
        m->v.s.len = (uint32_t)(s->pos - off);
        return 0;
    case 't':
        return scan_literal(s, "true", DOC_TRUE, m);
    case 'f':
        return scan_literal(s, "false", DOC_FALSE, m);
    case 'n':
        return scan_literal(s, "null", DOC_NULL, m);
    default:
        return scan_number(s, m);
    }
}

/*
 * Scans 'p' (len bytes, < 4 GiB) as one JSON object. Writes up to 'cap'
 * members to 'out' (may be NULL with cap 0) and returns their count in
 * *nmembers -- the full count even when it exceeds 'cap'. *indexable is false
 * when the doc cannot have an index (an over-long name, too many members);
 * *esc_names is true when a member's name has escapes (DOC_NAME_ESCAPED).
 * 0, or -EINVAL when the text is not an object.
 */
static int scan_doc(const char *p, size_t len, struct doc_member *out, size_t cap, size_t *nmembers,
                    bool *indexable, bool *esc_names)
{
    struct scan s = {.p = p, .len = len, .pos = 0};
    size_t n = 0;

    *indexable = true;
    *esc_names = false;
    skip_ws(&s);
    if (s.pos >= s.len || s.p[s.pos] != '{')
        return -EINVAL;
    s.pos++;
    skip_ws(&s);
    if (s.pos < s.len && s.p[s.pos] == '}') {
        s.pos++;
    } else {
        for (;;) {
            struct doc_member m;
            size_t off, nlen;
            bool esc;

            memset(&m, 0, sizeof(m));
            skip_ws(&s);
            if (s.pos >= s.len || s.p[s.pos] != '"' || scan_string(&s, &off, &nlen, &esc) != 0)
                return -EINVAL;
            if (esc) {
                *esc_names = true;
                m.flags = DOC_NAME_ESCAPED;
            }
            if (nlen > MAX_NAME) {
                *indexable = false;
                m.flags |= NAME_TOO_LONG;
            }
            m.name_off = (uint32_t)off;
            m.name_len = (uint16_t)(nlen > MAX_NAME ? MAX_NAME : nlen);
            skip_ws(&s);
            if (s.pos >= s.len || s.p[s.pos] != ':')
                return -EINVAL;
            s.pos++;
            skip_ws(&s);
            if (scan_value(&s, &m) != 0)
                return -EINVAL;
            if (n < cap)
                out[n] = m;
            n++;
            skip_ws(&s);
            if (s.pos < s.len && s.p[s.pos] == ',') {
                s.pos++;
                continue;
            }
            if (s.pos < s.len && s.p[s.pos] == '}') {
                s.pos++;
                break;
            }
            return -EINVAL;
        }
    }
    skip_ws(&s);
    if (s.pos != s.len)
        return -EINVAL;
    if (n > MAX_MEMBERS)
        *indexable = false;
    *nmembers = n;
    return 0;
}

/* ---- docs ---- */

/* The member index sits after the bytes, aligned for its int64/double values. */
static size_t index_offset(size_t id_len, size_t len)
{
    size_t end = sizeof(struct doc) + id_len + 1 + len + 1;
    return (end + 7) & ~(size_t)7;
}

const struct doc_member *doc_members(const struct doc *d)
{
    if (!d->indexed)
        return NULL;
    return (const struct doc_member *)((const char *)d + index_offset(d->id_len, d->len));
}

const struct doc_member *doc_member(const struct doc *d, const char *name, size_t name_len)
{
    const struct doc_member *m = doc_members(d);

    if (m == NULL)
        return NULL;
    for (size_t i = 0; i < d->nmembers; i++)
        if (m[i].name_len == name_len && !(m[i].flags & DOC_NAME_ESCAPED) &&
            memcmp(d->bytes + m[i].name_off, name, name_len) == 0)
            return &m[i];
    return NULL;
}

enum doc_read doc_read_member(const struct doc *d, const char *name, size_t name_len,
                              const struct doc_member **m)
{
    *m = d->indexed ? doc_member(d, name, name_len) : NULL;
    if (*m == NULL)
        return !d->indexed || d->esc_names ? DOC_READ_WHOLE : DOC_READ_MISSING;
    if ((*m)->type == DOC_ARRAY || (*m)->type == DOC_OBJECT ||
        ((*m)->type == DOC_STRING && ((*m)->flags & DOC_ESCAPED)))
        return DOC_READ_MEMBER;
    return DOC_READ_INDEX;
}

/*
 * The doc's "id" member into *out: from the index, or for a doc without one
 * by scanning its bytes again (rare: a name over 64 KiB, or over 65,535
 * members). False if none.
 */
static bool id_member(const struct doc *d, struct doc_member *out)
{
    const struct doc_member *m;
    struct doc_member *all;
    size_t n, cap;
    bool indexable, esc_names, found = false;

    if (d->indexed) {
        m = doc_member(d, "id", 2);
        if (m != NULL)
            *out = *m;
        return m != NULL;
    }
    if (scan_doc(d->bytes, d->len, NULL, 0, &cap, &indexable, &esc_names) != 0)
        return false;
    all = xmalloc((cap ? cap : 1) * sizeof(*all));
    if (scan_doc(d->bytes, d->len, all, cap, &n, &indexable, &esc_names) == 0) {
        for (size_t i = 0; i < n && !found; i++) {
            if (!(all[i].flags & (DOC_NAME_ESCAPED | NAME_TOO_LONG)) && all[i].name_len == 2 &&
                memcmp(d->bytes + all[i].name_off, "id", 2) == 0) {
                *out = all[i];
                found = true;
            }
        }
    }
    free(all);
    return found;
}

/* Whether the doc's "id" member is an integer whose decimal form is exactly its key. */
static bool is_int_id(const struct doc *d, int64_t *val)
{
    struct doc_member mm, *m = &mm;
    char tmp[24];
    int n;

    if (!id_member(d, m) || m->type != DOC_INT)
        return false;
    n = snprintf(tmp, sizeof(tmp), "%" PRId64, m->v.i);
    if (n < 0 || (size_t)n != d->id_len || memcmp(tmp, d->id, d->id_len) != 0)
        return false;
    *val = m->v.i;
    return true;
}

int doc_id_key(const struct doc *d, char *key, bool *is_int)
{
    struct doc_member mm, *m = &mm;

    if (!id_member(d, m))
        return -EINVAL;
    if (m->type == DOC_INT) {
        if (m->v.i < 0)
            return -EINVAL;
        snprintf(key, STORE_ID_MAX + 1, "%" PRId64, m->v.i);
        *is_int = true;
        return 0;
    }
    /* A valid string id has no character that JSON escapes (store_id_valid). */
    if (m->type != DOC_STRING || (m->flags & DOC_ESCAPED) || m->v.s.len > STORE_ID_MAX)
        return -EINVAL;
    memcpy(key, d->bytes + m->v.s.off, m->v.s.len);
    key[m->v.s.len] = '\0';
    if (!store_id_valid(key))
        return -EINVAL;
    *is_int = false;
    return 0;
}

int doc_new_bytes(const char *id, size_t id_len, uint64_t seq, uint64_t rev, const char *text,
                  size_t len, struct doc **out)
{
    struct doc_member small[32], *idx = small;
    struct doc *d;
    size_t n, nm, at;
    bool indexable, esc_names;

    *out = NULL;
    if (id_len >= (size_t)INT32_MAX)
        panic("doc_new: bad arguments");
    /* One scan into 'small' for ordinary docs; a second into the heap for wide ones. */
    if (len >= UINT32_MAX ||
        scan_doc(text, len, small, ARRAY_LEN(small), &n, &indexable, &esc_names) != 0)
        return -EINVAL;
    nm = indexable ? n : 0;
    if (nm > ARRAY_LEN(small)) {
        idx = xmalloc(nm * sizeof(*idx));
        if (scan_doc(text, len, idx, nm, &n, &indexable, &esc_names) != 0)
            panic("doc_new: a second scan of the same bytes failed");
    }
    at = index_offset(id_len, len);
    d = xmalloc(at + nm * sizeof(struct doc_member));
    atomic_init(&d->refs, 1);
    d->id_len = (uint32_t)id_len;
    d->len = (uint32_t)len;
    d->nmembers = (uint16_t)nm;
    d->indexed = indexable;
    d->esc_names = indexable && esc_names;
    d->seq = seq;
    d->rev = rev;
    memcpy(d->id, id, id_len);
    d->id[id_len] = '\0';
    memcpy(d->id + id_len + 1, text, len);
    d->id[id_len + 1 + len] = '\0';
    d->bytes = d->id + id_len + 1;
    if (nm > 0)
        memcpy((char *)d + at, idx, nm * sizeof(*idx));
    if (idx != small)
        free(idx);
    d->int_val = 0;
    d->int_id = is_int_id(d, &d->int_val);
    atomic_fetch_add_explicit(&live_docs, 1, memory_order_relaxed);
    *out = d;
    return 0;
}

/* The longest serialization a doc holds: its lengths are 32 bits (and 'len' < UINT32_MAX). */
#define MAX_LEN ((size_t)UINT32_MAX - 1)

/* Lowered by tests only, before any thread starts. */
static size_t max_len = MAX_LEN;

void doc_test_max_len(size_t max)
{
    max_len = max != 0 && max < MAX_LEN ? max : MAX_LEN;
}

int doc_from_json(const json_t *json, const char *id, size_t id_len, uint64_t seq, uint64_t rev,
                  struct doc **out)
{
    char *text;
    size_t len;

    *out = NULL;
    if (!json_is_object(json))
        panic("doc_new: bad arguments");
    /*
     * Member order is kept (no JSON_SORT_KEYS): a client reads back what it
     * wrote. The bytes are copied into the doc's own allocation so that a doc
     * costs one malloc for header, key, text and index together.
     */
    text = json_dumps(json, JSON_COMPACT);
    if (text == NULL)
        panic("doc_new: json_dumps failed (out of memory?)");
    len = strlen(text);
    if (len > max_len) {
        free(text);
        return -EFBIG;
    }
    if (doc_new_bytes(id, id_len, seq, rev, text, len, out) != 0)
        panic("doc_new: json_dumps made text that does not scan as an object");
    free(text);
    return 0;
}

struct doc *doc_new(const json_t *json, const char *id, size_t id_len, uint64_t seq, uint64_t rev)
{
    struct doc *d;

    if (doc_from_json(json, id, id_len, seq, rev, &d) != 0)
        panic("doc_new: the document serializes to 4 GiB or more");
    return d;
}

/* Per thread: a test counts the parses of its own calls. */
static _Thread_local uint64_t parses;

uint64_t doc_parse_count(void)
{
    return parses;
}

json_t *doc_parse(const struct doc *d)
{
    parses++;
    return json_loadb(d->bytes, d->len, JSON_ALLOW_NUL, NULL);
}

struct doc *doc_retain(struct doc *d)
{
    if (d != NULL) {
        uint32_t old = atomic_fetch_add_explicit(&d->refs, 1, memory_order_relaxed);
        if (old == 0 || old == UINT32_MAX)
            panic("doc_retain: refcount %" PRIu32 " on doc %p", old, (void *)d);
    }
    return d;
}

void doc_release(struct doc *d)
{
    uint32_t old;

    if (d == NULL)
        return;
    /* acq_rel: every use of the doc by other holders happens before the free. */
    old = atomic_fetch_sub_explicit(&d->refs, 1, memory_order_acq_rel);
    if (old == 0)
        panic("doc_release: refcount underflow on doc %p", (void *)d);
    if (old != 1)
        return;
    free(d);
    atomic_fetch_sub_explicit(&live_docs, 1, memory_order_relaxed);
}

uint64_t doc_live(void)
{
    return atomic_load_explicit(&live_docs, memory_order_relaxed);
}
