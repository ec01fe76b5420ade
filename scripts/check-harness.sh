#!/usr/bin/env bash
# make check-harness: shows that the VM suite can fail. Builds a test build of the module
# (ISER_TEST_FAULTS=1: rust/planted.rs, never in the shipped module) in a copy of the tree,
# then runs tests/vm/harness.sh in two VMs: a control (no fault: the tests pass) and each
# planted fault (its test must be reported as failed). Passes only if every planted fault
# was reported. Last line: "N passed, N failed". Documentation/testing.rst.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
res=$top/results/harness-$(date +%Y%m%d-%H%M%S)
mkdir -p "$res"
kdir=$(scripts/kbuild.sh kdir) || { echo "no kernel tree"; exit 1; }
b=$(mktemp -d /tmp/iser-harness.XXXXXX)
trap 'rm -rf "$b"' EXIT
git ls-files -z | xargs -0 cp --parents -t "$b"
echo "== test build with planted faults (ISER_TEST_FAULTS=1) in $b"
if ! ISER_TEST_FAULTS=1 KDIR=$kdir "$b/scripts/kbuild.sh" modules >"$res/build.log" 2>&1; then
  tail -n 30 "$res/build.log"; echo "0 passed, 1 failed"; exit 1
fi
modinfo -F parm "$b/ib_iser.ko" | grep -q '^planted_fault:' || { echo "the test build has no planted_fault parameter"; echo "0 passed, 1 failed"; exit 1; }
shards=${ISER_VM_SHARDS:-2}
pass=0 failn=0
for k in $(seq 0 $((shards - 1))); do
  # The guest writes only below the tree it runs from (the copy, mounted read-write; the
  # rest of the host is read-only there): results go to the copy, then here.
  VM_ENV="ISER_RESULTS=$b/results/harness/vm$k TEST_TIMEOUT=${TEST_TIMEOUT:-900}" \
    "$b/scripts/vm-run" --no-build --mem "${ISER_VM_MEM:-2G}" --timeout 5400 -- "$b/tests/vm/harness.sh" "$k/$shards" >"$res/vm$k.log" 2>&1 &
  sleep 5
done
wait
cp -r "$b/results/harness/." "$res/" 2>/dev/null
for k in $(seq 0 $((shards - 1))); do
  echo "-- VM $k"
  grep -E '^(ok|not ok|#|harness:|1\.\.)' "$res/vm$k.log"
  line=$(grep -E '^harness: [0-9]+ passed' "$res/vm$k.log" | tail -n1)
  if [ -n "$line" ]; then
    pass=$((pass + $(echo "$line" | awk '{print $2}'))); failn=$((failn + $(echo "$line" | awk '{print $4}')))
  else
    tail -n 20 "$res/vm$k.log"; echo "not ok - VM $k did not complete"; failn=$((failn + 1))
  fi
done
echo "== results in $res"
echo "$pass passed, $failn failed"
[ $failn = 0 ] && [ $pass -gt 0 ]
