#!/usr/bin/env bash
# make check: host unit tests, build checks, and the VM suite; the last line is
# "N passed, N failed" over all of them.
#
# Environment: ISER_VM_TESTS=<regex> runs a subset of the VM suite (the others are counted
# as skipped); ISER_SKIP_VM=1 skips it;
# ISER_LOGIN_CYCLES (default 10; `make check-long` uses 200) sets the login/logout loop;
# TEST_TIMEOUT (s, default 900) limits each VM test (`make check-long`: 3600; never below twice
# the test's tests/vm/durations weight at its VM's pace, tests/vm/suite.sh);
# ISER_FUZZ_SECONDS (default 20, 0 skips) is the libFuzzer run per target (scripts/fuzz.sh).
# ISER_CI_DEADLINE=T (epoch seconds; .ci/run sets it from CI's 90-minute limit): the VM
# shards start no test that would not end by then on this machine (tests/vm/suite.sh), the
# last one early enough for the DKMS test and the 7.3 checks that follow it; what was not
# run is counted and named at the end. Unset (a developer's make check), every test runs.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
res=$top/results/check-$(date +%Y%m%d-%H%M%S)
mkdir -p "$res"
pass=0 failn=0 skipn=0 xfailn=0 planned=0
t_start=$(date +%s)
# phase TITLE: a section header with the time since the start, so that a run cut short by
# CI's limit still shows where the time went.
phase() { echo "== $* (at $(( $(date +%s) - t_start )) s)"; }
result() {  # name rc
  planned=$((planned + 1))
  if [ "$2" = 0 ]; then echo "ok - $1"; pass=$((pass + 1)); else echo "not ok - $1"; failn=$((failn + 1)); fi
}
# skipped NAME WHY [COUNT]: a check (or COUNT of them) turned off by the environment: reported
# and counted, never silently dropped.
skipped() {
  local k=${3:-1}
  planned=$((planned + k)); skipn=$((skipn + k))
  echo "ok - $1 # SKIP $2"
}

phase "host unit tests (tests/host: cargo test)"
(cd tests/host && CARGO_TARGET_DIR=$top/tests/host/target cargo test 2>&1) | tee "$res/host-tests.log" | grep -E '^test |test result'
hp=$(awk '/^test result:/{s+=$4} END{print s+0}' "$res/host-tests.log")
hf=$(awk '/^test result:/{s+=$6} END{print s+0}' "$res/host-tests.log")
hi=$(awk '/^test result:/{s+=$8} END{print s+0}' "$res/host-tests.log")
grep -q '^test result:' "$res/host-tests.log" || hf=$((hf + 1))
pass=$((pass + hp)); failn=$((failn + hf)); skipn=$((skipn + hi)); planned=$((planned + hp + hf + hi))


fz=${ISER_FUZZ_SECONDS:-20}
if [ "$fz" != 0 ]; then
  phase "fuzz (scripts/fuzz.sh $fz: libFuzzer, $fz s per target${ISER_FUZZ_RUNS:+, until $ISER_FUZZ_RUNS executions each})"
  scripts/fuzz.sh "$fz" 2>&1 | tee "$res/fuzz.log" | grep -E '^(fuzz|  )'
  result "fuzz: rust/proto parsers survive ${ISER_FUZZ_RUNS:-$fz s per target}${ISER_FUZZ_RUNS:+ executions per target}" "${PIPESTATUS[0]}"
else
  skipped "fuzz: rust/proto parsers" "ISER_FUZZ_SECONDS=0"
fi

# The fuzz crate's own tests: every seed of the corpus through every target, and the
# checks in tests/fuzz/src (cargo test; builds libfuzzer-sys, not the instrumented targets).
phase "fuzz crate seed tests (tests/fuzz: cargo test)"
(cd tests/fuzz && CARGO_TARGET_DIR=$top/tests/fuzz/target-test cargo test --locked 2>&1) | tee "$res/fuzz-tests.log" | grep -E '^test |test result'
fp=$(awk '/^test result:/{s+=$4} END{print s+0}' "$res/fuzz-tests.log")
ff=$(awk '/^test result:/{s+=$6} END{print s+0}' "$res/fuzz-tests.log")
grep -q '^test result:' "$res/fuzz-tests.log" || ff=$((ff + 1))
[ "$fp" -gt 0 ] || { echo "not ok - the fuzz crate ran no test"; ff=$((ff + 1)); }
pass=$((pass + fp)); failn=$((failn + ff)); planned=$((planned + fp + ff))

