#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
"""An adversarial iSER target (RFC 7145) for the VM suite: userspace, rdma-core's pyverbs.

    /usr/bin/python3 target.py --scenario FILE.scn --log FILE [--ip 10.77.0.1] [--port 3262]
                               [--timeout 120] [--iqn IQN] [--lun-mb 32]
    /usr/bin/python3 target.py --selftest     # offline checks of the PDU logic (no RDMA)
    ... --control FILE                        # serve mode: SIGHUP loads "SCENARIO LOG" from FILE

It listens with rdma_cm, accepts iSER connections (CM private data), logs the initiator in
(Login phase; SendTargets discovery too) and serves one LUN from memory as a small but
correct SCSI target: READ/WRITE move data by RDMA WRITE / RDMA READ to and from the STags in
the iSER header, every other PDU gets its iSCSI answer. Then it misbehaves as a *scenario*
file says. Every PDU, RDMA operation, rule firing and CM event is logged to --log. It exits
on SIGTERM/SIGINT, on an `exit` action, after --timeout seconds, or a few seconds after a
session logged out and its connection closed; it never blocks (non-blocking CM events,
polled CQ).

Scenario language (tests/vm/adv/README has the full list): one directive per line, `#`
starts a comment (the test reads `# expect:` and `# run:` from the comments).

    cm rep=HEX | rep=none | reject | ignore      CM reply private data / refuse / never answer
    login_key KEY=VALUE | -KEY                   override / add / remove a key in the final
                                                 operational-stage Login Response
    text_targets N                               SendTargets lists N more (fake) targets
    text_chunk BYTES                             max data bytes per Text Response (C bit)
    on EVENT [COND...]: ACTION [ARGS] ; ACTION ...
    after SECONDS: ACTION ; ...                  timer, from SIGUSR1 (the test logged in)

EVENT is cmd (any SCSI command), read, write, other (a non-READ/WRITE command), nopout, tmf,
logout, login, text, dataout. COND: n=K (the K-th event matching the rest; n=K+ from the
K-th on), lba=N (READ/WRITE LBA), op=0xNN (CDB opcode), conn=N (connection number, from 1),
stage=0|1 (login), tmf=N (TMF function). The first rule whose conditions hold fires; an
event no rule matches gets normal behaviour. Rule counts are per target process, so
`n=1` hits the first matching command only and the initiator's retry after a recovery is
served normally.
"""

import argparse
import collections
import errno
import fcntl
import os
import re
import select
import signal
import struct
import sys
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


# --- log ---------------------------------------------------------------------------------------
class Log:
    """The action log; LOG.st holds "RULES_FIRED ERRORS RUNNING" for the test (a shell reads
    it with one builtin instead of scanning a long log): RUNNING counts the fired rules and
    timers whose actions have not ended yet (a `sleep` among them), which the test waits for
    before it judges."""

    def __init__(self, path):
        self.path = path
        self.f = open(path, 'a', buffering=1) if path else sys.stderr
        self.t0 = now()
        self.fired = self.errors = self.running = 0

    def reopen(self, path):
        if self.f is not sys.stderr:
            self.f.close()
        self.path = path
        self.f = open(path, 'a', buffering=1)
        self.t0 = now()
        self.fired = self.errors = self.running = 0

    def __call__(self, msg):
        self.f.write('%8.3f %s\n' % (now() - self.t0, msg))
        if 'RULE fired' in msg or msg.startswith(('timer fired', 'ERROR in task')):
            if msg.startswith('ERROR'):
                self.errors += 1
            else:
                self.fired += 1
            self.write_st()

    def actions(self, delta):
        """A fired rule's or timer's actions started (+1) or ended (-1)."""
        self.running = max(0, self.running + delta)
        self.write_st()

    def write_st(self):
        if self.path:
            with open(self.path + '.st', 'w') as st:
                st.write('%d %d %d\n' % (self.fired, self.errors, self.running))

    def flush(self):
        try:
            self.f.flush()
        except Exception:
            pass


