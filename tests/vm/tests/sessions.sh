#!/bin/bash
# Several sessions at once (issue 21): NSESSIONS (4) LIO targets, each with its own ramdisk
# LUN, behind one iSER portal; ours logs in to all of them over the one RDMA device.
#   1. Session 0 logs out and in CYCLES times (2; make check-long 20) while sessions 1..N-1
#      carry verified I/O (a loop of fio jobs with crc32c on each disk): the others must see
#      no error and no connection failure.
#   2. The soft-RoCE driver goes away under all sessions with I/O running (blktests srp/016):
#      `rdma link delete rxe0`, `rmmod rdma_rxe`, then loaded and added again: every
#      session fails its connection, recovers within the replacement timeout, and the
#      verified I/O goes on with no error.
# Each disk holds only its own session's data: a block naming its target is written to every
# disk at the start and read back from every disk at the end (a mix-up between sessions,
# e.g. a completion delivered to the wrong session, would show there or in fio's verify).
. "$(dirname "$0")/../lib.sh"
N=${NSESSIONS:-4}
CYCLES=${CYCLES:-$([ -n "${ISER_LONG:-}" ] && echo 20 || echo 2)}
BASE=${IQN%:*}:s
rdma_up rxe || fail "rxe"
modprobe target_core_mod && modprobe iscsi_target_mod || fail "LIO modules"
for k in $(seq 0 $((N - 1))); do
  bs=$CFS/core/rd_mcp_1/s$k t=$CFS/iscsi/$BASE$k/tpgt_1
  mkdir -p "$bs" && echo rd_pages=8192 >"$bs/control" && echo "iserrssess$k" >"$bs/wwn/vpd_unit_serial" \
    && echo 1 >"$bs/enable" || fail "ramdisk backstore $k"
  mkdir -p "$t/lun/lun_0" "$t/np/$IP:$PORT" && ln -s "$bs" "$t/lun/lun_0/lun0_link" || fail "target $k"
  echo 1 >"$t/np/$IP:$PORT/iser" || fail "iSER portal of target $k"
  echo 1 >"$t/attrib/generate_node_acls"; echo 0 >"$t/attrib/authentication"
  echo 1 >"$t/attrib/cache_dynamic_acls"; echo 0 >"$t/attrib/demo_mode_write_protect"
  echo 1 >"$t/enable" || fail "enable target $k"
done
load_initiator rs || fail "load ours"
iscsid_start
iser_discover "$IP:$PORT" || fail "discovery"
# The replacement timeout must outlast the rig's outage in step 2 (the device deleted, the
# module unloaded and loaded, LIO's listener re-created for every target), which the test
# does not bound: in check-long, after 20 cycles, LIO took 60 s to re-enable its four
# portals and two sessions passed 120 s and got EIO (2026-12-06). Paced (lib.sh).
RTMO=$(paced 600)
for k in $(seq 0 $((N - 1))); do
  iscsiadm -m node -T "$BASE$k" -p "$IP:$PORT" -I iser -o update \
    -n node.session.timeo.replacement_timeout -v "$RTMO" >/dev/null || fail "node $k"
done

# disk_of K: the disk of target K's session (empty if none yet).
disk_of() { local d; first_disk d "" "$BASE$1"; [ -z "$d" ] || echo "$d"; }
# wait_disk K: waits (60 s, paced) for target K's disk and prints it.
wait_disk() { local d; wait_first_disk d 60 "" "$BASE$1" && echo "$d"; }
login() { iscsiadm -m node -T "$BASE$1" -p "$IP:$PORT" -I iser --login >/dev/null; }
logout() { iscsiadm -m node -T "$BASE$1" -p "$IP:$PORT" --logout >/dev/null; }
# tag K DEV: writes block 0 of DEV naming target K; check K DEV: reads it back.
tag() { printf 'iser-rs session disk %s\n%3000s\n' "$BASE$1" "" | dd of="/dev/$2" bs=4096 count=1 oflag=direct conv=sync 2>/dev/null; }
check() { dd if="/dev/$2" bs=4096 count=1 iflag=direct 2>/dev/null | head -n1 | grep -qx "iser-rs session disk $BASE$1"; }

disks=()
for k in $(seq 0 $((N - 1))); do
  login "$k" || fail "login to target $k"
  disks[k]=$(wait_disk "$k") || fail "no disk for target $k"
  tag "$k" "${disks[k]}" || fail "tag disk of target $k"
done
log "$N sessions over rxe0: disks ${disks[*]}; sessions: $(ls /sys/class/iscsi_session | tr '\n' ' ')"

