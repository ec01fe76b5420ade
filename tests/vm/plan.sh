#!/bin/bash
# The VM tests one shard runs, one tests.list line each (name script environment):
#
#   tests/vm/plan.sh [NAME_REGEX] [K/N]
#
# Shared by tests/vm/suite.sh (which runs them) and scripts/check.sh (which counts them, so a
# VM that dies early still has its unrun tests counted as failed). K/N: every N-th test from
# the K-th (0-based).
here=$(cd "$(dirname "$0")" && pwd)
filter=${1:-.}
shard=${2:-0/1}
grep -Ev '^[[:space:]]*(#|$)' "$here/tests.list" | awk -v f="$filter" '$1 ~ f' \
  | awk -v k="${shard%/*}" -v n="${shard#*/}" '(NR - 1) % n == k'
