/*
 * tests/unit/test_query.c -- the list query dialect (src/query.c).
 *
 * Cases are data: a raw query string (split on '&' and the first '=', then
 * %XX-decoded; a piece without '=' has a NULL value; "{text*N}" expands to N
 * copies of text, for limit tests), run over the fixed documents below, with
 * the expected ids of the reply slice in order, the X-Total-Count, or the
 * expected error code. Prints "ok - name" / "not ok - name" per case and
 * "N passed, N failed"; exits 1 on any failure.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "query.h"
#include "store/coll.h"
#include "store/doc.h"
#include "util.h"

/*
 * Six posts covering the coercions: views is an integer, the string "100", a
 * real 100.0; published is a boolean or the string "true"; author is an
 * object or null; tags an array, empty, mixed or missing; one literal "a.b"
 * key; a string with a NUL byte; a real 1e20.
 */
static const char docs_json[] =
    "["
    "{\"id\":1,\"title\":\"Hello World\",\"views\":100,\"published\":true,"
    " \"author\":{\"name\":\"Alice\",\"age\":30},\"tags\":[\"c\",\"json\"],\"rating\":4.5,"
    " \"note\":null},"
    "{\"id\":2,\"title\":\"json-server tips\",\"views\":\"100\",\"published\":false,"
    " \"author\":{\"name\":\"bob\",\"age\":25},\"tags\":[\"json\"],\"rating\":3},"
    "{\"id\":3,\"title\":\"Caf\\u00e9 notes\",\"views\":7,\"published\":true,"
    " \"author\":{\"name\":\"Carol\"},\"tags\":[],\"rating\":0.1,\"note\":\"see HELLO\"},"
    "{\"id\":4,\"title\":\"Sorting\",\"views\":100.0,\"published\":true,"
    " \"author\":{\"name\":\"alice\",\"age\":41},\"rating\":4.5,\"a.b\":\"literal\"},"
    "{\"id\":5,\"title\":\"Deep\",\"views\":2500,\"author\":{\"name\":\"Dan\",\"age\":30},"
    " \"meta\":{\"x\":{\"y\":[1,{\"z\":\"needle in hay\"}]}},\"rating\":-1,"
    " \"a\":{\"b\":\"walked\"}},"
    "{\"id\":6,\"title\":\"nul\\u0000byte\",\"views\":9,\"published\":\"true\",\"author\":null,"
    " \"tags\":[\"C\",10],\"rating\":1e20}"
    "]";

struct qcase {
    const char *name;
    const char *query;
    const char *ids; /* expected ids of the slice, comma-separated ("" = none) */
    long total;      /* expected X-Total-Count; -1: not checked */
    enum query_errc err;
    const char *msg; /* when err: a substring the message must contain (or NULL) */
};

// clang-format off
#define OK(n, qs, ids, total) {n, qs, ids, total, QUERY_OK, NULL}
#define ERR(n, qs, code, msg) {n, qs, NULL, -1, code, msg}
// clang-format on

