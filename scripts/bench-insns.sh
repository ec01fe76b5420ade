#!/usr/bin/env bash
# make bench-insns: our module's own instructions per I/O against the C ib_iser's, counted
# exactly: the perf kernel under TCG with a QEMU plugin (tests/icount) that counts every
# instruction the guest kernel executes, per address, between two marks the guest sets
# around each fio job (tests/vm/bench_insns.sh). scripts/bench-insns.py maps the addresses
# to modules and functions and writes results/bench-insns-<time>/insns.md: per I/O kind
# (4k read, 4k write with immediate data, 128k read), the instructions per I/O in ib_iser,
# libiscsi, scsi_transport_iscsi, rdma_rxe (both sides: initiator and target share the soft
# device) and the whole kernel (which includes the target), ours and C side by side, and
# each initiator's hottest functions. Counts, not timings: the same on any host.
#
# Environment: BENCH_INSNS_IOS (I/Os per job, default 4000), BENCH_INSNS_IMPLS ("rs c").
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
res=$top/results/bench-insns-$(date +%Y%m%d-%H%M%S)
mkdir -p "$res"
(cd "$top/tests/icount" && cargo build --release --offline --quiet)
plugin=$top/tests/icount/target/release/libiser_icount.so
env_vars="ISER_RESULTS=$res"
for v in BENCH_INSNS_IOS BENCH_INSNS_IMPLS; do
  [ -n "${!v:-}" ] && env_vars="$env_vars $v=${!v// /,}"
done
VM_PLUGIN="$plugin,out=$res/insns.dump" VM_ENV="$env_vars" \
  "$top/scripts/vm-run" --kernel perf --timeout "${BENCH_INSNS_TIMEOUT:-3600}" \
  -- "$top/tests/vm/bench_insns.sh" | tee "$res/vm.log"
python3 "$top/scripts/bench-insns.py" "$res" >"$res/insns.md"
cat "$res/insns.md"
echo "bench-insns: $res/insns.md"
