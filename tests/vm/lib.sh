#!/bin/bash
# Helpers for the VM tests (sourced). Everything here runs inside the test VM as root.
# Conventions: functions return non-zero on failure and print why on stderr; `fail` ends a
# test. Tests print diagnostics on stdout (the suite prefixes them with "# ").

ISER_TOP=${ISER_TOP:?run inside scripts/vm-run}
ISER_KO=${ISER_KO:-$ISER_TOP/ib_iser.ko}
KSFT_SKIP=4

# Every exec costs about half a second in the debug VM (a `sleep 0.1` in a polling loop costs
# five times its nap): sleep, mkdir, rmdir and rm run as bash's loadable builtins (Debian's
# bash-builtins, scripts/deps.sh) where they are installed. Their options are the ones the
# tests use (sleep with fractions, mkdir -p, rm -f/-rf).
for b in sleep mkdir rmdir rm; do
  [ -e "/usr/lib/bash/$b" ] && enable -f "/usr/lib/bash/$b" "$b" 2>/dev/null
done
unset b

fail() { echo "FAIL: $*"; exit 1; }
skip() { echo "SKIP: $*"; exit $KSFT_SKIP; }
log() { echo "$*"; }

# --- Modules ----------------------------------------------------------------------------------
# Dependencies of ib_iser: insmod does not resolve them.
ISER_DEPS="ib_core rdma_cm scsi_transport_iscsi libiscsi"

iser_loaded() { [ -d /sys/module/ib_iser ]; }

# make check-harness: a test build of ours loaded with a planted fault (rust/planted.rs).
PLANTED_ARG=${ISER_PLANTED:+planted_fault=$ISER_PLANTED}

# The implementation under test: rs (ours, $ISER_KO) or c (the in-tree C ib_iser).
load_initiator() {
  local impl=${1:-${ISER_IMPL:-rs}}; shift || true
  iser_loaded && { echo "ib_iser is already loaded" >&2; return 1; }
  case $impl in
    rs) modprobe -a $ISER_DEPS && insmod "$ISER_KO" "$@" $PLANTED_ARG ;;
    c) modprobe ib_iser "$@" ;;
    *) echo "unknown implementation '$impl'" >&2; return 1 ;;
  esac
}

unload_initiator() {
  iser_loaded || return 0
  rmmod ib_iser
}

# Which implementation is loaded: "rs" if its srcversion matches $ISER_KO's, "c" for the
# in-tree driver (which has no MODULE_VERSION, hence no version or srcversion), else "other".
loaded_impl() {
  iser_loaded || { echo none; return; }
  local sv; sv=$(cat /sys/module/ib_iser/srcversion 2>/dev/null)
  if [ -z "$sv" ]; then echo c
  elif [ "$sv" = "$(modinfo -F srcversion "$ISER_KO" 2>/dev/null)" ]; then echo rs
  else echo other; fi
}

# --- Network and soft RDMA --------------------------------------------------------------------
IP=${IP:-10.77.0.1}
IP6=${IP6:-fd77::1}

