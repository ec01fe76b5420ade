#!/bin/bash
# make bench, inside the VM (perf kernel): the same rxe device, the same kind of null_blk
# backing store, one contender at a time, side by side in one boot:
#   rs    our ib_iser        -> LIO iSER portal $IP:3260
#   c     the C ib_iser      -> same portal
#   tcp   iscsi_tcp          -> LIO TCP portal $IP:3261, same LUN
#   nvme  nvme-rdma          -> nvmet-rdma port $IP:4420 (a second null_blk of the same size:
#                               LIO and nvmet both open their device exclusively)
#   rsb   another build of ours ($ISER_KO_B, from BENCH_KO_B: A/B of a change) -> as rs
# BENCH_SCALING=1: then the scaling rows (tests/vm/bench_scaling.sh: 1, 2 and 4 sessions under
# dm-multipath, ours and the C driver, and nvme-rdma with as many I/O queues); =only: those
# alone (with the raw limit).
# and the soft-RoCE limit (ib_read_bw / ib_write_bw, 128k, -t 128, best of 2 or 4 QPs).
# fio: direct=1, libaio, time-based with ramp, BENCH_REPS repetitions, median reported.
# Writes $ISER_RESULTS/bench.json; scripts/bench.sh renders the table and the chart.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
. "$here/bench_scaling.sh"
RUNTIME=${BENCH_RUNTIME:-8}
RAMP=${BENCH_RAMP:-2}
REPS=${BENCH_REPS:-3}
CONTENDERS=${BENCH_CONTENDERS:-rs c tcp nvme}
CONTENDERS=${CONTENDERS//,/ }
[ "${BENCH_SCALING:-0}" = only ] && CONTENDERS=""
OUT=$ISER_RESULTS/bench.json
NQN=nqn.2026-11.org.iser-rs:bench
# Pair mode (scripts/bench.sh with BENCH_PAIR=1): this VM runs one contender while a second VM
# runs another at the same time, so that the host's noise hits both at once. BENCH_SYNC is a
# folder both VMs see (under the work tree: 9p without caching), BENCH_SIDE this VM's name (a
# or b). Each job starts when both VMs have reached it; no raw limit in this mode. With
# BENCH_SCALING the scaling rows run paired the same way (tests/vm/bench_scaling.sh).
die() {
  echo "bench: $*" >&2
  [ -z "${BENCH_SYNC:-}" ] || : >"$BENCH_SYNC/$BENCH_SIDE.abort"
  exit 1
}
barrier() {  # TAG: wait until the other VM reached TAG as well
  [ -n "${BENCH_SYNC:-}" ] || return 0
  local other=a i
  [ "$BENCH_SIDE" = a ] && other=b
  : >"$BENCH_SYNC/$BENCH_SIDE.$1"
  for i in $(seq 6000); do
    [ -e "$BENCH_SYNC/$other.$1" ] && return 0
    [ -e "$BENCH_SYNC/$other.abort" ] && die "pair: the other VM gave up"
    sleep 0.1
  done
  die "pair: the other VM did not reach $1 within 600 s"
}

rdma_up rxe || die "rxe"
# Not memory backed: reads return zeroes, no memory used, the backing store costs ~nothing.
lio_setup_bench() {
  local nb=/sys/kernel/config/nullb bs tpg
  modprobe target_core_mod && modprobe iscsi_target_mod && modprobe target_core_iblock || return 1
  modprobe null_blk nr_devices=0 || return 1
  for d in nullb0 nullb1; do
    mkdir -p $nb/$d && echo 1024 >$nb/$d/size && echo 512 >$nb/$d/blocksize \
      && echo 32768 >$nb/$d/max_sectors && echo 1 >$nb/$d/power || return 1
  done
  bs=$CFS/core/iblock_0/nullb0
  # A serial of its own: multipathd (the scaling rows) tells LUNs apart by the wwid from it.
  mkdir -p "$bs" && echo "udev_path=/dev/nullb0" >"$bs/control" \
    && echo iserrsbench0 >"$bs/wwn/vpd_unit_serial" && echo 1 >"$bs/enable" || return 1
  tpg=$CFS/iscsi/$IQN/tpgt_1
  mkdir -p "$tpg/lun/lun_0" && ln -s "$bs" "$tpg/lun/lun_0/lun0_link" || return 1
  mkdir "$tpg/np/$IP:3260" && echo 1 >"$tpg/np/$IP:3260/iser" || return 1
  mkdir "$tpg/np/$IP:3261" || return 1
  echo 0 >"$tpg/attrib/authentication"; echo 1 >"$tpg/attrib/generate_node_acls"
  echo 1 >"$tpg/attrib/cache_dynamic_acls"; echo 0 >"$tpg/attrib/demo_mode_write_protect"
  echo 1 >"$tpg/enable"
}
nvmet_setup() {
  local s=/sys/kernel/config/nvmet/subsystems/$NQN p=/sys/kernel/config/nvmet/ports/1
  modprobe nvmet-rdma || return 1
  mkdir -p "$s/namespaces/1" && echo 1 >"$s/attr_allow_any_host" \
    && echo /dev/nullb1 >"$s/namespaces/1/device_path" && echo 1 >"$s/namespaces/1/enable" || return 1
  mkdir -p "$p" && echo rdma >"$p/addr_trtype" && echo ipv4 >"$p/addr_adrfam" \
    && echo "$IP" >"$p/addr_traddr" && echo 4420 >"$p/addr_trsvcid" || return 1
  ln -s "$s" "$p/subsystems/$NQN"
}
lio_setup_bench || die "LIO"
nvmet_setup || die "nvmet"
iscsid_start

wait_disk() {  # prints sdX of the one iSCSI session
  local i dev
  for i in $(seq 200); do
    dev=$(iscsiadm -m session -P 3 2>/dev/null | sed -n 's/.*Attached scsi disk \(sd[a-z]*\).*/\1/p' | head -n1)
    [ -n "$dev" ] && [ -b "/dev/$dev" ] && { echo "$dev"; return 0; }
    sleep 0.1
  done
  return 1
}
connect() {  # contender -> prints the block device name
  case $1 in
    rs|c|rsb)
      if [ "$1" = rsb ]; then
        [ -n "${ISER_KO_B:-}" ] || { echo "rsb: no BENCH_KO_B" >&2; return 1; }
        ISER_KO=$ISER_KO_B load_initiator rs >&2 || return 1
      else
        load_initiator "$1" >&2 || return 1
      fi
      # A discovery can time out in open-iscsi's event race (lib.sh iser_discover: it
      # destroys what the failed one left and tries once more, saying so); keep the
      # kernel's side of a failure that remains.
      if ! iser_discover "$IP:3260"; then
        echo "bench: $1: discovery failed; kernel log:" >&2
        dmesg | grep -Ei 'iser|rdma|iscsi|connection|rxe' | tail -n 40 >&2
        return 1
      fi
      iscsiadm -m node -T "$IQN" -p "$IP:3260" -I iser --login >/dev/null || return 1
      wait_disk ;;
    tcp)
      modprobe iscsi_tcp || return 1
      iscsiadm -m discovery -t st -p "$IP:3261" >/dev/null || return 1
      iscsiadm -m node -T "$IQN" -p "$IP:3261" --login >/dev/null || return 1
      wait_disk ;;
    nvme)
      modprobe nvme-rdma || return 1
      echo "transport=rdma,traddr=$IP,trsvcid=4420,nqn=$NQN" >/dev/nvme-fabrics || return 1
      local i; for i in $(seq 100); do
        for n in /sys/class/nvme/nvme*/subsysnqn; do
          [ "$(cat "$n" 2>/dev/null)" = "$NQN" ] || continue
          local c; c=$(basename "$(dirname "$n")")
          [ -b "/dev/${c}n1" ] && { echo "${c}n1"; return 0; }
        done; sleep 0.1
      done; return 1 ;;
  esac
}
disconnect() {
  case $1 in
    rs|c|rsb) iscsiadm -m node -T "$IQN" -p "$IP:3260" --logout >/dev/null; iscsiadm -m node -o delete >/dev/null 2>&1
          unload_initiator ;;
    tcp) iscsiadm -m node -T "$IQN" -p "$IP:3261" --logout >/dev/null; iscsiadm -m node -o delete >/dev/null 2>&1 ;;
    nvme) local n; for n in /sys/class/nvme/nvme*/subsysnqn; do
            [ "$(cat "$n" 2>/dev/null)" = "$NQN" ] && echo 1 >"$(dirname "$n")/delete_controller"
          done ;;
  esac
}

