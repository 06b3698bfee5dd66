/* src/store/pmap.h -- persistent weight-balanced search tree of docs (pmap.c). */
#ifndef CAIRN_STORE_PMAP_H
#define CAIRN_STORE_PMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/doc.h"

/*
 * A pmap is one immutable version of an ordered map from a key to a
 * struct doc. The key is the doc's own, so a map only needs to know which
 * field orders it:
 *   PMAP_BY_ID   doc->id, compared bytewise (memcmp, then shorter first);
 *                ids must not contain NUL bytes (every valid id and name);
 *   PMAP_BY_SEQ  doc->seq, compared as unsigned integers.
 * Nodes keep a word of the key (pmap.c) so that a lookup loads only the
 * doc it finds, in the common case.
 *
 * Updates copy the O(log n) nodes on the path to the change and share every
 * other node with the version they started from (path copying). Nodes and
 * docs are atomically refcounted, so a version stays valid, and unchanged,
 * for as long as someone holds it, whatever happens to newer versions; a
 * version may be read by any number of threads without locks. Releasing a
 * version frees exactly the nodes (and docs) no other version shares.
 *
 * Balance is by weight (Adams' trees with delta = 3, gamma = 2, weights =
 * size + 1; Hirai & Yamamoto 2011 prove these parameters correct for insert
 * and delete). Each child holds at most 3/4 of its parent's weight, so the
 * height is at most log_{4/3}(n + 1) ~= 2.41 log2(n + 1), whatever the key
 * distribution: no hashing, nothing an adversary can choose ids against.
 * Subtree sizes give O(log n) rank and select for pagination.
 *
 * struct pmap is a small value (a root pointer): copy versions with
 * pmap_copy(), never with '='.
 */

enum pmap_order {
    PMAP_BY_ID,
    PMAP_BY_SEQ,
};

struct pmap_node;

struct pmap {
    struct pmap_node *root; /* owned reference; NULL when empty */
    enum pmap_order order;
};

/* A lookup key: 'id'/'len' for PMAP_BY_ID, 'seq' for PMAP_BY_SEQ. */
struct pmap_key {
    const char *id;
    size_t len;
    uint64_t seq;
};

/* Enough for any tree that fits in a 64-bit address space (log_{4/3} 2^60 < 145). */
#define PMAP_MAX_HEIGHT 160

/* In-order iterator. Borrowed: valid while the caller holds the version it walks. */
struct pmap_iter {
    const struct pmap_node *stack[PMAP_MAX_HEIGHT];
    int top;
};

/* Makes 'm' the empty map ordered by 'order'. */
void pmap_init(struct pmap *m, enum pmap_order order);

/* Drops 'm's reference to its version; 'm' becomes empty. */
void pmap_cleanup(struct pmap *m);

/* New reference: another handle on the same version as 'm' (O(1)). */
struct pmap pmap_copy(const struct pmap *m);

/*
 * New reference: the version of 'm' with 'doc' in it, replacing the doc with
 * the same key if any (*replaced, if not NULL, says which). 'm' is unchanged.
 * 'doc' is borrowed; the new version retains it.
 */
struct pmap pmap_put(const struct pmap *m, struct doc *doc, bool *replaced);

/*
 * New reference: the version of 'm' without the doc keyed 'k'. When there is
 * none, *found (if not NULL) is false and the result is a copy of 'm'.
 */
struct pmap pmap_del(const struct pmap *m, const struct pmap_key *k, bool *found);

/*
 * New reference: a version holding docs[0..n) (borrowed; each retained),
 * which must be in strictly increasing key order (panics otherwise). O(n)
 * and perfectly balanced: for bulk loads (import, recovery), where n puts
 * would allocate O(n log n) nodes.
 */
struct pmap pmap_from_sorted(enum pmap_order order, struct doc *const *docs, size_t n);

/* Compares the keys of two docs in 'order': <0, 0, >0. */
int pmap_cmp(enum pmap_order order, const struct doc *a, const struct doc *b);

/* Borrowed: the doc keyed 'k', or NULL. O(log n). */
struct doc *pmap_get(const struct pmap *m, const struct pmap_key *k);

/* Number of docs, O(1). */
size_t pmap_count(const struct pmap *m);

/* Borrowed: the doc at position 'k' (0-based) in key order, or NULL. O(log n). */
struct doc *pmap_at(const struct pmap *m, size_t k);

/* Number of docs whose key is below 'k' (the position 'k' has or would have). O(log n). */
size_t pmap_rank(const struct pmap *m, const struct pmap_key *k);

/* Starts 'it' at position 'start' (past the end is fine: yields nothing). O(log n). */
void pmap_iter_init(struct pmap_iter *it, const struct pmap *m, size_t start);

/* Borrowed: the next doc in key order, or NULL at the end. O(1) amortised. */
struct doc *pmap_iter_next(struct pmap_iter *it);

/* Height of the tree (0 when empty); O(n), for tests. */
int pmap_height(const struct pmap *m);

/* Checks ordering, sizes and the weight balance of every node; 0 or -EINVAL. O(n), for tests. */
int pmap_check(const struct pmap *m);

/* Nodes currently allocated / ever allocated in the process (debug and metrics counters). */
uint64_t pmap_live_nodes(void);
uint64_t pmap_nodes_made(void);

#endif
