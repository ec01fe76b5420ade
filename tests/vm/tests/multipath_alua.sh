#!/bin/bash
# ALUA under dm-multipath (issue 21): the two iSER paths of multipath.sh (path A: $IP on rxe0,
# LIO tpgt_1; path B: $IP_B on rxe1, tpgt_2), each LIO portal group's LUN in its own ALUA
# target port group (pg_a, pg_b). multipathd groups the paths by their ALUA priority
# (scsi_dh_alua, `prio alua`, group_by_prio), so only the active/optimized path carries I/O.
# During verified I/O on the map, the target switches the states SWITCHES (2; make check-long
# 12) times, alternating:
#   pg_a active/optimized, pg_b active/non-optimized  ->  pg_a standby, pg_b active/optimized
#   and back (pg_a active/optimized, pg_b standby)
# (nvme-rdma's ANA failover tests are the analogue). After each switch the I/O must move to
# the newly optimized path (its disk completes I/O, the other's stays still), and the
# application must see no error. Commands that reach the standby port fail with "LOGICAL UNIT
# NOT ACCESSIBLE, TARGET PORT IN STANDBY STATE" and are retried on the other path: no
# connection fails.
. "$(dirname "$0")/../lib.sh"
SWITCHES=${SWITCHES:-$([ -n "${ISER_LONG:-}" ] && echo 12 || echo 2)}
export MP_PRIO=alua MP_POLICY=group_by_prio
mp_rig_targets || fail "the two-path rig's targets"
# The ALUA target port groups: implicit ALUA (the target changes states; the initiator
# learns them from REPORT TARGET PORT GROUPS after a unit attention).
alua=$CFS/core/iblock_0/nullb0/alua
# state G S: sets target port group G's ALUA access state (0 active/optimized,
# 1 active/non-optimized, 2 standby).
state() { echo "$2" >"$alua/$1/alua_access_state" || fail "ALUA state $2 for $1"; }
mkdir -p "$alua/pg_a" "$alua/pg_b" || fail "ALUA target port groups"
echo 11 >"$alua/pg_a/tg_pt_gp_id" && echo 12 >"$alua/pg_b/tg_pt_gp_id" || fail "ALUA group ids"
echo 1 >"$alua/pg_a/alua_access_type" && echo 1 >"$alua/pg_b/alua_access_type" || fail "implicit ALUA"
echo pg_a >"$CFS/iscsi/$IQN/tpgt_1/lun/lun_0/alua_tg_pt_gp" || fail "LUN of tpgt_1 into pg_a"
echo pg_b >"$CFS/iscsi/$IQN/tpgt_2/lun/lun_0/alua_tg_pt_gp" || fail "LUN of tpgt_2 into pg_b"
state pg_a 0; state pg_b 1
mp_rig_paths || fail "the two-path rig's initiator side"
for d in "$da" "$db"; do
  h=$(cat "/sys/block/$d/device/dh_state" 2>/dev/null)
  [ "$h" = alua ] || fail "$d: device handler '$h', expected alua (scsi_dh_alua)"
done
log "map $dm: path A $da, path B $db; $(multipathd show paths raw format '%d %t %T prio %p' | tr '\n' ';')"

