// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! Completion: the CQ handler — received PDUs (the receive ring and its repost batch, the
//! login buffer), SEND and Data-Out completions, local invalidations — and delivery to
//! libiscsi; `cleanup_task`, where a task ends.
//!
//! Locks and contexts: the CQ's softirq poller, one at a time per CQ. Every completion takes
//! `rx` once (classify, update, copy out), unlocks, then calls libiscsi; only Data-Out
//! completions also take `dp`, after `rx`, never under it. A response is held in its task's
//! slot until the task's SENDs (and a LOCAL_INV of its registration) completed.
//! `cleanup_task` runs under libiscsi's `back_lock` (atomic) and takes `res` (and, when a
//! response is held or a key still valid, `rx` before it).

use super::*;

impl IserConn {
    /// `cleanup_task` (atomic, back_lock held): takes `res`, and `rx` only when a response is
    /// held or a key is still valid (then `rx` first, `res` after it); never `dp`, so a task
    /// completed on one CPU is not held up by a transmit on another.
    pub(crate) fn cleanup_task(&self, task: &mut Task<'_>) {
        #[cfg(iser_test_faults)]
        crate::planted::on_cleanup_task(task);
        let i = task.index();
        // A response held until this task's SENDs complete (`on_rx`) answers this task only:
        // when the task ends first (abort, connection cleanup), the response is dropped, so
        // that the completion never delivers it to the next owner of the task's tag.
        //
        // A task that ends without its response still has a valid key unless its ABORT
        // TASK's answer invalidated it (`on_rx`): a LUN or target reset, a TMF that timed
        // out, the connection's cleanup. The target could RDMA into or out of pages the
        // block layer takes back now. A LOCAL_INV is posted for it here, before the MR goes
        // back to the pool in `res` below, so that it precedes the MR's next registration on
        // the send queue. It cannot be waited for (atomic context, and libiscsi hands the
        // command back right after): the window is the LOCAL_INV's execution, where it was
        // until the MR's next use (SRP does the same). A failed post (a QP in error) leaves
        // the key to the next registration's chained LOCAL_INV or to teardown.
        //
        // The usual end of a task, after its response was delivered, needs neither: the
        // response invalidated its keys and no response is held. That is checked under `res`
        // ([`Shared::rx_cleanup_needed`]: the slot's `held` flag and key words, atomics),
        // and the task released there, in one lock round trip. Otherwise `res` is left and
        // `rx` taken first: `rx` is taken before `res`, never under it; libiscsi's locks may
        // be held (never taken under `rx`). What `rx` would find is the same either way: a
        // response held, or a key invalidated, after the check is one that would have come
        // after the locked section as well.
        // A task management request that ends here is not answered any more: its slot's
        // `tmf_ref` is cleared under `res`, or under `rx` when teardown has taken `res`.
        let tmf_cleared = {
            let mut g = self.res.lock();
            if let Some(r) = &mut *g {
                if let Some(s) = r.sh.slots.get(i) {
                    s.tmf_ref.store(0, Ordering::Release);
                }
                if !r.sh.rx_cleanup_needed(i) {
                    r.release_task(i);
                    return;
                }
            }
            g.is_some()
        };
        let (dropped, invalidated) = Self::with_bh(&self.rx, |rx| {
            let Rx { rq, side } = rx;
            let Some(side) = side.as_mut() else {
                return (false, Ok(false));
            };
            let dropped = side
                .slots
                .get_mut(i)
                .and_then(|s| s.deferred.take())
                .is_some();
            if let Some(s) = side.sh.slots.get(i) {
                s.held.store(false, Ordering::Release);
                if !tmf_cleared {
                    s.tmf_ref.store(0, Ordering::Release);
                }
            }
            // After teardown took the handle there is nothing to post on (and no target).
            let invalidated = match rq {
                Some(_) => Self::invalidate_local(rq.as_ref(), &side.sh, i, i, |_| true),
                None => Ok(false),
            };
            (dropped, invalidated)
        });
        if dropped {
            Stats::inc(&self.stats.s.c.rsp_held_dropped);
        }
        // A failed post is counted; the key stays to the next registration's chained
        // LOCAL_INV or to teardown (see above).
        let invalidated = invalidated.unwrap_or_else(|_| {
            Stats::inc(&self.stats.s.c.err_post);
            false
        });
        if invalidated {
            Stats::inc(&self.stats.s.c.inval_local);
            Stats::inc(&self.stats.s.c.inval_aborted);
        }
        if let Some(r) = &mut *self.res.lock() {
            r.release_task(i);
        }
    }

