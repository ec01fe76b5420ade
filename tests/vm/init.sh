#!/bin/bash
# PID 1 of the test VM (see scripts/vm-run). The root is the host's / over 9p, read-only.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs -o mode=0755 dev /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
ln -sfn /proc/self/fd /dev/fd
ln -sfn /proc/self/fd/0 /dev/stdin
ln -sfn /proc/self/fd/1 /dev/stdout
ln -sfn /proc/self/fd/2 /dev/stderr
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs -o mode=0755 run /run
mount -t configfs configfs /sys/kernel/config
mount -t debugfs debugfs /sys/kernel/debug
arg() { tr ' ' '\n' </proc/cmdline | sed -n "s/^$1=//p" | tail -n1; }
TOP=$(arg iser.top) RUN=$(arg iser.run) KVER=$(arg iser.kver)
# Writable copies of what tools write to: overlays with a tmpfs upper layer.
for d in /etc /var /root /usr/lib /home /opt /srv; do
  [ -d "$d" ] || continue
  u=/run/ovl$d; mkdir -p "$u/u" "$u/w"
  mount -t overlay overlay -o "lowerdir=$d,upperdir=$u/u,workdir=$u/w" "$d"
done
# The test kernel's modules at /lib/modules/$KVER (/lib is /usr/lib on Debian 12).
mkdir -p /run/kmods && mount -t 9p -o trans=virtio,version=9p2000.L,ro kmods /run/kmods
mkdir -p /usr/lib/modules && ln -sfn "/run/kmods/$KVER" "/usr/lib/modules/$KVER"
# A fresh /tmp first: the work tree or the run directory may live under it on the host (a
# clone in /tmp), and mounting /tmp afterwards would hide them.
mount -t tmpfs -o mode=1777 tmp /tmp
mkdir -p /run/lock /var/run
# The work tree (read-write, same path) and this run's control directory. Their mount
# points exist in the read-only root unless a tmpfs above hides them: then made there.
for m in "$TOP" "$RUN"; do [ -d "$m" ] || mkdir -p "$m"; done
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 work "$TOP"
mount -t 9p -o trans=virtio,version=9p2000.L run "$RUN"
hostname iser-vm
ip link set lo up
# Every NIC up: the second one is the hub peer that keeps the first one's TX queue moving.
# One `ip` for all (each exec costs a second or two in the debug VM): the first NIC's
# first packets otherwise wait for a peer not up yet, and once (2026-12-05) that was past
# the 5 s TX watchdog ("NETDEV WATCHDOG: ... transmit queue 0 timed out").
for n in /sys/class/net/*; do [ -e "$n/device" ] && echo "link set ${n##*/} up"; done | ip -batch -
export HOME=/root TERM=dumb
touch "$RUN/started"
bash "$RUN/cmd.sh" </dev/null
echo $? >"$RUN/rc"
sync
# Power-off is asynchronous and PID 1 must not exit meanwhile: it waits on a FIFO made
# before the power-off starts (afterwards the 9p root may be gone and mkfifo with it).
mkfifo /run/.halt
echo o >/proc/sysrq-trigger
read -r -t 30 _ <>/run/.halt
