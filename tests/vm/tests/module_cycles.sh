#!/bin/bash
# insmod/rmmod CYCLES times: the transport is registered while loaded and gone after, the
# module leaves nothing behind (no module or dependency reference, no sysfs entry), and
# kmemleak finds no unreferenced object afterwards (the suite's scan after every test, which
# starts from a cleared kmemleak and prints the count). Shell builtins only inside the loop:
# every exec costs about a second in the debug VM. CYCLES: 20 in make check, 100 in make
# check-long.
. "$(dirname "$0")/../lib.sh"
CYCLES=${CYCLES:-$([ -n "${ISER_LONG:-}" ] && echo 100 || echo 20)}
modprobe -a $ISER_DEPS || fail "modprobe dependencies"
for i in $(seq "$CYCLES"); do
  # Alternate between default and non-default parameters.
  if [ $((i % 2)) = 0 ]; then insmod "$ISER_KO" max_sectors=2048 max_lun=8 $PLANTED_ARG || fail "insmod #$i"
  else insmod "$ISER_KO" $PLANTED_ARG || fail "insmod #$i"; fi
  [ -d /sys/class/iscsi_transport/iser ] || fail "transport not registered after insmod #$i"
  [ -d /sys/kernel/debug/iser ] || fail "no /sys/kernel/debug/iser after insmod #$i"
  read -r refcnt </sys/module/ib_iser/refcnt
  [ "$refcnt" = 0 ] || fail "refcnt $refcnt after insmod #$i"
  [ $((i % 2)) = 0 ] && { echo 4096 >/sys/module/ib_iser/parameters/max_sectors || fail "param write #$i"; }
  rmmod ib_iser || fail "rmmod #$i"
  [ -e /sys/class/iscsi_transport/iser ] && fail "transport still registered after rmmod #$i"
  [ -e /sys/module/ib_iser ] && fail "module still present after rmmod #$i"
  [ -e /sys/kernel/debug/iser ] && fail "/sys/kernel/debug/iser left after rmmod #$i"
done
log "$CYCLES load/unload cycles"
# No leaked reference pins the dependencies.
rmmod libiscsi scsi_transport_iscsi || fail "dependencies still in use after unload"
exit 0
