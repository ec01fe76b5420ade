#!/usr/bin/env bash
# Install everything iser-rs needs on a Debian 12 host, idempotently.
# Each step says what it does; a step whose result is already present is skipped.
#
#   scripts/deps.sh            # all: Debian packages, rust-src, bindgen-cli
#   scripts/deps.sh --check    # exit 1 if something is missing, install nothing
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
  # kernel source (primary test kernel)
  linux-source-6.12
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
exit $rc