static const struct qcase cases[] = {
    /* no query */
    OK("empty query returns all in insertion order", "", "1,2,3,4,5,6", 6),
    OK("jquery cache buster _ is ignored", "_=1699999999", "1,2,3,4,5,6", 6),

    /* equality and its coercions */
    OK("eq integer matches integer, string and real 100.0", "views=100", "1,2,4", 3),
    OK("eq repeated field is OR", "views=7&views=9", "3,6", 2),
    OK("eq different fields are AND", "views=100&published=true", "1,4", 2),
    OK("eq true matches boolean and string", "published=true", "1,3,4,6", 4),
    OK("eq false matches boolean false", "published=false", "2", 1),
    OK("eq is case-sensitive", "author.name=Alice", "1", 1),
    OK("eq dotted path", "author.age=30", "1,5", 2),
    OK("eq deep path through array index", "meta.x.y.1.z=needle%20in%20hay", "5", 1),
    OK("eq numeric path segment indexes arrays", "tags.0=c", "1", 1),
    OK("eq literal dotted key wins over walk", "a.b=literal", "4", 1),
    OK("eq dotted walk when no literal key", "a.b=walked", "5", 1),
    OK("eq array means any element", "tags=json", "1,2", 2),
    OK("eq array integer element", "tags=10", "6", 1),
    OK("eq null literal matches null", "note=null", "1", 1),
    OK("eq null does not match missing", "note=null&id=3", "", 0),
    OK("eq real canonical shortest form", "rating=0.1", "3", 1),
    OK("eq real non-canonical text does not match", "rating=0.10000000000000001", "", 0),
    OK("eq real 4.5", "rating=4.5", "1,4", 2),
    OK("eq integer-valued rating", "rating=3", "2", 1),
    OK("eq real in exponent form", "rating=1e%2B20", "6", 1),
    OK("eq integer with leading zero does not match", "views=0100", "", 0),
    OK("eq integer with plus sign does not match", "views=%2B7", "", 0),
    OK("eq object never matches", "author=%5Bobject%20Object%5D", "", 0),
    OK("eq id", "id=3", "3", 1),
    OK("eq unknown field matches nothing", "nosuch=1", "", 0),
    OK("eq unknown suffix is a plain field name", "foo_bar=1", "", 0),
    OK("eq empty value", "title=", "", 0),
    OK("eq NULL value is empty string", "title", "", 0),
    OK("q_ne is a field filter on q, not full text", "q_ne=x", "", 0),

    /* _ne */
    OK("ne excludes missing fields", "author.age_ne=30", "2,4", 2),
    OK("ne repeated is AND", "author.age_ne=30&author.age_ne=25", "4", 1),
    OK("ne on array: no element equals", "tags_ne=json", "3,6", 2),
    OK("ne null", "note_ne=null", "3", 1),
    OK("ne boolean and string true", "published_ne=true", "2", 1),

    /* _gte / _lte */
    OK("gte numeric on dotted path", "author.age_gte=30", "1,4,5", 3),
    OK("lte numeric", "author.age_lte=25", "2", 1),
    OK("gte real vs mixed numbers", "rating_gte=4", "1,4,6", 3),
    OK("lte real boundary inclusive", "rating_lte=0.1", "3,5", 2),
    OK("gte: string field compares as string", "views_gte=100", "1,2,4,5", 4),
    OK("lte: string 100 <= 9 bytewise", "views_lte=9", "2,3,6", 3),
    OK("gte string bytewise, uppercase before lowercase", "title_gte=S", "2,4,6", 3),
    OK("gte and lte together make a range", "views_gte=8&views_lte=100", "1,4,6", 3),
    OK("gte repeated is OR", "author.age_gte=40&author.age_gte=100", "4", 1),
    OK("gte non-numeric value vs number compares text", "views_gte=a", "", 0),
    OK("lte exact integer vs real", "rating_lte=3", "2,3,5", 3),
    OK("gte large integer vs real 1e20", "rating_gte=99999999999999999999", "6", 1),

    /* _like */
    OK("like is case-insensitive", "title_like=HELLO", "1", 1),
    OK("like anchors", "author.name_like=%5Ealice%24", "1,4", 2),
    OK("like on array elements", "tags_like=%5Ec%24", "1,6", 2),
    OK("like on numbers uses canonical text", "views_like=%5E10", "1,2,4", 3),
    OK("like sees past a NUL byte", "title_like=byte", "6", 1),
    OK("like alternation", "title_like=deep%7Csorting", "4,5", 2),
    OK("like repeated is OR", "title_like=deep&title_like=tips", "2,5", 2),
    OK("like empty pattern matches any non-null value", "note_like=", "3", 1),
    OK("like never matches null", "author_like=u", "", 0),
    OK("like matches boolean text", "published_like=%5Etr", "1,3,4,6", 4),
    OK("range never matches null", "note_lte=zzzz", "3", 1),
    OK("like bounded repeat allowed", "title_like=l%7B2%7D", "1", 1),
    OK("like on object never matches", "author_like=.", "", 0),
    OK("like with repeats (anchored search)", "title_like=w.%2Bd", "1", 1),
    OK("like with repeats and inner anchor", "title_like=x%7C%5Es.*g%24", "4", 1),
    OK("like with repeats sees past a NUL byte", "title_like=u.%2Bbyte%7Cby%2Bte", "6", 1),
    OK("like dot does not match a NUL byte", "title_like=l.b", "", 0),
    OK("like escaped and bracketed parens", "title_like=%5C(%7C%5B)%5D%7Cx*tips", "2", 1),

    /* q */
    OK("q case-insensitive over strings", "q=hello", "1,3", 2),
    OK("q searches deep", "q=NEEDLE", "5", 1),
    OK("q searches numbers", "q=250", "5", 1),
    OK("q searches array strings", "q=ALICE", "1,4", 2),
    OK("q does not search keys", "q=meta", "", 0),
    OK("q does not search booleans", "q=false", "", 0),
    OK("q empty is no filter", "q=", "1,2,3,4,5,6", 6),
    OK("q and filters AND together", "q=json&views=100", "1,2", 2),
    OK("q non-ascii bytes", "q=CAF%C3%A9", "3", 1),
    OK("q sees past a NUL byte", "q=BYTE", "6", 1),

    /* _sort / _order */
    OK("sort numbers before strings, ties stable", "_sort=views", "3,6,1,4,5,2", 6),
    OK("sort desc keeps ties in insertion order", "_sort=views&_order=desc", "2,5,1,4,6,3", 6),
    OK("sort two keys, missing sorts last asc (first desc)", "_sort=author.age,id&_order=desc,asc",
       "3,6,4,1,5,2", 6),
    OK("sort two keys both desc", "_sort=author.age,id&_order=desc,desc", "6,3,4,5,1,2", 6),
    OK("sort second key breaks ties", "_sort=rating,title", "5,3,2,1,4,6", 6),
    OK("order is case-insensitive", "_sort=rating&_order=DESC", "6,1,4,2,3,5", 6),
    OK("sort types: false < true < string < missing", "_sort=published", "2,1,3,4,6,5", 6),
    OK("sort null < string < missing", "_sort=note", "1,3,2,4,5,6", 6),
    OK("sort arrays element-wise", "_sort=tags", "3,6,1,2,4,5", 6),
    OK("sort null before objects, objects tie", "_sort=author", "6,1,2,3,4,5", 6),
    OK("sort strings bytewise", "_sort=title", "3,5,1,4,2,6", 6),
    OK("empty order entry means asc", "_sort=views&_order=", "3,6,1,4,5,2", 6),
    OK("missing order entries default asc", "_sort=author.age,id&_order=desc", "3,6,4,1,5,2", 6),
    OK("order before sort in the query", "_order=desc&_sort=id", "6,5,4,3,2,1", 6),
    OK("sort after filtering", "published=true&_sort=id&_order=desc", "6,4,3,1", 4),

    /* pagination and slicing */
    OK("page 1 of 3", "_page=1&_limit=2", "1,2", 6),
    OK("page 2 of 3", "_page=2&_limit=2", "3,4", 6),
    OK("page 3 of 3", "_page=3&_limit=2", "5,6", 6),
    OK("page past the end is empty, total kept", "_page=4&_limit=2", "", 6),
    OK("page without limit uses 10", "_page=1", "1,2,3,4,5,6", 6),
    OK("page 2 without limit is empty", "_page=2", "", 6),
    OK("page over filtered and sorted", "published=true&_sort=id&_order=desc&_page=2&_limit=3", "1",
       4),
    OK("start and end, end exclusive", "_start=1&_end=3", "2,3", 6),
    OK("start and limit", "_start=2&_limit=3", "3,4,5", 6),
    OK("limit alone", "_limit=2", "1,2", 6),
    OK("end alone", "_end=2", "1,2", 6),
    OK("start alone slices to the end", "_start=4", "5,6", 6),
    OK("end before start is empty", "_start=5&_end=2", "", 6),
    OK("start past the end is empty", "_start=100&_end=200", "", 6),
    OK("limit 0 without page is empty", "_limit=0", "", 6),
    OK("end 0 is empty", "_end=0", "", 6),
    OK("leading zeros in numbers", "_start=01&_limit=002", "2,3", 6),
    OK("slice after filter", "views=100&_start=1", "2,4", 3),
    OK("limit at its bound", "_limit=10000", "1,2,3,4,5,6", 6),
    OK("page at its bound", "_page=1000000000&_limit=10000", "", 6),

    /* errors */
    ERR("_embed unsupported", "_embed=comments", QUERY_ERR_UNSUPPORTED, "'_embed'"),
    ERR("_expand unsupported", "_expand=user", QUERY_ERR_UNSUPPORTED, "not supported"),
    ERR("_foo unsupported", "_foo=1", QUERY_ERR_UNSUPPORTED, NULL),
    ERR("__ unsupported", "__=1", QUERY_ERR_UNSUPPORTED, NULL),
    ERR("_sort_ne unsupported", "_sort_ne=1", QUERY_ERR_UNSUPPORTED, NULL),
    ERR("_gte alone unsupported", "_gte=1", QUERY_ERR_UNSUPPORTED, NULL),
    ERR("unsupported name is sanitized", "_x%0A%27y=1", QUERY_ERR_UNSUPPORTED, "'_x??y'"),
    ERR("empty name", "=1", QUERY_ERR_EMPTY_NAME, NULL),
    ERR("empty name after valid ones", "id=1&=", QUERY_ERR_EMPTY_NAME, NULL),
    ERR("page 0", "_page=0", QUERY_ERR_BAD_NUMBER, "'_page'"),
    ERR("page negative", "_page=-1", QUERY_ERR_BAD_NUMBER, NULL),
    ERR("page not a number", "_page=abc", QUERY_ERR_BAD_NUMBER, NULL),
    ERR("page not an integer", "_page=1.5", QUERY_ERR_BAD_NUMBER, NULL),
    ERR("page trailing junk", "_page=2x", QUERY_ERR_BAD_NUMBER, NULL),
    ERR("page with plus sign", "_page=%2B2", QUERY_ERR_BAD_NUMBER, NULL),
    ERR("page with space", "_page=%202", QUERY_ERR_BAD_NUMBER, NULL),
    ERR("page empty", "_page=", QUERY_ERR_BAD_NUMBER, NULL),
    ERR("page without value", "_page", QUERY_ERR_BAD_NUMBER, NULL),
    ERR("page over bound", "_page=1000000001", QUERY_ERR_BAD_NUMBER, NULL),
    ERR("page overflow", "_page=99999999999999999999999", QUERY_ERR_BAD_NUMBER, NULL),
    ERR("limit over bound", "_limit=10001", QUERY_ERR_BAD_NUMBER, "10000"),
    ERR("limit negative", "_limit=-1", QUERY_ERR_BAD_NUMBER, NULL),
    ERR("limit 0 with page", "_page=2&_limit=0", QUERY_ERR_BAD_NUMBER, "'_limit'"),
    ERR("start negative", "_start=-1&_end=2", QUERY_ERR_BAD_NUMBER, "'_start'"),
    ERR("end not a number", "_end=x", QUERY_ERR_BAD_NUMBER, "'_end'"),
    ERR("page repeated", "_page=1&_page=2", QUERY_ERR_REPEATED, "'_page'"),
    ERR("q repeated", "q=a&q=b", QUERY_ERR_REPEATED, "'q'"),
    ERR("sort repeated", "_sort=id&_sort=views", QUERY_ERR_REPEATED, NULL),
    ERR("order repeated", "_sort=id&_order=asc&_order=desc", QUERY_ERR_REPEATED, NULL),
    ERR("limit repeated", "_limit=1&_limit=1", QUERY_ERR_REPEATED, NULL),
    ERR("start repeated", "_start=1&_start=1", QUERY_ERR_REPEATED, NULL),
    ERR("end repeated", "_end=1&_end=1", QUERY_ERR_REPEATED, NULL),
    ERR("regex unbalanced paren", "title_like=(", QUERY_ERR_BAD_REGEX, "'title_like'"),
    ERR("regex unbalanced bracket", "title_like=%5Ba", QUERY_ERR_BAD_REGEX, NULL),
    ERR("regex bad interval", "title_like=a%7B2", QUERY_ERR_BAD_REGEX, NULL),
    ERR("regex back-reference", "title_like=(a)%5C1", QUERY_ERR_BAD_REGEX, "back-ref"),
    ERR("regex nested repeats too heavy", "title_like=(a%7B100%7D)%7B100%7D", QUERY_ERR_BAD_REGEX,
        "expanded"),
    ERR("regex repeat of a group too heavy", "title_like=(.%7B1,64%7D)%7B1,64%7D",
        QUERY_ERR_BAD_REGEX, NULL),
    ERR("regex single repeat over weight", "title_like=a%7B257%7D", QUERY_ERR_BAD_REGEX, NULL),
    ERR("regex unmatched close paren", "title_like=a)", QUERY_ERR_BAD_REGEX, "unmatched"),
    ERR("regex unmatched close paren after alternation", "title_like=a%2B)%7Cb",
        QUERY_ERR_BAD_REGEX, "unmatched"),
    ERR("regex error in a repeated value", "title_like=a&title_like=)(", QUERY_ERR_BAD_REGEX, NULL),
    ERR("like pattern too long", "title_like={a*257}", QUERY_ERR_VALUE_TOO_LONG, "256"),
    ERR("value too long", "title={a*4097}", QUERY_ERR_VALUE_TOO_LONG, "4096"),
    ERR("name too long", "{a*257}=1", QUERY_ERR_NAME_TOO_LONG, "..."),
    ERR("q too long", "q={a*257}", QUERY_ERR_VALUE_TOO_LONG, "'q'"),
    ERR("too many parameters", "{a=1&*65}", QUERY_ERR_TOO_MANY, "64"),
    ERR("order without sort", "_order=desc", QUERY_ERR_CONFLICT, "without _sort"),
    ERR("more orders than sorts", "_sort=id&_order=asc,desc", QUERY_ERR_BAD_SORT, "'_order'"),
    ERR("order not asc or desc", "_sort=id&_order=up", QUERY_ERR_BAD_SORT, NULL),
    ERR("sort empty key", "_sort=id,,views", QUERY_ERR_BAD_SORT, "empty"),
    ERR("sort empty", "_sort=", QUERY_ERR_BAD_SORT, NULL),
    ERR("sort trailing comma", "_sort=id,", QUERY_ERR_BAD_SORT, NULL),
    ERR("sort too many keys", "_sort={k,*8}k", QUERY_ERR_BAD_SORT, "8"),
    ERR("sort bad path", "_sort=a..b", QUERY_ERR_BAD_PATH, NULL),
    ERR("path empty segment", "a..b=1", QUERY_ERR_BAD_PATH, "'a..b'"),
    ERR("path leading dot", ".a=1", QUERY_ERR_BAD_PATH, NULL),
    ERR("path trailing dot", "a.=1", QUERY_ERR_BAD_PATH, NULL),
    ERR("path dot before operator", "a._like=x", QUERY_ERR_BAD_PATH, NULL),
    ERR("path too many segments", "{a.*16}a=1", QUERY_ERR_BAD_PATH, "16"),
    ERR("page with start", "_page=1&_start=1", QUERY_ERR_CONFLICT, "_start"),
    ERR("page with end", "_end=1&_page=1", QUERY_ERR_CONFLICT, "_end"),
    ERR("end with limit", "_end=3&_limit=1", QUERY_ERR_CONFLICT, NULL),
};

