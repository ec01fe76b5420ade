// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! Submission: libiscsi's `init_task` and `xmit_task` — SCSI commands (registration of the
//! data buffer, immediate data), their unsolicited Data-Outs, and control PDUs (login, text,
//! NOP-Out, task management, logout), each a SEND of the task's header area.
//!
//! Locks and contexts: atomic, under libiscsi's `frwd_lock` with softirqs off (our hosts
//! have no transmit work queue). `xmit_task` takes `dp` for the whole transmission (the QP's
//! send side, header mappings, Data-Out descriptors, signalling), and under it `res` once
//! per command (an MR from the pool, the mapping recorded) and `rx` only for control PDUs.
//! A failure after the command went out cannot be returned (libiscsi would send it again):
//! the connection is failed from the module's work queue instead.

use super::*;

/// Why `xmit_task` failed.
enum XmitError {
    /// Nothing of the task went out; libiscsi may send it again.
    Requeue(Error),
    /// Posting failed: the connection must fail. `sent` says whether the task's command
    /// already went out (then libiscsi must not send it again).
    Fatal { err: Error, sent: bool },
}

impl From<Error> for XmitError {
    fn from(e: Error) -> Self {
        XmitError::Requeue(e)
    }
}

impl IserConn {
    /// Iterates the task-send path: the caller holds `dp` via `g`.
    fn with_dp<R>(&self, f: impl FnOnce(&Qp<IserConn>, &mut Bound) -> Result<R>) -> Result<R> {
        let mut g = self.dp.lock();
        let dp = &mut *g;
        match (&dp.qp, dp.bound.as_mut()) {
            (Some(qp), Some(b)) => f(qp, b),
            _ => Err(ENODEV),
        }
    }

    /// `init_task` (atomic, under libiscsi's `frwd_lock`, before the command gets its CmdSN):
    /// refuses a SCSI command that can never go out on this transport
    /// ([`ptask::refusal`]). libiscsi completes a command whose `init_task` failed at once
    /// with `DID_ABORT` (no retry: the midlayer passes it up), where any error from
    /// `xmit_task` requeues it and the block layer sends it again until the SCSI timeout.
    /// Nothing else is done here: the task's header area is mapped at its first
    /// transmission, under the `dp` lock that `xmit_task` takes anyway.
    pub(crate) fn init_task(&self, task: &mut Task<'_>) -> Result {
        if !task.is_scsi() {
            return Ok(());
        }
        let flags = task.bhs()[1];
        let (prot_normal, len, entries) = match task.scsi_data() {
            Some(d) => (d.prot_normal, d.len, d.entries()),
            None => (true, 0, 0),
        };
        match ptask::refusal(flags, prot_normal, len, entries) {
            None => Ok(()),
            Some(r) => {
                Stats::inc(&self.stats.s.c.err_cmd_refused);
                iser_err!("command to {} refused: {}\n", self.peer, r.reason());
                Err(EINVAL)
            }
        }
    }

