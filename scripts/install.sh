#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
#
# Install paths of ib_iser.ko (root):
#   scripts/install.sh install        modules_install into /lib/modules/<release>/updates + depmod
#   scripts/install.sh uninstall      remove it again + depmod (the in-tree C ib_iser is back)
#   scripts/install.sh dkms-install   copy the source to /usr/src/iser-rs-<version>, dkms add,
#                                     build and install for the target kernel
#   scripts/install.sh dkms-uninstall dkms remove --all, remove the copied source
#
# The target kernel is KDIR's (scripts/kbuild.sh: KDIR, else the running kernel's build tree
# when it is Rust-enabled, else the cached test kernel). DESTDIR prefixes install/uninstall.
# Because the module is named ib_iser and updates/ precedes kernel/ in depmod's search order,
# `modprobe ib_iser` (what iscsid does for `iscsiadm -I iser`) loads ours once installed.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:?usage: scripts/install.sh install|uninstall|dkms-install|dkms-uninstall}
kdir=$("$top/scripts/kbuild.sh" kdir)
krel=$(cat "$kdir/include/config/kernel.release")
ver=$(sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' "$top/dkms.conf")
dest=${DESTDIR:-}
say() { echo "[install] $*" >&2; }

depmod_() {
  if [ -n "$dest" ]; then depmod -b "$dest" -a "$krel"; else depmod -a "$krel"; fi
}

case $cmd in
install)
  [ -f "$top/ib_iser.ko" ] || "$top/scripts/kbuild.sh" modules
  say "ib_iser.ko -> $dest/lib/modules/$krel/updates/"
  make -s -C "$kdir" M="$top" LLVM=1 INSTALL_MOD_DIR=updates ${dest:+INSTALL_MOD_PATH=$dest} \
    modules_install
  depmod_
  say "modinfo -n ib_iser: $(modinfo -k "$krel" ${dest:+-b "$dest"} -n ib_iser 2>/dev/null)"
  ;;
uninstall)
  f=$dest/lib/modules/$krel/updates/ib_iser.ko
  if [ -e "$f" ]; then say "removing $f"; rm -f "$f"; else say "$f is not installed"; fi
  depmod_
  say "modinfo -n ib_iser: $(modinfo -k "$krel" ${dest:+-b "$dest"} -n ib_iser 2>/dev/null || echo none)"
  ;;
dkms-install)
  command -v dkms >/dev/null || { say "dkms is not installed (apt-get install dkms)"; exit 1; }
  src=/usr/src/iser-rs-$ver
  say "source -> $src"
  rm -rf "$src"; mkdir -p "$src"
  (cd "$top" && git ls-files -z 2>/dev/null || find . -type f -not -path './.git/*' -print0) |
    (cd "$top" && xargs -0 cp --parents -t "$src")
  dkms add -m iser-rs -v "$ver" 2>/dev/null || dkms status -m iser-rs -v "$ver" | grep -q . || exit 1
  dkms build -m iser-rs -v "$ver" -k "$krel" --kernelsourcedir "$kdir"
  dkms install -m iser-rs -v "$ver" -k "$krel" --force
  say "modinfo -n ib_iser: $(modinfo -k "$krel" -n ib_iser 2>/dev/null)"
  ;;
dkms-uninstall)
  command -v dkms >/dev/null || { say "dkms is not installed"; exit 0; }
  dkms remove -m iser-rs -v "$ver" --all 2>/dev/null || say "iser-rs $ver was not in dkms"
  rm -rf "/usr/src/iser-rs-$ver"
  say "modinfo -n ib_iser: $(modinfo -k "$krel" -n ib_iser 2>/dev/null || echo none)"
  ;;
*) echo "unknown command $cmd" >&2; exit 2 ;;
esac
