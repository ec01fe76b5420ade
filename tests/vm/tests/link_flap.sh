#!/bin/bash
# Link flap during I/O, ROUNDS times: the NIC under rxe0 goes down for DOWN_SECONDS and up
# again. Whether the RC connection survives the outage (transport retries) or fails and is
# recovered by iscsid, no I/O error may surface and every block must verify.
. "$(dirname "$0")/../lib.sh"
ROUNDS=${ISER_LONG:+20}; ROUNDS=${ROUNDS:-3}
dev=$(REPLACEMENT_TIMEOUT=120 iser_setup) || fail "setup/login"
ifc=$(nic) || fail "no NIC"
sid=$(ls /sys/class/iscsi_connection)
fio_loop_start "$dev"
for i in $(seq "$ROUNDS"); do
  sleep 3
  ip link set "$ifc" down || fail "link down"
  sleep "${DOWN_SECONDS:-2}"
  ip link set "$ifc" up || fail "link up"
  t=$(wait_recovered "$dev" 100) || fail "round $i: session did not recover"
  log "round $i: link down ${DOWN_SECONDS:-2} s, I/O again after ${t} s"
done
fio_loop_stop || fail "verified I/O during link flaps"
log "connection errors reported to libiscsi: $(dmesg | grep -c 'detected conn error' || true)"
log "connections: before $sid, after $(ls /sys/class/iscsi_connection)"
iser_logout || fail "logout"
exit 0
