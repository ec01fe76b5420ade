#!/bin/bash
# CYCLES login/logout cycles (a little I/O in each), then rmmod: no session or host left,
# module unpinned, and no leak (the suite's kmemleak scan after every test, from a cleared
# kmemleak, prints the count).
. "$(dirname "$0")/../lib.sh"
CYCLES=${ISER_LOGIN_CYCLES:-${CYCLES:-100}}
rdma_up rxe || fail "rxe"
lio_setup 64 || fail "LIO target"
load_initiator "${ISER_IMPL:-rs}" || fail "load"
iscsid_start
iser_discover "$IP:$PORT" || fail "discovery"
start=$(date +%s)
for i in $(seq "$CYCLES"); do
  iscsiadm -m node -T "$IQN" -p "$IP:$PORT" -I iser --login >/dev/null || fail "login #$i"
  wait_first_disk dev || fail "no disk after login #$i"
  dd if=/dev/$dev of=/dev/null bs=64k count=4 iflag=direct 2>/dev/null || fail "read #$i"
  iscsiadm -m node -T "$IQN" -p "$IP:$PORT" --logout >/dev/null || fail "logout #$i"
done
log "$CYCLES login/logout cycles in $(( $(date +%s) - start )) s"
[ -z "$(ls /sys/class/iscsi_session)" ] || fail "session left"
iscsid_stop
[ "$(cat /sys/module/ib_iser/refcnt)" = 0 ] || fail "module refcount $(cat /sys/module/ib_iser/refcnt)"
unload_initiator || fail "rmmod"
exit 0