/* Link header cases: the query is parsed, then query_link(path, params, total). */
struct link_case {
    const char *name;
    const char *query;
    const char *path;
    size_t total;
    const char *link; /* NULL: no Link header */
};

static const struct link_case link_cases[] = {
    {"link first page", "_page=1&_limit=10", "/v1/posts", 25,
     "</v1/posts?_page=1&_limit=10>; rel=\"first\", </v1/posts?_page=2&_limit=10>; rel=\"next\", "
     "</v1/posts?_page=3&_limit=10>; rel=\"last\""},
    {"link middle page", "_page=2&_limit=10", "/v1/posts", 25,
     "</v1/posts?_page=1&_limit=10>; rel=\"first\", </v1/posts?_page=1&_limit=10>; rel=\"prev\", "
     "</v1/posts?_page=3&_limit=10>; rel=\"next\", </v1/posts?_page=3&_limit=10>; rel=\"last\""},
    {"link last partial page", "_page=3&_limit=10", "/v1/posts", 25,
     "</v1/posts?_page=1&_limit=10>; rel=\"first\", </v1/posts?_page=2&_limit=10>; rel=\"prev\", "
     "</v1/posts?_page=3&_limit=10>; rel=\"last\""},
    {"link last full page", "_page=3&_limit=10", "/v1/posts", 30,
     "</v1/posts?_page=1&_limit=10>; rel=\"first\", </v1/posts?_page=2&_limit=10>; rel=\"prev\", "
     "</v1/posts?_page=3&_limit=10>; rel=\"last\""},
    {"link page past the end", "_page=4&_limit=10", "/v1/posts", 30, NULL},
    {"link everything on one page", "_page=1&_limit=10", "/v1/posts", 10, NULL},
    {"link empty collection", "_page=1", "/v1/posts", 0, NULL},
    {"link without _page", "_limit=10", "/v1/posts", 100, NULL},
    {"link default limit not added", "_page=2", "/v1/posts", 25,
     "</v1/posts?_page=1>; rel=\"first\", </v1/posts?_page=1>; rel=\"prev\", "
     "</v1/posts?_page=3>; rel=\"next\", </v1/posts?_page=3>; rel=\"last\""},
    {"link keeps parameter order", "_limit=5&views_gte=1&_page=2&_sort=id", "/v1/posts", 11,
     "</v1/posts?_limit=5&views_gte=1&_page=1&_sort=id>; rel=\"first\", "
     "</v1/posts?_limit=5&views_gte=1&_page=1&_sort=id>; rel=\"prev\", "
     "</v1/posts?_limit=5&views_gte=1&_page=3&_sort=id>; rel=\"next\", "
     "</v1/posts?_limit=5&views_gte=1&_page=3&_sort=id>; rel=\"last\""},
    {"link re-encodes values and path",
     "title_like=a%20b%7C%26c&flag&tags=x,y&q=caf%C3%A9"
     "&_page=1&_limit=1",
     "/v1/my posts", 2,
     "</v1/my%20posts?title_like=a%20b%7C%26c&flag&tags=x,y&q=caf%C3%A9&_page=1&_limit=1>; "
     "rel=\"first\", "
     "</v1/my%20posts?title_like=a%20b%7C%26c&flag&tags=x,y&q=caf%C3%A9&_page=2&_limit=1>; "
     "rel=\"next\", "
     "</v1/my%20posts?title_like=a%20b%7C%26c&flag&tags=x,y&q=caf%C3%A9&_page=2&_limit=1>; "
     "rel=\"last\""},
    {"link over QUERY_MAX_LINK is left out", "a={x*4000}&b={y*4000}&_page=1&_limit=1", "/v1/p", 2,
     NULL},
    {"link cannot be broken by CR LF or >", "x=%0D%0A%3E&_page=1&_limit=1", "/v1/p", 2,
     "</v1/p?x=%0D%0A%3E&_page=1&_limit=1>; rel=\"first\", </v1/p?x=%0D%0A%3E&_page=2&_limit=1>; "
     "rel=\"next\", </v1/p?x=%0D%0A%3E&_page=2&_limit=1>; rel=\"last\""},
};

