#!/bin/bash
# make bench-insns, inside the VM (perf kernel; QEMU runs the icount plugin, tests/icount):
# for each initiator (ours, the C ib_iser) and each I/O kind, a fio job of a fixed number of
# I/Os between two marks (`icount-mark reset`, `icount-mark dump`); the plugin appends the
# guest kernel's executed instructions per address to its output file at each dump. This
# script records which dump is which ($ISER_RESULTS/dumps.txt), the I/Os each job did (fio
# JSON) and the loaded modules' symbols ($ISER_RESULTS/kallsyms-<impl>.txt) for
# scripts/bench-insns.py.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
MARK=$ISER_TOP/tests/icount/target/release/icount-mark
OUT=$ISER_RESULTS
N=${BENCH_INSNS_IOS:-4000}
IMPLS=${BENCH_INSNS_IMPLS:-rs c}
# name, fio arguments: a 4k read, a 4k write (its data rides as immediate data: LIO's
# default ImmediateData=Yes, FirstBurstLength 64 KiB), a 128k read (a registration of 32
# pages).
JOBS=(
  "read4k --rw=randread --bs=4k --iodepth=16"
  "write4k --rw=randwrite --bs=4k --iodepth=16"
  "read128k --rw=randread --bs=128k --iodepth=4"
)
die() { echo "bench-insns: $*" >&2; exit 1; }
[ -x "$MARK" ] || die "no $MARK (scripts/bench-insns.sh builds it)"
: >"$OUT/dumps.txt"
dumps=0
for impl in ${IMPLS//,/ }; do
  dev=$(ISER_IMPL=$impl iser_setup) || die "$impl: setup and login"
  # Symbols of the modules on the I/O path, as loaded now (addresses change per load).
  grep -E '\[(ib_iser|libiscsi|scsi_transport_iscsi|rdma_rxe|ib_core|rdma_cm|ib_cm|iw_cm|sd_mod|scsi_mod)\]' \
    /proc/kallsyms >"$OUT/kallsyms-$impl.txt"
  grep -E '^(ib_iser|libiscsi|scsi_transport_iscsi|rdma_rxe|ib_core|rdma_cm|sd_mod|scsi_mod) ' \
    /proc/modules >"$OUT/modules-$impl.txt"
  for spec in "${JOBS[@]}"; do
    read -r job args <<<"$spec"
    # shellcheck disable=SC2086
    fio --name=warm --filename="/dev/$dev" --allow_file_create=0 --direct=1 --ioengine=libaio \
      --number_ios=200 $args --output=/dev/null >/dev/null 2>&1 || die "$impl $job: warm-up fio"
    "$MARK" reset
    # shellcheck disable=SC2086
    fio --name="$job" --filename="/dev/$dev" --allow_file_create=0 --direct=1 --ioengine=libaio \
      --number_ios="$N" $args --output-format=json --output="$OUT/fio-$impl-$job.json" >/dev/null 2>&1 \
      || die "$impl $job: fio"
    "$MARK" dump
    dumps=$((dumps + 1))
    echo "$dumps $impl $job" >>"$OUT/dumps.txt"
    echo "bench-insns: $impl $job: dump $dumps"
  done
  iser_logout || die "$impl: logout"
  iscsid_stop
  unload_initiator || die "$impl: rmmod"
  lio_teardown
done
echo "bench-insns: $dumps dumps"
