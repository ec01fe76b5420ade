#!/bin/bash
# Writable parameters (debug_level, max_sectors) validate runtime writes too; read-only
# ones refuse writes.
. "$(dirname "$0")/../lib.sh"
P=/sys/module/ib_iser/parameters
load_initiator rs || fail "load"
echo 2048 >$P/max_sectors || fail "write max_sectors=2048"
[ "$(cat $P/max_sectors)" = 2048 ] || fail "max_sectors not updated"
echo 0 >$P/max_sectors 2>/dev/null && fail "max_sectors=0 accepted at runtime"
[ "$(cat $P/max_sectors)" = 2048 ] || fail "refused write changed max_sectors"
echo junk >$P/max_sectors 2>/dev/null && fail "max_sectors=junk accepted at runtime"
echo 3 >$P/debug_level || fail "write debug_level"
[ "$(cat $P/debug_level)" = 3 ] || fail "debug_level not updated"
echo 5 >$P/max_lun 2>/dev/null && fail "read-only max_lun was writable"
[ "$(cat $P/max_lun)" = 512 ] || fail "max_lun changed"
exit 0
