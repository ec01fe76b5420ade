#!/bin/bash
# Module unload with a live session during I/O: refused (the session and its endpoint pin
# the module), the session keeps working, nothing is lost; after logout the unload works.
. "$(dirname "$0")/../lib.sh"
dev=$(iser_setup) || fail "setup/login"
refs=$(cat /sys/module/ib_iser/refcnt)
log "module refcount with one session: $refs"
[ "$refs" -gt 0 ] || fail "a live session does not pin the module"
fio_loop_start "$dev"
sleep 5
for i in 1 2 3; do
  if out=$(rmmod ib_iser 2>&1); then fail "rmmod #$i succeeded with a live session"; fi
  log "rmmod #$i refused: $out"
  grep -q "in use" <<<"$out" || fail "unexpected rmmod error: $out"
  if modprobe -r ib_iser 2>/dev/null; then fail "modprobe -r succeeded with a live session"; fi
  sleep 2
done
session_logged_in || fail "session not logged in after the unload attempts"
fio_loop_stop || fail "I/O during unload attempts"
iser_logout || fail "logout"
iscsid_stop
[ "$(cat /sys/module/ib_iser/refcnt)" = 0 ] || fail "refcount $(cat /sys/module/ib_iser/refcnt) after logout"
unload_initiator || fail "rmmod after logout"
iser_loaded && fail "module still loaded"
log "rmmod after logout: ok"
exit 0
