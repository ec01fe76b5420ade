#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
"""Renders tests/vm/bench.sh's JSON: a Markdown table (medians, ratios of ours to each other
contender and to the raw soft-RoCE limit) and an SVG bar chart (no plotting library needed).

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
          ""] + lines + per_io_table(res, contenders)
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


if __name__ == "__main__":
    main()
