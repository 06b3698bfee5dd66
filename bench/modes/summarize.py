#!/usr/bin/env python3
"""Parses wrk output and renders the mode sweep's summary (bench/modes/sweep.sh).

  summarize.py --parse WRK_OUTPUT   prints: rps p99_ms errors timeouts non2xx (tab-separated)
  summarize.py --out DIR            renders DIR/results.tsv and DIR/probes.jsonl as markdown
"""
import json
import os
import re
import statistics
import sys

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def to_ms(text):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    return float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")


def parse_wrk(text):
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p99 = re.search(r"^\s+99%\s+(\S+)", text, re.M)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    connect = read = write = timeout = 0
    if sock:
        connect, read, write, timeout = (int(x) for x in sock.groups())
    n2 = int(non2xx.group(1)) if non2xx else 0
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "p99_ms": to_ms(p99.group(1)) if p99 else float("nan"),
        "errors": connect + read + write + timeout + n2,
        "timeouts": timeout,
        "non2xx": n2,
    }


def fmt_int(x):
    return "{:,}".format(int(round(x)))


def fmt_ms(x):
    if x != x:  # nan
        return "-"
    return "%.2f" % x if x < 100 else "%.0f" % x


def throughput_tables(path):
    rows = []
    with open(path) as f:
        head = f.readline().rstrip("\n").split("\t")
        for line in f:
            if line.strip():
                rows.append(dict(zip(head, line.rstrip("\n").split("\t"))))
    if not rows:
        return ""
    servers, conns = [], []
    for r in rows:
        if r["server"] not in servers:
            servers.append(r["server"])
        if int(r["conns"]) not in conns:
            conns.append(int(r["conns"]))
    conns.sort()
    cell = {}
    for r in rows:
        cell.setdefault((r["server"], int(r["conns"])), []).append(r)
    nrounds = max(len(v) for v in cell.values())

    out = []
    out.append("Median req/s over %d round(s) (p99 ms, median) [errors summed over rounds]\n" % nrounds)
    out.append("| conns | " + " | ".join(servers) + " |")
    out.append("|---|" + "---|" * len(servers))
    for c in conns:
        cells = []
        for s in servers:
            v = cell.get((s, c))
            if not v:
                cells.append("-")
                continue
            rps = statistics.median(float(x["rps"]) for x in v)
            p99 = statistics.median(float(x["p99_ms"]) for x in v)
            err = sum(int(x["errors"]) for x in v)
            lo = min(float(x["rps"]) for x in v)
            txt = "%s (%s)" % (fmt_int(rps), fmt_ms(p99))
            if len(v) > 1 and lo < 0.5 * rps:
                txt += " min %s" % fmt_int(lo)
            if err:
                txt += " [%d err]" % err
            cells.append(txt)
        out.append("| %d | %s |" % (c, " | ".join(cells)))
    out.append("")
    out.append("Median req/s per busy server core (req/s / server CPU share) and median server CPU %\n")
    out.append("| conns | " + " | ".join(servers) + " |")
    out.append("|---|" + "---|" * len(servers))
    for c in conns:
        cells = []
        for s in servers:
            v = cell.get((s, c))
            if not v:
                cells.append("-")
                continue
            per = [float(x["rps"]) / max(float(x["server_cpu"]) / 100.0, 0.01) for x in v]
            cpu = statistics.median(float(x["server_cpu"]) for x in v)
            cells.append("%s (%d%%)" % (fmt_int(statistics.median(per)), cpu))
        out.append("| %d | %s |" % (c, " | ".join(cells)))
    out.append("")
    cpu0 = statistics.median(float(r["cpu0"]) - float(r["server_cpu"]) for r in rows)
    load = statistics.median(float(r["load1"]) for r in rows)
    rcs = sorted({r["server_rc"] for r in rows})
    out.append("Median CPU 0 busy not spent by the server: %.0f%%; median 1-min load: %.2f; "
               "server exit statuses seen: %s\n" % (cpu0, load, ", ".join(rcs)))
    return "\n".join(out)


def probe_tables(path):
    probes = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                probes.append(json.loads(line))
    if not probes:
        return ""
    out = []
    out.append("(a) 100 clients send headers (Content-Length: 100000) and 10 body bytes, then close "
               "with FIN or RST, either once all 100 requests reached the handler (\"late\") or right "
               "after sending (\"now\": data and FIN/RST arrive together); connection_timeout = %s s\n"
               % probes[0].get("timeout", "?"))
    out.append("| server | close | contexts created | freed within 1 s | all freed after | open conns after 1 s "
               "| client_abort | read_error | timeout_reached |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    for p in probes:
        for kind in ("fin", "rst", "fin_now", "rst_now"):
            a = p.get("abort_" + kind)
            if not a:
                continue
            label = kind.upper().replace("_NOW", " now") if "now" in kind else kind.upper() + " late"
            out.append("| %s | %s | %d | %d | %s | %d | %d | %d | %d |" % (
                p["name"], label, a["created"], a["freed_1s"],
                ("%.2f s" % a["all_freed_s"]) if a["all_freed_s"] is not None else "not within %ss" % a["waited_s"],
                a["open_1s"], a["term"].get("client_abort", 0), a["term"].get("read_error", 0),
                a["term"].get("timeout_reached", 0)))
    out.append("")
    out.append("(b) 8 concurrent GET /_debug/sleep?ms=2000 (suspend/resume), /healthz meanwhile\n")
    out.append("| server | /healthz answered | median ms | max ms | sleepers answered | sleeper max s |")
    out.append("|---|---|---|---|---|---|")
    for p in probes:
        b = p.get("stall")
        if not b:
            continue
        out.append("| %s | %d/%d | %.1f | %.1f | %d/%d | %.2f |" % (
            p["name"], b["healthz_ok"], b["healthz_sent"], b["healthz_median_ms"],
            b["healthz_max_ms"], b["sleepers_ok"], b["sleepers"], b["sleeper_max_s"]))
    out.append("")
    stops = ", ".join("%s: %s" % (p["name"], p.get("exit_status")) for p in probes)
    out.append("Probe servers' exit status on SIGTERM: %s\n" % stops)
    return "\n".join(out)


def main(argv):
    if len(argv) == 2 and argv[0] == "--parse":
        with open(argv[1], errors="replace") as f:
            r = parse_wrk(f.read())
        print("%.2f\t%.3f\t%d\t%d\t%d" % (r["rps"], r["p99_ms"], r["errors"], r["timeouts"], r["non2xx"]))
        return 0
    if len(argv) == 2 and argv[0] == "--out":
        d = argv[1]
        parts = []
        env = os.path.join(d, "env.txt")
        if os.path.exists(env):
            with open(env) as f:
                parts.append("```\n" + f.read().rstrip() + "\n```\n")
        tsv = os.path.join(d, "results.tsv")
        if os.path.exists(tsv):
            parts.append(throughput_tables(tsv))
        pj = os.path.join(d, "probes.jsonl")
        if os.path.exists(pj):
            parts.append(probe_tables(pj))
        print("\n".join(p for p in parts if p))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
