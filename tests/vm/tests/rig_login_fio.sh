#!/bin/bash
# The rig end to end: rxe on the VM NIC, LIO target with iSER on a 256 MiB null_blk LUN,
# iscsid, SendTargets discovery + login over iSER through ISER_IMPL (c: in-tree ib_iser,
# rs: ours), the LUN as /dev/sdX, fio random write (4k-1m blocks, multi-page registrations)
# with crc32c verify of every block, logout. 8 MiB in make check (the data tests move more;
# this one shows the rig and both initiators work), 64 MiB in make check-long.
. "$(dirname "$0")/../lib.sh"
IMPL=${ISER_IMPL:-rs}
SIZE=${ISER_LONG:+64}; SIZE=${SIZE:-8}
rdma_up rxe || fail "rxe on the VM NIC"
log "rdma: $(rdma link show | head -n1)"
lio_setup 256 || fail "LIO target"
load_initiator "$IMPL" || fail "load ib_iser ($IMPL)"
[ "$(loaded_impl)" = "$IMPL" ] || fail "loaded implementation is $(loaded_impl), not $IMPL"
iscsid_start
t0=$(date +%s.%N)
dev=$(iser_login) || fail "discovery/login over iSER"
log "login -> /dev/$dev in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}') s"
sess=$(iscsiadm -m session)
log "session: $sess"
echo "$sess" | grep -q "^iser:" || fail "session transport is not iser"
sz=$(blockdev --getsize64 "/dev/$dev")
[ "$sz" = $((256 * 1024 * 1024)) ] || fail "LUN size $sz"
fio --name=verify --filename="/dev/$dev" --allow_file_create=0 --direct=1 --ioengine=libaio --rw=randwrite \
  --bsrange=4k-1m --iodepth=16 --size=${SIZE}M --verify=crc32c --verify_backlog=512 --do_verify=1 \
  --verify_fatal=1 --verify_state_save=0 --output-format=json --output="$ISER_RESULTS/rig_fio_$IMPL.json" \
  || fail "fio write+verify failed"
read -r errs iops mibs < <(jq -r '.jobs[0] | "\(.error) \(.write.iops | floor) \(.write.bw / 1024)"' "$ISER_RESULTS/rig_fio_$IMPL.json")
wr=$(printf '%d IOPS %.1f MiB/s' "$iops" "$mibs")
log "fio randwrite 4k-1m + verify $SIZE MiB: $wr, error=$errs"
[ "$errs" = 0 ] || fail "fio reported error $errs"
iser_logout || fail "logout"
[ -e "/dev/$dev" ] && { sleep 1; [ -e "/dev/$dev" ] && fail "/dev/$dev still present after logout"; }
iscsid_stop
unload_initiator || fail "rmmod ib_iser after logout"
exit 0
