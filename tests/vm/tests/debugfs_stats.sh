#!/bin/bash
# Per-connection statistics in debugfs (/sys/kernel/debug/iser/connection<sid>:<cid>/stats)
# agree with what fio did: the byte counters equal fio's bytes and the block layer's sectors,
# the command counters equal the block layer's completed requests, every command got one
# response, one latency sample (latency_histogram=Y) and one registration, header-only SENDs
# went inline, and no error counter moved. With latency_histogram=N the histogram holds still
# while commands complete. After logout the directory is gone and ended/counters took what it
# counted.
. "$(dirname "$0")/../lib.sh"
dev=$(iser_setup) || fail "setup/login"
mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug || fail "mount debugfs"
conn=$(basename "$(ls -d /sys/class/iscsi_connection/connection* | head -n1)")
f=/sys/kernel/debug/iser/$conn/stats
[ -r "$f" ] || { ls -lR /sys/kernel/debug/iser; fail "no $f"; }
head -n 1 "$f"
grep -qx "peer $IP:$PORT" "$f" || fail "peer line: $(head -n 1 "$f")"
snap() { cat "$f" >"$ISER_RESULTS/stats_$1.txt"; cat "/sys/block/$dev/stat" >"$ISER_RESULTS/blk_$1.txt"; }
# sd may still be probing the new disk (INQUIRY, MODE SENSE, ...: SCSI commands the block
# layer's statistics do not count): wait until the command counters hold still for 2 s.
prev="" i=0
while [ $i -lt 30 ]; do
  cur=$(grep -E '^cmds_' "$f" | tr '\n' ' ')
  [ "$cur" = "$prev" ] && break
  prev=$cur; sleep 2; i=$((i + 1))
done
P=/sys/module/ib_iser/parameters/latency_histogram
echo Y >"$P" || fail "latency_histogram=Y"
snap 0
FIO_TAG=_stats fio_verify "$dev" stats --rw=randrw --bsrange=4k-256k --iodepth=16 --size=16M \
  --offset=8M || fail "fio"
snap 1
python3 - "$ISER_RESULTS" "$ISER_RESULTS/fio_stats_stats.json" "${EXPECT_DATAOUT:-0}" <<'PY' || fail "statistics disagree"
import json, sys
res, fio_json, expect_dataout = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
def stats(i):
    d = {}
    for l in open(f"{res}/stats_{i}.txt"):
        p = l.split()
        if len(p) == 2 and p[1].isdigit():
            d[p[0]] = int(p[1])
    return d
def blk(i):
    v = [int(x) for x in open(f"{res}/blk_{i}.txt").read().split()]
    return {"reads": v[0], "rsect": v[2], "writes": v[4], "wsect": v[6]}
s0, s1, b0, b1 = stats(0), stats(1), blk(0), blk(1)
d = {k: s1[k] - s0.get(k, 0) for k in s1}
b = {k: b1[k] - b0[k] for k in b1}
j = json.load(open(fio_json))["jobs"][0]
fr, fw = j["read"]["io_bytes"], j["write"]["io_bytes"]
print(f"fio: read {fr} B in {j['read']['total_ios']} IOs, write {fw} B in {j['write']['total_ios']} IOs")
print(f"block layer: {b['reads']} reads {b['rsect'] * 512} B, {b['writes']} writes {b['wsect'] * 512} B")
print("debugfs deltas: " + " ".join(f"{k}={v}" for k, v in d.items() if v))
bad = []
def eq(what, a, e):
    if a != e:
        bad.append(f"{what}: {a} != {e}")
