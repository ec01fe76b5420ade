#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
"""Renders tests/vm/bench.sh's JSON: a Markdown table (medians, ratios of ours to each other
contender and to the raw soft-RoCE limit) and an SVG bar chart (no plotting library needed).

With scaling rows (BENCH_SCALING, tests/vm/bench_scaling.sh) also a table per job of
(implementation, sessions or I/O queues, path selector) and a line chart next to bench.svg
(bench-scaling.svg).

usage: bench-report.py bench.json bench.md bench.svg
"""
import json
import os
import math
import statistics
import sys

NAMES = {"rs": "ours (Rust ib_iser)", "c": "C ib_iser", "tcp": "iscsi_tcp", "nvme": "nvme-rdma",
         "rsb": "ours, build B"}
# job -> (metric, unit, higher is better, raw limit key or None)
JOBS = [
    ("rand4k_qd32_j1", "iops", "IOPS", True, None),
    ("rand4k_qd32_j2", "iops", "IOPS", True, None),
    ("lat4k_qd1", "p50_us", "us p50", False, None),
    ("lat4k_qd1", "p99_us", "us p99", False, None),
    # iSER reads travel as target RDMA Writes, writes as target RDMA Reads.
    ("seqread128k_qd16", "mbps", "MB/s", True, "ib_write_bw_mbps"),
    ("seqwrite128k_qd16", "mbps", "MB/s", True, "ib_read_bw_mbps"),
    ("seqread1m_qd8", "mbps", "MB/s", True, "ib_write_bw_mbps"),
    ("rand4k_qd32_j1", "cpu_us_per_io", "CPU us/IO", False, None),
]