    /// Delivers a validated PDU (BHS and data segment; see [`rx::parse`]) to libiscsi. No
    /// lock is held: libiscsi takes its own and may call `cleanup_task` back.
    fn deliver(st: &ConnStats, iconn: IscsiConn, h: &mut [u8; bhs::BHS_LEN], data: &mut [u8]) {
        let rc = iconn.complete_pdu(h, data);
        if rc != 0 && rc as u32 != crate::ffi::iscsi::err::NO_SCSI_CMD {
            fail(st, iconn, rc as u32);
        }
    }

    /// Fails the connection because of a PDU the target should not have sent.
    fn reject_pdu(st: &ConnStats, iconn: IscsiConn, what: &str, e: rx::Error) {
        Stats::inc(&st.s.c.err_protocol);
        iser_err!(
            "{}: {} ({:?}), terminating connection\n",
            what,
            e.reason(),
            e
        );
        let err = match e {
            rx::Error::Bhs(bhs::Error::DataTooLong { .. })
            | rx::Error::Bhs(bhs::Error::DataBeyondReceived { .. }) => {
                crate::ffi::iscsi::err::DATALEN
            }
            _ => crate::ffi::iscsi::err::PROTO,
        };
        fail(st, iconn, err);
    }

    /// A completed receive of the login/text response buffer.
    fn on_login_rx(st: &ConnStats, g: RxGuard<'_>, wc: &Wc) {
        let Some(side) = g.side.as_ref() else {
            return;
        };
        let sh = &*side.sh;
        let iconn = sh.iscsi;
        if !wc.ok {
            drop(g);
            log_wc_error(st, "login_rsp", wc);
            if !wc.flushed {
                fail(st, iconn, crate::ffi::iscsi::err::CONN_FAILED);
            }
            return;
        }
        sh.login_rsp.sync_for_cpu(0, sizing::RX_LOGIN_SIZE);
        // Login and text responses are rare and up to 8 KiB: copied out with an atomic
        // allocation rather than a per-connection buffer that would need its own lock, then
        // validated in the copy.
        let received = (wc.byte_len as usize).min(sizing::RX_LOGIN_SIZE);
        let Ok(mut copy) = KVec::from_elem(0u8, received, GFP_ATOMIC) else {
            drop(g);
            iser_err!("no memory for a login response\n");
            fail(st, iconn, crate::ffi::iscsi::err::CONN_FAILED);
            return;
        };
        if sh.login_rsp.read_into(0, &mut copy).is_none() {
            // Not reached: `received` is at most the buffer's size.
            drop(g);
            fail(st, iconn, crate::ffi::iscsi::err::CONN_FAILED);
            return;
        }
        let r = match rx::parse(&copy, received, sizing::LOGIN_DATA_LEN, sh.n) {
            Ok(r) => r,
            Err(e) => {
                drop(g);
                Self::reject_pdu(st, iconn, "login response rejected", e);
                return;
            }
        };
        Stats::inc(&st.s.c.pdus_rx);
        let ffp = r.pdu.opcode == bhs::OP_LOGIN_RSP && ptask::login_to_ffp(r.pdu.flags);
        if ffp && !sh.discovery.load(Ordering::Relaxed) {
            if let Some(rq) = &g.rq {
                if let Err(e) = sh.post_rx(rq, 0) {
                    iser_err!("posting receive buffer 0 failed: {:?}\n", e);
                }
            }
        }
        drop(g);
        // The copy is iSER header, BHS and data segment (`r.len` bytes, validated).
        let body = copy.get_mut(hdr::LEN..r.len).unwrap_or(&mut []);
        let (h, data) = body.split_at_mut(bhs::BHS_LEN.min(body.len()));
        if let Ok(h) = h.try_into() {
            Self::deliver(st, iconn, h, data);
        }
    }

