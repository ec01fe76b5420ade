#!/bin/bash
# make bench with BENCH_SCALING=1 (issue 21): scaling over sessions. Sourced by
# tests/vm/bench.sh after its contenders (it uses bench.sh's run_job, JOBS, NQN and nvmet port);
# defines scaling_run, which appends a "scaling" object to $OUT.
#
# For N in BENCH_SCALING_SESSIONS (1,2,4):
#   rs, c  N iSER sessions to the one LUN (LIO, the bench's null_blk backstore nullb0), one
#          dm-multipath map over their N disks (multipathd, every path in one group), once per
#          path selector in BENCH_SCALING_SELECTORS (round-robin,service-time): fio on the map.
#   nvme   one nvme-rdma controller with N I/O queues (nr_io_queues=N) to the bench's nvmet
#          port (nullb1, same size and kind); no dm-multipath. nvme-rdma caps the I/O queues
#          at the number of online CPUs: the queues it really got are recorded (hw_queues).
# Paths (BENCH_SCALING_PATHS):
#   rxe    (default) one RDMA device and target portal group per session, as in the multipath
#          test: path 0 is $IP on the virtio NIC (rxe0, tpgt_1), path 1 $IP_B on a dummy
#          netdev (rxe1, tpgt_2: path_b_up, lio_target2_up), paths 2 and 3 10.79.0.1 and
#          10.80.0.1 on further dummy netdevs (rxe2, rxe3; tpgt_3, tpgt_4). Every rxe device
#          loops back in the guest, so the paths differ in QPs, CQs and target portal groups,
#          not in wire.
#   iface  N open-iscsi iface records (transport iser) to the one portal $IP:3260 (rxe0): N
#          sessions over one RDMA device, like nvme-rdma's N queues over one device.
# Jobs: BENCH_SCALING_JOBS (rand4k_qd32_j1,rand4k_qd32_j2) from bench.sh's JOBS, same fio
# options, BENCH_REPS repetitions with the implementations rotated each round.
# Results: "scaling": {"IMPL|N|SELECTOR|JOB|ROUND": run_job's object + paths, hw_queues}.
# A configuration that fails to come up is reported on stderr and skipped, not fatal.
# Pair mode (scripts/bench.sh with BENCH_PAIR=1 and BENCH_SCALING): this VM runs one iSER
# initiator (BENCH_SCALING_IMPLS is this side's contender, rs or c) while the other VM runs the
# other; each job starts when both VMs reached it (bench.sh's barrier, tagged by round, session
# count, selector and job), and a configuration that fails to come up ends the run (the other
# VM would wait for it in vain).

SC_SESSIONS=${BENCH_SCALING_SESSIONS:-1,2,4}
SC_SELECTORS=${BENCH_SCALING_SELECTORS:-round-robin,service-time}
SC_IMPLS=${BENCH_SCALING_IMPLS:-rs,c,nvme}
SC_JOBS=${BENCH_SCALING_JOBS:-rand4k_qd32_j1,rand4k_qd32_j2}
SC_PATHS=${BENCH_SCALING_PATHS:-rxe}
SC_MAX=4   # paths the rig builds (rxe0..rxe3)

sc_log() { echo "bench: scaling: $*" >&2; }
# sc_fail MSG: a configuration or job that did not run: skipped, or in pair mode the end of
# the run (bench.sh's die tells the other VM).
sc_fail() {
  [ -z "${BENCH_SYNC:-}" ] || die "scaling: $*"
  sc_log "$*"
}

# sc_ip K: the target portal address of path K (rxe topology).
sc_ip() {
  case $1 in
    0) echo "$IP" ;;
    1) echo "$IP_B" ;;
    *) echo "10.$((77 + $1)).0.1" ;;
  esac
}

# sc_path_up K: path K's netdev, RDMA device and LIO target portal group (K >= 1; path 0 is
# the bench's own). Paths 2 and 3 as path_b_up and lio_target2_up make path 1.
sc_path_up() {
  local k=$1 ip nd rxe tpg
  if [ "$k" = 1 ]; then
    path_b_up && lio_target2_up
    return
  fi
  ip=$(sc_ip "$k") nd=iserb$((k - 1)) rxe=rxe$k tpg=$CFS/iscsi/$IQN/tpgt_$((k + 1))
  [ -e "/sys/class/net/$nd" ] || ip link add "$nd" type dummy || return 1
  ip link set "$nd" up
  ip addr show dev "$nd" | grep -q "inet $ip/" || ip addr add "$ip/24" dev "$nd" || return 1
  [ -d "/sys/class/infiniband/$rxe" ] || rdma link add "$rxe" type rxe netdev "$nd" || return 1
  wait_gid "$rxe" "$ip" || return 1
  [ -d "$tpg" ] && return 0
  lio_tpg_up $((k + 1)) "$ip"
}

