#!/bin/bash
# 16 MiB I/Os with max_sectors=32768: the host limit follows the device's registration size
# (rxe maps 512 pages per MR, so the block layer splits 16 MiB into ~2 MiB commands; an HCA
# with 4096-page MRs carries 16 MiB in one command), and data stays intact.
. "$(dirname "$0")/../lib.sh"
dev=$(iser_setup max_sectors=32768) || fail "setup/login"
q=/sys/block/$dev/queue
host=$(ls /sys/class/iscsi_host)
sg=$(cat /sys/class/scsi_host/$host/sg_tablesize)
hw=$(cat $q/max_hw_sectors_kb)
want=$((sg * 4)); [ $want -gt 16384 ] && want=16384
log "max_sectors=32768: sg_tablesize $sg, max_hw_sectors_kb $hw, max_sectors_kb $(cat $q/max_sectors_kb)"
log "ping timeout $(cat /sys/class/iscsi_connection/*/ping_tmo | tr '\n' ' ')s (NOOP_TIMEOUT ${NOOP_TIMEOUT:-} at pace ${ISER_PACE:-100}/100)"
# The host limit is what the registration size allows (sd then caps max_sectors_kb at the
# target's optimal transfer size; lift that to the host limit for this test).
[ "$hw" = "$want" ] || fail "max_hw_sectors_kb $hw, expected $want ($sg pages, 16 MiB at most)"
echo "$hw" >$q/max_sectors_kb || fail "raising max_sectors_kb to $hw"
# One 16 MiB I/O at a time (eight 2 MiB commands on rxe): LIO answers a ping only after the
# data queued before it, so the connection is silent for as long as the rig takes to move
# what is in flight; with two 16 MiB writes in flight that passed 60 s on a slow CI machine
# (2026-12-06). Two in flight in make check-long only (the budget of make check). Writes, so
# that each run moves data both ways (the verify reads back); a 16 MiB randrw of two I/Os
# once drew two reads and wrote nothing.
fio_verify "$dev" w16m --rw=write --bs=16m --iodepth=1 --size=32M || fail "16 MiB write+verify"
if [ -n "${ISER_LONG:-}" ]; then
  fio_verify "$dev" w16m2 --rw=write --bs=16m --iodepth=2 --size=64M --offset=64M || fail "16 MiB writes, two in flight"
fi
iser_logout || fail "logout"
exit 0
