#!/bin/bash
# Login over an IPv6 portal ([fd77::1]:3260) and a short verified I/O.
. "$(dirname "$0")/../lib.sh"
rdma_up rxe || fail "rxe"
lio_setup 64 || fail "LIO target"
tpg=$CFS/iscsi/$IQN/tpgt_1
mkdir "$tpg/np/[$IP6]:$PORT" && echo 1 >"$tpg/np/[$IP6]:$PORT/iser" || fail "IPv6 iSER portal"
load_initiator "${ISER_IMPL:-rs}" || fail "load"
iscsid_start
dev=$(iser_login "[$IP6]:$PORT") || fail "login over IPv6"
conn=$(ls /sys/class/iscsi_connection)
addr=$(cat /sys/class/iscsi_connection/$conn/address)
log "connection address $addr"
# The class prints IPv6 addresses in full (%pI6); compare them normalised.
norm=$(python3 -c 'import ipaddress,sys; print(ipaddress.ip_address(sys.argv[1]))' "$addr")
[ "$norm" = "$IP6" ] || fail "connection is not over IPv6 ($addr)"
fio_verify "$dev" ipv6 --rw=randwrite --bs=64k --iodepth=8 --size=4M || fail "I/O over IPv6"
iscsiadm -m node -T "$IQN" --logout >/dev/null || fail "logout"
echo 0 >"$tpg/np/[$IP6]:$PORT/iser"; rmdir "$tpg/np/[$IP6]:$PORT"
exit 0
