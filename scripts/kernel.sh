#!/usr/bin/env bash
# Build (once) and cache a Rust-enabled test kernel from Debian's linux-source package.
#
#   scripts/kernel.sh build [FLAVOR]   # build if not cached; last line printed: the cache dir
#   scripts/kernel.sh prepare [FLAVOR] # configure + `make modules_prepare` only (the headers,
#                                      # scripts and Rust crates an out-of-tree module builds
#                                      # against; no vmlinux, no modules, minutes instead of
#                                      # half an hour); the full build if it is cached
#   scripts/kernel.sh path  [FLAVOR]   # print the cache dir (built or not), build nothing
#   scripts/kernel.sh list             # list cached kernels
#
# FLAVOR is "debug" (default: KASAN, lockdep, kmemleak, ... for the test suite) or "perf"
# (no debug options, for benchmarks): scripts/kconfig/FLAVOR.config merged over base.config.
#
# KVER picks the kernel series: 6.12 (default, Debian 12's linux-source-6.12, built with the
# default clang 14) or 7.3 (linux-source-7.3 from trixie-backports, fetched by
# `KVER=7.3 scripts/deps.sh` into the cache; it needs LLVM >= 17, so it is built with
# clang-19: make LLVM=-19). The LLVM suffix is recorded in linux/.iser-llvm for kbuild.sh.
#
# Cache: ${XDG_CACHE_HOME:-~/.cache}/iser-rs/kernels/<srcver>-<flavor>-<hash>/
#   linux/          the build tree (KDIR for out-of-tree module builds)
#   kroot/          staged boot image + module tree for the VM (boot/, lib/modules/<kver>/)
#   build.log       full kernel build log
#   .built          stamp: present only when everything above is complete
#   .prepared       stamp: linux/ is configured and modules_prepare'd (enough for a build
#                   check of the module; `build` later completes the same tree)
# The hash covers the config fragments, the patches and this script's recipe version, so a
# second run with nothing changed rebuilds nothing, and any change gives a new (single) build.
#
# scripts/kernel-patches/*.patch are applied to the source, in order, before configuring:
# fixes for upstream bugs on the *target* side of the one-VM rig (LIO's ib_isert and
# iscsi_target_mod) and in the soft-RDMA device both sides share (rdma_rxe, where a real HCA
# behaves otherwise), which the suite's checks (KASAN, kmemleak, recovery) would otherwise
# charge to the test that happened to trigger them. Each patch says what it fixes and how it
# was seen; none touches the initiator side (libiscsi, scsi_transport_iscsi, ib_core, rdma_cm).
set -euo pipefail
RECIPE=1                       # bump when the build steps below change in a way that matters
HERE=$(cd "$(dirname "$0")" && pwd)
KSERIES=${KVER:-6.12}
CACHE=${ISER_RS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/iser-rs}
case "$KSERIES" in
  6.12) LLVM_SUFFIX=1; TARBALL=/usr/src/linux-source-$KSERIES.tar.xz
        LIBCLANG_PATH=$(llvm-config --libdir); export LIBCLANG_PATH ;;
  7.*)  LLVM_SUFFIX=-19; TARBALL=$CACHE/src/linux-source-$KSERIES/linux-source-$KSERIES.tar.xz
        export LIBCLANG_PATH=/usr/lib/llvm-19/lib ;;
  *) echo "[kernel] error: unsupported KVER '$KSERIES' (6.12 or 7.3)" >&2; exit 1 ;;
esac
JOBS=${JOBS:-$(( $(nproc) + 1 ))}