    /// `xmit_task` (atomic, under libiscsi's `frwd_lock`).
    ///
    /// A task none of whose PDUs went out returns its error, and libiscsi sends it again
    /// later. Once its command went out, a failure of a later PDU (an unsolicited Data-Out)
    /// must not make libiscsi send the command again with the same CmdSN: the connection
    /// fails instead (from the workqueue, because `iscsi_conn_failure` takes `frwd_lock`) and
    /// recovery completes the task.
    pub(crate) fn xmit_task(this: ArcBorrow<'_, Self>, task: &mut Task<'_>) -> Result {
        let r = this.with_dp(|qp, b| {
            // Map the task's header area once per connection (libiscsi keeps it for the
            // session's life). A failure returns the task to libiscsi, which sends it later.
            let dev = b.dev;
            let hdr = b.hdrs.get_mut(task.index()).ok_or(EINVAL)?;
            if hdr.is_none() {
                *hdr = Some(task.map_hdrs(dev).inspect_err(|e| {
                    iser_err!("mapping a task header failed: {:?}\n", e);
                })?);
            }
            Ok(if task.is_scsi() {
                // A response that overtakes the unsolicited Data-Outs waits for them to be
                // posted and counted (see `SlotShared::xmit_busy`).
                let busy = task.has_unsol_data();
                let idx = task.index();
                let mark = |b: &Bound, v: bool| {
                    if let Some(s) = b.sh.slots.get(idx) {
                        s.xmit_busy.store(v, Ordering::Release);
                    }
                };
                if busy {
                    // Every Data-Out of this write must have a descriptor before its command
                    // goes out (once it has, a Data-Out that cannot be sent fails the
                    // connection): else libiscsi requeues the command, and descriptors come
                    // back as earlier Data-Outs complete.
                    let need = sizing::dataouts_for(task.unsol_len(), task.max_xmit_dlength());
                    if !matches!(need, Some(k) if k <= b.dataout_free.available()) {
                        Stats::inc(&b.st.s.c.requeue_dataout);
                        return Ok(Err(XmitError::Requeue(EAGAIN)));
                    }
                    mark(b, true);
                }
                let r = Self::send_command(qp, b, &this.res, task).and_then(|w| {
                    Self::send_data_outs(qp, b, task, w)
                        .map_err(|err| XmitError::Fatal { err, sent: true })
                });
                if busy {
                    mark(b, false);
                }
                r
            } else {
                Self::send_control(qp, b, &this.rx, task)
            })
        })?;
        match r {
            Ok(()) => Ok(()),
            Err(XmitError::Requeue(e)) => Err(e),
            Err(XmitError::Fatal { err, sent }) => {
                iser_err!(
                    "transmit to {} failed ({:?}), failing the connection\n",
                    this.peer,
                    err
                );
                if let Some(wq) = crate::ffi::wq::WQ.get() {
                    // Already queued: the failure is reported once.
                    let _ = wq.queue().enqueue(Arc::<Self>::from(this));
                }
                if sent {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }

    // Inlined into its two callers: the arguments are aggregates the call would pass
    // through memory (bench-insns, devnotes).
    #[inline(always)]
    fn post_task_send(
        qp: &Qp<IserConn>,
        b: &mut Bound,
        idx: usize,
        reg: Option<(usize, Option<u32>, RemoteAccess)>,
        data: Option<Sge>,
        track: bool,
    ) -> Result {
        let lkey = b.sh.lkey;
        let sig = b.signals.next(track);
        let cqe = b.sh.cqe_of(match sig {
            sq::Signal::Track => Cqe::Send(idx),
            _ => Cqe::Quiet,
        });
        let pending = &b.sh.slots.get(idx).ok_or(EINVAL)?.sends_pending;
        let h = b.hdrs.get(idx).and_then(Option::as_ref).ok_or(EINVAL)?;
        let mut sges = [
            Sge {
                addr: h.dma(),
                len: sizing::HEADERS_LEN as u32,
                lkey,
            },
            Sge::default(),
        ];
        // A header-only SEND goes inline where the QP allows it: the provider copies the 76
        // bytes at post time instead of the device reading them (for soft-RoCE: instead of a
        // memory region lookup and copy when it builds the packet).
        let inline = match data {
            None => h
                .inline(sizing::HEADERS_LEN)
                .filter(|i| i.len() <= qp.max_inline()),
            Some(_) => None,
        };
        let is_inline = inline.is_some();
        let payload = match inline {
            Some(i) => Gather::Inline(i),
            None => {
                h.sync_for_device();
                let nsge = if let Some(d) = data {
                    sges[1] = d;
                    2
                } else {
                    1
                };
                Gather::Mapped(&sges[..nsge])
            }
        };
        let rr = match reg {
            Some((i, inval, access)) => Some(RegReq {
                mr: b.fr.get(i).ok_or(EINVAL)?,
                invalidate: inval,
                cqe: b.sh.cqe_of(Cqe::Reg),
                access,
            }),
            None => None,
        };
        // Counted before the post: the completion may run on another CPU before the post
        // returns.
        let track = matches!(sig, sq::Signal::Track);
        if track {
            pending.fetch_add(1, Ordering::AcqRel);
        }
        if let Err(e) = qp.post_send(rr, cqe, payload, sig.signaled()) {
            if track {
                pending.fetch_sub(1, Ordering::AcqRel);
            }
            Stats::inc(&b.st.s.c.err_post);
            return Err(e);
        }
        if is_inline {
            Stats::inc(&b.st.s.c.sends_inline);
        }
        b.signals.posted(sig);
        if matches!(sig, sq::Signal::Quiet) {
            Stats::inc(&b.st.s.c.sends_unsignaled);
        }
        Ok(())
    }

    fn send_control(
        qp: &Qp<IserConn>,
        b: &mut Bound,
        rx: &SpinLock<Rx>,
        task: &mut Task<'_>,
    ) -> core::result::Result<(), XmitError> {
        let fatal = |err| XmitError::Fatal { err, sent: false };
        let idx = task.index();
        let hdrs = task.hdrs_mut();
        hdrs[..hdr::LEN].copy_from_slice(&hdr::Header::default().encode());
        let bhs_bytes = *task.bhs();
        let dlen = bhs::data_segment_length(&bhs_bytes) as usize;
        let op = bhs::opcode(&bhs_bytes);
        // A task management request: which tasks its answer releases (set before the post;
        // `on_rx`).
        if let Some(s) = b.sh.slots.get(idx) {
            let r = bhs::tmf_scope(&bhs_bytes).and_then(|sc| ptask::TmfRef::of(sc, b.sh.n));
            s.lun.store(bhs::lun(&bhs_bytes), Ordering::Relaxed);
            s.tmf_ref.store(ptask::TmfRef::encode(r), Ordering::Release);
        }
        let login_task = task.is_login_task();
        let mut data = None;
        if dlen > 0 {
            if !login_task {
                iser_err!("data present on non login task (opcode {:#x})\n", op);
                return Err(EINVAL.into());
            }
            let payload = task.mgmt_data();
            if payload.len() > sizing::LOGIN_DATA_LEN || payload.len() < dlen {
                iser_err!(
                    "login/text payload of {} bytes does not fit\n",
                    payload.len()
                );
                return Err(EINVAL.into());
            }
            let n = payload.len();
            let Some(dst) = b.login_req.bytes_mut().get_mut(..n) else {
                return Err(EINVAL.into());
            };
            dst.copy_from_slice(payload);
            b.login_req.sync_for_device(0, n);
            data = Some(Sge {
                addr: b.login_req.dma(0),
                len: n as u32,
                lkey: b.sh.lkey,
            });
        }
        if login_task {
            let sh = &*b.sh;
            let g = rx.lock();
            let rq = g.rq.as_ref().ok_or(ENODEV).map_err(fatal)?;
            sh.login_rsp.sync_for_device(0, sizing::RX_LOGIN_SIZE);
            rq.post_recv(
                sh.cqe_of(Cqe::LoginRx),
                Sge {
                    addr: sh.login_rsp.dma(0),
                    len: sizing::RX_LOGIN_SIZE as u32,
                    lkey: sh.lkey,
                },
            )
            .map_err(fatal)?;
            let to_ffp = op == bhs::OP_LOGIN && ptask::login_to_ffp(bhs_bytes[1]);
            let discovery = sh.iscsi.is_discovery();
            sh.discovery.store(discovery, Ordering::Relaxed);
            // Pre-post the ring (all but slot 0, which follows the final login response)
            // once, before the request that may enter full feature phase (4.11); never for
            // a discovery session, whose Text responses need the login buffer.
            if to_ffp && !discovery && !b.ring_posted {
                for i in 1..sh.nrx {
                    sh.post_rx(rq, i).map_err(fatal)?;
                }
                b.ring_posted = true;
            }
        }
        // A PDU nobody answers (reserved ITT: a NOP-Out) gives its task reference back when
        // its SEND completed: recorded before the post, which the completion may overtake.
        let reserved = bhs::itt(&bhs_bytes) == bhs::RESERVED_ITT;
        if reserved {
            Self::set_put_on_send(rx, idx, Some(task.handle()));
        }
        if let Err(e) = Self::post_task_send(qp, b, idx, None, data, true) {
            if reserved {
                Self::set_put_on_send(rx, idx, None);
            }
            return Err(fatal(e));
        }
        Stats::inc(&b.st.s.c.control_pdus);
        Ok(())
    }

    /// Sets (or clears) the task reference slot `idx` drops when its SENDs completed.
    fn set_put_on_send(rx: &SpinLock<Rx>, idx: usize, h: Option<TaskHandle>) {
        let mut g = rx.lock();
        if let Some(s) = g.side.as_mut().and_then(|s| s.slots.get_mut(idx)) {
            s.put_on_send = h;
        }
    }

    /// Sends a SCSI command; returns the address and key of a write's buffer, from which
    /// its unsolicited Data-Outs are sent.
    fn send_command(
        qp: &Qp<IserConn>,
        b: &mut Bound,
        res: &SpinLock<Option<Res>>,
        task: &mut Task<'_>,
    ) -> core::result::Result<Option<(u64, u32)>, XmitError> {
        let idx = task.index();
        // The fields used, read in place (not a copy of the whole BHS).
        let (flags, edtl, lun) = {
            let h = task.bhs();
            (
                h[1],
                u32::from_be_bytes([h[20], h[21], h[22], h[23]]),
                bhs::lun(h),
            )
        };
        // The refusals below are not reached: `init_task` failed such a command for good
        // before it got here (`ptask::refusal`). Kept so that `send_command` stands alone.
        let dir = match (flags & ptask::CMD_READ != 0, flags & ptask::CMD_WRITE != 0) {
            (false, false) => DataDir::None,
            (true, false) => DataDir::Read,
            (false, true) => DataDir::Write,
            (true, true) => {
                iser_err!("{}\n", ptask::Refusal::Bidirectional.reason());
                return Err(EINVAL.into());
            }
        };
        let mut header = hdr::Header::default();
        let mut reg = None;
        let mut imm_sge = None;
        let mut write_buf = None;
        // (data length, immediate bytes), counted once the command went out: a command that
        // returns a `Requeue` error here is sent again by libiscsi.
        let mut counts = (0u32, 0u32);
        if dir != DataDir::None {
            let data = task.scsi_data().ok_or(EINVAL)?;
            if !data.prot_normal {
                iser_err!("{}\n", ptask::Refusal::ProtectionInfo.reason());
                return Err(EINVAL.into());
            }
            let (dma_dir, slot_dir) = match dir {
                DataDir::Read => (DmaDir::FromDevice, 0),
                _ => (DmaDir::ToDevice, 1),
            };
            let Some(sg) = data.map(b.dev, dma_dir)? else {
                iser_err!("{}\n", ptask::Refusal::NoBuffer.reason());
                return Err(EINVAL.into());
            };
            let imm = task.imm_count();
            let all_imm = dir == DataDir::Write && data.len == imm;
            counts = (data.len, imm);
            // One round trip of `res` (a leaf lock; `cleanup_task` takes it on the completion
            // side): the MR from the pool, then the mapping recorded in the task's slot.
            let mut g = res.lock();
            let (dres, ex) = b.register(&mut g, sg, all_imm)?;
            let (rkey, exposed) = match (dres.fr, ex.rkey) {
                (Some(i), Some(rkey)) => (
                    rkey,
                    ptask::Exposed::Mr {
                        idx: i as u32,
                        rkey,
                    },
                ),
                _ => (b.global_rkey.unwrap_or(0), ptask::Exposed::DmaKey),
            };
            match dir {
                DataDir::Read => {
                    header.read = Some(hdr::Stag {
                        stag: rkey,
                        va: ex.iova,
                    })
                }
                _ => {
                    header.write =
                        ptask::write_stag(rkey, ex.iova, imm, task.unsol_len(), edtl, data.len);
                    if imm > 0 {
                        imm_sge = Some(Sge {
                            addr: ex.iova,
                            len: imm,
                            lkey: ex.lkey,
                        });
                    }
                    write_buf = Some((ex.iova, ex.lkey));
                }
            }
            // The target writes a READ's buffer and reads a WRITE's, never the other way.
            let access = match dir {
                DataDir::Read => RemoteAccess::Write,
                _ => RemoteAccess::Read,
            };
            reg = dres.fr.map(|i| (i, ex.inval, access));
            // Published before the post: the response's Send with Invalidate is checked
            // against it, a LUN reset's answer against the LUN.
            if let Some(s) = b.sh.slots.get(idx) {
                s.lun.store(lun, Ordering::Relaxed);
                s.exposed[slot_dir].store(exposed.encode(), Ordering::Release);
            }
            match &mut *g {
                Some(Res { dirs, fr_free, .. }) => {
                    // A slot index past the table (not reached: the header lookup checked
                    // it) releases the new mapping at once instead of dropping it mapped.
                    // A mapping still in the slot (not reached: `cleanup_task` released it)
                    // is released before the new one takes its place.
                    match dirs.get_mut(idx) {
                        Some(d) => {
                            let slot = &mut d[slot_dir];
                            if let Some(old) = slot.take() {
                                old.release(fr_free);
                            }
                            *slot = Some(dres);
                        }
                        None => dres.release(fr_free),
                    }
                }
                // Not reached: `res` is installed before `bound` and taken after it, and
                // `dp` is held. The device is alive while `bound` is.
                None => dres.sg.unmap(),
            }
            drop(g);
        }
        task.hdrs_mut()[..hdr::LEN].copy_from_slice(&header.encode());
        if let Some(s) = b.sh.slots.get(idx) {
            // 0: not measured (the histogram is off by default: two clock reads per command).
            let t0 = if params::latency_histogram() {
                time::clock_ns().max(1)
            } else {
                0
            };
            s.t0.store(t0, Ordering::Relaxed);
        }
        // Immediate data reads the SCSI buffer: the response waits for this completion.
        let track = imm_sge.is_some();
        if let Err(e) = Self::post_task_send(qp, b, idx, reg, imm_sge, track) {
            // The chain (invalidation, registration, SEND) may have been posted in part:
            // the MR's key state is unknown, so the connection (and with it the pool) goes.
            if let Some(r) = &mut *res.lock() {
                r.release_task(idx);
            }
            return Err(XmitError::Fatal {
                err: e,
                sent: false,
            });
        }
        let c = &b.st.s.c;
        let (len, imm) = counts;
        match dir {
            DataDir::None => Stats::inc(&c.cmds_nodata),
            DataDir::Read => {
                Stats::inc(&c.cmds_read);
                Stats::add(&c.bytes_read, len.into());
            }
            _ => {
                Stats::inc(&c.cmds_write);
                Stats::add(&c.bytes_write, len.into());
                Stats::add(&c.bytes_immediate, imm.into());
            }
        }
        Ok(write_buf)
    }

    /// Sends a write's unsolicited Data-Outs from its buffer (`buf`: address and key).
    fn send_data_outs(
        qp: &Qp<IserConn>,
        b: &mut Bound,
        task: &mut Task<'_>,
        buf: Option<(u64, u32)>,
    ) -> Result {
        let idx = task.index();
        while task.has_unsol_data() {
            let Some((iova, lkey)) = buf else {
                return Err(EINVAL);
            };
            let buf_len = task.scsi_data().map_or(0, |s| s.len);
            let Some(di) = b.dataout_free.pop() else {
                iser_err!("no Data-Out descriptor free\n");
                return Err(EAGAIN);
            };
            let off = (di % sizing::DATAOUTS_PER_PAGE) * sizing::HEADERS_LEN;
            let Some(page) = b.dataout.get_mut(di / sizing::DATAOUTS_PER_PAGE) else {
                // Not reached: the free list holds indices of the pages allocated at bind.
                b.dataout_free.push(di);
                return Err(EINVAL);
            };
            let Some(area) = page.bytes_mut().get_mut(off..off + sizing::HEADERS_LEN) else {
                b.dataout_free.push(di);
                return Err(EINVAL);
            };
            area[..hdr::LEN].copy_from_slice(&hdr::Header::default().encode());
            let mut bhs48 = [0u8; bhs::BHS_LEN];
            let (doff, dlen) = task.prep_data_out(&mut bhs48);
            area[hdr::LEN..].copy_from_slice(&bhs48);
            if u64::from(doff) + u64::from(dlen) > u64::from(buf_len) {
                iser_err!(
                    "inconsistent Data-Out: offset {} length {} buffer {}\n",
                    doff,
                    dlen,
                    buf_len
                );
                task.undo_data_out();
                b.dataout_free.push(di);
                return Err(EINVAL);
            }
            page.sync_for_device(off, sizing::HEADERS_LEN);
            let sges = [
                Sge {
                    addr: page.dma(off),
                    len: sizing::HEADERS_LEN as u32,
                    lkey: b.sh.lkey,
                },
                Sge {
                    addr: iova + u64::from(doff),
                    len: dlen,
                    lkey,
                },
            ];
            // Owner and count before the post, which the completion may overtake.
            let (Some(owner), Some(pending)) = (
                b.sh.dataout_owner.get(di),
                b.sh.slots.get(idx).map(|s| &s.sends_pending),
            ) else {
                task.undo_data_out();
                b.dataout_free.push(di);
                return Err(EINVAL);
            };
            owner.store(idx, Ordering::Release);
            pending.fetch_add(1, Ordering::AcqRel);
            if let Err(e) = qp.post_send(
                None,
                b.sh.cqe_of(Cqe::DataOut(di)),
                Gather::Mapped(&sges),
                true,
            ) {
                pending.fetch_sub(1, Ordering::AcqRel);
                owner.store(usize::MAX, Ordering::Release);
                Stats::inc(&b.st.s.c.err_post);
                iser_err!("posting Data-Out failed: {:?}\n", e);
                task.undo_data_out();
                b.dataout_free.push(di);
                return Err(e);
            }
            task.advance_unsol(dlen);
            b.signals.posted(sq::Signal::Track);
            Stats::inc(&b.st.s.c.dataout_pdus);
            Stats::add(&b.st.s.c.bytes_dataout, dlen.into());
        }
        Ok(())
    }
}
