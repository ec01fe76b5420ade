#!/bin/bash
# Discovery + login + logout through ISER_IMPL: the session is an iser session on a SCSI
# host named iscsi_iser, the endpoint reports the portal, I/O statistics move, the
# debug_level=3 log tells the connection story, and logout leaves nothing behind (no
# session, no host, module unpinned and unloadable).
. "$(dirname "$0")/../lib.sh"
IMPL=${ISER_IMPL:-rs}
dev=$(iser_setup debug_level=3) || fail "setup/login"
[ "$(loaded_impl)" = "$IMPL" ] || fail "loaded implementation is $(loaded_impl), not $IMPL"
iscsiadm -m session -P 3 >"$ISER_RESULTS/session-P3.txt" || fail "iscsiadm -m session -P 3"
grep -q "Iface Transport: iser" "$ISER_RESULTS/session-P3.txt" || fail "transport is not iser"
grep -q "Current Portal: $IP:$PORT" "$ISER_RESULTS/session-P3.txt" || fail "portal not shown: $(grep Portal "$ISER_RESULTS/session-P3.txt")"
host=$(ls /sys/class/iscsi_host)
[ "$(cat /sys/class/scsi_host/$host/proc_name)" = iscsi_iser ] || fail "proc_name"
log "host $host: can_queue $(cat /sys/class/scsi_host/$host/can_queue), sg_tablesize $(cat /sys/class/scsi_host/$host/sg_tablesize), max_hw_sectors_kb $(cat /sys/block/$dev/queue/max_hw_sectors_kb)"
[ "$(cat /sys/block/$dev/queue/max_hw_sectors_kb)" = 512 ] || fail "max_hw_sectors_kb is not 512 with max_sectors=1024"
conn=$(ls /sys/class/iscsi_connection)
[ "$(cat /sys/class/iscsi_connection/$conn/address 2>/dev/null)" = "$IP" ] || fail "connection address"
[ "$(cat /sys/class/iscsi_connection/$conn/port 2>/dev/null)" = "$PORT" ] || fail "connection port"
[ "$(cat /sys/class/iscsi_connection/$conn/max_recv_dlength)" = 128 ] || fail "max_recv_dlength"
dd if=/dev/$dev of=/dev/null bs=64k count=16 iflag=direct 2>/dev/null || fail "read"
iscsiadm -m session -s >"$ISER_RESULTS/stats.txt" || fail "iscsiadm -m session -s"
cmds=$(awk '/scsicmd_pdus:/{print $2}' "$ISER_RESULTS/stats.txt")
rsps=$(awk '/scsirsp_pdus:/{print $2}' "$ISER_RESULTS/stats.txt")
log "stats: scsicmd_pdus $cmds scsirsp_pdus $rsps"
[ "${cmds:-0}" -ge 16 ] && [ "${rsps:-0}" -ge 16 ] || fail "statistics did not count the I/O"
[ "$(cat /sys/module/ib_iser/refcnt)" -gt 0 ] || fail "session does not pin the module"
if [ "$IMPL" = rs ]; then
  dmesg | grep -q "ib_iser: connected to $IP:$PORT (qp" || fail "no 'connected' line at debug_level=3"
  dmesg | grep -q "ib_iser: using device rxe0" || fail "no device line at debug_level=3"
fi
iser_logout || fail "logout"
[ -z "$(ls /sys/class/iscsi_session)" ] || fail "session left after logout"
[ -z "$(ls /sys/class/iscsi_host)" ] || fail "host left after logout"
iscsid_stop
[ "$(cat /sys/module/ib_iser/refcnt)" = 0 ] || fail "module refcount $(cat /sys/module/ib_iser/refcnt)"
unload_initiator || fail "rmmod"
exit 0
