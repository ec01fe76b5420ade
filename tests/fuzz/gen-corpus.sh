#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
#
# Writes the seed corpora under tests/fuzz/corpus/<target>/ (committed; rerun after changing
# an input layout, see src/lib.rs). Byte layouts as tests/host/src/rx_tests.rs builds them.
set -euo pipefail
cd "$(dirname "$0")"
out=corpus

# hex "10 00 ff" -> raw bytes on stdout
hex() { local b; for b in $*; do printf "\\x$b"; done; }
zeros() { head -c "$1" /dev/zero; }
# be16 N -> two bytes, big-endian
be16() { hex "$(printf '%02x %02x' $(($1 >> 8)) $(($1 & 255)))"; }

ctrl_hdr() { hex 10; zeros 27; }                        # iSER header, no STags
rdma_hdr() {                                             # W and R STags valid
  hex 1c 00 00 00  11 22 33 44  01 02 03 04 05 06 07 08  aa bb cc dd  f0 e0 d0 c0 b0 a0 90 80
}
# bhs OPCODE FLAGS DLEN ITT(4 hex bytes as stored, little-endian host order)
bhs() {
  hex "$1" "$2" 00 00  00 "$(printf '%02x %02x %02x' $(($3 >> 16)) $((($3 >> 8) & 255)) $(($3 & 255)))"
  zeros 8; hex $4; zeros 4
  hex 00 00 00 07  00 00 00 10  00 00 00 4f                # StatSN, ExpCmdSN, MaxCmdSN
  zeros 12
}
sense() { hex 00 12; hex 70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 00; }   # 18 bytes
login_data() { printf 'HeaderDigest=None\0DataDigest=None\0'; }                # 34 bytes

rm -rf "$out"
mkdir -p "$out"/{rx_parse,bhs_decode,hdr_decode,cm_reply,param_parse}

# rx_parse: sel pool(u16, % 4096 + 1) byte_len(u16), then the buffer.
{ hex 00; be16 127; be16 $((76 + 18)); ctrl_hdr; bhs 21 80 18 "05 00 00 00"; sense; } \
  >"$out/rx_parse/scsi-rsp-sense"
{ hex 01; be16 127; be16 $((76 + 34)); ctrl_hdr; bhs 23 87 34 "00 00 00 00"; login_data; } \
  >"$out/rx_parse/login-rsp"
{ hex 00; be16 127; be16 76; ctrl_hdr; bhs 20 80 0 "ff ff ff ff"; } >"$out/rx_parse/nop-in-unsolicited"
{ hex 02; be16 0; be16 0; rdma_hdr; bhs 26 80 0 "00 00 00 00"; } >"$out/rx_parse/logout-rsp-rdma-hdr"

# bhs_decode: sel received_len(u16), then the buffer from the BHS on.
{ hex 00; be16 $((48 + 18)); bhs 21 80 18 "05 00 00 00"; sense; } >"$out/bhs_decode/scsi-rsp-sense"
{ hex 01; be16 $((48 + 34)); bhs 23 87 34 "00 00 00 00"; login_data; } >"$out/bhs_decode/login-rsp"
{ hex 00; be16 48; bhs 20 80 0 "ff ff ff ff"; } >"$out/bhs_decode/nop-in-unsolicited"
{ hex 00; be16 48; bhs 32 80 0 "ff ff ff ff"; } >"$out/bhs_decode/async-msg"

# hdr_decode: the iSER header alone.
ctrl_hdr >"$out/hdr_decode/ctrl"
rdma_hdr >"$out/hdr_decode/write-read"
{ hex 18 00 00 00  00 00 10 01  00 00 00 00 12 34 50 00; zeros 12; } >"$out/hdr_decode/write"

# cm_reply: the CM private data.
hex 00 00 00 00 >"$out/cm_reply/zero"
hex 80 00 00 00 >"$out/cm_reply/zbva-not-used"
hex c0 00 00 00 >"$out/cm_reply/no-send-w-inv"

# param_parse: module parameter strings as written to sysfs.
printf '1\n' >"$out/param_parse/one-newline"
printf '128' >"$out/param_parse/lun"
printf '+8388607' >"$out/param_parse/max-sectors-limit"
printf '4294967295' >"$out/param_parse/u32-max"
printf '4294967296' >"$out/param_parse/overflow"
printf '0' >"$out/param_parse/zero"

find "$out" -type f | sort | while read -r f; do printf '%5d %s\n' "$(stat -c %s "$f")" "$f"; done