# --- scenario ----------------------------------------------------------------------------------
class Rule:
    def __init__(self, event, conds, actions, line):
        self.event = event
        self.conds = conds          # dict
        self.actions = actions      # list of (name, args-dict, positional-list)
        self.line = line
        self.count = 0              # events that matched the conditions other than n
        self.fired = 0


def parse_action(text):
    parts = text.split()
    if not parts:
        return None
    name, args, pos = parts[0], {}, []
    for p in parts[1:]:
        if '=' in p and not p.startswith('='):
            k, _, v = p.partition('=')
            args[k] = v
        else:
            pos.append(p)
    return (name, args, pos)


def parse_actions(text):
    return [a for a in (parse_action(x) for x in text.split(';')) if a]


class Scenario:
    EVENTS = ('cmd', 'read', 'write', 'other', 'nopout', 'tmf', 'logout', 'login', 'text',
              'dataout')

    def __init__(self, text=''):
        self.rules = []
        self.timers = []            # (seconds, conn, actions, line)
        self.cm = {}
        self.login_keys = []        # (key, value or None to remove)
        self.text_targets = 0
        self.text_chunk = 8192
        self.wc_error = 'disconnect'
        self.window = 32
        self.arm = 'signal'
        for ln, raw in enumerate(text.splitlines(), 1):
            line = raw.split('#', 1)[0].strip()
            if not line:
                continue
            try:
                self._line(line)
            except Exception as e:
                raise SystemExit('scenario line %d: %s: %s' % (ln, raw.strip(), e))

    def _line(self, line):
        word, _, rest = line.partition(' ')
        rest = rest.strip()
        if word == 'cm':
            for p in rest.split():
                k, _, v = p.partition('=')
                self.cm[k] = v
        elif word == 'login_key':
            for p in rest.split():
                if p.startswith('-'):
                    self.login_keys.append((p[1:], None))
                else:
                    k, _, v = p.partition('=')
                    self.login_keys.append((k, v))
        elif word == 'text_targets':
            self.text_targets = int(rest, 0)
        elif word == 'text_chunk':
            self.text_chunk = int(rest, 0)
        elif word == 'wc_error':
            self.wc_error = rest
        elif word == 'window':
            self.window = int(rest, 0)
        elif word == 'arm':
            self.arm = rest
        elif word == 'on':
            head, sep, acts = rest.partition(':')
            if not sep:
                raise ValueError("missing ':'")
            hp = head.split()
            ev = hp[0]
            if ev not in self.EVENTS:
                raise ValueError('unknown event %s' % ev)
            conds = {}
            for c in hp[1:]:
                k, _, v = c.partition('=')
                conds[k] = v
            self.rules.append(Rule(ev, conds, parse_actions(acts), line))
        elif word == 'after':
            head, sep, acts = rest.partition(':')
            if not sep:
                raise ValueError("missing ':'")
            hp = head.split()
            secs = float(hp[0].rstrip('s'))
            conn = 1
            for c in hp[1:]:
                k, _, v = c.partition('=')
                if k == 'conn':
                    conn = int(v)
            self.timers.append([secs, conn, parse_actions(acts), line])
        else:
            raise ValueError('unknown directive %s' % word)

    def match(self, event, facts):
        """The first rule for `event` (and the generic 'cmd' rules for SCSI commands) whose
        conditions hold, or None. Counts every rule whose conditions other than n hold."""
        kinds = (event,) if event not in ('read', 'write', 'other') else (event, 'cmd')
        hit = None
        for r in self.rules:
            if r.event not in kinds:
                continue
            ok = True
            for k, v in r.conds.items():
                if k == 'n':
                    continue
                if k == 'lba':
                    if facts.get('lba') is None:
                        ok = False
                    elif v.startswith('>='):
                        ok = facts['lba'] >= int(v[2:], 0)
                    else:
                        ok = facts['lba'] == int(v, 0)
                elif k in ('op', 'conn', 'stage', 'tmf'):
                    ok = facts.get(k) == int(v, 0)
                else:
                    ok = False
                if not ok:
                    break
            if not ok:
                continue
            r.count += 1
            if hit is not None:
                continue
            n = r.conds.get('n')
            if n is not None:
                if n.endswith('+'):
                    if r.count < int(n[:-1]):
                        continue
                elif r.count != int(n):
                    continue
            hit = r
        if hit:
            hit.fired += 1
        return hit


