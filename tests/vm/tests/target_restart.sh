#!/bin/bash
# Target restart during I/O, ROUNDS times: the LIO target (portal, LUN mapping) is removed
# and created again over the same backstore. The initiator sees the connection drop
# (DISCONNECTED or transport errors), reports it to libiscsi, and iscsid logs in again within
# the replacement timeout: no I/O error, every block verified, and data written before the
# first restart reads back unchanged.
. "$(dirname "$0")/../lib.sh"
ROUNDS=${ISER_LONG:+20}; ROUNDS=${ROUNDS:-3}
dev=$(REPLACEMENT_TIMEOUT=120 iser_setup) || fail "setup/login"
fio_verify "$dev" before --rw=randwrite --bs=16k --iodepth=16 --size=8M --offset=0 || fail "initial write"
fio_loop_start "$dev"
for i in $(seq "$ROUNDS"); do
  sleep 4
  lio_target_down || fail "round $i: target down"
  sleep "${DOWN_SECONDS:-2}"
  lio_target_up || fail "round $i: target up"
  t=$(wait_recovered "$dev" 100) || fail "round $i: session did not recover"
  log "round $i: target restarted, session recovered in ${t} s"
done
fio_loop_stop || fail "verified I/O during target restarts"
FIO_TAG=_reread fio_verify "$dev" before --rw=randwrite --bs=16k --iodepth=16 --size=8M \
  --offset=0 --verify_only=1 || fail "data written before the restarts"
n=$(conn_failures)
log "connection errors reported to libiscsi: $n"
# Every restart closes the target's connections: each must have been seen and recovered.
[ "$n" -ge "$ROUNDS" ] || fail "$n connection failures for $ROUNDS target restarts"
iser_logout || fail "logout"
exit 0
