#!/usr/bin/env bash
# make bench: boot the perf kernel (no debug options; built and cached on first use), run
# tests/vm/bench.sh (ours, the C ib_iser, iscsi_tcp, nvme-rdma, and the soft-RoCE limit on one
# rxe device in one boot), then write results/bench-<time>/{bench.json,bench.md,bench.svg}
# and print the table. Figures are for comparison side by side (TCG, 2 cores), never
# pass/fail.
#
# Environment: BENCH_RUNTIME (s, default 8), BENCH_RAMP (2), BENCH_REPS (3),
# BENCH_CONTENDERS ("rs c tcp nvme"), BENCH_CPUS (guest vCPUs, default 2), BENCH_JOBS (only
# these jobs, e.g. "rand4k_qd32_j1,lat4k_qd1"), BENCH_KO_B (another build of our module: the
# contender "rsb", for an A/B measurement of a change: BENCH_CONTENDERS="rs rsb").
# BENCH_PROFILE=<job> (e.g. rand4k_qd32_j1): no benchmark; a system-wide `perf record` of that
# job per contender and round, reports in results/bench-*/profile-<contender>-<round>.txt;
# BENCH_PERF_ARGS=-g adds call graphs (and profile-*.locks.txt: callers of contended spinlocks).
#
# BENCH_PAIR=1 (make bench-pair): two VMs at once, one per host core, each running one of two
# contenders (BENCH_CONTENDERS, default "rs c") job by job in lockstep, then swapped; a round's
# ratio compares two runs that shared the same seconds of the host, so host noise cancels
# instead of being averaged. Each VM has the usual guest (BENCH_CPUS vCPUs on one TCG thread);
# the absolute figures are lower than in the single-VM bench (the host is fully loaded), the
# ratios are the point. No tcp/nvme/raw limit in this mode. With BENCH_SCALING (=only: the
# scaling rows alone) the scaling rows of ours and the C driver run paired the same way,
# configuration by configuration, and the report adds their paired ratios.
#
# BENCH_SCALING=1 (make bench-scaling: =only, without the contenders above): scaling rows as
# well (tests/vm/bench_scaling.sh): 4k random reads through 1, 2 and 4 iSER sessions under one
# dm-multipath map (round-robin and service-time), ours and the C driver, and nvme-rdma with as
# many I/O queues; the report adds a table and results/bench-*/bench-scaling.svg. Narrowed by
# BENCH_SCALING_SESSIONS ("1 2 4"), BENCH_SCALING_SELECTORS ("round-robin service-time"),
# BENCH_SCALING_IMPLS ("rs c nvme"), BENCH_SCALING_JOBS ("rand4k_qd32_j1 rand4k_qd32_j2");
# BENCH_SCALING_PATHS=iface: the sessions over one RDMA device and portal (default rxe: one
# soft-RoCE device and portal group per session). Not in profile mode; paired with BENCH_PAIR.
#
# BENCH_ICOUNT=N: the guest runs on an instruction clock (scripts/vm-run VM_ICOUNT): CPU-bound
# figures count guest instructions, not host seconds (Documentation/testing.rst).
# BENCH_INSNS=0: without the instructions-per-I/O table that follows the usual bench
# (make bench-insns, scripts/bench-insns.sh).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
res=$top/results/bench-$(date +%Y%m%d-%H%M%S)${BENCH_CPUS:+-cpus$BENCH_CPUS}${BENCH_PAIR:+-pair}${BENCH_ICOUNT:+-icount$BENCH_ICOUNT}
# Host time per guest second is longer with icount (up to several times): the limits grow.
slow=1
if [ -n "${BENCH_ICOUNT:-}" ]; then
  export VM_ICOUNT=$BENCH_ICOUNT
  slow=6
fi
mkdir -p "$res"
env_vars="ISER_RESULTS=$res"
for v in BENCH_RUNTIME BENCH_RAMP BENCH_REPS BENCH_PROFILE BENCH_PERF_ARGS BENCH_JOBS \
  BENCH_SCALING BENCH_SCALING_SESSIONS BENCH_SCALING_SELECTORS BENCH_SCALING_IMPLS \
  BENCH_SCALING_JOBS BENCH_SCALING_PATHS; do
  [ -n "${!v:-}" ] && env_vars="$env_vars $v=${!v// /,}"