# --- commands ----------------------------------------------------------------------------------
class Cmd:
    def __init__(self, hdr, bhs, data, conn):
        self.conn = conn
        self.seq = conn.t.cmd_seq
        self.itt = struct.unpack_from('>I', bhs, 16)[0]
        self.flags = bhs[1]
        self.lun = bhs[8:16]
        self.edtl = struct.unpack_from('>I', bhs, 20)[0]
        self.cmdsn = struct.unpack_from('>I', bhs, 24)[0]
        self.cdb = bytes(bhs[32:48])
        self.op = self.cdb[0]
        self.bhs = bytes(bhs)
        self.imm = data
        (self.iser_flags, self.write_stag, self.write_va, self.read_stag,
         self.read_va) = struct.unpack('>B3xIQIQ', hdr)
        self.is_read = bool(self.flags & 0x40)
        self.is_write = bool(self.flags & 0x20)
        self.lba, self.nblk = cdb_lba(self.cdb)
        self.pending = 0            # RDMA operations in flight
        self.rdma_failed = False
        self.unsol_got = 0
        self.unsol_final = not self.is_write
        self.result = None          # (status, sense, data, resid_under, resid_over)
        self.done = False
        self.aborted = False
        self.resp_sent = 0
        self.moved = 0


def cdb_lba(cdb):
    op = cdb[0]
    if op in (0x28, 0x2a, 0x2f, 0x2e):
        return struct.unpack_from('>I', cdb, 2)[0], struct.unpack_from('>H', cdb, 7)[0]
    if op in (0x88, 0x8a, 0x8f, 0x8e):
        return struct.unpack_from('>Q', cdb, 2)[0], struct.unpack_from('>I', cdb, 10)[0]
    if op in (0x08, 0x0a):
        n = cdb[4] or 256
        return ((cdb[1] & 0x1f) << 16) | (cdb[2] << 8) | cdb[3], n
    return None, None


class NS:
    """Attribute view for expressions (cmd.read_stag, last.itt, ...)."""
    def __init__(self, **kw):
        self.__dict__.update(kw)


