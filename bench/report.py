#!/usr/bin/env python3
"""Turn kvfeed-bench results into one markdown report of ratios.

Reads criterion's output (<target>/criterion/**/new/{benchmark,estimates}.json)
and the extra JSON of the thread-based workloads
(<target>/criterion-extra/{w3_latency,w7_oversub,mode}/*.json), where <target>
is --target-dir, else $CARGO_TARGET_DIR, else <repo>/target.

Prints markdown: kvfeed ÷ each peer per workload and parameter (time ratios:
below 1 means kvfeed is faster; for W7's delivered rate the ratio is
kvfeed's rate ÷ the peer's, above 1 means kvfeed delivers more), absolute
numbers, the machine (os.cpu_count(), memory), the command that reproduces
it, and which of the issue's targets were met.

--write-readme replaces the text between `<!-- bench:start -->` and
`<!-- bench:end -->` in README.md (the repository's, or --readme PATH); it
changes nothing when the markers are not there. Standard library only.
"""

import argparse
import glob
import json
import os
import re
import statistics
import sys

KVFEED = "kvfeed"
# Report order of the peers, with short column names.
PEERS = [
    ("mutex+vecdeque", "mutex+VecDeque"),
    ("mutex+vecdeque(lock-per-event)", "mutex, lock/event"),
    ("dashmap+tokio-broadcast", "dashmap+tokio"),
    ("papaya+crossbeam-channel", "papaya+xbeam"),
    ("papaya+async-broadcast", "papaya+async-bcast"),
    ("papaya+bus", "papaya+bus"),
]
PEER_IDS = [p for p, _ in PEERS]
# kvfeed read another way (W1/W4): shown next to kvfeed, never a "best peer".
VARIANTS = [("kvfeed(try_next-per-event)", "kvfeed, try_next/event")]
NAMES = dict(PEERS + VARIANTS)
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def target_dir(arg):
    if arg:
        return arg
    env = os.environ.get("CARGO_TARGET_DIR")
    if env:
        return env if os.path.isabs(env) else os.path.join(REPO, env)
    return os.path.join(REPO, "target")


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def load_criterion(tdir, stat):
    """{group_id: {function_id: ns per element (or per iteration)}}"""
    out = {}
    for bpath in glob.glob(os.path.join(tdir, "criterion", "**", "new", "benchmark.json"), recursive=True):
        bench = load_json(bpath)
        est = load_json(os.path.join(os.path.dirname(bpath), "estimates.json"))
        if not bench or not est:
            continue
        e = est.get(stat) or est.get("median") or est.get("mean")
        if not e:
            continue
        ns = e["point_estimate"]
        thr = bench.get("throughput") or {}
        n = thr.get("Elements") or thr.get("ElementsAndBytes", {}).get("elements") or 1
        out.setdefault(bench["group_id"], {})[bench["function_id"]] = ns / n
    return out


def load_extra(tdir, workload):
    res = {}
    for path in sorted(glob.glob(os.path.join(tdir, "criterion-extra", workload, "*.json"))):
        j = load_json(path)
        if j:
            res[j.get("impl") or j.get("bench") or os.path.basename(path)[:-5]] = j
    return res


def fmt_ns(ns):
    if ns is None:
        return "–"
    if ns >= 1e6:
        return "%.2f ms" % (ns / 1e6)
    if ns >= 1e4:
        return "%.1f µs" % (ns / 1e3)
    if ns >= 100:
        return "%.0f ns" % ns
    return "%.1f ns" % ns


def fmt_ratio(r):
    return "–" if r is None else "%.2f×" % r


def fmt_rate(r):
    if r >= 1e6:
        return "%.2f M/s" % (r / 1e6)
    return "%.0f k/s" % (r / 1e3)


def group_sort_key(g):
    # numeric parts sort numerically (K=4 before K=16)
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", g)]


class Report:
    def __init__(self):
        self.lines = []
        self.targets = []  # (text, met: bool|None, detail)

    def add(self, line=""):
        self.lines.append(line)

    def target(self, text, met, detail, alt=None):
        """alt: (met, detail) judged without the batch-drain mutex peer, if different."""
        self.targets.append((text, met, detail, alt))


