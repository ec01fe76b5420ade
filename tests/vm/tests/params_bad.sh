#!/bin/bash
# Bad values make insmod fail with a clear message, and leave nothing registered.
. "$(dirname "$0")/../lib.sh"
modprobe -a $ISER_DEPS || fail "deps"
try_bad() {  # param=value expected-log-fragment
  # Only the lines this insmod added (the log is never cleared: the suite checks all of it
  # for splats from a failed init).
  local n0; n0=$(dmesg | wc -l)
  if insmod "$ISER_KO" "$1" 2>/tmp/err; then fail "insmod accepted $1"; fi
  log "$1: insmod: $(cat /tmp/err)"
  iser_loaded && fail "module loaded with $1"
  [ -e /sys/class/iscsi_transport/iser ] && fail "transport registered with $1"
  dmesg | tail -n +$((n0 + 1)) >/tmp/new.log
  grep -q "$2" /tmp/new.log || fail "no log line '$2' for $1: $(tail -n 3 /tmp/new.log)"
  log "$1: $(grep "$2" /tmp/new.log | head -n1)"
}
try_bad max_sectors=0 "max_sectors=0 refused: must be greater than 0"
try_bad max_lun=0 "max_lun=0 refused: must be greater than 0"
try_bad max_sectors=abc "max_sectors=abc refused: not a decimal number"
try_bad max_lun=-1 "max_lun=-1 refused: not a decimal number"
try_bad max_sectors=0x400 "max_sectors=0x400 refused: not a decimal number"
try_bad max_sectors=8388608 "max_sectors=8388608 refused: too large (maximum 8388607)"
try_bad max_lun=4294967296 "max_lun=4294967296 refused: out of range"
try_bad always_register=maybe "always_register"
try_bad pi_enable=2 "pi_enable"
exit 0
