#!/bin/bash
# make check-harness, inside the VM: the suite (tests/vm/suite.sh) against a test build of
# ours with one planted fault at a time (rust/planted.rs, selected by ISER_PLANTED). First
# the control: the same tests with no fault planted must pass (the test build itself is
# sound). Then each planted fault must make its test fail; and a session left behind by a
# test of tests/vm/harness.list (as a crashed iscsiadm leaves one) must fail that test only,
# not the one after it. KTAP output; the last line is
# "harness: N passed, N failed".
#
#   tests/vm/harness.sh [K/N]   # shard: every N-th case from the K-th
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
RES=${ISER_RESULTS:-$ISER_TOP/results/harness-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$RES"
# fault   test(s) that must report it
cases=(
  "none             ^(module_load_unload_cycles_kmemleak|login_logout_session_attributes|data_integrity_fio_matrix)$"
  "warn_unload      ^module_load_unload_cycles_kmemleak$"
  "leak_logout      ^login_logout_session_attributes$"
  "flip_read        ^data_integrity_fio_matrix$"
  "conn_error       ^data_integrity_fio_matrix$"
  "stall_completion ^data_integrity_fio_matrix$"
  "orphan_session   ^(harness_orphan_session|login_logout_session_attributes)$"
)
shard=${1:-0/1}
k=${shard%/*} nsh=${shard#*/}
sel=()
for i in "${!cases[@]}"; do [ $((i % nsh)) = "$k" ] && sel+=("${cases[$i]}"); done
echo "KTAP version 1"
echo "# ib_iser.ko $(modinfo -F srcversion "$ISER_KO" 2>/dev/null) (test build: $(modinfo -F parm "$ISER_KO" | grep -c '^planted_fault:') planted_fault parameter)"
echo "1..${#sel[@]}"
n=0 pass=0 failn=0
for c in "${sel[@]}"; do
  read -r fault re <<<"$c"
  n=$((n + 1))
  planted=$fault; [ "$fault" = none ] && planted=
  # Not a fault of the module: a test of harness.list leaves its mess (no planted fault).
  htests=; [ "$fault" = orphan_session ] && planted= htests=1
  out=$RES/$fault.ktap
  # The cases share this VM: the suite's boot-log check must not see the previous case's
  # planted splat (kept in that case's results).
  dmesg -C
  ISER_HARNESS_TESTS=$htests ISER_PLANTED=$planted ISER_RESULTS=$RES/$fault ISER_SHARD=0/1 bash "$here/suite.sh" "$re" >"$out" 2>&1
  rc=$?
  sed 's/^/# /' "$out" | grep -E '^# (ok|not ok|#   |vm:)' | head -n 40
  if [ "$fault" = none ]; then
    # The control: everything passes.
    if [ $rc = 0 ] && grep -q '^vm: .* 0 failed' "$out"; then
      echo "ok $n control_test_build_passes_without_a_planted_fault"; pass=$((pass + 1))
    else
      echo "not ok $n control_test_build_passes_without_a_planted_fault"; failn=$((failn + 1))
    fi
  elif [ "$fault" = orphan_session ]; then
    # The session left behind is reported (and destroyed), and the test after it passes:
    # nothing of it pinned ib_iser or the target.
    if grep -q '^not ok [0-9]* harness_orphan_session' "$out" &&
      grep -q 'destroyed over netlink: session' "$out" &&
      grep -q '^ok [0-9]* login_logout_session_attributes' "$out"; then
      echo "ok $n left_over_session_reported_and_next_test_unaffected"; pass=$((pass + 1))
    else
      echo "not ok $n left_over_session_reported_and_next_test_unaffected"; failn=$((failn + 1))
    fi
  else
    # Every selected test reports the fault.
    nt=$(grep -cE '^(ok|not ok) [0-9]+ ' "$out"); nf=$(grep -cE '^not ok [0-9]+ ' "$out")
    # (test 1, the boot log, passes: the fault acts only once ours is loaded)
    if [ $rc != 0 ] && [ "$nf" -ge 1 ] && [ "$nf" = $((nt - 1)) ]; then
      echo "ok $n planted_${fault}_reported_as_failure"; pass=$((pass + 1))
    else
      echo "not ok $n planted_${fault}_reported_as_failure # the suite did not report it ($nf of $((nt - 1)) tests failed)"
      failn=$((failn + 1))
    fi
  fi
done
echo "harness: $pass passed, $failn failed"
[ $failn = 0 ]
