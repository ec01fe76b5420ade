#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
"""make bench-insns' report: instructions per I/O, per module, ours and the C ib_iser.

Input (a results/bench-insns-* folder): insns.dump (the icount plugin's dumps: "dump N
TOTAL", then "ADDRESS COUNT" lines), dumps.txt ("N IMPL JOB" per dump), fio-IMPL-JOB.json
(the job's I/Os) and kallsyms-IMPL.txt (the modules' symbols while IMPL was loaded).
Output (stdout, Markdown): per job, instructions per I/O by module, ours against C, and the
ten hottest functions of each initiator module."""
import bisect, collections, json, os, re, subprocess, sys

MODULES = ["ib_iser", "libiscsi", "scsi_transport_iscsi", "sd_mod", "scsi_mod", "rdma_rxe",
           "ib_core", "rdma_cm"]
NAMES = {"rs": "ours", "c": "C"}


def read_dumps(path):
    dumps, cur = {}, None
    with open(path) as f:
        for line in f:
            p = line.split()
            if p[0] == "dump":
                cur = dumps.setdefault(int(p[1]), {})
            elif cur is not None:
                a, b = p
                cur[int(a, 16)] = cur.get(int(a, 16), 0) + int(b)
    return dumps


def read_syms(path):
    """Sorted (address, name, module) of the text symbols in kallsyms lines."""
    syms = []
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) < 4 or p[1] not in "tT" or not p[3].startswith("["):
                continue
            syms.append((int(p[0], 16), p[2], p[3].strip("[]")))
    syms.sort()
    return syms


def attribute(counts, syms):
    """Counts per module and per (module, function); addresses outside the modules are the
    rest of the kernel. An address belongs to the nearest symbol below it, if that symbol is
    less than 64 KiB away (module text is far from the kernel's own)."""
    starts = [s[0] for s in syms]
    per_mod, per_fn = collections.Counter(), collections.Counter()
    for addr, n in counts.items():
        i = bisect.bisect_right(starts, addr) - 1
        if i >= 0 and addr - starts[i] < 0x10000:
            _, fn, mod = syms[i]
            per_mod[mod] += n
            per_fn[(mod, fn)] += n
        else:
            per_mod["(rest of the kernel)"] += n
    return per_mod, per_fn


def demangle(names):
    """Rust symbols (v0 mangling) as paths, crate hashes dropped (binutils' c++filt)."""
    try:
        out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True,
                             text=True, check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return {n: n for n in names}
    return {n: re.sub(r"\[[0-9a-f]{16}\]", "", d).replace("ib_iser::", "")
            for n, d in zip(names, out)}


def ios(path):
    j = json.load(open(path))["jobs"][0]
    return j["read"]["total_ios"] + j["write"]["total_ios"]


def main():
    res = sys.argv[1]
    dumps = read_dumps(os.path.join(res, "insns.dump"))
    runs = {}  # (impl, job) -> (per-module per I/O, per-function per I/O, I/Os, total)
    jobs = []
    for line in open(os.path.join(res, "dumps.txt")):
        n, impl, job = line.split()
        counts = dumps.get(int(n))
        if counts is None:
            print("no dump %s (%s %s) in insns.dump" % (n, impl, job), file=sys.stderr)
            sys.exit(1)
        syms = read_syms(os.path.join(res, "kallsyms-%s.txt" % impl))
        k = ios(os.path.join(res, "fio-%s-%s.json" % (impl, job)))
        if k == 0:
            print("%s %s: fio did no I/O" % (impl, job), file=sys.stderr)
            sys.exit(1)
        per_mod, per_fn = attribute(counts, syms)
        runs[(impl, job)] = ({m: v / k for m, v in per_mod.items()},
                             {f: v / k for f, v in per_fn.items()}, k, sum(counts.values()) / k)
        if job not in jobs:
            jobs.append(job)
    impls = [i for i in ("rs", "c") if any(r[0] == i for r in runs)]
    print("# Instructions per I/O (make bench-insns)\n")
    print("Exact counts of the guest kernel's executed instructions (QEMU TCG plugin), divided "
          "by the job's I/Os. rdma_rxe and the rest of the kernel serve the target too (same VM).\n")
    rows = MODULES + ["(rest of the kernel)"]
    for job in jobs:
        have = [i for i in impls if (i, job) in runs]
        print("## %s (%s)\n" % (job, ", ".join("%s: %d I/Os" % (NAMES[i], runs[(i, job)][2])
                                               for i in have)))
        head = "| module | " + " | ".join(NAMES[i] for i in have)
        if have == ["rs", "c"]:
            head += " | ours/C"
        print(head + " |")
        print("|" + "---|" * (len(have) + 1 + (have == ["rs", "c"])))
        for m in rows + ["whole kernel"]:
            vals = [runs[(i, job)][3] if m == "whole kernel" else runs[(i, job)][0].get(m, 0)
                    for i in have]
            if not any(vals):
                continue
            line = "| %s | " % m + " | ".join("%.0f" % v for v in vals)
            if have == ["rs", "c"]:
                line += " | %s" % ("%.2f" % (vals[0] / vals[1]) if vals[1] else "-")
            print(line + " |")
        print()
        for i in have:
            fns = runs[(i, job)][1]
            top = sorted(((v, f) for f, v in fns.items() if f[0] in ("ib_iser",)),
                         reverse=True)[:10]
            names = demangle([f[1] for _, f in top])
            print("%s ib_iser, hottest functions (instructions per I/O):\n" % NAMES[i])
            for v, f in top:
                print("- %.0f ``%s``" % (v, names.get(f[1], f[1])))
            print()


if __name__ == "__main__":
    main()
