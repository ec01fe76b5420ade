#!/bin/bash
# The VM tests one shard runs, one tests.list line each (name script environment):
#
#   tests/vm/plan.sh [NAME_REGEX] [K/N]
#
# Shared by tests/vm/suite.sh (which runs them) and scripts/check.sh (which counts them, so a
# VM that dies early still has its unrun tests counted as failed). K/N: shard K (0-based) of
# N. The shards are balanced by the time each test took in make check's debug VM
# (tests/vm/durations: test, cleanup and kmemleak scan, seconds; 120 for a test not listed
# there; with ISER_LONG, tests/vm/durations.long's figure where it has one: the long loops
# take many times longer): longest first, each to the shard with the least so far. A known failure (XFAIL)
# or a long-only test (LONG=1) weighs nothing unless ISER_LONG is set, since make check
# skips it. ISER_PLAN_SLACK=S (seconds, make check: the DKMS test and the 7.3 build checks,
# which run on the core of the first shard to finish) starts the last shard's load at S, so
# that shard ends earlier by about that much. Each shard runs its tests in tests.list order,
# except that LAST=1 tests (variants of a test that runs anyway) come after the others: under
# CI's deadline (suite.sh, ISER_DEADLINE) they are the first a slow machine leaves out.
# ISER_HARNESS_TESTS=1 adds tests/vm/harness.list's (make check-harness), before the others.
here=$(cd "$(dirname "$0")" && pwd)
filter=${1:-.}
shard=${2:-0/1}
lists=("$here/tests.list")
[ -z "${ISER_HARNESS_TESTS:-}" ] || lists=("$here/harness.list" "${lists[@]}")
cat "${lists[@]}" | grep -Ev '^[[:space:]]*(#|$)' | awk -v f="$filter" '$1 ~ f' \
  | awk -v k="${shard%/*}" -v n="${shard#*/}" -v long="${ISER_LONG:-}" -v dur="$here/durations" -v durlong="$here/durations.long" -v slack="${ISER_PLAN_SLACK:-0}" '
    BEGIN { while ((getline l < dur) > 0) { split(l, a, " "); if (a[1] !~ /^#/ && a[2] != "") w[a[1]] = a[2] }
            if (long != "") while ((getline l < durlong) > 0) { split(l, a, " "); if (a[1] !~ /^#/ && a[2] != "") w[a[1]] = a[2] } }
    { line[NR] = $0; name[NR] = $1; t = ($1 in w) ? w[$1] : 120
      if ($0 ~ /(^|[ \t])(XFAIL|LONG)=1([ \t]|$)/ && long == "") t = 0
      wt[NR] = t; m = NR }
    END {
      for (i = 1; i <= m; i++) ord[i] = i
      # longest first (stable: list order among equals); insertion sort, the list is short
      for (i = 2; i <= m; i++) { x = ord[i]; j = i - 1
        while (j >= 1 && wt[ord[j]] < wt[x]) { ord[j + 1] = ord[j]; j-- }
        ord[j + 1] = x }
      for (s = 0; s < n; s++) load[s] = 0
      if (n > 1) load[n - 1] = slack + 0
      for (i = 1; i <= m; i++) { x = ord[i]; best = 0
        for (s = 1; s < n; s++) if (load[s] < load[best]) best = s
        sh[x] = best; load[best] += wt[x] }
      for (i = 1; i <= m; i++) if (sh[i] == k && line[i] !~ /(^|[ \t])LAST=1([ \t]|$)/) print line[i]
      for (i = 1; i <= m; i++) if (sh[i] == k && line[i] ~ /(^|[ \t])LAST=1([ \t]|$)/) print line[i]
    }'
