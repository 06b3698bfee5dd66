#!/usr/bin/env python3
"""bench/report.py -- the markdown of one bench/run.sh run.

    report.py --out DIR --section full|quick [--doc docs/PERFORMANCE.md]

Reads DIR/{env.txt,scenarios.tsv,results.tsv,scale.tsv,callgrind.tsv,
callgrind_top.txt} (whichever exist), prints the tables: per scenario the
medians over repetitions, with "cairnd / peer" = cairnd's median req/s over
the peer's; the issue's targets with "met?"; the scale table; instructions
per request. With --doc, the same text replaces what stands between
<!-- bench:SECTION:begin --> and <!-- bench:SECTION:end --> in the doc (the
hand-written analysis around the markers is kept).
"""
import argparse
import os
import re
import statistics

NGINX = ("nginx-mem", "nginx-file")
PEER_ORDER = ("cairnd", "cairnd-always", "nginx-mem", "nginx-file", "gin", "nethttp", "jsonserver")
PEER_LABEL = {
    "cairnd": "**cairnd**",
    "cairnd-always": "**cairnd** sync=always",
    "nginx-mem": "nginx `return` (memory)",
    "nginx-file": "nginx static files",
    "gin": "gin",
    "nethttp": "Go net/http",
    "jsonserver": "json-server 0.17",
}