eq("bytes_read vs fio", d["bytes_read"], fr)
eq("bytes_write vs fio", d["bytes_write"], fw)
eq("bytes_read vs block layer", d["bytes_read"], b["rsect"] * 512)
eq("bytes_write vs block layer", d["bytes_write"], b["wsect"] * 512)
eq("cmds_read vs block layer", d["cmds_read"], b["reads"])
eq("cmds_write vs block layer", d["cmds_write"], b["writes"])
cmds = d["cmds_read"] + d["cmds_write"] + d["cmds_nodata"]
eq("scsi_rsp_rx vs commands", d["scsi_rsp_rx"], cmds)
eq("latency samples vs commands", d["latency_count"], cmds)
eq("registrations vs data commands", d["reg_fastreg"] + d["reg_dma_key"], d["cmds_read"] + d["cmds_write"])
# Selective signalling: a command SEND without immediate data (reads, no-data commands; every
# write carries immediate data here) asks for no completion, except every 16th of a run, which
# reclaims send-queue slots (rust/proto/sq.rs).
untracked = d["cmds_read"] + d["cmds_nodata"]
uns = d.get("sends_unsignaled", 0)
if not (untracked - (untracked + 15) // 16 <= uns <= untracked):
    bad.append(f"sends_unsignaled {uns} for {untracked} commands without immediate data")
# Header-only SENDs go inline (IB_SEND_INLINE; rxe and siw both offer more than the 76 bytes):
# every command without immediate data, plus control PDUs without data.
inl = d.get("sends_inline", 0)
if not (untracked <= inl <= cmds + d["control_pdus"]):
    bad.append(f"sends_inline {inl} for {untracked} commands without immediate data")
if d["pdus_rx"] < d["scsi_rsp_rx"]:
    bad.append("pdus_rx < scsi_rsp_rx")
if d["bytes_immediate"] + d["bytes_dataout"] > d["bytes_write"]:
    bad.append("immediate + Data-Out bytes exceed write bytes")
if fw and d["bytes_immediate"] == 0:
    bad.append("no immediate data although the target allows it")
if expect_dataout and d["dataout_pdus"] == 0:
    bad.append("no unsolicited Data-Out although InitialR2T=No")
if not expect_dataout and d["dataout_pdus"] != 0:
    bad.append("unsolicited Data-Out although InitialR2T=Yes")
for k, v in s1.items():
    if k.startswith("err_") and v:
        bad.append(f"{k} = {v}")
hist = sum(int(l.split()[3]) for l in open(f"{res}/stats_1.txt") if l.startswith("latency_us "))
eq("histogram buckets vs latency_count", hist, s1["latency_count"])
for x in bad:
    print("MISMATCH: " + x)
sys.exit(1 if bad else 0)
PY
grep -E '^latency_(p50|p99|mean)' "$f" | tr '\n' ' '; echo
# Off: commands still complete (and are counted), the histogram does not move.
echo N >"$P" || fail "latency_histogram=N"
val() { awk -v k="$1" '$1 == k { print $2 }' "$f"; }
l0=$(val latency_count) r0=$(val scsi_rsp_rx)
dd if="/dev/$dev" of=/dev/null bs=4k count=256 iflag=direct 2>/dev/null || fail "dd with the histogram off"
l1=$(val latency_count) r1=$(val scsi_rsp_rx)
log "latency_histogram=N: scsi_rsp_rx $r0 -> $r1, latency_count $l0 -> $l1"
[ "$r1" -ge $((r0 + 256)) ] || fail "scsi_rsp_rx $r0 -> $r1 for 256 reads"
[ "$l1" = "$l0" ] || fail "latency_count moved with latency_histogram=N: $l0 -> $l1"
# What the connection counted goes to ended/counters when it ends: the sums there grow by
# at least the connection's last reading (other connections may have ended meanwhile, none
# gives back).
E=/sys/kernel/debug/iser/ended/counters
[ -r "$E" ] || fail "no $E"
eval_end() { awk -v k="$1" '$1 == k { print $2 }' "$E"; }
e0_rsp=$(eval_end scsi_rsp_rx) e0_rd=$(eval_end bytes_read)
c_rsp=$(val scsi_rsp_rx) c_rd=$(val bytes_read)
iser_logout || fail "logout"
[ ! -e "/sys/kernel/debug/iser/$conn" ] || fail "/sys/kernel/debug/iser/$conn still there after logout"
# The connection's statistics are dropped with its last reference (teardown may end after
# the logout returned): up to 10 s.
for i in $(seq 50); do
  e1_rsp=$(eval_end scsi_rsp_rx) e1_rd=$(eval_end bytes_read)
  [ "$e1_rsp" -ge $((e0_rsp + c_rsp)) ] && [ "$e1_rd" -ge $((e0_rd + c_rd)) ] && break
  sleep 0.2
done
log "ended/counters: scsi_rsp_rx $e0_rsp -> $e1_rsp, bytes_read $e0_rd -> $e1_rd (the connection's last: $c_rsp, $c_rd)"
[ "$(head -n 1 "$E")" = "peer -" ] || fail "ended/counters' first line: $(head -n 1 "$E")"
[ "$e1_rsp" -ge $((e0_rsp + c_rsp)) ] && [ "$e1_rd" -ge $((e0_rd + c_rd)) ] \
  || fail "ended/counters did not take the connection's counts"
[ -d /sys/kernel/debug/iser ] || fail "/sys/kernel/debug/iser missing while the module is loaded"
exit 0
