# SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
"""Offline checks of the PDU logic (no RDMA): target.py --selftest. Part of target.py."""

import os
import struct
import time

from adv_pdu import (BHS, HDRS, ISER_HDR, M32, OP_ASYNC, OP_DATA_OUT, OP_LOGIN, OP_LOGIN_RSP,
    OP_NOOP_IN, OP_NOOP_OUT, OP_REJECT, OP_SCSI_CMD, OP_SCSI_RSP, OP_TEXT, OP_TMF, OP_TMF_RSP,
    RSV_ITT, be24, enc_keys, now)
from adv_log import Log
from adv_scenario import Scenario
from adv_state import Target
from adv_conn import Conn


# --- self test (no RDMA) -----------------------------------------------------------------------
class FakeTarget(Target):
    def __init__(self, *a):
        super().__init__(*a)
        self.lun = bytearray(self.lun_bytes + 1024 * 1024)
        self.stage_off = self.lun_bytes
        self.lun_stage = lambda off, data: self.lun.__setitem__(slice(off, off + len(data)), data)

    def lun_write(self, off, data):
        self.lun[off:off + len(data)] = data



class FakeConn(Conn):
    def __init__(self, t, num):
        super().__init__(t, num)
        self.sent = []
        self.mem = {}       # (stag) -> bytearray

    def post_send_raw(self, pdu, inv):
        self.sent.append((pdu, inv))

    def post_rdma(self, kind, holder, local, length, stag, va):
        m = self.mem.setdefault(stag, bytearray(1 << 20))
        if kind == 'write':
            m[va:va + length] = self.t.lun[local:local + length]
        else:
            self.t.lun[local:local + length] = m[va:va + length]
        self.rdma_done(holder, kind, True, 0)

    def do_disconnect(self, why):
        self.log('disconnect (%s)' % why)
        self.dead = True

    def qp_to_error(self, why):
        self.dead = True


def pdu(op, flags, itt, cmdsn=1, data=b'', cdb=b'', edtl=0, iser=(0x10, 0, 0, 0, 0), f20=RSV_ITT,
        imm=False, csg_nsg=0):
    b = bytearray(BHS)
    b[0] = op | (0x40 if imm else 0)
    b[1] = flags
    b[5:8] = be24(len(data))
    struct.pack_into('>IIII', b, 16, itt, edtl if op == OP_SCSI_CMD else f20, cmdsn, 0)
    b[32:32 + len(cdb)] = cdb
    return struct.pack('>B3xIQIQ', *iser) + bytes(b) + data


