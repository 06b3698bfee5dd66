/*
 * src/query.c -- the json-server 0.17 list query dialect; see query.h and docs/QUERY.md.
 *
 * Everything that can be decided once per request is decided in query_parse:
 * paths are split into segments, filter values are classified (canonical
 * integer? canonical real? number for ranges?), regexes are compiled, q is
 * folded. query_match then only walks the document and compares; it does
 * not allocate, and it never writes to the document (documents are shared
 * immutable snapshot values read by many threads). Every search in it is
 * linear in the text searched: see LIKE_PREFIX and contains_fold.
 *
 * Canonical scalar text (what "field=value" compares against): strings are
 * their bytes, integers their decimal form, reals the shortest "%.{15,16,17}g"
 * form that reads back to the same double, true/false/null their literals.
 * This assumes the C numeric locale (cairnd never sets LC_NUMERIC).
 */
#include "query.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/coll.h"
#include "store/doc.h"
#include "util.h"

/* Room for the canonical text of any integer or real ("-1.2345678901234567e-308"). */
#define CANON_MAX 40

/* Largest array index a path segment may name (json_array_get takes size_t). */
#define MAX_INDEX 999999999L

struct seg {
    const char *key; /* into path.buf, not NUL-terminated */
    size_t len;
    long index; /* the array index this segment names, or -1 */
};

/* A dotted path ("author.name"), split once at parse time. */
struct path {
    char *buf; /* owned copy of the whole path */
    size_t len;
    struct seg seg[QUERY_MAX_PATH_SEGMENTS];
    size_t nseg;
};

enum op { OP_EQ, OP_NE, OP_GTE, OP_LTE, OP_LIKE };

enum lit { LIT_NONE, LIT_TRUE, LIT_FALSE, LIT_NULL };

/* A number as written in a filter value, or as held by a JSON number. */
struct num {
    bool is_int;
    json_int_t i;
    double d;
};

/* One value of a filter, classified once. */
struct fvalue {
    char *text; /* owned copy */
    size_t len;
    enum lit lit; /* the text is "true", "false" or "null" */
    bool eq_int;  /* the text is the canonical decimal of eq_i */
    json_int_t eq_i;
    bool eq_real; /* the text is the canonical form of the real eq_d */
    double eq_d;
    bool is_num; /* the text reads as a number: ranges compare numerically */
    struct num num;
    regex_t *re; /* _like only */
};

/* All values of one parameter name: OR for =, _gte, _lte, _like; AND for _ne. */
struct filter {
    char *name; /* the whole parameter name: groups repeats */
    enum op op;
    struct path path;
    struct fvalue *values;
    size_t nvalues;
};

struct sort_key {
    struct path path;
    bool desc;
};

struct query {
    struct filter *filters;
    size_t nfilters;
    char *needle; /* q, ASCII-lowercased; NULL when absent or empty */
    size_t needle_len;
    uint16_t needle_next[QUERY_MAX_Q]; /* KMP failure table of needle */
    bool needle_real; /* every needle byte can be in a real's text (needle_absent) */
    struct sort_key keys[QUERY_MAX_SORT_KEYS];
    size_t nkeys;
    bool has_page, has_limit, has_start, has_end;
    uint64_t page, limit, start, end;
};

/* ---- errors ---- */

static const char *const errc_names[] = {
    [QUERY_OK] = "ok",
    [QUERY_ERR_TOO_MANY] = "too-many-parameters",
    [QUERY_ERR_EMPTY_NAME] = "empty-name",
    [QUERY_ERR_NAME_TOO_LONG] = "name-too-long",
    [QUERY_ERR_VALUE_TOO_LONG] = "value-too-long",
    [QUERY_ERR_UNSUPPORTED] = "unsupported-parameter",
    [QUERY_ERR_REPEATED] = "repeated-parameter",
    [QUERY_ERR_BAD_NUMBER] = "bad-number",
    [QUERY_ERR_BAD_PATH] = "bad-path",
    [QUERY_ERR_BAD_REGEX] = "bad-regex",
    [QUERY_ERR_BAD_SORT] = "bad-sort",
    [QUERY_ERR_CONFLICT] = "conflicting-parameters",
};

const char *query_errc_name(enum query_errc code)
{
    if ((size_t)code >= ARRAY_LEN(errc_names) || errc_names[code] == NULL)
        panic("query_errc_name: unknown code %d", (int)code);
    return errc_names[code];
}

/*
 * Fills 'err': the name, made printable and cut to 64 bytes, and a message
 * "query parameter '<name>': <detail>" (or just the detail when name is NULL).
 * Returns -EINVAL so callers can 'return fail(...)'.
 */
static int fail(struct query_error *err, enum query_errc code, const char *name, const char *fmt,
                ...) __attribute__((format(printf, 4, 5)));

static int fail(struct query_error *err, enum query_errc code, const char *name, const char *fmt,
                ...)
{
    char detail[160];
    va_list ap;

    err->code = code;
    err->param[0] = '\0';
    if (name != NULL) {
        size_t n = strnlen(name, QUERY_MAX_NAME + 1);
        size_t keep = n > 64 ? 61 : n;
        for (size_t i = 0; i < keep; i++) {
            unsigned char c = (unsigned char)name[i];
            err->param[i] = (c >= 0x20 && c < 0x7f && c != '\'') ? (char)c : '?';
        }
        if (keep < n)
            memcpy(err->param + keep, "...", 3), keep += 3;
        err->param[keep] = '\0';
    }
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    if (name != NULL)
        snprintf(err->message, sizeof(err->message), "query parameter '%s': %s", err->param,
                 detail);
    else
        snprintf(err->message, sizeof(err->message), "%s", detail);
    return -EINVAL;
}

/* ---- numbers and canonical text ---- */

/* Shortest "%.Ng" (N = 15..17) that reads back as 'd'. Returns the length. */
static size_t real_text(double d, char *buf, size_t size)
{
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(buf, size, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    return (size_t)n;
}

/*
 * A value as the matcher and the sort read it, from a jansson tree or from a
 * stored doc's member index (store/doc.h): scalars by value, strings as
 * bytes, arrays and objects as a tree.
 */
struct qv {
    enum doc_type type;
    int64_t i;
    double d;
    const char *s; /* DOC_STRING: its bytes (not NUL-terminated) */
    size_t len;
    const json_t *j; /* DOC_ARRAY, DOC_OBJECT */
};

static void qv_json(const json_t *v, struct qv *out)
{
    memset(out, 0, sizeof(*out));
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        out->type = DOC_OBJECT, out->j = v;
        break;
    case JSON_ARRAY:
        out->type = DOC_ARRAY, out->j = v;
        break;
    case JSON_STRING:
        out->type = DOC_STRING;
        out->s = json_string_value(v);
        out->len = json_string_length(v);
        break;
    case JSON_INTEGER:
        out->type = DOC_INT, out->i = json_integer_value(v);
        break;
    case JSON_REAL:
        out->type = DOC_REAL, out->d = json_real_value(v);
        break;
    case JSON_TRUE:
        out->type = DOC_TRUE;
        break;
    case JSON_FALSE:
        out->type = DOC_FALSE;
        break;
    case JSON_NULL:
        out->type = DOC_NULL;
        break;
    }
}

static bool qv_is_number(const struct qv *v)
{
    return v->type == DOC_INT || v->type == DOC_REAL;
}

/*
 * The canonical text of a scalar: *s points at a string's own bytes or into
 * 'buf' (CANON_MAX bytes). False for arrays and objects, which have none.
 */
