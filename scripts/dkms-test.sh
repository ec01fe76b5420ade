#!/usr/bin/env bash
# DKMS install test (part of make check): dkms add/build/install of this tree for the test
# kernel, then a VM boot with the resulting module tree, where open-iscsi's own module load
# (`iscsiadm -I iser` login) must pick our ib_iser from updates/dkms over the in-tree C driver;
# then dkms remove must bring the C driver back.
#
# DKMS writes to /usr/src, /var/lib/dkms and /lib/modules/<release>: it runs here in a private
# mount namespace (unshare -m) with those three bind-mounted from a scratch directory holding a
# copy of the test kernel's module tree, so the host is never modified.
#
#   scripts/dkms-test.sh RESULTS_DIR      # exit 0 on success
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
res=${1:?usage: scripts/dkms-test.sh RESULTS_DIR}
mkdir -p "$res"
say() { echo "[dkms-test] $*" >&2; }
command -v dkms >/dev/null || { say "dkms missing (scripts/deps.sh installs it)"; exit 1; }
[ "$(id -u)" = 0 ] || { say "needs root (mount namespace)"; exit 1; }

kdir=$("$top/scripts/kernel.sh" build debug | tail -n1)
krel=$(cat "$kdir/kernel.release")
cache=${ISER_RS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/iser-rs}
mkdir -p "$cache/vm-runs"
st=$(mktemp -d "$cache/vm-runs/dkms.XXXXXX")
trap 'rm -rf "$st"' EXIT
mkdir -p "$st/src" "$st/dkms" "$st/modules"
# The module tree: hard links to the kernel's .ko files (never written: depmod replaces the
# index files by new ones), a build link to the kernel tree.
cp -al "$kdir/kroot/lib/modules/$krel" "$st/modules/"
ln -sfn "$kdir/linux" "$st/modules/$krel/build"
c_path=$st/modules/$krel/kernel/drivers/infiniband/ulp/iser/ib_iser.ko
[ -f "$c_path" ] || { say "the test kernel has no in-tree ib_iser"; exit 1; }

# In the namespace: the scratch directories replace the host's DKMS paths. DKMS calls our
# MAKE[0] (scripts/kbuild.sh with KDIR=the kernel tree) from its build directory.
ns() {
  unshare -m --propagation private bash -c '
    set -e
    mount --bind "$1/src" /usr/src
    mkdir -p /var/lib/dkms && mount --bind "$1/dkms" /var/lib/dkms
    # (a container may have no /lib/modules at all: an empty one is created, nothing else)
    mkdir -p /lib/modules && mount --bind "$1/modules" /lib/modules
    shift; "$@"' _ "$st" "$@"
}
say "dkms add/build/install for $krel (source $top)"
ns env KDIR="$kdir/linux" "$top/scripts/install.sh" dkms-install >"$res/dkms-install.log" 2>&1 \
  || { tail -n 30 "$res/dkms-install.log"; say "dkms install failed"; exit 1; }
ko=$st/modules/$krel/updates/dkms/ib_iser.ko
[ -f "$ko" ] || { say "no $ko after dkms install"; exit 1; }
dep=$(grep -E '(^|/)ib_iser\.ko(\.[a-z]+)?:' "$st/modules/$krel/modules.dep" | cut -d: -f1)
say "modules.dep resolves ib_iser to: $dep"
[ "$dep" = updates/dkms/ib_iser.ko ] || { say "ib_iser does not resolve to updates/dkms ($dep)"; exit 1; }
srcv=$(modinfo -F srcversion "$ko")
say "DKMS-built module srcversion $srcv; booting the VM with this module tree"

# In the VM: log in through iscsiadm with nothing loaded; iscsid loads ib_iser itself.
VM_ENV="ISER_RESULTS=$res DKMS_SRCVERSION=$srcv" "$top/scripts/vm-run" --no-build \
  --modules "$st/modules" --timeout 1800 -- "$top/tests/vm/dkms_guest.sh" | tee "$res/vm.log"
rc=${PIPESTATUS[0]}
[ "$rc" = 0 ] || { say "VM part failed (rc $rc)"; exit 1; }

say "dkms remove: the in-tree C driver must be back"
ns env KDIR="$kdir/linux" "$top/scripts/install.sh" dkms-uninstall >>"$res/dkms-install.log" 2>&1 \
  || { tail -n 20 "$res/dkms-install.log"; exit 1; }
[ ! -e "$ko" ] || { say "$ko still there after dkms remove"; exit 1; }
dep=$(grep -E '(^|/)ib_iser\.ko(\.[a-z]+)?:' "$st/modules/$krel/modules.dep" | cut -d: -f1)
[ "$dep" = kernel/drivers/infiniband/ulp/iser/ib_iser.ko ] \
  || { say "after dkms remove ib_iser resolves to '$dep'"; exit 1; }
say "ok: installed with DKMS, autoloaded by iscsid as ours, removed cleanly"