nic() {
  local n
  for n in /sys/class/net/*; do
    [ "$(basename "$(readlink -f "$n/device/driver" 2>/dev/null)")" = virtio_net ] && { basename "$n"; return 0; }
  done
  return 1
}

net_up() {
  local ifc; ifc=$(nic) || { echo "no virtio NIC" >&2; return 1; }
  ip link set lo up
  ip link set "$ifc" up
  ip addr show dev "$ifc" | grep -q "inet $IP/" || ip addr add "$IP/24" dev "$ifc"
  ip -6 addr show dev "$ifc" | grep -q "$IP6/" || ip -6 addr add "$IP6/64" dev "$ifc" nodad
  echo "$ifc"
}

# rdma_up rxe|siw: creates <kind>0 on the NIC and waits for the IPv4-mapped GID (RoCE).
rdma_up() {
  local kind=${1:-rxe} ifc dev=${1:-rxe}0
  ifc=$(net_up) || return 1
  modprobe "rdma_$kind" 2>/dev/null || modprobe "$kind" || return 1
  [ -d /sys/class/infiniband/$dev ] || rdma link add "$dev" type "$kind" netdev "$ifc" || return 1
  if [ "$kind" = rxe ]; then wait_gid "$dev" "$IP" || return 1; fi
}

# wait_gid DEV IPV4: waits (10 s) for the IPv4-mapped GID of IPV4 on RDMA device DEV (RoCE).
wait_gid() {
  local dev=$1 ip=$2 gid i
  gid="ffff:$(printf '%02x%02x:%02x%02x' ${ip//./ })"
  for i in $(seq 100); do
    grep -qs "$gid" /sys/class/infiniband/$dev/ports/1/gids/* && return 0
    sleep 0.1
  done
  echo "GID of $ip did not appear on $dev" >&2; return 1
}

rdma_down() {
  local d
  for d in /sys/class/infiniband/*; do
    [ -e "$d" ] && rdma link delete "$(basename "$d")" 2>/dev/null
  done
  return 0
}

# --- LIO target -------------------------------------------------------------------------------
IQN=${IQN:-iqn.2026-11.org.iser-rs.test:t0}
CFS=/sys/kernel/config/target
PORT=${PORT:-3260}

# lio_setup [SIZE_MB]: null_blk (memory backed) LUN behind an iSER portal on $IP:$PORT.
# LIO_PARAMS="Key=Value ..." sets iSCSI login parameters of the target portal group (e.g.
# InitialR2T=No to make the initiator send unsolicited Data-Out PDUs). LIO_DELAY=1 puts a
# dm-delay device between null_blk and LIO (delay 0 until `lio_delay MS` changes it).
lio_setup() {
  lio_backstore "${1:-256}" && lio_target_up
}

DM_DELAY=iser_delay
lio_backstore() {
  local size=${1:-256} nb=/sys/kernel/config/nullb/nullb0 bs dev=/dev/nullb0
  modprobe target_core_mod && modprobe iscsi_target_mod && modprobe target_core_iblock || return 1
  modprobe null_blk nr_devices=0 || return 1
  # max_sectors: null_blk's default (127 KiB) would cap LIO's maximum transfer length,
  # hence every initiator's I/O size; allow 16 MiB commands.
  mkdir -p "$nb" && echo "$size" >"$nb/size" && echo 1 >"$nb/memory_backed" \
    && echo 512 >"$nb/blocksize" && echo 32768 >"$nb/max_sectors" && echo 1 >"$nb/power" \
    || return 1
  if [ -n "${LIO_DELAY:-}" ]; then
    modprobe dm_delay || return 1
    dmsetup create --noudevsync "$DM_DELAY" --table "0 $((size * 2048)) delay /dev/nullb0 0 0" \
      || return 1
    # No udev in the VM: /dev/mapper links may be missing; devtmpfs has /dev/dm-N.
    dev=/dev/$(dmsetup info -c --noheadings -o blkdevname "$DM_DELAY") || return 1
    [ -b "$dev" ] || { echo "no block device $dev for $DM_DELAY" >&2; return 1; }
  fi
  bs=$CFS/core/iblock_0/nullb0
  mkdir -p "$bs" && echo "udev_path=$dev" >"$bs/control" || return 1
  echo iserrsserial0 >"$bs/wwn/vpd_unit_serial"
  echo 1 >"$bs/enable" || return 1
}

# lio_delay MS: every read and write of the LUN now takes MS milliseconds (LIO_DELAY=1).
lio_delay() {
  local sectors; sectors=$(blockdev --getsz /dev/nullb0) || return 1
  dmsetup suspend --noudevsync --nolockfs --noflush "$DM_DELAY" &&
    dmsetup load "$DM_DELAY" --table "0 $sectors delay /dev/nullb0 0 $1" &&
    dmsetup resume --noudevsync "$DM_DELAY"
}

# lio_target_up / lio_target_down: the iSCSI target (portal, LUN mapping) on top of the
# backstore; down and up again is a target restart that keeps the data.
lio_target_up() {
  local tpg=$CFS/iscsi/$IQN/tpgt_1 bs=$CFS/core/iblock_0/nullb0
  mkdir -p "$tpg/lun/lun_0" && ln -s "$bs" "$tpg/lun/lun_0/lun0_link" || return 1
  mkdir "$tpg/np/$IP:$PORT" || return 1
  echo 1 >"$tpg/np/$IP:$PORT/iser" || return 1
  echo 0 >"$tpg/attrib/authentication"
  echo 1 >"$tpg/attrib/generate_node_acls"
  echo 1 >"$tpg/attrib/cache_dynamic_acls"
  echo 0 >"$tpg/attrib/demo_mode_write_protect"
  local kv k
  for kv in ${LIO_PARAMS:-}; do
    # ?Key=Value: set only if this LIO has the key.
    k=${kv%%=*}
    if [ "${k#\?}" != "$k" ]; then k=${k#\?}; [ -e "$tpg/param/$k" ] || continue; fi
    printf %s "${kv#*=}" >"$tpg/param/$k" || { echo "LIO param $kv" >&2; return 1; }
  done
  if [ -n "${LIO_NODE_ATTRIBS:-}" ]; then
    # LIO_NODE_ATTRIBS="attr=value,...": node attributes of the initiator, which a dynamic
    # (generated) ACL cannot have: an explicit ACL for our initiator name, LUN 0 mapped.
    local ini acl
    ini=$(initiator_name) || return 1
    acl=$tpg/acls/$ini
    mkdir -p "$acl/lun_0" && ln -s "$tpg/lun/lun_0" "$acl/lun_0/lun0" || { echo "LIO ACL $ini" >&2; return 1; }
    for kv in ${LIO_NODE_ATTRIBS//,/ }; do
      printf %s "${kv#*=}" >"$acl/attrib/${kv%%=*}" || { echo "LIO node attribute $kv" >&2; return 1; }
    done
  fi
  echo 1 >"$tpg/enable"
}

# lio_relisten: re-creates the iSER listener of the portal (after an RDMA device came back).
lio_relisten() {
  local np=$CFS/iscsi/$IQN/tpgt_1/np/$IP:$PORT
  echo 0 >"$np/iser" && echo 1 >"$np/iser"
}

lio_target_down() {
  local tpg=$CFS/iscsi/$IQN/tpgt_1
  [ -d "$tpg" ] || return 0
  echo 0 >"$tpg/enable" 2>/dev/null
  local a
  for a in "$tpg"/acls/*/; do
    [ -d "$a" ] || continue
    rm -f "$a"lun_0/lun0; rmdir "$a"lun_0 "$a" 2>/dev/null
  done
  [ -e "$tpg/np/$IP:$PORT/iser" ] && echo 0 >"$tpg/np/$IP:$PORT/iser" 2>/dev/null
  rmdir "$tpg/np/$IP:$PORT" 2>/dev/null
  rm -f "$tpg/lun/lun_0/lun0_link"
  rmdir "$tpg/lun/lun_0" "$tpg" "$CFS/iscsi/$IQN" 2>/dev/null
  [ ! -d "$tpg" ]
}

# lio_luns N: LUNs 1 .. N-1 of tpgt_1 besides LUN 0, each on its own 8 MiB ramdisk backstore
# (rd_mcp_1/lunK), after lio_target_up.
lio_luns() {
  local n=$1 k tpg=$CFS/iscsi/$IQN/tpgt_1 bs
  modprobe target_core_mod || return 1
  for k in $(seq 1 $((n - 1))); do
    bs=$CFS/core/rd_mcp_1/lun$k
    mkdir -p "$bs" && echo rd_pages=2048 >"$bs/control" && echo "iserrsserial$k" >"$bs/wwn/vpd_unit_serial" \
      && echo 1 >"$bs/enable" || { echo "ramdisk backstore $k" >&2; return 1; }
    mkdir -p "$tpg/lun/lun_$k" && ln -s "$bs" "$tpg/lun/lun_$k/lun${k}_link" || { echo "LUN $k" >&2; return 1; }
  done
}

lio_teardown() {
  lio_target_down
  lio_targets_remove_all
  # ALUA target port groups a test made (their LUNs are gone with the targets).
  local d
  for d in "$CFS"/core/*/*/alua/*/; do
    case $d in */default_tg_pt_gp/) ;; *) [ -d "$d" ] && rmdir "$d" ;; esac
  done 2>/dev/null
  rmdir "$CFS/core/iblock_0/nullb0" "$CFS/core/iblock_0" 2>/dev/null
  for d in "$CFS"/core/rd_mcp_*/*/; do [ -d "$d" ] && rmdir "$d"; done 2>/dev/null
  for d in "$CFS"/core/rd_mcp_*; do [ -d "$d" ] && rmdir "$d"; done 2>/dev/null
  dmsetup remove --noudevsync "$DM_DELAY" 2>/dev/null
  rmdir /sys/kernel/config/nullb/nullb0 2>/dev/null
  return 0
}

# lio_targets_remove_all: every iSCSI target in configfs, whatever created it (tests with
# many targets, portals or LUNs); returns non-zero if one is left.
lio_targets_remove_all() {
  local t tpg x
  [ -d "$CFS/iscsi" ] || return 0
  for t in "$CFS"/iscsi/iqn.* "$CFS"/iscsi/eui.* "$CFS"/iscsi/naa.*; do
    [ -d "$t" ] || continue
    for tpg in "$t"/tpgt_*; do
      [ -d "$tpg" ] || continue
      echo 0 >"$tpg/enable" 2>/dev/null
      for x in "$tpg"/acls/*/lun_*/*; do [ -L "$x" ] && rm -f "$x"; done
      for x in "$tpg"/acls/*/lun_*; do [ -d "$x" ] && rmdir "$x"; done
      for x in "$tpg"/acls/*; do [ -d "$x" ] && rmdir "$x"; done
      for x in "$tpg"/np/*; do
        [ -d "$x" ] || continue
        [ -e "$x/iser" ] && echo 0 >"$x/iser" 2>/dev/null
        rmdir "$x"
      done
      for x in "$tpg"/lun/lun_*/*; do [ -L "$x" ] && rm -f "$x"; done
      for x in "$tpg"/lun/lun_*; do [ -d "$x" ] && rmdir "$x"; done
      rmdir "$tpg"
    done
    rmdir "$t"
  done 2>/dev/null
  ! ls "$CFS/iscsi/" 2>/dev/null | grep -qE '^(iqn|eui|naa)\.'
}

