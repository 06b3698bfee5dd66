/*
 * src/query.h -- the json-server 0.17 list query dialect over jansson values and stored docs
 * (query.c).
 *
 * A pure library: no I/O, no locks, no globals. query_parse turns the decoded
 * query parameters of one request into a 'struct query' (all regexes compiled,
 * paths split, numbers parsed); the list handler then filters, sorts and slices
 * the documents of one snapshot with it. docs/QUERY.md is the dialect reference.
 *
 * Documents are only ever read (they are shared, immutable snapshot values read
 * by many threads at once). A 'struct query' belongs to one request and one
 * thread; query_match and query_compare do not allocate (glibc's regexec,
 * used by _like, grows a small state cache inside the compiled pattern).
 */
#ifndef CAIRN_QUERY_H
#define CAIRN_QUERY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Input limits; anything beyond them is a 400, never truncated. */
#define QUERY_MAX_PARAMS 64         /* (name, value) pairs per request */
#define QUERY_MAX_NAME 256          /* bytes in a parameter name */
#define QUERY_MAX_VALUE 4096        /* bytes in a parameter value */
#define QUERY_MAX_LIKE 256          /* bytes in a _like pattern */
#define QUERY_MAX_LIKE_WEIGHT 256   /* pattern size with {m,n} repeats expanded */
#define QUERY_MAX_Q 256             /* bytes in the q full-text needle */
#define QUERY_MAX_PATH_SEGMENTS 16  /* segments in a dotted path */
#define QUERY_MAX_SORT_KEYS 8       /* keys in _sort */
#define QUERY_MAX_LIMIT 10000       /* largest _limit */
#define QUERY_DEFAULT_LIMIT 10      /* page size for _page without _limit */
#define QUERY_MAX_OFFSET 1000000000 /* largest _page, _start, _end */
#define QUERY_MAX_DEPTH 64          /* nesting searched by q and compared by _sort */
#define QUERY_MAX_LINK 16384        /* bytes in a Link value; longer ones are left out */

enum query_errc {
    QUERY_OK = 0,
    QUERY_ERR_TOO_MANY,       /* more than QUERY_MAX_PARAMS pairs */
    QUERY_ERR_EMPTY_NAME,     /* "=x" or a NULL name */
    QUERY_ERR_NAME_TOO_LONG,  /* name longer than QUERY_MAX_NAME */
    QUERY_ERR_VALUE_TOO_LONG, /* value (or _like pattern, or q) over its limit */
    QUERY_ERR_UNSUPPORTED,    /* a '_' parameter we do not implement (_embed, _foo) */
    QUERY_ERR_REPEATED,       /* q, _sort, _order, _page, _limit, _start, _end given twice */
    QUERY_ERR_BAD_NUMBER,     /* _page/_limit/_start/_end not an integer in range */
    QUERY_ERR_BAD_PATH,       /* empty path segment, too many segments */
    QUERY_ERR_BAD_REGEX,      /* regcomp failed, back-reference, or too heavy */
    QUERY_ERR_BAD_SORT,       /* empty _sort key, too many keys, bad _order */
    QUERY_ERR_CONFLICT,       /* _order without _sort, _page with _start/_end, ... */
};

/* One decoded query parameter, in request order. A NULL value means "name" with no '='. */
struct query_param {
    const char *name;
    const char *value;
};

/*
 * Why query_parse failed. 'message' is short, names the parameter, and is
 * printable ASCII (other bytes of the name become '?'), ready for a problem+json
 * "detail" (still JSON-escape it). 'param' is the same sanitized, possibly
 * truncated name.
 */
struct query_error {
    enum query_errc code;
    char param[72];
    char message[256];
};

struct doc; /* store/doc.h: a stored document, its bytes and its member index */

/* A list entry: the document and the caller's own record for it (say, prepared bytes). */
struct query_item {
    const json_t *doc;
    const void *ref;
};

