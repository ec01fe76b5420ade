#!/bin/bash
# make check-harness only (tests/vm/harness.list): leaves behind, as a crashed iscsiadm or
# iscsid would, a logged-in session that no iscsid will log out (iscsid killed, its records
# deleted) and exits 0. The suite must report this test as failed (its cleanup found the
# session and destroyed it over netlink), and the test after it must still pass: a session
# left over must not pin ib_iser and fail every later test of the VM.
. "$(dirname "$0")/../lib.sh"
dev=$(iser_setup) || fail "setup/login"
fio_verify "$dev" before --rw=randwrite --bs=16k --iodepth=8 --size=2M || fail "I/O before"
log "left behind: $(iscsi_objects | tr '\n' ' ')"
pkill -9 -x iscsid; sleep 1
rm -rf /etc/iscsi/nodes /etc/iscsi/send_targets /var/lib/iscsi/nodes /var/lib/iscsi/send_targets
exit 0