# --- tgt (userspace target, rdma-core's rxe/siw providers) -------------------------------------
# tgt_setup [SIZE_MB]: tgtd with an iSER LUN on null_blk. tgt 1.0.85 (Debian 12): discovery
# only over TCP; its iSER listener is INADDR_ANY:3260 and cannot move (a bug in the port
# parser), so the TCP portal moves to TGT_TCP_PORT (on siw both would be TCP sockets on the
# same port); iSER logins need an IP ACL *and* an initiator-name ACL (fixed in tgt 1.0.95).
TGT_TCP_PORT=${TGT_TCP_PORT:-3262}
tgt_setup() {
  local size=${1:-256} nb=/sys/kernel/config/nullb/nullb0 i
  modprobe null_blk nr_devices=0 || return 1
  mkdir -p "$nb" && echo "$size" >"$nb/size" && echo 1 >"$nb/memory_backed" \
    && echo 512 >"$nb/blocksize" && echo 1 >"$nb/power" || return 1
  modprobe rdma_ucm && modprobe ib_uverbs || return 1
  mkdir -p /run/tgtd /var/run/tgtd
  setsid tgtd -f --iscsi "portal=$IP:$TGT_TCP_PORT" --iser pool_sz_mb=128 >"${ISER_RESULTS:-/tmp}/tgtd.log" 2>&1 &
  for i in $(seq 100); do tgtadm --mode system --op show >/dev/null 2>&1 && break; sleep 0.1; done
  tgtadm --lld iser --mode target --op new --tid 1 --targetname "$IQN" || return 1
  tgtadm --lld iser --mode logicalunit --op new --tid 1 --lun 1 --backing-store /dev/nullb0 \
    --bstype rdwr || return 1
  tgtadm --lld iser --mode target --op bind --tid 1 --initiator-address ALL || return 1
  tgtadm --lld iser --mode target --op bind --tid 1 \
    --initiator-name "$(sed -n 's/^InitiatorName=//p' /etc/iscsi/initiatorname.iscsi)" || return 1
}

tgt_teardown() {
  pgrep -x tgtd >/dev/null || { rmdir /sys/kernel/config/nullb/nullb0 2>/dev/null; return 0; }
  tgtadm --lld iser --mode target --op delete --force --tid 1 2>/dev/null
  tgtadm --mode system --op delete 2>/dev/null
  local i; for i in $(seq 50); do pgrep -x tgtd >/dev/null || break; sleep 0.1; done
  pkill -9 -x tgtd 2>/dev/null
  rmdir /sys/kernel/config/nullb/nullb0 2>/dev/null
  return 0
}

# --- open-iscsi -------------------------------------------------------------------------------
# Logouts are bracketed by markers in the kernel log ("iser-test: logout begin/end"): the
# target closes the connection after its Logout Response, and libiscsi with the C driver or
# iscsi_tcp reports that as a connection failure ("detected conn error"). The suite does not
# count a failure inside such a window as unexpected (ours reports none: it knows the session
# is logging out). `marked CMD...` runs any command so bracketed; `iscsiadm` with --logout,
# --logoutall, -u or -U brackets itself.
marked() {
  echo "iser-test: logout begin" >/dev/kmsg 2>/dev/null
  "$@"; local rc=$?
  echo "iser-test: logout end" >/dev/kmsg 2>/dev/null
  return $rc
}
iscsiadm() {
  case " $* " in
    *" --logout "*|*" --logoutall"*|*" -u "*|*" -U "*) marked command iscsiadm "$@" ;;
    *) command iscsiadm "$@" ;;
  esac
}

# initiator_name: the initiator's iSCSI name (iscsid's), set to the rig's default if unset.
initiator_name() {
  mkdir -p /etc/iscsi
  grep -qs "^InitiatorName=" /etc/iscsi/initiatorname.iscsi ||
    echo "InitiatorName=iqn.2026-11.org.iser-rs.test:initiator" >/etc/iscsi/initiatorname.iscsi
  sed -n 's/^InitiatorName=//p' /etc/iscsi/initiatorname.iscsi | head -n 1
}

iscsid_start() {
  mkdir -p /run/lock/iscsi
  initiator_name >/dev/null
  pgrep -x iscsid >/dev/null && return 0
  # setsid: on exit iscsid signals its own process group, which must not be ours.
  setsid iscsid -f >/tmp/iscsid.log 2>&1 &
  local i
  for i in $(seq 50); do [ -S /run/iscsid.sock ] || iscsiadm -m session >/dev/null 2>&1; [ $? -ne 4 ] && break; sleep 0.1; done
}

iscsid_stop() {
  pkill -x iscsid 2>/dev/null
  local i; for i in $(seq 50); do pgrep -x iscsid >/dev/null || return 0; sleep 0.1; done
  pkill -9 -x iscsid; return 0
}

# iscsi_objects: the kernel's iSCSI sessions and endpoints (sysfs paths), one per line.
iscsi_objects() {
  compgen -G '/sys/class/iscsi_session/session*'
  compgen -G '/sys/class/iscsi_endpoint/*'
  return 0
}