    /// A completed receive of ring buffer `i`: validate, give the buffer back to the target,
    /// then deliver the PDU, or hold it in its task's slot until the task's SENDs completed
    /// (iser-spec.md 11, latent issues).
    fn on_rx<'a>(&'a self, st: &ConnStats, mut g: RxGuard<'a>, wc: &Wc, i: usize) {
        let Rx { rq, side } = &mut *g;
        let Some(side) = side.as_mut() else {
            return;
        };
        let iconn = side.sh.iscsi;
        if !wc.ok {
            drop(g);
            log_wc_error(st, "task_rsp", wc);
            if !wc.flushed {
                fail(st, iconn, crate::ffi::iscsi::err::CONN_FAILED);
            }
            return;
        }
        let off = i * sizing::RX_PAYLOAD;
        side.sh.rx.sync_for_cpu(off, sizing::RX_PAYLOAD);
        // What arrived is copied out (the HCA keeps writing the rest of the ring) into an
        // area left uninitialised beyond it, then validated in the copy.
        let received = (wc.byte_len as usize).min(sizing::RX_PAYLOAD);
        let mut area = MaybeUninit::<[u8; sizing::RX_PAYLOAD]>::uninit();
        let buf = side.sh.rx.read_uninit(off, received, &mut area);
        // The copy is ours: give the buffer back to the target (4.11), in batches.
        if let Some(rq) = rq {
            if let Err(e) = side.repost(rq, i) {
                iser_err!("reposting receive buffers (up to {}) failed: {:?}\n", i, e);
            }
        }
        // Not reached: every ring buffer is `RX_PAYLOAD` bytes of the `rx` area.
        let Some(buf) = buf else {
            drop(g);
            iser_err!("receive buffer {} outside the ring\n", i);
            fail(st, iconn, crate::ffi::iscsi::err::CONN_FAILED);
            return;
        };
        let r = match rx::parse(buf, received, sizing::RECV_DATA_SEG_LEN, side.sh.n) {
            Ok(r) => r,
            Err(e) => {
                drop(g);
                Self::reject_pdu(st, iconn, "received PDU rejected", e);
                return;
            }
        };
        // Not reached: `parse` validated the data segment's length against what arrived.
        let Some(copy) = RxCopy::new(buf, r.pdu.data_len) else {
            drop(g);
            fail(st, iconn, crate::ffi::iscsi::err::CONN_FAILED);
            return;
        };
        Stats::inc(&st.s.c.pdus_rx);
        let sh = &*side.sh;
        let slot = r.slot.and_then(|s| sh.slots.get(s).map(|x| (s, x)));
        if r.pdu.opcode == bhs::OP_SCSI_RSP {
            Stats::inc(&st.s.c.scsi_rsp_rx);
            #[cfg(iser_test_faults)]
            {
                crate::planted::maybe_stall();
                if crate::planted::fail_at_response() {
                    drop(g);
                    iser_err!("TEST BUILD: planted fault conn_error: failing the connection\n");
                    fail(st, iconn, crate::ffi::iscsi::err::CONN_FAILED);
                    return;
                }
            }
            if let Some((_, s)) = slot {
                let t0 = s.t0.load(Ordering::Relaxed);
                if t0 != 0 {
                    st.s.lat.record(time::clock_ns().saturating_sub(t0));
                }
            }
        }
        if let Some(rkey) = wc.invalidated_rkey {
            if let Err(reason) = Self::remote_invalidate(sh, slot.map(|(_, s)| s), rkey) {
                drop(g);
                iser_err!("{} (rkey {:#x}), terminating connection\n", reason, rkey);
                fail(st, iconn, crate::ffi::iscsi::err::CONN_FAILED);
                return;
            }
            Stats::inc(&st.s.c.inval_remote);
        }
        let Some((si, s)) = slot else {
            drop(g);
            Self::deliver(st, iconn, copy.bhs, copy.data);
            return;
        };
        if s.xmit_busy.load(Ordering::Acquire) {
            // The response overtook the unsolicited Data-Outs of its own command (a target
            // answering early): wait until `xmit_task`, which holds `dp` until every SEND of
            // the task is posted and counted, is done. Rare; `rx` is not held meanwhile.
            drop(g);
            drop(self.dp.lock());
            g = self.rx.lock();
            if g.side.is_none() {
                // Torn down meanwhile: the task is failed by libiscsi.
                return;
            }
        }
        let Rx { rq, side } = &mut *g;
        let Some(side) = side.as_mut() else {
            return;
        };
        // A SCSI Response that did not invalidate its task's registration (the target did
        // not use Send with Invalidate, or Send with Invalidate was not negotiated): the
        // registration is invalidated here and the response waits for it, so that the
        // target can no longer reach the task's pages once libiscsi gave them back (issue 20
        // item 5; NVMe/RDMA hosts do the same). With Send with Invalidate, nothing to do.
        // The "Function complete" answer to a task management request releases the tasks
        // it names (ABORT TASK: one; ABORT/CLEAR TASK SET, LUN RESET: those of its LUN;
        // TARGET WARM/COLD RESET: all), which end without their responses: their
        // registrations are invalidated the same way before the answer is delivered (no
        // legitimate transfer for them follows the answer: RFC 7143 4.2.3.3). Any other
        // answer releases nothing (libiscsi keeps the tasks and escalates).
        let inval = if r.pdu.opcode == bhs::OP_SCSI_RSP && wc.invalidated_rkey.is_none() {
            // Most such responses answer a command on the DMA key (nothing to invalidate):
            // checked first, without the call.
            if side.sh.key_valid(si) {
                Self::invalidate_local(rq.as_ref(), &side.sh, si, si, |_| true).map(usize::from)
            } else {
                Ok(0)
            }
        } else if r.pdu.opcode == bhs::OP_TMF_RSP {
            let tmf = side
                .sh
                .slots
                .get(si)
                .and_then(|s| ptask::TmfRef::decode(s.tmf_ref.swap(0, Ordering::AcqRel)));
            match tmf {
                Some(t) if copy.bhs[2] == bhs::TMF_RSP_COMPLETE => {
                    Self::invalidate_released(rq.as_ref(), &side.sh, si, t)
                }
                _ => Ok(0),
            }
        } else {
            Ok(0)
        };
        let inv_posted = match inval {
            Ok(n) => {
                // Counted per task (one or two registrations each).
                if n > 0 {
                    Stats::add(&st.s.c.inval_local, n as u64);
                    if r.pdu.opcode == bhs::OP_TMF_RSP {
                        Stats::add(&st.s.c.inval_aborted, n as u64);
                        Stats::inc(&st.s.c.tmf_held);
                    }
                }
                n > 0
            }
            Err(e) => {
                drop(g);
                Stats::inc(&st.s.c.err_post);
                iser_err!(
                    "could not invalidate the registrations that the response to {} releases ({:?}): the response is dropped, terminating connection\n",
                    r.pdu.itt,
                    e
                );
                fail(st, iconn, crate::ffi::iscsi::err::CONN_FAILED);
                return;
            }
        };
        let pending = side
            .sh
            .slots
            .get(si)
            .is_some_and(|s| s.sends_pending.load(Ordering::Acquire) > 0);
        if let (true, Some(rs)) = (pending, side.slots.get_mut(si)) {
            if rs.deferred.is_some() {
                // Two responses for one task before its request was even sent: the target
                // is broken; completing the task now would free buffers the HCA may still
                // be reading.
                drop(g);
                iser_err!(
                    "second response for task {} before its request completed, terminating connection\n",
                    r.pdu.itt
                );
                Stats::inc(&st.s.c.err_protocol);
                fail(st, iconn, crate::ffi::iscsi::err::PROTO);
                return;
            }
            if !inv_posted {
                Stats::inc(&st.s.c.rsp_before_send_done);
            }
            rs.deferred = Some(HeldPdu::hold(&copy));
            if let Some(s) = side.sh.slots.get(si) {
                s.held.store(true, Ordering::Release);
            }
            return;
        }
        drop(g);
        Self::deliver(st, iconn, copy.bhs, copy.data);
    }

    /// The LOCAL_INV of task slot `i`'s registration completed: deliver the response held
    /// for it. If it failed, the key may still be valid: the response is dropped (libiscsi
    /// fails the task after teardown deregistered the MR) and the connection fails.
    fn on_inv(&self, st: &ConnStats, mut g: RxGuard<'_>, wc: &Wc, i: usize) {
        let Some(side) = g.side.as_mut() else {
            return;
        };
        let iconn = side.sh.iscsi;
        let done = side.sh.send_done(i);
        let deferred = match side.slots.get_mut(i) {
            Some(s) if done || !wc.ok => s.deferred.take(),
            _ => None,
        };
        drop(g);
        if !wc.ok {
            log_wc_error(st, "local invalidation", wc);
            if deferred.is_some() {
                Stats::inc(&st.s.c.rsp_held_dropped);
            }
            if !wc.flushed {
                fail(st, iconn, crate::ffi::iscsi::err::CONN_FAILED);
            }
            return;
        }
        if let Some(mut h) = deferred {
            let data = h.data.get_mut(..h.data_len).unwrap_or(&mut []);
            Self::deliver(st, iconn, &mut h.bhs, data);
        }
    }

    /// A completed SEND (command, control PDU: `Cqe::Send(i)`) or Data-Out (`dataout`) that
    /// task slot `i` waits for.
    fn on_send(
        &self,
        st: &ConnStats,
        mut g: RxGuard<'_>,
        wc: &Wc,
        i: usize,
        dataout: Option<usize>,
    ) {
        let Some(side) = g.side.as_mut() else {
            return;
        };
        let iconn = side.sh.iscsi;
        let mut deferred = None;
        let mut put = None;
        let i = match dataout {
            Some(di) => side
                .sh
                .dataout_owner
                .get(di)
                .map_or(usize::MAX, |o| o.swap(usize::MAX, Ordering::AcqRel)),
            None => i,
        };
        if side.sh.send_done(i) {
            if let Some(s) = side.slots.get_mut(i) {
                put = s.put_on_send.take();
                // Copied out (only when a response waits) to deliver it after unlocking.
                deferred = s.deferred.take();
            }
        }
        drop(g);
        if let Some(di) = dataout {
            // The descriptor belongs to the submission side. Teardown cannot have replaced
            // the bound state: its drain waits for this handler.
            let mut d = self.dp.lock();
            if let Some(b) = d.bound.as_mut() {
                b.dataout_free.push(di);
            }
        }
        if !wc.ok {
            log_wc_error(
                st,
                if dataout.is_some() {
                    "dataout"
                } else {
                    "command/control"
                },
                wc,
            );
            if !wc.flushed {
                fail(st, iconn, crate::ffi::iscsi::err::CONN_FAILED);
            }
        }
        if let Some(p) = put {
            p.put();
        }
        if let Some(mut h) = deferred {
            let data = h.data.get_mut(..h.data_len).unwrap_or(&mut []);
            Self::deliver(st, iconn, &mut h.bhs, data);
        }
    }
}