# sc_paths_down: the extra portal groups, RDMA devices and netdevs gone (tpgt_1 and rxe0
# stay: bench.sh tears them down).
sc_paths_down() {
  local k ip tpg
  for k in $(seq 1 $((SC_MAX - 1))); do
    ip=$(sc_ip "$k") tpg=$CFS/iscsi/$IQN/tpgt_$((k + 1))
    if [ -d "$tpg" ]; then
      echo 0 >"$tpg/enable" 2>/dev/null
      [ -e "$tpg/np/$ip:3260/iser" ] && echo 0 >"$tpg/np/$ip:3260/iser" 2>/dev/null
      rmdir "$tpg/np/$ip:3260" 2>/dev/null
      rm -f "$tpg/lun/lun_0/lun0_link"
      rmdir "$tpg/lun/lun_0" "$tpg" 2>/dev/null
    fi
    if [ "$k" = 1 ]; then path_b_down; continue; fi
    [ -d "/sys/class/infiniband/rxe$k" ] && rdma link delete "rxe$k"
    [ -e "/sys/class/net/iserb$((k - 1))" ] && ip link del "iserb$((k - 1))"
  done
  return 0
}

# sc_ifaces_up N: iface records sc0 .. sc(N-1), transport iser (iface topology).
sc_ifaces_up() {
  local k
  for k in $(seq 0 $(($1 - 1))); do
    iscsiadm -m iface -I "sc$k" >/dev/null 2>&1 && continue
    iscsiadm -m iface -I "sc$k" -o new >/dev/null \
      && iscsiadm -m iface -I "sc$k" -o update -n iface.transport_name -v iser >/dev/null || return 1
  done
}
sc_ifaces_down() {
  local k
  for k in $(seq 0 $((SC_MAX - 1))); do iscsiadm -m iface -I "sc$k" -o delete >/dev/null 2>&1; done
  return 0
}