# --- the target --------------------------------------------------------------------------------
class Target:
    """Transport-independent iSCSI/iSER target logic. A Conn subclass provides the verbs."""

    def __init__(self, args, scn, log):
        self.args = args
        self.scn = scn
        self.log = log
        self.lun_bytes = args.lun_mb * 1024 * 1024
        self.nblocks = self.lun_bytes // BLOCK
        self.cmd_seq = 0
        self.exp_cmdsn = None
        self.window = scn.window
        self.maxcmdsn_override = None
        self.tsih = 0x100
        self.conns = []
        self.last_done = None
        self.exit_at = None
        self.done = False
        self.logged_out = False
        self.tasks = []             # generators waiting: [cond, gen, cmd-or-None, rule]
        self.timers = []            # [when, actions, conn]
        self.ffp_conn = None
        self.armed = False

    def arm(self):
        """Starts the scenario's timers (`after`), on the connection in full feature phase."""
        if self.armed:
            return
        c = self.ffp_conn
        if c is None or c.dead:
            self.log('arm: no connection in full feature phase; timers not started')
            return
        self.armed = True
        self.log('timers armed on conn%d' % c.num)
        for secs, _cn, acts, line in self.scn.timers:
            self.timers.append([now() + secs, acts, c, line])

    def reload(self, scn):
        """Serve mode: the next scenario (connections numbered from 1 again)."""
        self.scn = scn
        self.window = scn.window
        self.maxcmdsn_override = None
        self.timers = []
        self.tasks = []
        self.armed = False
        self.ffp_conn = None
        self.logged_out = False
        self.exit_at = None
        self.last_done = None

    # -- SN window --
    def max_cmdsn(self):
        if self.maxcmdsn_override is not None:
            return self.maxcmdsn_override & M32
        return (self.exp_cmdsn + self.window - 1) & M32

    def note_cmdsn(self, cmdsn, immediate):
        if self.exp_cmdsn is None:
            self.exp_cmdsn = cmdsn
        if not immediate and ((cmdsn - self.exp_cmdsn) & M32) < 0x80000000:
            self.exp_cmdsn = (cmdsn + 1) & M32

    # -- LUN storage: lun_write(off, bytes) and lun_stage(off, bytes) come from the transport --
    STAGE_SLOTS, STAGE_SLOT = 16, 64 * 1024

    def stage(self, data):
        """Copies a command's Data-In (INQUIRY, ...) to a staging slot the RDMA WRITE reads
        from; slots rotate so that a slot is not rewritten before its RDMA WRITE ran."""
        self.stage_n = (getattr(self, 'stage_n', -1) + 1) % self.STAGE_SLOTS
        off = self.stage_off + self.stage_n * self.STAGE_SLOT
        self.lun_stage(off, bytes(data[:self.STAGE_SLOT]))
        return off

    # -- task scheduling --
    def spawn(self, gen, cmd=None, rule=False):
        """Runs generator `gen` until it waits; `rule`: the actions of a fired rule or timer
        (counted in LOG.st until they end)."""
        if rule:
            self.log.actions(1)
        self.tasks.append([None, gen, cmd, rule])
        self.step_tasks()

    def end_task(self, t):
        self.tasks.remove(t)
        if t[3]:
            self.log.actions(-1)

    def step_tasks(self):
        progress = True
        while progress:
            progress = False
            for t in list(self.tasks):
                cond, gen = t[0], t[1]
                ready = cond is None
                if not ready:
                    kind, v = cond
                    if kind == 'sleep':
                        ready = now() >= v
                    elif kind == 'rdma':
                        ready = v.pending == 0
                if not ready:
                    continue
                try:
                    t[0] = next(gen)
                except StopIteration:
                    self.end_task(t)
                except Exception as e:
                    import traceback
                    self.log('ERROR in task: %r\n%s' % (e, traceback.format_exc()))
                    self.end_task(t)
                progress = True

    def run_timers(self):
        for tm in list(self.timers):
            if now() >= tm[0]:
                self.timers.remove(tm)
                c = tm[2]
                self.log('timer fired: %s' % tm[3])
                if not c.dead:
                    self.spawn(c.run_actions(tm[1], None, 'timer'), rule=True)

    def next_deadline(self):
        d = [tm[0] for tm in self.timers]
        d += [t[0][1] for t in self.tasks if t[0] and t[0][0] == 'sleep']
        if self.exit_at:
            d.append(self.exit_at)
        return min(d) if d else None


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


# --- the RDMA target (pyverbs) -----------------------------------------------------------------
def find_cm_fd():
    """The event channel's file descriptor (pyverbs does not expose it)."""
    for fd in os.listdir('/proc/self/fd'):
        try:
            if os.readlink('/proc/self/fd/' + fd) == '/dev/infiniband/rdma_cm':
                return int(fd)
        except OSError:
            pass
    raise SystemExit('no rdma_cm fd')


