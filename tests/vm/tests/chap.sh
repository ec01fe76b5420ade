#!/bin/bash
# CHAP: the target requires CHAP; the right secret logs in (multi-step login through the
# login buffer) and I/O works; a wrong secret fails with an authentication error and leaves
# no session.
. "$(dirname "$0")/../lib.sh"
rdma_up rxe || fail "rxe"
lio_setup 64 || fail "LIO target"
tpg=$CFS/iscsi/$IQN/tpgt_1
iscsid_start
ini=$(sed -n 's/^InitiatorName=//p' /etc/iscsi/initiatorname.iscsi)
# An explicit node ACL with CHAP credentials (demo-mode ACLs do not carry them).
echo 0 >"$tpg/attrib/generate_node_acls" && echo 1 >"$tpg/attrib/authentication" || fail "target: authentication"
acl=$tpg/acls/$ini
mkdir -p "$acl/lun_0" && ln -s "$tpg/lun/lun_0" "$acl/lun_0/lun0" || fail "target: node ACL"
# printf: LIO stores the value as written, a newline would be part of the name.
printf %s iser-user >"$acl/auth/userid" && printf %s iser-secret-12 >"$acl/auth/password" || fail "target: CHAP secret"
load_initiator "${ISER_IMPL:-rs}" || fail "load"
iser_discover "$IP:$PORT" || fail "discovery"
chap() {
  iscsiadm -m node -T "$IQN" -p "$IP:$PORT" -I iser -o update -n node.session.auth.authmethod -v CHAP &&
  # SHA-256 first: open-iscsi offers only MD5 by default, and the 7.3 test kernel has no
  # CONFIG_CRYPTO_MD5 (LIO: "Unsupported CHAP_A value").
  iscsiadm -m node -T "$IQN" -p "$IP:$PORT" -I iser -o update -n node.session.auth.chap_algs -v SHA256,MD5 &&
  iscsiadm -m node -T "$IQN" -p "$IP:$PORT" -I iser -o update -n node.session.auth.username -v "$1" &&
  iscsiadm -m node -T "$IQN" -p "$IP:$PORT" -I iser -o update -n node.session.auth.password -v "$2" &&
  iscsiadm -m node -T "$IQN" -p "$IP:$PORT" -I iser -o update -n 'node.conn[0].timeo.login_timeout' -v "$(login_timeout)"
}
chap iser-user wrong-secret-99 || fail "node update"
if out=$(iscsiadm -m node -T "$IQN" -p "$IP:$PORT" -I iser --login 2>&1); then
  fail "login with a wrong CHAP secret succeeded"
fi
log "wrong secret: $(echo "$out" | tail -n1)"
echo "$out" | grep -qi "auth" || fail "wrong secret did not fail as an authentication error: $out"
[ -z "$(ls /sys/class/iscsi_session 2>/dev/null)" ] || fail "session left after failed login"
chap iser-user iser-secret-12 || fail "node update"
iscsiadm -m node -T "$IQN" -p "$IP:$PORT" -I iser --login >/dev/null || fail "login with the right secret"
wait_first_disk dev || fail "no disk after CHAP login"
fio_verify "$dev" chap --rw=randwrite --bs=64k --iodepth=8 --size=4M || fail "I/O after CHAP login"
iser_logout || fail "logout"
rm -f "$acl/lun_0/lun0"; rmdir "$acl/lun_0" "$acl"
exit 0
