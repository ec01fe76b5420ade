#!/bin/bash
# SendTargets discovery over iSER against a portal that lists many targets: NTARGETS (60)
# LIO targets with names of about 200 characters, each with an IPv4 and an IPv6 iSER portal.
# The reply (some 20 KiB) does not fit one Text response: the target sends several, chained
# with the C bit, each in the initiator's login receive buffer. Ours must list every target
# at every portal, over IPv4 and over IPv6, exactly as iscsi_tcp lists them from the same
# target; the C driver's answer is recorded beside them. (Issue 20 item 2: ours used to post
# its receive ring for discovery sessions, and the first Text response longer than a ring
# buffer failed the connection: "iSCSI PDU timed out", nothing listed.)
. "$(dirname "$0")/../lib.sh"
N=${NTARGETS:-60}
BASE=iqn.2026-12.org.iser-rs.discovery
pad=$(printf 'a-deliberately-long-target-name-%.0s' 1 2 3 4 5)
rdma_up rxe || fail "rxe"
modprobe target_core_mod && modprobe iscsi_target_mod || fail "LIO modules"
names=() dirs=()
for i in $(seq -f '%03g' "$N"); do
  names+=("$BASE:$i-$pad$i")
  t=$CFS/iscsi/$BASE:$i-$pad$i/tpgt_1
  dirs+=("$t/np/$IP:$PORT" "$t/np/[$IP6]:$PORT")
done
log "target name length: ${#names[0]} characters"
# One mkdir for all (every exec costs about a second in the debug VM); the rest are builtins.
mkdir -p "${dirs[@]}" || fail "LIO targets"
for nm in "${names[@]}"; do
  t=$CFS/iscsi/$nm/tpgt_1
  echo 1 >"$t/np/$IP:$PORT/iser" && echo 1 >"$t/np/[$IP6]:$PORT/iser" || fail "iSER portals of $nm"
  echo 1 >"$t/attrib/generate_node_acls"; echo 0 >"$t/attrib/authentication"
  echo 1 >"$t/enable" || fail "enable $nm"
done
iscsid_start

# discover IMPL PORTAL [IFACE]: the "portal,tpgt target" lines iscsiadm prints, sorted.
discover() {
  local impl=$1 portal=$2 iface=${3:-}
  iscsiadm -m discovery -t st -p "$portal" ${iface:+-I "$iface"} >"$ISER_RESULTS/disc_$impl.out" \
    2>"$ISER_RESULTS/disc_$impl.err"
  local rc=$?
  iscsiadm -m node -o delete >/dev/null 2>&1
  iscsiadm -m discoverydb -t st -p "$portal" -o delete >/dev/null 2>&1
  sort "$ISER_RESULTS/disc_$impl.out" >"$ISER_RESULTS/disc_$impl.sorted"
  return $rc
}
expect=$((N * 2))
count() { grep -c " $BASE:" "$ISER_RESULTS/disc_$1.sorted"; }

modprobe iscsi_tcp || fail "iscsi_tcp"
discover tcp "$IP:$PORT" || fail "discovery over TCP (the reference): $(cat "$ISER_RESULTS/disc_tcp.err")"
log "iscsi_tcp:          $(count tcp) target portals listed (of $expect)"
[ "$(count tcp)" = "$expect" ] || fail "the target listed $(count tcp) over TCP, not $expect"

load_initiator c || fail "load the C ib_iser"
discover c "$IP:$PORT" iser; crc=$?
log "C ib_iser:          $(count c) target portals listed (exit $crc)"
unload_initiator || fail "rmmod the C ib_iser"

load_initiator rs || fail "load ours"
discover rs "$IP:$PORT" iser || fail "discovery over iSER failed: $(cat "$ISER_RESULTS/disc_rs.err")"
log "ours (IPv4 portal): $(count rs) target portals listed"
cmp -s "$ISER_RESULTS/disc_rs.sorted" "$ISER_RESULTS/disc_tcp.sorted" ||
  { diff "$ISER_RESULTS/disc_tcp.sorted" "$ISER_RESULTS/disc_rs.sorted" | head -n 5; fail "ours listed other targets than iscsi_tcp"; }
cp "$ISER_RESULTS/disc_rs.sorted" "$ISER_RESULTS/disc_rs4.sorted"
discover rs "[$IP6]:$PORT" iser || fail "discovery over iSER/IPv6 failed: $(cat "$ISER_RESULTS/disc_rs.err")"
log "ours (IPv6 portal): $(count rs) target portals listed"
cmp -s "$ISER_RESULTS/disc_rs.sorted" "$ISER_RESULTS/disc_tcp.sorted" || fail "ours over IPv6 listed other targets than iscsi_tcp"
[ "$crc" = 0 ] && cmp -s "$ISER_RESULTS/disc_c.sorted" "$ISER_RESULTS/disc_tcp.sorted" &&
  log "C ib_iser lists the same" || log "note: the C ib_iser's list differs from iscsi_tcp's (exit $crc)"
# The discovery sessions are gone, the module unloads.
ls /sys/class/iscsi_session/ | grep -q . && fail "a discovery session was left: $(ls /sys/class/iscsi_session/)"
iscsid_stop
unload_initiator || fail "rmmod after discovery"
lio_targets_remove_all || fail "removing the targets"
exit 0