def main():
    src, md_path, svg_path = sys.argv[1:4]
    data = json.load(open(src))
    res = data["results"]
    raw = data.get("raw", {})
    contenders = []
    for key in res:
        c = key.split("|")[0]
        if c not in contenders:
            contenders.append(c)

    def median(c, job, metric):
        v = [r[metric] for k, r in res.items() if k.split("|")[:2] == [c, job] and not r["errors"]]
        return statistics.median(v) if v else None

    rows = []
    for job, metric, unit, higher, limit in JOBS:
        vals = {c: median(c, job, metric) for c in contenders}
        rows.append((job, metric, unit, higher, limit, vals))

    # The paired ratio: ours against the C driver, or against build B in an A/B run.
    base = "c" if "c" in contenders else "rsb"
    pair = "rs" in contenders and base in contenders

    def paired_ratios(job, metric, higher):
        """Ours/C within each round (>1 means ours is better): the contenders of one round ran
        at the same time (pair mode) or minutes apart, so a drift of the machine cancels out
        (robust to the 10-15% spread between rounds that TCG shows)."""
        rs = {k.split("|")[2]: r[metric] for k, r in res.items()
              if k.split("|")[:2] == ["rs", job] and not r["errors"]}
        c = {k.split("|")[2]: r[metric] for k, r in res.items()
             if k.split("|")[:2] == [base, job] and not r["errors"]}
        return sorted((rs[i] / c[i]) if higher else (c[i] / rs[i])
                      for i in rs if i in c and rs[i] and c[i])

    def paired(job, metric, higher):
        """Median of the per-round ratios, a distribution-free ~95% confidence interval of
        that median, and the number of rounds ours won."""
        v = paired_ratios(job, metric, higher)
        if not v:
            return ["-", "-", "-"]
        lo, hi = median_ci(v)
        ci = "-" if lo is None else "%.2f-%.2f" % (lo, hi)
        won = "%d/%d" % (sum(1 for x in v if x > 1.0), len(v))
        return ["%.2f" % statistics.median(v), ci, won]

    def ratio(a, b, higher):
        if a is None or not b:
            return "-"
        return "%.2f" % ((a / b) if higher else (b / a if a else 0))

    others = [c for c in ("c", "tcp", "nvme", "rsb") if c in contenders]
    head = ["job", "metric"] + [NAMES.get(c, c) for c in contenders]
    head += ["ours/%s" % c for c in others] + ["ours/raw limit"]
    head += ["ours/%s paired" % base, "95% CI", "rounds won"] if pair else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for job, metric, unit, higher, limit, vals in rows:
        cells = [job, unit] + ["-" if vals[c] is None else "%.1f" % vals[c] for c in contenders]
        ours = vals.get("rs")
        cells += [ratio(ours, vals[c], higher) for c in others]
        cells.append(ratio(ours, raw.get(limit), True) if limit else "-")
        if pair:
            cells += paired(job, metric, higher)
        lines.append("| " + " | ".join(cells) + " |")
    md = ["# iSER benchmark", "",
          "Kernel %s, fio direct=1 libaio, %ss runtime after %ss ramp, median of %s runs. "
          "Ratios: >1 means ours is better (for latency and CPU: lower is better, so the ratio "
          "is theirs/ours); 'ours/c paired' is the median over the rounds of the ratio within each "
          "round, with a distribution-free ~95%% confidence interval of that median (order "
          "statistics of the binomial sign test; '-' below 6 rounds) and the rounds ours won. "
          "Raw limit: ib_read_bw %s MB/s (%s), ib_write_bw %s MB/s (%s)."
          % (data["kernel"], data["runtime"], data["ramp"], data["reps"],
             raw.get("ib_read_bw_mbps", "-"), raw.get("ib_read_bw_cfg", "-s 131072 -t 128 -q 2"),
             raw.get("ib_write_bw_mbps", "-"), raw.get("ib_write_bw_cfg", "-s 131072 -t 128 -q 2")),
          ""] + (lines if contenders else ["No contenders in this run (BENCH_SCALING=only)."]) \
        + per_io_table(res, contenders) + scaling_table(data)
    if data.get("pair"):
        md[2] = ("Kernel %s, fio direct=1 libaio, %ss runtime after %ss ramp, %s rounds. Pair mode: "
                 "two VMs at once (one per host core), each running one contender job by job in "
                 "lockstep, swapped after half the rounds; 'ours/c paired' is the median over the "
                 "rounds of the ratio of two runs that ran at the same time, with a distribution-"
                 "free ~95%% confidence interval of that median and the rounds ours won. Ratios: "
                 ">1 means ours is better (for latency and CPU: theirs/ours). Absolute figures "
                 "are for a fully loaded host; no raw limit in this mode."
                 % (data["kernel"], data["runtime"], data["ramp"], data["reps"]))
    if os.environ.get("BENCH_ICOUNT"):
        md[2] += (" Instruction clock (BENCH_ICOUNT=%s): the guest's busy time is its executed "
                  "instructions x %d ns, so the figures count work, not host seconds."
                  % (os.environ["BENCH_ICOUNT"], 1 << int(os.environ["BENCH_ICOUNT"])))
    open(md_path, "w").write("\n".join(md) + "\n")

    # SVG: one group of bars per (job, metric), normalised to the best contender.
    colors = {"rs": "#d9480f", "c": "#1c7ed6", "tcp": "#868e96", "nvme": "#2f9e44"}
    w, bh, gap = 900, 14, 10
    y = 40
    out = []
    for job, metric, unit, higher, limit, vals in rows:
        present = [v for v in vals.values() if v]
        best = max(present) if present else 1
        out.append('<text x="10" y="%d" font-size="12" font-family="sans-serif">%s (%s)</text>'
                   % (y + 10, job, unit))
        for c in contenders:
            v = vals[c]
            length = 0 if not v else (v / best) * 480
            out.append('<rect x="300" y="%d" width="%.1f" height="%d" fill="%s"/>'
                       % (y, length, bh - 2, colors.get(c, "#000")))
            out.append('<text x="%.1f" y="%d" font-size="10" font-family="sans-serif">%s %s</text>'
                       % (305 + length, y + 10, NAMES.get(c, c), "-" if v is None else "%.1f" % v))
            y += bh
        y += gap
    svg = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d">' % (w, y + 10),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="10" y="20" font-size="14" font-family="sans-serif">iSER benchmark '
           '(bars normalised to the largest value per row)</text>'] + out + ["</svg>"]
    open(svg_path, "w").write("\n".join(svg) + "\n")
    if data.get("scaling"):
        root, ext = os.path.splitext(svg_path)
        scaling_svg(data, root + "-scaling" + (ext or ".svg"))