static bool scalar_text(const struct qv *v, char *buf, const char **s, size_t *len)
{
    switch (v->type) {
    case DOC_STRING:
        *s = v->s;
        *len = v->len;
        return true;
    case DOC_INT:
        *len = (size_t)snprintf(buf, CANON_MAX, "%" PRId64, v->i);
        *s = buf;
        return true;
    case DOC_REAL:
        *len = real_text(v->d, buf, CANON_MAX);
        *s = buf;
        return true;
    case DOC_TRUE:
        *s = "true", *len = 4;
        return true;
    case DOC_FALSE:
        *s = "false", *len = 5;
        return true;
    case DOC_NULL:
        *s = "null", *len = 4;
        return true;
    default:
        return false;
    }
}

/* Bytewise order of two byte strings; a proper prefix sorts first. */
static int bytes_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c != 0)
        return c < 0 ? -1 : 1;
    return alen < blen ? -1 : alen > blen;
}

/* Exact order of an integer and a (finite) real. */
static int cmp_int_real(json_int_t i, double d)
{
    if (d >= 9223372036854775808.0)
        return -1;
    if (d < -9223372036854775808.0)
        return 1;
    /* |d| < 2^63: its integral part fits, and d - trunc(d) is exact. */
    json_int_t t = (json_int_t)d;
    if (i != t)
        return i < t ? -1 : 1;
    double frac = d - (double)t;
    return frac > 0 ? -1 : frac < 0;
}

static int num_cmp(const struct num *a, const struct num *b)
{
    if (a->is_int && b->is_int)
        return a->i < b->i ? -1 : a->i > b->i;
    if (a->is_int)
        return cmp_int_real(a->i, b->d);
    if (b->is_int)
        return -cmp_int_real(b->i, a->d);
    return a->d < b->d ? -1 : a->d > b->d;
}

static void qv_num(const struct qv *v, struct num *n)
{
    n->is_int = v->type == DOC_INT;
    n->i = n->is_int ? v->i : 0;
    n->d = n->is_int ? 0 : v->d;
}

/*
 * Whether 's' is a decimal number: [+-] digits [. digits] [e [+-] digits],
 * with digits on at least one side of the point. No hex, inf, nan or spaces.
 */
static bool is_decimal(const char *s)
{
    size_t digits = 0;

    if (*s == '+' || *s == '-')
        s++;
    for (; *s >= '0' && *s <= '9'; s++)
        digits++;
    if (*s == '.') {
        for (s++; *s >= '0' && *s <= '9'; s++)
            digits++;
    }
    if (digits == 0)
        return false;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-')
            s++;
        if (*s < '0' || *s > '9')
            return false;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    return *s == '\0';
}

/* Classifies a filter value once: literal, canonical integer/real, number. */
static void classify(struct fvalue *fv)
{
    const char *t = fv->text;
    char buf[CANON_MAX];
    int64_t i;

    if (strcmp(t, "true") == 0)
        fv->lit = LIT_TRUE;
    else if (strcmp(t, "false") == 0)
        fv->lit = LIT_FALSE;
    else if (strcmp(t, "null") == 0)
        fv->lit = LIT_NULL;
    if (!is_decimal(t))
        return;

    if (parse_i64(t, INT64_MIN, INT64_MAX, &i) == 0) {
        fv->is_num = true;
        fv->num.is_int = true;
        fv->num.i = i;
        snprintf(buf, sizeof(buf), "%" PRId64, i);
        fv->eq_int = strcmp(buf, t) == 0;
        fv->eq_i = i;
    }
    double d = strtod(t, NULL);
    if (!isfinite(d))
        return;
    if (!fv->is_num) {
        fv->is_num = true;
        fv->num.is_int = false;
        fv->num.d = d;
    }
    real_text(d, buf, sizeof(buf));
    if (strcmp(buf, t) == 0) {
        fv->eq_real = true;
        fv->eq_d = d;
    }
}

/* ---- paths ---- */

/* The array index 's' names: canonical decimal ("0", "12", not "012"), else -1. */
static long seg_index(const char *s, size_t len)
{
    long v = 0;
    if (len == 0 || len > 9 || (len > 1 && s[0] == '0'))
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v <= MAX_INDEX ? v : -1;
}

/* Splits 's' on '.'. 0, -EINVAL on an empty segment, -E2BIG on too many. */
static int path_parse(struct path *p, const char *s, size_t len)
{
    p->buf = xstrndup(s, len);
    p->len = len;
    p->nseg = 0;

    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && p->buf[i] != '.')
            continue;
        if (i == start)
            return -EINVAL;
        if (p->nseg == QUERY_MAX_PATH_SEGMENTS)
            return -E2BIG;
        struct seg *sg = &p->seg[p->nseg++];
        sg->key = p->buf + start;
        sg->len = i - start;
        sg->index = seg_index(sg->key, sg->len);
        start = i + 1;
    }
    return 0;
}

static void path_cleanup(struct path *p)
{
    free(p->buf);
    p->buf = NULL;
}

/* The walk of path_get from segment 'first' on, starting at 'v'. */
static const json_t *path_walk(const struct path *p, size_t first, const json_t *v)
{
    for (size_t i = first; i < p->nseg && v != NULL; i++) {
        const struct seg *sg = &p->seg[i];
        if (json_is_object(v))
            v = json_object_getn(v, sg->key, sg->len);
        else if (json_is_array(v) && sg->index >= 0)
            v = json_array_get(v, (size_t)sg->index);
        else
            v = NULL;
    }
    return v;
}

/*
 * The value at 'p' in 'doc', or NULL when missing. As lodash's _.get: a key
 * that literally contains the dots wins over the walk; numeric segments index
 * arrays. Borrowed: points into 'doc'.
 */
static const json_t *path_get(const struct path *p, const json_t *doc)
{
    if (p->nseg > 1 && json_is_object(doc)) {
        const json_t *v = json_object_getn(doc, p->buf, p->len);
        if (v != NULL)
            return v;
    }
    return path_walk(p, 0, doc);
}

/* doc_path over the whole doc, parsed. */
static bool doc_path_parsed(const struct path *p, const struct doc *d, struct qv *out,
                            json_t **tree)
{
    const json_t *v;

    *tree = doc_parse(d);
    v = *tree != NULL ? path_get(p, *tree) : NULL;
    if (v == NULL)
        return false;
    qv_json(v, out);
    return true;
}

/*
 * path_get over a stored doc: a top-level scalar comes from the member index
 * with no parse; an array or object member (or an escaped string) is parsed
 * on its own; a doc without an index is parsed whole, and so is a doc with
 * an escaped member name when a name misses the index (it may be that one).
 * *tree is then that tree (the caller json_decrefs it; NULL otherwise).
 * False when missing.
 */
