#!/usr/bin/env bash
# Install everything iser-rs needs on a Debian 12 host, idempotently.
# Each step says what it does; a step whose result is already present is skipped.
#
#   scripts/deps.sh            # all: Debian packages, rust-src, bindgen-cli
#   scripts/deps.sh --check    # exit 1 if something is missing, install nothing
#   KVER=7.3 scripts/deps.sh   # also fetch linux-source-7.3 from trixie-backports into the
#                              # cache (a project-local apt list; the host's sources stay as
#                              # they are)
set -euo pipefail

BINDGEN_VERSION=0.73.2   # verified with rustc 1.95 and the 6.12 kernel (build-mechanics.md)

# Build the kernel + module, run the VM rig, and the targets/initiators used in the tests.
PKGS=(
  # kernel / module build
  clang lld llvm libclang-dev bc flex bison libelf-dev libssl-dev cpio kmod rsync
  make xz-utils zstd python3
  # VM
  qemu-system-x86
  # iSCSI initiator + targets, RDMA userspace, I/O tools
  open-iscsi targetcli-fb tgt dmsetup rdma-core ibverbs-utils ibverbs-providers perftest
  fio sg3-utils iproute2 util-linux procps
  # the VM tests read fio's JSON with jq (a Python start costs seconds in the debug VM) and
  # run sleep, mkdir, rmdir and rm as bash's loadable builtins (an exec costs ~0.5 s there)
  jq bash-builtins
  # multipath tests and bench (issue 21): multipathd in the guest over dm-multipath
  multipath-tools
  # the adversarial iSER target in the VM (issue 20): rdma-core's Python binding
  python3-pyverbs
  # make check: the DKMS install test (scripts/dkms-test.sh)
  dkms
  # make check: Documentation/ validated with docutils
  python3-docutils
  # kernel source (primary test kernel)
  linux-source-6.12
  # the 7.x kernels need LLVM >= 17: Debian 12's clang-19 (KVER=7.3)
  clang-19 lld-19 llvm-19 libclang-19-dev
)

say() { printf '[deps] %s\n' "$*"; }

missing_pkgs() {
  local p
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

cargo_bin() { echo "${CARGO_HOME:-$HOME/.cargo}/bin"; }

check_only=0
[ "${1:-}" = --check ] && check_only=1

rc=0
mapfile -t miss < <(missing_pkgs)
if [ "${#miss[@]}" -gt 0 ]; then
  if [ $check_only = 1 ]; then say "missing Debian packages: ${miss[*]}"; rc=1; else
    say "installing Debian packages: ${miss[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
    $SUDO apt-get update -qq
    # the services the packages ship (iscsid, tgt) are started by the tests inside the VM,
    # never on the host: keep them from being started by the package scripts
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    $SUDO apt-get install -y -qq --no-install-recommends "${miss[@]}"
    $SUDO rm -f /usr/sbin/policy-rc.d
  fi
else
  say "Debian packages: all ${#PKGS[@]} present"
fi

export PATH="$(cargo_bin):$PATH"
if ! command -v rustup >/dev/null; then
  say "rustup not found: the machine's Rust toolchain is required"; exit 1
fi
if rustup component list --installed 2>/dev/null | grep -q '^rust-src'; then
  say "rust-src: present"
elif [ $check_only = 1 ]; then say "missing rust-src"; rc=1
else
  say "installing rustup component rust-src"
  rustup component add rust-src
fi

have_bg=$(bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have_bg" = "$BINDGEN_VERSION" ]; then
  say "bindgen-cli $BINDGEN_VERSION: present"
elif [ $check_only = 1 ]; then say "missing bindgen-cli $BINDGEN_VERSION (have: ${have_bg:-none})"; rc=1
else
  say "installing bindgen-cli $BINDGEN_VERSION with cargo install --locked (about 1-2 min)"
  cargo install --locked --quiet bindgen-cli --version "$BINDGEN_VERSION"
fi
# A newer kernel series from trixie-backports: download the linux-source .deb with a
# project-local apt configuration and unpack its tarball under the cache (nothing installed).
KSERIES=${KVER:-6.12}
if [ "$KSERIES" != 6.12 ]; then
  CACHE=${ISER_RS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/iser-rs}
  dst=$CACHE/src/linux-source-$KSERIES
  if [ -f "$dst/version" ] && [ -f "$dst/linux-source-$KSERIES.tar.xz" ]; then
    say "linux-source-$KSERIES $(cat "$dst/version"): present"
  elif [ $check_only = 1 ]; then say "missing linux-source-$KSERIES (KVER=$KSERIES)"; rc=1
  else
    say "fetching linux-source-$KSERIES from trixie-backports (project-local apt list)"
    apt=$CACHE/apt; rm -rf "$apt"; mkdir -p "$apt/lists/partial" "$apt/archives/partial" "$dst"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie-backports main" \
      >"$apt/sources.list"
    O=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
       -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt" -o APT::Sandbox::User=root)
    apt-get "${O[@]}" update -qq
    ver=$(apt-cache "${O[@]}" show --no-all-versions "linux-source-$KSERIES" | sed -n 's/^Version: //p')
    [ -n "$ver" ] || { say "linux-source-$KSERIES not found in trixie-backports"; exit 1; }
    (cd "$apt" && apt-get "${O[@]}" download "linux-source-$KSERIES=$ver")
    rm -rf "$apt/x"; dpkg-deb -x "$apt"/linux-source-"$KSERIES"_*.deb "$apt/x"
    mv "$apt/x/usr/src/linux-source-$KSERIES.tar.xz" "$dst/"
    echo "$ver" >"$dst/version"
    rm -rf "$apt"
    say "linux-source-$KSERIES $ver: unpacked into $dst"
  fi
fi
exit $rc
