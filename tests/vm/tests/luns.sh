#!/bin/bash
# Many LUNs behind one target (issue 21): NLUNS (8) LUNs, LUN 0 on null_blk and the others on
# ramdisks. Every LUN appears as a disk of the one session, and each disk is the LUN it says
# it is: a block naming its LUN is written to every disk, then every disk is read back
# (a LUN mix-up in the initiator's addressing would put one LUN's block on another).
# Then max_lun: loaded with max_lun=MAXLUN (3), ours shows the same LUNs as the C driver
# with the same parameter, and none above MAXLUN (the SCSI midlayer's REPORT LUNS scan skips
# LUNs above the host's max_lun).
. "$(dirname "$0")/../lib.sh"
N=${NLUNS:-8}
MAXLUN=${MAXLUN:-3}
rdma_up rxe || fail "rxe"
lio_backstore 256 || fail "LIO backstore"
lio_target_up || fail "LIO target"
lio_luns "$N" || fail "LIO LUNs"
iscsid_start

# lun_list: the LUN numbers of the session's disks, sorted, on one line ("0 1 2 ...").
lun_list() {
  local d l=()
  for d in /sys/class/iscsi_session/session*/device/target*/*:*:*:*/block/*; do
    [ -e "$d" ] || continue
    d=${d%/block/*}; l+=("${d##*:}")
  done
  printf '%s\n' "${l[@]}" | sort -n | tr '\n' ' ' | sed 's/ *$//'
}
# luns [COUNT]: lun_list once COUNT disks are there, or (no COUNT) once it has been the same
# for 3 s (the scan after login is asynchronous).
luns() {
  local want=${1:-} i l prev= same=0
  for i in $(seq 300); do
    l=$(lun_list)
    if [ -n "$want" ]; then [ "$(wc -w <<<"$l")" = "$want" ] && break
    elif [ -n "$l" ] && [ "$l" = "$prev" ]; then same=$((same + 1)); [ $same -ge 15 ] && break
    else same=0; fi
    prev=$l; sleep 0.2
  done
  echo "$l"
}
# disk_of LUN: the sdX of that LUN.
disk_of() {
  local d
  for d in /sys/class/iscsi_session/session*/device/target*/*:*:*:"$1"/block/*; do
    [ -e "$d" ] && { echo "${d##*/}"; return 0; }
  done
  return 1
}

load_initiator rs || fail "load ours"
iser_login >/dev/null || fail "login"
all=$(luns "$N")
[ "$all" = "$(seq -s ' ' 0 $((N - 1)))" ] || fail "LUNs seen: '$all', expected 0 .. $((N - 1))"
log "ours, default max_lun: LUNs $all"
for k in $(seq 0 $((N - 1))); do
  d=$(disk_of "$k") || fail "no disk for LUN $k"
  printf 'iser-rs LUN %03d\n%4080s\n' "$k" "" | dd of="/dev/$d" bs=4096 count=1 oflag=direct conv=sync 2>/dev/null \
    || fail "write to LUN $k ($d)"
done
for k in $(seq 0 $((N - 1))); do
  d=$(disk_of "$k")
  got=$(dd if="/dev/$d" bs=4096 count=1 iflag=direct 2>/dev/null | head -n 1)
  [ "$got" = "$(printf 'iser-rs LUN %03d' "$k")" ] || fail "LUN $k ($d) holds '$got'"
done
log "each of the $N disks holds the block written to its LUN"
FIO_TAG=_luns fio_verify "$(disk_of $((N - 1)))" last_lun --rw=randwrite --bsrange=4k-64k --iodepth=8 --size=4M \
  || fail "verified I/O on LUN $((N - 1))"
iser_logout || fail "logout"
unload_initiator || fail "rmmod"

# max_lun, ours and the C driver
for impl in rs c; do
  load_initiator "$impl" max_lun="$MAXLUN" || fail "load $impl with max_lun=$MAXLUN"
  iser_login >/dev/null || fail "login ($impl, max_lun=$MAXLUN)"
  l=$(luns)
  log "$impl, max_lun=$MAXLUN: LUNs $l"
  eval "seen_$impl=\$l"
  iser_logout || fail "logout ($impl)"
  unload_initiator || fail "rmmod ($impl)"
done
[ "$seen_rs" = "$seen_c" ] || fail "max_lun=$MAXLUN: ours shows LUNs '$seen_rs', the C driver '$seen_c'"
for k in $seen_rs; do [ "$k" -le "$MAXLUN" ] || fail "max_lun=$MAXLUN: LUN $k is shown"; done
[ "$(wc -w <<<"$seen_rs")" -ge 1 ] || fail "max_lun=$MAXLUN: no LUN shown"
iscsid_stop
lio_targets_remove_all || fail "targets left"
exit 0
