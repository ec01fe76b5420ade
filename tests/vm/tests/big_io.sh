#!/bin/bash
# 16 MiB I/Os with max_sectors=32768: the host limit follows the device's registration size
# (rxe maps 512 pages per MR, so the block layer splits 16 MiB into ~2 MiB commands; an HCA
# with 4096-page MRs carries 16 MiB in one command), and data stays intact.
. "$(dirname "$0")/../lib.sh"
dev=$(iser_setup max_sectors=32768) || fail "setup/login"
kb=$(cat /sys/block/$dev/queue/max_sectors_kb)
host=$(ls /sys/class/iscsi_host)
sg=$(cat /sys/class/scsi_host/$host/sg_tablesize)
log "max_sectors=32768: sg_tablesize $sg, max_sectors_kb $kb"
[ "$kb" -ge 1024 ] || fail "max_sectors_kb $kb is below 1 MiB"
[ "$kb" -le $((sg * 4)) ] || fail "max_sectors_kb $kb exceeds what $sg pages map"
fio_verify "$dev" w16m --rw=write --bs=16m --iodepth=4 --size=64M || fail "16 MiB write+verify"
fio_verify "$dev" rw16m --rw=randrw --bs=16m --iodepth=2 --size=64M --offset=64M || fail "16 MiB randrw"
iser_logout || fail "logout"
exit 0