def time_table(rep, crit, prefix, title, unit):
    groups = sorted([g for g in crit if g.startswith(prefix)], key=group_sort_key)
    if not groups:
        return
    present = [p for p, _ in VARIANTS + PEERS if any(p in crit[g] for g in groups)]
    rep.add("**%s** (%s; peer cells: time and kvfeed ÷ peer, below 1× = kvfeed faster)" % (title, unit))
    rep.add()
    head = ["workload", "kvfeed"] + [NAMES[p] for p in present] + ["best peer", "kvfeed ÷ best"]
    rep.add("| " + " | ".join(head) + " |")
    rep.add("|" + "---|" * len(head))
    for g in groups:
        row = crit[g]
        kv = row.get(KVFEED)
        cells = [g, fmt_ns(kv)]
        for p in present:
            v = row.get(p)
            if v is None:
                cells.append("–")
            elif kv is None:
                cells.append(fmt_ns(v))
            else:
                cells.append("%s · %s" % (fmt_ns(v), fmt_ratio(kv / v)))
        peers = [(row[p], p) for p in PEER_IDS if p in row]
        if peers:
            best_v, best_p = min(peers)
            cells.append("%s (%s)" % (NAMES[best_p], fmt_ns(best_v)))
            cells.append(fmt_ratio(kv / best_v) if kv is not None else "–")
        else:
            cells += ["–", "–"]
        rep.add("| " + " | ".join(cells) + " |")
    rep.add()


def best_peer(row):
    peers = [(row[p], p) for p in PEER_IDS if p in row]
    return min(peers) if peers else (None, None)


# The planning numbers behind the W1 targets were taken with a mutex peer that
# locks once per event read; the batch-drain mutex peer reads events in place
# under one lock, which no cursor-per-event design can match at high K. The
# targets are judged against every peer, and also without that one.
BATCH_MUTEX = "mutex+vecdeque"


def w1_targets(rep, crit):
    for g in sorted([g for g in crit if g.startswith("w1/")], key=group_sort_key):
        m = re.match(r"w1/(\w+)/K=(\d+)", g)
        if not m:
            continue
        k = int(m.group(2))
        row = crit[g]
        kv = row.get(KVFEED)
        bv, bp = best_peer(row)
        av, ap = best_peer({p: v for p, v in row.items() if p != BATCH_MUTEX})
        if kv is None or bv is None:
            continue
        if k in (16, 64):
            need = 2 if k == 16 else 4
            text = "W1 %s K=%d: ≥ %d× better than the best peer" % (m.group(1), k, need)
            met = lambda v: v / kv >= need  # noqa: E731
            detail = lambda v, p: "%.2f× (kvfeed %s, %s %s)" % (v / kv, fmt_ns(kv), p, fmt_ns(v))  # noqa: E731
        elif k <= 4:
            text = "W1 %s K=%d: no worse than 1.5× the best peer" % (m.group(1), k)
            met = lambda v: kv <= 1.5 * v  # noqa: E731
            detail = lambda v, p: "kvfeed ÷ best = %.2f× (kvfeed %s, %s %s)" % (kv / v, fmt_ns(kv), p, fmt_ns(v))  # noqa: E731
        else:
            continue
        alt = None
        if av is not None and ap != bp:
            alt = (met(av), detail(av, ap))
        rep.target(text, met(bv), detail(bv, bp), alt)


def w2_target(rep, crit):
    zero = crit.get("w2/N=0", {}).get(KVFEED)
    full = crit.get("w2/N=4096", {}).get(KVFEED)
    if zero and full:
        rep.target("W2 kvfeed writer cost, 4096 idle watchers ≤ 1.05× of 0", full <= 1.05 * zero,
                   "%.3f× (%s vs %s)" % (full / zero, fmt_ns(full), fmt_ns(zero)))


