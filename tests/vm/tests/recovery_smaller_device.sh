#!/bin/bash
# A session whose connection comes back on a device that cannot carry it (issue 20 item 3):
# logged in over soft-RoCE with max_sectors=4096 (2 MiB I/Os, 512 pages per registration:
# rxe registers up to 512, soft-iWARP up to 256), then rxe0 is replaced by siw0 on the same
# netdev and address. Recovery reconnects over siw0; the bind must be refused with the reason
# (the session's SCSI host keeps the limits it was created with) instead of binding a
# connection that would requeue every large command until the SCSI timeout. Then logout
# works, and a new login over siw0 is sized for it, with verified I/O of 2 MiB requests.
. "$(dirname "$0")/../lib.sh"
dev=$(REPLACEMENT_TIMEOUT=120 iser_setup max_sectors=4096) || fail "setup/login"
fio_verify "$dev" rxe --rw=write --bs=2M --iodepth=2 --size=8M || fail "I/O over rxe"
timeout 60 rdma link delete rxe0 || fail "rdma link delete rxe0"
rdma_up siw || fail "siw0"
lio_relisten || fail "target listener on siw0"
# iscsid reconnects every few seconds; the first bind on siw0 must be refused with the reason.
for _ in $(seq 120); do
  dmesg | grep -q "cannot bind the connection to .* on siw0 to its session" && break
  sleep 1
done
line=$(dmesg | grep -m1 "cannot bind the connection to .* on siw0 to its session") \
  || fail "no refused bind on siw0 within 120 s ($(cat /sys/class/iscsi_session/session*/state 2>/dev/null))"
log "refused: ${line#*] }"
# "(H > C)": the pages the session's host sends per command, the pages a connection on siw0
# can register.
[[ $line =~ \(([0-9]+)\ \>\ ([0-9]+)\) ]] || fail "the refusal does not name the page counts: $line"
[ "${BASH_REMATCH[1]}" -gt "${BASH_REMATCH[2]}" ] && [ "${BASH_REMATCH[2]}" -le 256 ] \
  || fail "unexpected page counts in: $line"
session_logged_in && fail "the session logged in on a device that cannot carry it"
marked timeout 60 iscsiadm -m node -T "$IQN" --logout >/dev/null || fail "logout of the recovering session"
iscsiadm -m node -o delete >/dev/null 2>&1
dev=$(iser_login) || fail "login over siw0"
mb=$(cat "/sys/block/$dev/queue/max_hw_sectors_kb")
log "new session over siw0: max_hw_sectors_kb $mb"
[ "$mb" -le 1024 ] || fail "the new session is not sized for siw0 (max_hw_sectors_kb $mb)"
echo "$mb" >"/sys/block/$dev/queue/max_sectors_kb"
fio_verify "$dev" siw --rw=write --bs=1M --iodepth=2 --size=8M --offset=16M || fail "I/O over siw0"
iser_logout || fail "logout"
exit 0
