#!/bin/bash
# The five parameters with the C driver's defaults and permissions, our one addition
# (latency_histogram), and modinfo descriptions.
. "$(dirname "$0")/../lib.sh"
load_initiator rs || fail "load"
P=/sys/module/ib_iser/parameters
check() {  # name value mode
  [ -e "$P/$1" ] || fail "no parameter $1"
  local v m; v=$(cat "$P/$1"); m=$(stat -c %a "$P/$1")
  log "$1=$v mode $m"
  [ "$v" = "$2" ] || fail "$1=$v, expected $2"
  [ "$m" = "$3" ] || fail "$1 mode $m, expected $3"
}
check debug_level 0 644
check max_lun 512 444
check max_sectors 1024 644
check always_register Y 444
check pi_enable N 444
check latency_histogram N 644
[ "$(ls $P | wc -l)" = 6 ] || fail "unexpected parameters: $(ls $P)"
for p in debug_level max_lun max_sectors always_register pi_enable latency_histogram; do
  modinfo -F parm "$ISER_KO" | grep -q "^$p:.\{10,\}" || fail "modinfo has no description for $p"
done
exit 0
