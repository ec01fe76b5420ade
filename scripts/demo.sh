#!/usr/bin/env bash
# make demo: boot the test VM and run tests/vm/demo.sh.
# IMPL=rs|c selects the initiator (default rs: ours; c: the in-tree C ib_iser, the reference).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
impl=${IMPL:-rs}
exec "$top/scripts/vm-run" -- env ISER_IMPL="$impl" "$top/tests/vm/demo.sh"