done
# BENCH_KO_B: a second build of our module (contender "rsb"), to measure a change A/B.
if [ -n "${BENCH_KO_B:-}" ]; then
  cp "$BENCH_KO_B" "$res/ib_iser-b.ko"
  env_vars="$env_vars ISER_KO_B=$res/ib_iser-b.ko"
fi
[ -n "${BENCH_CONTENDERS:-}" ] && env_vars="$env_vars BENCH_CONTENDERS=${BENCH_CONTENDERS// /,}"
# scaling_limit IMPLS: the seconds the scaling rows of IMPLS add to a guest's time limit.
# Per round: for each iSER initiator and session count ~40 s to log in and out, for each
# selector ~40 s for udevd, multipathd and the map, then the jobs (a few seconds each beyond
# runtime + ramp); for nvme-rdma ~20 s per queue count. 50% headroom, 120 s for the paths.
scaling_limit() {
  local sc_impls=" ${1//,/ } " sc_i=0 sc_nv=0 c sc_n sc_l sc_job
  words() { local v=${1//,/ }; set -- $v; echo $#; }
  for c in rs c; do [[ $sc_impls == *" $c "* ]] && sc_i=$((sc_i + 1)); done
  [[ $sc_impls == *" nvme "* ]] && sc_nv=1
  sc_n=$(words "${BENCH_SCALING_SESSIONS:-1 2 4}")
  sc_l=$(words "${BENCH_SCALING_SELECTORS:-round-robin service-time}")
  sc_job=$(( $(words "${BENCH_SCALING_JOBS:-rand4k_qd32_j1 rand4k_qd32_j2}") * ((${BENCH_RUNTIME:-8} + ${BENCH_RAMP:-2}) * slow + 5) ))
  echo $(( 120 + ${BENCH_REPS:-3} * sc_n * (sc_i * (40 + sc_l * (40 + sc_job)) + sc_nv * (20 + sc_job)) * 3 / 2 ))
}
if [ "${BENCH_PAIR:-0}" = 1 ]; then
  read -ra cs <<<"${BENCH_CONTENDERS:-rs c}"
  [ ${#cs[@]} = 2 ] || { echo "bench: BENCH_PAIR needs two contenders, not '${cs[*]}'" >&2; exit 2; }
  [ -z "${BENCH_PROFILE:-}" ] || { echo "bench: BENCH_PAIR and BENCH_PROFILE exclude each other" >&2; exit 2; }
  # Paired scaling rows: each VM runs its contender's sessions (tests/vm/bench_scaling.sh).
  if [ "${BENCH_SCALING:-0}" != 0 ] && [[ " ${cs[*]} " != *" rs "* || " ${cs[*]} " != *" c "* ]]; then
    echo "bench: BENCH_PAIR with BENCH_SCALING pairs ours with the C driver (BENCH_CONTENDERS=\"rs c\"), not '${cs[*]}'" >&2; exit 2
  fi
  # Build once here: the two VMs start with --no-build and each copies the module.
  "$top/scripts/deps.sh" >&2
  kdir=$("$top/scripts/kernel.sh" build perf | tail -n1)
  KDIR=$kdir/linux "$top/scripts/kbuild.sh" modules >&2
  limit=$(( 900 + ${BENCH_REPS:-3} * (6 * (${BENCH_RUNTIME:-8} + ${BENCH_RAMP:-2}) * slow + 60) * 3 / 2 ))
  [ "${BENCH_SCALING:-0}" = 0 ] || limit=$(( limit + $(scaling_limit rs) ))
  for phase in 1 2; do
    pids=()
    for side in a b; do
      # Phase 1: a runs the first contender, b the second; phase 2 swaps them.
      if [ "$side" = a ]; then k=$(( phase - 1 )); else k=$(( 2 - phase )); fi
      d=$res/p$phase-$side sync=$res/sync$phase
      mkdir -p "$d" "$sync"
      echo "bench: phase $phase: VM $side runs ${cs[k]} (log: $d.log)"
      VM_ENV="$env_vars ISER_RESULTS=$d BENCH_CONTENDERS=${cs[k]} BENCH_SCALING_IMPLS=${cs[k]} BENCH_SYNC=$sync BENCH_SIDE=$side" \
        "$top/scripts/vm-run" --no-build --kernel perf --cpus "${BENCH_CPUS:-2}" --timeout "$limit" \
        -- "$top/tests/vm/bench.sh" >"$d.log" 2>&1 &
      pids+=($!)
    done
    rc=0
    for p in "${pids[@]}"; do wait "$p" || rc=$?; done
    grep -h '^== round\|^bench:' "$res/p$phase-a.log" "$res/p$phase-b.log" || true
    [ $rc = 0 ] || { echo "bench: phase $phase failed (rc $rc); see the logs above" >&2; exit 1; }
  done
  # One bench.json in the usual form: phase 2's rounds follow phase 1's, and round k of one
  # contender ran at the same time as round k of the other.
  python3 - "$res" "${BENCH_REPS:-3}" <<'PY'
import json, sys
res, reps = sys.argv[1], int(sys.argv[2])
out = {"results": {}, "raw": {}}
for phase in (1, 2):
    for side in "ab":
        j = json.load(open("%s/p%d-%s/bench.json" % (res, phase, side)))
        for k, v in j["results"].items():
            c, job, r = k.split("|")
            out["results"]["%s|%s|%d" % (c, job, int(r) + (phase - 1) * reps)] = v
        # Scaling rows (BENCH_SCALING): "IMPL|N|SELECTOR|JOB|ROUND", numbered the same way.
        for k, v in j.get("scaling", {}).items():
            f = k.split("|")
            f[4] = str(int(f[4]) + (phase - 1) * reps)
            out.setdefault("scaling", {})["|".join(f)] = v
        out.update(kernel=j["kernel"], runtime=j["runtime"], ramp=j["ramp"])
out["reps"] = 2 * reps
out["pair"] = True
json.dump(out, open(res + "/bench.json", "w"), indent=1)
PY
  python3 "$top/scripts/bench-report.py" "$res/bench.json" "$res/bench.md" "$res/bench.svg"
  cat "$res/bench.md"
  echo "bench: $res/bench.md, $res/bench.svg"
  exit 0
fi
# The guest's time limit grows with the work: per contender and round, six jobs of
# runtime + ramp plus ~40 s to log in and out, with 50% headroom, plus boot and the raw limit.
read -ra cs <<<"${BENCH_CONTENDERS:-rs c tcp nvme}"
[ "${BENCH_SCALING:-0}" = only ] && cs=()
limit=$(( 900 + ${BENCH_REPS:-3} * ${#cs[@]} * (6 * (${BENCH_RUNTIME:-8} + ${BENCH_RAMP:-2}) * slow + 40) * 3 / 2 ))
[ "${BENCH_SCALING:-0}" = 0 ] || limit=$(( limit + $(scaling_limit "${BENCH_SCALING_IMPLS:-rs c nvme}") ))
VM_ENV="$env_vars" "$top/scripts/vm-run" --kernel perf --cpus "${BENCH_CPUS:-2}" --timeout "$limit" \
  -- "$top/tests/vm/bench.sh" | tee "$res/bench.log"
if [ -n "${BENCH_PROFILE:-}" ]; then
  for f in "$res"/profile-*.txt; do
    case $f in *.dso.txt|*.locks.txt) continue ;; esac
    # No pipe into head: under pipefail the writer's SIGPIPE failed the script (status 141).
    echo "== $(basename "$f")"; awk '/^ +[0-9]/ && n++ < 25' "$f"
  done
  exit 0
fi
python3 "$top/scripts/bench-report.py" "$res/bench.json" "$res/bench.md" "$res/bench.svg"
cat "$res/bench.md"
sc_svg=""
[ ! -e "$res/bench-scaling.svg" ] || sc_svg=", $res/bench-scaling.svg"
echo "bench: $res/bench.md, $res/bench.svg$sc_svg"
# The instructions per I/O of ours and the C driver (scripts/bench-insns.sh: its own boot,
# under the counting plugin, a few minutes), unless BENCH_INSNS=0 or the contenders leave
# one of them out.
if [ "${BENCH_INSNS:-1}" != 0 ] && [[ " ${cs[*]} " == *" rs "* && " ${cs[*]} " == *" c "* ]]; then
  "$top/scripts/bench-insns.sh"
fi