def selftest():
    class A:
        ip, port, iqn, lun_mb = '10.77.0.1', 3262, 'iqn.2026-12.org.iser-rs:adv', 32
    log = Log(None)
    scn = Scenario('')
    t = FakeTarget(A, scn, log)
    c = FakeConn(t, 1)
    c.on_recv(pdu(OP_LOGIN, 0x81, 1, data=enc_keys([('InitiatorName', 'iqn.x'), ('SessionType', 'Normal'),
                                                    ('TargetName', A.iqn), ('AuthMethod', 'None')]), imm=True))
    c.on_recv(pdu(OP_LOGIN, 0x87, 1, data=enc_keys([('HeaderDigest', 'None'), ('MaxBurstLength', '16776192'),
                                                    ('RDMAExtensions', 'Yes'), ('InitialR2T', 'No')]), imm=True))
    assert c.ffp, c.sent
    rsp = c.sent[-1][0]
    assert rsp[ISER_HDR] == OP_LOGIN_RSP and rsp[ISER_HDR + 1] == 0x87, rsp[:HDRS].hex()
    # write 8 blocks at LBA 100: 4 KiB immediate would be up to 8192; use 1 KiB imm + RDMA READ
    c.mem[0x55] = bytearray(b'\xab' * (1 << 20))
    cdb = struct.pack('>BBIBHB', 0x2a, 0, 100, 0, 8, 0)
    c.on_recv(pdu(OP_SCSI_CMD, 0xa0, 7, cmdsn=1, data=b'\xcd' * 1024, cdb=cdb, edtl=4096,
                  iser=(0x18, 0x55, 1024, 0, 0)))
    assert t.lun[100 * 512:100 * 512 + 1024] == b'\xcd' * 1024
    assert t.lun[100 * 512 + 1024:100 * 512 + 4096] == b'\xab' * 3072
    r = c.sent[-1][0]
    assert r[ISER_HDR] == OP_SCSI_RSP and r[ISER_HDR + 3] == 0, r.hex()
    assert struct.unpack_from('>I', r, ISER_HDR + 32)[0] == t.exp_cmdsn + 31
    cdb = struct.pack('>BBIBHB', 0x28, 0, 100, 0, 8, 0)
    c.on_recv(pdu(OP_SCSI_CMD, 0xc0, 8, cmdsn=2, cdb=cdb, edtl=4096, iser=(0x14, 0, 0, 0x66, 0)))
    assert c.mem[0x66][:4096] == t.lun[100 * 512:100 * 512 + 4096]
    c.on_recv(pdu(OP_SCSI_CMD, 0xc0, 9, cmdsn=3, cdb=bytes([0x12, 0, 0, 0, 36, 0]), edtl=36,
                  iser=(0x14, 0, 0, 0x77, 0)))
    assert c.mem[0x77][8:16] == b'ISERADV ', c.mem[0x77][:36]
    c.on_recv(pdu(OP_SCSI_CMD, 0x80, 10, cmdsn=4, cdb=bytes([0xee]), edtl=0))
    r = c.sent[-1][0]
    assert r[ISER_HDR + 3] == 2 and r[HDRS + 2 + 12] == 0x20, r.hex()
    c.on_recv(pdu(OP_NOOP_OUT, 0x80, 11, cmdsn=5, imm=True))
    assert c.sent[-1][0][ISER_HDR] == OP_NOOP_IN
    # scenario rules
    scn2 = Scenario('''
cm rep=80000000
login_key MaxRecvDataSegmentLength=0 -TargetPortalGroupTag
on read lba=8192 n=1: rdma_write len=edtl+4096 ; resp resid=under:512 status=2 sense=sense:5,0x24
on read lba=8192 n=2: send op=0x21 itt=cmd.itt dlen=70000 data=zeros:200 iser=flags:0x10
on write lba=8192: drop
on nopout: resp data=fill:300
on cmd op=0x00: reject reason=9
on tmf: drop
after 2s: nopin count=3 ; async event=1 p3=2 ; window 0 ; window max=expcmdsn-2
''')
    t2 = FakeTarget(A, scn2, log)
    c2 = FakeConn(t2, 1)
    t2.exp_cmdsn = 1
    c2.on_recv(pdu(OP_SCSI_CMD, 0xc0, 20, cmdsn=1, cdb=struct.pack('>BBIBHB', 0x28, 0, 8192, 0, 8, 0),
                   edtl=4096, iser=(0x14, 0, 0, 0x66, 0)))
    r = c2.sent[-1][0]
    assert r[ISER_HDR + 3] == 2 and r[ISER_HDR + 1] == 0x82, r.hex()
    c2.on_recv(pdu(OP_SCSI_CMD, 0xc0, 21, cmdsn=2, cdb=struct.pack('>BBIBHB', 0x28, 0, 8192, 0, 8, 0),
                   edtl=4096, iser=(0x14, 0, 0, 0x66, 0)))
    r = c2.sent[-1][0]
    assert len(r) == HDRS + 200 and r[ISER_HDR + 5:ISER_HDR + 8] == be24(70000), r[:HDRS].hex()
    n = len(c2.sent)
    c2.on_recv(pdu(OP_SCSI_CMD, 0xa0, 22, cmdsn=3, cdb=struct.pack('>BBIBHB', 0x2a, 0, 8192, 0, 8, 0),
                   edtl=4096, iser=(0x18, 0x55, 0, 0, 0)))
    assert len(c2.sent) == n
    c2.on_recv(pdu(OP_NOOP_OUT, 0x80, 23, cmdsn=4, imm=True))
    assert len(c2.sent[-1][0]) == HDRS + 300
    c2.on_recv(pdu(OP_SCSI_CMD, 0x80, 24, cmdsn=4, cdb=bytes(6), edtl=0))
    assert c2.sent[-1][0][ISER_HDR] == OP_REJECT
    t2.timers.append([now(), scn2.timers[0][2], c2, 'x'])
    t2.run_timers()
    assert c2.sent[-1][0][ISER_HDR] == OP_ASYNC, c2.sent[-1][0][:HDRS].hex()
    assert t2.max_cmdsn() == (t2.exp_cmdsn - 2) & M32
    # text / discovery with continuation
    scn3 = Scenario('text_targets 100\ntext_chunk 4096\n')
    t3 = FakeTarget(A, scn3, log)
    c3 = FakeConn(t3, 1)
    c3.on_recv(pdu(OP_LOGIN, 0x87, 1, data=enc_keys([('SessionType', 'Discovery'),
                                                    ('MaxRecvDataSegmentLength', '32768')]), imm=True))
    assert c3.ffp and c3.discovery
    got = b''
    ttt = RSV_ITT
    for i in range(50):
        c3.on_recv(pdu(OP_TEXT, 0x80, 2, data=b'SendTargets=All\0' if i == 0 else b'', f20=ttt, imm=True))
        r = c3.sent[-1][0]
        got += r[HDRS:]
        ttt = struct.unpack_from('>I', r, ISER_HDR + 20)[0]
        if r[ISER_HDR + 1] & 0x80:
            break
    assert got.count(b'TargetName=') == 101, got.count(b'TargetName=')
    scn4 = Scenario('''
on read lba=8192 n=1: drop
on tmf n=1: resp ; rdma_write stag=ref.read_stag va=ref.read_va len=4096 ; send op=0x21 itt=ev.rtt trunc=40
''')
    t4 = FakeTarget(A, scn4, log)
    c4 = FakeConn(t4, 1)
    t4.exp_cmdsn = 1
    c4.on_recv(pdu(OP_SCSI_CMD, 0xc0, 30, cmdsn=1, cdb=struct.pack('>BBIBHB', 0x28, 0, 8192, 0, 8, 0),
                   edtl=4096, iser=(0x14, 0, 0, 0x99, 0x1000)))
    assert not c4.sent
    c4.on_recv(pdu(OP_TMF, 0x81, 31, cmdsn=2, f20=30, imm=True))
    assert c4.sent[0][0][ISER_HDR] == OP_TMF_RSP and len(c4.sent[1][0]) == 40, c4.sent
    assert 0x99 in c4.mem
    # A LUN reset names no task: ref.* is the open command; the rule's actions count as
    # running (LOG.st) until the sleep and the write are done.
    log6 = Log(None)
    t6 = FakeTarget(A, Scenario('''
on read lba=8192 n=1: drop
on tmf tmf=5 n=1: resp ; sleep 0.05 ; rdma_write stag=ref.read_stag va=ref.read_va len=8
'''), log6)
    c6 = FakeConn(t6, 1)
    t6.exp_cmdsn = 1
    c6.on_recv(pdu(OP_SCSI_CMD, 0xc0, 50, cmdsn=1, cdb=struct.pack('>BBIBHB', 0x28, 0, 8192, 0, 8, 0),
                   edtl=4096, iser=(0x14, 0, 0, 0x9a, 0x1000)))
    assert not c6.sent and log6.running == 0, (c6.sent, log6.running)
    c6.on_recv(pdu(OP_TMF, 0x85, 51, cmdsn=2, f20=RSV_ITT, imm=True))
    assert c6.sent[0][0][ISER_HDR] == OP_TMF_RSP and 0x9a not in c6.mem and log6.running == 1
    time.sleep(0.06)
    t6.step_tasks()
    assert 0x9a in c6.mem and log6.running == 0, (sorted(c6.mem), log6.running)
    # unsolicited Data-Out (InitialR2T=No)
    t5 = FakeTarget(A, Scenario('login_key InitialR2T=No FirstBurstLength=262144'), log)
    c5 = FakeConn(t5, 1)
    c5.on_recv(pdu(OP_LOGIN, 0x87, 1, data=enc_keys([('InitialR2T', 'No'), ('FirstBurstLength', '262144')]),
                   imm=True))
    cdb = struct.pack('>BBIBHB', 0x2a, 0, 200, 0, 64, 0)
    c5.on_recv(pdu(OP_SCSI_CMD, 0xa0, 40, cmdsn=1, data=b'\x01' * 8192, cdb=cdb, edtl=32768))
    for i in range(1, 4):
        b = bytearray(pdu(OP_DATA_OUT, 0x80 if i == 3 else 0, 40, data=bytes([i + 1]) * 8192))
        struct.pack_into('>I', b, ISER_HDR + 40, i * 8192)
        c5.on_recv(bytes(b))
    time.sleep(0.01)
    t5.step_tasks()
    r = c5.sent[-1][0]
    assert r[ISER_HDR] == OP_SCSI_RSP and r[ISER_HDR + 3] == 0, r[:HDRS].hex()
    assert t5.lun[200 * 512:200 * 512 + 32768] == b''.join(bytes([i + 1]) * 8192 for i in range(4))
    for f in sorted(os.listdir(os.path.dirname(os.path.abspath(__file__)))):
        if f.endswith('.scn'):
            Scenario(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), f)).read())
    print('selftest ok')
