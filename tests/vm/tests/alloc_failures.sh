#!/bin/bash
# Allocation failures in our module (issue 20): the kernel's failslab and fail_page_alloc,
# limited by the stack-trace filter to allocations made with our module's code on the stack
# (require-start/require-end: its core text and data, from /proc/modules), fail the K-th
# such allocation of a login (ep_connect, session creation, bind, login, start: all run in
# iscsid's netlink calls and our completion handlers), once, for a spread of K (make check:
# slab 1, 2, 3, 5, 8, 13, 21, 34, 55 and page 1, 2, 4, 8; check-long: slab 1-80 and page
# 1-24, every allocation point of a login in turn). Each login
# either fails cleanly (iscsiadm reports an error) or succeeds because the failure hit a
# path that retries; either way the session that exists afterwards works (verified I/O),
# logs out, and nothing is left. The suite then checks the kernel log (no splat), lockdep
# and kmemleak for the whole run. The test fails if no failure was ever injected (the
# filter or the knobs did not work), so it cannot pass vacuously.
. "$(dirname "$0")/../lib.sh"
if [ -n "${ISER_LONG:-}" ]; then
  steps="$(printf 'slab:%s ' $(seq 80)) $(printf 'page:%s ' $(seq 24))"
else
  steps="slab:1 slab:2 slab:3 slab:5 slab:8 slab:13 slab:21 slab:34 slab:55 page:1 page:2 page:4 page:8"
fi
FS=/sys/kernel/debug/failslab
FP=/sys/kernel/debug/fail_page_alloc
[ -d $FS ] && [ -d $FP ] || skip "no failslab/fail_page_alloc in this kernel (CONFIG_FAILSLAB, CONFIG_FAIL_PAGE_ALLOC)"
[ -e $FS/require-start ] || skip "no stack-trace filter (CONFIG_FAULT_INJECTION_STACKTRACE_FILTER)"
rdma_up rxe || fail "rxe"
lio_setup 64 || fail "LIO target"
load_initiator rs || fail "load"
iscsid_start
echo 0 >/proc/sys/kernel/kptr_restrict
read -r _ size _ _ _ base _ < <(grep '^ib_iser ' /proc/modules)
[ -n "$base" ] && [ "$base" != 0x0000000000000000 ] || fail "no address for ib_iser in /proc/modules"
start=$((base)); end=$((base + size))
faults_off() {
  for d in $FS $FP; do echo 0 >$d/probability; echo 0 >$d/times; done
}
trap faults_off EXIT
for d in $FS $FP; do
  printf '%#x' $start >$d/require-start
  printf '%#x' $end >$d/require-end
  echo 32 >$d/stacktrace-depth
  echo N >$d/task-filter
  echo N >$d/ignore-gfp-wait
  echo 1 >$d/verbose
done
echo 0 >$FP/min-order
echo N >$FP/ignore-gfp-highmem
iscsiadm -m discovery -t st -p "$IP:$PORT" -I iser >/dev/null || fail "discovery"
iscsiadm -m node -T "$IQN" -p "$IP:$PORT" -I iser -o update -n node.session.initial_login_retry_max -v 1 >/dev/null
iscsiadm -m node -T "$IQN" -p "$IP:$PORT" -I iser -o update -n 'node.conn[0].timeo.login_timeout' -v 10 >/dev/null
injected_total=0 failed_logins=0 nsteps=0
for step in $steps; do
  kind=${step%:*} k=${step#*:}; nsteps=$((nsteps + 1))
  before=$(dmesg | grep -c 'FAULT_INJECTION: forcing a failure')
  # The K-th allocation made under our code fails, once.
  faults_off
  if [ "$kind" = slab ]; then d=$FS; else d=$FP; fi
  echo "$k" >$d/interval; echo 1 >$d/times; echo 100 >$d/probability
  marked timeout 120 iscsiadm -m node -T "$IQN" -p "$IP:$PORT" -I iser --login >/dev/null 2>&1; rc=$?
  faults_off
  inj=$(( $(dmesg | grep -c 'FAULT_INJECTION: forcing a failure') - before ))
  injected_total=$((injected_total + inj))
  [ $rc = 124 ] && fail "step $step: login hung with an allocation failure"
  if [ -n "$(ls /sys/class/iscsi_session/)" ]; then
    dev=
    for _ in $(seq 150); do
      dev=$(iscsiadm -m session -P 3 2>/dev/null | sed -n 's/.*Attached scsi disk \(sd[a-z]*\).*/\1/p' | head -n1)
      [ -n "$dev" ] && [ -b "/dev/$dev" ] && break; sleep 0.1
    done
    [ -b "/dev/$dev" ] || fail "step $step: a session without its disk (login rc $rc)"
    fio_verify "$dev" "alloc$nsteps" --rw=randwrite --bs=8k --iodepth=4 --size=256k --offset=$((nsteps * 256))k >/dev/null \
      || fail "step $step: verified I/O on the session that survived the allocation failure"
    marked timeout 120 iscsiadm -m node -T "$IQN" -p "$IP:$PORT" --logout >/dev/null 2>&1 || fail "step $step: logout"
    what="logged in"
  else
    failed_logins=$((failed_logins + 1)); what="login failed (iscsiadm $rc)"
  fi
  [ -z "$(ls /sys/class/iscsi_session/)" ] || fail "step $step: session left after logout"
  [ -z "$(ls /sys/class/iscsi_endpoint/ 2>/dev/null)" ] || fail "step $step: endpoint left"
  [ "$(cat /sys/module/ib_iser/refcnt)" = 0 ] || fail "step $step: module refcount $(cat /sys/module/ib_iser/refcnt)"
  log "step $step: $inj failures injected, $what"
done
log "$injected_total allocation failures injected over $nsteps steps; $failed_logins logins failed cleanly"
[ "$injected_total" -gt 0 ] || fail "no allocation failure was ever injected: the test tested nothing"
# After all that, a plain login works and carries verified data.
dev=$(iser_login) || fail "login after the allocation failures"
fio_verify "$dev" alloc_final --rw=randrw --bs=4k-64k --iodepth=8 --size=4M || fail "verified I/O after the allocation failures"
iser_logout || fail "logout"
iscsid_stop
unload_initiator || fail "rmmod"
exit 0
