#!/bin/bash
# Load/unload cycles leave no unreferenced objects behind (kmemleak).
. "$(dirname "$0")/../lib.sh"
[ -e /sys/kernel/debug/kmemleak ] || skip "kernel without kmemleak"
CYCLES=${CYCLES:-20}
modprobe -a $ISER_DEPS || fail "deps"
kmemleak_scan >/dev/null
echo clear >/sys/kernel/debug/kmemleak
for i in $(seq "$CYCLES"); do
  insmod "$ISER_KO" max_sectors=2048 || fail "insmod #$i"
  echo 4096 >/sys/module/ib_iser/parameters/max_sectors
  rmmod ib_iser || fail "rmmod #$i"
done
leaks=$(kmemleak_scan)
log "$CYCLES cycles, kmemleak unreferenced objects: $leaks"
[ "$leaks" = 0 ] || { head -n 40 /sys/kernel/debug/kmemleak; fail "$leaks leaked objects"; }
exit 0
