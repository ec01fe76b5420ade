# SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
"""Constants of the wire and the rig, and helpers for PDUs and text keys. Part of target.py."""

import time


# --- constants -------------------------------------------------------------------------------
ISER_HDR = 28
BHS = 48
HDRS = ISER_HDR + BHS
RX_DATA = 8192 + 128           # receive buffers: iSER header + BHS + 8 KiB data (+ slack)
RX_BUF = HDRS + RX_DATA
N_RX = 512
TX_SLOT = HDRS + 8192 + 128
N_TX = 256
BIG_SLOT = 160 * 1024
N_BIG = 4
INI_RX_DATA = 128              # the initiator's full-feature-phase receive buffers
BLOCK = 512

OP_NOOP_OUT, OP_SCSI_CMD, OP_TMF, OP_LOGIN, OP_TEXT, OP_DATA_OUT, OP_LOGOUT = 0, 1, 2, 3, 4, 5, 6
OP_NOOP_IN, OP_SCSI_RSP, OP_TMF_RSP, OP_LOGIN_RSP, OP_TEXT_RSP = 0x20, 0x21, 0x22, 0x23, 0x24
OP_DATA_IN, OP_LOGOUT_RSP, OP_R2T, OP_ASYNC, OP_REJECT = 0x25, 0x26, 0x31, 0x32, 0x3f
OPNAMES = {0: 'NOP-Out', 1: 'SCSI-Cmd', 2: 'TMF', 3: 'Login', 4: 'Text', 5: 'Data-Out',
           6: 'Logout', 0x10: 'SNACK', 0x1c: 'Vendor'}
RSV_ITT = 0xffffffff
M32 = 0xffffffff

SAM_GOOD, SAM_CHECK = 0x00, 0x02
SK_ILLEGAL = 0x05


def now():
    return time.monotonic()


def hexdump(b, n=64):
    return b[:n].hex() + ('...' if len(b) > n else '')


def be24(v):
    return bytes(((v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff))


def sense_fixed(key, asc, ascq=0):
    s = bytearray(18)
    s[0] = 0x70
    s[2] = key & 0x0f
    s[7] = 10
    s[12] = asc
    s[13] = ascq
    return bytes(s)


def parse_keys(data):
    """Text keys of a Login/Text PDU: an ordered list of (key, value)."""
    out = []
    for kv in data.split(b'\0'):
        if not kv:
            continue
        k, _, v = kv.decode('ascii', 'replace').partition('=')
        out.append((k, v))
    return out


def enc_keys(kvs):
    return b''.join(('%s=%s' % (k, v)).encode() + b'\0' for k, v in kvs)


def num(v, default=0):
    try:
        return int(v, 0)
    except (TypeError, ValueError):
        return default
