#!/bin/bash
# Until the initiator lands, an iSER login through our module must fail cleanly: iscsiadm
# gets an error (no hang), the kernel log says what is missing, nothing is left behind.
. "$(dirname "$0")/../lib.sh"
rdma_up rxe || fail "rxe"
lio_setup 64 || fail "LIO target"
load_initiator rs || fail "load"
iscsid_start
start=$(date +%s)
# One attempt (iscsid retries discovery 5 times by default).
iscsiadm -m discoverydb -t st -p "$IP:$PORT" -I iser -o new >/dev/null || fail "discoverydb new"
iscsiadm -m discoverydb -t st -p "$IP:$PORT" -I iser -o update \
  -n discovery.sendtargets.reopen_max -v 0 || fail "discoverydb update"
if out=$(timeout 120 iscsiadm -m discoverydb -t st -p "$IP:$PORT" -I iser --discover 2>&1); then
  fail "discovery through the unimplemented transport succeeded: $out"
fi
log "iscsiadm: $(echo "$out" | tail -n 2 | tr '\n' ' ')"
[ $(( $(date +%s) - start )) -lt 110 ] || fail "discovery did not fail promptly"
dmesg | grep -q "ib_iser: ep_connect to $IP:$PORT: RDMA connection setup is not implemented" \
  || fail "no log line from ep_connect: $(dmesg | grep ib_iser | tail -n 3)"
[ -z "$(ls /sys/class/iscsi_session 2>/dev/null)" ] || fail "a session was left behind"
iscsid_stop
[ "$(cat /sys/module/ib_iser/refcnt)" = 0 ] || fail "module refcount $(cat /sys/module/ib_iser/refcnt)"
unload_initiator || fail "rmmod"
exit 0
