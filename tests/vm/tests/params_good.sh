#!/bin/bash
# Non-default values are taken as given (decimal, also with a leading '+' or leading zeros).
. "$(dirname "$0")/../lib.sh"
P=/sys/module/ib_iser/parameters
load_initiator rs max_sectors=32768 max_lun=1 always_register=0 pi_enable=1 debug_level=3 \
  || fail "insmod with valid values"
for kv in max_sectors=32768 max_lun=1 always_register=N pi_enable=Y debug_level=3; do
  [ "$(cat $P/${kv%%=*})" = "${kv#*=}" ] || fail "${kv%%=*}=$(cat $P/${kv%%=*}), expected ${kv#*=}"
done
dmesg | grep -q "ib_iser: loaded: debug_level=3 max_lun=1 max_sectors=32768 always_register=false pi_enable=true" \
  || fail "no load line at debug_level=3"
unload_initiator || fail "rmmod"
load_initiator rs max_sectors=010 max_lun=+7 || fail "insmod with 010 / +7"
[ "$(cat $P/max_sectors)" = 10 ] || fail "max_sectors=010 stored as $(cat $P/max_sectors), expected decimal 10"
[ "$(cat $P/max_lun)" = 7 ] || fail "max_lun=+7 stored as $(cat $P/max_lun)"
unload_initiator || fail "rmmod"
exit 0