def rdma_main(args, scn, log):
    import pyverbs.cm_enums as ce
    import pyverbs.enums as e
    from pyverbs.cmid import CMID, AddrInfo, CMEventChannel, ConnParam, CMEvent
    from pyverbs.qp import QPCap, QPInitAttr, QPAttr, QP
    from pyverbs.cq import CQ
    from pyverbs.mr import MR
    from pyverbs.wr import SGE, SendWR, RecvWR
    from pyverbs.pyverbs_error import PyverbsRDMAError, PyverbsError

    ACC = e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_REMOTE_WRITE | e.IBV_ACCESS_REMOTE_READ
    KIND_RECV, KIND_SEND, KIND_RDMA = 1, 2, 3
    EVN = {getattr(ce, n): n for n in dir(ce) if n.startswith('RDMA_CM_EVENT_')}

    class RTarget(Target):
        pass

    t = RTarget(args, scn, log)
    ch = CMEventChannel()
    cmfd = find_cm_fd()
    fl = fcntl.fcntl(cmfd, fcntl.F_GETFL)
    fcntl.fcntl(cmfd, fcntl.F_SETFL, fl | os.O_NONBLOCK)
    lid = CMID(creator=ch, port_space=ce.RDMA_PS_TCP)
    lid.bind_addr(AddrInfo(src=args.ip, src_service=str(args.port), port_space=ce.RDMA_PS_TCP,
                           flags=ce.RAI_PASSIVE))
    lid.listen()
    ctx, pd = lid.context, lid.pd
    cq = CQ(ctx, 8192, None, None, 0)
    lun_mr = MR(pd, t.lun_bytes + 2 * 1024 * 1024, ACC)
    t.stage_off = t.lun_bytes + 1024 * 1024
    t.lun_stage = lambda off, data: lun_mr.write(bytes(data), len(data), off)
    t.lun_write = lambda off, data: lun_mr.write(bytes(data), len(data), off) if data else None
    def on_term(sig, frm):
        t.log('signal %d: exiting' % sig)
        t.done = True
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    arm_req = []
    signal.signal(signal.SIGUSR1, lambda s, f: arm_req.append(1))
    reload_req = []
    signal.signal(signal.SIGHUP, lambda s, f: reload_req.append(1))
    log('listening on %s:%d (rdma_cm fd %d), LUN %d MiB' % (args.ip, args.port, cmfd, args.lun_mb))
    print('listening', flush=True)

    conns = {}
    awaiting_est = collections.deque()
    awaiting_disc = collections.deque()
    keep = []           # CMIDs are never closed (closing one clears the listener's context)

    class RConn(Conn):
        def __init__(self, gid, num, cid):
            super().__init__(t, num)
            self.gid = gid
            self.cid = cid
            self.released = False
            qinit = QPInitAttr(qp_type=e.IBV_QPT_RC, scq=cq, rcq=cq,
                               cap=QPCap(max_send_wr=1024, max_recv_wr=N_RX + 8, max_send_sge=1,
                                         max_recv_sge=1))
            self.qp = QP(pd, qinit, QPAttr())
            for st in (e.IBV_QPS_INIT, e.IBV_QPS_RTR, e.IBV_QPS_RTS):
                a, m = cid.init_qp_attr(st)
                self.qp.modify(a, m)
            self.rx = MR(pd, N_RX * RX_BUF, ACC)
            self.tx = MR(pd, N_TX * TX_SLOT + N_BIG * BIG_SLOT, ACC)
            self.free_tx = list(range(N_TX))
            self.free_big = list(range(N_BIG))
            self.txq = collections.deque()
            self.ops = {}
            self.opseq = 0
            for i in range(N_RX):
                self.post_recv(i)

        def wrid(self, kind, idx):
            return (self.gid << 40) | (kind << 32) | idx

        def post_recv(self, i):
            wr = RecvWR(self.wrid(KIND_RECV, i), 1, [SGE(self.rx.buf + i * RX_BUF, RX_BUF, self.rx.lkey)])
            self.qp.post_recv(wr)

        def post_send_raw(self, pdu, inv):
            if len(pdu) > BIG_SLOT:
                self.log('conn%d PDU of %d bytes truncated to %d' % (self.num, len(pdu), BIG_SLOT))
                pdu = pdu[:BIG_SLOT]
            self.txq.append((pdu, inv))
            self.flush_tx()

        def flush_tx(self):
            while self.txq and not self.dead:
                pdu, inv = self.txq[0]
                big = len(pdu) > TX_SLOT
                pool = self.free_big if big else self.free_tx
                if not pool:
                    return
                slot = pool.pop()
                off = N_TX * TX_SLOT + slot * BIG_SLOT if big else slot * TX_SLOT
                self.txq.popleft()
                self.tx.write(pdu, len(pdu), off)
                idx = slot | (0x10000 if big else 0)
                sge = SGE(self.tx.buf + off, len(pdu), self.tx.lkey)
                if inv is not None:
                    wr = SendWR(self.wrid(KIND_SEND, idx), e.IBV_WR_SEND_WITH_INV, 1, imm_data=inv,
                                sg=[sge], send_flags=e.IBV_SEND_SIGNALED)
                else:
                    wr = SendWR(self.wrid(KIND_SEND, idx), e.IBV_WR_SEND, 1, sg=[sge],
                                send_flags=e.IBV_SEND_SIGNALED)
                try:
                    self.qp.post_send(wr)
                except PyverbsError as ex:
                    self.log('conn%d post_send failed: %s' % (self.num, ex))
                    pool.append(slot)
                    return

        def post_rdma(self, kind, holder, local, length, stag, va):
            self.opseq = (self.opseq + 1) & 0xffffff
            self.ops[self.opseq] = (holder, kind)
            length = min(length, lun_mr.length - local) if local < lun_mr.length else 0
            wr = SendWR(self.wrid(KIND_RDMA, self.opseq),
                        e.IBV_WR_RDMA_WRITE if kind == 'write' else e.IBV_WR_RDMA_READ, 1,
                        sg=[SGE(lun_mr.buf + local, length, lun_mr.lkey)],
                        send_flags=e.IBV_SEND_SIGNALED)
            wr.set_wr_rdma(stag, va)
            try:
                self.qp.post_send(wr)
            except PyverbsError as ex:
                self.log('conn%d post RDMA failed: %s' % (self.num, ex))
                del self.ops[self.opseq]
                self.rdma_done(holder, kind, False, 'post')

        def release(self):
            """Frees the QP and buffers of a dead connection (the CM id stays: closing it
            would clear the listener's shared context and PD)."""
            if self.released or not self.dead:
                return
            self.released = True
            for o in (self.qp, self.rx, self.tx):
                try:
                    o.close()
                except Exception as ex:
                    self.log('conn%d release: %s' % (self.num, ex))

        def on_wc(self, wc):
            if self.released:
                return
            kind = (wc.wr_id >> 32) & 0xff
            idx = wc.wr_id & 0xffffffff
            ok = wc.status == e.IBV_WC_SUCCESS
            if kind == KIND_RECV:
                if not ok:
                    if not self.dead:
                        self.log('conn%d RECV completion error status=%d' % (self.num, wc.status))
                        self.fatal('recv wc status %d' % wc.status)
                    return
                buf = self.rx.read(wc.byte_len, idx * RX_BUF)
                if not self.dead:
                    self.post_recv(idx)
                    self.on_recv(bytes(buf))
            elif kind == KIND_SEND:
                if idx & 0x10000:
                    self.free_big.append(idx & 0xffff)
                else:
                    self.free_tx.append(idx)
                if not ok and not self.dead:
                    self.log('conn%d SEND completion error status=%d' % (self.num, wc.status))
                    self.fatal('send wc status %d' % wc.status)
                self.flush_tx()
            elif kind == KIND_RDMA:
                op = self.ops.pop(idx, None)
                if op:
                    self.rdma_done(op[0], op[1], ok, wc.status)
                if not ok and not self.dead:
                    self.fatal('rdma wc status %d' % wc.status)

        def fatal(self, why):
            if t.scn.wc_error == 'ignore':
                self.log('conn%d fatal completion (%s) ignored by the scenario' % (self.num, why))
                return
            self.do_disconnect(why)

        def qp_to_error(self, why):
            if self.dead:
                return
            self.log('conn%d QP to error (%s)' % (self.num, why))
            a = QPAttr()
            a.qp_state = e.IBV_QPS_ERR
            try:
                self.qp.modify(a, e.IBV_QP_STATE)
            except PyverbsError as ex:
                self.log('modify QP to ERR failed: %s' % ex)
            self.dead = True

        def do_disconnect(self, why):
            if self.dead:
                return
            self.log('conn%d disconnect (%s)' % (self.num, why))
            try:
                self.cid.disconnect()
            except PyverbsError as ex:
                self.log('conn%d rdma_disconnect: %s' % (self.num, ex))
            self.qp_to_error(why)

    nconn = 0
    conn_base = [0]

    def summary():
        rules = ['%d x %s' % (r.fired, r.line) for r in t.scn.rules]
        log('rules fired: %s' % ('; '.join(rules) or 'none'))
        log('summary: connections=%d rules_fired=%d' % (nconn - conn_base[0],
                                                         sum(r.fired for r in t.scn.rules)))
    deadline = now() + args.timeout


    def cm_events():
        nonlocal nconn
        n = 0
        while True:
            try:
                ev = CMEvent(ch)
            except PyverbsRDMAError as ex:
                if ex.error_code in (errno.EAGAIN, errno.EWOULDBLOCK):
                    return n
                raise
            n += 1
            et = ev.event_type
            name = EVN.get(et, str(et))
            if et == ce.RDMA_CM_EVENT_CONNECT_REQUEST:
                for old in t.conns:
                    old.release()
                pdata = bytes(ev.private_data or b'')
                nconn += 1
                num = nconn - conn_base[0]
                log('CM %s #%d private_data=%s' % (name, num, pdata[:8].hex()))
                cm = t.scn.cm
                which = cm.get('conn')
                applies = which is None or int(which) == num
                cid = CMID(creator=ev, listen_id=lid)
                keep.append(cid)
                ev.ack_cm_event()
                if applies and 'reject' in cm:
                    log('CM rejecting connection %d (scenario)' % num)
                    cid.reject()
                    continue
                if applies and 'ignore' in cm:
                    log('CM ignoring connection request %d (scenario)' % num)
                    continue
                # A request the initiator gave up on meanwhile (a slow VM) can fail here:
                # refuse that one and keep serving, never die with the catalogue half run.
                try:
                    c = RConn(nconn, num, cid)
                except PyverbsError as e:
                    log('CM connection %d: setting up its QP failed (%s): rejecting it' % (num, e))
                    try:
                        cid.reject()
                    except PyverbsError:
                        pass
                    continue
                conns[nconn] = c
                t.conns.append(c)
                rep = cm.get('rep', 'c0000000') if applies else 'c0000000'
                if rep == 'none':
                    p = ConnParam(resources=1, depth=16, retry=7, rnr_retry=7, qp_num=c.qp.qp_num)
                else:
                    pd_bytes = bytes.fromhex(rep)
                    p = ConnParam(resources=1, depth=16, retry=7, rnr_retry=7, qp_num=c.qp.qp_num,
                                  data_len=len(pd_bytes))
                    p.set_private_data(pd_bytes)
                log('CM accepting connection %d, REP private data %s' % (num, rep))
                try:
                    cid.accept(p)
                except PyverbsError as e:
                    log('CM connection %d: accept failed (%s)' % (num, e))
                    t.conns.remove(c)
                    conns.pop(nconn, None)
                    c.release()
                    continue
                awaiting_est.append(c)
            elif et == ce.RDMA_CM_EVENT_ESTABLISHED:
                ev.ack_cm_event()
                c = awaiting_est.popleft() if awaiting_est else None
                log('CM %s conn%s' % (name, c.num if c else '?'))
                if c:
                    c.established = True
                    awaiting_disc.append(c)
            elif et == ce.RDMA_CM_EVENT_DISCONNECTED:
                ev.ack_cm_event()
                c = awaiting_disc.popleft() if awaiting_disc else None
                log('CM %s conn%s' % (name, c.num if c else '?'))
                if c:
                    if not c.dead:
                        try:
                            c.cid.disconnect()
                        except PyverbsError:
                            pass
                        c.qp_to_error('peer disconnected')
                    if c.logout_done and args.exit_after_logout:
                        t.exit_at = now() + 3
            else:
                ev.ack_cm_event()
                log('CM %s' % name)
                if et in (ce.RDMA_CM_EVENT_CONNECT_ERROR, ce.RDMA_CM_EVENT_UNREACHABLE,
                          ce.RDMA_CM_EVENT_REJECTED) and awaiting_est:
                    c = awaiting_est.popleft()
                    c.dead = True
                if et == ce.RDMA_CM_EVENT_DEVICE_REMOVAL:
                    t.done = True
            if et == ce.RDMA_CM_EVENT_CONNECT_REQUEST and t.exit_at:
                t.exit_at = None

    idle = 0
    while not t.done:
        busy = cm_events()
        while True:
            npolled, wcs = cq.poll(64)
            if npolled <= 0:
                break
            busy += npolled
            for wc in wcs:
                c = conns.get(wc.wr_id >> 40)
                if c is not None:
                    c.on_wc(wc)
        if reload_req:
            # Serve mode: --control names the next scenario and its log.
            reload_req.clear()
            try:
                spath, lpath = open(args.control).read().split()
                nscn = Scenario(open(spath).read())
            except (OSError, ValueError, SystemExit) as ex:
                log('reload failed: %s' % ex)
            else:
                summary()
                for c in t.conns:
                    c.release()
                live = [c for c in t.conns if not c.dead and c.ffp and not c.discovery]
                log.reopen(lpath)
                t.reload(nscn)
                # A live session carries over: its connection is the scenario's conn1.
                conn_base[0] = nconn
                if live:
                    live[-1].num = 1
                    conn_base[0] = nconn - 1
                    t.ffp_conn = live[-1]
                    log('conn1 (live) carried over from the previous scenario')
                deadline = now() + args.timeout
                arm_req.clear()
                log('scenario %s loaded' % spath)
        if arm_req:
            arm_req.clear()
            t.log('SIGUSR1: the test is logged in')
            t.arm()
        t.run_timers()
        t.step_tasks()
        tn = now()
        if tn >= deadline:
            log('timeout (%d s): exiting' % args.timeout)
            break
        if t.exit_at and tn >= t.exit_at and not args.control:
            log('session logged out and connection closed: exiting')
            break
        if busy:
            idle = 0
            continue
        idle = min(idle + 1, 10)
        wait = 0.0005 * idle
        d = t.next_deadline()
        if d is not None:
            wait = max(0.0, min(wait, d - tn))
        select.select([cmfd], [], [], wait)
    for c in t.conns:
        for cm in c.cmds.values():
            if not cm.done:
                log('conn%d command itt=0x%08x op=0x%02x still outstanding at exit' % (c.num, cm.itt, cm.op))
    summary()
    log.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--ip', default='10.77.0.1')
    ap.add_argument('--port', type=int, default=3262)
    ap.add_argument('--scenario', default=None)
    ap.add_argument('--log', default=None)
    ap.add_argument('--timeout', type=float, default=120)
    ap.add_argument('--iqn', default='iqn.2026-12.org.iser-rs.test:adv')
    ap.add_argument('--lun-mb', type=int, default=32)
    ap.add_argument('--no-exit-after-logout', dest='exit_after_logout', action='store_false')
    ap.add_argument('--control', default=None,
                    help='serve mode: on SIGHUP read "SCENARIO LOG" from this file and switch')
    ap.add_argument('--selftest', action='store_true')
    ap.add_argument('--check', action='store_true', help='parse the scenario and exit')
    args = ap.parse_args()
    if args.selftest:
        selftest()
        return
    text = open(args.scenario).read() if args.scenario else ''
    scn = Scenario(text)
    if args.check:
        print('%s: %d rules, %d timers' % (args.scenario, len(scn.rules), len(scn.timers)))
        return
    log = Log(args.log)
    log('scenario %s' % args.scenario)
    rdma_main(args, scn, log)
    # No destructors: closing pyverbs objects in the wrong order can crash or block.
    os._exit(0)


if __name__ == '__main__':
    main()
