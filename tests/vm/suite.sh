#!/bin/bash
# The VM test suite (run inside the VM by scripts/vm-run). KTAP output; each test passes only
# if it exits 0 AND the kernel log it produced is free of splats (lib.sh SPLAT_RE).
#
#   tests/vm/suite.sh [NAME_REGEX]       # default: every test in tests/vm/tests.list
#
# ISER_SHARD=K/N runs only every N-th test starting at the K-th (0-based), so N VMs can share
# the list (scripts/check.sh runs two, one per host core).
#
# Results (per-test output and kernel log) go to $ISER_RESULTS (default results/vm-<time>).
# The last line is "vm: N passed, N failed, N skipped".
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
filter=${1:-.}
RES=${ISER_RESULTS:-$ISER_TOP/results/vm-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$RES"
export ISER_RESULTS=$RES

shard=${ISER_SHARD:-0/1}
mapfile -t lines < <(grep -Ev '^[[:space:]]*(#|$)' "$here/tests.list" | awk -v f="$filter" '$1 ~ f' \
  | awk -v k="${shard%/*}" -v n="${shard#*/}" '(NR - 1) % n == k')
echo "KTAP version 1"
echo "# kernel $(uname -r), ib_iser.ko $(modinfo -F srcversion "$ISER_KO" 2>/dev/null), results in $RES"
echo "1..$(( ${#lines[@]} + 1 ))"
pass=0 failn=0 skipn=0 n=1
# Test 1: the boot itself left no splat in the kernel log.
dmesg >"$RES/boot.dmesg"
splats=$(grep -E "$SPLAT_RE" "$RES/boot.dmesg" | head -n 5)
if [ -z "$splats" ]; then echo "ok 1 kernel_boot_log_clean"; pass=1
else echo "$splats" | sed 's/^/#   /'; echo "not ok 1 kernel_boot_log_clean"; failn=1; fi
for line in "${lines[@]}"; do
  read -r name script envs <<<"$line"
  n=$((n + 1))
  dmesg -C
  start=$(date +%s)
  # shellcheck disable=SC2086
  env $envs timeout -k 10 "${TEST_TIMEOUT:-900}" bash "$here/tests/$script" >"$RES/$name.log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  dmesg >"$RES/$name.dmesg"
  sed 's/^/# /' "$RES/$name.log"
  splats=$(grep -E "$SPLAT_RE" "$RES/$name.dmesg" | head -n 5)
  # Leave a clean VM for the next test, whatever this one did.
  { touch /tmp/fio_loop.stop; ip link set "$(nic)" up; iscsid_start; iscsiadm -m node --logoutall=all; iscsid_stop
    unload_initiator; lio_teardown; tgt_teardown; rdma_down; } >/dev/null 2>&1
  if [ -n "$splats" ]; then
    echo "# kernel log of $name has splats:"; echo "$splats" | sed 's/^/#   /'
    echo "not ok $n $name # ${secs}s"; failn=$((failn + 1))
  elif [ $rc = 0 ]; then
    echo "ok $n $name # ${secs}s"; pass=$((pass + 1))
  elif [ $rc = "$KSFT_SKIP" ]; then
    echo "ok $n $name # SKIP"; skipn=$((skipn + 1))
  else
    [ $rc = 124 ] && echo "# $name timed out"
    echo "not ok $n $name # exit $rc, ${secs}s"; failn=$((failn + 1))
  fi
done
echo "# Totals: pass:$pass fail:$failn xfail:0 xpass:0 skip:$skipn error:0"
echo "vm: $pass passed, $failn failed, $skipn skipped"
[ $failn = 0 ]
