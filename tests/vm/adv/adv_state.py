# SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
"""The target's state: its LUN, commands and sessions (no RDMA). Part of target.py."""

import struct

from adv_pdu import BLOCK, M32, now


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
