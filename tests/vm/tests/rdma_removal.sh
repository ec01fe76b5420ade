#!/bin/bash
# RDMA device removal during I/O, ROUNDS times: `rdma link delete rxe0` removes the device
# under the live connection (RDMA_CM_EVENT_DEVICE_REMOVAL: the initiator releases every
# resource of the device at once, the unregistration must not hang), then the device comes
# back and the session recovers within the replacement timeout with no I/O error.
# A last round leaves the device away beyond the replacement timeout: I/O fails cleanly
# (errors, not a hang), logout works, and a new login on the re-added device works.
#
# The target shares the device here (one VM): LIO's iSER listener, re-created by ib_isert on
# DEVICE_REMOVAL while no RDMA device has the address, never listens on the new rxe0
# (logins are rejected "invalid service ID"), so the test re-creates the target's iSER portal
# after re-adding the device (lio_relisten). With the target on another host this is moot.
. "$(dirname "$0")/../lib.sh"
ROUNDS=${ISER_LONG:+10}; ROUNDS=${ROUNDS:-2}
dev=$(REPLACEMENT_TIMEOUT=120 iser_setup) || fail "setup/login"
fio_loop_start "$dev"
for i in $(seq "$ROUNDS"); do
  sleep 4
  t0=$(date +%s)
  timeout 60 rdma link delete rxe0 || fail "round $i: rdma link delete hung or failed"
  log "round $i: rxe0 removed in $(( $(date +%s) - t0 )) s"
  [ -d /sys/class/infiniband/rxe0 ] && fail "rxe0 still there"
  sleep 2
  rdma_up rxe || fail "round $i: re-adding rxe0"
  lio_relisten || fail "round $i: target listener"
  t=$(wait_recovered "$dev" 100) || fail "round $i: session did not recover"
  log "round $i: rxe0 back, session recovered in ${t} s"
done
fio_loop_stop || fail "verified I/O during device removals"
n=$(conn_failures)
log "connection failures reported to libiscsi: $n"
[ "$n" -ge "$ROUNDS" ] || fail "$n connection failures for $ROUNDS device removals"
# Beyond the replacement timeout.
iscsiadm -m node -T "$IQN" -o update -n node.session.timeo.replacement_timeout -v 5 >/dev/null
sid=$(basename "$(ls -d /sys/class/iscsi_session/session*)")
echo 5 >"/sys/class/iscsi_session/$sid/recovery_tmo" 2>/dev/null
timeout 60 rdma link delete rxe0 || fail "final removal hung"
timeout 90 dd if=/dev/zero of="/dev/$dev" bs=4k count=16 oflag=direct 2>/tmp/dd.err
rc=$?
[ $rc = 124 ] && fail "I/O hung past the replacement timeout"
[ $rc = 0 ] && fail "a write succeeded with no RDMA device for longer than the replacement timeout"
log "I/O with the device gone: failed as expected ($(tail -n1 /tmp/dd.err))"
marked timeout 60 iscsiadm -m node -T "$IQN" --logout >/dev/null || fail "logout with the device gone"
rdma_up rxe || fail "re-adding rxe0"
lio_relisten || fail "target listener"
dev=$(iser_login) || fail "login on the re-added device"
fio_verify "$dev" after --rw=randrw --bs=64k --iodepth=8 --size=4M --offset=200M || fail "I/O after re-login"
iser_logout || fail "logout"
exit 0
