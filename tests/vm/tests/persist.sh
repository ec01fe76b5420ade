#!/bin/bash
# Data written in one session is read back intact after logout and a new login.
. "$(dirname "$0")/../lib.sh"
dev=$(iser_setup) || fail "setup/login"
fio_verify "$dev" persist --rw=write --bs=128k --iodepth=16 --size=32M --do_verify=0 || fail "write"
iser_logout || fail "logout"
dev=$(iser_login) || fail "second login"
FIO_TAG=_second fio_verify "$dev" persist --rw=write --bs=128k --iodepth=16 --size=32M \
  --verify_only=1 || fail "data written in the first session did not read back intact"
iser_logout || fail "second logout"
exit 0
