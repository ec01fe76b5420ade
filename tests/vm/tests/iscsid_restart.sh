#!/bin/bash
# iscsid killed and restarted during I/O (ROUNDS times): the kernel session does not depend
# on the daemon while nothing fails, so I/O continues with no error. Then a connection failure
# while iscsid is down (the target restarts): the kernel cleans the connection up by itself
# (6.12 in-kernel recovery: ep_disconnect + stop_conn from the class layer), and the restarted
# iscsid logs the session in again; the verified I/O sees no error.
. "$(dirname "$0")/../lib.sh"
ROUNDS=${ISER_LONG:+10}; ROUNDS=${ROUNDS:-2}
dev=$(REPLACEMENT_TIMEOUT=120 iser_setup) || fail "setup/login"
fio_loop_start "$dev"
for i in $(seq "$ROUNDS"); do
  sleep 3
  pkill -9 -x iscsid || fail "no iscsid to kill"
  sleep 3
  session_logged_in || fail "session lost while iscsid was down (round $i)"
  iscsid_start
  t=$(wait_recovered "$dev" 60) || fail "round $i: no I/O after iscsid restart"
  log "round $i: iscsid killed and restarted; I/O continued (${t} s to a direct read)"
done
# Connection failure with no daemon.
pkill -9 -x iscsid
lio_target_down || fail "target down"
for _ in $(seq 200); do
  [ "$(cat /sys/class/iscsi_session/session*/state 2>/dev/null)" = FAILED ] && break
  sleep 0.1
done
log "session state with the target gone and no iscsid: $(cat /sys/class/iscsi_session/session*/state)"
[ "$(cat /sys/class/iscsi_session/session*/state)" = FAILED ] || fail "session did not fail"
sleep 2
ls /sys/class/iscsi_endpoint/ 2>/dev/null | grep -q . && fail "endpoint left after in-kernel cleanup: $(ls /sys/class/iscsi_endpoint/)"
lio_target_up || fail "target up"
iscsid_start
t=$(wait_recovered "$dev" 100) || fail "iscsid did not recover the session"
log "iscsid restarted after an in-kernel cleanup: session recovered in ${t} s"
fio_loop_stop || fail "verified I/O"
[ "$(conn_failures)" -ge 1 ] || fail "the target going away was not reported as a connection failure"
iser_logout || fail "logout"
exit 0