static bool doc_path(const struct path *p, const struct doc *d, struct qv *out, json_t **tree)
{
    const struct doc_member *m = NULL;
    const json_t *v;
    size_t next = 1;
    enum doc_read how = DOC_READ_MISSING;

    *tree = NULL;
    if (p->nseg > 1) {
        how = doc_read_member(d, p->buf, p->len, &m);
        if (how == DOC_READ_INDEX || how == DOC_READ_MEMBER)
            next = p->nseg; /* lodash: the literal dotted key wins over the walk */
    }
    if (how == DOC_READ_MISSING)
        how = doc_read_member(d, p->seg[0].key, p->seg[0].len, &m);
    if (how == DOC_READ_WHOLE)
        return doc_path_parsed(p, d, out, tree);
    if (how == DOC_READ_MISSING)
        return false;
    if (how == DOC_READ_MEMBER) {
        /* a string's text is between its quotes: parse it with them */
        size_t off = m->type == DOC_STRING ? m->v.s.off - 1 : m->v.s.off;
        size_t len = m->type == DOC_STRING ? m->v.s.len + 2 : m->v.s.len;
        *tree = json_loadb(d->bytes + off, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        v = *tree != NULL ? path_walk(p, next, *tree) : NULL;
        if (v == NULL)
            return false;
        qv_json(v, out);
        return true;
    }
    if (next < p->nseg)
        return false; /* a path into a scalar */
    memset(out, 0, sizeof(*out));
    out->type = (enum doc_type)m->type;
    if (m->type == DOC_INT)
        out->i = m->v.i;
    else if (m->type == DOC_REAL)
        out->d = m->v.d;
    else if (m->type == DOC_STRING)
        out->s = d->bytes + m->v.s.off, out->len = m->v.s.len;
    return true;
}

/* ---- _like patterns ---- */

/* Reads decimal digits at 's' into *out (-1 when none), saturating above 'cap'. */
static const char *read_count(const char *s, long cap, long *out)
{
    *out = -1;
    for (; *s >= '0' && *s <= '9'; s++) {
        long v = (*out < 0 ? 0 : *out) * 10 + (*s - '0');
        *out = v > cap ? cap + 1 : v;
    }
    return s;
}

/* What like_scan learns about a pattern before regcomp sees it. */
struct like_info {
    long weight;     /* size with {m,n} repeats written out, saturated above the cap */
    bool backref;    /* \1..\9: exponential in glibc, and not in the dialect */
    bool repeat;     /* has *, +, ? or {m,n} */
    bool unbalanced; /* a ')' without its '(' (glibc would take it literally) */
};

/*
 * Walks 'pat' as glibc's ERE parser does (escapes, bracket expressions,
 * groups, intervals) to bound its cost: glibc's matcher costs about text
 * length x weight per start position.
 */
static void like_scan(const char *pat, long cap, struct like_info *info)
{
    long sum[QUERY_MAX_LIKE + 2], last[QUERY_MAX_LIKE + 2];
    size_t depth = 0;
    const char *s = pat;

    memset(info, 0, sizeof(*info));
    sum[0] = last[0] = 0;
    while (*s != '\0') {
        long atom = 1;
        if (*s == '\\') {
            if (s[1] >= '1' && s[1] <= '9')
                info->backref = true;
            s += s[1] != '\0' ? 2 : 1;
        } else if (*s == '[') {
            /* A bracket expression is one atom; ']' first is literal. */
            s++;
            if (*s == '^')
                s++;
            if (*s == ']')
                s++;
            while (*s != '\0' && *s != ']') {
                if (*s == '[' && (s[1] == ':' || s[1] == '.' || s[1] == '=')) {
                    char close = s[1];
                    const char *e = s + 2;
                    while (*e != '\0' && !(e[0] == close && e[1] == ']'))
                        e++;
                    s = *e != '\0' ? e + 2 : e;
                } else {
                    s++;
                }
            }
            if (*s == ']')
                s++;
        } else if (*s == '(') {
            if (depth + 1 < ARRAY_LEN(sum)) {
                depth++;
                sum[depth] = last[depth] = 0;
            }
            s++;
            continue;
        } else if (*s == ')') {
            if (depth == 0) {
                info->unbalanced = true;
                s++;
            } else {
                atom = sum[depth];
                depth--;
                s++;
            }
        } else if (*s == '{' && last[depth] > 0) {
            /* {m}, {m,}, {m,n}, {,n}: the largest count multiplies the last atom. */
            long m = -1, n = -1;
            bool comma = false;
            const char *e = read_count(s + 1, cap, &m);
            if (*e == ',') {
                comma = true;
                e = read_count(e + 1, cap, &n);
            }
            if (*e == '}' && (m >= 0 || n >= 0)) {
                long k = n >= 0 ? n : (comma ? m + 1 : m);
                if (k < 1)
                    k = 1;
                long grown = last[depth] > cap / k ? cap + 1 : last[depth] * k;
                sum[depth] += grown - last[depth];
                if (sum[depth] > cap)
                    sum[depth] = cap + 1;
                last[depth] = grown;
                info->repeat = true;
                s = e + 1;
                continue;
            }
            s++;
        } else if (*s == '*' || *s == '+' || *s == '?') {
            /* Loops add no states worth counting, but make the search quadratic. */
            info->repeat = true;
            s++;
            continue;
        } else if (*s == '|' || *s == '^' || *s == '$') {
            /* '|' adds both sides, which the sum does. */
            s++;
            continue;
        } else {
            s++;
        }
        sum[depth] += atom;
        if (sum[depth] > cap)
            sum[depth] = cap + 1;
        last[depth] = atom;
    }
    /* Unclosed groups: regcomp rejects them; count what was seen. */
    long total = 0;
    for (size_t i = 0; i <= depth; i++)
        total = total + sum[i] > cap ? cap + 1 : total + sum[i];
    info->weight = total;
}

/*
 * The prefix that turns a search for P into one anchored match of
 * ^(any byte)*(P). glibc's regexec retries an unanchored pattern at every
 * start position, which is quadratic in the text for patterns such as
 * "[a-z]+y"; the anchored form is one linear pass. '[^.]' also matches the
 * NUL bytes that '.' skips. Safe because P has balanced parentheses and no
 * back-references, so wrapping it changes neither its meaning nor its groups.
 */
#define LIKE_PREFIX "^(.|[^.])*("

/*
 * Short patterns without repeats keep glibc's own search: at most this many
 * steps per start position, and its first-byte skipping makes it about three
 * times faster than the anchored pass on ordinary text.
 */
#define LIKE_RAW_MAX_WEIGHT 8

/* Compiles fv->text as a case-insensitive POSIX ERE; see LIKE_PREFIX. */
static int like_compile(struct fvalue *fv, const char *name, struct query_error *err)
{
    struct like_info info;
    int rc;

    if (fv->len > QUERY_MAX_LIKE)
        return fail(err, QUERY_ERR_VALUE_TOO_LONG, name, "pattern longer than %d bytes",
                    QUERY_MAX_LIKE);
    like_scan(fv->text, QUERY_MAX_LIKE_WEIGHT, &info);
    if (info.backref)
        return fail(err, QUERY_ERR_BAD_REGEX, name, "back-references are not supported");
    if (info.weight > QUERY_MAX_LIKE_WEIGHT)
        return fail(err, QUERY_ERR_BAD_REGEX, name,
                    "pattern too large once repeats are expanded (limit %d)",
                    QUERY_MAX_LIKE_WEIGHT);

    /* The pattern as written: its errors are the ones to report. */
    regex_t *re = xmalloc(sizeof(*re));
    rc = regcomp(re, fv->text, REG_EXTENDED | REG_ICASE | REG_NOSUB);
    if (rc != 0) {
        char why[96];
        regerror(rc, re, why, sizeof(why));
        free(re);
        return fail(err, QUERY_ERR_BAD_REGEX, name, "invalid regular expression: %s", why);
    }
    if (info.unbalanced) {
        regfree(re);
        free(re);
        return fail(err, QUERY_ERR_BAD_REGEX, name, "unmatched ')': write \\) for a literal one");
    }
    if (info.repeat || info.weight > LIKE_RAW_MAX_WEIGHT) {
        char *wrapped = xasprintf(LIKE_PREFIX "%s)", fv->text);
        regfree(re);
        rc = regcomp(re, wrapped, REG_EXTENDED | REG_ICASE | REG_NOSUB);
        free(wrapped);
        if (rc != 0) {
            free(re);
            return fail(err, QUERY_ERR_BAD_REGEX, name, "pattern cannot be compiled");
        }
    }
    fv->re = re;
    return 0;
}

/* ---- matching ---- */

static bool scalar_eq(const struct fvalue *fv, const struct qv *v)
{
    switch (v->type) {
    case DOC_STRING:
        return v->len == fv->len && memcmp(v->s, fv->text, fv->len) == 0;
    case DOC_INT:
        return fv->eq_int && v->i == fv->eq_i;
    case DOC_REAL:
        return fv->eq_real && v->d == fv->eq_d && !signbit(v->d) == !signbit(fv->eq_d);
    case DOC_TRUE:
        return fv->lit == LIT_TRUE;
    case DOC_FALSE:
        return fv->lit == LIT_FALSE;
    case DOC_NULL:
        return fv->lit == LIT_NULL;
    default:
        return false;
    }
}

/* null only ever equals "null": ranges and patterns skip it, as json-server does. */
static bool scalar_range(const struct fvalue *fv, const struct qv *v, bool gte)
{
    int c;

    if (v->type == DOC_NULL)
        return false;
    if (qv_is_number(v) && fv->is_num) {
        struct num n;
        qv_num(v, &n);
        c = num_cmp(&n, &fv->num);
    } else {
        char buf[CANON_MAX];
        const char *s;
        size_t len;
        if (!scalar_text(v, buf, &s, &len))
            return false;
        c = bytes_cmp(s, len, fv->text, fv->len);
    }
    return gte ? c >= 0 : c <= 0;
}

static bool scalar_like(const struct fvalue *fv, const struct qv *v)
{
    char buf[CANON_MAX];
    const char *s;
    size_t len;

    if (v->type == DOC_NULL || !scalar_text(v, buf, &s, &len))
        return false;
    /* REG_STARTEND: strings may hold NUL bytes; match the whole length. */
    regmatch_t m = {.rm_so = 0, .rm_eo = (regoff_t)len};
    return regexec(fv->re, s, 1, &m, REG_STARTEND) == 0;
}

static bool scalar_test(enum op op, const struct fvalue *fv, const struct qv *v)
{
    switch (op) {
    case OP_EQ:
    case OP_NE:
        return scalar_eq(fv, v);
    case OP_GTE:
        return scalar_range(fv, v, true);
    case OP_LTE:
        return scalar_range(fv, v, false);
    case OP_LIKE:
        return scalar_like(fv, v);
    }
    panic("query: bad op %d", (int)op);
}

/* An array passes when one of its scalar elements does. */
static bool value_test(enum op op, const struct fvalue *fv, const struct qv *v)
{
    if (v->type != DOC_ARRAY)
        return scalar_test(op, fv, v);
    size_t n = json_array_size(v->j);
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(v->j, i);
        struct qv ev;
        if (json_is_array(e) || json_is_object(e))
            continue;
        qv_json(e, &ev);
        if (scalar_test(op, fv, &ev))
            return true;
    }
    return false;
}

