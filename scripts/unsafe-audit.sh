#!/usr/bin/env bash
# Policy check: `unsafe` only in the wrapper layer (rust/ffi/), and every `unsafe {` preceded
# by a `// SAFETY:` comment (generated bindings excluded).
set -uo pipefail
cd "$(dirname "$0")/.."
rc=0
outside=$(grep -rn --include='*.rs' --exclude='*generated*' -E '\bunsafe\b' rust | grep -v '^rust/ffi/' | grep -v '//' || true)
[ -z "$outside" ] || { echo "unsafe outside rust/ffi/:"; echo "$outside"; rc=1; }
missing=$(find rust -name '*.rs' ! -name '*generated*' -print0 | xargs -0 awk '
  { buf[FNR] = $0 }
  /unsafe[ ]*\{/ && !/^[ \t]*\/\// {
    ok = ($0 ~ /SAFETY/)
    for (i = FNR - 1; i > 0 && buf[i] ~ /^[ \t]*\/\//; i--) if (buf[i] ~ /SAFETY/) ok = 1
    if (!ok) print FILENAME ":" FNR
  }')
[ -z "$missing" ] || { echo "unsafe block without SAFETY comment:"; echo "$missing"; rc=1; }
exit $rc