struct query; /* opaque, per request */

/*
 * Parses the parameters. Returns 0 and sets *out (free with query_free), or
 * -EINVAL with *out = NULL and 'err' filled in. Borrowed: 'params' is only read
 * during the call; nothing of it is kept.
 */
int query_parse(const struct query_param *params, size_t n, struct query **out,
                struct query_error *err);
void query_free(struct query *q);

/* True when a field filter or a non-empty q is present. */
bool query_has_filter(const struct query *q);
/* True when _sort is present. */
bool query_has_sort(const struct query *q);
/* True when _page, _limit, _start or _end is present (X-Total-Count in json-server). */
bool query_has_slice(const struct query *q);
/* True when _page is present: a Link header is due (see query_link). */
bool query_has_page(const struct query *q);

/* Whether 'doc' passes every filter and q. Borrowed 'doc', read only. Linear in its size. */
bool query_match(const struct query *q, const json_t *doc);

/*
 * query_match over a stored doc, with the same result as over its parsed
 * bytes. The fast path: a filter on a top-level scalar member reads the doc's
 * member index (no parse, no allocation); a nested path, an array or object
 * member or an escaped string parses just that member, and q parses the doc.
 */
bool query_match_doc(const struct query *q, const struct doc *d);

/*
 * Orders two documents by the _sort keys: <0, 0 or >0. Without _sort every
 * pair compares equal. No allocation.
 */
int query_compare(const struct query *q, const json_t *a, const json_t *b);

/*
 * Stable sort of 'items' by the _sort keys (ties keep their order). A no-op
 * without _sort. Allocates O(n) scratch once per call.
 */
void query_sort(const struct query *q, struct query_item *items, size_t n);

/*
 * The slice [*from, *to) of 'total' filtered, sorted items that the reply
 * carries (_page/_limit, _start/_end, _start/_limit; everything otherwise).
 * Always 0 <= *from <= *to <= total.
 */
void query_slice(const struct query *q, size_t total, size_t *from, size_t *to);

/*
 * The whole pipeline over 'items' (in insertion order): drops the items that
 * do not match (compacting the array in place, order kept), orders the rest
 * and computes the slice. Returns the match count, the X-Total-Count value;
 * the reply is items[*from .. *to), in the stable sort's order. Only
 * items[0 .. *to) are ordered: when that is fewer than the matches, a bounded
 * top-k selection replaces the full sort (same order, ties included).
 */
size_t query_apply(const struct query *q, struct query_item *items, size_t n, size_t *from,
                   size_t *to);

/* query_apply over stored docs (query_match_doc; sort keys from the member index). */
size_t query_apply_docs(const struct query *q, const struct doc **docs, size_t n, size_t *from,
                        size_t *to);

struct coll;
/*
 * query_apply_docs over docs[0..n) that are collection 'c''s docs in
 * insertion order (docs[k] is coll_docs(c)[k]): a filter on one top-level
 * member reads coll_column(c, ...) instead of each doc where the column has
 * the value (the same value doc_path() would read). Same results.
 */
size_t query_apply_coll(const struct query *q, const struct coll *c, const struct doc **docs,
                        size_t n, size_t *from, size_t *to);

/*
 * The Link header value for a _page request, as json-server 0.17 builds it
 * (first, prev, next, last as applicable) but with relative URLs:
 * '</v1/posts?_page=1&_limit=10>; rel="first", ...'. 'path' is the decoded
 * public path without the query; 'params' are the same pairs given to
 * query_parse, re-encoded in their order with only _page changed. 'total' is
 * the match count. New heap string (free() it), or NULL when no Link is due
 * or it would exceed QUERY_MAX_LINK bytes.
 */
char *query_link(const struct query *q, const char *path, const struct query_param *params,
                 size_t n, size_t total);

/* A stable name for an error code ("bad-number"), for logs and problem types. */
const char *query_errc_name(enum query_errc code);

#endif