/* A missing field (v NULL) fails every operator, _ne included (as json-server). */
static bool filter_test(const struct filter *f, const struct qv *v)
{
    if (v == NULL)
        return false;
    if (v->type != DOC_ARRAY && (f->op == OP_EQ || f->op == OP_NE)) {
        /* a scalar's _eq/_ne, the common filter, straight to scalar_eq (value_test would too) */
        bool eq = false;
        for (size_t i = 0; i < f->nvalues && !eq; i++)
            eq = scalar_eq(&f->values[i], v);
        return f->op == OP_EQ ? eq : !eq;
    }
    if (f->op == OP_NE) {
        for (size_t i = 0; i < f->nvalues; i++)
            if (value_test(OP_EQ, &f->values[i], v))
                return false;
        return true;
    }
    for (size_t i = 0; i < f->nvalues; i++)
        if (value_test(f->op, &f->values[i], v))
            return true;
    return false;
}

static bool filter_match(const struct filter *f, const json_t *doc)
{
    const json_t *v = path_get(&f->path, doc);
    struct qv x;

    if (v == NULL)
        return false;
    qv_json(v, &x);
    return filter_test(f, &x);
}

static inline unsigned char fold(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

/*
 * Whether 'hay' contains q's needle, ASCII case-insensitively: Knuth-Morris-
 * Pratt over folded bytes, so the cost is linear in 'n' whatever the text.
 */
static bool contains_fold(const struct query *q, const char *hay, size_t n)
{
    const unsigned char *h = (const unsigned char *)hay;
    const unsigned char *nd = (const unsigned char *)q->needle;
    size_t m = q->needle_len, k = 0;

    if (m > n)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = fold(h[i]);
        while (k > 0 && c != nd[k])
            k = q->needle_next[k - 1];
        if (c == nd[k] && ++k == m)
            return true;
    }
    return false;
}

/* KMP's table: needle_next[i] is the longest proper border of needle[0..i]. */
static void needle_prepare(struct query *q)
{
    const char *nd = q->needle;
    size_t k = 0;

    q->needle_next[0] = 0;
    for (size_t i = 1; i < q->needle_len; i++) {
        while (k > 0 && nd[i] != nd[k])
            k = q->needle_next[k - 1];
        if (nd[i] == nd[k])
            k++;
        q->needle_next[i] = (uint16_t)k;
    }
}

/* q: a string or number anywhere under 'v' (down to QUERY_MAX_DEPTH) contains the needle. */
static bool text_search(const struct query *q, const json_t *v, int depth)
{
    char buf[CANON_MAX];
    const char *s;
    size_t len;
    struct qv x;

    switch (json_typeof(v)) {
    case JSON_STRING:
    case JSON_INTEGER:
    case JSON_REAL:
        qv_json(v, &x);
        scalar_text(&x, buf, &s, &len);
        return contains_fold(q, s, len);
    case JSON_ARRAY: {
        if (depth >= QUERY_MAX_DEPTH)
            return false;
        size_t n = json_array_size(v);
        for (size_t i = 0; i < n; i++)
            if (text_search(q, json_array_get(v, i), depth + 1))
                return true;
        return false;
    }
    case JSON_OBJECT: {
        if (depth >= QUERY_MAX_DEPTH)
            return false;
        /* The iterator API takes a non-const object but only reads it. */
        json_t *obj = (json_t *)v;
        for (void *it = json_object_iter(obj); it != NULL; it = json_object_iter_next(obj, it))
            if (text_search(q, json_object_iter_value(it), depth + 1))
                return true;
        return false;
    }
    default:
        return false;
    }
}

bool query_match(const struct query *q, const json_t *doc)
{
    for (size_t i = 0; i < q->nfilters; i++)
        if (!filter_match(&q->filters[i], doc))
            return false;
    if (q->needle != NULL && !text_search(q, doc, 0))
        return false;
    return true;
}

/*
 * q's pre-filter over a stored doc's raw bytes: true only when no value of
 * the doc can contain the needle, so the doc is skipped unparsed. text_search
 * reads the canonical text of strings, integers and reals. In bytes without
 * a backslash a string's text is its raw bytes, and an integer's raw text is
 * its canonical decimal (or "-0", which contains "0"), so those are in the
 * bytes as text_search sees them. A real's raw text need not be its
 * canonical one (jansson writes 0.3 as 0.29999999999999999 and 1e21 as
 * 1e21; real_text gives "0.3" and "1e+21"): the bytes stand for reals only
 * when the needle has a byte no real's text has (needle_real false), or when
 * the bytes hold no real.
 */
static bool needle_absent(const struct query *q, const struct doc *d)
{
    if (memchr(d->bytes, '\\', d->len) != NULL)
        return false;
    if (q->needle_real) {
        /* a real's text has a digit followed by '.', 'e' or 'E' */
        for (size_t i = 1; i < d->len; i++) {
            char c = d->bytes[i];
            if ((c == '.' || c == 'e' || c == 'E') && d->bytes[i - 1] >= '0' &&
                d->bytes[i - 1] <= '9')
                return false;
        }
    }
    return !contains_fold(q, d->bytes, d->len);
}

/* One filter against a stored doc. */
static bool filter_doc(const struct filter *f, const struct doc *d)
{
    struct qv x;
    json_t *tree;
    bool found = doc_path(&f->path, d, &x, &tree);
    bool ok = filter_test(f, found ? &x : NULL);
    json_decref(tree);
    return ok;
}

