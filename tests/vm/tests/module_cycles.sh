#!/bin/bash
# insmod/rmmod CYCLES times: the transport is registered while loaded and gone after, and
# the module leaves nothing behind (no module refcount, no sysfs class entry).
. "$(dirname "$0")/../lib.sh"
CYCLES=${CYCLES:-50}
modprobe -a $ISER_DEPS || fail "modprobe dependencies"
for i in $(seq "$CYCLES"); do
  insmod "$ISER_KO" || fail "insmod #$i"
  [ -d /sys/class/iscsi_transport/iser ] || fail "transport not registered after insmod #$i"
  [ "$(cat /sys/module/ib_iser/refcnt)" = 0 ] || fail "refcnt $(cat /sys/module/ib_iser/refcnt) after insmod #$i"
  rmmod ib_iser || fail "rmmod #$i"
  [ -e /sys/class/iscsi_transport/iser ] && fail "transport still registered after rmmod #$i"
  [ -e /sys/module/ib_iser ] && fail "module still present after rmmod #$i"
done
log "$CYCLES load/unload cycles"
# The dependencies are released too: no leaked reference pins scsi_transport_iscsi.
rmmod libiscsi scsi_transport_iscsi || fail "dependencies still in use after unload"