phase "build checks"
kdir=$(scripts/kbuild.sh kdir) || { echo "no kernel tree"; exit 1; }
echo "KDIR=$kdir"
scripts/kbuild.sh modules >"$res/build.log" 2>&1; rc=$?
[ $rc = 0 ] && grep -Eq 'warning:|error:' "$res/build.log" && rc=1
[ $rc = 0 ] || tail -n 30 "$res/build.log"
result "module builds with warnings as errors" $rc
make -s fmt-check >"$res/fmt.log" 2>&1; rc=$?
[ $rc = 0 ] || head -n 30 "$res/fmt.log"
result "rustfmt clean" $rc
# Force a rebuild of the crate under clippy, then rebuild normally so ib_iser.ko is the real one.
touch rust/ib_iser.rs
scripts/kbuild.sh modules CLIPPY=1 >"$res/clippy.log" 2>&1; rc=$?
[ $rc = 0 ] && grep -Eq 'warning:|error:' "$res/clippy.log" && rc=1
[ $rc = 0 ] || grep -E -A8 'warning:|error:' "$res/clippy.log" | head -n 40
result "clippy clean (make CLIPPY=1)" $rc
touch rust/ib_iser.rs
scripts/kbuild.sh modules >>"$res/build.log" 2>&1 || result "rebuild after clippy" 1
rc=0
for p in debug_level max_lun max_sectors always_register pi_enable; do
  modinfo -F parm ib_iser.ko | grep -q "^$p:.\{10,\}" || { echo "modinfo: no description for $p"; rc=1; }