# destroy_iscsi_objects [PATH...]: tears down, over NETLINK_ISCSI as iscsid does at logout
# (tests/vm/iscsi_nl.py), iSCSI sessions and endpoints that no iscsid will log out: those a
# crashed iscsiadm or iscsid left behind. Default: all of them. In iscsid's order: each
# session's connections stopped for good (STOP_CONN_TERM; the class disconnects the endpoint
# bound to one), endpoints bound to none disconnected, then the connections and the session
# destroyed; each through the transport of the session's SCSI host (`proc_name`). Prints one
# line per request; non-zero if one was refused or anything is left.
destroy_iscsi_objects() {
  local objs=("$@") o rc=0 s c h pn th out
  local -A tr=()
  [ $# -gt 0 ] || mapfile -t objs < <(iscsi_objects)
  local nl="python3 $ISER_TOP/tests/vm/iscsi_nl.py"
  # _nl_transport SESSION: its transport's netlink handle.
  _nl_transport() {
    h=$(basename "$(dirname "$(readlink -f "/sys/class/iscsi_session/$1/device")")")
    pn=$(cat "/sys/class/scsi_host/$h/proc_name" 2>/dev/null)
    cat "/sys/class/iscsi_transport/${pn#iscsi_}/handle" 2>/dev/null ||
      { echo "$1: no transport for host $h ('$pn')" >&2; return 1; }
  }
  # _nl_request OBJECT ARGS...: one netlink request, its answer printed under OBJECT's name.
  _nl_request() {
    local n=$1; shift
    out=$($nl "$@" 2>&1) || rc=1
    echo "$n: $out"
  }
  for o in "${objs[@]}"; do
    [[ $o == */iscsi_session/* ]] && [ -e "$o" ] || continue
    s=${o##*/}
    th=$(_nl_transport "$s" 2>&1) || { echo "$th"; rc=1; continue; }
    tr[$s]=$th
    for c in /sys/class/iscsi_connection/connection"${s#session}":*; do
      [ -e "$c" ] && _nl_request "${c##*/}" stop_conn "$th" "${s#session}" "${c##*:}" 1
    done
  done
  for o in "${objs[@]}"; do
    [[ $o == */iscsi_endpoint/* ]] && [ -e "$o" ] || continue
    # Endpoints are iSER's here (iscsi_tcp has none).
    _nl_request "${o##*/}" ep_disconnect "$(cat /sys/class/iscsi_transport/iser/handle)" "$(cat "$o/handle")"
  done
  for s in "${!tr[@]}"; do
    [ -e "/sys/class/iscsi_session/$s" ] || continue
    th=${tr[$s]}
    for c in /sys/class/iscsi_connection/connection"${s#session}":*; do
      [ -e "$c" ] && _nl_request "${c##*/}" destroy_conn "$th" "${s#session}" "${c##*:}"
    done
    _nl_request "$s" destroy_session "$th" "${s#session}"
  done
  local i left=1
  for i in $(seq 100); do
    left=0
    for o in "${objs[@]}"; do [ -e "$o" ] && left=1; done
    [ $left = 0 ] && break
    sleep 0.1
  done
  [ $left = 0 ] || { echo "left after the netlink teardown: $(for o in "${objs[@]}"; do [ -e "$o" ] && echo -n "${o##*/} "; done)"; rc=1; }
  return $rc
}

# iser_discover PORTAL [ARGS...]: SendTargets discovery over iSER (`iscsiadm -m discovery -t
# st -p PORTAL -I iser ARGS`), quiet on success. open-iscsi's iscsiadm can miss the Text
# response when its netlink event overtakes the reply to the SEND_PDU request (open-iscsi
# issue 255; Documentation/devnotes.rst, twenty-second session): "Discovery session ... timed
# out", then a crash that leaves its session behind. Only on that message: what the failed
# discovery left is destroyed (destroy_iscsi_objects) and the discovery tried once more, with
# lines saying so on stderr (in the test's output). Any other failure is the caller's.
iser_discover() {
  local portal=$1 out rc before new; shift
  before=$(iscsi_objects)
  out=$(iscsiadm -m discovery -t st -p "$portal" -I iser "$@" 2>&1); rc=$?
  [ $rc = 0 ] && return 0
  echo "$out" >&2
  case $out in *"timed out"*) ;; *) return $rc ;; esac
  new=$(comm -13 <(echo "$before" | sort) <(iscsi_objects | sort))
  {
    echo "note: discovery at $portal timed out (open-iscsi's event race, devnotes); destroying what it left (${new//$'\n'/ }) and trying once more"
    # shellcheck disable=SC2086
    [ -z "$new" ] || destroy_iscsi_objects $new | sed 's/^/note:   /'
  } >&2
  iscsiadm -m discovery -t st -p "$portal" -I iser "$@" >/dev/null
}

# paced SECONDS: a rig timeout (one that waits for the emulated machine, never for the
# driver's own bound) scaled by the pace the suite measured for this VM (ISER_PACE, in
# hundredths of tests/vm/durations' time; 100 when run outside the suite), rounded up.
paced() {
  local p=${ISER_PACE:-100}
  [ "$p" -ge 100 ] 2>/dev/null || p=100
  echo $(( ($1 * p + 99) / 100 ))
}

# login_timeout: open-iscsi's node.conn[0].timeo.login_timeout for the rig's logins. iscsid
# starts that timer at the RDMA CM connect and stops it at the last Login Response, so on the
# emulated machine it is a rig wait: at 10 s, a CI machine at 1.32 times tests/vm/durations'
# pace took longer to connect and log in to tgt (userspace), iscsid stopped the connection for
# recovery, and the suite rightly failed a data test that injected no fault for the "session
# recovery timed out" that followed (2026-12-06). Tests that inject no fault get 20 s, fault
# tests (FAULTS=1) keep 10 s, which bounds each login attempt against a dead path and so
# their recovery times; both grow with the VM's measured pace.
login_timeout() {
  if [ "${FAULTS:-0}" = 1 ]; then paced 10; else paced 20; fi
}

# iser_login: discovery + login over iSER; prints the block device name (sdX).
iser_login() {
  local portal=${1:-$IP:$PORT} i dev
  if [ "${TARGET:-lio}" = tgt ]; then
    # tgt: discovery over TCP (on its moved portal), then an iSER record of the iSER portal.
    iscsiadm -m discovery -t st -p "$IP:$TGT_TCP_PORT" >&2 || return 1
    iscsiadm -m node -T "$IQN" -p "$IP:$TGT_TCP_PORT" -o delete >&2
    iscsiadm -m node -T "$IQN" -p "$portal" -I iser -o new >&2 || return 1
  else
    iser_discover "$portal" >&2 || return 1
  fi
  iser_node_settings "$portal" || return 1
  iscsiadm -m node -T "$IQN" -p "$portal" -I iser --login >&2 || return 1
  wait_first_disk dev && { echo "$dev"; return 0; }
  echo "no disk appeared after login; sessions: $(iscsiadm -m session -P 3 2>&1 | grep -E 'Current Portal|iSCSI Session State|Internal iscsid|Host Number|scsi disk' | tr -s ' \t' ' ' | tr '\n' ';'); sysfs: $(ls -d /sys/class/iscsi_session/*/device/target*/*/block/* 2>&1 | tr "\n" " "); /dev: $(ls -l /dev/sd* 2>&1 | tr "\n" " ")" >&2
  return 1
}

# iser_node_settings PORTAL: the rig's timeouts (and CMDS_MAX) in the node record of
# $IQN at PORTAL, for every later login through it. A discovery without -o updates every
# record its portal returns back to iscsid.conf's defaults (open-iscsi's compat default
# -o new -o delete -o update), so a test that discovers again re-applies them (mp_two_paths).
iser_node_settings() {
  local portal=$1
  iscsiadm -m node -T "$IQN" -p "$portal" -I iser -o update \
    -n node.session.timeo.replacement_timeout -v "${REPLACEMENT_TIMEOUT:-10}" >&2 || return 1
  iscsiadm -m node -T "$IQN" -p "$portal" -I iser -o update \
    -n 'node.conn[0].timeo.login_timeout' -v "$(login_timeout)" >&2 || return 1
  if [ -n "${CMDS_MAX:-}" ]; then
    iscsiadm -m node -T "$IQN" -p "$portal" -I iser -o update \
      -n node.session.cmds_max -v "$CMDS_MAX" >&2 || return 1
  fi
  # A target answers a NOP-Out only after the data transfers queued before it: tgt
  # (userspace) with 64 x 1 MiB writes in flight on the debug VM took longer than the default
  # 5 s ping timeout (seen on 7.3), and every re-login hit it again until replacement_timeout;
  # LIO does the same with 16 MiB writes on 7.3, and with 256 x 256 KiB writes in flight
  # (the parameter matrix's cmds_max 1024 cell: 10 s without a PDU from LIO, seen in CI on
  # 6.12) (NOOP_TIMEOUT, from tests.list). Both C and Rust initiators fail alike there with
  # the default.
  # Every test that injects no fault gets 30 s (on slow hosts, 2026-12-04/05, LIO left 5 s
  # pings of the data tests unanswered behind megabytes of queued writes, and the suite
  # rightly failed the test for the connection failure that followed); a 30 s ping hides
  # nothing a data test checks. Fault tests (FAULTS=1) keep open-iscsi's 5 s: they detect dead links by it.
  # These rig timeouts are for a machine at tests/vm/durations' pace: the suite passes the
  # pace its VM has shown (ISER_PACE, hundredths, at least 100) and they grow with it (a CI
  # machine at 1.44 times the pace, building the second kernel beside the VM, left a 60 s
  # ping of big_io unanswered, 2026-12-06).
  local noop=${NOOP_TIMEOUT:-}
  [ -n "$noop" ] || [ "${FAULTS:-0}" = 1 ] || noop=30
  [ -n "$noop" ] || [ "${TARGET:-lio}" != tgt ] || noop=30
  [ -z "$noop" ] || noop=$(paced "$noop")
  if [ -n "$noop" ]; then
    iscsiadm -m node -T "$IQN" -p "$portal" -I iser -o update \
      -n 'node.conn[0].timeo.noop_out_timeout' -v "$noop" >&2 || return 1
  fi
}

iser_logout() {
  iscsiadm -m node -T "$IQN" --logout >&2 || return 1
  iscsiadm -m node -o delete >&2 2>/dev/null
  iscsiadm -m discoverydb -t st -p "${1:-$IP:$PORT}" -o delete >&2 2>/dev/null
  iscsiadm -m discoverydb -t st -p "$IP:$TGT_TCP_PORT" -o delete >&2 2>/dev/null
  return 0
}

# session_logged_in: there is exactly one session, LOGGED_IN, with one connection, up.
# From sysfs, so that it works while iscsid is down, and with builtins only: it is polled.
session_logged_in() {
  local f v n=0
  for f in /sys/class/iscsi_session/session*/state; do
    read -r v 2>/dev/null <"$f" && [ "$v" = LOGGED_IN ] || return 1; n=$((n + 1))
  done
  [ $n = 1 ] || return 1
  n=0
  for f in /sys/class/iscsi_connection/connection*/state; do
    read -r v 2>/dev/null <"$f" && [ "$v" = up ] || return 1; n=$((n + 1))
  done
  [ $n = 1 ]
}

# wait_recovered DEV TIMEOUT_S: waits until the session is logged in again and a direct read
# of DEV completes; prints the seconds it took.
wait_recovered() {
  local dev=$1 tmo=${2:-120} t0 now
  t0=$EPOCHREALTIME
  while :; do
    if session_logged_in && dd if="/dev/$dev" of=/dev/null bs=4k count=1 iflag=direct 2>/dev/null; then
      now=$EPOCHREALTIME; awk -v a="$t0" -v b="$now" 'BEGIN { printf "%.1f\n", b - a }'; return 0
    fi
    now=${EPOCHREALTIME%.*}
    [ $(( now - ${t0%.*} )) -ge "$tmo" ] && { echo "not recovered after $tmo s" >&2; return 1; }
    sleep 0.2
  done
}

# Background I/O with verification during fault injection: fio_loop_start DEV runs verified
# fio jobs (random writes of 4k-64k at queue depth 16, every block read back and checked
# while writing and at the end) one after the other until fio_loop_stop; fio_loop_stop
# fails if any job failed and prints how many ran. DEV is a disk (sdX, dm-N) or a file
# (/path); the jobs write 4 MiB each in the 32 MiB from FIO_LOOP_BASE (MiB, 128; 0 for a
# file of 32 MiB); FIO_LOOP_BUFFERED=1 runs every other job through the page cache with an
# fsync at its end (a file system's writeback).
fio_loop_start() {
  local dev=$1
  rm -f /tmp/fio_loop.stop /tmp/fio_loop.fail; echo 0 >/tmp/fio_loop.n
  (
    n=0
    while [ ! -e /tmp/fio_loop.stop ]; do
      n=$((n + 1))
      buffered=()
      [ "${FIO_LOOP_BUFFERED:-0}" = 1 ] && [ $((n % 2)) = 0 ] && buffered=(--direct=0 --end_fsync=1)
      FIO_TAG=_$n fio_verify "$dev" loop --rw=randwrite --bsrange=4k-64k --iodepth=16 \
        --size=4M --offset=$(( (n % 8) * 4 + ${FIO_LOOP_BASE:-128} ))M --verify_backlog=64 \
        "${buffered[@]}" >>/tmp/fio_loop.log 2>&1 \
        || { echo "$n" >/tmp/fio_loop.fail; break; }
      echo "$n" >/tmp/fio_loop.n
    done
  ) &
  FIO_LOOP_PID=$!
}

fio_loop_stop() {
  touch /tmp/fio_loop.stop
  wait "$FIO_LOOP_PID"
  echo "verified fio jobs completed during the test: $(cat /tmp/fio_loop.n)"
  if [ -e /tmp/fio_loop.fail ]; then
    echo "fio job #$(cat /tmp/fio_loop.fail) failed:"; tail -n 30 /tmp/fio_loop.log; return 1
  fi
  [ "$(cat /tmp/fio_loop.n)" -gt 0 ] || { echo "no fio job completed"; return 1; }
}

# --- Kernel log -------------------------------------------------------------------------------
# Patterns that fail any test when they appear in the kernel log during it.
# Watchdogs (debug.config, thresholds in scripts/vm-run): soft lockups, RCU stalls,
# workqueue lockups and hung tasks; a Rust panic prints "panicked at" before its BUG.
SPLAT_RE='WARNING:|BUG:|KASAN|UBSAN|Oops|general protection fault|kernel BUG|possible circular locking|possible recursive locking|inconsistent lock state|INFO: lockdep is turned off|DEBUG_LOCKS_WARN_ON|sleeping function called from invalid context|suspected memory leak|blocked for more than|refcount_t:|list_add corruption|list_del corruption|ODEBUG|soft lockup|hard LOCKUP|self-detected stall|detected stalls on CPU|rcu_.* stall|workqueue lockup|Kernel panic|panicked at|Unable to handle|stack-protector|Bad page state'
# A connection failure as libiscsi reports it (iscsi_conn_failure, ping timeouts) or the
# replacement timeout expiring: expected only in tests that inject faults (FAULTS=1).
CONN_ERR_RE='detected conn error|ping timeout of [0-9]+ secs expired|session recovery timed out'

# conn_failures: the connection failures reported in the kernel log so far (since the last
# dmesg -C, i.e. since this test started), outside logouts (see `marked`).
conn_failures() { dmesg | unexpected_conn_errors | grep -c 'detected conn error' || true; }

# unexpected_conn_errors: filters a kernel log to its CONN_ERR_RE lines outside the logout
# windows that `marked` brackets.
unexpected_conn_errors() {
  awk -v re="$CONN_ERR_RE" '/iser-test: logout begin/ { inl = 1; next }
    /iser-test: logout end/ { inl = 0; next }
    !inl && $0 ~ re'
}

# --- Two paths and dm-multipath (issue 21) ------------------------------------------------------
# Path A is the rig's usual one ($IP on the virtio NIC, rxe0, LIO tpgt_1); path B is $IP_B on a
# dummy netdev with its own soft-RoCE device (rxe1) and LIO target portal group (tpgt_2),
# exporting the same backstore as LUN 0: two iSCSI sessions, two SCSI disks, one LUN.
IP_B=${IP_B:-10.78.0.1}
NETDEV_B=iserb0
RXE_B=rxe1

path_b_up() {
  [ -e /sys/class/net/$NETDEV_B ] || ip link add "$NETDEV_B" type dummy || return 1
  ip link set "$NETDEV_B" up
  ip addr show dev "$NETDEV_B" | grep -q "inet $IP_B/" || ip addr add "$IP_B/24" dev "$NETDEV_B" || return 1
  [ -d /sys/class/infiniband/$RXE_B ] || rdma link add "$RXE_B" type rxe netdev "$NETDEV_B" || return 1
  wait_gid "$RXE_B" "$IP_B"
}

path_b_down() {
  [ -d /sys/class/infiniband/$RXE_B ] && rdma link delete "$RXE_B"
  [ -e /sys/class/net/$NETDEV_B ] && ip link del "$NETDEV_B"
  return 0
}

# lio_tpg_up T ADDR: target portal group T of $IQN, an iSER portal on ADDR:$PORT, LUN 0 on
# the same backstore as tpgt_1 (lio_target_up first).
lio_tpg_up() {
  local tpg=$CFS/iscsi/$IQN/tpgt_$1 bs=$CFS/core/iblock_0/nullb0
  mkdir -p "$tpg/lun/lun_0" && ln -s "$bs" "$tpg/lun/lun_0/lun0_link" || return 1
  mkdir "$tpg/np/$2:$PORT" && echo 1 >"$tpg/np/$2:$PORT/iser" || return 1
  echo 0 >"$tpg/attrib/authentication"
  echo 1 >"$tpg/attrib/generate_node_acls"
  echo 1 >"$tpg/attrib/cache_dynamic_acls"
  echo 0 >"$tpg/attrib/demo_mode_write_protect"
  echo 1 >"$tpg/enable"
}
# lio_target2_up: portal group 2 on $IP_B (the second path of the multipath rig).
lio_target2_up() { lio_tpg_up 2 "$IP_B"; }

# lio_tpg_enable N 0|1: disables (every session through it is dropped, logins are refused)
# or enables target portal group N: a path failure on the target's side.
lio_tpg_enable() { echo "$2" >"$CFS/iscsi/$IQN/tpgt_$1/enable"; }

# mp_start: udevd (multipathd learns of SCSI disks only through udev's database and events)
# with only the block-device rules multipath needs, then multipathd with MP_CONF, or the
# rig's iSER configuration: every LIO LUN, both paths in one round-robin group (both carry
# I/O), path checks every second, queueing for NO_PATH_RETRY (5) checks once every path is
# down, then I/O errors; fast_io_fail_tmo, which multipathd writes into the iSCSI sessions'
# recovery_tmo (the replacement timeout), FAST_IO_FAIL (10) s. MP_SELECTOR: the path
# selector ("round-robin 0"; the bench's scaling rows also use "service-time 0").
MP_RULES="50-udev-default.rules 55-dm.rules 55-scsi-sg3_id.rules 56-dm-mpath.rules 58-scsi-sg3_symlink.rules 60-block.rules 60-persistent-storage.rules 60-persistent-storage-dm.rules 60-multipath.rules 95-dm-notify.rules"
mp_start() {
  modprobe -a dm_multipath dm_round_robin scsi_dh_alua || return 1
  mkdir -p /etc/udev/rules.d /etc/multipath /run/udev
  local f
  # Every other rule is masked: none may rename NICs or RDMA devices, load modules (ib_iser
  # among them) or run iSCSI scripts in the rig.
  for f in /lib/udev/rules.d/*.rules; do
    f=${f##*/}
    [[ " $MP_RULES " == *" $f "* ]] || ln -sfn /dev/null "/etc/udev/rules.d/$f"
  done
  cat >/etc/multipath.conf <<MPCONF
defaults {
    user_friendly_names  no
    find_multipaths      no
    polling_interval     1
    max_polling_interval 1
    no_path_retry        ${NO_PATH_RETRY:-5}
    fast_io_fail_tmo     ${FAST_IO_FAIL:-10}
    queue_without_daemon no
    skip_kpartx          yes
}
blacklist {
    device {
        vendor  ".*"
        product ".*"
    }
}
blacklist_exceptions {
    device {
        vendor  "LIO-ORG"
        product ".*"
    }
}
devices {
    device {
        vendor               "LIO-ORG"
        product              ".*"
        path_grouping_policy ${MP_POLICY:-multibus}
        path_selector        "${MP_SELECTOR:-round-robin 0}"
        path_checker         tur
$(mp_prio_conf)
        failback             immediate
        no_path_retry        ${NO_PATH_RETRY:-5}
    }
}
MPCONF
  pgrep -x systemd-udevd >/dev/null || /lib/systemd/systemd-udevd --daemon --resolve-names=never || return 1
  udevadm trigger --action=add --subsystem-match=block && udevadm settle --timeout=60
  # multipath's parser takes one keyword per line ("device { vendor ... }" on one line made
  # it drop the rest of the file): refuse a configuration it complains about.
  if multipath -t 2>&1 >/dev/null | grep -E 'invalid keyword|ignoring extra data' >&2; then
    echo "multipath.conf not accepted" >&2; return 1
  fi
  pgrep -x multipathd >/dev/null && return 0
  multipathd -d -s >/tmp/multipathd.log 2>&1 &
  local i; for i in $(seq 100); do multipathd show daemon >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "multipathd did not start: $(tail -n 5 /tmp/multipathd.log)" >&2; return 1
}

# mp_prio_conf: the path priority lines of multipath.conf. MP_PRIO=alua: priorities from the
# target's ALUA states through scsi_dh_alua (with MP_POLICY=group_by_prio, the
# active/optimized paths form the group that carries I/O); else every path alike.
mp_prio_conf() {
  if [ "${MP_PRIO:-const}" = alua ]; then
    printf '        %s\n' 'hardware_handler     "1 alua"' 'prio                 alua' 'detect_prio          no'
  else
    printf '        %s\n' 'prio                 const' 'detect_prio          no'
  fi
}

# mp_stop: multipathd gone, every multipath map flushed, udevd gone.
mp_stop() {
  multipathd shutdown >/dev/null 2>&1
  local i; for i in $(seq 50); do pgrep -x multipathd >/dev/null || break; sleep 0.2; done
  pkill -9 -x multipathd 2>/dev/null
  # A map with no path left may hold queued I/O: fail it, so that the map can go.
  local m
  for m in $(dmsetup ls --target multipath 2>/dev/null | awk '$1 != "No" { print $1 }'); do
    dmsetup message "$m" 0 fail_if_no_path >/dev/null 2>&1
  done
  multipath -F >/dev/null 2>&1
  for m in $(dmsetup ls --target multipath 2>/dev/null | awk '$1 != "No" { print $1 }'); do
    dmsetup remove --noudevsync "$m" >/dev/null 2>&1
  done
  local rc=0
  dmsetup ls --target multipath 2>/dev/null | grep -qv '^No devices' && { echo "multipath maps left: $(dmsetup ls --target multipath)" >&2; rc=1; }
  if pgrep -x systemd-udevd >/dev/null; then
    udevadm control --exit 2>/dev/null
    for i in $(seq 50); do pgrep -x systemd-udevd >/dev/null || break; sleep 0.2; done
    pkill -9 -x systemd-udevd 2>/dev/null
  fi
  rm -f /run/udev/control
  [ ! -e /tmp/multipathd.log ] || mv /tmp/multipathd.log "${ISER_RESULTS:-/tmp}/multipathd.log" 2>/dev/null || rm -f /tmp/multipathd.log
  return $rc
}

# The waits below ask multipathd once a second (its path checks run once a second): one
# exec per try, the rest builtins. Each is bounded at twice T at the VM's pace (paced): T
# used to count half-second tries, each of which took 1-2 s with its three execs.

# mp_map [N [T]]: the multipath map's dm device (dm-N), once it has N (default 2) active
# paths, waiting (T, 120 s: see above).
mp_map() {
  local want=${1:-2} tmo=${2:-120} end d k
  end=$((SECONDS + $(paced $((tmo * 2)))))
  while :; do
    while read -r d k; do
      [ "$k" = "$want" ] && { echo "$d"; return 0; }
    done < <(multipathd show maps raw format "%d %N" 2>/dev/null)
    [ $SECONDS -lt $end ] || break
    sleep 1
  done
  echo "no multipath map with $want active paths after $tmo s: $(multipathd show maps raw format '%n %d %N' 2>&1; multipathd show paths raw format '%d %t %T' 2>&1)" >&2
  return 1
}

# mp_paths: "sdX dm_state checker_state" per path.
mp_paths() { multipathd show paths raw format "%d %t %T" 2>/dev/null; }

# mp_wait_paths STATE_RE N [T]: waits (T, 120 s: see mp_map) until N paths match "dev
# STATE_RE" (an extended regular expression over "dm_state checker_state").
mp_wait_paths() {
  local re="^[^ ]+ (${1})\$" n=$2 tmo=${3:-120} end l k
  end=$((SECONDS + $(paced $((tmo * 2)))))
  while :; do
    k=0
    while read -r l; do [[ $l =~ $re ]] && k=$((k + 1)); done < <(mp_paths)
    [ "$k" -ge "$n" ] && return 0
    [ $SECONDS -lt $end ] || break
    sleep 1
  done
  echo "not $n paths '$1' after $tmo s: $(mp_paths | tr '\n' ';')" >&2; return 1
}

# mp_two_paths: logs in through path A ($IP) and path B ($IP_B) (after mp_start), waits for
# both disks (da, db: sdX) and the multipath map over them (dm: dm-N); the disks must be one
# LUN.
mp_two_paths() {
  iser_login "$IP:$PORT" >/dev/null || { echo "login, path A" >&2; return 1; }
  iser_login "$IP_B:$PORT" >/dev/null || { echo "login, path B" >&2; return 1; }
  wait_first_disk da 60 "$IP:$PORT"; wait_first_disk db 60 "$IP_B:$PORT"
  udevadm settle --timeout=60
  [ -n "$da" ] && [ -n "$db" ] && [ "$da" != "$db" ] \
    || { echo "two disks expected, path A '$da', path B '$db'" >&2; return 1; }
  [ "$(cat "/sys/block/$da/device/wwid")" = "$(cat "/sys/block/$db/device/wwid")" ] \
    || { echo "the two disks are not one LUN" >&2; return 1; }
  # Path B's discovery reset path A's record (iser_node_settings): a later login of path A
  # from it got open-iscsi's 5 s ping and failed under load (2026-12-06).
  iser_node_settings "$IP:$PORT" >/dev/null 2>&1 || { echo "node settings, path A" >&2; return 1; }
  dm=$(mp_map 2 120)
}

# mp_rig_targets: the target side of the two-path rig: rxe0 on $NETDEV (path A) and $RXE_B
# on $NETDEV_B (path B), one 256 MiB LUN behind LIO's tpgt_1 on $IP and tpgt_2 on $IP_B.
mp_rig_targets() {
  rdma_up rxe || { echo "rxe" >&2; return 1; }
  path_b_up || { echo "path B ($RXE_B on $NETDEV_B)" >&2; return 1; }
  lio_backstore 256 || { echo "LIO backstore" >&2; return 1; }
  lio_target_up || { echo "LIO tpgt_1" >&2; return 1; }
  lio_target2_up || { echo "LIO tpgt_2" >&2; return 1; }
}

# mp_rig_paths: the initiator side (after mp_rig_targets): ours loaded, iscsid, udevd and
# multipathd, both paths logged in and their map (da, db, dm: see mp_two_paths).
mp_rig_paths() {
  load_initiator "${ISER_IMPL:-rs}" || { echo "load" >&2; return 1; }
  iscsid_start
  mp_start || { echo "udevd and multipathd" >&2; return 1; }
  mp_two_paths || { echo "two paths and their multipath map" >&2; return 1; }
}

# both_carry_io SECONDS: waits until each path's disk ($da, $db) has completed more I/O than
# when called. The verified I/O runs as a loop of fio jobs with seconds between them (fio's
# start, the JSON check), and multipathd reloads the map when it reinstates a path: a fixed
# window saw neither disk move (2026-12-04).
both_carry_io() {
  local a0 b0 end=$((SECONDS + $1))
  a0=$(disk_ios "$da") b0=$(disk_ios "$db")
  while [ $SECONDS -lt $end ]; do
    [ "$(disk_ios "$da")" -gt "$a0" ] && [ "$(disk_ios "$db")" -gt "$b0" ] && return 0
    sleep 1
  done
  echo "$da $a0 -> $(disk_ios "$da"), $db $b0 -> $(disk_ios "$db") in $1 s"
  return 1
}

# disk_inflight DEV: the disk's reads + writes in flight (sent, not yet completed).
disk_inflight() { local r w; read -r r w <"/sys/block/$1/inflight"; echo $((r + w)); }

# disk_ios DEV: reads + writes the disk completed so far (builtins; path checks and ALUA
# queries are pass-through commands, not counted).
disk_ios() { local r x w; read -r r x x x w x <"/sys/block/$1/stat"; echo $((r + w)); }

# first_disk VAR [PORTAL [TARGET]]: sets VAR to the SCSI disk (sdX) with the lowest LUN of
# the session logged in through PORTAL (IPv4 ip:port; any portal if empty) to TARGET (an
# iSCSI name; any target if empty), or to "" if there is none yet. From sysfs, with
# builtins only and no subshell: it runs in polling loops, where `iscsiadm -m session -P 3
# | sed | head` cost three execs (some 2 s of the debug VM's CPU, taken from the login it
# waits for) per try.
first_disk() {
  local -n _fd_out=$1
  local _fd_p=${2:-} _fd_t=${3:-} _fd_s _fd_c _fd_b _fd_v _fd_l _fd_best=-1 _fd_a _fd_port
  _fd_out=
  if [ -n "$_fd_p" ]; then
    _fd_a=${_fd_p%:*} _fd_port=${_fd_p##*:}
    [[ $_fd_a == *:* ]] && { echo "first_disk: IPv6 portal $_fd_p not supported" >&2; return 1; }
  fi
  for _fd_s in /sys/class/iscsi_session/session*; do
    [ -d "$_fd_s" ] || continue
    if [ -n "$_fd_t" ]; then
      read -r _fd_v 2>/dev/null <"$_fd_s/targetname" && [ "$_fd_v" = "$_fd_t" ] || continue
    fi
    if [ -n "$_fd_p" ]; then
      # The connection's current address (the class prints it; empty while it is down).
      _fd_c=
      for _fd_c in /sys/class/iscsi_connection/connection"${_fd_s##*/session}":*; do break; done
      read -r _fd_v 2>/dev/null <"$_fd_c/address" && [ "$_fd_v" = "$_fd_a" ] || continue
      read -r _fd_v 2>/dev/null <"$_fd_c/port" && [ "$_fd_v" = "$_fd_port" ] || continue
    fi
    for _fd_b in "$_fd_s"/device/target*/*/block/*; do
      [ -e "$_fd_b" ] || continue
      _fd_l=${_fd_b%/block/*}; _fd_l=${_fd_l##*:}
      if [ "$_fd_best" -lt 0 ] || [ "$_fd_l" -lt "$_fd_best" ]; then _fd_best=$_fd_l _fd_out=${_fd_b##*/}; fi
    done
  done
  return 0
}

# wait_first_disk VAR [SECONDS [PORTAL [TARGET]]]: waits up to SECONDS (60, paced) until
# first_disk VAR PORTAL TARGET finds a disk (of any session if neither is given) with its
# /dev node; sets VAR to it, or to "" and returns non-zero. Bounded in time, not in tries:
# when each try ran `iscsiadm -P 3`, a 150-try loop once waited 10 minutes in a loaded
# debug VM.
wait_first_disk() {
  local -n _wd_out=$1
  local _wd_end=$((SECONDS + $(paced "${2:-60}")))
  while :; do
    first_disk _wd_out "${3:-}" "${4:-}" && [ -n "$_wd_out" ] && [ -b "/dev/$_wd_out" ] && return 0
    [ $SECONDS -lt $_wd_end ] || { _wd_out=; return 1; }
    sleep 0.2
  done
}

# session_disk PORTAL: prints the SCSI disk (sdX) of the session logged in through PORTAL
# (IPv4 ip:port), nothing if there is none (first_disk).
session_disk() { local d; first_disk d "$1" || return 1; [ -z "$d" ] || echo "$d"; }

# --- fio --------------------------------------------------------------------------------------
# fio_verify DEV NAME [FIO_ARGS...]: direct I/O with crc32c verification of every block
# written (data read back must equal data written); fails on any fio or verify error and
# prints one summary line. DEV is a disk (sdX, dm-N) or an existing file (/path); FIO_ARGS
# come last and override the defaults (--direct=0). JSON output goes to
# $ISER_RESULTS/fio_NAME.json.
fio_verify() {
  local dev=$1 name=$2 out f; shift 2
  f=/dev/$dev; [ "${dev#/}" = "$dev" ] || f=$dev
  out=$ISER_RESULTS/fio_$name${FIO_TAG:-}.json
  fio --name="$name" --filename="$f" --allow_file_create=0 --direct=1 --ioengine=libaio --verify=crc32c \
    --do_verify=1 --verify_fatal=1 --verify_state_save=0 --output-format=json --output="$out" \
    "$@" >"$out.err" 2>&1 || { cat "$out.err"; return 1; }
  # jq, not Python: starting Python costs seconds in the debug VM, and this runs per job.
  local s err rio rbw wio wbw
  s=$(jq -r '.jobs[0] | "\(.error) \(.read.total_ios) \(.read.bw / 1024) \(.write.total_ios) \(.write.bw / 1024)"' "$out") \
    || { echo "fio $name: no readable JSON in $out"; return 1; }
  read -r err rio rbw wio wbw <<<"$s"
  printf 'fio %-22s err=%d  read %6d IOs %7.1f MiB/s  write %6d IOs %7.1f MiB/s\n' \
    "$name${FIO_TAG:-}" "$err" "$rio" "$rbw" "$wio" "$wbw"
  [ "$err" = 0 ]
}

# iser_setup [MODPARAMS...]: $RDMA (rxe) + $TARGET (lio or tgt) + our initiator + iscsid,
# logged in; prints the disk.
# max_sectors_kb is raised to the host limit (sd caps it at LIO's optimal transfer size,
# 124 KiB), so large I/Os reach the initiator as large, multi-page registrations.
iser_setup() {
  local dev q
  rdma_up "${RDMA:-rxe}" >&2 || { echo "${RDMA:-rxe}" >&2; return 1; }
  load_initiator "${ISER_IMPL:-rs}" "$@" >&2 || { echo "load ib_iser" >&2; return 1; }
  iscsid_start >&2
  if [ "${TARGET:-lio}" = tgt ]; then
    tgt_setup "${LUN_MB:-256}" >&2 || { echo "tgt target" >&2; return 1; }
  else
    lio_setup "${LUN_MB:-256}" >&2 || { echo "LIO target" >&2; return 1; }
  fi
  dev=$(iser_login) || return 1
  q=/sys/block/$dev/queue
  # sd may revalidate the disk right after it appeared and reset the value: retry until it
  # sticks.
  local hw i; hw=$(cat $q/max_hw_sectors_kb)
  for i in $(seq 50); do
    echo "$hw" >$q/max_sectors_kb 2>/dev/null; sleep 0.2
    [ "$(cat $q/max_sectors_kb)" = "$hw" ] && break
  done
  [ "$(cat $q/max_sectors_kb)" = "$hw" ] || { echo "max_sectors_kb stays $(cat $q/max_sectors_kb)" >&2; return 1; }
  echo "$dev"
}
