#!/usr/bin/env bash
# make demo: boot the test VM and run tests/vm/demo.sh.
# IMPL=rs|c selects the initiator (default rs: ours; c: the in-tree C ib_iser, the reference).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
impl=${IMPL:-rs}
# The fio figures mean something only on the perf kernel (no KASAN, lockdep, kmemleak): the
# debug kernel under TCG does a few dozen IOPS. Use the perf kernel when it is cached (make
# bench builds it), else the debug kernel, and say which (DEMO_KERNEL=debug|perf forces one).
flavor=${DEMO_KERNEL:-}
if [ -z "$flavor" ]; then
  flavor=debug
  [ -f "$("$top/scripts/kernel.sh" path perf)/.built" ] && flavor=perf
fi
exec "$top/scripts/vm-run" --kernel "$flavor" -- env ISER_IMPL="$impl" ISER_KFLAVOR="$flavor" "$top/tests/vm/demo.sh"