# sc_disks: the SCSI disks (sdX) of every iSCSI session, from sysfs.
sc_disks() {
  local d
  for d in /sys/class/iscsi_session/session*/device/target*/*/block/*; do
    [ -e "$d" ] && basename "$d"
  done
}

# sc_login N: N sessions to $IQN (one per path or per iface), their N disks present and all
# one LUN (same wwid); waits 60 s for the disks.
sc_login() {
  local n=$1 k end d w w0="" disks=()
  if [ "$SC_PATHS" = iface ]; then
    sc_ifaces_up "$n" || { sc_log "iface records"; return 1; }
    # shellcheck disable=SC2046
    iscsiadm -m discovery -t st -p "$IP:3260" $(for k in $(seq 0 $((n - 1))); do echo "-I sc$k"; done) \
      >/dev/null || { sc_log "discovery"; return 1; }
    for k in $(seq 0 $((n - 1))); do
      iscsiadm -m node -T "$IQN" -p "$IP:3260" -I "sc$k" --login >/dev/null \
        || { sc_log "login through iface sc$k"; return 1; }
    done
  else
    # Discovery through each portal, as mp_two_paths does through iser_login.
    for k in $(seq 0 $((n - 1))); do
      iser_discover "$(sc_ip "$k"):3260" \
        || { sc_log "discovery through path $k ($(sc_ip "$k"))"; return 1; }
      iscsiadm -m node -T "$IQN" -p "$(sc_ip "$k"):3260" -I iser --login >/dev/null \
        || { sc_log "login through path $k ($(sc_ip "$k"))"; return 1; }
    done
  fi
  end=$((SECONDS + 60))
  while [ $SECONDS -lt $end ]; do
    mapfile -t disks < <(sc_disks)
    [ "${#disks[@]}" -ge "$n" ] && break
    sleep 0.5
  done
  [ "${#disks[@]}" = "$n" ] || { sc_log "$n sessions: ${#disks[@]} disks (${disks[*]})"; return 1; }
  for d in "${disks[@]}"; do
    [ -b "/dev/$d" ] || { sc_log "no /dev/$d"; return 1; }
    w=$(cat "/sys/block/$d/device/wwid" 2>/dev/null)
    [ -n "$w" ] || { sc_log "$d has no wwid"; return 1; }
    [ -z "$w0" ] && w0=$w
    [ "$w" = "$w0" ] || { sc_log "the disks are not one LUN: $d $w, not $w0"; return 1; }
  done
}

# sc_logout: every session gone (60 s), node and discovery records and iface records deleted.
sc_logout() {
  local end k
  marked timeout 60 iscsiadm -m node -T "$IQN" --logout >/dev/null 2>&1
  end=$((SECONDS + 60))
  while [ $SECONDS -lt $end ] && ls /sys/class/iscsi_session/ 2>/dev/null | grep -q .; do sleep 0.5; done
  iscsiadm -m node -o delete >/dev/null 2>&1
  for k in $(seq 0 $((SC_MAX - 1))); do
    iscsiadm -m discoverydb -t st -p "$(sc_ip "$k"):3260" -o delete >/dev/null 2>&1
  done
  sc_ifaces_down
  ! ls /sys/class/iscsi_session/ 2>/dev/null | grep -q . || { sc_log "sessions left: $(ls /sys/class/iscsi_session/)"; return 1; }
}

# sc_map N SELECTOR: multipathd with SELECTOR over the N logged-in disks; prints the map's
# dm-N once it has N paths, all active, and its table names SELECTOR.
sc_map() {
  local n=$1 sel=$2 dm name
  MP_SELECTOR="$sel 0" mp_start >&2 || { sc_log "udevd and multipathd ($sel)"; return 1; }
  dm=$(mp_map "$n" 120) || return 1
  mp_wait_paths "active ready" "$n" 60 || return 1
  name=$(cat "/sys/block/$dm/dm/name") || return 1
  dmsetup table "$name" | grep -q " $sel 0 " \
    || { sc_log "map $name is not $sel: $(dmsetup table "$name")"; return 1; }
  echo "$dm"
}

# sc_nvme_connect N: an nvme-rdma controller with N I/O queues; prints "nvmeXn1 QUEUES" (the
# blk-mq hardware queues of its namespace). The kernel's fabrics interface, as bench.sh's
# connect: nvme-cli is not needed (`nvme connect -t rdma -i N` writes the same options).
sc_nvme_connect() {
  local n=$1 i f c q
  modprobe nvme-rdma || return 1
  echo "transport=rdma,traddr=$IP,trsvcid=4420,nqn=$NQN,nr_io_queues=$n" >/dev/nvme-fabrics || return 1
  for i in $(seq 100); do
    for f in /sys/class/nvme/nvme*/subsysnqn; do
      [ "$(cat "$f" 2>/dev/null)" = "$NQN" ] || continue
      c=$(basename "$(dirname "$f")")
      if [ -b "/dev/${c}n1" ]; then
        q=$(find "/sys/block/${c}n1/mq/" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | wc -l)
        echo "${c}n1 $q"; return 0
      fi
    done
    sleep 0.1
  done
  return 1
}
sc_nvme_disconnect() {
  local f i
  for f in /sys/class/nvme/nvme*/subsysnqn; do
    [ "$(cat "$f" 2>/dev/null)" = "$NQN" ] && echo 1 >"$(dirname "$f")/delete_controller"
  done
  for i in $(seq 100); do
    grep -qsx "$NQN" /sys/class/nvme/nvme*/subsysnqn || return 0
    sleep 0.1
  done
  sc_log "nvme controller of $NQN still there"; return 1
}

# sc_jobs KEY_PREFIX DEV PATHS HWQ ROUND: the scaling jobs on DEV; one JSON member each.
sc_jobs() {
  local prefix=$1 dev=$2 paths=$3 hwq=$4 r=$5 spec job args res
  for spec in "${JOBS[@]}"; do
    read -r job args <<<"$spec"
    [[ ",$SC_JOBS," == *",$job,"* ]] || continue
    # Pair mode: the tag leaves the implementation out (each VM runs its own).
    barrier "s$r.${prefix#*|}.$job"
    # shellcheck disable=SC2086
    res=$(run_job "$job" "$dev" $args) || { sc_fail "$prefix $job failed"; continue; }
    res=$(jq -c --argjson p "$paths" --argjson q "$hwq" '. + {paths: $p, hw_queues: $q}' <<<"$res") \
      || { sc_log "$prefix $job: no JSON"; continue; }
    echo "scaling $prefix $job #$r $res"
    [ "$sc_first" = 1 ] || echo "," >>"$OUT"; sc_first=0
    echo "\"$prefix|$job|$r\": $res" >>"$OUT"
  done
}