# prio DEV: multipathd's priority of the path.
prio() { multipathd show paths raw format '%d %p' 2>/dev/null | awk -v d="$1" '$1 == d { print $2 }'; }
# The waits below are for the rig (fio's loop, scsi_dh_alua's REPORT TARGET PORT GROUPS,
# multipathd's checker, all under TCG), not bounds on the driver: 32-45 s a switch in one
# check-long run, 80-111 s in a slower one where the fourth passed 90 s (2026-12-06, after
# the 45-minute session test in the same VM); so 120 s, paced (lib.sh).
MOVE_WAIT=$(paced 120)
# moved_to NEW OLD T: waits (T s) until multipathd gives NEW the higher priority and NEW
# completes I/O; then, once OLD has no command in flight (those sent before the switch), OLD must stay
# still while NEW completes more (waiting up to 60 s, paced, for that: the verified I/O is a loop of
# fio jobs with seconds between two jobs, and a fixed window fell into such a gap).
moved_to() {
  local new=$1 old=$2 end=$((SECONDS + $3)) n0 o0 o1
  while [ $SECONDS -lt $end ]; do
    [ "$(prio "$new")" -gt "$(prio "$old")" ] 2>/dev/null && break
    sleep 1
  done
  [ "$(prio "$new")" -gt "$(prio "$old")" ] 2>/dev/null \
    || { echo "priorities after $3 s: $new $(prio "$new"), $old $(prio "$old")"; return 1; }
  n0=$(disk_ios "$new")
  while [ $SECONDS -lt $end ] && [ "$(disk_ios "$new")" -le "$n0" ]; do sleep 1; done
  [ "$(disk_ios "$new")" -gt "$n0" ] || { echo "$new completed no I/O in $3 s"; return 1; }
  # Commands sent to OLD before the switch still complete there: wait until OLD has none in
  # flight (bounded, paced). A fixed 3 s was too short in a make check at 1.43 times the pace
  # (2026-12-07: 2 more completions on OLD after it, no refusal among them).
  local drain; drain=$((SECONDS + $(paced 30)))
  while [ $SECONDS -lt $drain ] && [ "$(disk_inflight "$old")" != 0 ]; do sleep 0.5; done
  # The old path may complete a command only by refusing it (the standby port's NOT READY,
  # after which dm-multipath retries it on the new path): multipathd's TUR checker finds a
  # standby port ready and reinstates it, and dm-multipath may try it once more before the
  # new priorities settle (seen in check-long, 2026-12-06: "Reinstating path 8:16", then
  # "Failing path 8:16" with one READ refused). Each refusal is an "I/O error, dev OLD" line;
  # any completion on OLD beyond those carried data and fails the test.
  local w e0 e1; w=$(paced 60)
  e0=$(dmesg | grep -c "I/O error, dev $old,")
  o0=$(disk_ios "$old") n0=$(disk_ios "$new") end=$((SECONDS + w))
  while [ $SECONDS -lt $end ] && [ "$(disk_ios "$new")" -le "$n0" ]; do sleep 1; done
  [ "$(disk_ios "$new")" -gt "$n0" ] || { echo "$new completed no I/O for $w s after the switch"; return 1; }
  o1=$(disk_ios "$old") e1=$(dmesg | grep -c "I/O error, dev $old,")
  [ $((o1 - o0)) -le $((e1 - e0)) ] \
    || { echo "$old still carries I/O ($o0 -> $o1, of which $((e1 - e0)) refused) after the switch"; return 1; }
  [ "$o1" = "$o0" ] || echo "($old refused $((o1 - o0)) command(s) after the switch: retried on $new)" >&2
}

fio_loop_start "$dm"
moved=$(moved_to "$da" "$db" "$MOVE_WAIT") || fail "at the start, I/O not on the optimized path A: $moved"
log "I/O on $da (pg_a active/optimized), none on $db (pg_b active/non-optimized)"
c0=$(conn_failures)
for i in $(seq "$SWITCHES"); do
  if [ $((i % 2)) = 1 ]; then
    state pg_b 0; state pg_a 2; new=$db old=$da what="pg_a standby, pg_b active/optimized"
  else
    state pg_a 0; state pg_b 2; new=$da old=$db what="pg_a active/optimized, pg_b standby"
  fi
  t0=$(date +%s)
  moved=$(moved_to "$new" "$old" "$MOVE_WAIT") || fail "switch $i ($what): $moved"
  log "switch $i ($what): I/O moved to $new in $(( $(date +%s) - t0 )) s"
  [ -e /tmp/fio_loop.fail ] && break
done
fio_loop_stop || fail "verified I/O on the map during the ALUA switches"
[ "$(conn_failures)" = "$c0" ] || fail "connection failures during the ALUA switches: $(dmesg | unexpected_conn_errors | tail -n 3)"
mp_stop || fail "multipathd stop"
iscsiadm -m node -T "$IQN" --logout >/dev/null 2>&1 || true
ls /sys/class/iscsi_session/ | grep -q . && fail "sessions left after logout: $(ls /sys/class/iscsi_session/)"
iscsid_stop
unload_initiator || fail "rmmod"
# The ALUA groups go before the backstore (the suite's cleanup removes the rest).
echo default_tg_pt_gp >"$CFS/iscsi/$IQN/tpgt_1/lun/lun_0/alua_tg_pt_gp" 2>/dev/null
echo default_tg_pt_gp >"$CFS/iscsi/$IQN/tpgt_2/lun/lun_0/alua_tg_pt_gp" 2>/dev/null
rmdir "$alua/pg_a" "$alua/pg_b" || fail "ALUA groups left"
path_b_down
exit 0