def w3_section(rep, w3):
    if not w3:
        return
    rep.add("**W3 publish-to-observe latency** (one writer, one watcher thread; HDR histogram; "
            "peer cells: value and kvfeed ÷ peer)")
    rep.add()
    cols = [("spin", "p50_ns"), ("spin", "p99_ns"), ("spin", "p999_ns"),
            ("parked", "p50_ns"), ("parked", "p99_ns"), ("parked", "p999_ns")]
    head = ["impl"] + ["%s %s" % (m, q[:-3].replace("p999", "p99.9")) for m, q in cols]
    rep.add("| " + " | ".join(head) + " |")
    rep.add("|" + "---|" * len(head))
    kv = w3.get(KVFEED)
    for name in [KVFEED] + PEER_IDS:
        j = w3.get(name)
        if not j:
            continue
        cells = [name]
        for m, q in cols:
            v = (j.get(m) or {}).get(q)
            base = ((kv or {}).get(m) or {}).get(q)
            if v is None:
                cells.append("–")
            elif name != KVFEED and base:
                cells.append("%s · %s" % (fmt_ns(v), fmt_ratio(base / v)))
            else:
                cells.append(fmt_ns(v))
        rep.add("| " + " | ".join(cells) + " |")
    rep.add()
    if kv:
        s, p = kv.get("spin") or {}, kv.get("parked") or {}
        if "p50_ns" in s:
            rep.target("W3 spinning p50 ≤ 300 ns", s["p50_ns"] <= 300, fmt_ns(s["p50_ns"]))
            rep.target("W3 spinning p99 ≤ 2 µs", s["p99_ns"] <= 2000, fmt_ns(s["p99_ns"]))
        if "p50_ns" in p:
            rep.target("W3 parked p50 ≤ 30 µs", p["p50_ns"] <= 30000, fmt_ns(p["p50_ns"]))


def w7_section(rep, w7):
    if not w7:
        return
    rep.add("**W7 oversubscribed** (4 writer + 4 watcher threads on the machine's cores; "
            "median of runs [min–max]; missed = told via Lagged/Overflowed, lost = neither received nor told)")
    rep.add()
    head = ["impl", "runs", "delivered/s", "kvfeed ÷ peer (delivered, median)", "missed (told)",
            "lost silently", "p50", "p99"]
    rep.add("| " + " | ".join(head) + " |")
    rep.add("|" + "---|" * len(head))
    summary = {}
    for name in [KVFEED] + PEER_IDS:
        j = w7.get(name)
        if not j or not j.get("runs"):
            continue
        runs = j["runs"]
        rates = [r["delivered_per_s"] for r in runs]
        summary[name] = {
            "median": statistics.median(rates), "min": min(rates), "max": max(rates),
            "lost": sum(r["lost_silently"] for r in runs),
        }
    kvs = summary.get(KVFEED)
    for name in [KVFEED] + PEER_IDS:
        if name not in summary:
            continue
        runs = w7[name]["runs"]
        s = summary[name]
        ratio = "–"
        if kvs and name != KVFEED:
            ratio = fmt_ratio(kvs["median"] / s["median"])
        rep.add("| %s | %d | %s [%s–%s] | %s | %.1f%% | %.1f%% | %s | %s |" % (
            name, len(runs), fmt_rate(s["median"]), fmt_rate(s["min"]), fmt_rate(s["max"]), ratio,
            100 * statistics.median(r["missed_share"] for r in runs),
            100 * statistics.median(r["lost_share"] for r in runs),
            fmt_ns(statistics.median(r["latency"]["p50_ns"] for r in runs)),
            fmt_ns(statistics.median(r["latency"]["p99_ns"] for r in runs))))
    rep.add()
    if kvs:
        peers = [(s["median"], n) for n, s in summary.items() if n != KVFEED]
        if peers:
            bv, bp = max(peers)
            worst_case = kvs["min"] / summary[bp]["max"]
            rep.target("W7 delivered ≥ 1.5× the best peer, nothing lost silently",
                       kvs["median"] >= 1.5 * bv and kvs["lost"] == 0,
                       "median %.2f× %s (kvfeed's worst run ÷ its best run: %.2f×); kvfeed lost silently: %d"
                       % (kvs["median"] / bv, bp, worst_case, kvs["lost"]))


def reclaim_note(rep, crit):
    groups = sorted([g for g in crit if g.startswith("reclaim/")], key=group_sort_key)
    if not groups:
        return
    rep.add("**The reclamation choice** (the same minimal ring of boxed events; seize ÷ crossbeam-epoch, below 1× = seize faster)")
    rep.add()
    rep.add("| operation | seize | crossbeam-epoch | seize ÷ epoch |")
    rep.add("|---|---|---|---|")
    for g in groups:
        s, e = crit[g].get("seize"), crit[g].get("crossbeam-epoch")
        rep.add("| %s | %s | %s | %s |" % (g, fmt_ns(s), fmt_ns(e),
                                           fmt_ratio(s / e) if s and e else "–"))
    rep.add()


