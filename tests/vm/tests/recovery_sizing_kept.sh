#!/bin/bash
# A session's connection rebuilt after a recovery is sized for the session, not for what
# changed since (issue 20 item 3): logged in with max_sectors=4096 (commands of up to 2 MiB,
# ~511-page registrations on rxe), then max_sectors is lowered to 1024 (0644: for new sessions) and the
# connection is torn down (rxe0 removed and re-added). The recovered connection must still
# carry the session's 2 MiB commands (before the fix it was sized from the live 1024 sectors,
# and every 2 MiB command was requeued until the SCSI timeout), with verified I/O; the SCSI
# host keeps its limits; a new session after logout takes the new value.
# (A recovery onto a device that cannot carry the session is refused at bind with the reason:
# not reachable in this rig, whose two soft devices cannot both serve LIO's portal.)
. "$(dirname "$0")/../lib.sh"
P=/sys/module/ib_iser/parameters/max_sectors
dev=$(REPLACEMENT_TIMEOUT=120 iser_setup max_sectors=4096) || fail "setup/login"
hw=$(cat "/sys/block/$dev/queue/max_hw_sectors_kb")
log "session sized for max_sectors=4096: max_hw_sectors_kb $hw"
[ "$hw" -ge 2000 ] || fail "max_hw_sectors_kb $hw with max_sectors=4096"
fio_verify "$dev" before --rw=write --bs=2M --iodepth=2 --size=8M || fail "2 MiB writes before"
echo 1024 >"$P" || fail "max_sectors=1024 refused"
timeout 60 rdma link delete rxe0 || fail "rdma link delete rxe0"
sleep 2
rdma_up rxe || fail "re-adding rxe0"
lio_relisten || fail "target listener"
t=$(wait_recovered "$dev" 100) || fail "session did not recover"
log "recovered in ${t} s with max_sectors now $(cat $P)"
[ "$(cat "/sys/block/$dev/queue/max_hw_sectors_kb")" = "$hw" ] || fail "the SCSI host's limit changed"
dmesg | grep -q "cannot bind the connection" && fail "the recovered connection was refused: $(dmesg | grep 'cannot bind' | tail -n1)"
fio_verify "$dev" after --rw=write --bs=2M --iodepth=2 --size=8M --offset=16M \
  || fail "2 MiB writes after the recovery"
iser_logout || fail "logout"
iscsiadm -m node -o delete >/dev/null 2>&1
dev=$(iser_login) || fail "new login"
hw2=$(cat "/sys/block/$dev/queue/max_hw_sectors_kb")
log "new session with max_sectors=1024: max_hw_sectors_kb $hw2"
[ "$hw2" -le 512 ] || fail "a new session did not take max_sectors=1024 (max_hw_sectors_kb $hw2)"
iser_logout || fail "logout"
exit 0
