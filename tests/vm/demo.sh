#!/bin/bash
# make demo, inside the VM: soft-RoCE on the VM NIC, an LIO iSER target on a null_blk LUN,
# login with `iscsiadm -I iser` through ISER_IMPL (rs: ours, c: the in-tree C driver), a short
# fio run, logout. Prints what happened and the fio figures.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
IMPL=${ISER_IMPL:-rs}
say() { printf '\n== %s\n' "$*"; }
die() { echo "demo: $*" >&2; dmesg | grep -E 'iser|isert|rxe' | tail -n 20 >&2; exit 1; }

say "soft-RoCE: rdma link add rxe0 type rxe netdev $(nic)"
rdma_up rxe || die "rxe"
rdma link show
say "LIO target $IQN, 256 MiB null_blk LUN, iSER portal $IP:$PORT"
lio_setup 256 || die "LIO"
say "initiator: ib_iser ($([ "$IMPL" = rs ] && echo "ours, $ISER_KO" || echo "in-tree C reference"))"
load_initiator "$IMPL" || die "loading ib_iser"
modinfo -F description /sys/module/ib_iser 2>/dev/null; echo "srcversion $(cat /sys/module/ib_iser/srcversion)"
iscsid_start
say "iscsiadm -m discovery -t st -p $IP:$PORT -I iser; iscsiadm -m node -I iser --login"
dev=$(iser_login) || die "login failed"
iscsiadm -m session -P 1 | sed -n '1,12p'
echo "LUN: /dev/$dev, $(blockdev --getsize64 /dev/$dev) bytes, max_sectors_kb $(cat /sys/block/$dev/queue/max_sectors_kb)"
say "fio (direct I/O through iSER): 4k random read/write QD32 10 s, 128k sequential read QD16 10 s"
fio --name=rand4k --filename=/dev/$dev --allow_file_create=0 --direct=1 --ioengine=libaio --rw=randrw --bs=4k \
  --iodepth=32 --runtime=10 --time_based --eta=never --output-format=json --output=/tmp/f1.json || die "fio"
fio --name=seq128k --filename=/dev/$dev --allow_file_create=0 --direct=1 --ioengine=libaio --rw=read --bs=128k \
  --iodepth=16 --runtime=10 --time_based --eta=never --output-format=json --output=/tmp/f2.json || die "fio"
python3 - /tmp/f1.json /tmp/f2.json <<'PY'
import json, sys
print("| job | read IOPS | read MiB/s | write IOPS | write MiB/s | errors |")
print("|---|---|---|---|---|---|")
for f in sys.argv[1:]:
    j = json.load(open(f))["jobs"][0]
    r, w = j["read"], j["write"]
    print("| %s | %.0f | %.1f | %.0f | %.1f | %d |" % (j["jobname"], r["iops"], r["bw"]/1024, w["iops"], w["bw"]/1024, j["error"]))
PY
if [ "${ISER_KFLAVOR:-debug}" = debug ]; then
  cat <<'EOF2'
These figures come from the debug kernel (KASAN, lockdep, kmemleak) under TCG emulation: it
runs a few dozen IOPS whatever the driver, so they show that I/O flows, not how fast it is.
For performance figures run `make bench` (the perf kernel, ours against the C driver,
iscsi_tcp and nvme-rdma in the same run); once the perf kernel is cached, make demo uses it.
EOF2
else
  echo "(perf kernel under TCG emulation: compare figures only within one run; make bench compares drivers)"
fi
say "logout"
iser_logout || die "logout"
iscsid_stop
unload_initiator
lio_teardown
splats=$(dmesg | grep -E "$SPLAT_RE" | head -n 3)
[ -z "$splats" ] || die "kernel log has splats: $splats"
echo "demo: OK (kernel log clean)"
