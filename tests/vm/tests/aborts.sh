#!/bin/bash
# Forced command timeouts: the LUN's backstore (dm-delay) delays every I/O longer than the
# SCSI command timeout, so the SCSI error handler runs libiscsi's abort / LUN reset path
# (task management PDUs over iSER, task cleanup while the target still holds the commands).
# Then the delay goes away: I/O resumes, the session stays usable, every block verifies.
# Then LUN and target resets (sg_reset) during verified I/O.
. "$(dirname "$0")/../lib.sh"
export LIO_DELAY=1
dev=$(REPLACEMENT_TIMEOUT=120 iser_setup) || fail "setup/login"
fio_verify "$dev" before --rw=randwrite --bs=16k --iodepth=8 --size=2M --offset=0 || fail "initial write"
# libiscsi's eh_timed_out gives every command a second timer period (it first sends a NOP-Out
# to check the connection), and the block layer rounds each timer up to the next second: the
# first abort comes between 2 and 2x(timeout+1) s. The delay must be well beyond that (with
# 9 s against a 4 s timeout, a slow TCG guest finished commands before any abort). Removing
# the delay releases every held I/O at once (dm-delay flushes on suspend).
tmo=${CMD_TIMEOUT:-4}
echo "$tmo" >"/sys/block/$dev/device/timeout"
lio_delay "${DELAY_MS:-$(( (3 * tmo + 6) * 1000 ))}" || fail "dm-delay"
# A few writes and reads that will time out; they must complete (retried) or fail, never hang.
fio --name=slow --filename="/dev/$dev" --allow_file_create=0 --direct=1 --ioengine=libaio --rw=randrw --bs=4k \
  --iodepth=4 --size=1M --offset=64M --number_ios=8 --output=/tmp/slow.out >/dev/null 2>&1 &
fpid=$!
sleep "${SLOW_SECONDS:-20}"
lio_delay 0 || fail "dm-delay off"
wait "$fpid"; rc=$?
log "fio during the delay exited $rc"
echo 30 >"/sys/block/$dev/device/timeout"
# The proof that task management went over iSER: LIO logs each ABORT TASK (or LUN RESET) it
# received and answered; a mere log line with "abort" in it is not one.
aborts=$(dmesg | grep -cE 'ABORT_TASK: (Found referenced|Sending TMR_)|LUN_RESET: ' || true)
log "task management seen by the target (ABORT_TASK / LUN_RESET lines): $aborts"
dmesg | grep -E 'ABORT_TASK|LUN_RESET|TARGET_WARM_RESET' | tail -n 6 | sed 's/^/  /'
[ "$aborts" -gt 0 ] || fail "no abort or reset reached the target (the delay did not trigger the error handler)"
# The slow fio ended by itself (no hang). Whether its commands succeed depends on the SCSI
# layer's budget per command (timeout x (retries + 1) = 24 s against an 18 s delay plus error
# handling under TCG), not on the initiator: its status is printed, not judged.
[ $rc = 0 ] || { log "fio during the delay: $(grep -m1 -E 'err=|error' /tmp/slow.out)"; }
t=$(wait_recovered "$dev" 100) || fail "session not usable after the aborts"
log "I/O again ${t} s after the delay was removed"
# LUN reset and target reset during verified I/O (SG_SCSI_RESET: the SCSI error handler calls
# libiscsi's eh_device_reset / eh_target_reset, which send LOGICAL UNIT RESET and TARGET WARM
# RESET over iSER and fail the LUN's commands, which the midlayer retries).
sg=/dev/$(ls "/sys/block/$dev/device/scsi_generic/") || fail "no sg device for $dev"
fio_loop_start "$dev"
for kind in d t d; do
  sleep 3
  sg_reset -"$kind" "$sg" || fail "sg_reset -$kind"
  t=$(wait_recovered "$dev" 100) || fail "not usable after sg_reset -$kind"
  log "sg_reset -$kind ($( [ $kind = d ] && echo LUN || echo target) reset) during I/O: I/O again after ${t} s"
done
fio_loop_stop || fail "verified I/O during resets"
resets=$(dmesg | grep -cE 'LUN_RESET|TARGET_WARM_RESET|LUN Reset|Target Reset' || true)
log "target log lines about LUN/target resets: $resets"
dmesg | grep -iE 'LUN_RESET|WARM_RESET|reset' | tail -n 6 | sed 's/^/  /'
FIO_TAG=_reread fio_verify "$dev" before --rw=randwrite --bs=16k --iodepth=8 --size=2M --offset=0 \
  --verify_only=1 || fail "data written before the aborts"
fio_verify "$dev" after --rw=randrw --bs=16k --iodepth=16 --size=4M --offset=96M || fail "I/O after the aborts"
iser_logout || fail "logout"
exit 0
