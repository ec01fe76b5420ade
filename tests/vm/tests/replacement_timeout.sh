#!/bin/bash
# The replacement timeout expiring: the target goes away for longer than
# node.session.timeo.replacement_timeout (REPLACEMENT_TIMEOUT, 10 s). Writes and reads
# issued meanwhile must fail with an I/O error once the timeout expired, never hang (bounded
# by `timeout`: 124 is a hang); libiscsi must report the expiry ("session recovery timed
# out", the proof the fault happened). The target returns: iscsid's retries log the session
# in again, the data written before the outage reads back unchanged, and a logout and a new
# login work.
. "$(dirname "$0")/../lib.sh"
RT=${REPLACEMENT_TIMEOUT:-10}
dev=$(REPLACEMENT_TIMEOUT=$RT iser_setup) || fail "setup/login"
fio_verify "$dev" before --rw=randwrite --bs=16k --iodepth=8 --size=4M --offset=0 || fail "initial write"
lio_target_down || fail "target down"
# The bound: connection failure noticed (at worst the NOP-Out ping, 5 + 5 s), then the
# replacement timeout, then the SCSI layer failing the command; generous for the debug VM.
bound=$(( RT + 110 ))
t0=$(date +%s)
timeout "$bound" dd if=/dev/urandom of="/dev/$dev" bs=4k count=8 seek=4096 oflag=direct 2>/tmp/dd.err
rc=$?
[ $rc = 124 ] && fail "a write hung for $bound s with the target gone (replacement timeout $RT s)"
[ $rc = 0 ] && fail "a write succeeded with the target gone"
log "write with the target gone: failed after $(( $(date +%s) - t0 )) s: $(tail -n1 /tmp/dd.err)"
timeout 60 dd if="/dev/$dev" of=/dev/null bs=4k count=1 iflag=direct 2>/tmp/dd.err
rc=$?
[ $rc = 124 ] && fail "a read hung after the replacement timeout"
[ $rc = 0 ] && fail "a read succeeded with the target gone"
dmesg | grep -q 'session recovery timed out' || fail "no 'session recovery timed out' in the kernel log"
log "kernel: $(dmesg | grep -m1 'session recovery timed out')"
log "session state: $(cat /sys/class/iscsi_session/session*/state)"
lio_target_up || fail "target up"
t=$(wait_recovered "$dev" 120) || fail "the session did not come back with the target"
log "target back: session logged in again, I/O after ${t} s"
FIO_TAG=_reread fio_verify "$dev" before --rw=randwrite --bs=16k --iodepth=8 --size=4M --offset=0 \
  --verify_only=1 || fail "data written before the outage"
iser_logout || fail "logout"
dev=$(iser_login) || fail "a new login after the outage"
fio_verify "$dev" after --rw=randrw --bs=16k --iodepth=8 --size=4M --offset=64M || fail "I/O after the new login"
iser_logout || fail "logout"
exit 0