/* ---- helpers ---- */

static int passed, failed;

static void report(bool ok, const char *name, const char *why)
{
    if (ok) {
        passed++;
        printf("ok - %s\n", name);
    } else {
        failed++;
        printf("not ok - %s\n", name);
        if (why != NULL)
            printf("#   %s\n", why);
    }
}

/* Expands "{text*N}" into N copies of text. New heap string. */
static char *expand(const char *s)
{
    struct buf b;
    buf_init(&b, 1 << 20);
    while (*s != '\0') {
        const char *star, *close;
        if (*s == '{' && (star = strchr(s, '*')) != NULL && (close = strchr(star, '}')) != NULL) {
            int count = atoi(star + 1);
            for (int i = 0; i < count; i++)
                buf_append(&b, s + 1, (size_t)(star - s - 1));
            s = close + 1;
        } else {
            buf_append(&b, s, 1);
            s++;
        }
    }
    return buf_steal(&b, NULL);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* %XX-decodes 's' in place. */
static void decode(char *s)
{
    char *o = s;
    for (; *s != '\0'; s++) {
        if (s[0] == '%' && hexval(s[1]) >= 0 && hexval(s[2]) >= 0) {
            *o++ = (char)(hexval(s[1]) * 16 + hexval(s[2]));
            s += 2;
        } else {
            *o++ = *s;
        }
    }
    *o = '\0';
}

/* Splits a raw query into params; pieces point into *storage (free it). */
static size_t split_query(const char *query, struct query_param *params, size_t cap, char **storage)
{
    char *s = expand(query);
    size_t n = 0;
    *storage = s;
    while (*s != '\0' && n < cap) {
        char *amp = strchr(s, '&');
        if (amp != NULL)
            *amp = '\0';
        if (*s != '\0') {
            char *eq = strchr(s, '=');
            if (eq != NULL)
                *eq = '\0';
            decode(s);
            if (eq != NULL)
                decode(eq + 1);
            params[n].name = s;
            params[n].value = eq != NULL ? eq + 1 : NULL;
            n++;
        }
        if (amp == NULL)
            break;
        s = amp + 1;
    }
    return n;
}

static json_t *docs;

/*
 * The same documents stored (store/doc.h), made two ways: from the tree
 * (doc_new: json_dumps, then the member index) and from indented text
 * (doc_new_bytes: the scanner, as recovery does, over whitespace too).
 */
enum { STORED_MODES = 2 };
static const char *const stored_mode_names[STORED_MODES] = {"doc_new", "doc_new_bytes"};
static struct doc **stored[STORED_MODES];

static void stored_init(void)
{
    size_t n = json_array_size(docs);
    for (size_t m = 0; m < STORED_MODES; m++) {
        stored[m] = xcalloc(n ? n : 1, sizeof(**stored));
        for (size_t i = 0; i < n; i++) {
            const json_t *d = json_array_get(docs, i);
            char id[32];
            int len = snprintf(id, sizeof(id), "%" JSON_INTEGER_FORMAT,
                               json_integer_value(json_object_get(d, "id")));
            if (m == 0) {
                stored[m][i] = doc_new(d, id, (size_t)len, i + 1, 1);
            } else {
                char *text = json_dumps(d, JSON_INDENT(2));
                if (text == NULL || doc_new_bytes(id, (size_t)len, i + 1, 1, text, strlen(text),
                                                  &stored[m][i]) != 0)
                    panic("stored doc %zu does not scan", i);
                free(text);
            }
        }
    }
}

static void stored_free(void)
{
    for (size_t m = 0; m < STORED_MODES; m++) {
        for (size_t i = 0; i < json_array_size(docs); i++)
            doc_release(stored[m][i]);
        free(stored[m]);
    }
}

/*
 * The case over stored docs: query_apply_docs (each doc read) and
 * query_apply_coll (filters from the collection's columns) must agree with
 * query_apply.
 */
static bool run_case_stored(const struct qcase *c, const struct query *q, size_t m, bool cols,
                            char *why, size_t whylen)
{
    size_t ndocs = json_array_size(docs), from, to;
    const struct doc **ds = xcalloc(ndocs ? ndocs : 1, sizeof(*ds));
    bool ok = true;
    for (size_t i = 0; i < ndocs; i++)
        ds[i] = stored[m][i];
    /* a new version per case: its columns are those of this case's filters (at most 4 kept) */
    struct coll *coll = cols ? coll_build("posts", 1, stored[m], ndocs, NULL) : NULL;
    if (cols && coll == NULL)
        panic("stored docs do not make a collection");
    size_t total = cols ? query_apply_coll(q, coll, ds, ndocs, &from, &to)
                        : query_apply_docs(q, ds, ndocs, &from, &to);
    coll_release(coll);
    struct buf got;
    buf_init(&got, 4096);
    for (size_t i = from; i < to; i++)
        buf_printf(&got, "%s%s", i > from ? "," : "", ds[i]->id);
    const char *ids = got.data != NULL ? got.data : "";
    if (strcmp(ids, c->ids) != 0) {
        snprintf(why, whylen, "%s%s: ids '%s', expected '%s'", stored_mode_names[m],
                 cols ? " (columns)" : "", ids, c->ids);
        ok = false;
    } else if (c->total >= 0 && (long)total != c->total) {
        snprintf(why, whylen, "%s%s: total %zu, expected %ld", stored_mode_names[m],
                 cols ? " (columns)" : "", total, c->total);
        ok = false;
    }
    buf_cleanup(&got);
    free(ds);
    return ok;
}

static void run_case(const struct qcase *c)
{
    struct query_param params[128];
    char *storage;
    size_t n = split_query(c->query, params, ARRAY_LEN(params), &storage);
    struct query *q;
    struct query_error err;
    char why[512] = "";
    bool ok = true;

    int rc = query_parse(params, n, &q, &err);
    if (c->err != QUERY_OK) {
        if (rc == 0) {
            snprintf(why, sizeof(why), "parsed, expected %s", query_errc_name(c->err));
            ok = false;
            query_free(q);
        } else if (err.code != c->err || rc != -EINVAL || q != NULL) {
            snprintf(why, sizeof(why), "got %s (%s), expected %s", query_errc_name(err.code),
                     err.message, query_errc_name(c->err));
            ok = false;
        } else if (c->msg != NULL && strstr(err.message, c->msg) == NULL) {
            snprintf(why, sizeof(why), "message '%s' lacks '%s'", err.message, c->msg);
            ok = false;
        }
        report(ok, c->name, why);
        free(storage);
        return;
    }
    if (rc != 0) {
        snprintf(why, sizeof(why), "parse failed: %s: %s", query_errc_name(err.code), err.message);
        report(false, c->name, why);
        free(storage);
        return;
    }

    size_t ndocs = json_array_size(docs), from, to;
    struct query_item *items = xcalloc(ndocs, sizeof(*items));
    for (size_t i = 0; i < ndocs; i++) {
        items[i].doc = json_array_get(docs, i);
        items[i].ref = (const void *)(uintptr_t)(i + 1);
    }
    size_t total = query_apply(q, items, ndocs, &from, &to);

    struct buf got;
    buf_init(&got, 4096);
    for (size_t i = from; i < to; i++) {
        const json_t *id = json_object_get(items[i].doc, "id");
        buf_printf(&got, "%s%" JSON_INTEGER_FORMAT, i > from ? "," : "", json_integer_value(id));
        /* The caller's record travels with its document. */
        if ((uintptr_t)items[i].ref != (uintptr_t)json_integer_value(id))
            ok = false, snprintf(why, sizeof(why), "ref does not follow its doc");
    }
    const char *ids = got.data != NULL ? got.data : "";
    if (strcmp(ids, c->ids) != 0) {
        snprintf(why, sizeof(why), "ids '%s', expected '%s'", ids, c->ids);
        ok = false;
    } else if (c->total >= 0 && (long)total != c->total) {
        snprintf(why, sizeof(why), "total %zu, expected %ld", total, c->total);
        ok = false;
    }
    for (size_t m = 0; m < STORED_MODES * 2 && ok; m++)
        ok = run_case_stored(c, q, m / 2, m % 2 == 1, why, sizeof(why));
    report(ok, c->name, why);
    buf_cleanup(&got);
    free(items);
    query_free(q);
    free(storage);
}

static void run_link_case(const struct link_case *c)
{
    struct query_param params[128];
    char *storage;
    size_t n = split_query(c->query, params, ARRAY_LEN(params), &storage);
    struct query *q;
    struct query_error err;
    char why[1024] = "";
    bool ok;

    if (query_parse(params, n, &q, &err) != 0) {
        snprintf(why, sizeof(why), "parse failed: %s", err.message);
        report(false, c->name, why);
        free(storage);
        return;
    }
    char *link = query_link(q, c->path, params, n, c->total);
    if (c->link == NULL)
        ok = link == NULL;
    else
        ok = link != NULL && strcmp(link, c->link) == 0;
    if (!ok)
        snprintf(why, sizeof(why), "got %s", link != NULL ? link : "(none)");
    report(ok, c->name, why);
    free(link);
    query_free(q);
    free(storage);
}

/* ---- cases that are not a table row ---- */

static struct query *must_parse(const char *query)
{
    struct query_param params[128];
    char *storage;
    size_t n = split_query(query, params, ARRAY_LEN(params), &storage);
    struct query *q;
    struct query_error err;
    if (query_parse(params, n, &q, &err) != 0)
        panic("must_parse '%s': %s", query, err.message);
    free(storage); /* the query keeps nothing of params */
    return q;
}

static void test_flags(void)
{
    static const struct {
        const char *query;
        bool filter, sort, slice, page;
    } rows[] = {
        {"", false, false, false, false},       {"q=", false, false, false, false},
        {"q=x", true, false, false, false},     {"a=1", true, false, false, false},
        {"_sort=a", false, true, false, false}, {"_start=1", false, false, true, false},
        {"_end=1", false, false, true, false},  {"_limit=1", false, false, true, false},
        {"_page=1", false, false, true, true},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        struct query *q = must_parse(rows[i].query);
        char name[96];
        snprintf(name, sizeof(name), "flags for '%s'", rows[i].query);
        report(query_has_filter(q) == rows[i].filter && query_has_sort(q) == rows[i].sort &&
                   query_has_slice(q) == rows[i].slice && query_has_page(q) == rows[i].page,
               name, NULL);
        query_free(q);
    }
}

static void test_compare(void)
{
    struct query *q = must_parse("_sort=v");
    static const char *const ordered[] = {
        "{\"v\":null}",
        "{\"v\":false}",
        "{\"v\":true}",
        "{\"v\":-1e300}",
        "{\"v\":-9223372036854775808}",
        "{\"v\":-1.5}",
        "{\"v\":0}",
        "{\"v\":0.5}",
        "{\"v\":9007199254740993}",
        "{\"v\":9007199254740994.0}",
        "{\"v\":9223372036854775807}",
        "{\"v\":1e19}",
        "{\"v\":\"\"}",
        "{\"v\":\"A\"}",
        "{\"v\":\"a\"}",
        "{\"v\":\"ab\"}",
        "{\"v\":[]}",
        "{\"v\":[1]}",
        "{\"v\":[1,2]}",
        "{\"v\":[2]}",
        "{\"v\":{}}",
        "{}",
    };
    json_t *vals[ARRAY_LEN(ordered)];
    bool ok = true;
    for (size_t i = 0; i < ARRAY_LEN(ordered); i++) {
        vals[i] = json_loads(ordered[i], JSON_DECODE_ANY, NULL);
        if (vals[i] == NULL)
            panic("bad json %s", ordered[i]);
    }
    for (size_t i = 0; i < ARRAY_LEN(ordered); i++)
        for (size_t j = 0; j < ARRAY_LEN(ordered); j++) {
            int c = query_compare(q, vals[i], vals[j]);
            int want = i < j ? -1 : i > j;
            if ((c < 0 ? -1 : c > 0) != want) {
                printf("#   compare %s %s = %d\n", ordered[i], ordered[j], c);
                ok = false;
            }
        }
    report(ok, "compare: total order across types and exact int/real order", NULL);

    /* 1 and 1.0 tie; objects tie. */
    json_t *a = json_loads("{\"v\":1}", 0, NULL), *b = json_loads("{\"v\":1.0}", 0, NULL);
    json_t *c = json_loads("{\"v\":{\"x\":1}}", 0, NULL), *d = json_loads("{\"v\":{}}", 0, NULL);
    report(query_compare(q, a, b) == 0 && query_compare(q, c, d) == 0,
           "compare: 1 ties 1.0, objects tie", NULL);
    json_decref(a), json_decref(b), json_decref(c), json_decref(d);
    for (size_t i = 0; i < ARRAY_LEN(ordered); i++)
        json_decref(vals[i]);
    query_free(q);

    q = must_parse("id=1");
    json_t *x = json_loads("{\"id\":2}", 0, NULL), *y = json_loads("{\"id\":1}", 0, NULL);
    report(query_compare(q, x, y) == 0, "compare without _sort is always equal", NULL);
    json_decref(x), json_decref(y);
    query_free(q);
}

/* query_sort compares strings by an inline 8-byte prefix first: check around that edge. */
static void test_sort_strings(void)
{
    static const char *const ordered[] = {
        "\"\"",         "\"\\u0000\"",         "\"a\"",         "\"a\\u0000\"",   "\"a\\u0000b\"",
        "\"abcdefgh\"", "\"abcdefgh\\u0000\"", "\"abcdefghi\"", "\"abcdefghij\"", "\"abcdefgi\"",
        "\"b\"",        "\"\\u00e9\"",         "\"\\uffff\"",   "\"\\uffffx\"",
    };
    enum { N = ARRAY_LEN(ordered) };
    json_t *docs_s[N];
    struct query_item items[N];
    for (size_t i = 0; i < N; i++) {
        json_t *v = json_loads(ordered[i], JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        if (v == NULL)
            panic("bad json %s", ordered[i]);
        docs_s[i] = json_pack("{s:o}", "s", v);
    }
    bool ok = true;
    for (size_t shift = 0; shift < N; shift++) {
        /* A rotation reversed: every element starts somewhere else. */
        for (size_t i = 0; i < N; i++)
            items[i].doc = docs_s[(N - 1 - i + shift) % N], items[i].ref = NULL;
        struct query *q = must_parse("_sort=s");
        query_sort(q, items, N);
        for (size_t i = 0; i < N; i++)
            if (items[i].doc != docs_s[i])
                ok = false;
        query_free(q);
    }
    report(ok, "sort strings around the 8-byte prefix, NUL bytes, UTF-8", NULL);
    for (size_t i = 0; i < N; i++)
        json_decref(docs_s[i]);
}

/* A reply slice bigger than the collection, and sorting nothing. */
static void test_edges(void)
{
    struct query *q = must_parse("_sort=id&_page=3&_limit=10000");
    size_t from = 1, to = 1;
    size_t total = query_apply(q, NULL, 0, &from, &to);
    report(total == 0 && from == 0 && to == 0, "apply over zero items", NULL);
    query_free(q);

    q = must_parse("_page=1000000000&_limit=10000");
    query_slice(q, (size_t)-1, &from, &to);
    report(from == (size_t)999999999 * 10000 && to == from + 10000, "largest page offset", NULL);
    query_free(q);
}

/*
 * glibc retries an unanchored regex at every start position; "[a-z]+y" over
 * 100 KB of 'a' would take minutes. query.c anchors such patterns so the
 * search is one linear pass.
 */
static void test_like_linear(void)
{
    enum { LEN = 100000 };
    char *big = xmalloc(LEN + 1);
    memset(big, 'a', LEN);
    big[LEN] = '\0';
    json_t *doc = json_pack("{s:s}", "s", big);
    static const char *const patterns[] = {"s_like=%5Ba-z%5D%2By", "s_like=a.*b.*c", "s_like=a%2By",
                                           "s_like={a*200}y", "q={a*255}b"};
    for (size_t i = 0; i < ARRAY_LEN(patterns); i++) {
        struct query *q = must_parse(patterns[i]);
        uint64_t t0 = now_usec();
        bool m = query_match(q, doc);
        uint64_t us = now_usec() - t0;
        char name[128];
        snprintf(name, sizeof(name), "search is linear: %s over %d bytes (%.1f ms)", patterns[i],
                 LEN, (double)us / 1000);
        report(!m && us < 1000000, name, NULL);
        query_free(q);
    }
    json_decref(doc);
    free(big);
}

/* q against a naive search on random strings over a tiny alphabet (many partial matches). */
static void test_q_random(void)
{
    uint32_t seed = 12345;
    bool ok = true;
    for (int round = 0; round < 3000 && ok; round++) {
        char hay[40], needle[8], qs[32];
        size_t hn = 0, nn = 1;
        seed = seed * 1103515245u + 12345u;
        hn = (seed >> 16) % 32;
        for (size_t i = 0; i < hn; i++) {
            seed = seed * 1103515245u + 12345u;
            hay[i] = "aAbB"[(seed >> 16) % 4];
        }
        hay[hn] = '\0';
        seed = seed * 1103515245u + 12345u;
        nn = 1 + (seed >> 16) % 6;
        for (size_t i = 0; i < nn; i++) {
            seed = seed * 1103515245u + 12345u;
            needle[i] = "abAB"[(seed >> 16) % ((seed >> 20) % 2 ? 2 : 4)];
        }
        needle[nn] = '\0';
        snprintf(qs, sizeof(qs), "q=%s", needle);
        struct query *q = must_parse(qs);
        json_t *doc = json_pack("{s:s}", "s", hay);
        bool want = strcasestr(hay, needle) != NULL;
        if (query_match(q, doc) != want) {
            printf("#   q=%s over '%s': expected %d\n", needle, hay, want);
            ok = false;
        }
        json_decref(doc);
        query_free(q);
    }
    report(ok, "q agrees with a naive search on 3000 random cases", NULL);
}

/*
 * 100k generated documents: sorting is stable (checked pairwise) and filtering
 * is timed; the sort keys have few values so ties are everywhere.
 */
static void test_bulk(void)
{
    enum { N = 100000 };
    json_t *all = json_array();
    for (int i = 0; i < N; i++) {
        json_t *d =
            json_pack("{s:i, s:i, s:s, s:{s:f}}", "id", i, "group", (i * 7919) % 13, "name",
                      (i % 3) ? "alpha" : "Beta", "m", "score", (double)((i * 31) % 101) / 4.0);
        if (i % 17 == 0)
            json_object_del(d, "group");
        json_array_append_new(all, d);
    }
    struct query_item *items = xcalloc(N, sizeof(*items));
    for (size_t i = 0; i < N; i++)
        items[i].doc = json_array_get(all, i), items[i].ref = (const void *)(uintptr_t)i;

    struct query *q = must_parse("_sort=group,m.score&_order=desc");
    uint64_t t0 = now_usec();
    query_sort(q, items, N);
    uint64_t t1 = now_usec();
    bool ok = true;
    for (size_t i = 1; i < N && ok; i++) {
        int c = query_compare(q, items[i - 1].doc, items[i].doc);
        if (c > 0 || (c == 0 && (uintptr_t)items[i - 1].ref > (uintptr_t)items[i].ref))
            ok = false;
    }
    printf("# sort of %d docs by 2 keys: %.1f ms\n", N, (double)(t1 - t0) / 1000);
    report(ok, "bulk sort is ordered and stable", NULL);
    query_free(q);

    for (size_t i = 0; i < N; i++)
        items[i].doc = json_array_get(all, i), items[i].ref = (const void *)(uintptr_t)i;
    q = must_parse("name_like=^al&group_gte=3&group_lte=9&m.score_ne=5&q=pha&_page=2&_limit=50");
    size_t from, to;
    t0 = now_usec();
    size_t total = query_apply(q, items, N, &from, &to);
    t1 = now_usec();
    size_t expect = 0;
    for (int i = 0; i < N; i++) {
        long g = (i * 7919L) % 13;
        double s = (double)((i * 31) % 101) / 4.0;
        if (i % 3 != 0 && i % 17 != 0 && g >= 3 && g <= 9 && s != 5.0)
            expect++;
    }
    printf("# filter of %d docs (like, range, ne, q): %.1f ms, %zu match\n", N,
           (double)(t1 - t0) / 1000, total);
    report(total == expect && from == 50 && to == 100, "bulk filter count and page", NULL);
    query_free(q);
    free(items);
    json_decref(all);
}

/*
 * Stored docs that take the slow paths: no member index (an escaped member
 * name), an escaped string value, nested members, and q -- each must agree
 * with the same query over the parsed tree.
 */
/*
 * Whether a pipeline over stored docs (sd: n2 matches, slice [f2, t2)) gave the tree pipeline's
 * answer (items: n1, [f1, t1)); prints why not, naming 'query' and 'what' was compared.
 */
static bool slice_agrees(const char *query, const char *what, const struct query_item *items,
                         size_t n1, size_t f1, size_t t1, const struct doc *const *sd, size_t n2,
                         size_t f2, size_t t2)
{
    bool same = n1 == n2 && f1 == f2 && t1 == t2;
    for (size_t i = f1; same && i < t1; i++)
        same = items[i].ref == sd[i];
    if (!same)
        printf("#   %s: tree and %s disagree (%zu vs %zu matches)\n", query, what, n1, n2);
    return same;
}

static void test_stored_slow_paths(void)
{
    /* the 4th has a member name over 65,535 bytes: no member index (made below) */
    const char *texts[] = {
        "{\"id\":1,\"a\\\"b\":1,\"s\":\"x\\\"y\",\"n\":{\"k\":[1,2]},\"t\":[\"u\",\"v\"]}",
        "{\"id\":2,\"s\":\"x\\\"y\",\"n\":{\"k\":[3]},\"t\":\"u\",\"w\":\"caf\\u00e9 "
        "w\\u00f6rld\"}",
        "{\"id\":3,\"s\":\"plain\",\"n\":7,\"n.k\":2,\"t\":[[\"u\"]],\"w\":\"WORLD\"}",
        NULL,
    };
    char *unindexed = xmalloc(70000 + 64);
    memset(unindexed, 0, 70000 + 64);
    strcpy(unindexed, "{\"id\":4,\"s\":\"plain\",\"n\":7,\"");
    memset(unindexed + strlen(unindexed), 'x', 70000);
    strcat(unindexed, "\":1}");
    texts[3] = unindexed;
    /* each query, and the member a column must be made for (NULL: none) */
    static const struct {
        const char *query, *column;
    } queries[] = {
        {"a%22b=1", NULL}, /* only an escaped name: no doc holds a scalar the index finds */
        {"s=x%22y", "s"},
        {"n.k=2", NULL}, /* two segments */
        {"n.k=3", NULL},
        {"n.k_gte=2", NULL},
        {"t=u", "t"},
        {"t_ne=u", "t"},
        {"q=world", NULL},
        {"q=x%22", NULL},
        {"_sort=s", NULL},
        {"_sort=n.k&_order=desc", NULL},
        {"_sort=t", NULL},
        {"w_like=%C3%B6", "w"},
        {"s_ne=plain", "s"},
        {"n.k.0=1", NULL},
        {"n=7", "n"},
        {"a%22b_ne=2", NULL},
    };
    enum { N = ARRAY_LEN(texts) };
    json_t *trees[N];
    struct doc *ds[N];
    bool ok = true;
    for (size_t i = 0; i < N; i++) {
        char id[8];
        trees[i] = json_loads(texts[i], 0, NULL);
        snprintf(id, sizeof(id), "%zu", i + 1);
        if (trees[i] == NULL ||
            doc_new_bytes(id, strlen(id), i + 1, 1, texts[i], strlen(texts[i]), &ds[i]) != 0)
            panic("bad test doc %zu", i);
    }
    if (!ds[0]->indexed || !ds[0]->esc_names)
        ok = false, printf("#   doc 1 should be indexed, with an escaped name\n");
    if (ds[N - 1]->indexed)
        ok = false, printf("#   doc %d should have no index\n", N);
    /* a name the index finds needs no parse of a doc with an escaped name; a miss does */
    struct query *hit = must_parse("s=x%22y&id=1"), *miss = must_parse("zz=1");
    uint64_t p0 = doc_parse_count();
    bool m1 = query_match_doc(hit, ds[0]);
    uint64_t p1 = doc_parse_count();
    bool m2 = query_match_doc(miss, ds[0]);
    uint64_t p2 = doc_parse_count();
    if (!m1 || m2 || p1 != p0 || p2 != p1 + 1)
        ok = false, printf("#   escaped-name doc: %d %d, %llu and %llu parses (want 1 0, 0 1)\n",
                           m1, m2, (unsigned long long)(p1 - p0), (unsigned long long)(p2 - p1));
    query_free(hit);
    query_free(miss);
    for (size_t k = 0; k < ARRAY_LEN(queries); k++) {
        struct query *q = must_parse(queries[k].query);
        struct query_item items[N];
        const struct doc *sd[N];
        size_t f1, t1, f2, t2;
        for (size_t i = 0; i < N; i++) {
            items[i].doc = trees[i], items[i].ref = ds[i];
            sd[i] = ds[i];
        }
        size_t n1 = query_apply(q, items, N, &f1, &t1);
        size_t n2 = query_apply_docs(q, sd, N, &f2, &t2);
        ok = slice_agrees(queries[k].query, "stored docs", items, n1, f1, t1, sd, n2, f2, t2) && ok;
        /*
         * and through a collection's columns (escaped names, nested values, the
         * unindexed doc: read from the doc), a new version per query so that each
         * filter gets its column; one is made for a name a doc holds a scalar under
         */
        struct coll *coll = coll_build("slow", 1, ds, N, NULL);
        for (size_t i = 0; i < N; i++)
            sd[i] = ds[i];
        n2 = query_apply_coll(q, coll, sd, N, &f2, &t2);
        const char *col = queries[k].column;
        if (col != NULL && coll_column(coll, col, strlen(col)) == NULL) {
            printf("#   %s: no column was made for '%s'\n", queries[k].query, col);
            ok = false;
        }
        coll_release(coll);
        ok = slice_agrees(queries[k].query, "the columns", items, n1, f1, t1, sd, n2, f2, t2) && ok;
        query_free(q);
    }
    report(ok, "stored docs: unindexed, escaped, nested and q agree with the tree", NULL);
    for (size_t i = 0; i < N; i++) {
        json_decref(trees[i]);
        doc_release(ds[i]);
    }
    free(unindexed);
}

/*
 * q skips a stored doc whose raw bytes lack the needle without parsing it;
 * the skip must never change an answer: reals whose bytes differ from their
 * canonical text (0.3 is 0.29999999999999999 in jansson's bytes, 1e21 is
 * 1e21 where real_text says 1e+21), escaped strings, "-0", case folding.
 */
static void test_q_prefilter(void)
{
    static const char *const texts[] = {
        "{\"id\":1,\"r\":0.3,\"s\":\"Hello World\"}",
        "{\"id\":2,\"r\":1e21,\"n\":-0,\"t\":[\"deep\",{\"u\":\"CaSe\"}]}",
        "{\"id\":3,\"s\":\"x\\\"y\",\"w\":\"caf\\u00e9\"}",
        "{\"id\":4,\"n\":2024,\"v\":\"v2.0\",\"title\":\"plain\"}",
        "{\"id\":5,\"r\":-2.5e-7,\"s\":\"no\"}",
    };
    static const char *const needles[] = {
        "0.3", "e%2B21",  "1e%2B2", "world", "WORLD", "x%22",  "caf%C3%A9", "case",  "202",
        "0",   "2.5e-07", "e-07",   "-2.5",  "zzz",   "plain", "29999",     "title",
    };
    enum { N = ARRAY_LEN(texts) };
    json_t *trees[N];
    struct doc *ds[N];
    bool ok = true;
    for (size_t i = 0; i < N; i++) {
        char id[8];
        trees[i] = json_loads(texts[i], 0, NULL);
        snprintf(id, sizeof(id), "%zu", i + 1);
        if (trees[i] == NULL)
            panic("bad test doc %zu", i);
        /* the bytes jansson makes, as a stored doc holds them */
        ds[i] = doc_new(trees[i], id, strlen(id), i + 1, 1);
    }
    for (size_t k = 0; k < ARRAY_LEN(needles); k++) {
        char qs[64];
        snprintf(qs, sizeof(qs), "q=%s", needles[k]);
        struct query *q = must_parse(qs);
        for (size_t i = 0; i < N; i++) {
            bool want = query_match(q, trees[i]), got = query_match_doc(q, ds[i]);
            if (want != got) {
                printf("#   %s over %s: tree %d, stored %d\n", qs, ds[i]->bytes, want, got);
                ok = false;
            }
        }
        query_free(q);
    }
    report(ok, "q over stored docs: the raw-bytes pre-filter never changes an answer", NULL);

    /* a needle in none of the plain docs' bytes parses none of them (doc 3 has escapes) */
    struct query *q = must_parse("q=zzz");
    uint64_t before = doc_parse_count();
    size_t hits = 0;
    for (size_t i = 0; i < N; i++)
        hits += query_match_doc(q, ds[i]);
    uint64_t parsed = doc_parse_count() - before;
    if (hits != 0 || parsed != 1)
        printf("#   %zu matches, %llu parses (want 0, 1)\n", hits, (unsigned long long)parsed);
    report(hits == 0 && parsed == 1, "q skips the docs whose bytes lack the needle unparsed", NULL);
    query_free(q);
    for (size_t i = 0; i < N; i++) {
        json_decref(trees[i]);
        doc_release(ds[i]);
    }
}

/* Whether every query's slice over 'all' (trees) and 'ds' (the same as stored docs) equals the
 * same slice of the full stable sort. */
static bool slices_match_full_sort(json_t *all, struct doc **ds, size_t n,
                                   const char *const *queries, size_t nq)
{
    bool ok = true;
    struct query_item *items = xcalloc(n, sizeof(*items)), *full = xcalloc(n, sizeof(*full));
    const struct doc **sd = xcalloc(n, sizeof(*sd));
    for (size_t k = 0; k < nq; k++) {
        struct query *q = must_parse(queries[k]);
        size_t nf = 0, from, to, f2, t2;
        /* the reference: filter, full stable sort, slice */
        for (size_t i = 0; i < n; i++)
            if (query_match(q, json_array_get(all, i)))
                full[nf].doc = json_array_get(all, i), full[nf++].ref = ds[i];
        query_sort(q, full, nf);
        for (size_t i = 0; i < n; i++) {
            items[i].doc = json_array_get(all, i), items[i].ref = ds[i];
            sd[i] = ds[i];
        }
        size_t total = query_apply(q, items, n, &from, &to);
        size_t total2 = query_apply_docs(q, sd, n, &f2, &t2);
        bool same = total == nf && total2 == nf && from == f2 && to == t2;
        for (size_t i = from; same && i < to; i++)
            same = items[i].ref == full[i].ref && sd[i] == full[i].ref;
        if (!same) {
            printf("#   %s: the slice differs from the full sort's\n", queries[k]);
            ok = false;
        }
        query_free(q);
    }
    free(items);
    free(full);
    free(sd);
    return ok;
}

/*
 * A sorted slice comes from a bounded top-k selection; it must equal the
 * same slice of the full stable sort, ties (everywhere here) included.
 */
static void test_top_k(void)
{
    enum { N = 3000 };
    json_t *all = json_array();
    struct doc **ds = xcalloc(N, sizeof(*ds));
    for (int i = 0; i < N; i++) {
        json_t *d = json_pack("{s:i, s:i, s:s}", "id", i + 1, "g", (i * 7919) % 5, "s",
                              (i % 3) ? "a" : "b");
        if (i % 11 == 0)
            json_object_del(d, "g");
        json_array_append_new(all, d);
        char id[16];
        snprintf(id, sizeof(id), "%d", i + 1);
        ds[i] = doc_new(d, id, strlen(id), (uint64_t)i + 1, 1);
    }
    static const char *const queries[] = {
        "_sort=g&_limit=10",
        "_sort=g&_order=desc&_limit=7",
        "_sort=g,s&_page=3&_limit=25",
        "_sort=s&_start=5&_end=40",
        "_sort=g&_limit=1",
        "_sort=g&_limit=0",
        "_sort=g&s=a&_page=2",
        "_sort=g&_start=2990&_limit=50",
        "_sort=g&_limit=10000",
    };
    report(slices_match_full_sort(all, ds, N, queries, ARRAY_LEN(queries)),
           "top-k slices equal the full stable sort's slices", NULL);
    for (int i = 0; i < N; i++)
        doc_release(ds[i]);
    free(ds);
    json_decref(all);
}

/*
 * The same over keys the member index cannot serve alone: nested paths
 * (parsed per doc), escaped strings, int/real ties (1 and 1.0 compare
 * equal, so the stable order decides) and missing keys, with _limit.
 */
static void test_top_k_mixed(void)
{
    enum { N = 1200 };
    static const char *const strs[] = {"a\"b", "a\\b", "a", "tab\there", "A", "a\"b"};
    json_t *all = json_array();
    struct doc **ds = xcalloc(N, sizeof(*ds));
    for (int i = 0; i < N; i++) {
        int g = (i * 7919) % 4;
        json_t *d = json_object();
        json_object_set_new(d, "id", json_integer(i + 1));
        if (i % 13 != 0)
            json_object_set_new(d, "g", (i % 2) ? json_integer(g) : json_real(g));
        json_object_set_new(d, "s", json_string(strs[i % ARRAY_LEN(strs)]));
        if (i % 7 != 0) {
            json_t *inner =
                json_pack("{s:o}", "k", (i % 3) ? json_integer(g % 3) : json_real(g % 3));
            json_object_set_new(
                d, "n",
                json_pack("{s:o, s:[s]}", "inner", inner, "t", strs[(i / 3) % ARRAY_LEN(strs)]));
        }
        json_array_append_new(all, d);
        char id[16];
        snprintf(id, sizeof(id), "%d", i + 1);
        ds[i] = doc_new(d, id, strlen(id), (uint64_t)i + 1, 1);
    }
    static const char *const queries[] = {
        "_sort=g&_limit=10",         "_sort=g&_order=desc&_limit=25",
        "_sort=n.inner.k&_limit=15", "_sort=n.inner.k,g&_order=desc&_page=3&_limit=20",
        "_sort=s&_limit=30",         "_sort=s,g&_order=desc&_start=100&_limit=40",
        "_sort=n.t.0&_limit=12",     "_sort=n.t.0,s,g&_page=5&_limit=17",
        "_sort=g&g=1&_limit=9",      "_sort=n.inner.k&_start=1150&_limit=100",
    };
    report(slices_match_full_sort(all, ds, N, queries, ARRAY_LEN(queries)),
           "top-k slices over nested, escaped and int/real-tied keys equal the full sort's", NULL);
    for (int i = 0; i < N; i++)
        doc_release(ds[i]);
    free(ds);
    json_decref(all);
}

int main(void)
{
    json_error_t jerr;
    docs = json_loads(docs_json, JSON_ALLOW_NUL, &jerr);
    if (docs == NULL)
        panic("docs: %s at %d", jerr.text, jerr.position);
    char *before = json_dumps(docs, JSON_SORT_KEYS);
    stored_init();

    for (size_t i = 0; i < ARRAY_LEN(cases); i++)
        run_case(&cases[i]);
    for (size_t i = 0; i < ARRAY_LEN(link_cases); i++)
        run_link_case(&link_cases[i]);
    test_flags();
    test_compare();
    test_sort_strings();
    test_edges();
    test_like_linear();
    test_q_random();
    test_bulk();
    test_stored_slow_paths();
    test_q_prefilter();
    test_top_k();
    test_top_k_mixed();
    stored_free();

    /* Documents are read only: nothing above may have changed them. */
    char *after = json_dumps(docs, JSON_SORT_KEYS);
    report(strcmp(before, after) == 0 && docs->refcount == 1, "documents are unchanged", NULL);
    free(before);
    free(after);
    json_decref(docs);

    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