def median_ci(v, level=0.95):
    """Distribution-free confidence interval of the median of sorted `v`: the k-th smallest
    and k-th largest values, k the largest rank with P(Binomial(n, 1/2) < k) <= (1-level)/2.
    Coverage is at least `level`; (None, None) when n is too small (n < 6 at 95%)."""
    n = len(v)
    tail, k, cum = (1 - level) / 2, 0, 0.0
    for i in range(n):
        cum += math.comb(n, i) / 2 ** n
        if cum > tail:
            break
        k = i + 1
    if k == 0:
        return None, None
    return v[k - 1], v[n - k]


def per_io_table(res, contenders):
    """Per-I/O protocol behaviour of the 4k random-read job (medians over the runs): packets
    on the rxe device (both ends of the loopback count), RDMA SENDs, and from our debugfs
    statistics the SENDs posted without a completion and the responses held for one. The same
    for every contender means the same wire protocol; differences are CPU, not packets."""
    job = "rand4k_qd32_j1"
    def per_io(c, key, src):
        v = []
        for k, r in res.items():
            if k.split("|")[:2] != [c, job] or r["errors"] or src not in r:
                continue
            # Each 4k read is one command SEND and one response SEND on the device.
            ios = r.get("rxe", {}).get("rdma_sends", 0) / 2
            if ios:
                v.append(r[src].get(key, 0) / ios)
        return "-" if not v else "%.2f" % statistics.median(v)
    rows = [("completion-queue polls (IRQ_POLL softirqs)", "rxe", "softirq_irq_poll"),
            ("rxe packets sent", "rxe", "sent_pkts"),
            ("rxe ACKs deferred", "rxe", "ack_deferred"),
            ("unsignalled SENDs (ours)", "iser", "sends_unsignaled"),
            ("inline SENDs (ours)", "iser", "sends_inline"),
            ("responses held for a send completion (ours)", "iser", "rsp_before_send_done")]
    if not any(("rxe" in r) for r in res.values()):
        return []
    out = ["", "Per I/O, %s (median):" % job, "",
           "| per I/O | " + " | ".join(NAMES.get(c, c) for c in contenders) + " |",
           "|" + "---|" * (len(contenders) + 1)]
    for what, src, key in rows:
        if src == "iser" and "rs" not in contenders:
            continue
        out.append("| %s | " % what + " | ".join(
            per_io(c, key, src) if (src == "rxe" or c == "rs") else "-" for c in contenders) + " |")
    return out


SELECTORS = ["round-robin", "service-time", "queue-length", "none"]


def scaling_medians(data):
    """{job: {(impl, n, selector): (median IOPS, median CPU us/IO, median hw queues, runs)}}
    from the "scaling" results ("IMPL|N|SELECTOR|JOB|ROUND" keys), runs with errors left out."""
    groups = {}
    for key, r in data.get("scaling", {}).items():
        impl, n, sel, job, _ = key.split("|")
        if r.get("errors"):
            continue
        groups.setdefault(job, {}).setdefault((impl, int(n), sel), []).append(r)
    out = {}
    for job, rows in groups.items():
        out[job] = {k: (statistics.median(x["iops"] for x in v),
                        statistics.median(x["cpu_us_per_io"] for x in v),
                        statistics.median(x.get("hw_queues", 0) for x in v), len(v))
                    for k, v in rows.items()}
    return out