def machine_lines(tdir, modes, w3, w7):
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    quick = any((j.get("machine") or {}).get("quick") for src in (modes, w3, w7) for j in src.values())
    loads = [float(l) for l in
             ((j.get("machine") or {}).get("loadavg", "").split(" ")[0] for src in (modes, w3, w7) for j in src.values())
             if re.match(r"^[0-9.]+$", l)]
    load = "%.1f–%.1f" % (min(loads), max(loads)) if loads else "unknown"
    env = os.environ.get("CARGO_TARGET_DIR")
    prefix = "CARGO_TARGET_DIR=%s " % env if env else ""
    lines = [
        "Machine: %s cores (`os.cpu_count()`), %.1f GiB memory; 1-minute load average when each bench "
        "binary started: %s (above the core count means other work was running: noisy numbers)."
        % (os.cpu_count(), mem / 2**30, load),
        "Reproduce: `%scargo bench -p kvfeed-bench && %spython3 bench/report.py` "
        "(quick smoke run: `bench/quick.sh`)." % (prefix, prefix),
    ]
    if quick:
        lines.append("**Quick mode (KVFEED_BENCH_QUICK / --test): sizes shrunk and timings of a few ms — "
                     "these numbers only show that the suite runs.**")
    return lines


def build(tdir, stat):
    crit = load_criterion(tdir, stat)
    w3, w7, modes = load_extra(tdir, "w3_latency"), load_extra(tdir, "w7_oversub"), load_extra(tdir, "mode")
    rep = Report()
    for line in machine_lines(tdir, modes, w3, w7):
        rep.add(line)
        rep.add()
    if not crit and not w3 and not w7:
        rep.add("No results found under `%s`: run `cargo bench -p kvfeed-bench` first." % tdir)
        return "\n".join(rep.lines)
    rep.add("Criterion statistic: %s per element (per put/event), or per iteration where noted." % stat)
    rep.add()
    time_table(rep, crit, "w1/", "W1 end-to-end cost per event (put a batch on 100k keys, drain K watchers on the same thread)", "ns/event")
    time_table(rep, crit, "w2/", "W2 writer cost per put with N registered watchers that never read", "ns/put")
    if any(g.startswith("w2/") for g in crit):
        rep.add("(papaya+xbeam and papaya+bus drop every event silently once an idle watcher's channel / the bus "
                "is full; the others overwrite and would report the lap.)")
        rep.add()
    time_table(rep, crit, "w4_", "W4 lapped slow watcher: one drain after being lapped 3×", "ns/drain, per iteration")
    time_table(rep, crit, "w5/", "W5 two writer threads, no watchers", "ns/put, both threads together")
    time_table(rep, crit, "w6_", "W6 get under a running writer (1e6 keys)", "ns/get")
    w3_section(rep, w3)
    w7_section(rep, w7)
    reclaim_note(rep, crit)
    w1_targets(rep, crit)
    w2_target(rep, crit)
    if rep.targets:
        rep.add("**Targets**")
        rep.add()
        rep.add("| target | met | measured | without the batch-drain mutex peer (the planning baseline) |")
        rep.add("|---|---|---|---|")
        for text, met, detail, alt in rep.targets:
            alt_cell = "(same)" if alt is None else "%s: %s" % ("met" if alt[0] else "**not met**", alt[1])
            rep.add("| %s | %s | %s | %s |" % (text, "yes" if met else "**no**", detail, alt_cell))
        rep.add()
    return "\n".join(rep.lines)


def write_readme(path, text):
    try:
        with open(path) as f:
            body = f.read()
    except OSError:
        print("%s not found: nothing written" % path, file=sys.stderr)
        return 1
    if START not in body or END not in body or body.index(START) > body.index(END):
        print("%s has no %s … %s markers: nothing written" % (path, START, END), file=sys.stderr)
        return 1
    head, rest = body.split(START, 1)
    _, tail = rest.split(END, 1)
    new = head + START + "\n" + text.rstrip("\n") + "\n" + END + tail
    if new != body:
        with open(path, "w") as f:
            f.write(new)
    print("wrote the benchmark section of %s" % path, file=sys.stderr)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target-dir", help="cargo target dir (default: $CARGO_TARGET_DIR or <repo>/target)")
    ap.add_argument("--stat", default="median", choices=["median", "mean", "slope"],
                    help="criterion estimate to use (default: median, robust to a noisy machine)")
    ap.add_argument("--write-readme", action="store_true",
                    help="also write the report between the bench markers of README.md")
    ap.add_argument("--readme", default=os.path.join(REPO, "README.md"), help="README to write")
    args = ap.parse_args()
    text = build(target_dir(args.target_dir), args.stat)
    print(text)
    if args.write_readme:
        return write_readme(args.readme, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
