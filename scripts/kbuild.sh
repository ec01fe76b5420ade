#!/usr/bin/env bash
# Run Kbuild for ib_iser against KDIR:
#   KDIR from the environment, else /lib/modules/$(uname -r)/build when that is a Rust-enabled
#   built tree, else the cached test kernel (built first if missing; scripts/kernel.sh).
#
#   scripts/kbuild.sh modules [CLIPPY=1] | clean | rust-analyzer | kdir
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

rust_tree() {  # a tree an out-of-tree Rust module can build against
  [ -f "$1/.config" ] && grep -q '^CONFIG_RUST=y' "$1/.config" \
    && [ -f "$1/rust/libkernel.rmeta" ] && [ -f "$1/rust/bindings/bindings_generated.rs" ]
}

if [ -z "${KDIR:-}" ]; then
  host=/lib/modules/$(uname -r)/build
  if rust_tree "$host"; then KDIR=$host
  else KDIR=$("$top/scripts/kernel.sh" build "${FLAVOR:-debug}" | tail -n1)/linux; fi
fi
rust_tree "$KDIR" || { echo "[kbuild] $KDIR is not a built Rust-enabled kernel tree" >&2; exit 1; }

[ "${1:-}" = kdir ] && { echo "$KDIR"; exit 0; }
# DKMS appends CC=clang LD=ld.lld when the kernel was built with clang: plain `clang` is
# clang 14 here, not the clang-19 a 7.x tree was built with. LLVM= below picks the tree's
# own toolchain, so such overrides are dropped.
args=()
for a in "$@"; do
  case "$a" in
    CC=*|LD=*|HOSTCC=*|HOSTLD=*) echo "[kbuild] ignoring $a (LLVM= selects the tree's toolchain)" >&2 ;;
    *) args+=("$a") ;;
  esac
done
set -- "${args[@]}"
# The LLVM= the tree was built with (scripts/kernel.sh records it: -19 for the 7.x kernels).
LLVM=$(cat "$KDIR/.iser-llvm" 2>/dev/null || echo 1)
# bindgen loads the libclang of the same LLVM (clang-sys would pick the newest installed).
if [ "$LLVM" = 1 ]; then export LIBCLANG_PATH=$(llvm-config --libdir); else export LIBCLANG_PATH=/usr/lib/llvm${LLVM}/lib; fi
echo "[kbuild] make -C $KDIR M=$top LLVM=$LLVM $*" >&2
if [ "${1:-}" = rust-analyzer ]; then
  # The crate include!()s the bindings from $ISER_GEN_DIR (set by Kbuild for rustc): give
  # rust-analyzer the same, generating the bindings first.
  make -C "$KDIR" M="$top" LLVM="$LLVM" modules >&2
  make -C "$KDIR" M="$top" LLVM="$LLVM" rust-analyzer
  exec python3 - "$top/rust-project.json" "$top/rust" <<'PY'
import json, sys
p, gen = sys.argv[1], sys.argv[2]
j = json.load(open(p))
for c in j["crates"]:
    if c.get("display_name") == "ib_iser":
        c.setdefault("env", {})["ISER_GEN_DIR"] = gen
json.dump(j, open(p, "w"), indent=1)
print("[kbuild] rust-project.json: ib_iser with ISER_GEN_DIR=" + gen, file=sys.stderr)
PY
fi
if [ "${1:-}" = modules ]; then
  # Record which tree ib_iser.ko was built against (scripts/vm-run checks it).
  rm -f "$top/.ib_iser.kdir"
  make -C "$KDIR" M="$top" LLVM="$LLVM" "$@"
  echo "$KDIR" >"$top/.ib_iser.kdir"
  exit 0
fi
exec make -C "$KDIR" M="$top" LLVM="$LLVM" "$@"