say() { printf '[kernel] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

cmd=${1:-build}; flavor=${2:-debug}
frag_base=$HERE/kconfig/base.config
frag_flavor=$HERE/kconfig/$flavor.config

key() {
  [ -f "$frag_flavor" ] || die "unknown flavor '$flavor' (no $frag_flavor)"
  local srcver h
  if [ "$KSERIES" = 6.12 ]; then
    srcver=$(dpkg-query -W -f='${Version}' "linux-source-$KSERIES" 2>/dev/null) \
      || die "linux-source-$KSERIES is not installed (run scripts/deps.sh)"
  else
    srcver=$(cat "$CACHE/src/linux-source-$KSERIES/version" 2>/dev/null) \
      || die "linux-source-$KSERIES not fetched (run KVER=$KSERIES scripts/deps.sh)"
  fi
  h=$( { echo "recipe $RECIPE"; cat "$frag_base" "$frag_flavor" "$HERE"/kernel-patches/*.patch; } \
        | sha256sum | cut -c1-12)
  echo "${srcver//[~:+]/_}-$flavor-$h"
}

case "$cmd" in
  path) echo "$CACHE/kernels/$(key)"; exit 0 ;;
  list) ls -1d "$CACHE"/kernels/*/ 2>/dev/null | while read -r d; do
          st=partial; [ -f "$d/.prepared" ] && st=prepared; [ -f "$d/.built" ] && st=built
          printf '%s %s\n' "$st" "$d"; done; exit 0 ;;
  build|prepare) ;;
  *) die "usage: $0 build|prepare|path|list [FLAVOR]" ;;
esac

dir=$CACHE/kernels/$(key)
if [ -f "$dir/.built" ] || { [ "$cmd" = prepare ] && [ -f "$dir/.prepared" ]; }; then
  say "cached: $dir"
  echo "$dir"; exit 0
fi

mkdir -p "$CACHE/kernels"
# never two kernel builds at once on this 2-core machine
exec 9>"$CACHE/kernel-build.lock"
if ! flock -n 9; then say "another kernel build is running; waiting for it"; flock 9; fi
if [ -f "$dir/.built" ] || { [ "$cmd" = prepare ] && [ -f "$dir/.prepared" ]; }; then echo "$dir"; exit 0; fi

tarball=$TARBALL
[ -f "$tarball" ] || die "$tarball missing (run KVER=$KSERIES scripts/deps.sh)"
mkdir -p "$dir"
src=$dir/linux
if [ ! -f "$dir/.unpacked" ]; then
  say "unpacking $tarball into $src"
  rm -rf "$src" "$dir/.tmp-unpack"; mkdir -p "$dir/.tmp-unpack"
  tar -xJf "$tarball" -C "$dir/.tmp-unpack"
  mv "$dir/.tmp-unpack/linux-source-$KSERIES" "$src"; rmdir "$dir/.tmp-unpack"
  touch "$dir/.unpacked"
fi
if [ ! -f "$dir/.patched" ]; then
  for p in "$HERE"/kernel-patches/*.patch; do
    say "applying $(basename "$p")"
    patch -d "$src" -p1 --forward -s <"$p" || die "$(basename "$p") does not apply to $KSERIES"
  done
  touch "$dir/.patched"
fi

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
mk() { make -C "$src" LLVM="$LLVM_SUFFIX" "$@"; }
if [ ! -f "$dir/.configured" ]; then
  say "configuring: defconfig + kvm_guest.config + base.config + $flavor.config"
  mk rustavailable >&2 || die "Rust toolchain not usable for this kernel (see above)"
  mk defconfig >/dev/null
  mk kvm_guest.config >/dev/null
  (cd "$src" && KCONFIG_CONFIG=.config scripts/kconfig/merge_config.sh -m .config \
      "$frag_base" "$frag_flavor" >/dev/null)
  mk olddefconfig >/dev/null
  # every option the fragments ask for must have landed; a silently dropped one
  # (unmet dependency) would make the suite test something else than we think
  bad=0
  while IFS= read -r line; do
    opt=${line%%=*}
    case "$line" in
      CONFIG_*=n) opt=${line%%=*}
        grep -q "^$opt=[ym]" "$src/.config" && { say "not applied: $line"; bad=1; } ;;
      CONFIG_*=*) grep -qx "$line" "$src/.config" || { say "not applied: $line (got: $(grep "^$opt=\|$opt is not set" "$src/.config" 2>/dev/null))"; bad=1; } ;;
    esac
  done < <(grep -h '^CONFIG_' "$frag_base" "$frag_flavor")
  [ $bad = 0 ] || die "config fragment not fully applied (see above)"
  touch "$dir/.configured"
fi

echo "$LLVM_SUFFIX" >"$src/.iser-llvm"
if [ "$cmd" = prepare ]; then
  say "make LLVM=$LLVM_SUFFIX -j$JOBS modules_prepare (headers, scripts, Rust crates; a few minutes); log: $dir/prepare.log"
  start=$(date +%s)
  mk -j"$JOBS" modules_prepare >"$dir/prepare.log" 2>&1 \
    || { tail -n 40 "$dir/prepare.log" >&2; die "modules_prepare failed; full log: $dir/prepare.log"; }
  # modpost of an out-of-tree module reads the kernel's release and, when present,
  # Module.symvers; without the latter it skips the unresolved-symbol check (the full
  # build's check, make check on the first kernel series, has it).
  make -s -C "$src" kernelrelease >"$dir/kernel.release"
  say "prepared in $(( $(date +%s) - start )) s: $(cat "$dir/kernel.release")"
  touch "$dir/.prepared"
  echo "$dir"; exit 0
fi
say "building bzImage + modules with make LLVM=$LLVM_SUFFIX -j$JOBS (about 20-30 min on 2 cores); log: $dir/build.log"
start=$(date +%s)
( mk -j"$JOBS" bzImage modules >"$dir/build.log" 2>&1; echo $? >"$dir/.make-rc" ) &
mpid=$!
rm -f "$dir/.make-rc"
while kill -0 $mpid 2>/dev/null; do
  sleep 30
  el=$(( $(date +%s) - start ))
  n=$(grep -c '^  [A-Z]' "$dir/build.log" 2>/dev/null || true)
  say "$(printf '%2dm%02ds' $((el/60)) $((el%60))) ${n} steps, last: $(tail -n1 "$dir/build.log" | cut -c1-90)"
done
wait $mpid || true
rc=$(cat "$dir/.make-rc" 2>/dev/null || echo 1)
if [ "$rc" != 0 ]; then
  tail -n 40 "$dir/build.log" >&2
  die "kernel build failed (rc=$rc); full log: $dir/build.log"
fi
say "built in $(( ($(date +%s) - start) / 60 )) min"

# Stage a self-contained boot image + module tree for the VM, without writing into the tree.
kver=$(cat "$src/include/config/kernel.release")
kroot=$dir/kroot
rm -rf "$kroot"; mkdir -p "$kroot/boot" "$kroot/lib/modules/$kver/kernel"
cp "$src/arch/x86/boot/bzImage" "$kroot/boot/vmlinuz-$kver"
cp "$src/.config" "$kroot/boot/config-$kver"
cp "$src/System.map" "$kroot/boot/System.map-$kver"
md=$kroot/lib/modules/$kver
n=0
while read -r o; do
  ko=${o%.o}.ko
  mkdir -p "$md/kernel/$(dirname "$ko")"
  cp "$src/$ko" "$md/kernel/$ko"; n=$((n+1))
done <"$src/modules.order"
sed 's:\.o$:.ko:; s:^:kernel/:' "$src/modules.order" >"$md/modules.order"
cp "$src/modules.builtin" "$src/modules.builtin.modinfo" "$md/"
depmod -a -b "$kroot" -F "$kroot/boot/System.map-$kver" "$kver"
echo "$kver" >"$dir/kernel.release"
say "staged $n modules for $kver into $kroot"

# drop stale builds of the same series and flavor (the cache keeps one per series x flavor)
for old in "$CACHE"/kernels/"$KSERIES".*-"$flavor"-*/; do
  old=${old%/}
  [ "$old" = "$dir" ] || { say "removing stale cache $old"; rm -rf "$old"; }
done
touch "$dir/.built"
echo "$dir"
