#!/bin/bash
# Allocation failures in our module (issue 20): the kernel's failslab and fail_page_alloc,
# limited by the stack-trace filter to allocations made with our module's code on the stack
# (require-start/require-end: its core text and data, from /proc/modules), fail the K-th
# such allocation of a login (ep_connect, session creation, bind, login, start: all run in
# iscsid's netlink calls and our completion handlers), once, for a spread of K (make check:
# slab 1, 3, 8, 13, 34, 55 and page 2; check-long: slab 1-80 and page
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
  steps="slab:1 slab:3 slab:8 slab:13 slab:34 slab:55 page:2"
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
  echo 2 >$d/verbose    # the stack of each injected failure: where it hit is logged below
done
echo 0 >$FP/min-order
echo N >$FP/ignore-gfp-highmem
iser_discover "$IP:$PORT" || fail "discovery"
iscsiadm -m node -T "$IQN" -p "$IP:$PORT" -I iser -o update -n node.session.initial_login_retry_max -v 1 >/dev/null
iscsiadm -m node -T "$IQN" -p "$IP:$PORT" -I iser -o update -n 'node.conn[0].timeo.login_timeout' -v "$(login_timeout)" >/dev/null
# Rust v0 symbols to their paths, roughly (lengths-prefixed identifiers, from ib_iser on).
DEMANGLE='sub dm { my $s = shift; my @o; pos($s) = 0;
  while ($s =~ /\G.*?(\d+)_?/gc) { my $n = $1; my $id = substr($s, pos($s), $n);
    if (length($id) == $n && $id =~ /^[A-Za-z_][A-Za-z0-9_]*$/) { push @o, $id; pos($s) += $n; } }
  my $j = join("::", @o); $j =~ s/^.*?ib_iser::/ib_iser::/; $j }
  s/_R[A-Za-z0-9_]+/dm($&)/ge; s/\+0x[0-9a-f]+\/0x[0-9a-f]+//g;'
# Where the injected failures of the step starting at kernel-log marker $1 hit: for each,
# the function that asked for the memory (the first frame after the allocator's own) and the
# innermost frame of our module (its Rust symbol, demangled to its path).
hits() {
  dmesg | awk -v m="iser-test: alloc step $1\$" '
    $0 ~ m { on = 1; next }
    !on { next }
    /FAULT_INJECTION: forcing a failure/ { if (n) print who " <- " ours; n++; who = ""; ours = ""; next }
    n && /^\[ *[0-9.]+\]  [A-Za-z_][A-Za-z0-9_.]*\+0x[0-9a-f]+\/0x[0-9a-f]+/ && !/ \? / {
      sub(/^\[ *[0-9.]+\] +/, ""); f = $1
      if (who == "" && f !~ /^(dump_stack|should_fail|should_failslab|__should_fail|kmem_cache_alloc|__kmalloc|kmalloc|__kmem_cache|slab_|alloc_pages|__alloc_pages|prepare_alloc|__vmalloc|vmalloc|warn_alloc|get_page_from|__folio_alloc|folio_alloc|alloc_slab|allocate_slab|new_slab|___slab_alloc|__slab_alloc|kmalloc_|krealloc|kvmalloc|__kvmalloc|kzalloc|kmemdup|__do_kmalloc|__get_free_pages|fail_dump|__should_failslab)/) who = f
      if (ours == "" && /\[ib_iser\]/) ours = f
    }
    END { if (n) print who " <- " ours }' \
  | perl -pe "$DEMANGLE" \
  | sort | uniq -c | sed 's/^ */    /'
}
injected_total=0 failed_logins=0 nsteps=0
for step in $steps; do
  kind=${step%:*} k=${step#*:}; nsteps=$((nsteps + 1))
  before=$(dmesg | grep -c 'FAULT_INJECTION: forcing a failure')
  echo "iser-test: alloc step $step" >/dev/kmsg
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
    wait_first_disk dev || fail "step $step: a session without its disk (login rc $rc)"
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
  [ "$inj" = 0 ] || log "$(hits "$step")"
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
