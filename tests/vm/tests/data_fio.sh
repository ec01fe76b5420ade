#!/bin/bash
# Data integrity through ISER_IMPL with module parameters $MODPARAMS: fio writes with crc32c
# and reads everything back (verify) for 4k/64k/1M blocks, sequential/random/mixed, queue
# depth 1 and 64, O_DIRECT buffers that are only 512-byte aligned, and read-only passes
# over data written earlier. Any verify error fails the test.
. "$(dirname "$0")/../lib.sh"
# shellcheck disable=SC2086
dev=$(iser_setup $MODPARAMS) || fail "setup/login"
log "params: ${MODPARAMS:-defaults}, target: ${LIO_PARAMS:-defaults}; /dev/$dev max_sectors_kb $(cat /sys/block/$dev/queue/max_sectors_kb)"
if [ -n "${LIO_PARAMS:-}" ]; then
  iscsiadm -m session -P 2 | grep -E "InitialR2T|ImmediateData|FirstBurstLength|MaxXmitDataSegmentLength" | sed 's/^[[:space:]]*//'
fi
if [ "${QUICK:-0}" = 1 ] && [ -z "${ISER_LONG:-}" ]; then
  # QUICK=1 (every entry of tests.list since 2026-12-04: the budget of make check) in make
  # check: every I/O kind once, about a third of the bytes (the debug VM moves ~1 MiB/s);
  # make check-long runs the whole matrix for each.
  fio_verify "$dev" w4k_qd1 --rw=write --bs=4k --iodepth=1 --size=512k || fail "4k write qd1"
  fio_verify "$dev" rw4k_qd64 --rw=randrw --bs=4k --iodepth=64 --size=2M --offset=8M || fail "4k randrw qd64"
  fio_verify "$dev" w64k_qd64 --rw=write --bs=64k --iodepth=64 --size=4M --offset=32M || fail "64k write qd64"
  fio_verify "$dev" w1m_qd64 --rw=randwrite --bs=1m --iodepth=64 --size=8M --offset=64M || fail "1m randwrite qd64"
  FIO_TAG=_reread fio_verify "$dev" w1m_qd64 --rw=randwrite --bs=1m --iodepth=64 --size=8M \
    --offset=64M --verify_only=1 || fail "1m read-back qd64"
  fio_verify "$dev" unaligned --rw=randwrite --bsrange=512-128k --blockalign=512 --iomem_align=512 \
    --iodepth=8 --size=2M --offset=128M || fail "512-byte aligned buffers"
else
fio_verify "$dev" w4k_qd1 --rw=write --bs=4k --iodepth=1 --size=1M || fail "4k write qd1"
fio_verify "$dev" rw4k_qd64 --rw=randrw --bs=4k --iodepth=64 --size=2M --offset=8M || fail "4k randrw qd64"
fio_verify "$dev" rw64k_qd1 --rw=randrw --bs=64k --iodepth=1 --size=4M --offset=16M || fail "64k randrw qd1"
fio_verify "$dev" w64k_qd64 --rw=write --bs=64k --iodepth=64 --size=8M --offset=32M || fail "64k write qd64"
fio_verify "$dev" w1m_qd64 --rw=randwrite --bs=1m --iodepth=64 --size=16M --offset=64M || fail "1m randwrite qd64"
fio_verify "$dev" rw1m_qd1 --rw=randrw --bs=1m --iodepth=1 --size=8M --offset=96M || fail "1m randrw qd1"
# Read-only passes over data written above (verify_only replays the job and checks every
# block it wrote): 64k and 1m reads at queue depth 64.
FIO_TAG=_reread fio_verify "$dev" w64k_qd64 --rw=write --bs=64k --iodepth=64 --size=8M \
  --offset=32M --verify_only=1 || fail "64k read-back qd64"
FIO_TAG=_reread fio_verify "$dev" w1m_qd64 --rw=randwrite --bs=1m --iodepth=64 --size=16M \
  --offset=64M --verify_only=1 || fail "1m read-back qd64"
# O_DIRECT buffers at a 512-byte offset from a page: the first and last page of every
# registration are partial.
fio_verify "$dev" unaligned --rw=randwrite --bsrange=512-128k --blockalign=512 --iomem_align=512 \
  --iodepth=8 --size=4M --offset=128M || fail "512-byte aligned buffers"
fi
if [ "${LIO_PARAMS:-}" = InitialR2T=No ]; then
  iscsiadm -m session -P 2 | grep -q "InitialR2T: No" || fail "InitialR2T=No was not negotiated"
  n=$(iscsiadm -m session -s | awk '/dataout_pdus:/{print $2}')
  log "unsolicited Data-Out PDUs sent: $n"
  [ "${n:-0}" -gt 0 ] || fail "no unsolicited Data-Out PDU was sent"
fi
# How ours' registrations were invalidated (the target's Send with Invalidate, or our LOCAL_INV
# before the response was delivered) and how they were exposed.
for f in /sys/kernel/debug/iser/*/stats; do
  [ -r "$f" ] && log "$(grep -E '^(reg_fastreg|reg_dma_key|inval_remote|inval_local|rsp_held_dropped) ' "$f" | tr '\n' ' ')"
done
iser_logout || fail "logout"
exit 0