# cpu_ticks: sys + softirq ticks of all CPUs (/proc/stat "cpu" line: user nice system idle
# iowait irq softirq ...).
cpu_ticks() { awk '/^cpu /{print $4 + $8}' /proc/stat; }

# rxe_counters FILE: the soft-RDMA devices' hardware counters (packets, RNR and sequence
# errors, retries; both ends of the loopback count) as "name value" lines, one per device and
# counter (the JSON sums them: the scaling rows use up to four devices, one per path).
rxe_counters() {
  local f d
  for f in /sys/class/infiniband/*/ports/1/hw_counters/*; do
    [ -r "$f" ] || continue
    echo "$(basename "$f") $(cat "$f")"
    # Per device too for the packets sent: how a multipath selector spread the I/O.
    case $f in */sent_pkts) d=${f#/sys/class/infiniband/}; echo "sent_pkts_${d%%/*} $(cat "$f")" ;; esac
  done >"$1"
  # Completion-queue polls (IB_POLL_SOFTIRQ CQs run in the IRQ_POLL softirq), all CPUs.
  awk '$1 == "IRQ_POLL:" { s = 0; for (i = 2; i <= NF; i++) s += $i; print "softirq_irq_poll", s }' \
    /proc/softirqs >>"$1"
  # Per disk (each path's sd and the dm map): reads completed and the milliseconds they took
  # (/proc/diskstats fields 4 and 7): how a selector spread the I/O and each path's latency.
  awk '$3 ~ /^(sd[a-z]+|dm-[0-9]+)$/ { print "disk_reads_" $3, $4; print "disk_read_ms_" $3, $7 }' \
    /proc/diskstats >>"$1"
  # Context switches, and the IPIs that run work on another CPU (function calls, reschedules):
  # a completion finished away from the CPU that submitted the I/O shows here.
  awk '$1 == "ctxt" { print "ctxt", $2 }' /proc/stat >>"$1"
  awk '$1 == "CAL:" || $1 == "RES:" { s = 0; for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) s += $i
    print "ipi_" tolower(substr($1, 1, 3)), s }' /proc/interrupts >>"$1"
}
# stats_snapshot FILE: our debugfs statistics of every connection (when our module is
# loaded), else nothing; the JSON sums the connections.
stats_snapshot() {
  local f
  : >"$1"
  for f in /sys/kernel/debug/iser/connection*/stats; do
    [ -r "$f" ] && cat "$f" >>"$1"
  done
}

