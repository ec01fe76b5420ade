#!/bin/bash
# /sys/class/iscsi_transport/iser: caps as the C driver (CAP_RECOVERY_L0 | CAP_MULTI_R2T |
# CAP_TEXT_NEGO = 0x89), a handle, and the module identity iscsid relies on.
. "$(dirname "$0")/../lib.sh"
load_initiator rs || fail "load"
t=/sys/class/iscsi_transport/iser
[ -d $t ] || fail "no $t"
caps=$(cat $t/caps); log "caps=$caps handle=$(cat $t/handle)"
[ "$caps" = 0x89 ] || fail "caps $caps, expected 0x89"
[ -n "$(cat $t/handle)" ] && [ "$(cat $t/handle)" != 0 ] || fail "no transport handle"
[ "$(loaded_impl)" = rs ] || fail "the loaded ib_iser is not ours"
[ "$(cat /sys/module/ib_iser/initstate)" = live ] || fail "module not live"
grep -q '^Dual BSD/GPL$' <(modinfo -F license "$ISER_KO") || fail "license"
# iscsid's automatic `modprobe ib_iser` must leave ours in place (same module name).
modprobe ib_iser || fail "modprobe ib_iser with ours loaded"
[ "$(loaded_impl)" = rs ] || fail "modprobe ib_iser replaced ours with $(loaded_impl)"
[ -n "$(cat /sys/module/ib_iser/version)" ] || fail "no module version"
unload_initiator || fail "rmmod"
[ -e $t ] && fail "$t still present"
exit 0
