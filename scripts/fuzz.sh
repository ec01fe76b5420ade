#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
#
# scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 30; `make fuzz FUZZ_SECONDS=600` is the long run)
#
# Builds the libFuzzer harness of tests/fuzz (the parsers of rust/proto that see target- or
# user-controlled bytes) with coverage instrumentation on *stable* rustc, and runs every
# target for SECONDS_PER_TARGET seconds from a scratch copy of its seed corpus
# (tests/fuzz/corpus/<target>, never modified). One line per target:
#
#   fuzz rx_parse: 1234567 runs in 30 s, 0 crashes
#
# Exits non-zero if a target crashed (panic, failed invariant, timeout, out of memory); the
# input is kept as results/fuzz-<time>/<target>-crash-<sha1>, with the libFuzzer log beside it.
# Reproduce with tests/fuzz/target/<host triple>/release/<target> <artifact>.
#
# Needs cargo (rustup stable) and a C++ compiler: libfuzzer-sys, fetched from crates.io,
# compiles libFuzzer with the cc crate. No nightly, no cargo-fuzz: the sanitizer-coverage
# pass and its LLVM options are stable codegen flags; without -Zsanitizer=address there is
# no ASan, which the safe, allocation-free code of rust/proto does not need (out-of-bounds
# indexing panics, and panics abort).
#
# Environment: ISER_FUZZ_TARGETS="rx_parse hdr_decode" runs a subset; ISER_FUZZ_ARGS adds
# libFuzzer options; CARGO_BUILD_JOBS limits the build.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
secs=${1:-30}
case $secs in '' | *[!0-9]* | 0) echo "usage: $0 [SECONDS_PER_TARGET > 0]" >&2; exit 2 ;; esac
targets=${ISER_FUZZ_TARGETS:-rx_parse hdr_decode bhs_decode cm_reply param_parse}

command -v cargo >/dev/null || { echo "fuzz: cargo not found (install rustup's stable toolchain)" >&2; exit 1; }
if ! command -v c++ >/dev/null && ! command -v g++ >/dev/null && ! command -v clang++ >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "fuzz: installing g++ (libFuzzer is C++)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++; } >/dev/null ||
      { echo "fuzz: apt-get install g++ failed" >&2; exit 1; }
  else
    echo "fuzz: no C++ compiler (apt-get install g++)" >&2; exit 1
  fi
fi

res=$top/results/fuzz-$(date +%Y%m%d-%H%M%S)
mkdir -p "$res"
host=$(rustc -vV | sed -n 's/^host: //p')
tdir=$top/tests/fuzz/target
bin=$tdir/$host/release

# The flags cargo-fuzz passes, minus the nightly-only -Zsanitizer. --target keeps them off
# build scripts (which would not link without libFuzzer's coverage callbacks).
flags=(
  -Cpasses=sancov-module
  -Cllvm-args=-sanitizer-coverage-level=4
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
  -Cllvm-args=-sanitizer-coverage-pc-table
  -Cllvm-args=-sanitizer-coverage-trace-compares
  -Cllvm-args=-sanitizer-coverage-stack-depth
  --cfg=fuzzing
  -Cdebug-assertions
  -Coverflow-checks
  -Cforce-frame-pointers
)
echo "== fuzz: building tests/fuzz ($host, instrumented)"
t0=$(date +%s)
if ! (cd tests/fuzz && unset CARGO_ENCODED_RUSTFLAGS &&
  RUSTFLAGS="${flags[*]}" CARGO_TARGET_DIR=$tdir cargo build --release --locked --target "$host" --bins) \
  >"$res/build.log" 2>&1; then
  tail -n 30 "$res/build.log"
  echo "fuzz: build failed (log: $res/build.log)"
  exit 1
fi
echo "fuzz: built in $(($(date +%s) - t0)) s"

# The corpus grows run to run: libFuzzer writes the inputs that found new coverage into the
# first directory, a cache kept across runs (ISER_FUZZ_CORPUS); the seeds in the tree are
# read as a second one and never modified.
corpus=${ISER_FUZZ_CORPUS:-${ISER_RS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/iser-rs}/fuzz-corpus}
# ISER_FUZZ_RUNS=N stops each target after N executions instead (make check-long: 10 million),
# with SECONDS_PER_TARGET as the upper bound of its time.
runs_arg=${ISER_FUZZ_RUNS:+-runs=$ISER_FUZZ_RUNS}
# fuzz_one TARGET: runs one target, prints its summary; non-zero if it failed.
fuzz_one() {
  local t=$1 fail=0 before log t0 rc el crashes done_line runs s after a
  [ -x "$bin/$t" ] || { echo "fuzz $t: no such target"; return 1; }
  mkdir -p "$corpus/$t"
  before=$(find "$corpus/$t" -type f | wc -l)
  log=$res/$t.log
  t0=$(date +%s)
  # shellcheck disable=SC2086
  "$bin/$t" -max_total_time="$secs" $runs_arg -max_len=8400 -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$res/$t-" ${ISER_FUZZ_ARGS:-} "$corpus/$t" \
    tests/fuzz/corpus/"$t" >"$log" 2>&1
  rc=$?
  el=$(($(date +%s) - t0))
  crashes=$(find "$res" -maxdepth 1 -name "$t-*" ! -name '*.log' | wc -l)
  if done_line=$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n1); [ -n "$done_line" ]; then
    runs=$(echo "$done_line" | awk '{print $2}'); s=$(echo "$done_line" | awk '{print $5}')
  else
    # Stopped early (crash): the last status line's run count, wall time.
    runs=$(grep -oE '^#[0-9]+' "$log" | tail -n1 | tr -d '#'); s=$el
  fi
  [ "$rc" = 0 ] || [ "$crashes" -gt 0 ] || crashes=1  # died without an artifact
  after=$(find "$corpus/$t" -type f | wc -l)
  echo "fuzz $t: ${runs:-0} runs in ${s} s, $crashes crashes, corpus $before -> $after inputs"
  # A run that executed nothing proves nothing.
  [ "${runs:-0}" -gt 0 ] || { echo "  $t executed no input"; fail=1; }
  if [ -n "${ISER_FUZZ_RUNS:-}" ] && [ "$crashes" = 0 ] && [ "${runs:-0}" -lt "$ISER_FUZZ_RUNS" ]; then
    echo "  $t reached ${runs:-0} of the $ISER_FUZZ_RUNS executions asked for in $secs s"; fail=1
  fi
  if [ "$crashes" -gt 0 ]; then
    fail=1
    if grep -q 'panicked at' "$log"; then
      grep -m1 -A1 'panicked at' "$log" | sed 's/^/  /'  # location, then the message
    else
      grep -m1 -E 'ERROR: libFuzzer' "$log" | sed 's/^/  /'  # timeout, out-of-memory, ...
    fi
    for a in $(find "$res" -maxdepth 1 -name "$t-*" ! -name '*.log'); do
      echo "  artifact: ${a#"$top"/} (reproduce: ${bin#"$top"/}/$t ${a#"$top"/})"
    done
  fi
  return $fail
}
# The targets run side by side, one per core (each fuzzer is single-threaded); their
# summaries are printed in the list's order.
jobs_max=${ISER_FUZZ_JOBS:-$(nproc)}
failed=0
for t in $targets; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n; done
  { fuzz_one "$t"; echo $? >"$res/$t.rc"; } >"$res/$t.summary" 2>&1 &
done
wait
for t in $targets; do
  cat "$res/$t.summary"
  [ "$(cat "$res/$t.rc" 2>/dev/null)" = 0 ] || failed=1
done
echo "fuzz: logs in ${res#"$top"/}"
exit $failed