def scaling_order(key):
    impl, n, sel = key
    order = ["rs", "c", "nvme", "rsb"]
    return (order.index(impl) if impl in order else len(order), impl, n,
            SELECTORS.index(sel) if sel in SELECTORS else len(SELECTORS), sel)


def scaling_ours(rows, n, sel):
    """Ours at N sessions with the same selector; for nvme-rdma (no selector), ours at N
    sessions with the first selector that has a figure (round-robin before service-time)."""
    if ("rs", n, sel) in rows:
        return rows[("rs", n, sel)]
    for s in SELECTORS:
        if ("rs", n, s) in rows:
            return rows[("rs", n, s)]
    return None


def scaling_table(data):
    med = scaling_medians(data)
    if not med:
        return []
    out = ["", "## Scaling over sessions (dm-multipath) and I/O queues", "",
           "4k random reads, fio as above. iSER rows: N sessions to one LUN, one dm-multipath map "
           "over their N disks with the selector shown (every path in one group); nvme-rdma rows: "
           "one controller with nr_io_queues=N, no dm-multipath (`hw queues`: the blk-mq hardware "
           "queues it got; nvme-rdma caps them at the guest's CPUs). CPU: system + softirq time "
           "of all CPUs per I/O. `x1`: IOPS relative to 1 session (queue) of the same row kind. "
           "Ratios to ours at the same N and selector (nvme-rdma: ours with round-robin); >1 "
           "means ours is better (IOPS: ours/this, CPU: this/ours). Medians of the runs."]
    for job in sorted(med):
        rows = med[job]
        out += ["", "%s:" % job, "",
                "| implementation | sessions / queues | selector | hw queues | runs | IOPS | "
                "CPU us/IO | x1 | ours/this IOPS | this/ours CPU |",
                "|" + "---|" * 10]
        for key in sorted(rows, key=scaling_order):
            impl, n, sel = key
            iops, cpu, hwq, runs = rows[key]
            base = rows.get((impl, 1, sel))
            x1 = "%.2f" % (iops / base[0]) if base and base[0] else "-"
            ours = scaling_ours(rows, n, sel)
            if impl == "rs" or ours is None:
                r_iops = r_cpu = "-"
            else:
                r_iops = "%.2f" % (ours[0] / iops) if iops else "-"
                r_cpu = "%.2f" % (cpu / ours[1]) if ours[1] else "-"
            out.append("| %s | %d | %s | %g | %d | %.0f | %.1f | %s | %s | %s |"
                       % (NAMES.get(impl, impl), n, "-" if sel == "none" else sel, hwq, runs,
                          iops, cpu, x1, r_iops, r_cpu))
        out += scaling_paired(data, job)
        out += scaling_paths(data, job)
    return out