# run_job NAME DEV FIO_ARGS...: one repetition; prints a JSON object.
run_job() {
  local name=$1 dev=$2 t0 t1 out; shift 2
  out=/tmp/fio-$name.json
  rxe_counters /tmp/rxe0.before; stats_snapshot /tmp/stats.before
  t0=$(cpu_ticks)
  fio --name="$name" --filename="/dev/$dev" --allow_file_create=0 --direct=1 --ioengine=libaio --time_based \
    --runtime="$RUNTIME" --ramp_time="$RAMP" --group_reporting --eta=never \
    --output-format=json --output="$out" "$@" >/dev/null 2>&1 || return 1
  t1=$(cpu_ticks)
  rxe_counters /tmp/rxe0.after; stats_snapshot /tmp/stats.after
  python3 - "$out" $((t1 - t0)) "$(getconf CLK_TCK)" "$RUNTIME" "$RAMP" /tmp/rxe0.before /tmp/rxe0.after \
    /tmp/stats.before /tmp/stats.after <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
def kv(path):
    d = {}
    for line in open(path):
        f = line.replace("=", " ").split()
        if len(f) == 2 and f[1].isdigit():
            # One line per device or connection: summed.
            d[f[0]] = d.get(f[0], 0) + int(f[1])
    return d
def delta(a, b):
    a, b = kv(a), kv(b)
    # Means and percentiles are not additive: only counters.
    return {k: b[k] - a.get(k, 0) for k in sorted(b)
            if b[k] != a.get(k, 0) and k not in ("latency_mean_us",)
            and not k.endswith("_us_below")}
ticks, hz = int(sys.argv[2]), int(sys.argv[3])
# fio's I/O counts exclude the ramp, the CPU ticks do not: keep the measured window's share.
ticks = ticks * float(sys.argv[4]) / (float(sys.argv[4]) + float(sys.argv[5]))
r, w = j["read"], j["write"]
ios = r["total_ios"] + w["total_ios"]
p = r["clat_ns"].get("percentile", {}) if r["total_ios"] else w["clat_ns"].get("percentile", {})
print(json.dumps({
    "iops": r["iops"] + w["iops"],
    "mbps": (r["bw_bytes"] + w["bw_bytes"]) / 1e6,
    "p50_us": p.get("50.000000", 0) / 1000, "p99_us": p.get("99.000000", 0) / 1000,
    "cpu_us_per_io": (ticks / hz * 1e6) / max(ios, 1),
    "errors": j["error"],
    # Deltas over the whole job (ramp included): per-I/O protocol behaviour, not speed.
    "rxe": delta(sys.argv[6], sys.argv[7]),
    "iser": delta(sys.argv[8], sys.argv[9]),
}))
PY
}

