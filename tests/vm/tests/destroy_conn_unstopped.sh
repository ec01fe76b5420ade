#!/bin/bash
# A raw netlink caller (or an iscsid that crashed and a successor that cleans up) destroys a
# logged-in connection that was never stopped (issue 20 item 7): scsi_transport_iscsi calls
# destroy_conn on a bound, started connection. The initiator stops it first (with its log
# line), disconnecting its endpoint as the class's own stop path does (the class never clears
# the endpoint's pointer to the connection: a later EP_DISCONNECT was a use-after-free), then
# the session is destroyed the same way; nothing may be left (session, connection, endpoint,
# module reference), no splat, no leak, and a new login afterwards works with verified I/O.
. "$(dirname "$0")/../lib.sh"
NL="python3 $ISER_TOP/tests/vm/iscsi_nl.py"
dev=$(iser_setup) || fail "setup/login"
fio_verify "$dev" before --rw=randwrite --bs=16k --iodepth=8 --size=2M || fail "I/O before"
c=$(ls /sys/class/iscsi_connection/ | head -n1)
[ -n "$c" ] || fail "no connection in sysfs"
sid=${c#connection}; sid=${sid%%:*}; cid=${c##*:}
ep=$(ls /sys/class/iscsi_endpoint/ | head -n1)
[ -n "$ep" ] || fail "no endpoint in sysfs"
handle=$(cat /sys/class/iscsi_transport/iser/handle)
eph=$(cat "/sys/class/iscsi_endpoint/$ep/handle")
log "session $sid connection $cid endpoint $ep ($eph), transport handle $handle"
# iscsid gone (as after a crash): nobody stops the connection or reacts to the teardown.
pkill -9 -x iscsid; sleep 1
$NL destroy_conn "$handle" "$sid" "$cid" || fail "destroy_conn refused"
dmesg | grep -q "destroy_conn of a connection that was not stopped: stopping it first" \
  || fail "no log line for the connection stopped in destroy_conn"
[ ! -e "/sys/class/iscsi_connection/$c" ] || fail "connection $c left after destroy_conn"
# The endpoint bound to it went with it (the class would keep pointing at the freed
# connection): a caller that still disconnects it is told there is none, nothing crashes.
[ ! -e "/sys/class/iscsi_endpoint/$ep" ] || fail "endpoint $ep left after destroy_conn"
$NL ep_disconnect "$handle" "$eph" && fail "ep_disconnect of the destroyed endpoint accepted"
$NL destroy_session "$handle" "$sid" || fail "destroy_session refused"
for _ in $(seq 100); do [ -z "$(ls /sys/class/iscsi_session/)" ] && break; sleep 0.1; done
[ -z "$(ls /sys/class/iscsi_session/)" ] || fail "session left: $(ls /sys/class/iscsi_session/)"
[ -z "$(ls /sys/class/iscsi_endpoint/)" ] || fail "endpoint left: $(ls /sys/class/iscsi_endpoint/)"
[ "$(cat /sys/module/ib_iser/refcnt)" = 0 ] || fail "module refcount $(cat /sys/module/ib_iser/refcnt)"
# A new iscsid and login work, with data verified.
iscsid_start
iscsiadm -m node -o delete >/dev/null 2>&1
dev=$(iser_login) || fail "login after the raw teardown"
fio_verify "$dev" after --rw=randwrite --bs=16k --iodepth=8 --size=2M --offset=8M || fail "I/O after"
iser_logout || fail "logout"
iscsid_stop
unload_initiator || fail "rmmod"
exit 0
