/* src/router.c -- see router.h. */
#include "router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct entry {
    const struct route *route;
    char *label;
    size_t nsegs;
    const char *segs[ROUTER_MAX_SEGMENTS]; /* literal, or "{name}" */
    char *storage;
    size_t nliterals;
};

static struct entry *entries;
static size_t nentries;

static const struct {
    enum method bit;
    const char *name;
} methods[] = {
    {METHOD_GET, "GET"},     {METHOD_HEAD, "HEAD"},     {METHOD_POST, "POST"},
    {METHOD_PUT, "PUT"},     {METHOD_PATCH, "PATCH"},   {METHOD_DELETE, "DELETE"},
    {METHOD_OPTIONS, "OPTIONS"},
};

enum method router_method(const char *name)
{
    for (size_t i = 0; i < ARRAY_LEN(methods); i++)
        if (strcmp(name, methods[i].name) == 0)
            return methods[i].bit;
    return METHOD_OTHER;
}

static const char *method_name(enum method m)
{
    for (size_t i = 0; i < ARRAY_LEN(methods); i++)
        if (methods[i].bit == m)
            return methods[i].name;
    panic("router: route with method bits %#x", (unsigned)m);
}

/* Splits 'p' (modified) on '/' into segs; returns the count or -1 when there are too many. */
static int split(char *p, const char **segs)
{
    int n = 0;
    if (*p == '/')
        p++;
    if (*p == '\0')
        return 0; /* "/" is the root: no segments */
    for (;;) {
        if (n == ROUTER_MAX_SEGMENTS)
            return -1;
        segs[n++] = p;
        char *slash = strchr(p, '/');
        if (slash == NULL)
            return n;
        *slash = '\0';
        p = slash + 1;
    }
}

void router_init(const struct module *const *modules, const char *api_prefix)
{
    size_t n = 0;
    for (size_t m = 0; modules[m] != NULL; m++)
        for (const struct route *r = modules[m]->routes; r->pattern != NULL; r++)
            n++;
    entries = xcalloc(n, sizeof(*entries));
    nentries = n;

    size_t i = 0;
    for (size_t m = 0; modules[m] != NULL; m++) {
        for (const struct route *r = modules[m]->routes; r->pattern != NULL; r++, i++) {
            struct entry *e = &entries[i];
            const char *prefix = (r->flags & ROUTE_API) ? api_prefix : "";
            const char *pat = strcmp(r->pattern, "/") == 0 && prefix[0] ? "" : r->pattern;
            e->route = r;
            e->storage = xasprintf("%s%s", prefix, pat);
            e->label = xasprintf("%s %s", method_name(r->method), e->storage);
            int k = split(e->storage, e->segs);
            if (k < 0 || r->pattern[0] != '/')
                panic("router: bad pattern '%s' in module %s", r->pattern, modules[m]->name);
            e->nsegs = (size_t)k;
            size_t params = 0;
            for (size_t s = 0; s < e->nsegs; s++) {
                if (e->segs[s][0] == '{')
                    params++;
                else
                    e->nliterals++;
            }
            if (params > REQUEST_MAX_PARAMS)
                panic("router: pattern '%s' has too many parameters", r->pattern);
        }
    }
}

void router_fini(void)
{
    for (size_t i = 0; i < nentries; i++) {
        free(entries[i].storage);
        free(entries[i].label);
    }
    free(entries);
    entries = NULL;
    nentries = 0;
}

size_t router_count(void)
{
    return nentries;
}

const struct route *router_route(size_t index)
{
    return entries[index].route;
}

const char *router_label(size_t index)
{
    return entries[index].label;
}

static int path_matches(const struct entry *e, const char **segs, size_t nsegs)
{
    if (e->nsegs != nsegs)
        return 0;
    for (size_t s = 0; s < nsegs; s++)
        if (e->segs[s][0] != '{' && strcmp(e->segs[s], segs[s]) != 0)
            return 0;
    return 1;
}

/* Path parameters: 1..ROUTER_MAX_PARAM_LEN bytes of RFC 3986 unreserved characters. */
static int param_ok(const char *p)
{
    size_t n = strlen(p);
    if (n == 0 || n > ROUTER_MAX_PARAM_LEN)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_' || c == '~'))
            return 0;
    }
    return 1;
}

enum router_outcome router_find(char *path, enum method method, struct router_match *m)
{
    const char *segs[ROUTER_MAX_SEGMENTS];
    memset(m, 0, sizeof(*m));
    int n = split(path, segs);
    if (n < 0)
        return ROUTER_NOT_FOUND;

    /* the best path match decides; the method only picks among rows of that shape */
    size_t best = 0;
    int found = 0;
    for (size_t i = 0; i < nentries; i++) {
        if (!path_matches(&entries[i], segs, (size_t)n))
            continue;
        if (!found || entries[i].nliterals > best)
            best = entries[i].nliterals;
        found = 1;
    }
    if (!found)
        return ROUTER_NOT_FOUND;

    enum method want = method == METHOD_HEAD ? METHOD_GET : method;
    const struct entry *hit = NULL;
    for (size_t i = 0; i < nentries; i++) {
        const struct entry *e = &entries[i];
        if (e->nliterals != best || !path_matches(e, segs, (size_t)n))
            continue;
        m->allow |= e->route->method;
        if (e->route->method == METHOD_GET)
            m->allow |= METHOD_HEAD;
        if (e->route->method == want && hit == NULL) {
            hit = e;
            m->index = i;
        }
    }
    if (hit == NULL)
        return ROUTER_BAD_METHOD;

    size_t k = 0;
    for (size_t s = 0; s < hit->nsegs; s++) {
        if (hit->segs[s][0] != '{')
            continue;
        if (!param_ok(segs[s])) {
            m->bad_param = hit->segs[s];
            return ROUTER_BAD_PARAM;
        }
        m->params[k++] = segs[s];
    }
    m->route = hit->route;
    return ROUTER_FOUND;
}

void router_allow_string(unsigned allow, char *out, size_t outlen)
{
    size_t off = 0;
    out[0] = '\0';
    for (size_t i = 0; i < ARRAY_LEN(methods); i++) {
        if (!(allow & methods[i].bit) || off >= outlen)
            continue;
        off += (size_t)snprintf(out + off, outlen - off, "%s%s", off ? ", " : "",
                                methods[i].name);
    }
}