def read_tsv(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        head = f.readline().rstrip("\n").split("\t")
        rows = []
        for line in f:
            if not line.strip():
                continue
            v = line.rstrip("\n").split("\t")
            rows.append(dict(zip(head, v)))
        return rows


def fnum(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def med(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def fi(x):
    return "-" if x != x else "{:,}".format(int(round(x)))


def fms(us):
    if us != us:
        return "-"
    ms = us / 1000.0
    return "%.2f" % ms if ms < 10 else "%.1f" % ms if ms < 100 else "%.0f" % ms


def fr(x):
    return "-" if x != x else "%.2f" % x


class Agg:
    def __init__(self, rows):
        ok = [r for r in rows if r.get("rps") not in (None, "STARTFAIL", "NORESULT")]
        self.n = len(ok)
        self.failed = len(rows) - len(ok)
        self.rps = med([fnum(r["rps"]) for r in ok])
        self.rps_min = min([fnum(r["rps"]) for r in ok], default=float("nan"))
        self.rps_max = max([fnum(r["rps"]) for r in ok], default=float("nan"))
        self.p50 = med([fnum(r["p50_us"]) for r in ok])
        self.p99 = med([fnum(r["p99_us"]) for r in ok])
        self.non2xx = sum(int(r["non2xx"]) for r in ok)
        self.sock = sum(int(r["sockerr"]) for r in ok)
        self.errors = self.non2xx + self.sock + self.failed
        self.cpu = med([fnum(r["server_cpu"]) for r in ok])
        self.wrk_cpu = med([fnum(r["wrk_cpu"]) for r in ok])
        self.other = med([fnum(r["cpu0"]) - fnum(r["server_cpu"]) for r in ok])
        self.rss = med([fnum(r["rss_kb"]) for r in ok])
        self.rss_idle = med([fnum(r["rss_idle_kb"]) for r in ok])
        self.threads = med([fnum(r["threads"]) for r in ok])
        per_core = [fnum(r["rps"]) / (fnum(r["server_cpu"]) / 100) for r in ok
                    if fnum(r["server_cpu"]) > 1]
        self.per_core = med(per_core)


def scenario_tables(out, results, scen):
    by = {}
    for r in results:
        by.setdefault(r["scenario"], {}).setdefault(r["peer"], []).append(r)
    aggs = {sc: {p: Agg(rs) for p, rs in peers.items()} for sc, peers in by.items()}
    lines = []
    for s in scen:
        sc = s["id"]
        lines.append("#### %s: %s (%s connections%s)" % (
            sc, s["what"], s["conns"], "" if s["enabled"] == "yes" else ""))
        lines.append("")
        if s["enabled"] != "yes" or sc not in aggs:
            if s["enabled"] != "yes":
                lines.append("Not yet available: this scenario's row in bench/run.sh is disabled.")
            else:
                lines.append("Not run in this run.")
            lines.append("")
            continue
        a = aggs[sc]
        c = a.get("cairnd") or a.get("cairnd-always")
        lines.append("| peer | n | req/s (median) | min-max | cairnd / peer | req/s per server core "
                     "| p50 ms | p99 ms | errors | server CPU % | wrk CPU % | other CPU0 % "
                     "| RSS idle / under load kB | threads |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for p in PEER_ORDER:
            if p not in a:
                continue
            x = a[p]
            ratio = c.rps / x.rps if c and x.rps else float("nan")
            err = "%d" % x.errors
            if x.errors:
                err = "%d (%d non-2xx, %d socket%s)" % (
                    x.errors, x.non2xx, x.sock, ", %d failed runs" % x.failed if x.failed else "")
            lines.append("| %s | %d | %s | %s-%s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s |" % (
                PEER_LABEL.get(p, p), x.n, fi(x.rps), fi(x.rps_min), fi(x.rps_max), fr(ratio),
                fi(x.per_core), fms(x.p50), fms(x.p99), err, fi(x.cpu), fi(x.wrk_cpu),
                fi(x.other), fi(x.rss_idle), fi(x.rss), fi(x.threads)))
        lines.append("")
    return aggs, lines


def scale_table(rows):
    if not rows:
        return {}, []
    by = {}
    for r in rows:
        by.setdefault(int(r["docs"]), []).append(r)
    lines = ["| documents | db.json bytes | docs' compact bytes | load (import) ms | RSS idle kB "
             "| RSS under load kB | RSS per doc | RSS / raw JSON | req/s (64 conns) | p50 ms (64) "
             "| p99 ms (64) | server CPU % (64) | req/s per server core (64) | p50 ms (1 conn) "
             "| p99 ms (1 conn) | req/s (paced) | p50 ms (paced) | p99 ms (paced) | errors |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    agg = {}
    base_rss = None
    for n in sorted(by):
        rs = by[n]
        g = lambda k: med([fnum(r[k]) for r in rs])
        d = {k: g(k) for k in ("db_bytes", "doc_bytes", "load_ms", "rss_idle_kb", "rss_load_kb",
                               "rps", "p50_us", "p99_us", "p50_c1_us", "p99_c1_us")}
        for k in ("rps_paced", "p50_paced_us", "p99_paced_us"):  # absent before 2026-11-30
            d[k] = med([fnum(r[k]) for r in rs if r.get(k, "-") != "-"])
        d["errors"] = sum(int(r["errors"]) for r in rs)
        d["cpu"] = med([fnum(r.get("server_cpu")) for r in rs])
        d["per_core"] = med([fnum(r["rps"]) / (fnum(r.get("server_cpu")) / 100) for r in rs
                             if fnum(r.get("server_cpu")) > 1])
        d["n"] = len(rs)
        agg[n] = d
        if n == 0:
            base_rss = d["rss_idle_kb"]
            lines.append("| 0 (empty store) | - | - | %s | %s | %s |" % (
                fi(d["load_ms"]), fi(d["rss_idle_kb"]), fi(d["rss_load_kb"])) + " - |" * 13)
            continue
        rss_b = d["rss_idle_kb"] * 1024
        per_doc = (rss_b - (base_rss or 0) * 1024) / n
        ratio = rss_b / d["doc_bytes"] if d["doc_bytes"] else float("nan")
        lines.append("| %s | %s | %s | %s | %s | %s | %s B | %s | %s | %s | %s | %s | %s | %s | %s "
                     "| %s | %s | %s | %d |" % (
            fi(n), fi(d["db_bytes"]), fi(d["doc_bytes"]), fi(d["load_ms"]), fi(d["rss_idle_kb"]),
            fi(d["rss_load_kb"]), fi(per_doc), fr(ratio), fi(d["rps"]), fms(d["p50_us"]),
            fms(d["p99_us"]), fi(d["cpu"]), fi(d["per_core"]), fms(d["p50_c1_us"]),
            fms(d["p99_c1_us"]), fi(d["rps_paced"]), fms(d["p50_paced_us"]),
            fms(d["p99_paced_us"]), d["errors"]))
    lines.append("")
    lines.append("RSS per doc = (idle RSS - empty-store idle RSS) / documents. RSS / raw JSON = idle RSS "
                 "over the documents' compact JSON bytes.")
    return agg, lines


def targets(aggs, scen, scale):
    def a(sc, p):
        return aggs.get(sc, {}).get(p)

    def nginx_best(sc):
        xs = [a(sc, p) for p in NGINX if a(sc, p)]
        return max(xs, key=lambda x: x.rps) if xs else None

    rows = []

    def ratio_row(sc, peer_name, other, want, label):
        c = a(sc, "cairnd")
        if c is None or other is None or not other.rps:
            rows.append((sc, label, ">= %.1fx" % want, "not measured", "-"))
            return
        r = c.rps / other.rps
        core = (c.per_core / other.per_core) if other.per_core == other.per_core and other.per_core else float("nan")
        rows.append((sc, label, ">= %.1fx" % want,
                     "%.2fx (%s vs %s req/s; per server core %.2fx)" % (r, fi(c.rps), fi(other.rps), core),
                     "yes" if r >= want else "**no**"))

    def errors_row(sc):
        c = a(sc, "cairnd")
        if c is None:
            rows.append((sc, "cairnd errors", "0", "not measured", "-"))
            return
        rows.append((sc, "cairnd errors", "0", "%d" % c.errors, "yes" if c.errors == 0 else "**no**"))

    by_id = {s["id"]: s for s in scen}
    for sc in ("S1", "S2"):
        nb = nginx_best(sc)
        ratio_row(sc, "nginx", nb, 0.9, "vs the faster nginx (%s)" % (PEER_LABEL[[p for p in NGINX if a(sc, p) is nb][0]] if nb else "-"))
        ratio_row(sc, "gin", a(sc, "gin"), 1.6 if sc == "S1" else 5.0, "vs gin")
    ratio_row("S3", "gin", a("S3", "gin"), 2.0, "vs gin")
    ratio_row("S3", "jsonserver", a("S3", "jsonserver"), 20.0, "vs json-server")
    for sc in ("S4", "S5"):
        ratio_row(sc, "gin", a(sc, "gin"), 1.5, "vs gin")
        errors_row(sc)
    s4a = by_id.get("S4a")
    if s4a and s4a["enabled"] != "yes":
        rows.append(("S4a", "sync=always vs gin", ">= 1.5x (S4 target)", "not yet available", "-"))
    elif a("S4a", "cairnd-always"):
        c, g = a("S4a", "cairnd-always"), a("S4", "gin")
        r = c.rps / g.rps if g and g.rps else float("nan")
        # the 1.5x target is S4's, with store.sync=none; gin writes nothing to disk, so this
        # row is information (the group-commit table is the durable-write figure to track)
        rows.append(("S4a", "sync=always vs gin (S4)", "(info; the target is S4's)",
                     "%.2fx, %d errors" % (r, c.errors), "-"))
    nb = nginx_best("S6")
    ratio_row("S6", "nginx", nb, 0.9, "vs the faster nginx")
    errors_row("S7")
    c7 = a("S7", "cairnd")
    if c7:
        rows.append(("S7", "cairnd p99", "< 50 ms", "%s ms" % fms(c7.p99), "yes" if c7.p99 < 50000 else "**no**"))
    else:
        rows.append(("S7", "cairnd p99", "< 50 ms", "not measured", "-"))
    small = min([n for n in scale if n > 0], default=None)
    big = max([n for n in scale if n > 0], default=None)
    if small and big and big != small:
        # The target on the two runs with no queue of either side's making; the saturated
        # run's ratio is information: in a closed loop of 64 connections its p50 moves with
        # which side, wrk or cairnd, is the slower (docs/PERFORMANCE.md, "GET p50 at scale").
        for key, label, target in (("p50_c1_us", "1 conn", "<= 1.5x"),
                                   ("p50_paced_us", "64 conns, each pausing 1 ms", "<= 1.5x"),
                                   ("p50_us", "64 conns, saturated", "(info)")):
            r = scale[big][key] / scale[small][key]
            met = "-" if target == "(info)" else "yes" if r <= 1.5 else "**no**" if r == r else "-"
            got = "%.2fx (%s vs %s ms)" % (r, fms(scale[big][key]), fms(scale[small][key]))
            rows.append(("scale", "GET p50 at %s docs / at %s docs (%s)" % (fi(big), fi(small), label),
                         target, got if r == r else "not measured", met))
        r = scale[small]["per_core"] / scale[big]["per_core"]
        rows.append(("scale", "GET service time at %s docs / at %s docs (req/s per server core, "
                     "saturated)" % (fi(big), fi(small)), "(info)", "%.2fx" % r, "-"))
        d = scale[big]
        r = d["rss_idle_kb"] * 1024 / d["doc_bytes"]
        rows.append(("scale", "RSS at %s docs / raw JSON" % fi(big), "<= 4x",
                     "%.2fx (%s MiB for %s MiB of JSON)" % (r, fi(d["rss_idle_kb"] / 1024), fi(d["doc_bytes"] / 2**20)),
                     "yes" if r <= 4 else "**no**"))
    if 0 in scale:
        kb = scale[0]["rss_idle_kb"]
        rows.append(("idle", "RSS, empty store", "< 8 MiB", "%.1f MiB" % (kb / 1024), "yes" if kb < 8192 else "**no**"))
    c1 = a("S1", "cairnd")
    if c1:
        rows.append(("idle", "RSS with the bench db (10,200 docs), before load", "(info)",
                     "%.1f MiB" % (c1.rss_idle / 1024), "-"))
    out = ["| scenario | target | wanted | measured | met? |", "|---|---|---|---|---|"]
    for r in rows:
        out.append("| %s | %s | %s | %s | %s |" % r)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--section", default="full")
    ap.add_argument("--doc")
    a = ap.parse_args()
    d = a.out
    env = open(os.path.join(d, "env.txt")).read().strip().splitlines() if os.path.exists(
        os.path.join(d, "env.txt")) else []
    scen = []
    p = os.path.join(d, "scenarios.tsv")
    if os.path.exists(p):
        for line in open(p):
            v = line.rstrip("\n").split("\t")
            if len(v) >= 6:
                scen.append(dict(id=v[0], conns=v[1], mode=v[2], args=v[3], enabled=v[4], what=v[5]))
    results = read_tsv(os.path.join(d, "results.tsv"))
    aggs, stab = scenario_tables(d, results, scen)
    scale, sclines = scale_table(read_tsv(os.path.join(d, "scale.tsv")))
    cg = read_tsv(os.path.join(d, "callgrind.tsv"))

    md = []
    md.append("Run of %s, results in `%s`." % (
        next((e.split(": ", 1)[1] for e in env if e.startswith("date:")), "?"),
        os.path.relpath(d, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))))
    md.append("")
    md.append("```")
    md.extend(env)
    md.append("```")
    md.append("")
    md.append("### Targets (ratios within this run)")
    md.append("")
    md.extend(targets(aggs, scen, scale))
    md.append("")
    md.append("### Scenarios (medians over the repetitions; errors summed)")
    md.append("")
    md.append("cairnd / peer = cairnd's median req/s over the peer's. req/s per server core = req/s "
              "over the server's own CPU time (utime+stime of its process tree, /proc/PID/stat): "
              "when wrk's core is the ceiling, this is the figure that still compares servers. "
              "other CPU0 % = CPU 0 busy time not spent by the server (other work on the machine). "
              "nginx answers S3 with the precomputed bytes (the ceiling for sending them, not a query "
              "engine) and has no S4/S5 (no writes).")
    md.append("")
    md.extend(stab)
    md.append("### Scale: GET by id with 1,000 / 100,000 / 1,000,000 posts (cairnd only)")
    md.append("")
    md.extend(sclines or ["Not run in this run."])
    md.append("")
    md.append("### Instructions per request (callgrind, all threads of cairnd)")
    md.append("")
    if cg:
        md.append("| batch | requests | instructions | instructions / request | seconds under valgrind |")
        md.append("|---|---|---|---|---|")
        for r in cg:
            md.append("| %s | %s | %s | %s | %s |" % (
                {"s1": "S1 GET /v1/posts/{id}", "s2": "S2 GET /v1/comments (10 KB)",
                 "idle": "idle (no requests, as long as S1)"}.get(r["batch"], r["batch"]),
                r["requests"], fi(fnum(r["Ir"])), fi(fnum(r["Ir_per_request"])), r["seconds"]))
        md.append("")
        top = os.path.join(d, "callgrind_top.txt")
        if os.path.exists(top):
            md.append("<details><summary>callgrind: top functions by own instructions per batch</summary>")
            md.append("")
            md.append("```")
            md.append(open(top).read().rstrip())
            md.append("```")
            md.append("</details>")
            md.append("")
    else:
        md.append("Not run in this run.")
        md.append("")
    md.append("### Durable writes: group commit (store.sync = always)")
    md.append("")
    dur = os.path.join(d, "durability.md")
    if os.path.exists(dur):
        md.append("`tests/integration/durability_bench.py` (wrk POSTs of a 75-byte doc; the raw rate is "
                  "one thread appending 128 bytes + `fdatasync` on the same file system, in the same "
                  "run; target: 64 writers at least 10x one writer).")
        md.append("")
        md.extend(open(dur).read().rstrip().splitlines())
    else:
        md.append("Not run in this run.")
    md.append("")
    text = "\n".join(md)
    print(text)

    if a.doc:
        begin = "<!-- bench:%s:begin -->" % a.section
        end = "<!-- bench:%s:end -->" % a.section
        doc = open(a.doc).read() if os.path.exists(a.doc) else ""
        block = "%s\n<!-- generated by bench/run.sh%s; edits here are overwritten -->\n\n%s\n\n%s" % (
            begin, " --quick" if a.section == "quick" else "", text, end)
        if begin in doc and end in doc:
            doc = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda m: block, doc, flags=re.S)
        else:
            doc = doc.rstrip() + "\n\n## Latest %s run\n\n%s\n" % (a.section, block)
        with open(a.doc, "w") as f:
            f.write(doc)


if __name__ == "__main__":
    main()
