# SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
"""The RDMA target proper (pyverbs): rdma_cm, QPs, CQ polling, the event loop. Part of target.py."""

import collections
import errno
import fcntl
import os
import select
import signal

from adv_pdu import BIG_SLOT, N_BIG, N_RX, N_TX, RX_BUF, TX_SLOT, now
from adv_scenario import Scenario
from adv_state import Target
from adv_conn import Conn


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