/* One filter against cell 'cell' of a column (coll_column), 'd' its doc. */
static bool filter_cell(const struct filter *f, const struct coll_cell *cell, const struct doc *d)
{
    struct qv x;

    switch (cell->kind) {
    case COLL_CELL_MISSING:
        return filter_test(f, NULL);
    case COLL_CELL_SCALAR:
        x.type = (enum doc_type)cell->type;
        x.i = x.type == DOC_INT ? cell->v.i : 0;
        x.d = x.type == DOC_REAL ? cell->v.d : 0;
        x.s = x.type == DOC_STRING ? cell->v.s : NULL;
        x.len = x.type == DOC_STRING ? cell->len : 0;
        x.j = NULL;
        return filter_test(f, &x);
    default:
        return filter_doc(f, d);
    }
}

static bool needle_match(const struct query *q, const struct doc *d);

bool query_match_doc(const struct query *q, const struct doc *d)
{
    for (size_t i = 0; i < q->nfilters; i++)
        if (!filter_doc(&q->filters[i], d))
            return false;
    return needle_match(q, d);
}

/* The q= part of query_match_doc: true when there is none. */
static bool needle_match(const struct query *q, const struct doc *d)
{
    if (q->needle != NULL) {
        if (needle_absent(q, d))
            return false;
        /* full text: the whole doc, parsed (a doc that will not parse matches nothing) */
        json_t *tree = doc_parse(d);
        bool ok = tree != NULL && text_search(q, tree, 0);
        json_decref(tree);
        if (!ok)
            return false;
    }
    return true;
}

/* ---- sorting ---- */

/* missing is NULL; null < false < true < numbers < strings < arrays < objects < missing. */
static int type_rank(const struct qv *v)
{
    if (v == NULL)
        return 7;
    switch (v->type) {
    case DOC_NULL:
        return 0;
    case DOC_FALSE:
        return 1;
    case DOC_TRUE:
        return 2;
    case DOC_INT:
    case DOC_REAL:
        return 3;
    case DOC_STRING:
        return 4;
    case DOC_ARRAY:
        return 5;
    case DOC_OBJECT:
        return 6;
    }
    panic("query: bad value type");
}

/* A total preorder on values: see type_rank; arrays element by element; objects tie. */
static int value_cmp(const json_t *a, const json_t *b, int depth)
{
    struct qv xa, xb;
    if (a != NULL)
        qv_json(a, &xa);
    if (b != NULL)
        qv_json(b, &xb);
    int ra = type_rank(a != NULL ? &xa : NULL), rb = type_rank(b != NULL ? &xb : NULL);
    if (ra != rb)
        return ra < rb ? -1 : 1;
    switch (ra) {
    case 3: {
        struct num na, nb;
        qv_num(&xa, &na);
        qv_num(&xb, &nb);
        return num_cmp(&na, &nb);
    }
    case 4:
        return bytes_cmp(xa.s, xa.len, xb.s, xb.len);
    case 5: {
        if (depth >= QUERY_MAX_DEPTH)
            return 0;
        size_t na = json_array_size(a), nb = json_array_size(b);
        for (size_t i = 0; i < na && i < nb; i++) {
            int c = value_cmp(json_array_get(a, i), json_array_get(b, i), depth + 1);
            if (c != 0)
                return c;
        }
        return na < nb ? -1 : na > nb;
    }
    default:
        return 0;
    }
}

int query_compare(const struct query *q, const json_t *a, const json_t *b)
{
    for (size_t k = 0; k < q->nkeys; k++) {
        int c = value_cmp(path_get(&q->keys[k].path, a), path_get(&q->keys[k].path, b), 0);
        if (c != 0)
            return q->keys[k].desc ? -c : c;
    }
    return 0;
}

/*
 * A sort value resolved once per item, so that comparing two of them does not
 * go back into the documents (scattered in memory: a cache miss each) except
 * for the bytes of two strings or the elements of two arrays.
 */
struct skey {
    int rank;    /* type_rank */
    bool is_int; /* numbers */
    union {
        json_int_t i; /* integers */
        double d;     /* reals */
        size_t len;   /* strings */
    } u;
    const void *p;   /* string bytes, or the array */
    uint64_t prefix; /* strings: the first 8 bytes, big-endian, zero-padded */
};

/* One item's row in the sort: its index and its keys, stored inline. */
struct srow {
    size_t index;
    struct skey key[];
};

/* v NULL: missing. */
static void skey_init(struct skey *k, const struct qv *v)
{
    k->rank = type_rank(v);
    k->is_int = false;
    k->u.len = 0;
    k->p = NULL;
    k->prefix = 0;
    if (k->rank == 3) {
        k->is_int = v->type == DOC_INT;
        if (k->is_int)
            k->u.i = v->i;
        else
            k->u.d = v->d;
    } else if (k->rank == 4) {
        unsigned char pre[8] = {0};
        k->p = v->s;
        k->u.len = v->len;
        memcpy(pre, k->p, k->u.len < 8 ? k->u.len : 8);
        for (size_t i = 0; i < 8; i++)
            k->prefix = k->prefix << 8 | pre[i];
    } else if (k->rank == 5) {
        k->p = v->j;
    }
}

/* value_cmp over resolved keys. */
static int skey_cmp(const struct skey *a, const struct skey *b)
{
    if (a->rank != b->rank)
        return a->rank < b->rank ? -1 : 1;
    switch (a->rank) {
    case 3: {
        struct num na = {a->is_int, a->is_int ? a->u.i : 0, a->is_int ? 0 : a->u.d};
        struct num nb = {b->is_int, b->is_int ? b->u.i : 0, b->is_int ? 0 : b->u.d};
        return num_cmp(&na, &nb);
    }
    case 4:
        /* Most strings differ in their first 8 bytes or are no longer. */
        if (a->prefix != b->prefix)
            return a->prefix < b->prefix ? -1 : 1;
        if (a->u.len <= 8 && b->u.len <= 8)
            return a->u.len < b->u.len ? -1 : a->u.len > b->u.len;
        return bytes_cmp(a->p, a->u.len, b->p, b->u.len);
    case 5:
        return value_cmp(a->p, b->p, 0);
    default:
        return 0;
    }
}

static int row_cmp(const struct query *q, const struct srow *a, const struct srow *b)
{
    for (size_t k = 0; k < q->nkeys; k++) {
        int c = skey_cmp(&a->key[k], &b->key[k]);
        if (c != 0)
            return q->keys[k].desc ? -c : c;
    }
    return 0;
}

/* The stable order as a strict total order: equal keys keep their input order. */
static int row_cmp_total(const struct query *q, const struct srow *a, const struct srow *b)
{
    int c = row_cmp(q, a, b);
    if (c != 0)
        return c;
    return a->index < b->index ? -1 : a->index > b->index;
}

/* The sort's rows, and the trees that their keys point into (parsed parts of stored docs). */
struct rows {
    char *mem;
    size_t stride, n;
    json_t **trees;
    size_t ntrees, cap;
};

#define ROW(r, i) ((struct srow *)((r)->mem + (i) * (r)->stride))

static void rows_init(struct rows *r, const struct query *q, size_t n)
{
    r->stride = sizeof(struct srow) + q->nkeys * sizeof(struct skey);
    if (n > SIZE_MAX / 2 / r->stride)
        panic("query_sort: %zu items", n);
    r->mem = xmalloc((n ? n : 1) * r->stride);
    r->n = n;
    r->trees = NULL;
    r->ntrees = r->cap = 0;
}

static void rows_keep(struct rows *r, json_t *tree)
{
    if (tree == NULL)
        return;
    if (r->ntrees == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 16;
        r->trees = xrealloc(r->trees, r->cap * sizeof(*r->trees));
    }
    r->trees[r->ntrees++] = tree;
}

