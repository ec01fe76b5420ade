#!/bin/bash
# Guest half of scripts/dkms-test.sh: the VM's module tree is the one DKMS installed into.
# With nothing loaded, an `iscsiadm -I iser` login must make iscsid load ib_iser by itself,
# and the module it loads must be ours from updates/dkms (srcversion $DKMS_SRCVERSION), not
# the in-tree C driver; then verified I/O and logout.
. "$(dirname "$0")/lib.sh"
kver=$(uname -r)
p=$(modinfo -n ib_iser) || fail "modinfo ib_iser"
log "modinfo -n ib_iser: $p"
[ "$p" = "/lib/modules/$kver/updates/dkms/ib_iser.ko" ] || fail "ib_iser resolves to $p"
[ "$(modinfo -F srcversion ib_iser)" = "$DKMS_SRCVERSION" ] || fail "srcversion differs from the DKMS build"
iser_loaded && fail "ib_iser loaded before the login"
rdma_up rxe >/dev/null || fail "rxe"
iscsid_start >/dev/null
lio_setup >/dev/null || fail "LIO target"
dev=$(iser_login) || fail "login (iscsid loads the transport module)"
iser_loaded || fail "logged in but ib_iser is not loaded"
got=$(cat /sys/module/ib_iser/srcversion 2>/dev/null || echo none)
log "loaded by iscsid: ib_iser srcversion $got (DKMS build: $DKMS_SRCVERSION)"
[ "$got" = "$DKMS_SRCVERSION" ] || fail "iscsid loaded another ib_iser (the in-tree C driver has no srcversion)"
[ "$(cat /sys/class/iscsi_transport/iser/handle 2>/dev/null)" ] || fail "no iser transport in sysfs"
fio_verify "$dev" dkms --rw=randwrite --bs=64k --iodepth=8 --size=8M || fail "verified I/O"
iser_logout || fail "logout"
rmmod ib_iser || fail "rmmod after logout"
splats=$(dmesg | grep -E "$SPLAT_RE" | head -n 3)
[ -z "$splats" ] || fail "kernel log: $splats"
log "dkms guest: ok"