def scaling_paths(data, job):
    """How each multipath row spread its reads and what they cost, from the per-job counters
    (whole job, ramp included): per path (its SCSI disks in name order, which is login
    order) the share of the reads and their mean time, the mean time of a read on the map,
    and per read the context switches, the IPIs (function calls and reschedules) and the
    completion-queue polls. Medians over the rounds."""
    groups = {}
    for key, r in data.get("scaling", {}).items():
        impl, n, sel, j, _ = key.split("|")
        x = r.get("rxe", {})
        if j != job or r.get("errors") or impl not in ("rs", "c"):
            continue
        sds = sorted((k[len("disk_reads_"):] for k in x
                      if k.startswith("disk_reads_sd")), key=lambda d: (len(d), d))
        reads = [x.get("disk_reads_" + d, 0) for d in sds]
        total = sum(reads)
        if not total:
            continue
        dms = [k[len("disk_reads_"):] for k in x if k.startswith("disk_reads_dm-")]
        dm_reads = sum(x.get("disk_reads_" + d, 0) for d in dms)
        dm_ms = sum(x.get("disk_read_ms_" + d, 0) for d in dms)
        groups.setdefault((impl, int(n), sel), []).append({
            "share": [v / total for v in reads],
            "ms": [x.get("disk_read_ms_" + d, 0) / v if v else 0 for d, v in zip(sds, reads)],
            "dm_ms": dm_ms / dm_reads if dm_reads else None,
            "ctxt": x.get("ctxt", 0) / total,
            "ipi": (x.get("ipi_cal", 0) + x.get("ipi_res", 0)) / total,
            "poll": x.get("softirq_irq_poll", 0) / total})
    if not groups:
        return []
    def med(v):
        v = [a for a in v if a is not None]
        return statistics.median(v) if v else None
    def fmt(v, f):
        return "-" if v is None else f % v
    out = ["", "Per path, %s (iSER rows; medians over the rounds): each path's share of the reads "
           "and its mean read time, the mean read time on the dm-multipath map, and per read the "
           "context switches, IPIs (function calls + reschedules) and completion-queue polls "
           "(counters over the whole job, ramp included)." % job, "",
           "| implementation | sessions | selector | runs | read share per path | ms per read "
           "per path | ms per read (map) | context switches | IPIs | CQ polls |", "|" + "---|" * 10]
    for key in sorted(groups, key=scaling_order):
        impl, n, sel = key
        v = groups[key]
        npath = min(len(g["share"]) for g in v)
        share = " / ".join("%.0f%%" % (100 * med([g["share"][i] for g in v])) for i in range(npath))
        ms = " / ".join("%.1f" % med([g["ms"][i] for g in v]) for i in range(npath))
        out.append("| %s | %d | %s | %d | %s | %s | %s | %s | %s | %s |"
                   % (NAMES.get(impl, impl), n, sel, len(v), share, ms,
                      fmt(med([g["dm_ms"] for g in v]), "%.1f"),
                      fmt(med([g["ctxt"] for g in v]), "%.2f"),
                      fmt(med([g["ipi"] for g in v]), "%.2f"),
                      fmt(med([g["poll"] for g in v]), "%.2f")))
    return out


def scaling_paired(data, job):
    """Ours against the C driver per round at each session count and selector: the median of
    the per-round ratios, its ~95% confidence interval and the rounds ours won (as the main
    table's paired columns). In pair mode the two runs of a round ran at the same time in two
    VMs; otherwise minutes apart in one."""
    runs = {}
    for key, r in data.get("scaling", {}).items():
        impl, n, sel, j, rnd = key.split("|")
        if j == job and impl in ("rs", "c") and not r.get("errors"):
            runs.setdefault((int(n), sel), {}).setdefault(rnd, {})[impl] = r
    rows = []
    for (n, sel) in sorted(runs, key=lambda k: (k[0], SELECTORS.index(k[1])
                                                 if k[1] in SELECTORS else len(SELECTORS))):
        both = [v for v in runs[(n, sel)].values() if "rs" in v and "c" in v]
        iops = sorted(v["rs"]["iops"] / v["c"]["iops"] for v in both
                      if v["rs"]["iops"] and v["c"]["iops"])
        cpu = sorted(v["c"]["cpu_us_per_io"] / v["rs"]["cpu_us_per_io"] for v in both
                     if v["rs"]["cpu_us_per_io"] and v["c"]["cpu_us_per_io"])
        if not iops:
            continue
        cells = []
        for v in (iops, cpu):
            if not v:
                cells += ["-", "-", "-"]
                continue
            lo, hi = median_ci(v)
            cells += ["%.2f" % statistics.median(v), "-" if lo is None else "%.2f-%.2f" % (lo, hi),
                      "%d/%d" % (sum(1 for x in v if x > 1.0), len(v))]
        rows.append("| %d | %s | " % (n, sel) + " | ".join(cells) + " |")
    if not rows:
        return []
    how = ("two VMs at once, swapped after half the rounds" if data.get("pair")
           else "one after the other in the same round")
    return ["", "Paired, ours against the C driver (%s): per round ours/C IOPS and C/ours CPU "
            "per I/O (>1: ours is better); median, ~95%% confidence interval ('-' below 6 "
            "rounds), rounds ours won." % how, "",
            "| sessions | selector | ours/C IOPS paired | 95% CI | rounds won | "
            "C/ours CPU paired | 95% CI | rounds won |", "|" + "---|" * 8] + rows


