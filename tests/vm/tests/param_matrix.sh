#!/bin/bash
# The negotiated-parameter matrix against LIO: for each cell, the target portal group's
# InitialR2T, ImmediateData, FirstBurstLength, MaxBurstLength and MaxRecvDataSegmentLength
# (what the initiator may send per PDU) and the initiator's node.session.cmds_max, then a
# login and a verified fio run (random writes of 4k-256k, then every block read back) at a
# queue depth above cmds_max. What was negotiated is printed per cell. No connection failure
# is allowed (the suite checks it: this test injects no fault), no I/O or verify error.
#
# The rig moves about 1 MiB/s, so a cell's 16 MiB of writes at QD 256 is some 15 s of data in
# flight. Two timers of a real deployment's scale fire on that backlog without a fault: the
# initiator's NOP-Out ping (the target answers it only after the transfers queued before it;
# NOOP_TIMEOUT=30 in tests.list) and LIO's Data-Out timer (3 s from an R2T to its first
# Data-Out; at ERL 0 the target then drops the connection: "Unable to recover from DataOut
# timeout"), which tests.list raises to its maximum, 60 s (LIO_NODE_ATTRIBS), with the time
# LIO waits for the answer to its NOP-In (30 s), queued behind the same backlog.
#
# MATRIX=short (make check): the cells that stress the unsolicited Data-Out path and the
# task pool's bounds; MATRIX=full (ISER_LONG, make check-long): InitialR2T x ImmediateData x
# FirstBurstLength (8 KiB, 256 KiB, 16 MiB) x MaxRecvDataSegmentLength (512 B, 8 KiB,
# 256 KiB), and cmds_max 16 / 128 / 1024 on three of them.
. "$(dirname "$0")/../lib.sh"
MATRIX=${MATRIX:-${ISER_LONG:+full}}; MATRIX=${MATRIX:-short}
# Each cell writes CELL_MB (4 MiB in make check, 16 in check-long) and reads it back (8 MiB
# cells timed out at 900 s in the fifth cell on a slow host, 2026-12-05).
CELL_MB=${CELL_MB:-$([ "$MATRIX" = full ] && echo 16 || echo 4)}
M16=16776704   # FirstBurstLength/MaxBurstLength at most 2^24-1: 16 MiB less 512 bytes
cells=()
if [ "$MATRIX" = full ]; then
  for r2t in Yes No; do for imm in Yes No; do for fb in 8192 262144 $M16; do for mrdsl in 512 8192 262144; do
    cells+=("InitialR2T=$r2t ImmediateData=$imm FirstBurstLength=$fb MaxBurstLength=$(( fb > 262144 ? fb : 262144 )) MaxRecvDataSegmentLength=$mrdsl ?TargetRecvDataSegmentLength=$mrdsl|128|64")
  done; done; done; done
  for cm in 16 128 1024; do
    cells+=("InitialR2T=No ImmediateData=Yes FirstBurstLength=262144 MaxBurstLength=262144 MaxRecvDataSegmentLength=8192|$cm|$((cm * 2))|--bs=256k")
  done
else
  cells=(
    # issue 20 item 1: 32 Data-Outs per 256 KiB write, many writes in flight
    # (256 KiB writes only, all 16 of a cell's 4 MiB in flight at once in make check: 512
    # Data-Outs, twice the old fixed pool; 64 and 2048 in check-long's 16 MiB)
    "InitialR2T=No ImmediateData=Yes FirstBurstLength=262144 MaxBurstLength=262144 MaxRecvDataSegmentLength=8192|128|64|--bs=256k"
    # the smallest PDUs, no immediate data: every unsolicited byte in 512-byte Data-Outs
    # (LIO's iSER portals negotiate 8 KiB whatever MaxRecvDataSegmentLength says, unless its
    # iSER key TargetRecvDataSegmentLength is set too, where it has one)
    "InitialR2T=No ImmediateData=No FirstBurstLength=65536 MaxBurstLength=262144 MaxRecvDataSegmentLength=512 ?TargetRecvDataSegmentLength=512|128|32"
    # solicited only, the largest PDUs
    "InitialR2T=Yes ImmediateData=Yes FirstBurstLength=8192 MaxBurstLength=$M16 MaxRecvDataSegmentLength=262144 ?TargetRecvDataSegmentLength=262144|128|32"
    # a small task pool under a deeper queue, and a large one
    "InitialR2T=Yes ImmediateData=Yes FirstBurstLength=65536 MaxBurstLength=262144 MaxRecvDataSegmentLength=8192|16|64"
    "InitialR2T=No ImmediateData=Yes FirstBurstLength=65536 MaxBurstLength=262144 MaxRecvDataSegmentLength=65536|1024|256"
  )
fi
rdma_up rxe || fail "rxe"
lio_backstore 256 || fail "LIO backstore"
load_initiator "${ISER_IMPL:-rs}" || fail "load"
iscsid_start
log "matrix: $MATRIX, ${#cells[@]} cells"
i=0
for cell in "${cells[@]}"; do
  i=$((i + 1))
  IFS='|' read -r params cm qd bs <<<"$cell"
  LIO_PARAMS=$params lio_target_up || fail "cell $i: target with $params"
  dev=$(CMDS_MAX=$cm iser_login) || fail "cell $i: login with $params cmds_max $cm"
  neg=$(iscsiadm -m session -P 2 | grep -E 'InitialR2T|ImmediateData|FirstBurstLength|MaxBurstLength|MaxXmitDataSegmentLength' \
    | sed 's/^[[:space:]]*//; s/: /=/' | tr '\n' ' ')
  host=$(ls /sys/class/iscsi_host)
  log "cell $i: target $params; cmds_max $cm (can_queue $(cat /sys/class/scsi_host/$host/can_queue)), fio QD $qd ${bs:-4k-256k}"
  log "  negotiated: $neg"
  FIO_TAG=_$i fio_verify "$dev" cell --rw=randwrite ${bs:---bsrange=4k-256k} --iodepth="$qd" --size="$CELL_MB"M \
    --offset=$(( (i % 8) * 16 ))M --verify_backlog=256 || fail "cell $i: verified I/O ($params, cmds_max $cm)"
  st=$(cat /sys/kernel/debug/iser/*/stats 2>/dev/null | awk '/^(dataout_pdus|requeue_dataout) /{printf "%s %s ", $1, $2}')
  [ -z "$st" ] || log "  ours: $st"
  iser_logout || fail "cell $i: logout"
  lio_target_down || fail "cell $i: target down"
done
iscsid_stop
unload_initiator || fail "rmmod"
exit 0