static void rows_cleanup(struct rows *r)
{
    for (size_t i = 0; i < r->ntrees; i++)
        json_decref(r->trees[i]);
    free(r->trees);
    free(r->mem);
}

static void rows_fill_json(const struct query *q, struct rows *r, const struct query_item *items)
{
    for (size_t i = 0; i < r->n; i++) {
        struct srow *row = ROW(r, i);
        row->index = i;
        for (size_t k = 0; k < q->nkeys; k++) {
            const json_t *v = path_get(&q->keys[k].path, items[i].doc);
            struct qv x;
            if (v != NULL)
                qv_json(v, &x);
            skey_init(&row->key[k], v != NULL ? &x : NULL);
        }
    }
}

static void rows_fill_docs(const struct query *q, struct rows *r, const struct doc *const *docs)
{
    for (size_t i = 0; i < r->n; i++) {
        struct srow *row = ROW(r, i);
        row->index = i;
        for (size_t k = 0; k < q->nkeys; k++) {
            struct qv x;
            json_t *tree;
            bool found = doc_path(&q->keys[k].path, docs[i], &x, &tree);
            skey_init(&row->key[k], found ? &x : NULL);
            rows_keep(r, tree); /* the key may point into it */
        }
    }
}

/*
 * Bottom-up merge sort of rows that carry their keys inline (sequential
 * memory traffic, no pointer chasing); stable because a tie takes the left
 * run first. Writes the sorted input indexes to 'order' (n entries).
 */
static void rows_sort(const struct query *q, struct rows *r, size_t *order)
{
    size_t n = r->n, stride = r->stride;
    char *tmp = xmalloc((n ? n : 1) * stride);
    char *src = r->mem, *dst = tmp;

    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n;
            size_t hi = mid + width < n ? mid + width : n;
            size_t i = lo, j = mid, o = lo;
            while (i < mid && j < hi) {
                const struct srow *ri = (const struct srow *)(src + i * stride);
                const struct srow *rj = (const struct srow *)(src + j * stride);
                if (row_cmp(q, rj, ri) < 0)
                    memcpy(dst + o++ * stride, rj, stride), j++;
                else
                    memcpy(dst + o++ * stride, ri, stride), i++;
            }
            memcpy(dst + o * stride, src + i * stride, (mid - i) * stride);
            o += mid - i;
            memcpy(dst + o * stride, src + j * stride, (hi - j) * stride);
        }
        char *t = src;
        src = dst;
        dst = t;
        if (width > SIZE_MAX / 4)
            break;
    }
    for (size_t i = 0; i < n; i++)
        order[i] = ((const struct srow *)(src + i * stride))->index;
    free(tmp);
}

static void heap_sift_down(const struct query *q, const struct srow **h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, top = i;
        if (l < n && row_cmp_total(q, h[l], h[top]) > 0)
            top = l;
        if (r < n && row_cmp_total(q, h[r], h[top]) > 0)
            top = r;
        if (top == i)
            return;
        const struct srow *t = h[i];
        h[i] = h[top];
        h[top] = t;
        i = top;
    }
}

/*
 * The first k (< n) rows of the stable order, into order[0..k): a bounded
 * max-heap of the k best under row_cmp_total (the stable order itself, ties
 * broken by input position), so the result equals the merge sort's first k.
 * O(n log k) and k pointers of memory.
 */
static void rows_top(const struct query *q, struct rows *r, size_t k, size_t *order)
{
    const struct srow **h = xmalloc((k ? k : 1) * sizeof(*h));
    size_t m = 0;

    for (size_t i = 0; i < r->n && k > 0; i++) {
        const struct srow *row = ROW(r, i);
        if (m < k) {
            /* sift up */
            size_t c = m++;
            h[c] = row;
            while (c > 0 && row_cmp_total(q, h[(c - 1) / 2], h[c]) < 0) {
                const struct srow *t = h[c];
                h[c] = h[(c - 1) / 2];
                h[(c - 1) / 2] = t;
                c = (c - 1) / 2;
            }
        } else if (row_cmp_total(q, row, h[0]) < 0) {
            h[0] = row;
            heap_sift_down(q, h, m, 0);
        }
    }
    /* pop the largest to the back: ascending order */
    while (m > 0) {
        order[m - 1] = h[0]->index;
        h[0] = h[--m];
        heap_sift_down(q, h, m, 0);
    }
    free(h);
}

/*
 * Orders rows: the whole stable sort, or only its first 'need' rows when
 * that is fewer. Writes min(n, need) input indexes to 'order'.
 */
static void rows_order(const struct query *q, struct rows *r, size_t need, size_t *order)
{
    if (need < r->n)
        rows_top(q, r, need, order);
    else
        rows_sort(q, r, order);
}

void query_sort(const struct query *q, struct query_item *items, size_t n)
{
    if (q->nkeys == 0 || n < 2)
        return;
    struct rows r;
    rows_init(&r, q, n);
    rows_fill_json(q, &r, items);
    size_t *order = xmalloc(n * sizeof(*order));
    rows_sort(q, &r, order);
    struct query_item *copy = xmalloc(n * sizeof(*copy));
    memcpy(copy, items, n * sizeof(*copy));
    for (size_t i = 0; i < n; i++)
        items[i] = copy[order[i]];
    free(copy);
    free(order);
    rows_cleanup(&r);
}

/* ---- slicing and links ---- */

static uint64_t page_size(const struct query *q)
{
    return q->has_limit ? q->limit : QUERY_DEFAULT_LIMIT;
}

void query_slice(const struct query *q, size_t total, size_t *from, size_t *to)
{
    uint64_t f = 0, t = total;

    if (q->has_page) {
        f = (q->page - 1) * page_size(q);
        t = f + page_size(q);
    } else if (q->has_end) {
        f = q->has_start ? q->start : 0;
        t = q->end;
    } else if (q->has_limit) {
        f = q->has_start ? q->start : 0;
        t = f + q->limit;
    } else if (q->has_start) {
        f = q->start;
    }
    if (f > total)
        f = total;
    if (t > total)
        t = total;
    if (t < f)
        t = f;
    *from = (size_t)f;
    *to = (size_t)t;
}

/*
 * Puts the first 'need' of the r->n elements of 'elems' (each 'size' bytes,
 * the rows filled from them in order) into their final sorted order; the rest
 * are left as they are (only elems[0 .. need) are sent). Frees the rows.
 */
static void order_prefix(const struct query *q, struct rows *r, void *elems, size_t size,
                         size_t need)
{
    size_t m = need < r->n ? need : r->n;
    size_t *order = xmalloc(m * sizeof(*order));
    char *sel = xmalloc(m * size);

    rows_order(q, r, need, order);
    for (size_t i = 0; i < m; i++)
        memcpy(sel + i * size, (const char *)elems + order[i] * size, size);
    memcpy(elems, sel, m * size);
    free(sel);
    free(order);
    rows_cleanup(r);
}

size_t query_apply(const struct query *q, struct query_item *items, size_t n, size_t *from,
                   size_t *to)
{
    size_t kept = n;

    if (query_has_filter(q)) {
        kept = 0;
        for (size_t i = 0; i < n; i++)
            if (query_match(q, items[i].doc))
                items[kept++] = items[i];
    }
    query_slice(q, kept, from, to);
    if (q->nkeys > 0 && kept >= 2 && *to > 0) {
        struct rows r;
        rows_init(&r, q, kept);
        rows_fill_json(q, &r, items);
        order_prefix(q, &r, items, sizeof(*items), *to);
    }
    return kept;
}

size_t query_apply_docs(const struct query *q, const struct doc **docs, size_t n, size_t *from,
                        size_t *to)
{
    return query_apply_coll(q, NULL, docs, n, from, to);
}

