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
# The host limit is what the registration size allows (sd then caps max_sectors_kb at the
# target's optimal transfer size; lift that to the host limit for this test).
[ "$hw" = "$want" ] || fail "max_hw_sectors_kb $hw, expected $want ($sg pages, 16 MiB at most)"
echo "$hw" >$q/max_sectors_kb || fail "raising max_sectors_kb to $hw"
fio_verify "$dev" w16m --rw=write --bs=16m --iodepth=2 --size=32M || fail "16 MiB write+verify"
# Mixed 16 MiB reads and writes in make check-long only (the budget of make check).
if [ -n "${ISER_LONG:-}" ]; then
  fio_verify "$dev" rw16m --rw=randrw --bs=16m --iodepth=2 --size=32M --offset=64M || fail "16 MiB randrw"
fi
iser_logout || fail "logout"
exit 0
