#!/bin/bash
# Forced command timeouts: the LUN's backstore (dm-delay) delays every I/O longer than the
# SCSI command timeout, so the SCSI error handler runs libiscsi's abort / LUN reset path
# (task management PDUs over iSER, task cleanup while the target still holds the commands).
# Then the delay goes away: I/O resumes, the session stays usable, every block verifies.
. "$(dirname "$0")/../lib.sh"
export LIO_DELAY=1
dev=$(REPLACEMENT_TIMEOUT=120 iser_setup) || fail "setup/login"
fio_verify "$dev" before --rw=randwrite --bs=16k --iodepth=8 --size=2M --offset=0 || fail "initial write"
echo "${CMD_TIMEOUT:-4}" >"/sys/block/$dev/device/timeout"
lio_delay "${DELAY_MS:-9000}" || fail "dm-delay"
# A few writes and reads that will time out; they must complete (retried) or fail, never hang.
fio --name=slow --filename="/dev/$dev" --direct=1 --ioengine=libaio --rw=randrw --bs=4k \
  --iodepth=4 --size=1M --offset=64M --number_ios=8 --output=/tmp/slow.out >/dev/null 2>&1 &
fpid=$!
sleep "${SLOW_SECONDS:-20}"
lio_delay 0 || fail "dm-delay off"
wait "$fpid"; rc=$?
log "fio during the delay exited $rc"
echo 30 >"/sys/block/$dev/device/timeout"
aborts=$(dmesg | grep -ci 'abort\|device reset\|LUN reset\|target reset' || true)
log "error-handler log lines (abort/reset): $aborts"
dmesg | grep -iE 'abort|reset' | tail -n 8 | sed 's/^/  /'
[ "$aborts" -gt 0 ] || fail "no abort or reset happened (the delay did not trigger the error handler)"
t=$(wait_recovered "$dev" 100) || fail "session not usable after the aborts"
log "I/O again ${t} s after the delay was removed"
FIO_TAG=_reread fio_verify "$dev" before --rw=randwrite --bs=16k --iodepth=8 --size=2M --offset=0 \
  --verify_only=1 || fail "data written before the aborts"
fio_verify "$dev" after --rw=randrw --bs=16k --iodepth=16 --size=4M --offset=96M || fail "I/O after the aborts"
iser_logout || fail "logout"
exit 0