size_t query_apply_coll(const struct query *q, const struct coll *c, const struct doc **docs,
                        size_t n, size_t *from, size_t *to)
{
    size_t kept = n;

    if (query_has_filter(q)) {
        /* a filter on one top-level member reads its column when the collection has one */
        const struct coll_cell **cols = xcalloc(q->nfilters ? q->nfilters : 1, sizeof(*cols));
        if (c != NULL && n != coll_count(c))
            panic("query_apply_coll: %zu docs for a collection of %zu", n, coll_count(c));
        for (size_t f = 0; c != NULL && f < q->nfilters; f++) {
            /* one segment: doc_path() reads the member by name, as the cells do */
            const struct path *p = &q->filters[f].path;
            if (p->nseg == 1)
                cols[f] = coll_column(c, p->seg[0].key, p->seg[0].len);
        }
        kept = 0;
        for (size_t i = 0; i < n; i++) {
            bool ok = true;
            for (size_t f = 0; ok && f < q->nfilters; f++)
                ok = cols[f] != NULL ? filter_cell(&q->filters[f], &cols[f][i], docs[i])
                                     : filter_doc(&q->filters[f], docs[i]);
            if (ok && needle_match(q, docs[i]))
                docs[kept++] = docs[i];
        }
        free(cols);
    }
    query_slice(q, kept, from, to);
    if (q->nkeys > 0 && kept >= 2 && *to > 0) {
        struct rows r;
        rows_init(&r, q, kept);
        rows_fill_docs(q, &r, docs);
        order_prefix(q, &r, docs, sizeof(*docs), *to);
    }
    return kept;
}

/* Percent-encodes all but RFC 3986 unreserved bytes and those in 'keep'. 0 or -E2BIG. */
static int put_encoded(struct buf *b, const char *s, const char *keep)
{
    static const char hex[] = "0123456789ABCDEF";
    int rc = 0;

    for (; *s != '\0' && rc == 0; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~' || strchr(keep, c) != NULL) {
            rc = buf_append(b, s, 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            rc = buf_append(b, e, 3);
        }
    }
    return rc;
}

/*
 * Appends '<path?params with _page=page>; rel="rel"', after ", " unless it is
 * the first. 0 or -E2BIG (the buf's limit).
 */
static int put_link(struct buf *b, const char *path, const struct query_param *params, size_t n,
                    uint64_t page, const char *rel)
{
    int rc = buf_puts(b, b->len > 0 ? ", <" : "<");
    if (rc == 0)
        rc = put_encoded(b, path, "/");
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *name = params[i].name != NULL ? params[i].name : "";
        rc = buf_puts(b, i == 0 ? "?" : "&");
        if (rc == 0)
            rc = put_encoded(b, name, ",:@/");
        if (rc != 0)
            break;
        if (strcmp(name, "_page") == 0) {
            rc = buf_printf(b, "=%" PRIu64, page);
        } else if (params[i].value != NULL) {
            rc = buf_puts(b, "=");
            if (rc == 0)
                rc = put_encoded(b, params[i].value, ",:@/");
        }
    }
    if (rc == 0)
        rc = buf_printf(b, ">; rel=\"%s\"", rel);
    return rc;
}

/*
 * json-server's utils.getPage: no links for an empty page; prev when past page
 * 1; next when more follow; first and last unless the page holds everything.
 */
char *query_link(const struct query *q, const char *path, const struct query_param *params,
                 size_t n, size_t total)
{
    if (!q->has_page)
        return NULL;
    uint64_t limit = page_size(q);
    uint64_t start = (q->page - 1) * limit, end = q->page * limit;
    if (start >= total || (start == 0 && end >= total))
        return NULL;

    struct buf b;
    const char *p = path != NULL ? path : "";
    int rc;
    buf_init(&b, QUERY_MAX_LINK);
    rc = put_link(&b, p, params, n, 1, "first");
    if (rc == 0 && q->page > 1)
        rc = put_link(&b, p, params, n, q->page - 1, "prev");
    if (rc == 0 && end < total)
        rc = put_link(&b, p, params, n, q->page + 1, "next");
    if (rc == 0)
        rc = put_link(&b, p, params, n, (total + limit - 1) / limit, "last");
    if (rc != 0) {
        /* A header that large helps no one: leave it out. */
        buf_cleanup(&b);
        return NULL;
    }
    return buf_steal(&b, NULL);
}

/* ---- parsing ---- */

bool query_has_filter(const struct query *q)
{
    return q->nfilters > 0 || q->needle != NULL;
}

bool query_has_sort(const struct query *q)
{
    return q->nkeys > 0;
}

bool query_has_slice(const struct query *q)
{
    return q->has_page || q->has_limit || q->has_start || q->has_end;
}

bool query_has_page(const struct query *q)
{
    return q->has_page;
}

static void filter_cleanup(struct filter *f)
{
    for (size_t i = 0; i < f->nvalues; i++) {
        if (f->values[i].re != NULL) {
            regfree(f->values[i].re);
            free(f->values[i].re);
        }
        free(f->values[i].text);
    }
    free(f->values);
    path_cleanup(&f->path);
    free(f->name);
}

void query_free(struct query *q)
{
    if (q == NULL)
        return;
    for (size_t i = 0; i < q->nfilters; i++)
        filter_cleanup(&q->filters[i]);
    free(q->filters);
    for (size_t k = 0; k < q->nkeys; k++)
        path_cleanup(&q->keys[k].path);
    free(q->needle);
    free(q);
}

static bool has_suffix(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len > n && memcmp(s + len - n, suffix, n) == 0;
}

static int path_fail(int rc, struct query_error *err, const char *name)
{
    if (rc == -E2BIG)
        return fail(err, QUERY_ERR_BAD_PATH, name, "path has more than %d segments",
                    QUERY_MAX_PATH_SEGMENTS);
    return fail(err, QUERY_ERR_BAD_PATH, name, "empty path segment");
}

/* Adds one value of a field filter, grouping it with earlier ones of the same name. */
static int add_filter(struct query *q, const char *name, size_t nlen, const char *value,
                      size_t vlen, struct query_error *err)
{
    struct filter *f = NULL;
    int rc;

    for (size_t i = 0; i < q->nfilters; i++)
        if (strcmp(q->filters[i].name, name) == 0)
            f = &q->filters[i];
    if (f == NULL) {
        /* q->filters has room for QUERY_MAX_PARAMS entries. */
        f = &q->filters[q->nfilters++];
        memset(f, 0, sizeof(*f));
        f->name = xstrndup(name, nlen);
        size_t plen = nlen;
        if (has_suffix(name, nlen, "_gte"))
            f->op = OP_GTE, plen -= 4;
        else if (has_suffix(name, nlen, "_lte"))
            f->op = OP_LTE, plen -= 4;
        else if (has_suffix(name, nlen, "_ne"))
            f->op = OP_NE, plen -= 3;
        else if (has_suffix(name, nlen, "_like"))
            f->op = OP_LIKE, plen -= 5;
        else
            f->op = OP_EQ;
        rc = path_parse(&f->path, name, plen);
        if (rc != 0)
            return path_fail(rc, err, name);
    }

    f->values = xrealloc(f->values, (f->nvalues + 1) * sizeof(*f->values));
    struct fvalue *fv = &f->values[f->nvalues++];
    memset(fv, 0, sizeof(*fv));
    fv->text = xstrndup(value, vlen);
    fv->len = vlen;
    classify(fv);
    if (f->op == OP_LIKE)
        return like_compile(fv, name, err);
    return 0;
}