impl CqHandler for IserConn {
    /// Every completion takes `rx` once: classify, update, copy out, unlock, then call
    /// libiscsi. Only Data-Out completions also take `dp` (after `rx`, not under it).
    fn complete(&self, wc: &Wc) {
        let g = self.rx.lock();
        let Some(which) = g.side.as_ref().and_then(|s| s.sh.which(wc.cqe)) else {
            return;
        };
        let st = &*self.stats;
        match which {
            Cqe::Send(i) => self.on_send(st, g, wc, i, None),
            Cqe::DataOut(di) => self.on_send(st, g, wc, usize::MAX, Some(di)),
            Cqe::Rx(i) => self.on_rx(st, g, wc, i),
            Cqe::Inv(i) => self.on_inv(st, g, wc, i),
            Cqe::LoginRx => Self::on_login_rx(st, g, wc),
            Cqe::Reg => {
                let i = g.side.as_ref().map(|s| s.sh.iscsi);
                drop(g);
                log_wc_error(st, "memreg", wc);
                if let (false, Some(i)) = (wc.flushed, i) {
                    fail(st, i, crate::ffi::iscsi::err::CONN_FAILED);
                }
            }
            Cqe::Quiet => {
                let i = g.side.as_ref().map(|s| s.sh.iscsi);
                drop(g);
                if !wc.ok {
                    log_wc_error(st, "command", wc);
                    if let (false, Some(i)) = (wc.flushed, i) {
                        fail(st, i, crate::ffi::iscsi::err::CONN_FAILED);
                    }
                }
            }
        }
    }
}