def scaling_svg(data, path):
    """Two panels per job, IOPS and CPU us/IO against sessions (queues): one line per
    implementation and selector (colour: implementation, dashes: selector)."""
    med = scaling_medians(data)
    colors = {"rs": "#d9480f", "c": "#1c7ed6", "nvme": "#2f9e44", "rsb": "#862e9c"}
    dashes = {"round-robin": "", "service-time": "6,3", "none": "2,3"}
    pw, ph, left, top_pad = 380, 220, 60, 40
    out, y0 = [], 40
    for job in sorted(med):
        rows = med[job]
        ns = sorted({k[1] for k in rows})
        series = sorted({(k[0], k[2]) for k in rows},
                        key=lambda s: scaling_order((s[0], 0, s[1])))
        for col, (idx, unit) in enumerate([(0, "IOPS"), (1, "CPU us/IO")]):
            x0 = 10 + col * (pw + left + 20)
            vals = [v[idx] for v in rows.values()]
            top = max(vals) * 1.1 if vals and max(vals) > 0 else 1
            out.append('<text x="%d" y="%d" font-size="12" font-family="sans-serif">%s: %s</text>'
                       % (x0, y0 - 8, job, unit))
            out.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#adb5bd"/>'
                       % (x0 + left, y0, pw, ph))
            for f in (0, 0.5, 1):
                out.append('<text x="%d" y="%.1f" font-size="10" font-family="sans-serif" '
                           'text-anchor="end">%.0f</text>' % (x0 + left - 4, y0 + ph - f * ph + 4,
                                                             top * f))

            def px(n):
                i = ns.index(n)
                return x0 + left + (pw * (i + 0.5) / len(ns))
            for n in ns:
                out.append('<text x="%.1f" y="%d" font-size="10" font-family="sans-serif" '
                           'text-anchor="middle">%d</text>' % (px(n), y0 + ph + 14, n))
            for impl, sel in series:
                pts = [(px(n), y0 + ph - rows[(impl, n, sel)][idx] / top * ph)
                       for n in ns if (impl, n, sel) in rows]
                if not pts:
                    continue
                out.append('<polyline fill="none" stroke="%s" stroke-width="2" '
                           'stroke-dasharray="%s" points="%s"/>'
                           % (colors.get(impl, "#000"), dashes.get(sel, "1,1"),
                              " ".join("%.1f,%.1f" % p for p in pts)))
                for x, y in pts:
                    out.append('<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>'
                               % (x, y, colors.get(impl, "#000")))
        y0 += ph + 60
    # Legend.
    legend = sorted({(k[0], k[2]) for rows in med.values() for k in rows},
                    key=lambda s: scaling_order((s[0], 0, s[1])))
    for i, (impl, sel) in enumerate(legend):
        ly = y0 + i * 16
        out.append('<line x1="20" y1="%d" x2="60" y2="%d" stroke="%s" stroke-width="2" '
                   'stroke-dasharray="%s"/>' % (ly, ly, colors.get(impl, "#000"),
                                                dashes.get(sel, "1,1")))
        out.append('<text x="68" y="%d" font-size="11" font-family="sans-serif">%s%s</text>'
                   % (ly + 4, NAMES.get(impl, impl), "" if sel == "none" else ", " + sel))
    height = y0 + len(legend) * 16 + 10
    width = 2 * (pw + left + 20) + 20
    svg = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d">' % (width, height),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="10" y="20" font-size="14" font-family="sans-serif">Scaling: 4k random '
           'reads against sessions (iSER, dm-multipath) or I/O queues (nvme-rdma)</text>']
    svg += out + ["</svg>"]
    open(path, "w").write("\n".join(svg) + "\n")


if __name__ == "__main__":
    main()
