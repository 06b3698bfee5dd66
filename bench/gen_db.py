#!/usr/bin/env python3
"""bench/gen_db.py -- a deterministic json-server db.json for the benchmarks.

    bench/gen_db.py OUT.json                  # posts 10,000, users 100, comments 100
    bench/gen_db.py --posts 1000000 OUT.json  # the scale runs
    bench/gen_db.py --static DIR OUT.json     # also write the nginx static tree under DIR

Collections (every document has an integer "id" 1..n):
  posts     N docs of about 100 bytes compact: id, title, userId (1..10), views, published, tags
  users     100 docs
  comments  100 docs of about 100 bytes: the ~10 KB list of scenario S2

The same seed always gives the same bytes. --static writes, for nginx, the
bytes cairnd serves: DIR/v1/posts/{id} (one file per post), DIR/v1/comments
(the list), DIR/v1/q3 (the answer to the S3 query), DIR/v1/users, each
compact JSON, the documents' members in the order written here.
"""
import argparse
import json
import os
import random
import sys

WORDS = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
         "incididunt ut labore et dolore magna aliqua enim ad minim veniam quis nostrud").split()
TAGS = ("news", "tech", "life", "music", "sport", "travel", "food", "misc")

S3_QUERY = {"userId": 7, "sort": "views", "order": "desc", "limit": 10}


def compact(v):
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def make_posts(rng, n):
    out = []
    for i in range(1, n + 1):
        nwords = rng.randint(2, 4)
        out.append({
            "id": i,
            "title": " ".join(rng.choice(WORDS) for _ in range(nwords)),
            "userId": rng.randint(1, 10),
            "views": rng.randint(0, 99999),
            "published": rng.random() < 0.8,
            "tags": rng.sample(TAGS, 2),
        })
    return out


def make_users(rng, n):
    return [{
        "id": i,
        "name": "User %d %s" % (i, rng.choice(WORDS).capitalize()),
        "username": "user%d" % i,
        "email": "user%d@example.com" % i,
    } for i in range(1, n + 1)]


def make_comments(rng, n):
    return [{
        "id": i,
        "postId": rng.randint(1, 10000),
        "body": " ".join(rng.choice(WORDS) for _ in range(7)),
        "email": "c%d@example.com" % i,
    } for i in range(1, n + 1)]


def s3_answer(posts):
    """userId=7, _sort=views, _order=desc, _limit=10 -- json-server sorts stably."""
    sel = [p for p in posts if p["userId"] == S3_QUERY["userId"]]
    sel.sort(key=lambda p: p["views"], reverse=True)
    return sel[:S3_QUERY["limit"]]


def write(path, data):
    with open(path, "w", encoding="utf-8") as f:
        f.write(data)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--posts", type=int, default=10000)
    ap.add_argument("--users", type=int, default=100)
    ap.add_argument("--comments", type=int, default=100)
    ap.add_argument("--seed", type=int, default=20240501)
    ap.add_argument("--static", metavar="DIR", help="also write the nginx static tree")
    ap.add_argument("--only-posts", action="store_true",
                    help="db.json with the posts collection alone (scale runs)")
    a = ap.parse_args()

    rng = random.Random(a.seed)
    posts = make_posts(rng, a.posts)
    db = {"posts": posts}
    if not a.only_posts:
        db["users"] = make_users(rng, a.users)
        db["comments"] = make_comments(rng, a.comments)

    # One document per line: readable, and byte-identical for one seed.
    with open(a.out, "w", encoding="utf-8") as f:
        f.write("{\n")
        names = list(db)
        for k, name in enumerate(names):
            f.write("  %s: [\n" % compact(name))
            docs = db[name]
            for j, d in enumerate(docs):
                f.write("    " + compact(d) + (",\n" if j + 1 < len(docs) else "\n"))
            f.write("  ]" + (",\n" if k + 1 < len(names) else "\n"))
        f.write("}\n")

    if a.static:
        base = os.path.join(a.static, "v1")
        os.makedirs(os.path.join(base, "posts"), exist_ok=True)
        for p in posts:
            write(os.path.join(base, "posts", str(p["id"])), compact(p))
        for name in ("users", "comments"):
            if name in db:
                write(os.path.join(base, name), "[" + ",".join(compact(d) for d in db[name]) + "]")
        write(os.path.join(base, "q3"), "[" + ",".join(compact(d) for d in s3_answer(posts)) + "]")

    raw = sum(len(compact(d)) for d in posts)
    with open(a.out + ".meta", "w") as f:
        f.write("%d\n" % raw)  # compact bytes of the posts: the "raw JSON" of the scale table
    print("%s: posts %d (%d bytes compact, %.1f per doc)%s" % (
        a.out, len(posts), raw, raw / max(1, len(posts)),
        "" if a.only_posts else ", users %d, comments %d (%d bytes as a list)" % (
            a.users, a.comments, 2 + len(db["comments"]) - 1 + sum(len(compact(d)) for d in db["comments"]))),
        file=sys.stderr)


if __name__ == "__main__":
    main()