/* _sort=a,b.c and _order=asc,desc (entries may be empty: asc). */
static int parse_sort(struct query *q, const char *sort, const char *order, struct query_error *err)
{
    const char *s = sort;
    int rc;

    for (;;) {
        size_t len = strcspn(s, ",");
        if (len == 0)
            return fail(err, QUERY_ERR_BAD_SORT, "_sort", "empty sort key");
        if (q->nkeys == QUERY_MAX_SORT_KEYS)
            return fail(err, QUERY_ERR_BAD_SORT, "_sort", "more than %d sort keys",
                        QUERY_MAX_SORT_KEYS);
        struct sort_key *k = &q->keys[q->nkeys++];
        k->desc = false;
        rc = path_parse(&k->path, s, len);
        if (rc != 0)
            return path_fail(rc, err, "_sort");
        if (s[len] == '\0')
            break;
        s += len + 1;
    }
    if (order == NULL)
        return 0;

    s = order;
    for (size_t i = 0;; i++) {
        size_t len = strcspn(s, ",");
        if (i == q->nkeys)
            return fail(err, QUERY_ERR_BAD_SORT, "_order", "more _order entries than _sort keys");
        if (len == 4 && strncasecmp(s, "desc", 4) == 0)
            q->keys[i].desc = true;
        else if (!(len == 0 || (len == 3 && strncasecmp(s, "asc", 3) == 0)))
            return fail(err, QUERY_ERR_BAD_SORT, "_order", "entries must be asc or desc");
        if (s[len] == '\0')
            break;
        s += len + 1;
    }
    return 0;
}

static int parse_count(const char *name, const char *value, int64_t min, int64_t max, uint64_t *out,
                       struct query_error *err)
{
    int64_t v;
    if (parse_i64(value, min, max, &v) != 0)
        return fail(err, QUERY_ERR_BAD_NUMBER, name,
                    "must be an integer from %" PRId64 " to %" PRId64, min, max);
    *out = (uint64_t)v;
    return 0;
}

/* The parameters that are not field filters; each may appear once. */
enum ctl { CTL_Q, CTL_SORT, CTL_ORDER, CTL_PAGE, CTL_LIMIT, CTL_START, CTL_END, CTL_COUNT };

static const char *const ctl_names[CTL_COUNT] = {
    [CTL_Q] = "q",          [CTL_SORT] = "_sort",   [CTL_ORDER] = "_order", [CTL_PAGE] = "_page",
    [CTL_LIMIT] = "_limit", [CTL_START] = "_start", [CTL_END] = "_end",
};

/* Interprets the control values gathered by query_parse (NULL: absent). */
static int parse_controls(struct query *q, const char *const *ctl, struct query_error *err)
{
    static const struct {
        enum ctl which;
        int64_t min, max;
    } counts[] = {
        {CTL_PAGE, 1, QUERY_MAX_OFFSET},
        {CTL_LIMIT, 0, QUERY_MAX_LIMIT},
        {CTL_START, 0, QUERY_MAX_OFFSET},
        {CTL_END, 0, QUERY_MAX_OFFSET},
    };
    uint64_t *dst[CTL_COUNT] = {
        [CTL_PAGE] = &q->page,
        [CTL_LIMIT] = &q->limit,
        [CTL_START] = &q->start,
        [CTL_END] = &q->end,
    };
    int rc;

    for (size_t i = 0; i < ARRAY_LEN(counts); i++) {
        const char *v = ctl[counts[i].which];
        if (v == NULL)
            continue;
        rc = parse_count(ctl_names[counts[i].which], v, counts[i].min, counts[i].max,
                         dst[counts[i].which], err);
        if (rc != 0)
            return rc;
    }
    q->has_page = ctl[CTL_PAGE] != NULL;
    q->has_limit = ctl[CTL_LIMIT] != NULL;
    q->has_start = ctl[CTL_START] != NULL;
    q->has_end = ctl[CTL_END] != NULL;

    if (q->has_page && (q->has_start || q->has_end))
        return fail(err, QUERY_ERR_CONFLICT, "_page", "cannot be combined with %s",
                    q->has_start ? "_start" : "_end");
    if (q->has_page && q->has_limit && q->limit == 0)
        return fail(err, QUERY_ERR_BAD_NUMBER, "_limit", "must be at least 1 with _page");
    if (q->has_end && q->has_limit)
        return fail(err, QUERY_ERR_CONFLICT, "_end", "cannot be combined with _limit");

    if (ctl[CTL_ORDER] != NULL && ctl[CTL_SORT] == NULL)
        return fail(err, QUERY_ERR_CONFLICT, "_order", "given without _sort");
    if (ctl[CTL_SORT] != NULL) {
        rc = parse_sort(q, ctl[CTL_SORT], ctl[CTL_ORDER], err);
        if (rc != 0)
            return rc;
    }

    const char *text = ctl[CTL_Q];
    if (text != NULL && text[0] != '\0') {
        size_t len = strlen(text);
        if (len > QUERY_MAX_Q)
            return fail(err, QUERY_ERR_VALUE_TOO_LONG, "q", "longer than %d bytes", QUERY_MAX_Q);
        q->needle = xstrndup(text, len);
        q->needle_len = len;
        for (size_t j = 0; j < len; j++)
            q->needle[j] = (char)fold((unsigned char)q->needle[j]);
        q->needle_real = strspn(q->needle, "0123456789+-.e") == len;
        needle_prepare(q);
    }
    return 0;
}

int query_parse(const struct query_param *params, size_t n, struct query **out,
                struct query_error *err)
{
    const char *ctl[CTL_COUNT] = {NULL};
    struct query *q = NULL;
    int rc;

    *out = NULL;
    err->code = QUERY_OK;
    err->param[0] = err->message[0] = '\0';
    if (n > QUERY_MAX_PARAMS) {
        rc = fail(err, QUERY_ERR_TOO_MANY, NULL, "more than %d query parameters", QUERY_MAX_PARAMS);
        goto out_fail;
    }

    q = xcalloc(1, sizeof(*q));
    q->filters = xcalloc(n, sizeof(*q->filters));

    for (size_t i = 0; i < n; i++) {
        const char *name = params[i].name;
        const char *value = params[i].value != NULL ? params[i].value : "";
        size_t nlen = name != NULL ? strnlen(name, QUERY_MAX_NAME + 1) : 0;
        size_t vlen = strnlen(value, QUERY_MAX_VALUE + 1);

        if (nlen == 0) {
            rc = fail(err, QUERY_ERR_EMPTY_NAME, NULL, "empty query parameter name");
            goto out_fail;
        }
        if (nlen > QUERY_MAX_NAME) {
            rc = fail(err, QUERY_ERR_NAME_TOO_LONG, name, "name longer than %d bytes",
                      QUERY_MAX_NAME);
            goto out_fail;
        }
        if (vlen > QUERY_MAX_VALUE) {
            rc = fail(err, QUERY_ERR_VALUE_TOO_LONG, name, "value longer than %d bytes",
                      QUERY_MAX_VALUE);
            goto out_fail;
        }
        if (strcmp(name, "_") == 0)
            continue; /* jQuery's cache buster; json-server ignores it too */

        size_t c = 0;
        while (c < CTL_COUNT && strcmp(name, ctl_names[c]) != 0)
            c++;
        if (c < CTL_COUNT) {
            if (ctl[c] != NULL) {
                rc = fail(err, QUERY_ERR_REPEATED, name, "given more than once");
                goto out_fail;
            }
            ctl[c] = value;
            continue;
        }
        if (name[0] == '_') {
            rc = fail(err, QUERY_ERR_UNSUPPORTED, name, "not supported");
            goto out_fail;
        }
        rc = add_filter(q, name, nlen, value, vlen, err);
        if (rc != 0)
            goto out_fail;
    }

    rc = parse_controls(q, ctl, err);
    if (rc != 0)
        goto out_fail;
    *out = q;
    return 0;

out_fail:
    query_free(q);
    return rc;
}
