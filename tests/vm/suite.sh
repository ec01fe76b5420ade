#!/bin/bash
# The VM test suite (run inside the VM by scripts/vm-run). KTAP output.
#
#   tests/vm/suite.sh [NAME_REGEX]       # default: every test in tests/vm/tests.list
#
# A test passes only if all of these hold (Documentation/testing.rst, "What a pass means"):
#   - its script exits 0 (4 = skipped, reported as a skip with the reason it printed);
#   - the cleanup after it (logout, iscsid, rmmod ib_iser, target and RDMA teardown) works
#     and leaves nothing behind (no session, no ib_iser, no LIO target, no RDMA device);
#   - the kernel log of the test *and* of its cleanup has no splat (lib.sh SPLAT_RE:
#     WARN/BUG/KASAN/lockdep/soft lockup/RCU stall/workqueue lockup/hung task/...);
#   - lockdep is still on afterwards (after a report it turns itself off for the rest of the
#     boot: every later test then fails too, loudly, since nothing checks locking any more);
#   - kmemleak (required: its absence fails the test) finds no new unreferenced object
#     allocated before the test's cleanup ended: the scan after the *next* test's cleanup
#     judges it (kmemleak_scan below), so each test's output and result are printed one test
#     late, and the last test's after one more scan;
#   - unless the test injects faults (FAULTS=1 in tests.list), no connection failure was
#     reported (libiscsi's "detected conn error", ping timeouts) outside a logout (lib.sh
#     `marked`) and ib_iser logged no error: a data test that rode through a recovery is a
#     failed data test.
#
# ISER_RUN_XFAIL=1 runs the known failures (XFAIL) without the long loops of ISER_LONG.
#
# ISER_DEADLINE=T (epoch seconds; set by make check only when CI's time limit applies:
# .ci/run, scripts/check.sh): a test that would not end by T on this machine is not started.
# Its expected time is its tests/vm/durations weight times the pace measured so far in this
# VM (seconds taken per second of weight; 1 before the first test, at least 0.5), plus half.
# Such a test is reported "# SKIP not run: CI's time budget", counted apart on the summary
# line ("not run for the budget"), and make check prints them. A test that is started gets
# at most until T; one stopped there with nothing wrong seen until then is inconclusive and
# reported with them (a splat, leak or connection failure fails it). Without ISER_DEADLINE
# every planned test runs.
#
# ISER_SHARD=K/N runs only every N-th test starting at the K-th (0-based), so N VMs can share
# the list (scripts/check.sh runs two, one per host core); tests/vm/plan.sh selects them.
#
# Results (per-test output and kernel log) go to $ISER_RESULTS (default results/vm-<time>).
# The last line is "vm: planned P, N passed, N failed, N skipped".
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
filter=${1:-.}
RES=${ISER_RESULTS:-$ISER_TOP/results/vm-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$RES"
export ISER_RESULTS=$RES
KMEMLEAK=/sys/kernel/debug/kmemleak

mapfile -t lines < <("$here/plan.sh" "$filter" "${ISER_SHARD:-0/1}")
planned=$(( ${#lines[@]} + 1 ))
echo "KTAP version 1"
echo "# kernel $(uname -r), ib_iser.ko $(modinfo -F srcversion "$ISER_KO" 2>/dev/null), results in $RES"
echo "1..$planned"
pass=0 failn=0 skipn=0 xfailn=0 n=1
lockdep_off=
# The deadline's bookkeeping: each test's weight, and the weight and seconds of those run.
budgetn=0 w_run=0 t_run=0
declare -A weight=()
# (with ISER_LONG, the long loops' own figures over them, as tests/vm/plan.sh takes them)
for f in durations ${ISER_LONG:+durations.long}; do
  while read -r a b; do [[ $a == \#* || -z $b ]] || weight[$a]=$b; done <"$here/$f"
done
if [ -n "${ISER_DEADLINE:-}" ]; then
  echo "# CI's deadline: $(( ISER_DEADLINE - $(date +%s) )) s from now (guest clock); tests that would not end by then are not started"
fi

# lockdep_on: debug_locks is still 1 (lockdep turns itself off after its first report).
lockdep_on() { grep -Eq '^ *debug_locks: +1$' /proc/lockdep_stats 2>/dev/null; }

# Test 1: the boot left no splat, and the detectors the suite relies on are there.
dmesg >"$RES/boot.dmesg"
why=()
splats=$(grep -E "$SPLAT_RE" "$RES/boot.dmesg" | head -n 5)
[ -z "$splats" ] || why+=("boot log has splats: $splats")
lockdep_on || why+=("lockdep is not on (debug_locks)")
[ -w "$KMEMLEAK" ] || why+=("kmemleak is not available")
[ -e /proc/sys/kernel/watchdog_thresh ] || why+=("no soft-lockup detector")
[ -e /sys/module/workqueue/parameters/watchdog_thresh ] || why+=("no workqueue watchdog")
[ -e /proc/sys/kernel/hung_task_timeout_secs ] || why+=("no hung-task detector")
if [ -w "$KMEMLEAK" ]; then
  # Only the suite's scans run (each test is judged by the scan after the next test, below:
  # an automatic scan in between would charge a test with the next one's leaks). What boot
  # left unreferenced is not ours to judge: two scans report it all, then forget it.
  echo scan=off >"$KMEMLEAK"
  echo scan >"$KMEMLEAK"; echo scan >"$KMEMLEAK"; echo clear >"$KMEMLEAK"
fi
if [ ${#why[@]} = 0 ]; then echo "ok 1 kernel_boot_log_clean_detectors_on"; pass=1
else printf '#   %s\n' "${why[@]}"; echo "not ok 1 kernel_boot_log_clean_detectors_on"; failn=1; fi

# cleanup: leaves a clean VM for the next test, whatever this one did; prints what failed.
# Each step runs only when there is something to undo (every exec costs about a second in
# the debug VM; the checks are builtins).
have() { compgen -G "$1" >/dev/null; }
# mp_maps_left: a multipath map exists (builtins only).
mp_maps_left() {
  local f u
  for f in /sys/block/dm-*/dm/uuid; do
    [ -e "$f" ] && read -r u <"$f" && [[ $u == mpath-* ]] && return 0
  done
  return 1
}
cleanup() {
  : >/tmp/fio_loop.stop
  local n
  for n in /sys/class/net/*; do
    [ -e "$n/device" ] && [ "$(<"$n/operstate")" = down ] && ip link set "${n##*/}" up >/dev/null 2>&1
  done
  # multipathd and udevd (lib.sh mp_start) leave these behind while they run.
  if [ -e /tmp/multipathd.log ] || [ -e /run/udev/control ] || mp_maps_left; then
    mp_stop >/dev/null 2>&1
  fi
  if have '/sys/class/iscsi_session/session*'; then
    { iscsid_start; marked timeout 120 iscsiadm -m node --logoutall=all; } >/dev/null 2>&1
  fi
  pkill -x iscsid >/dev/null 2>&1 && iscsid_stop >/dev/null 2>&1
  # Sessions or endpoints no iscsid logged out (a crashed iscsiadm's, or ones iscsid lost):
  # destroyed over netlink, so that they cannot pin ib_iser or keep reconnecting to a portal
  # the teardown removes and fail every later test of this VM; this test still fails.
  orphans() { have '/sys/class/iscsi_session/*' || have '/sys/class/iscsi_endpoint/*'; }
  # (given up to 3 s first: a logout's teardown may still be ending)
  for n in $(seq 30); do orphans || break; sleep 0.1; done
  if orphans; then
    echo "left after logout and iscsid's exit, destroyed over netlink: $(iscsi_objects | sed 's,.*/,,' | tr '\n' ' ')"
    destroy_iscsi_objects 2>&1 | sed 's/^/  /'
  fi
  iser_loaded && { unload_initiator >/dev/null 2>&1 || echo "rmmod ib_iser failed: $(rmmod ib_iser 2>&1)"; }
  if have "$CFS/iscsi/iqn.*" || have "$CFS/core/iblock_*" || have "$CFS/core/rd_mcp_*" || have /sys/kernel/config/nullb/nullb0; then
    lio_teardown >/dev/null 2>&1
  fi
  [ -d /run/tgtd ] && tgt_teardown >/dev/null 2>&1
  have '/sys/class/infiniband/*' && rdma_down >/dev/null 2>&1
  [ -e "/sys/class/net/$NETDEV_B" ] && ip link del "$NETDEV_B" >/dev/null 2>&1
  rm -f /tmp/fio_loop.stop
  # What must be gone now.
  local left=()
  iser_loaded && left+=("ib_iser still loaded")
  have '/sys/class/iscsi_session/*' && left+=("iSCSI sessions: $(compgen -G '/sys/class/iscsi_session/*')")
  have '/sys/class/iscsi_endpoint/*' && left+=("iSCSI endpoints: $(compgen -G '/sys/class/iscsi_endpoint/*')")
  have "$CFS/iscsi/iqn.*" && left+=("LIO targets: $(compgen -G "$CFS/iscsi/iqn.*" | head -n 3)")
  have '/sys/class/infiniband/*' && left+=("RDMA devices: $(compgen -G '/sys/class/infiniband/*')")
  [ -e /tmp/multipathd.log ] && left+=("multipathd running")
  mp_maps_left && left+=("multipath maps")
  [ ${#left[@]} = 0 ] || printf 'cleanup left: %s\n' "${left[@]}"
}

# kmemleak reports an unreferenced object only if it is older than its minimum age (5 s at
# the scan's start) and its checksum did not change since the previous scan; an object's
# first scan always changes it. So a scan reports what was leaked before the previous scan
# and never what was leaked since: one scan after each test's cleanup judges the test
# before it (and the test after it gets its first scan). With one scan judging the test
# just run, the planted leak per logout went unseen (make check-harness, 2026-12-04);
# scanning twice per test cost some 20 s per test.
# kmemleak_scan: scans once; leaks=N objects it reported (kept in $RES/<pending test>.kmemleak)
# and km_secs its time. Fails if kmemleak is missing.
kmemleak_scan() {
  [ -w "$KMEMLEAK" ] || return 1
  local t0; t0=$(date +%s)
  echo scan >"$KMEMLEAK"
  leaks=$(grep -c '^unreferenced object' "$KMEMLEAK")
  [ "$leaks" = 0 ] || cp "$KMEMLEAK" "$RES/${p_name:-unattributed}.kmemleak"
  echo clear >"$KMEMLEAK"
  km_secs=$(( $(date +%s) - t0 ))
}

# rdma_counters: one line per RDMA device with a non-zero retry or RNR counter (builtins
# only: every exec costs about a second in the debug VM).
rdma_counters() {
  local d c v line dev
  for d in /sys/class/infiniband/*/ports/1/hw_counters; do
    [ -d "$d" ] || continue
    line= dev=${d#/sys/class/infiniband/}; dev=${dev%%/*}
    for c in rcvd_rnr_err send_rnr_err retry_rnr_exceeded_err retry_exceeded_err completer_retry_err rcvd_seq_err duplicate_request out_of_seq_request; do
      v=0; read -r v 2>/dev/null <"$d/$c"
      [ "${v:-0}" = 0 ] || line+=" $c=$v"
    done
    [ -z "$line" ] || echo "# rdma $dev:$line"
  done
}

# verdict: prints the pending test (p_*: its output, why it failed) with the leaks the last
# scan found, its KTAP result, then what was queued behind it; counts it.
p_name= p_after=() leaks=0
verdict() {
  if [ -n "$p_name" ]; then
    cat "$RES/.pending"
    if [ -w "$KMEMLEAK" ]; then
      echo "# kmemleak: $leaks new unreferenced objects after the test and its cleanup (judged by the scan after the next test)"
      [ "$leaks" = 0 ] || p_why+=("kmemleak: $leaks unreferenced objects (first: $(grep -m1 -A14 '^unreferenced object' "$RES/$p_name.kmemleak" | sed -n '/backtrace/,$p' | grep -m3 -E '\+0x' | tr -s ' ' | tr '\n' ' '))")
      echo "# $p_times, kmemleak ${km_secs}s"
    fi
    if [ "$p_rc" = 124 ] && [ "$p_cut" = 1 ] && [ ${#p_why[@]} = 0 ] && ! grep -q '^FAIL: ' "$RES/$p_name.log"; then
      # Stopped by CI's deadline, not by its own limit, with nothing wrong seen until then:
      # inconclusive, so counted with the tests the budget left out (a splat, a leak or a
      # connection failure seen until then fails it as always).
      echo "ok $p_n $p_name # SKIP not run: CI's time budget (started, stopped at the deadline after ${p_secs}s: inconclusive)"
      skipn=$((skipn + 1)) budgetn=$((budgetn + 1))
    elif [ "$p_rc" = "$KSFT_SKIP" ] && [ ${#p_why[@]} = 0 ]; then
      echo "ok $p_n $p_name # SKIP $(grep -m1 '^SKIP: ' "$RES/$p_name.log" | cut -c7-)"; skipn=$((skipn + 1))
    elif [ "$p_rc" = 0 ] && [ ${#p_why[@]} = 0 ]; then
      echo "ok $p_n $p_name # ${p_secs}s"; pass=$((pass + 1))
    else
      [ "$p_rc" = 124 ] && echo "# $p_name timed out after $p_tmo s"
      [ ${#p_why[@]} = 0 ] || printf '%s\n' "${p_why[@]}" | sed 's/^/#   /'
      if [ "$p_xfail" = 1 ]; then
        echo "not ok $p_n $p_name # TODO known failure (tests.list), exit $p_rc, ${p_secs}s"; xfailn=$((xfailn + 1))
      else
        echo "not ok $p_n $p_name # exit $p_rc, ${p_secs}s"; failn=$((failn + 1))
      fi
    fi
    rm -f "$RES/.pending"
  elif [ "$leaks" != 0 ]; then
    # Allocated between the boot check's two scans, before any test ran (ours not loaded).
    echo "# kmemleak: $leaks unreferenced objects from before the first test, not charged to it ($RES/unattributed.kmemleak)"
  fi
  p_name= leaks=0
  [ ${#p_after[@]} = 0 ] || printf '%s\n' "${p_after[@]}"
  p_after=()
}

for line in "${lines[@]}"; do
  read -r name script envs <<<"$line"
  n=$((n + 1))
  faults=0; [[ " $envs " == *" FAULTS=1 "* ]] && faults=1
  # XFAIL=1: a known failure under investigation (tests.list says why): reported as KTAP
  # "# TODO", counted as xfail in the totals and by make check, never as a pass.
  xfail=0; [[ " $envs " == *" XFAIL=1 "* ]] && xfail=1
  if [ $xfail = 1 ] && [ -z "${ISER_LONG:-}" ] && [ -z "${ISER_RUN_XFAIL:-}" ]; then
    # A known failure can hang and leave the VM unusable for the tests after it: only the
    # long run (make check-long) runs it. Reported, counted as skipped.
    p_after+=("ok $n $name # SKIP known failure (XFAIL in tests.list): runs in make check-long")
    skipn=$((skipn + 1)); [ -n "$p_name" ] || verdict; continue
  fi
  # LONG=1: a test that does not fit make check's budget yet (tests.list says why): run by
  # make check-long (and with ISER_RUN_LONG=1), reported as skipped otherwise.
  if [[ " $envs " == *" LONG=1 "* ]] && [ -z "${ISER_LONG:-}" ] && [ -z "${ISER_RUN_LONG:-}" ]; then
    p_after+=("ok $n $name # SKIP runs in make check-long only (LONG=1 in tests.list)")
    skipn=$((skipn + 1)); [ -n "$p_name" ] || verdict; continue
  fi
  # TIMEOUT=N in tests.list: this test's limit, when longer than TEST_TIMEOUT.
  tmo=${TEST_TIMEOUT:-900}
  for e in $envs; do
    case $e in TIMEOUT=*) [ "${e#TIMEOUT=}" -gt "$tmo" ] && tmo=${e#TIMEOUT=} ;; esac
  done
  w=${weight[$name]:-120} cut=0
  # pace in hundredths: seconds taken per second of weight so far (1 before the first
  # test; at least 0.5: a fast machine's pace after a few short tests is no promise)
  pace=100; [ "$w_run" -gt 0 ] && pace=$(( t_run * 100 / w_run )); [ "$pace" -ge 50 ] || pace=50
  # The limit is for a hung test, never for a slow machine: at least twice the test's weight
  # at this VM's pace, the pace taken as at least 1 (one measured on short tests may be low).
  # A test that needs 590 s here took 903 s on a CI machine running at 1.6 times the pace.
  pw=$pace; [ "$pw" -ge 100 ] || pw=100
  [ $(( w * pw * 2 / 100 )) -gt "$tmo" ] && tmo=$(( w * pw * 2 / 100 ))
  if [ -n "${ISER_DEADLINE:-}" ]; then
    need=$(( w * pace * 150 / 10000 )) left=$(( ISER_DEADLINE - $(date +%s) ))
    if [ "$need" -gt "$left" ]; then
      p_after+=("ok $n $name # SKIP not run: CI's time budget (${left} s left, about ${need} s needed at this VM's pace, $((pace / 100)).$(printf %02d $((pace % 100))) x tests/vm/durations)")
      skipn=$((skipn + 1)) budgetn=$((budgetn + 1)); [ -n "$p_name" ] || verdict; continue
    fi
    [ "$left" -lt "$tmo" ] && tmo=$left cut=1
  fi
  dmesg -C
  start=$(date +%s)
  # shellcheck disable=SC2086
  # ISER_PACE: this VM's pace so far (at least 1), for rig timeouts (lib.sh, paced).
  env ISER_PACE="$pw" $envs timeout -k 10 "$tmo" bash "$here/tests/$script" >"$RES/$name.log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  dmesg >"$RES/$name.test.dmesg"
  why=()
  if [ $rc != 0 ] && [ $rc != "$KSFT_SKIP" ]; then
    # A failed or timed-out test: where iscsid and the I/O tools are (a blocked iscsid makes
    # every iscsiadm call slow), before the cleanup changes it.
    for p in /proc/[0-9]*; do
      read -r c 2>/dev/null <"$p/comm" || continue
      case $c in iscsid|iscsiadm|fio|multipathd|systemd-udevd|dd|sg_reset) ;; *) continue ;; esac
      echo "== ${p#/proc/} $c state $(awk '/^State:/ { print $2 }' "$p/status") wchan $(cat "$p/wchan" 2>/dev/null)"
      cat "$p/stack" 2>/dev/null
    done >"$RES/$name.procs"
    # (not for a test stopped by CI's deadline: its processes are the ones it had left)
    [ -s "$RES/$name.procs" ] && ! { [ $rc = 124 ] && [ $cut = 1 ]; } && why+=("processes at the end (all in $name.procs):" "$(grep '^==' "$RES/$name.procs" | head -n 8)")
  fi
  {
  sed 's/^/# /' "$RES/$name.log"
  # Retransmissions and receiver-not-ready NAKs of the soft-RDMA devices the test left up
  # (before the cleanup deletes them): a target out of receive buffers shows here as
  # send_rnr_err / rcvd_rnr_err, each costing the sender a back-off (655 ms by default).
  rdma_counters
  # Errors the test met, before its cleanup: a test that injects no fault must see none.
  conn_errs=$(unexpected_conn_errors <"$RES/$name.test.dmesg" | wc -l)
  our_errs=$(dmesg --level=emerg,alert,crit,err | grep -c 'ib_iser: ')
  if [ "$faults" = 1 ]; then
    echo "# connection failures reported: $conn_errs, ib_iser error lines: $our_errs (fault test)"
  elif [ "$conn_errs" != 0 ] || [ "$our_errs" != 0 ]; then
    why+=("no fault was injected, yet $conn_errs connection failures and $our_errs ib_iser error lines:")
    why+=("$(unexpected_conn_errors <"$RES/$name.test.dmesg" | head -n 3)")
    why+=("$(dmesg --level=emerg,alert,crit,err | grep 'ib_iser: ' | head -n 3)")
    # What led to it: the kernel log before the first one (target and RDMA lines included),
    # so that a failure seen only in CI's excerpt can be explained.
    first=$(unexpected_conn_errors <"$RES/$name.test.dmesg" | head -n 1)
    [ -z "$first" ] || why+=("kernel log before it:" \
      "$(grep -F -B 12 -A 3 -m 1 -- "$first" "$RES/$name.test.dmesg" | cut -c1-200)")
  fi
  } >"$RES/.block"
  t_cl=$(date +%s)
  cl=$(cleanup)
  [ -z "$cl" ] || why+=("$cl")
  t_km=$(date +%s)
  # The whole kernel log: the test and its cleanup (logout, rmmod, teardown).
  dmesg >"$RES/$name.dmesg"
  splats=$(grep -E "$SPLAT_RE" "$RES/$name.dmesg" | head -n 5)
  if [ -n "$splats" ]; then
    why+=("kernel log has splats:" "$splats")
    # The first one with its location and call trace, so that CI's excerpt of the output
    # alone can tell whose code it is (the full log stays in $RES/<test>.dmesg).
    why+=("the first, its RIP and call trace:" \
      "$(grep -E -A 90 -m 1 -- "$SPLAT_RE" "$RES/$name.dmesg" \
         | grep -E -- "$SPLAT_RE|RIP:|Call Trace|\+0x[0-9a-f]+/0x" | head -n 28 | cut -c1-160)")
  fi
  if [ -n "$lockdep_off" ]; then
    why+=("lockdep has been off since $lockdep_off: locking is no longer checked in this VM")
  elif ! lockdep_on; then
    lockdep_off=$name
    why+=("lockdep turned itself off during this test (a lock report)")
  fi
  # This scan judges the previous test (see kmemleak_scan); this one waits for the next.
  kmemleak_scan && verdict
  w_run=$(( w_run + w )) t_run=$(( t_run + $(date +%s) - start ))
  p_name=$name p_n=$n p_rc=$rc p_secs=$secs p_xfail=$xfail p_tmo=$tmo p_cut=$cut p_times="test ${secs}s, cleanup $((t_km - t_cl))s"
  p_why=("${why[@]}")
  mv "$RES/.block" "$RES/.pending"
  [ -w "$KMEMLEAK" ] || { p_why+=("kmemleak is not available: leaks cannot be checked"); verdict; }
done
# The last test: its leaks are reported by one more scan.
kmemleak_scan && verdict
echo "# Totals: pass:$pass fail:$failn xfail:$xfailn xpass:0 skip:$skipn error:$(( planned - pass - failn - skipn - xfailn ))"
[ "$w_run" -gt 0 ] && echo "# pace: $t_run s for $w_run s of tests/vm/durations weight ($(( t_run * 100 / w_run ))%)"
echo "vm: planned $planned, $pass passed, $failn failed, $skipn skipped ($budgetn not run for the budget), $xfailn known failures"
[ $failn = 0 ] && [ $((pass + failn + skipn + xfailn)) = "$planned" ]
