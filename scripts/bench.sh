#!/usr/bin/env bash
# make bench: boot the perf kernel (no debug options; built and cached on first use), run
# tests/vm/bench.sh (ours, the C ib_iser, iscsi_tcp, nvme-rdma, and the soft-RoCE limit on one
# rxe device in one boot), then write results/bench-<time>/{bench.json,bench.md,bench.svg}
# and print the table. Figures are for comparison side by side (TCG, 2 cores), never
# pass/fail.
#
# Environment: BENCH_RUNTIME (s, default 8), BENCH_RAMP (2), BENCH_REPS (3),
# BENCH_CONTENDERS ("rs c tcp nvme"), BENCH_CPUS (guest vCPUs, default 2).
# BENCH_PROFILE=<job> (e.g. rand4k_qd32_j1): no benchmark; a system-wide `perf record` of that
# job per contender and round, reports in results/bench-*/profile-<contender>-<round>.txt;
# BENCH_PERF_ARGS=-g adds call graphs (and profile-*.locks.txt: callers of contended spinlocks).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
res=$top/results/bench-$(date +%Y%m%d-%H%M%S)${BENCH_CPUS:+-cpus$BENCH_CPUS}
mkdir -p "$res"
env_vars="ISER_RESULTS=$res"
for v in BENCH_RUNTIME BENCH_RAMP BENCH_REPS BENCH_PROFILE BENCH_PERF_ARGS; do
  [ -n "${!v:-}" ] && env_vars="$env_vars $v=${!v}"
done
[ -n "${BENCH_CONTENDERS:-}" ] && env_vars="$env_vars BENCH_CONTENDERS=${BENCH_CONTENDERS// /,}"
# The guest's time limit grows with the work: per contender and round, six jobs of
# runtime + ramp plus ~40 s to log in and out, with 50% headroom, plus boot and the raw limit.
read -ra cs <<<"${BENCH_CONTENDERS:-rs c tcp nvme}"
limit=$(( 900 + ${BENCH_REPS:-3} * ${#cs[@]} * (6 * (${BENCH_RUNTIME:-8} + ${BENCH_RAMP:-2}) + 40) * 3 / 2 ))
VM_ENV="$env_vars" "$top/scripts/vm-run" --kernel perf --cpus "${BENCH_CPUS:-2}" --timeout "$limit" \
  -- "$top/tests/vm/bench.sh" | tee "$res/bench.log"
if [ -n "${BENCH_PROFILE:-}" ]; then
  for f in "$res"/profile-*.txt; do
    case $f in *.dso.txt|*.locks.txt) continue ;; esac
    echo "== $(basename "$f")"; grep -E '^ +[0-9]' "$f" | head -n 25
  done
  exit 0
fi
python3 "$top/scripts/bench-report.py" "$res/bench.json" "$res/bench.md" "$res/bench.svg"
cat "$res/bench.md"
echo "bench: $res/bench.md, $res/bench.svg"