# Verified I/O on disks 1..N-1: one loop of fio jobs per disk (4 MiB at 4-64 KiB, queue
# depth 8, away from block 0), until /tmp/sess.stop; a failed job leaves /tmp/sess.fail.K.
rm -f /tmp/sess.stop /tmp/sess.fail.* /tmp/sess.n.*
trap 'touch /tmp/sess.stop' EXIT  # a failed test stops its loops too
pids=()
for k in $(seq 1 $((N - 1))); do
  (
    j=0
    while [ ! -e /tmp/sess.stop ]; do
      j=$((j + 1))
      FIO_TAG=_s${k}_$j fio_verify "${disks[k]}" sess --rw=randwrite --bsrange=4k-64k --iodepth=8 \
        --size=4M --offset=$(( (j % 4) * 4 + 4 ))M --verify_backlog=32 >>"/tmp/sess.log.$k" 2>&1 \
        || { echo "$j" >"/tmp/sess.fail.$k"; break; }
      echo "$j" >"/tmp/sess.n.$k"
    done
  ) &
  pids+=($!)
done
loops_stop() {
  local k rc=0
  touch /tmp/sess.stop; wait "${pids[@]}"
  for k in $(seq 1 $((N - 1))); do
    if [ -e "/tmp/sess.fail.$k" ]; then
      echo "session $k: fio job $(cat "/tmp/sess.fail.$k") failed:"; tail -n 20 "/tmp/sess.log.$k"; rc=1
    elif [ "$(cat "/tmp/sess.n.$k" 2>/dev/null || echo 0)" -lt 1 ]; then
      echo "session $k: no fio job completed"; rc=1
    fi
  done
  echo "verified fio jobs per session: $(for k in $(seq 1 $((N - 1))); do printf '%s ' "$(cat "/tmp/sess.n.$k" 2>/dev/null || echo 0)"; done)"
  return $rc
}

# 1. Session 0 cycles while the others carry I/O.
c0=$(conn_failures)
for i in $(seq "$CYCLES"); do
  sleep 2
  logout 0 || fail "cycle $i: logout of session 0"
  [ -z "$(disk_of 0)" ] || fail "cycle $i: session 0 still has a disk after logout"
  login 0 || fail "cycle $i: login of session 0"
  disks[0]=$(wait_disk 0) || fail "cycle $i: no disk after login of session 0"
  check 0 "${disks[0]}" || fail "cycle $i: session 0's disk does not hold its tag"
done
log "session 0: $CYCLES logouts and logins while $((N - 1)) sessions carried verified I/O"
[ "$(conn_failures)" = "$c0" ] || fail "connection failures during the cycles: $(dmesg | unexpected_conn_errors | tail -n 3)"
for k in $(seq 1 $((N - 1))); do
  [ -e "/tmp/sess.fail.$k" ] && { loops_stop; fail "session $k: verified I/O failed during the cycles"; }
done

# 2. The RDMA driver unloaded and loaded again under every session.
sleep 3
c0=$(conn_failures)
t0=$(date +%s)
timeout 60 rdma link delete rxe0 || fail "rdma link delete rxe0 hung or failed"
timeout 60 rmmod rdma_rxe || fail "rmmod rdma_rxe with $N sessions logged in: $(lsmod | grep rdma_rxe)"
log "rxe0 removed and rdma_rxe unloaded in $(( $(date +%s) - t0 )) s under $N sessions"
sleep 2
t1=$(date +%s)
rdma_up rxe || fail "rdma_rxe loaded and rxe0 added again"
t2=$(date +%s)
# LIO's iSER listener (one, shared by the targets) is re-created once no portal uses it.
for k in $(seq 0 $((N - 1))); do echo 0 >"$CFS/iscsi/$BASE$k/tpgt_1/np/$IP:$PORT/iser"; done
for k in $(seq 0 $((N - 1))); do echo 1 >"$CFS/iscsi/$BASE$k/tpgt_1/np/$IP:$PORT/iser" || fail "listener of target $k"; done
log "rdma_rxe loaded and rxe0 added in $((t2 - t1)) s, LIO's portals re-enabled in $(( $(date +%s) - t2 )) s (replacement timeout ${RTMO} s)"
t0=$(date +%s) end=$((SECONDS + $(paced 150)))
while [ $SECONDS -lt $end ]; do
  up=$(grep -lx LOGGED_IN /sys/class/iscsi_session/session*/state 2>/dev/null | wc -l)
  [ "$up" = "$N" ] && break
  sleep 1
done
[ "$up" = "$N" ] || fail "$up of $N sessions logged in again after the driver came back: $(cat /sys/class/iscsi_session/session*/state | tr '\n' ' ')"
log "all $N sessions recovered $(( $(date +%s) - t0 )) s after rxe0 came back"
n=$(( $(conn_failures) - c0 ))
[ "$n" -ge "$N" ] || fail "$n connection failures reported for $N sessions losing their device"
log "connection failures reported: $n"
sleep 5
loops_stop || fail "verified I/O on sessions 1..$((N - 1))"
for k in $(seq 0 $((N - 1))); do
  check "$k" "$(disk_of "$k")" || fail "disk of target $k does not hold its own tag at the end"
done
log "every disk still holds its own target's tag"
marked timeout 120 iscsiadm -m node --logoutall=all >/dev/null || fail "logout of all sessions"
ls /sys/class/iscsi_session/ | grep -q . && fail "sessions left after logout: $(ls /sys/class/iscsi_session/)"
iscsiadm -m node -o delete >/dev/null 2>&1
iscsid_stop
unload_initiator || fail "rmmod"
exit 0
