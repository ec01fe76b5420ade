#!/bin/bash
# dm-multipath over two iSER paths (issue 21): one LUN through two sessions (path A: $IP on
# rxe0, LIO tpgt_1; path B: $IP_B on rxe1, tpgt_2), assembled by multipathd into one map
# with both paths in one round-robin group. Verified fio runs on the map throughout, while
# each kind of path failure in KINDS happens once per round (ROUNDS, 1; make check-long 5;
# KINDS: tpg and rdma, and tpg_a in make check-long):
#   tpg   - target portal group B disabled for DOWN_SECONDS (8): LIO drops the session and
#           refuses logins, then takes them again;
#   rdma  - path B's RDMA device removed (both ends of the path are on it), added back and
#           the target portal re-listening after DOWN_SECONDS;
#   tpg_a - the same as tpg on path A.
# Then RESETS (2; make check-long 3) LUN resets through path B (sg_reset -d) during the same I/O.
# For each: the fault must be seen (path B's connection failed and multipathd marked the
# path failed), the application must see no error, and the path must come back: multipathd
# reinstates it and both paths carry I/O again (each disk's completed I/O grows).
# Then every path down (both portal groups disabled) longer than the bound: a direct read of
# the map must fail with an I/O error, not hang, within BOUND (60) s; once the portal groups
# are back, both paths are reinstated and verified I/O works again.
. "$(dirname "$0")/../lib.sh"
ROUNDS=${ROUNDS:-${ISER_LONG:+5}}; ROUNDS=${ROUNDS:-1}
# make check: path B's two kinds of failure (path A's portal group in check-long).
KINDS=${KINDS:-tpg rdma${ISER_LONG:+ tpg_a}}
RESETS=${RESETS:-$([ -n "${ISER_LONG:-}" ] && echo 3 || echo 2)}
DOWN=${DOWN_SECONDS:-8}
BOUND=${BOUND:-60}
mp_rig_targets || fail "the two-path rig's targets"
mp_rig_paths || fail "the two-path rig's initiator side"
log "map $dm ($(cat /sys/block/$dm/dm/name)): path A $da, path B $db; $(mp_paths | tr '\n' ';')"
log "recovery_tmo set by multipathd: $(cat /sys/class/iscsi_session/session*/recovery_tmo | tr '\n' ' ')"

# path_of KIND: the disk that KIND fails.
path_of() { [ "$1" = tpg_a ] && echo "$da" || echo "$db"; }

fio_loop_start "$dm"
for r in $(seq "$ROUNDS"); do
  for kind in $KINDS; do
    sleep 3
    victim=$(path_of "$kind")
    c0=$(conn_failures)
    case $kind in
      tpg) lio_tpg_enable 2 0 || fail "disable tpgt_2" ;;
      tpg_a) lio_tpg_enable 1 0 || fail "disable tpgt_1" ;;
      rdma) rdma link delete "$RXE_B" || fail "remove $RXE_B" ;;
    esac
    mp_wait_paths "failed [a-z/ ]+" 1 60 || fail "round $r, $kind: multipathd never marked a path failed"
    failed=$(mp_paths | awk '$2 == "failed" { print $1 }' | tr '\n' ' ')
    [ "$failed" = "$victim " ] || fail "round $r, $kind: failed paths '$failed', expected $victim"
    sleep "$DOWN"
    case $kind in
      tpg) lio_tpg_enable 2 1 || fail "enable tpgt_2" ;;
      tpg_a) lio_tpg_enable 1 1 || fail "enable tpgt_1" ;;
      rdma)
        path_b_up || fail "round $r: $RXE_B back"
        np=$CFS/iscsi/$IQN/tpgt_2/np/$IP_B:$PORT
        echo 0 >"$np/iser"; echo 1 >"$np/iser" || fail "round $r: portal B listening again" ;;
    esac
    t0=$(date +%s)
    mp_wait_paths "active ready" 2 120 || fail "round $r, $kind: path not reinstated"
    [ "$(conn_failures)" -gt "$c0" ] || fail "round $r, $kind: no connection failure was reported"
    # Failback: both paths carry I/O again.
    moved=$(both_carry_io 90) || fail "round $r, $kind: after reinstatement not both paths carry I/O ($moved)"
    log "round $r, $kind: $victim failed, the application saw no error; reinstated after $(( $(date +%s) - t0 )) s, both paths carry I/O"
  done
done
# LUN resets on path B during the same verified I/O (blktests srp/014): the SCSI error
# handler sends LOGICAL UNIT RESET through path B's session and the LUN's commands there are
# failed back and retried; the application must see nothing. sg_reset exits 0 only if the
# reset was carried out.
sg=/dev/$(ls "/sys/block/$db/device/scsi_generic/") || fail "no sg device for $db"
for i in $(seq "$RESETS"); do
  sleep 3
  sg_reset -d "$sg" || fail "LUN reset $i through path B ($sg) failed"
done
mp_wait_paths "active ready" 2 120 || fail "after the LUN resets: not both paths active"
log "$RESETS LUN resets through path B during I/O: both paths active afterwards"
fio_loop_stop || fail "verified I/O on the map during path failures and LUN resets"

# Every path down: the application gets an I/O error in bounded time, not a hang.
lio_tpg_enable 1 0 && lio_tpg_enable 2 0 || fail "disable both portal groups"
t0=$(date +%s)
timeout $((BOUND + 60)) dd if="/dev/$dm" of=/dev/null bs=4k count=1 iflag=direct 2>/tmp/mp_dd.err
rc=$? t=$(( $(date +%s) - t0 ))
[ $rc = 124 ] && fail "all paths down: the read hung for $((BOUND + 60)) s"
[ $rc != 0 ] || fail "all paths down: the read succeeded"
grep -q "Input/output error" /tmp/mp_dd.err || fail "all paths down: the read failed otherwise: $(cat /tmp/mp_dd.err)"
[ $t -le "$BOUND" ] || fail "all paths down: the I/O error came after $t s (bound $BOUND s)"
log "all paths down: I/O error after $t s (bound $BOUND s: recovery_tmo ${FAST_IO_FAIL:-10} s + ${NO_PATH_RETRY:-5} path checks)"
sleep 3
lio_tpg_enable 1 1 && lio_tpg_enable 2 1 || fail "enable both portal groups"
t0=$(date +%s)
mp_wait_paths "active ready" 2 180 || fail "paths not reinstated after every path was down"
log "both paths reinstated $(( $(date +%s) - t0 )) s after the portal groups came back"
fio_verify "$dm" after_all_down --rw=randwrite --bsrange=4k-64k --iodepth=16 --size=8M || fail "verified I/O after every path was down"

mp_stop || fail "multipathd stop"
iscsiadm -m node -T "$IQN" --logout >/dev/null 2>&1 || true
ls /sys/class/iscsi_session/ | grep -q . && fail "sessions left after logout: $(ls /sys/class/iscsi_session/)"
iscsid_stop
unload_initiator || fail "rmmod"
path_b_down
exit 0
