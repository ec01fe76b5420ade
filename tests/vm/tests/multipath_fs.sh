#!/bin/bash
# ext4 on dm-multipath while one path at a time logs out and in (issue 21; blktests srp/002
# and srp/011): the two iSER paths of multipath.sh (path A: $IP on rxe0, LIO tpgt_1; path B:
# $IP_B on rxe1, tpgt_2) in one round-robin group, an ext4 file system on the map, and
# verified fio on a file in it (direct and buffered jobs in turn, each block read back and
# checked) running throughout, while path B, then path A, and so on, logs out (the session
# ends cleanly, its disk goes, multipathd drops the path) and logs in again (a new session
# and disk, which multipathd adds back) CYCLES (1; make check-long 20) times. Each logout
# must leave the map on the other path, each login bring back two paths that both carry I/O,
# and the application must see no error. During each cycle a copy of a reference file is
# written and synced through the one path left. At the end the file system unmounts, e2fsck
# finds it clean, and after a fresh mount every copy reads back equal to the reference. A
# logout is not a connection failure: none may be reported.
# A path logout under a writing file system meets a lockdep false positive in the block
# layer: the rig's kernel carries the fix (scripts/kernel-patches/0006, devnotes).
. "$(dirname "$0")/../lib.sh"
# make check: one cycle (path B out and in): the rig, mkfs and the first cycle take some
# 10 minutes in the debug VM, a cycle 4-5 (2026-12-06).
CYCLES=${CYCLES:-$([ -n "${ISER_LONG:-}" ] && echo 20 || echo 1)}
MNT=/tmp/mpfs
mp_rig_targets || fail "the two-path rig's targets"
mp_rig_paths || fail "the two-path rig's initiator side"
log "map $dm: path A $da, path B $db; $(mp_paths | tr '\n' ';')"

grep -qw ext4 /proc/filesystems || fail "the kernel has no ext4 (CONFIG_EXT4_FS, scripts/kconfig/base.config)"
# nodiscard: mkfs would first discard all of the map through both paths.
mkfs.ext4 -q -F -E nodiscard "/dev/$dm" || fail "mkfs.ext4 on $dm"
mkdir -p "$MNT" && mount -t ext4 -o errors=remount-ro "/dev/$dm" "$MNT" || fail "mount ext4 on $dm"
head -c 4M /dev/urandom >"$MNT/ref" && sync "$MNT/ref" || fail "the reference file"
ref=$(md5sum <"$MNT/ref")
fallocate -l 32M "$MNT/fio" || fail "fio's file"

# map_paths: the number of active paths in the map.
map_paths() {
  local d k
  while read -r d k; do [ "$d" = "$dm" ] && { echo "$k"; return 0; }; done < <(multipathd show maps raw format "%d %N" 2>/dev/null)
}

# The verified I/O on a file in it: odd jobs direct, even ones through the page cache with an
# fsync at the end (the file system's writeback and flushes through the map).
FIO_LOOP_BUFFERED=1 FIO_LOOP_BASE=0 fio_loop_start "$MNT/fio"
c0=$(conn_failures)
for i in $(seq "$CYCLES"); do
  if [ $((i % 2)) = 1 ]; then portal=$IP_B:$PORT gone=$db other=$da name=B; else portal=$IP:$PORT gone=$da other=$db name=A; fi
  sleep 2
  iscsiadm -m node -T "$IQN" -p "$portal" -I iser --logout >/dev/null || fail "cycle $i: logout of path $name"
  [ -z "$(session_disk "$portal")" ] || fail "cycle $i: path $name's session still has a disk after its logout"
  [ "$(ls /sys/class/iscsi_session/ | wc -l)" = 1 ] || fail "cycle $i: sessions after path $name's logout: $(ls /sys/class/iscsi_session/)"
  end=$((SECONDS + $(paced 60)))
  while [ $SECONDS -lt $end ] && [ "$(map_paths)" != 1 ]; do sleep 1; done
  [ "$(map_paths)" = 1 ] || fail "cycle $i: the map has $(map_paths) active paths after path $name's logout ($(mp_paths | tr '\n' ';'))"
  # Data written and synced through the one path left.
  cp "$MNT/ref" "$MNT/copy_$i" && sync "$MNT/copy_$i" || fail "cycle $i: a copy through path $other alone"
  iscsiadm -m node -T "$IQN" -p "$portal" -I iser --login >/dev/null || fail "cycle $i: login of path $name"
  wait_first_disk new 60 "$portal" || fail "cycle $i: no disk after path $name's login"
  if [ "$name" = B ]; then db=$new; else da=$new; fi
  t0=$SECONDS
  mp_map 2 "$(paced 120)" >/dev/null || fail "cycle $i: path $name ($new) not back in the map"
  t_map=$((SECONDS - t0))
  mp_wait_paths "active ready" 2 "$(paced 120)" || fail "cycle $i: not both paths active after path $name's login"
  t_ready=$((SECONDS - t0))
  moved=$(both_carry_io "$(paced 90)") || fail "cycle $i: after path $name's login not both paths carry I/O ($moved)"
  log "cycle $i: path $name ($gone) logged out, the copy went through $other alone; logged in again as $new, in the map ${t_map} s later, both paths active ${t_ready} s, both carry I/O $((SECONDS - t0)) s"
  [ -e /tmp/fio_loop.fail ] && break
done
fio_loop_stop || fail "verified I/O on ext4 during the path logouts and logins"
[ "$(conn_failures)" = "$c0" ] || fail "connection failures during the logouts: $(dmesg | unexpected_conn_errors | tail -n 3)"
dmesg | grep -E 'EXT4-fs (error|warning)|Buffer I/O error on dev dm-|I/O error, dev dm-' | head -n 5 | grep . \
  && fail "the file system or the map reported errors (above)"

# Nothing lost: a clean file system, and every copy equal to the reference after a fresh mount.
umount "$MNT" || fail "umount"
e2fsck -fn "/dev/$dm" >/tmp/e2fsck.log 2>&1 || { cat /tmp/e2fsck.log; fail "e2fsck found errors"; }
mount -t ext4 "/dev/$dm" "$MNT" || fail "mount again"
bad=0
for i in $(seq "$CYCLES"); do
  [ -e "$MNT/copy_$i" ] || { echo "copy_$i is missing"; bad=1; continue; }
  [ "$(md5sum <"$MNT/copy_$i")" = "$ref" ] || { echo "copy_$i differs from the reference"; bad=1; }
done
[ "$(md5sum <"$MNT/ref")" = "$ref" ] || { echo "the reference file changed"; bad=1; }
n=$(ls "$MNT" | grep -c '^copy_')
umount "$MNT" || fail "umount after the check"
[ $bad = 0 ] || fail "file contents lost"
log "e2fsck clean; $n copies and the reference read back equal after a fresh mount"

mp_stop || fail "multipathd stop"
iscsiadm -m node -T "$IQN" --logout >/dev/null 2>&1 || true
ls /sys/class/iscsi_session/ | grep -q . && fail "sessions left after logout: $(ls /sys/class/iscsi_session/)"
iscsid_stop
unload_initiator || fail "rmmod"
path_b_down
exit 0
