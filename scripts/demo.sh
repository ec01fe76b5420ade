#!/usr/bin/env bash
# make demo: boot the test VM and run tests/vm/demo.sh.
# IMPL=rs|c selects the initiator (default c: the in-tree C ib_iser, until our RDMA
# connection and data path land; see README "Status").
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
impl=${IMPL:-c}
exec "$top/scripts/vm-run" -- env ISER_IMPL="$impl" "$top/tests/vm/demo.sh"