done
[ "$(modinfo -F name ib_iser.ko)" = ib_iser ] || rc=1
# The shipped module carries no test hook (rust/planted.rs is a test-build cfg).
modinfo -F parm ib_iser.ko | grep -q '^planted_fault:' && { echo "modinfo: the planted_fault test parameter is in the shipped module"; rc=1; }
grep -aq 'TEST BUILD' ib_iser.ko && { echo "the shipped module contains test-build strings"; rc=1; }
result "modinfo lists the parameters with descriptions; no test hook in the shipped module" $rc
# Documentation/ is plain reStructuredText: docutils parses every file without a warning
# (only Sphinx's toctree in index.rst is unknown to plain docutils).
rc=0
for f in Documentation/*.rst; do
  python3 - "$f" <<'PY' || rc=1
import io, sys, docutils.core
err = io.StringIO()
docutils.core.publish_doctree(open(sys.argv[1]).read(), source_path=sys.argv[1],
    settings_overrides={"report_level": 2, "halt_level": 5, "warning_stream": err})
bad = [l for l in err.getvalue().splitlines() if "(WARNING/" in l or "(ERROR/" in l or "(SEVERE/" in l]
bad = [l for l in bad if 'Unknown directive type "toctree"' not in l]
for l in bad:
    print(l)
sys.exit(1 if bad else 0)
PY
done
result "Documentation/*.rst is valid reStructuredText (docutils)" $rc
sh=$(scripts/unsafe-audit.sh 2>&1); rc=$?
[ $rc = 0 ] || echo "$sh"
result "every unsafe block has a SAFETY comment, and only rust/ffi/ has unsafe" $rc
# The adversarial target's offline self-test (its PDU logic without RDMA; it also parses
# every scenario file), so that a change to tests/vm/adv is checked before any VM boots.
python3 -B tests/vm/adv/target.py --selftest >"$res/adv-selftest.log" 2>&1; rc=$?
[ $rc = 0 ] && ! grep -qx 'selftest ok' "$res/adv-selftest.log" && rc=1
[ $rc = 0 ] || tail -n 20 "$res/adv-selftest.log"
result "the adversarial target's self-test passes and every scenario parses (tests/vm/adv)" $rc
# Install paths, into a copy of the target kernel's module tree (DESTDIR): ours shadows the
# in-tree C ib_iser (modprobe resolves ib_iser to updates/), uninstall brings the C one back.
it=$(mktemp -d); rc=0
krel=$(cat "$kdir/include/config/kernel.release")
mods=$kdir/../kroot/lib/modules/$krel
[ -d "$mods" ] || mods=/lib/modules/$krel
if [ -d "$mods" ]; then
  mkdir -p "$it/lib/modules" && cp -a "$mods" "$it/lib/modules/" && rm -f "$it/lib/modules/$krel"/{build,source}
  DESTDIR=$it scripts/install.sh install >"$res/install.log" 2>&1 || rc=1
  [ "$(modinfo -b "$it" -k "$krel" -n ib_iser)" = "$it/lib/modules/$krel/updates/ib_iser.ko" ] || rc=1
  modprobe -d "$it" -S "$krel" --show-depends ib_iser | grep -q "updates/ib_iser.ko" || rc=1
  DESTDIR=$it scripts/install.sh uninstall >>"$res/install.log" 2>&1 || rc=1
  modinfo -b "$it" -k "$krel" -n ib_iser 2>/dev/null | grep -q "/kernel/drivers/infiniband/ulp/iser/ib_iser.ko" || rc=1
else
  echo "no module tree for $krel"; rc=1
fi
rm -rf "$it"
[ $rc = 0 ] || tail -n 20 "$res/install.log"
result "make install shadows the in-tree ib_iser, make uninstall restores it" $rc

# The newest kernel: the same source builds warning-free and clippy-clean against 7.3 (the
# VM suite on 7.3 is `make check KVER=7.3`; Documentation/testing.rst). ISER_SKIP_KVER2=1
# skips it. A build check needs the configured tree's headers, scripts and Rust crates, not a
# kernel: without a cached 7.3 kernel this runs `make modules_prepare` on the same debug
# config (scripts/kernel.sh prepare: minutes; the full build took about 25 min on 2 cores).
# kver2_checks: prints what failed and writes "RC NAME" lines to $res/kver2.results (it runs
# in the background beside the last VM shard, where result() cannot count).
kver2=0
[ "${KVER:-6.12}" = 6.12 ] && [ "${ISER_SKIP_KVER2:-0}" != 1 ] && kver2=1
kver2_checks() {
  local k2 b2 rc mw out=$res/kver2.results
  : >"$out"
  if k2=$(KVER=7.3 scripts/deps.sh >/dev/null && KVER=7.3 scripts/kernel.sh prepare debug 2>"$res/kernel-7.3.log" | tail -n1); then
    b2=$(mktemp -d); rc=0
    # A copy of the tree: the 6.12 ib_iser.ko in the work tree stays what the VM suite ran.
    git ls-files -z | xargs -0 cp --parents -t "$b2"
    # A prepared tree has no Module.symvers: 7.x's modpost then fails on every symbol the
    # module imports (6.12's only warned). The link against the kernel's exports is checked
    # by the full build on the first series; here the compiler's and clippy's verdicts count.
    mw=(); [ -f "$k2/linux/Module.symvers" ] || mw=(KBUILD_MODPOST_WARN=1)
    env "${mw[@]}" KDIR="$k2/linux" "$b2/scripts/kbuild.sh" modules >"$res/build-7.3.log" 2>&1 || rc=1
    [ $rc = 0 ] && grep -Eq 'warning:|error:' "$res/build-7.3.log" && rc=1
    [ $rc = 0 ] || grep -E -A8 'warning:|error:' "$res/build-7.3.log" | head -n 40
    echo "$rc module builds against $(cat "$k2/kernel.release") with warnings as errors" >>"$out"
    touch "$b2/rust/ib_iser.rs"
    env "${mw[@]}" KDIR="$k2/linux" "$b2/scripts/kbuild.sh" modules CLIPPY=1 >"$res/clippy-7.3.log" 2>&1; rc=$?
    [ $rc = 0 ] && grep -Eq 'warning:|error:' "$res/clippy-7.3.log" && rc=1
    [ $rc = 0 ] || grep -E -A8 'warning:|error:' "$res/clippy-7.3.log" | head -n 40
    echo "$rc clippy clean against $(cat "$k2/kernel.release")" >>"$out"
    rm -rf "$b2"
  else
    tail -n 20 "$res/kernel-7.3.log"; echo "1 7.3 kernel available" >>"$out"
  fi
}
# kver2_report: counts what kver2_checks wrote (a check that never reported counts as failed).
kver2_report() {
  local rc name n=0
  phase "build checks on the second kernel series (KVER=7.3${1:+; $1})"
  [ -s "$res/kver2.log" ] && cat "$res/kver2.log"
  while read -r rc name; do result "$name" "$rc"; n=$((n + 1)); done <"$res/kver2.results"
  [ $n -gt 0 ] || result "build checks on 7.3 reported nothing (see $res/kver2.log)" 1
}

if [ "${ISER_SKIP_VM:-0}" != 1 ]; then
  # Two VMs (one per host core; each runs single-threaded TCG), each taking every other
  # test of tests/vm/tests.list. ISER_VM_SHARDS=1 runs one VM.
  shards=${ISER_VM_SHARDS:-2}
  # A whole shard must fit in one VM boot: vm-run's default limit (30 min) is too short for a
  # shard of make check (~20 min, more on a slow machine) and far too short for check-long.
  vm_timeout=${ISER_VM_TIMEOUT:-$([ -n "${ISER_LONG:-}" ] && echo 14400 || echo 5400)}
  # ISER_VM_MEM (default 2G): each kmemleak scan (one per test) takes time in proportion to
  # the guest's memory (KASAN's shadow and the page array are scanned too): 24 s at 3G, 14 s
  # at 1.5G in the debug VM (2026-12-04); the tests need a few hundred MiB.
  phase "VM suite (scripts/vm-run -- tests/vm/suite.sh, $shards VMs of ${ISER_VM_MEM:-2G})"
  # The DKMS test and the 7.3 build checks run in the core the first shard frees (below):
  # the last shard is planned that much lighter (tests/vm/plan.sh), so it ends with them.
  ISER_PLAN_SLACK=0
  if [ "$shards" -gt 1 ]; then
    [ "${ISER_SKIP_DKMS:-0}" != 1 ] && ISER_PLAN_SLACK=$((ISER_PLAN_SLACK + 300))
    [ $kver2 = 1 ] && ISER_PLAN_SLACK=$((ISER_PLAN_SLACK + 400))
  fi
  export ISER_PLAN_SLACK
  # Under CI's deadline: every shard stops starting tests 420 s before it (the cleanup of a
  # test stopped there, the last kmemleak scan, the VM's shutdown, the report: on a slow
  # machine a cleanup alone can take minutes); the last shard 900 s before that too, for the
  # DKMS test (~300 s) and the 7.3 checks (~400 s, one make job) that start when a shard ends.
  dl=
  if [ -n "${ISER_CI_DEADLINE:-}" ]; then
    dl=$(( ISER_CI_DEADLINE - 420 ))
    # and a VM still running a minute before it is stopped (its unrun tests count as failed)
    [ $(( ISER_CI_DEADLINE - 60 - $(date +%s) )) -lt "$vm_timeout" ] && vm_timeout=$(( ISER_CI_DEADLINE - 60 - $(date +%s) ))
    # A build that ended at or past the deadline: each VM still boots (3 minutes), so that
    # its suite reports every test as not run for the budget, not a negative time limit.
    [ "$vm_timeout" -lt 180 ] && vm_timeout=180
    echo "CI's deadline in $(( ISER_CI_DEADLINE - $(date +%s) )) s: VM tests start only if they can end $(( dl - $(date +%s) )) s from now ($(( dl - 900 - $(date +%s) )) s in the last VM)"
  fi
  vm_pids=() watch_pids=() budget_skips=0
  for k in $(seq 0 $((shards - 1))); do
    : >"$res/vm$k.log"
    d=$dl; [ -n "$dl" ] && [ "$k" = $((shards - 1)) ] && d=$((dl - 900))
    ISER_RESULTS=$res/vm$k VM_ENV="ISER_RESULTS=$res/vm$k ISER_SHARD=$k/$shards ISER_PLAN_SLACK=$ISER_PLAN_SLACK ISER_LOGIN_CYCLES=${ISER_LOGIN_CYCLES:-10} ISER_LONG=${ISER_LONG:-} TEST_TIMEOUT=${TEST_TIMEOUT:-900}${d:+ ISER_DEADLINE=$d}" \
      scripts/vm-run --no-build --mem "${ISER_VM_MEM:-2G}" --timeout "$vm_timeout" -- tests/vm/suite.sh "${ISER_VM_TESTS:-.}" >"$res/vm$k.log" 2>&1 &
    vm_pids+=($!)
    # Each test's result as it comes, with the time: a run cut short by CI's limit still
    # shows which tests ran and how long (the full report follows when the shards are done).
    tail --pid=$! -n +1 -F "$res/vm$k.log" 2>/dev/null | grep --line-buffered -E '^(not )?ok [0-9]+ ' \
      | while IFS= read -r l; do echo "[VM $k at $(( $(date +%s) - t_start )) s] $l"; done &
    watch_pids+=($!)
    # Stagger the boots a little (both read the same kernel and root at start).
    sleep 5
  done
  # The DKMS install test (one more VM, one core, and a module build) and then the build
  # checks on the second kernel series start as soon as the first shard is done, beside the
  # last one, instead of after it: the shards never end together, and a core would idle
  # meanwhile. They use their own module trees and build directories, never the work tree's
  # ib_iser.ko the shards load.
  slack_pid=
  if [ "${ISER_SKIP_DKMS:-0}" != 1 ] || [ $kver2 = 1 ]; then
    wait -n "${vm_pids[@]}"
    phase "first VM shard done: the DKMS test, then the 7.3 build checks, beside the other"
    (
      if [ "${ISER_SKIP_DKMS:-0}" != 1 ]; then
        scripts/dkms-test.sh "$res/dkms" >"$res/dkms.log" 2>&1; echo $? >"$res/dkms.rc"
      fi
      # One make job: the last shard's VM has the other core.
      [ $kver2 = 1 ] && JOBS=1 kver2_checks >"$res/kver2.log" 2>&1
    ) &
    slack_pid=$!
  fi
  wait "${vm_pids[@]}"
  wait "${watch_pids[@]}" 2>/dev/null
  phase "VM shards done"
  for k in $(seq 0 $((shards - 1))); do
    echo "-- VM $k"
    grep -E '^(ok|not ok|#|vm:|KTAP|1\.\.)' "$res/vm$k.log" | grep -Ev '^# (Logging|Login|Logout)'
    # The plan comes from the list, not from the VM: a VM that died after 10 of 15 tests has
    # 5 tests that never ran, and they count as failed (+1: the boot-log test).
    vplan=$(( $(tests/vm/plan.sh "${ISER_VM_TESTS:-.}" "$k/$shards" | wc -l) + 1 ))
    vp=$(grep -cE '^ok [0-9]+ ' "$res/vm$k.log"); vs=$(grep -cE '^ok [0-9]+ .*# SKIP' "$res/vm$k.log")
    vx=$(grep -cE '^not ok [0-9]+ .*# TODO' "$res/vm$k.log")
    vf=$(grep -cE '^not ok [0-9]+ ' "$res/vm$k.log"); vp=$((vp - vs)); vf=$((vf - vx))
    vb=$(grep -cE "^ok [0-9]+ .*# SKIP not run: CI's time budget" "$res/vm$k.log"); budget_skips=$((budget_skips + vb))
    missing=$((vplan - vp - vf - vs - vx))
    if [ "$missing" -gt 0 ]; then
      tail -n 30 "$res/vm$k.log"
      echo "not ok - VM $k ran $((vp + vf + vs + vx)) of its $vplan tests: $missing never ran, counted as failed (see $res/vm$k.log)"
      vf=$((vf + missing))
    elif [ "$missing" -lt 0 ]; then
      echo "not ok - VM $k reported $((vp + vf + vs + vx)) results for $vplan planned tests"; vf=$((vf - missing))
    fi
    grep -qE '^vm: planned [0-9]+' "$res/vm$k.log" || { [ "$missing" -gt 0 ] || { echo "not ok - VM $k gave no summary"; vf=$((vf + 1)); }; }
    pass=$((pass + vp)); failn=$((failn + vf)); skipn=$((skipn + vs)); xfailn=$((xfailn + vx)); planned=$((planned + vplan))
  done
  # The tests ISER_VM_TESTS left out are skipped, not dropped from the totals.
  if [ -n "${ISER_VM_TESTS:-}" ]; then
    left=$(( $(tests/vm/plan.sh . | wc -l) - $(tests/vm/plan.sh "$ISER_VM_TESTS" | wc -l) ))
    [ "$left" -le 0 ] || skipped "$left VM tests not selected" "ISER_VM_TESTS=$ISER_VM_TESTS" "$left"
  fi
else
  skipped "VM suite" "ISER_SKIP_VM=1" "$(( $(tests/vm/plan.sh . | wc -l) + 1 ))"
fi
if [ -n "${slack_pid:-}" ]; then
  # Under CI's deadline the DKMS test and the 7.3 checks get until a minute before it; cut
  # there, what did not report counts as failed.
  while [ -n "${ISER_CI_DEADLINE:-}" ] && kill -0 "$slack_pid" 2>/dev/null && [ "$(date +%s)" -lt $((ISER_CI_DEADLINE - 60)) ]; do sleep 5; done
  if kill -0 "$slack_pid" 2>/dev/null && [ -n "${ISER_CI_DEADLINE:-}" ]; then
    echo "not ok - the DKMS test and the 7.3 checks had not ended a minute before CI's deadline: stopped"
    pkill -P "$slack_pid"; kill "$slack_pid" 2>/dev/null
    failn=$((failn + 1)); planned=$((planned + 1))
  fi
  wait "$slack_pid"
fi
if [ "${ISER_SKIP_VM:-0}" != 1 ] && [ "${ISER_SKIP_DKMS:-0}" != 1 ]; then
  phase "DKMS install test (scripts/dkms-test.sh: host DKMS in a private mount namespace, then a VM; started when the first VM shard ended)"
  rc=$(cat "$res/dkms.rc" 2>/dev/null || echo 1)
  grep -E '^\[dkms-test\]|^(# )?(modinfo|loaded by|dkms guest)' "$res/dkms.log"
  [ "$rc" = 0 ] || tail -n 25 "$res/dkms.log"
  result "DKMS install: iscsid's own load picks ours from updates/dkms; dkms remove restores the C driver" "$rc"
else
  skipped "DKMS install test" "ISER_SKIP_VM=1 or ISER_SKIP_DKMS=1"
fi
if [ $kver2 = 1 ]; then
  if [ -n "${slack_pid:-}" ]; then
    kver2_report "run beside the last VM shard"
  else
    kver2_checks >"$res/kver2.log" 2>&1
    kver2_report
  fi
elif [ "${KVER:-6.12}" = 6.12 ]; then
  skipped "build and clippy checks on 7.3" "ISER_SKIP_KVER2=1" 2
fi
echo "== results in $res ($(( $(date +%s) - t_start )) s)"
if [ "${budget_skips:-0}" -gt 0 ]; then
  echo "NOTE: $budget_skips VM tests were not run: CI's time limit would have passed first on this machine (each VM's pace is its '# pace:' line; the tests are the '# SKIP not run: CI's time budget' lines above). Counted as skipped; a make check without ISER_CI_DEADLINE, and make check-long, run them."
fi
echo "planned $planned: $pass passed, $failn failed, $skipn skipped (${budget_skips:-0} VM tests not run for CI's time budget), $xfailn known failures (XFAIL in tests/vm/tests.list)"
echo "$pass passed, $failn failed, $skipn skipped, $xfailn known failures"
[ $failn = 0 ] && [ $((pass + failn + skipn + xfailn)) = $planned ]
