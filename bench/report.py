#!/usr/bin/env python3
"""Turn kvfeed-bench results into one markdown report of ratios.

Reads criterion's output (<target>/criterion/**/new/{benchmark,estimates}.json)
and the extra JSON of the thread-based workloads
(<target>/criterion-extra/{w3_latency,w7_oversub,mode}/*.json), where <target>
is --target-dir, else $CARGO_TARGET_DIR, else <repo>/target.

Also reads <target>/criterion-extra/memory/{keys,flat}.json (examples/memory.rs)
and <target>/criterion-extra/instr/instr.json (bench/callgrind.sh).

Prints markdown: kvfeed ÷ each peer per workload and parameter (time ratios:
below 1 means kvfeed is faster; for W7's delivered rate the ratio is
kvfeed's rate ÷ the peer's, above 1 means kvfeed delivers more), absolute
numbers, the machine (os.cpu_count(), memory), the command that reproduces
it, and which of issue 9's targets were met. W1 is two tables: per-event
reads against per-event peers, batch reads against the batch peer.

A target is "yes" only when the spread supports it (criterion: the
confidence interval of both estimates; W7: the min–max over the runs),
"no" when the spread supports the opposite, and "unclear" otherwise (the
point estimate's verdict is given).

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
VARIANTS = [("kvfeed(try_next-per-event)", "kvfeed, try_next/event"),
            ("kvfeed(record-engine)", "kvfeed, record engine")]
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
    """({group_id: {function_id: ns per element (or per iteration)}},
        {group_id: {function_id: (low, high) of the estimate's confidence interval}})"""
    out, ci = {}, {}
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
        c = e.get("confidence_interval") or {}
        lo, hi = c.get("lower_bound", ns), c.get("upper_bound", ns)
        ci.setdefault(bench["group_id"], {})[bench["function_id"]] = (lo / n, hi / n)
    return out, ci


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
        self.targets = []  # (text, verdict, detail)
        self.other_targets = []
        self.quick = False

    def add(self, line=""):
        self.lines.append(line)

    def target(self, text, verdict, detail):
        """One of issue 9's targets."""
        self.targets.append((text, verdict, detail))

    def other(self, text, met, detail):
        """A target from before issue 9 (W3)."""
        self.other_targets.append((text, "yes" if met else "**no**", detail))


def verdict(ok, point, favourable, unfavourable):
    """'yes' when even the unfavourable end of the spread meets the target,
    '**no**' when even the favourable end misses it, else 'unclear'."""
    if ok(unfavourable):
        return "yes"
    if not ok(favourable):
        return "**no**"
    return "unclear (point estimate: %s)" % ("met" if ok(point) else "not met")


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


def best_peer(row, peers=None):
    peers = [(row[p], p) for p in (peers or PEER_IDS) if p in row]
    return min(peers) if peers else (None, None)


# W1's two classes (issue 9: "per-event reads compare with per-event peers;
# batch reads with batch peers"): (kvfeed's function id, its label, peers).
W1_CLASSES = [
    ("per-event", "kvfeed(try_next-per-event)", "kvfeed `try_next`",
     ["mutex+vecdeque(lock-per-event)", "dashmap+tokio-broadcast", "papaya+crossbeam-channel",
      "papaya+async-broadcast", "papaya+bus"]),
    ("batch", "kvfeed", "kvfeed `drain_with`", ["mutex+vecdeque"]),
]


def w1_limit(cls, k):
    """Issue 9's bound on kvfeed ÷ best peer for W1 uniform, or None."""
    if cls == "batch":
        return 2.0
    return 2.0 if k in (0, 1) else 1.0


def time_ratio_spread(kv, kv_ci, peer, peer_ci):
    """kvfeed ÷ peer: (point, favourable end, unfavourable end) from the CIs."""
    return kv / peer, kv_ci[0] / peer_ci[1], kv_ci[1] / peer_ci[0]


def w1_tables(rep, crit, ci):
    groups = sorted([g for g in crit if g.startswith("w1/")], key=group_sort_key)
    if not groups:
        return
    for cls, kv_id, kv_label, peers in W1_CLASSES:
        present = [p for p in peers if any(p in crit[g] for g in groups)]
        rep.add("**W1 %s reads** — put a batch on 100k keys, then drain K watchers on the same thread "
                "(ns per event put; peer cells: time · kvfeed ÷ peer, below 1× = kvfeed faster; "
                "spread: from criterion's confidence intervals)" % cls)
        rep.add()
        head = ["workload", kv_label] + [NAMES[p] for p in present] + \
            ["best peer", "kvfeed ÷ best [spread]", "issue 9 target", "met"]
        rep.add("| " + " | ".join(head) + " |")
        rep.add("|" + "---|" * len(head))
        for g in groups:
            m = re.match(r"w1/(\w+)/K=(\d+)", g)
            row, rci = crit[g], ci.get(g, {})
            kv = row.get(kv_id)
            cells = [g, fmt_ns(kv)]
            for p in present:
                v = row.get(p)
                if v is None:
                    cells.append("–")
                elif kv is None:
                    cells.append(fmt_ns(v))
                else:
                    cells.append("%s · %s" % (fmt_ns(v), fmt_ratio(kv / v)))
            bv, bp = best_peer(row, peers)
            if kv is None or bv is None:
                rep.add("| " + " | ".join(cells + ["–"] * 4) + " |")
                continue
            point, fav, unfav = time_ratio_spread(kv, rci.get(kv_id, (kv, kv)), bv, rci.get(bp, (bv, bv)))
            cells.append("%s (%s)" % (NAMES[bp], fmt_ns(bv)))
            cells.append("%s [%.2f–%.2f]" % (fmt_ratio(point), fav, unfav))
            limit = w1_limit(cls, int(m.group(2))) if m and m.group(1) == "uniform" else None
            if limit is None:
                cells += ["–", "–"]
            else:
                v = verdict(lambda r: r <= limit, point, fav, unfav)
                cells += ["≤ %g× best" % limit, v]
                rep.target("W1 %s uniform K=%s: kvfeed ≤ %g× the best %s peer" % (cls, m.group(2), limit, cls), v,
                           "%s [%.2f–%.2f] (%s %s, %s %s)" % (fmt_ratio(point), fav, unfav, kv_label, fmt_ns(kv),
                                                              NAMES[bp], fmt_ns(bv)))
            rep.add("| " + " | ".join(cells) + " |")
        rep.add()
    # At K = 0 nothing is read: both classes measured the same puts, so their
    # two numbers for one implementation show how noisy the run was.
    for dist in ("uniform", "zipf"):
        row = crit.get("w1/%s/K=0" % dist, {})
        pairs = [("kvfeed", row.get("kvfeed"), row.get("kvfeed(try_next-per-event)")),
                 ("mutex", row.get("mutex+vecdeque"), row.get("mutex+vecdeque(lock-per-event)"))]
        pairs = [(n, a, b) for n, a, b in pairs if a and b]
        if pairs:
            rep.add("Noise check, w1/%s/K=0 (no reads: the two classes measured the same puts): %s." % (
                dist, "; ".join("%s %s vs %s (%.2f×)" % (n, fmt_ns(a), fmt_ns(b), max(a, b) / min(a, b))
                                for n, a, b in pairs)))
            rep.add()


def w2_targets(rep, crit, ci):
    row0, ci0 = crit.get("w2/N=0", {}), ci.get("w2/N=0", {})
    zero = row0.get(KVFEED)
    mutex = row0.get("mutex+vecdeque")
    if zero and mutex:
        point, fav, unfav = time_ratio_spread(zero, ci0.get(KVFEED, (zero, zero)), mutex,
                                              ci0.get("mutex+vecdeque", (mutex, mutex)))
        rep.target("W2 put alone (0 watchers): kvfeed ≤ 2× the mutex peer",
                   verdict(lambda r: r <= 2.0, point, fav, unfav),
                   "%s [%.2f–%.2f] (kvfeed %s, mutex %s)" % (fmt_ratio(point), fav, unfav, fmt_ns(zero), fmt_ns(mutex)))
    full = crit.get("w2/N=4096", {}).get(KVFEED)
    if zero and full:
        fci = ci.get("w2/N=4096", {}).get(KVFEED, (full, full))
        point, fav, unfav = time_ratio_spread(full, fci, zero, ci0.get(KVFEED, (zero, zero)))
        rep.target("W2 kvfeed put with 4096 idle watchers ≤ 1.05× with 0",
                   verdict(lambda r: r <= 1.05, point, fav, unfav),
                   "%.3f× [%.3f–%.3f] (%s vs %s)" % (point, fav, unfav, fmt_ns(full), fmt_ns(zero)))


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
            rep.other("W3 spinning p50 ≤ 300 ns", s["p50_ns"] <= 300, fmt_ns(s["p50_ns"]))
            rep.other("W3 spinning p99 ≤ 2 µs", s["p99_ns"] <= 2000, fmt_ns(s["p99_ns"]))
        if "p50_ns" in p:
            rep.other("W3 parked p50 ≤ 30 µs", p["p50_ns"] <= 30000, fmt_ns(p["p50_ns"]))


def w7_section(rep, w7):
    if not w7:
        return
    rep.add("**W7 oversubscribed** (4 writer + 4 watcher threads on the machine's cores, runs interleaved "
            "across implementations; median of runs [min–max]; missed = told via Lagged/Overflowed, "
            "lost = neither received nor told, summed over runs)")
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
        p99s = [r["latency"]["p99_ns"] for r in runs]
        summary[name] = {
            "median": statistics.median(rates), "min": min(rates), "max": max(rates),
            "p99": statistics.median(p99s), "p99_min": min(p99s), "p99_max": max(p99s),
            "lost": sum(r["lost_silently"] for r in runs),
            "slots": sum(r["written"] * 4 for r in runs),
            "runs": len(runs),
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
        rep.add("| %s | %d | %s [%s–%s] | %s | %.1f%% | %d (%.2f%%) | %s | %s [%s–%s] |" % (
            name, len(runs), fmt_rate(s["median"]), fmt_rate(s["min"]), fmt_rate(s["max"]), ratio,
            100 * statistics.median(r["missed_share"] for r in runs),
            s["lost"], 100 * s["lost"] / max(s["slots"], 1),
            fmt_ns(statistics.median(r["latency"]["p50_ns"] for r in runs)),
            fmt_ns(s["p99"]), fmt_ns(s["p99_min"]), fmt_ns(s["p99_max"])))
    rep.add()
    if not kvs:
        return
    peers = {n: s for n, s in summary.items() if n != KVFEED}
    if kvs["runs"] < 9:
        rep.add("(W7 ran %d times; issue 9 asks for at least 9.)" % kvs["runs"])
        rep.add()
    if peers:
        bp = max(peers, key=lambda n: peers[n]["median"])
        b = peers[bp]
        point, fav, unfav = kvs["median"] / b["median"], kvs["max"] / b["min"], kvs["min"] / b["max"]
        rep.target("W7 delivered events/s ≥ the best peer (%d runs)" % kvs["runs"],
                   verdict(lambda r: r >= 1.0, point, fav, unfav),
                   "median %s [worst %.2f – best %.2f] (kvfeed %s, %s %s)"
                   % (fmt_ratio(point), unfav, fav, fmt_rate(kvs["median"]), bp, fmt_rate(b["median"])))
        lp = min(peers, key=lambda n: peers[n]["p99"])
        b = peers[lp]
        point, fav, unfav = kvs["p99"] / b["p99"], kvs["p99_min"] / b["p99_max"], kvs["p99_max"] / b["p99_min"]
        rep.target("W7 p99 latency ≤ the best peer's (%d runs)" % kvs["runs"],
                   verdict(lambda r: r <= 1.0, point, fav, unfav),
                   "median %s [best %.2f – worst %.2f] (kvfeed %s, %s %s)"
                   % (fmt_ratio(point), fav, unfav, fmt_ns(kvs["p99"]), lp, fmt_ns(b["p99"])))
    rep.target("W7 nothing lost silently", "yes" if kvs["lost"] == 0 else "**no**",
               "kvfeed lost silently: %d of %d deliveries" % (kvs["lost"], kvs["slots"]))


def memory_section(rep, mem):
    keys, flat = mem.get("keys"), mem.get("flat")
    if keys and keys.get("results"):
        rep.add("**Memory: RSS per live `u64 -> u64` key** (%d keys written once, each implementation in a fresh "
                "process; (VmRSS after − before) ÷ keys; rings / broadcast buffers of %d slots included)"
                % (keys["keys"], keys.get("ring_capacity", 0)))
        rep.add()
        rep.add("| impl | bytes/key | beside key+value (16 B) |")
        rep.add("|---|---|---|")
        for r in keys["results"]:
            rep.add("| %s | %.1f | %.1f |" % (r["impl"], r["bytes_per_key"], r["bytes_per_key"] - 16))
        rep.add()
        kv = [r for r in keys["results"] if r["impl"] == KVFEED]
        if kv:
            b = kv[0]["bytes_per_key"]
            note = "" if keys["keys"] == 1_000_000 else " (measured at %d keys; the target is at 1M)" % keys["keys"]
            rep.target("Memory ≤ 64 B of RSS per live u64 → u64 key at 1M keys", "yes" if b <= 64 else "**no**",
                       "%.1f B/key%s" % (b, note))
    if flat:
        samples = flat.get("samples") or []
        rep.add("**Memory: RSS over %d puts** (%s, %d uniform keys, ring %d, one watcher reading 16 events every "
                "1%% of the puts: lapped, told `Lagged`). RSS samples (MiB): %s"
                % (flat["puts"], flat["feed"], flat["keys"], flat["ring_capacity"],
                   " ".join("%.1f" % (x["rss"] / 2**20) for x in samples)))
        rep.add()
        note = "" if flat["puts"] >= 100_000_000 else " — over %d puts; the target is 1e8" % flat["puts"]
        rep.target("Memory: RSS flat over 1e8 puts with a lapped watcher",
                   ("yes" if flat["flat"] else "**no**") + ("" if not note else " (short run)"),
                   "growth after warm-up %.1f MiB (allowed %.1f)%s"
                   % (flat["growth"] / 2**20, flat["allowed_growth"] / 2**20, note))


def instr_section(rep, instr):
    j = instr.get("instr")
    if not j or not j.get("rows"):
        return
    rep.add("**Instructions (callgrind, %s)**: collected inside the measured functions only, difference of %s "
            "rounds of %d operations" % (j.get("valgrind", "valgrind"), " and ".join(map(str, j.get("rounds", []))),
                                         j.get("batch", 0)))
    rep.add()
    rep.add("| what | instructions per op |")
    rep.add("|---|---|")
    for r in j["rows"]:
        rep.add("| %s | %.1f per %s |" % (r["what"], r["ir_per_op"], r["per"]))
    rep.add()


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
        "Reproduce: `%sbash bench/issue9.sh` (every issue-9 number; the whole suite: "
        "`%scargo bench -p kvfeed-bench && %spython3 bench/report.py`; quick smoke run: `bench/quick.sh`)."
        % (prefix, prefix, prefix),
    ]
    if quick:
        lines.append("**Quick mode (KVFEED_BENCH_QUICK / --test): sizes shrunk and timings of a few ms — "
                     "these numbers only show that the suite runs.**")
    return lines


def targets_table(rep, title, rows):
    if not rows:
        return
    rep.add("**%s**" % title)
    rep.add()
    rep.add("| target | met | measured |")
    rep.add("|---|---|---|")
    for text, v, detail in rows:
        if rep.quick:
            v += " (quick mode: meaningless)"
        rep.add("| %s | %s | %s |" % (text, v, detail))
    rep.add()


def build(tdir, stat):
    crit, ci = load_criterion(tdir, stat)
    w3, w7, modes = load_extra(tdir, "w3_latency"), load_extra(tdir, "w7_oversub"), load_extra(tdir, "mode")
    mem, instr = load_extra(tdir, "memory"), load_extra(tdir, "instr")
    rep = Report()
    rep.quick = any((j.get("machine") or {}).get("quick") for src in (modes, w3, w7) for j in src.values())
    for line in machine_lines(tdir, modes, w3, w7):
        rep.add(line)
        rep.add()
    if not crit and not w3 and not w7 and not mem and not instr:
        rep.add("No results found under `%s`: run `bash bench/issue9.sh` or `cargo bench -p kvfeed-bench` first."
                % tdir)
        return "\n".join(rep.lines)
    rep.add("Criterion statistic: %s per element (per put/event), or per iteration where noted." % stat)
    rep.add()
    w1_tables(rep, crit, ci)
    w2_targets(rep, crit, ci)
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
    memory_section(rep, mem)
    instr_section(rep, instr)
    reclaim_note(rep, crit)
    targets_table(rep, "Issue 9 targets (yes = the spread supports it; unclear = the point estimate and the spread "
                  "disagree)", rep.targets)
    targets_table(rep, "Other targets (W3, from before issue 9)", rep.other_targets)
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
