# SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
"""One iSER connection: PDUs in, answers and RDMA operations out, the scenario's rules. Part of target.py."""

import struct

from adv_pdu import (BHS, BLOCK, HDRS, ISER_HDR, M32, OPNAMES, OP_ASYNC, OP_DATA_OUT, OP_LOGIN,
    OP_LOGIN_RSP, OP_LOGOUT, OP_LOGOUT_RSP, OP_NOOP_IN, OP_NOOP_OUT, OP_REJECT, OP_SCSI_CMD,
    OP_SCSI_RSP, OP_TEXT, OP_TEXT_RSP, OP_TMF, OP_TMF_RSP, RSV_ITT, SAM_CHECK, SAM_GOOD,
    SK_ILLEGAL, be24, enc_keys, hexdump, now, num, parse_keys, sense_fixed)
from adv_state import Cmd, NS


class Conn:
    """One iSER connection: PDU handling. Subclasses implement post_send_raw, post_rdma,
    do_disconnect, and provide self.t (Target)."""

    def __init__(self, t, num):
        self.t = t
        self.num = num
        self.log = t.log
        self.statsn = 0x1000 * num
        self.ffp = False
        self.discovery = False
        self.dead = False
        self.logout_done = False
        self.cmds = {}
        self.text_pending = None    # remaining SendTargets bytes
        self.text_ttt = 0x5000
        self.init_keys = {}
        self.established = False

    # --- sending ---
    def next_statsn(self, consume=True):
        s = self.statsn
        if consume:
            self.statsn = (self.statsn + 1) & M32
        return s

    def build_bhs(self, op, flags=0x80, itt=RSV_ITT, dlen=0, lun=b'\0' * 8, f20=RSV_ITT,
                  statsn=None, b2=0, b3=0, tail=b'\0' * 12, consume=True, ahs=0):
        if statsn is None:
            statsn = self.next_statsn(consume)
        exp = self.t.exp_cmdsn if self.t.exp_cmdsn is not None else 0
        b = bytearray(BHS)
        b[0] = op & 0xff
        b[1] = flags & 0xff
        b[2] = b2 & 0xff
        b[3] = b3 & 0xff
        b[4] = ahs & 0xff
        b[5:8] = be24(dlen)
        b[8:16] = lun[:8].ljust(8, b'\0')
        struct.pack_into('>IIIII', b, 16, itt & M32, f20 & M32, statsn & M32, exp & M32,
                         self.t.max_cmdsn())
        b[36:48] = tail[:12].ljust(12, b'\0')
        return b

    def send_pdu(self, bhs, data=b'', iser=None, inv_rkey=None, what='', trunc=None):
        if iser is None:
            iser = struct.pack('>B3xIQIQ', 0x10, 0, 0, 0, 0)
        pdu = bytes(iser) + bytes(bhs) + bytes(data)
        if trunc is not None:
            pdu = pdu[:trunc]
        op = bhs[0] & 0x3f
        self.log('conn%d TX %s op=0x%02x flags=0x%02x itt=0x%08x dlen=%d statsn=%d expcmdsn=%d '
                 'maxcmdsn=%d len=%d%s%s' % (
                     self.num, what, op, bhs[1], struct.unpack_from('>I', bhs, 16)[0],
                     int.from_bytes(bhs[5:8], 'big'), struct.unpack_from('>I', bhs, 24)[0],
                     struct.unpack_from('>I', bhs, 28)[0], struct.unpack_from('>I', bhs, 32)[0],
                     len(pdu), ' inv_rkey=0x%x' % inv_rkey if inv_rkey is not None else '',
                     (' data=' + hexdump(data, 32)) if data else ''))
        if self.dead:
            self.log('conn%d is dead: not sent' % self.num)
            return
        self.post_send_raw(pdu, inv_rkey)

    # --- receiving ---
    def on_recv(self, buf):
        if len(buf) < HDRS:
            self.log('conn%d RX short PDU (%d bytes): %s' % (self.num, len(buf), hexdump(buf)))
            return
        hdr, bhs = buf[:ISER_HDR], buf[ISER_HDR:HDRS]
        op = bhs[0] & 0x3f
        imm = bool(bhs[0] & 0x40)
        dlen = int.from_bytes(bhs[5:8], 'big')
        data = buf[HDRS:HDRS + dlen]
        itt = struct.unpack_from('>I', bhs, 16)[0]
        cmdsn = struct.unpack_from('>I', bhs, 24)[0]
        self.log('conn%d RX %s op=0x%02x%s flags=0x%02x itt=0x%08x cmdsn=%d expstatsn=%d dlen=%d '
                 'iser=%s%s' % (self.num, OPNAMES.get(op, '?'), op, ' I' if imm else '', bhs[1],
                                itt, cmdsn, struct.unpack_from('>I', bhs, 28)[0], dlen,
                                hdr.hex(), (' cdb=' + bhs[32:48].hex()) if op == OP_SCSI_CMD else ''))
        if op == OP_LOGIN:
            self.on_login(hdr, bhs, data)
            return
        if op not in (OP_DATA_OUT,):
            self.t.note_cmdsn(cmdsn, imm)
        if op == OP_SCSI_CMD:
            self.on_cmd(hdr, bhs, data)
        elif op == OP_DATA_OUT:
            self.on_dataout(bhs, data)
        elif op == OP_NOOP_OUT:
            self.on_event('nopout', {}, self.default_nopout(bhs, data), NS(itt=itt, bhs=bhs))
        elif op == OP_TMF:
            func = bhs[1] & 0x7f
            self.on_event('tmf', {'tmf': func}, self.default_tmf(bhs),
                          NS(itt=itt, rtt=struct.unpack_from('>I', bhs, 20)[0], func=func))
        elif op == OP_LOGOUT:
            self.on_event('logout', {}, self.default_logout(bhs), NS(itt=itt))
        elif op == OP_TEXT:
            self.on_event('text', {}, self.default_text(bhs, data), NS(itt=itt))
        else:
            self.log('conn%d unknown opcode 0x%02x: Reject' % (self.num, op))
            self.send_reject(0x05, bhs)

    def on_event(self, event, facts, default_gen, ctx):
        facts = dict(facts, conn=self.num)
        r = self.t.scn.match(event, facts)
        if r is None:
            self.t.spawn(default_gen)
            return
        self.log('conn%d RULE fired (%s #%d): %s' % (self.num, event, r.count, r.line))
        self.t.spawn(self.run_actions(r.actions, ctx, event, default_gen), rule=True)

    # --- login ---
    def on_login(self, hdr, bhs, data):
        flags = bhs[1]
        csg, nsg, tbit, cbit = (flags >> 2) & 3, flags & 3, bool(flags & 0x80), bool(flags & 0x40)
        keys = parse_keys(data)
        for k, v in keys:
            self.init_keys[k] = v
        self.log('conn%d login request csg=%d nsg=%d T=%d C=%d vmax=%d vmin=%d keys=%s' % (
            self.num, csg, nsg, tbit, cbit, bhs[2], bhs[3], ' '.join('%s=%s' % kv for kv in keys)))
        cmdsn = struct.unpack_from('>I', bhs, 24)[0]
        if self.t.exp_cmdsn is None or self.num >= 1:
            # Every connection's login restarts the count (one connection per session).
            self.t.exp_cmdsn = cmdsn
        ctx = NS(bhs=bytes(bhs), keys=keys, csg=csg, nsg=nsg, tbit=tbit,
                 itt=struct.unpack_from('>I', bhs, 16)[0])
        r = self.t.scn.match('login', {'conn': self.num, 'stage': csg})
        if r is None:
            self.t.spawn(self.default_login(ctx))
        else:
            self.log('conn%d RULE fired (login #%d): %s' % (self.num, r.count, r.line))
            self.t.spawn(self.run_actions(r.actions, ctx, 'login', self.default_login(ctx)), rule=True)

    def login_answer(self, ctx):
        """(flags, keys) of the normal answer to a Login Request."""
        out = []
        sess = self.init_keys.get('SessionType', 'Normal')
        self.discovery = sess == 'Discovery'
        rdma = not self.discovery
        if not getattr(self, 'tpgt_sent', False):
            self.tpgt_sent = True
            out.append(('TargetPortalGroupTag', '1'))
        if ctx.csg == 0:
            for k, v in ctx.keys:
                if k == 'AuthMethod':
                    out.append((k, 'None'))
        else:
            for k, v in ctx.keys:
                a = None
                if k in ('HeaderDigest', 'DataDigest'):
                    a = 'None'
                elif k == 'DefaultTime2Wait':
                    a = '0'
                elif k == 'DefaultTime2Retain':
                    a = str(min(num(v), 20))
                elif k in ('IFMarker', 'OFMarker'):
                    a = 'No'
                elif k == 'ErrorRecoveryLevel':
                    a = '0'
                elif k == 'MaxConnections':
                    a = '1' if not self.discovery else None
                elif self.discovery:
                    if k == 'MaxRecvDataSegmentLength':
                        a = '8192'
                    else:
                        a = None        # irrelevant in discovery: not answered
                elif k == 'InitialR2T':
                    a = 'Yes'
                elif k == 'ImmediateData':
                    a = 'Yes' if v == 'Yes' else 'No'
                elif k == 'MaxBurstLength':
                    a = str(min(num(v), 262144))
                elif k == 'FirstBurstLength':
                    a = str(min(num(v), 65536))
                elif k == 'MaxOutstandingR2T':
                    a = '1'
                elif k in ('DataPDUInOrder', 'DataSequenceInOrder'):
                    a = 'Yes'
                elif k == 'MaxRecvDataSegmentLength':
                    a = '8192'
                elif k == 'RDMAExtensions':
                    a = 'Yes' if rdma else 'No'
                elif k == 'InitiatorRecvDataSegmentLength':
                    a = str(min(num(v), 8192))
                elif k == 'TargetRecvDataSegmentLength':
                    a = '8192'
                if a is not None:
                    out.append((k, a))
        flags = (ctx.csg << 2)
        if ctx.tbit:
            flags |= 0x80 | ctx.nsg
        final = ctx.tbit and ctx.nsg == 3
        if final:
            # The scenario's key overrides go into the last response.
            for k, v in self.t.scn.login_keys:
                out = [(a, b) for a, b in out if a != k]
                if v is not None:
                    out.append((k, v))
        return flags, out, final

    def default_login(self, ctx, **ov):
        flags, keys, final = self.login_answer(ctx)
        yield from self.send_login_rsp(ctx, flags, keys, final, {})

    def send_login_rsp(self, ctx, flags, keys, final, ov):
        tsih = struct.unpack_from('>H', ctx.bhs, 14)[0]
        if final and tsih == 0:
            self.t.tsih += 1
            tsih = self.t.tsih
        data = enc_keys(keys)
        if 'data' in ov:
            data = self.eval_data(ov['data'], None)
        if 'flags' in ov:
            flags = self.ev(ov['flags'], None)
        if 'tsih' in ov:
            tsih = self.ev(ov['tsih'], None)
        cls_det = self.ev(ov.get('status', '0'), None)
        b = self.build_bhs(OP_LOGIN_RSP, flags=flags, itt=ctx.itt, dlen=len(data),
                           lun=ctx.bhs[8:14] + struct.pack('>H', tsih),
                           b2=self.ev(ov.get('vmax', '0'), None), b3=self.ev(ov.get('vactive', '0'), None),
                           f20=0, tail=struct.pack('>BB', (cls_det >> 8) & 0xff, cls_det & 0xff))
        self.apply_bhs_overrides(b, ov, None)
        self.send_pdu(b, data, what='Login-Rsp')
        if not hasattr(self, 'neg'):
            self.neg = {}
        self.neg.update(dict(keys))
        if final and cls_det == 0 and (flags & 0x83) == 0x83:
            self.ffp = True
            self.log('conn%d full feature phase (%s session), keys %s' % (
                self.num, 'discovery' if self.discovery else 'normal',
                ' '.join('%s=%s' % kv for kv in keys)))
            if not self.discovery:
                self.t.ffp_conn = self
                if self.t.scn.arm == 'login':
                    self.t.arm()
        if False:
            yield

    # --- SCSI ---
    def on_cmd(self, hdr, bhs, data):
        cmd = Cmd(hdr, bhs, data, self)
        self.t.cmd_seq += 1
        if cmd.itt in self.cmds and not self.cmds[cmd.itt].done:
            self.log('conn%d ITT 0x%08x reused while outstanding' % (self.num, cmd.itt))
        self.cmds[cmd.itt] = cmd
        if cmd.is_write:
            imm = len(data)
            # InitialR2T=Yes: no unsolicited Data-Out unless the scenario negotiated No.
            fb = num(self.negotiated('FirstBurstLength', '65536'))
            if self.negotiated('InitialR2T', 'Yes') == 'No':
                cmd.unsol_expected = min(fb, cmd.edtl) - imm
            else:
                cmd.unsol_expected = 0
            cmd.unsol_final = cmd.unsol_expected <= 0
        kind = 'read' if cmd.op in (0x28, 0x88, 0x08) else \
            'write' if cmd.op in (0x2a, 0x8a, 0x0a) else 'other'
        facts = {'lba': cmd.lba, 'op': cmd.op}
        self.on_event(kind, facts, self.default_cmd(cmd), cmd)

    def negotiated(self, key, default):
        return self.neg.get(key, default) if hasattr(self, 'neg') else default

    def on_dataout(self, bhs, data):
        itt = struct.unpack_from('>I', bhs, 16)[0]
        off = struct.unpack_from('>I', bhs, 40)[0]
        cmd = self.cmds.get(itt)
        r = self.t.scn.match('dataout', {'conn': self.num})
        if r is not None:
            self.log('conn%d RULE fired (dataout #%d): %s' % (self.num, r.count, r.line))
            self.t.spawn(self.run_actions(r.actions, cmd, 'dataout', None), rule=True)
        if cmd is None:
            self.log('conn%d Data-Out for unknown ITT 0x%08x' % (self.num, itt))
            return
        if cmd.lba is not None and off + len(data) <= cmd.edtl:
            self.t.lun_write(cmd.lba * BLOCK + off, data)
        cmd.unsol_got += len(data)
        if bhs[1] & 0x80:
            cmd.unsol_final = True

    def scsi_exec(self, cmd, move=True):
        """Runs the command; returns the generator result (status, sense, data_in, under, over)
        after moving data by RDMA (if move)."""
        op, cdb, edtl = cmd.op, cmd.cdb, cmd.edtl
        data = b''
        status, sense = SAM_GOOD, b''
        lba, nblk = cmd.lba, cmd.nblk
        if lba is not None:
            if lba + nblk > self.t.nblocks:
                return SAM_CHECK, sense_fixed(SK_ILLEGAL, 0x21), b'', edtl, 0
            nbytes = nblk * BLOCK
            xfer = min(nbytes, edtl)
            under = edtl - nbytes if edtl > nbytes else 0
            over = nbytes - edtl if nbytes > edtl else 0
            if op in (0x2a, 0x8a, 0x0a):
                if move:
                    imm = cmd.imm[:xfer]
                    self.t.lun_write(lba * BLOCK, imm)
                    rest = xfer - len(imm) - max(0, cmd.unsol_got)
                    if rest > 0:
                        if not (cmd.iser_flags & 0x08):
                            self.log('conn%d write without WSV but %d bytes to fetch' % (self.num, rest))
                        else:
                            local = lba * BLOCK + len(imm) + cmd.unsol_got
                            self.rdma('read', cmd, local, rest, cmd.write_stag, cmd.write_va)
                            yield ('rdma', cmd)
                    cmd.moved = xfer
                return (SAM_CHECK, sense_fixed(0x04, 0x44), b'', 0, 0) if cmd.rdma_failed \
                    else (SAM_GOOD, b'', b'', under, over)
            if op in (0x28, 0x88, 0x08):
                if move and xfer:
                    self.rdma('write', cmd, lba * BLOCK, xfer, cmd.read_stag, cmd.read_va)
                    cmd.moved = xfer
                return SAM_GOOD, b'', b'', under, over
            return SAM_GOOD, b'', b'', 0, 0     # VERIFY and friends
        if op == 0x00 or op in (0x35, 0x91, 0x1b, 0x1e):   # TUR, SYNC CACHE, START STOP, PREVENT
            pass
        elif op == 0x12:
            data, status, sense = self.inquiry(cdb)
        elif op == 0x25:
            data = struct.pack('>II', self.t.nblocks - 1, BLOCK)
        elif op == 0x9e and (cdb[1] & 0x1f) == 0x10:
            data = struct.pack('>QI', self.t.nblocks - 1, BLOCK) + b'\0' * 20
            data = data[:struct.unpack_from('>I', cdb, 10)[0]]
        elif op == 0xa0:
            data = struct.pack('>II', 8, 0) + b'\0' * 8
            data = data[:struct.unpack_from('>I', cdb, 6)[0]]
        elif op in (0x1a, 0x5a):
            data, status, sense = self.mode_sense(cdb)
        elif op == 0x03:
            data = sense_fixed(0, 0)[:cdb[4]]
        else:
            status, sense = SAM_CHECK, sense_fixed(SK_ILLEGAL, 0x20)
        xfer = min(len(data), edtl)
        data = data[:xfer]
        under = edtl - xfer
        if move and xfer and status == SAM_GOOD:
            if not (cmd.iser_flags & 0x04):
                self.log('conn%d data-in without RSV' % self.num)
            else:
                off = self.t.stage(data)
                self.rdma('write', cmd, off, xfer, cmd.read_stag, cmd.read_va)
                cmd.moved = xfer
        return status, sense, data, under, 0
        yield

    def inquiry(self, cdb):
        alloc = struct.unpack_from('>H', cdb, 3)[0]
        if cdb[1] & 1:
            page = cdb[2]
            if page == 0x00:
                d = bytes([0, 0, 0, 3, 0x00, 0x80, 0x83])
            elif page == 0x80:
                sn = b'ADV00001'
                d = bytes([0, 0x80, 0, len(sn)]) + sn
            elif page == 0x83:
                ident = b'ISERADV adv-lun0'
                desig = bytes([0x02, 0x01, 0, len(ident)]) + ident
                d = bytes([0, 0x83]) + struct.pack('>H', len(desig)) + desig
            else:
                return b'', SAM_CHECK, sense_fixed(SK_ILLEGAL, 0x24)
        elif cdb[2]:
            return b'', SAM_CHECK, sense_fixed(SK_ILLEGAL, 0x24)
        else:
            d = bytes([0, 0, 6, 0x02, 31, 0, 0, 0x02]) + b'ISERADV ' + b'ADVERSARIAL LUN ' + b'0001'
        return d[:alloc], SAM_GOOD, b''

    def mode_sense(self, cdb):
        page = cdb[2] & 0x3f
        pages = b''
        if page in (0x08, 0x3f):
            pages += bytes([0x08, 0x12]) + b'\0' * 0x12
        if page == 0x0a or page == 0x3f:
            pages += bytes([0x0a, 0x0a]) + b'\0' * 0x0a
        if not pages and page not in (0x08, 0x0a, 0x3f):
            return b'', SAM_CHECK, sense_fixed(SK_ILLEGAL, 0x24)
        if cdb[0] == 0x1a:
            d = bytes([3 + len(pages), 0, 0, 0]) + pages
            alloc = cdb[4]
        else:
            d = struct.pack('>HBBBBH', 6 + len(pages), 0, 0, 0, 0, 0) + pages
            alloc = struct.unpack_from('>H', cdb, 7)[0]
        return d[:alloc], SAM_GOOD, b''

    def default_cmd(self, cmd):
        if cmd.is_write and not cmd.unsol_final:
            while not cmd.unsol_final:
                yield ('sleep', now() + 0.001)
        res = yield from self.scsi_exec(cmd)
        cmd.result = res
        if cmd.aborted:
            self.log('conn%d command 0x%08x aborted: no response' % (self.num, cmd.itt))
            return
        self.send_scsi_rsp(cmd, {})

    def send_scsi_rsp(self, cmd, ov, inv_rkey=None):
        status, sense, _data, under, over = cmd.result or (SAM_GOOD, b'', b'', 0, 0)
        flags = 0x80
        resid = 0
        if under:
            flags |= 0x02
            resid = under
        elif over:
            flags |= 0x04
            resid = over
        if 'status' in ov:
            status = self.ev(ov['status'], cmd)
        if 'sense' in ov:
            sense = self.eval_data(ov['sense'], cmd)
            if status == SAM_GOOD and 'status' not in ov:
                status = SAM_CHECK
        data = (struct.pack('>H', len(sense)) + sense) if sense else b''
        if 'senselen' in ov:
            data = struct.pack('>H', self.ev(ov['senselen'], cmd) & 0xffff) + sense
        if 'data' in ov:
            data = self.eval_data(ov['data'], cmd)
        if 'resid' in ov:
            kind, _, v = ov['resid'].partition(':')
            if kind == 'under':
                flags = (flags & ~0x06) | 0x02
            elif kind == 'over':
                flags = (flags & ~0x06) | 0x04
            elif kind == 'both':
                flags = flags | 0x06
            elif kind == 'none':
                flags = flags & ~0x06
            resid = self.ev(v or '0', cmd)
        b = self.build_bhs(OP_SCSI_RSP, flags=flags, itt=cmd.itt, dlen=len(data), f20=0,
                           b2=self.ev(ov.get('response', '0'), cmd), b3=status,
                           tail=struct.pack('>III', 0, 0, resid & M32))
        self.apply_bhs_overrides(b, ov, cmd)
        iser = None
        if 'iser' in ov:
            iser = self.eval_iser(ov['iser'], cmd)
        if inv_rkey is None and 'inv' in ov:
            inv_rkey = self.ev(ov['inv'], cmd) & M32
        self.send_pdu(b, data, iser=iser, inv_rkey=inv_rkey, what='SCSI-Rsp')
        cmd.resp_sent += 1
        cmd.done = True
        self.t.last_done = cmd

    # --- other PDUs ---
    def default_nopout(self, bhs, data):
        itt = struct.unpack_from('>I', bhs, 16)[0]
        if itt == RSV_ITT:
            self.log('conn%d NOP-Out answering our ping (ttt=0x%08x)' % (
                self.num, struct.unpack_from('>I', bhs, 20)[0]))
            return
        b = self.build_bhs(OP_NOOP_IN, itt=itt, dlen=len(data), lun=bhs[8:16], f20=RSV_ITT)
        self.send_pdu(b, data, what='NOP-In')
        if False:
            yield

    def default_tmf(self, bhs):
        itt = struct.unpack_from('>I', bhs, 16)[0]
        func = bhs[1] & 0x7f
        rtt = struct.unpack_from('>I', bhs, 20)[0]
        resp = 0
        if func == 1:       # ABORT TASK
            c = self.cmds.get(rtt)
            if c is None or c.done:
                resp = 0 if c is None else 0
                self.log('conn%d ABORT TASK for %s task 0x%08x' % (
                    self.num, 'unknown' if c is None else 'completed', rtt))
            else:
                c.aborted = True
                c.done = True
        elif func in (5, 6, 7, 2, 3):  # LUN/target reset, abort task set, clear task set
            for c in self.cmds.values():
                if not c.done:
                    c.aborted = True
                    c.done = True
        else:
            resp = 5
        b = self.build_bhs(OP_TMF_RSP, itt=itt, b2=resp, f20=0)
        self.send_pdu(b, what='TMF-Rsp')
        if False:
            yield

    def default_logout(self, bhs):
        itt = struct.unpack_from('>I', bhs, 16)[0]
        b = self.build_bhs(OP_LOGOUT_RSP, itt=itt, f20=0, tail=struct.pack('>IHH', 0, 0, 0))
        self.send_pdu(b, what='Logout-Rsp')
        self.logout_done = True
        self.t.logged_out = True
        if False:
            yield

    def default_text(self, bhs, data):
        itt = struct.unpack_from('>I', bhs, 16)[0]
        ttt = struct.unpack_from('>I', bhs, 20)[0]
        keys = parse_keys(data)
        if ttt == RSV_ITT or self.text_pending is None:
            out = []
            if any(k == 'SendTargets' for k, _ in keys):
                ip = self.t.args.ip
                out.append(('TargetName', self.t.args.iqn))
                out.append(('TargetAddress', '%s:%d,1' % (ip, self.t.args.port)))
                for i in range(self.t.scn.text_targets):
                    out.append(('TargetName', '%s.fake%04d.%s' % (self.t.args.iqn, i, 'x' * 150)))
                    out.append(('TargetAddress', '%s:%d,1' % (ip, self.t.args.port)))
            self.text_pending = enc_keys(out)
        chunk = self.t.scn.text_chunk
        part, self.text_pending = self.text_pending[:chunk], self.text_pending[chunk:]
        more = bool(self.text_pending)
        if not more:
            self.text_pending = None
        self.text_ttt += 1
        b = self.build_bhs(OP_TEXT_RSP, flags=0x40 if more else 0x80, itt=itt, dlen=len(part),
                           f20=self.text_ttt if more else RSV_ITT)
        self.send_pdu(b, part, what='Text-Rsp')
        if False:
            yield

    def send_reject(self, reason, bad_bhs, ov=None):
        b = self.build_bhs(OP_REJECT, itt=RSV_ITT, b2=reason, f20=0, dlen=len(bad_bhs))
        if ov:
            self.apply_bhs_overrides(b, ov, None)
        self.send_pdu(b, bytes(bad_bhs), what='Reject')

    # --- expressions ---
    def ns(self, cmd):
        last = self.t.last_done
        z = NS(itt=0, edtl=0, read_stag=0, read_va=0, write_stag=0, write_va=0, lba=0, cmdsn=0)
        c = cmd if isinstance(cmd, Cmd) else None
        d = {'cmd': c or z, 'last': last or z, 'statsn': self.statsn,
             'expcmdsn': self.t.exp_cmdsn or 0, 'maxcmdsn': self.t.max_cmdsn(),
             'lun_bytes': self.t.lun_bytes}
        cur = getattr(self, 'cur_ctx', None)
        if isinstance(cmd, NS):
            cur = cmd
        if isinstance(cur, NS):
            d['ev'] = cur
            if c is None:
                d['itt'] = getattr(cur, 'itt', 0)
            d['ref'] = self.tmf_ref(cur) or z
        for k in ('itt', 'edtl', 'read_stag', 'read_va', 'write_stag', 'write_va', 'lba'):
            if c is not None:
                d[k] = getattr(c, k) or 0
            else:
                d.setdefault(k, 0)
        return d

    def tmf_ref(self, ctx):
        """The command a TMF names (ref.*): ABORT TASK's Referenced Task Tag; for a function
        over a task set (ABORT/CLEAR TASK SET, LUN reset, target reset), whose Referenced
        Task Tag is reserved, the open command of this connection with the lowest CmdSN."""
        if not isinstance(ctx, NS):
            return None
        c = self.cmds.get(getattr(ctx, 'rtt', None))
        if c is None and getattr(ctx, 'func', None) in (2, 3, 5, 6, 7):
            open_cmds = [x for x in self.cmds.values() if not x.done]
            c = min(open_cmds, key=lambda x: x.cmdsn or 0) if open_cmds else None
        return c

    def ev(self, expr, cmd):
        if isinstance(expr, int):
            return expr
        return int(eval(expr, {'__builtins__': {}}, self.ns(cmd)))

    def eval_data(self, spec, cmd):
        out = b''
        for part in spec.split('+') if spec.startswith(('hex:', 'zeros:', 'text:', 'fill:')) else [spec]:
            kind, _, v = part.partition(':')
            if kind == 'hex':
                out += bytes.fromhex(v)
            elif kind == 'zeros':
                out += b'\0' * self.ev(v, cmd)
            elif kind == 'fill':
                out += b'A' * self.ev(v, cmd)
            elif kind == 'text':
                out += v.replace('\\0', '\0').encode()
            elif kind == 'sense':
                k, a, q = (v.split(',') + ['0', '0', '0'])[:3]
                out += sense_fixed(int(k, 0), int(a, 0), int(q, 0))
            else:
                raise ValueError('data spec %s' % part)
        return out

    def eval_iser(self, spec, cmd):
        f = {'flags': 0x10, 'wstag': 0, 'wva': 0, 'rstag': 0, 'rva': 0}
        for p in spec.split(','):
            k, _, v = p.partition(':')
            f[k] = self.ev(v, cmd)
        return struct.pack('>BBBBIQIQ', f['flags'] & 0xff, f.get('b1', 0), f.get('b2', 0),
                           f.get('b3', 0), f['wstag'] & M32, f['wva'] & (2**64 - 1),
                           f['rstag'] & M32, f['rva'] & (2**64 - 1))

    BHS_FIELDS = {'op': (0, 'B'), 'flags': (1, 'B'), 'b2': (2, 'B'), 'b3': (3, 'B'),
                  'ahs': (4, 'B'), 'itt': (16, 'I'), 'ttt': (20, 'I'), 'f20': (20, 'I'),
                  'statsn': (24, 'I'), 'expcmdsn': (28, 'I'), 'maxcmdsn': (32, 'I'),
                  'f36': (36, 'I'), 'f40': (40, 'I'), 'f44': (44, 'I'), 'resid_field': (44, 'I')}

    def apply_bhs_overrides(self, b, ov, cmd):
        for k, v in ov.items():
            if k == 'dlen':
                b[5:8] = be24(self.ev(v, cmd) & 0xffffff)
            elif k in self.BHS_FIELDS:
                off, fmt = self.BHS_FIELDS[k]
                val = self.ev(v, cmd)
                struct.pack_into('>' + fmt, b, off, val & (0xff if fmt == 'B' else M32))

    # --- rule actions ---
    def run_actions(self, actions, ctx, event, default_gen=None):
        cmd = ctx if isinstance(ctx, Cmd) else None
        ref = self.tmf_ref(ctx)
        for name, a, pos in actions:
            self.cur_ctx = ctx
            if self.dead and name not in ('exit', 'log', 'sleep'):
                self.log('conn%d dead: action %s skipped' % (self.num, name))
                return
            self.log('conn%d ACTION %s %s %s' % (self.num, name, ' '.join(
                '%s=%s' % kv for kv in a.items()), ' '.join(pos)))
            if name == 'normal':
                if default_gen is not None:
                    yield from default_gen
                    default_gen = None
            elif name in ('drop', 'ignore'):
                return
            elif name == 'sleep':
                yield ('sleep', now() + float(pos[0].rstrip('s')))
            elif name == 'log':
                self.log('conn%d LOG %s' % (self.num, ' '.join(pos)))
            elif name == 'data':
                if cmd is not None:
                    cmd.result = yield from self.scsi_exec(cmd, move=True)
                    yield ('rdma', cmd)
            elif name == 'exec':          # run the command without moving data
                if cmd is not None:
                    cmd.result = yield from self.scsi_exec(cmd, move=False)
            elif name == 'resp':
                if event == 'login':
                    flags, keys, final = self.login_answer(ctx)
                    if 'keys' in a:
                        keys = [tuple(x.split('=', 1)) for x in a['keys'].split('|') if x]
                    yield from self.send_login_rsp(ctx, flags, keys, final, a)
                elif cmd is not None:
                    if cmd.result is None:
                        cmd.result = yield from self.scsi_exec(cmd, move=False)
                    yield ('rdma', cmd)
                    self.send_scsi_rsp(cmd, a)
                else:
                    self.send_generic_rsp(event, ctx, a)
            elif name in ('rdma_write', 'rdma_read'):
                c = cmd or ref or self.t.last_done
                kind = name[5:]
                ln = self.ev(a.get('len', 'edtl'), c)
                stag = self.ev(a.get('stag', 'read_stag' if kind == 'write' else 'write_stag'), c)
                va = self.ev(a.get('va', 'read_va' if kind == 'write' else 'write_va'), c)
                local = self.ev(a.get('local', str((c.lba or 0) * BLOCK) if c else '0'), c)
                local = max(0, min(local, self.t.lun_bytes))
                holder = c if c is not None else NS(pending=0, rdma_failed=False)
                self.rdma(kind, holder, local, ln, stag, va)
                if a.get('wait', '1') != '0':
                    yield ('rdma', holder)
            elif name == 'send':
                yield from self.act_send(a, cmd if cmd else ctx)
            elif name == 'nopin':
                cnt = self.ev(a.get('count', '1'), cmd)
                dl = self.ev(a.get('dlen', '0'), cmd)
                for i in range(cnt):
                    data = b'P' * dl
                    b = self.build_bhs(OP_NOOP_IN, itt=self.ev(a.get('itt', str(RSV_ITT)), cmd),
                                       dlen=dl, f20=self.ev(a.get('ttt', str(0x7000 + i)), cmd),
                                       consume=False)
                    ov = {k: v for k, v in a.items() if k not in ('count', 'dlen', 'itt', 'ttt')}
                    self.apply_bhs_overrides(b, ov, cmd)
                    self.send_pdu(b, data, what='NOP-In(unsolicited)')
                    if i % 32 == 31:
                        yield ('sleep', now() + 0.002)
            elif name == 'async':
                ev = self.ev(a.get('event', '0'), cmd)
                p1, p2, p3 = (self.ev(a.get(k, '0'), cmd) for k in ('p1', 'p2', 'p3'))
                data = self.eval_data(a['data'], cmd) if 'data' in a else b''
                b = self.build_bhs(OP_ASYNC, itt=RSV_ITT, f20=RSV_ITT, dlen=len(data),
                                   tail=struct.pack('>BBHHHH', ev, self.ev(a.get('vcode', '0'), cmd),
                                                    p1, p2, p3, 0))
                ov = {k: v for k, v in a.items() if k in self.BHS_FIELDS or k == 'dlen'}
                self.apply_bhs_overrides(b, ov, cmd)
                self.send_pdu(b, data, what='Async')
            elif name == 'reject':
                bad = cmd.bhs if cmd else (ctx.bhs if ctx is not None and hasattr(ctx, 'bhs') else b'\0' * 48)
                self.send_reject(self.ev(a.get('reason', '9'), cmd), bad,
                                 {k: v for k, v in a.items() if k != 'reason'})
                if cmd:
                    cmd.done = True
            elif name == 'window':
                if 'max' in a:
                    self.t.maxcmdsn_override = self.ev(a['max'], cmd)
                else:
                    self.t.maxcmdsn_override = None
                    self.t.window = self.ev(pos[0] if pos else a.get('size', '32'), cmd)
                self.log('conn%d window now expcmdsn=%d maxcmdsn=%d' % (
                    self.num, self.t.exp_cmdsn or 0, self.t.max_cmdsn()))
            elif name == 'disconnect':
                self.do_disconnect('scenario')
            elif name == 'qp_error':
                self.qp_to_error('scenario')
            elif name == 'exit':
                self.log('exit requested by the scenario')
                self.t.done = True
            elif name == 'done':          # mark the command done without a response
                if cmd:
                    cmd.done = True
            else:
                self.log('conn%d unknown action %s' % (self.num, name))

    def send_generic_rsp(self, event, ctx, a):
        itt = getattr(ctx, 'itt', RSV_ITT)
        if event == 'nopout':
            b = self.build_bhs(OP_NOOP_IN, itt=itt, f20=RSV_ITT)
            data = self.eval_data(a['data'], None) if 'data' in a else b''
            b[5:8] = be24(len(data))
            self.apply_bhs_overrides(b, a, ctx)
            self.send_pdu(b, data, what='NOP-In')
        elif event == 'tmf':
            b = self.build_bhs(OP_TMF_RSP, itt=itt, b2=self.ev(a.get('response', '0'), ctx), f20=0)
            self.apply_bhs_overrides(b, a, ctx)
            self.send_pdu(b, what='TMF-Rsp')
        elif event == 'logout':
            b = self.build_bhs(OP_LOGOUT_RSP, itt=itt, b2=self.ev(a.get('response', '0'), ctx), f20=0)
            self.apply_bhs_overrides(b, a, ctx)
            self.send_pdu(b, what='Logout-Rsp')
            self.logout_done = True
            self.t.logged_out = True
        elif event == 'text':
            data = self.eval_data(a['data'], None) if 'data' in a else b''
            b = self.build_bhs(OP_TEXT_RSP, itt=itt, dlen=len(data), f20=RSV_ITT)
            self.apply_bhs_overrides(b, a, ctx)
            self.send_pdu(b, data, what='Text-Rsp')

    def act_send(self, a, ctx):
        """A raw PDU: send op=0x21 itt=cmd.itt flags=0x80 dlen=... data=zeros:200 iser=flags:0x10"""
        cmd = ctx if isinstance(ctx, Cmd) else None
        ectx = cmd if cmd else ctx
        data = self.eval_data(a['data'], ectx) if 'data' in a else b''
        consume = a.get('consume', '1') != '0'
        b = self.build_bhs(self.ev(a.get('op', '0x21'), ectx), itt=RSV_ITT, dlen=len(data),
                           consume=consume)
        ov = dict(a)
        for k in ('data', 'iser', 'op', 'consume', 'inv', 'repeat', 'trunc'):
            ov.pop(k, None)
        trunc = self.ev(a['trunc'], ectx) if 'trunc' in a else None
        iser = self.eval_iser(a['iser'], ectx) if 'iser' in a else None
        inv = self.ev(a['inv'], ectx) & M32 if 'inv' in a else None
        for _ in range(self.ev(a.get('repeat', '1'), ectx)):
            bb = bytearray(b)
            self.apply_bhs_overrides(bb, ov, ectx)
            self.send_pdu(bb, data, iser=iser, inv_rkey=inv, what='raw', trunc=trunc)
        if False:
            yield

    # --- data movement ---
    def rdma(self, kind, holder, local_off, length, stag, va):
        self.log('conn%d RDMA %s len=%d stag=0x%08x va=0x%x local=%d' % (
            self.num, kind.upper(), length, stag & M32, va, local_off))
        if length <= 0:
            return
        holder.pending += 1
        self.post_rdma(kind, holder, local_off, length, stag & M32, va & (2**64 - 1))

    def rdma_done(self, holder, kind, ok, status):
        holder.pending -= 1
        if not ok:
            holder.rdma_failed = True
            self.log('conn%d RDMA %s FAILED: status %s' % (self.num, kind, status))
        else:
            self.log('conn%d RDMA %s done' % (self.num, kind))