# sc_iscsi IMPL N ROUND: the rows of an iSER initiator with N sessions, every selector.
sc_iscsi() {
  local impl=$1 n=$2 r=$3 sel dm hwq d
  if ! sc_login "$n"; then sc_logout; sc_fail "$impl, $n sessions: login"; return 1; fi
  # Hardware queues: the sum over the N disks (one per session for both drivers).
  hwq=0
  for d in $(sc_disks); do
    hwq=$((hwq + $(find "/sys/block/$d/mq/" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | wc -l)))
  done
  for sel in ${SC_SELECTORS//,/ }; do
    if ! dm=$(sc_map "$n" "$sel"); then
      mp_stop >&2
      sc_fail "$impl, $n sessions: no $sel map; skipped"; continue
    fi
    echo "== scaling round $r: $impl, $n sessions, $sel, /dev/$dm ($(mp_paths | awk '{ print $1 }' | tr '\n' ' '))"
    sc_jobs "$impl|$n|$sel" "$dm" "$n" "$hwq" "$r"
    mp_stop >&2 || sc_log "$impl, $n sessions, $sel: multipath stop"
  done
  sc_logout
}

scaling_run() {
  local r k impl n order dev hwq
  if [ -n "${BENCH_SYNC:-}" ]; then
    case ${SC_IMPLS//,/ } in
      rs|c) ;;
      *) sc_log "pair mode: one iSER initiator per VM (rs or c), not '$SC_IMPLS'"; return 1 ;;
    esac
  fi
  case $SC_PATHS in rxe|iface) ;; *) sc_log "BENCH_SCALING_PATHS is rxe or iface, not '$SC_PATHS'"; return 1 ;; esac
  for n in ${SC_SESSIONS//,/ }; do
    [[ $n =~ ^[1-9][0-9]*$ ]] && { [ "$SC_PATHS" = iface ] || [ "$n" -le "$SC_MAX" ]; } \
      || { sc_log "sessions '$n': 1 to $SC_MAX with BENCH_SCALING_PATHS=rxe"; return 1; }
  done
  for k in ${SC_JOBS//,/ }; do
    printf '%s\n' "${JOBS[@]}" | grep -q "^$k " || { sc_log "no job '$k' in bench.sh's JOBS"; return 1; }
  done
  for k in ${SC_SELECTORS//,/ }; do
    case $k in round-robin|service-time|queue-length) ;; *) sc_log "unknown path selector '$k'"; return 1 ;; esac
  done
  modprobe -a dm_multipath dm_round_robin dm_service_time dm_queue_length || { sc_log "dm-multipath modules"; return 1; }
  if [ "$SC_PATHS" = rxe ]; then
    for k in $(seq 1 $((SC_MAX - 1))); do
      sc_path_up "$k" || { sc_log "path $k ($(sc_ip "$k"))"; sc_paths_down; return 1; }
    done
  fi
  echo "\"scaling\": {" >>"$OUT"
  sc_first=1
  read -ra order <<<"${SC_IMPLS//,/ }"
  for r in $(seq "$REPS"); do
    for k in "${!order[@]}"; do
      impl=${order[$(( (k + r - 1) % ${#order[@]} ))]}
      case $impl in
        rs|c)
          load_initiator "$impl" >&2 || { sc_fail "load $impl"; continue; }
          for n in ${SC_SESSIONS//,/ }; do
            sc_iscsi "$impl" "$n" "$r" || sc_log "$impl, $n sessions: skipped"
          done
          unload_initiator || sc_log "rmmod $impl" ;;
        nvme)
          for n in ${SC_SESSIONS//,/ }; do
            if ! read -r dev hwq < <(sc_nvme_connect "$n") || [ -z "$dev" ]; then
              sc_log "nvme, $n I/O queues: connect failed; skipped"; sc_nvme_disconnect; continue
            fi
            echo "== scaling round $r: nvme, nr_io_queues=$n, /dev/$dev ($hwq hardware queues)"
            sc_jobs "nvme|$n|none" "$dev" 1 "$hwq" "$r"
            sc_nvme_disconnect
          done ;;
        *) sc_log "unknown implementation '$impl'" ;;
      esac
    done
  done
  echo "}," >>"$OUT"
  [ "$SC_PATHS" = rxe ] && sc_paths_down
  return 0
}