JOBS=(
  "rand4k_qd32_j1 --rw=randread --bs=4k --iodepth=32 --numjobs=1"
  "rand4k_qd32_j2 --rw=randread --bs=4k --iodepth=32 --numjobs=2"
  "lat4k_qd1 --rw=randread --bs=4k --iodepth=1"
  "seqread128k_qd16 --rw=read --bs=128k --iodepth=16"
  "seqwrite128k_qd16 --rw=write --bs=128k --iodepth=16"
  "seqread1m_qd8 --rw=read --bs=1m --iodepth=8"
)

echo "{" >"$OUT"
echo "\"kernel\": \"$(uname -r)\", \"runtime\": $RUNTIME, \"ramp\": $RAMP, \"reps\": $REPS," >>"$OUT"
echo "\"results\": {" >>"$OUT"
first=1
# Repetitions outermost, contenders rotated each round (rs c tcp nvme, then c tcp nvme rs, ...):
# a drift of the machine over the run (TCG shares the host with everything else) spreads over
# every contender instead of favouring whichever ran first.
read -ra order <<<"$CONTENDERS"
for r in $(seq "$REPS"); do
  for k in "${!order[@]}"; do
    c=${order[$(( (k + r - 1) % ${#order[@]} ))]}
    if ! dev=$(connect "$c"); then
      disconnect "$c"
      [ -z "${BENCH_SYNC:-}" ] || die "$c: connect failed"
      echo "bench: $c: connect failed" >&2
      continue
    fi
    echo "== round $r: $c on /dev/$dev"
    for spec in "${JOBS[@]}"; do
      read -r job args <<<"$spec"
      # BENCH_JOBS: only these jobs (names separated by commas).
      [ -z "${BENCH_JOBS:-}" ] || [[ ",$BENCH_JOBS," == *",$job,"* ]] || continue
      if [ -n "${BENCH_PROFILE:-}" ]; then
        # Profile mode (not a benchmark): a system-wide cpu-clock profile of the job only.
        [ "$job" = "$BENCH_PROFILE" ] || continue
        # shellcheck disable=SC2086
        perf record -q -a -e cpu-clock -F 999 ${BENCH_PERF_ARGS//,/ } -o "/tmp/perf-$c.data" -- \
          fio --name="$job" --filename="/dev/$dev" --allow_file_create=0 --direct=1 --ioengine=libaio --time_based \
          --runtime="$RUNTIME" --group_reporting --eta=never $args >"$ISER_RESULTS/profile-$c-$r.fio" 2>&1
        perf report -i "/tmp/perf-$c.data" --stdio --no-children --sort sym --percent-limit 0.05 -g none \
          >"$ISER_RESULTS/profile-$c-$r.txt" 2>/dev/null
        # With BENCH_PERF_ARGS=-g: who takes contended spinlocks.
        perf report -i "/tmp/perf-$c.data" --stdio --no-children --sort sym -g caller,0.01 \
          --symbol-filter=queued_spin_lock_slowpath >"$ISER_RESULTS/profile-$c-$r.locks.txt" 2>/dev/null
        perf report -i "/tmp/perf-$c.data" --stdio --no-children --sort dso \
          >"$ISER_RESULTS/profile-$c-$r.dso.txt" 2>/dev/null
        echo "profile: $c $job -> profile-$c-$r.txt ($(grep -o 'IOPS=[^,]*' "$ISER_RESULTS/profile-$c-$r.fio"))"
        continue
      fi
      barrier "r$r.$job"
      # shellcheck disable=SC2086
      res=$(run_job "$job" "$dev" $args) || { echo "bench: $c $job failed" >&2; continue; }
      echo "$c $job #$r $res"
      [ $first = 1 ] || echo "," >>"$OUT"; first=0
      echo "\"$c|$job|$r\": $res" >>"$OUT"
    done
    disconnect "$c"
  done
done
echo "}," >>"$OUT"
if [ "${BENCH_SCALING:-0}" != 0 ]; then
  if [ -n "${BENCH_PROFILE:-}" ]; then
    echo "bench: BENCH_SCALING: not with BENCH_PROFILE; no scaling rows" >&2
  elif ! scaling_run; then
    # In pair mode the other VM waits for these rows: it is told.
    [ -z "${BENCH_SYNC:-}" ] || die "scaling rows not run (see above)"
    echo "bench: scaling rows not run (see above)" >&2
  fi
fi
if [ -n "${BENCH_PROFILE:-}" ] || [ -n "${BENCH_SYNC:-}" ]; then
  echo "\"raw\": {}}" >>"$OUT"
  iscsid_stop
  splats=$(dmesg | grep -E "$SPLAT_RE" | head -n 3)
  # As below: reported, not fatal (the C driver and LIO have their own; see the log).
  [ -z "$splats" ] || echo "bench: kernel log has splats: $splats" >&2
  echo "bench: results in $OUT"
  exit 0
fi

# The soft-RoCE limit: 128k messages, deep queues, two or four QPs; the best configuration is
# the ceiling, not a single-QP sample.
raw_one() {  # TOOL PORT ARGS... -> MB/s
  local tool=$1 port=$2 v; shift 2
  $tool -d rxe0 -s 131072 -t 128 -D 5 -p "$port" -F "$@" >/tmp/$tool.srv 2>&1 &
  sleep 2
  v=$($tool -d rxe0 -s 131072 -t 128 -D 5 -p "$port" -F "$@" "$IP" 2>/dev/null \
      | awk '$1 == 131072 {print $4}' | tail -n1)
  wait
  echo "${v:-0}"
}
raw() {  # TOOL PORT -> "MB/s config" of the best configuration
  local tool=$1 port=$2 best=0 cfg="" v a
  # (-e, event-driven completions, reports no result on rxe with perftest 4.5: not used.)
  for a in "-q 2" "-q 4"; do
    # shellcheck disable=SC2086
    v=$(raw_one "$tool" "$port" $a)
    echo "raw: $tool $a: $v MB/s" >&2
    if awk -v v="$v" -v b="$best" 'BEGIN { exit !(v > b) }'; then best=$v; cfg=$a; fi
    port=$((port + 10))
  done
  echo "$best $cfg"
}
read -r rb rbcfg < <(raw ib_read_bw 18515); read -r wb wbcfg < <(raw ib_write_bw 18516)
echo "raw: ib_read_bw ${rb} MB/s (${rbcfg}), ib_write_bw ${wb} MB/s (${wbcfg})"
echo "\"raw\": {\"ib_read_bw_mbps\": ${rb:-0}, \"ib_write_bw_mbps\": ${wb:-0}, \"ib_read_bw_cfg\": \"-s 131072 -t 128 ${rbcfg}\", \"ib_write_bw_cfg\": \"-s 131072 -t 128 ${wbcfg}\"}" >>"$OUT"
echo "}" >>"$OUT"
iscsid_stop
splats=$(dmesg | grep -E "$SPLAT_RE" | head -n 3)
[ -z "$splats" ] || echo "bench: kernel log has splats: $splats" >&2
echo "bench: results in $OUT"
