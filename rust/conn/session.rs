// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! Binding to libiscsi: the host limits of a new session, `bind_conn` (the per-session
//! buffers, task slots and registration pool, sized for the session's SCSI host),
//! `start_conn` (refuses negotiated parameters no Data-Out pool can carry) and `stop_conn`.
//!
//! Locks and contexts: process context (iscsid's netlink requests), under `ctrl`. The bound
//! state is installed under the data-path locks with softirqs off, `res` before `dp` before
//! `rx`'s side, so that a transmit that finds `bound` finds `res`.

use super::*;

impl IserConn {
    /// Host limits for a session on this connection (2.4).
    pub(crate) fn session_limits(&self, req: iscsi::SessionRequest) -> Result<iscsi::HostLimits> {
        let ctrl = self.ctrl.lock();
        if ctrl.state != State::Up {
            iser_err!("iser conn to {} already started teardown\n", self.peer);
            return Err(EINVAL);
        }
        let (Some(s), Some(d)) = (ctrl.sizing, ctrl.device.as_ref()) else {
            return Err(EINVAL);
        };
        let param = params::max_sectors();
        let max_sectors = sizing::host_max_sectors(param, s.sg_tablesize);
        if max_sectors < param {
            iser_warn!(
                "max_sectors was reduced from {} to {}\n",
                param,
                max_sectors
            );
        }
        Ok(iscsi::HostLimits {
            can_queue: sizing::can_queue(req.cmds_max, s.max_cmds),
            cmd_per_lun: req.qdepth,
            max_lun: params::max_lun(),
            sg_tablesize: s.sg_tablesize.min(u32::from(u16::MAX)) as u16,
            max_sectors,
            virt_boundary_4k: !d.caps.sg_gaps_reg,
            parent: d.dev.dma_parent(),
        })
    }

    /// `bind_conn`: allocates the per-session buffers and the registration pool (3.6).
    pub(crate) fn bind(this: &Arc<Self>, iconn: IscsiConn) -> Result {
        let mut ctrl = this.ctrl.lock();
        if ctrl.state != State::Up {
            iser_err!("iser conn to {} already started teardown\n", this.peer);
            return Err(EINVAL);
        }
        if ctrl.iscsi.is_some() {
            iser_err!("iser conn to {} is already bound\n", this.peer);
            return Err(EINVAL);
        }
        let (Some(s), Some(d)) = (ctrl.sizing, ctrl.device.clone()) else {
            return Err(EINVAL);
        };
        // Sized for the session's SCSI host, which keeps the limits it was created with: after
        // a recovery the new connection may be on another device, and `max_sectors` may have
        // changed since. A device that cannot carry them is refused here with the reason,
        // rather than bound to requeue the commands it cannot take until the SCSI timeout.
        let s = match iconn.host_shape() {
            Some(h) => {
                let host = sizing::HostShape {
                    sg_tablesize: h.sg_tablesize,
                    max_sectors: h.max_sectors,
                    can_queue: h.can_queue,
                    virt_boundary: h.virt_boundary,
                };
                let dev = sizing::DevLimits {
                    max_qp_wr: d.caps.max_qp_wr,
                    max_fast_reg_page_list_len: d.caps.max_fast_reg_page_list_len,
                    sg_gaps: d.caps.sg_gaps_reg,
                };
                match sizing::for_host(host, dev) {
                    Ok(n) => n,
                    Err(e) => {
                        match e {
                            sizing::Unfit::Pages { host, conn }
                            | sizing::Unfit::Queue { host, conn } => iser_err!(
                                "cannot bind the connection to {} on {} to its session: {} ({} > {}); log the session out and in again to size it for this device\n",
                                this.peer,
                                d.dev.name(),
                                e.reason(),
                                host,
                                conn
                            ),
                            _ => iser_err!(
                                "cannot bind the connection to {} on {} to its session: {}; log the session out and in again to size it for this device\n",
                                this.peer,
                                d.dev.name(),
                                e.reason()
                            ),
                        }
                        return Err(EINVAL);
                    }
                }
            }
            None => s,
        };
        ctrl.sizing = Some(s);
        let info = iconn.session_info();
        let st = this.stats.clone();
        let (b, side, res) = Self::alloc_bound(iconn, &info, s, &d, ctrl.remote_inv, st)
            .inspect_err(|e| {
                iser_err!("failed allocating connection buffers: {:?}\n", e);
            })?;
        // `res` before `bound`: a transmit that finds `bound` finds `res`.
        let old_res = Self::with_bh(&this.res, |r| r.replace(res));
        let old = Self::with_bh(&this.dp, |dp| dp.bound.replace(b));
        let old_side = Self::with_bh(&this.rx, |rx| rx.side.replace(side));
        drop(old);
        drop(old_side);
        drop(old_res);
        ctrl.iscsi = Some(iconn);
        iconn.bind(this.clone());
        // Statistics in debugfs, named like the connection in sysfs. A failure (debugfs off,
        // or a directory left by a connection not yet torn down) only costs the file.
        let (sid, cid) = iconn.ids();
        if let (Some(root), Ok(name)) = (
            debugfs::ROOT.get(),
            CString::try_from_fmt(format_args!("connection{}:{}", sid, cid)),
        ) {
            ctrl.dbg = root.add(&name, c_str!("stats"), this.stats.clone());
            if ctrl.dbg.is_none() {
                iser_dbg!("no debugfs statistics for connection{}:{}\n", sid, cid);
            }
        }
        Ok(())
    }

    fn alloc_bound(
        iscsi: IscsiConn,
        info: &SessionInfo,
        s: sizing::Sizing,
        d: &IserDevice,
        remote_inv: bool,
        st: Arc<ConnStats>,
    ) -> Result<(Bound, RxSide, Res)> {
        let n = (info.cmds_max as usize).max(1);
        let nrx = n + sq::RX_BATCH;
        let dev = d.dev;
        let mut hdrs = KVVec::with_capacity(n, GFP_KERNEL)?;
        let mut dirs = KVVec::with_capacity(n, GFP_KERNEL)?;
        let mut sh_slots = KVVec::with_capacity(n, GFP_KERNEL)?;
        let mut rx_slots = KVVec::with_capacity(n, GFP_KERNEL)?;
        for _ in 0..n {
            hdrs.push(None, GFP_KERNEL)?;
            dirs.push([None, None], GFP_KERNEL)?;
            sh_slots.push(
                SlotShared {
                    sends_pending: AtomicU32::new(0),
                    tmf_ref: AtomicU32::new(0),
                    lun: AtomicU64::new(0),
                    xmit_busy: AtomicBool::new(false),
                    held: AtomicBool::new(false),
                    t0: AtomicU64::new(0),
                    exposed: [AtomicU64::new(0), AtomicU64::new(0)],
                },
                GFP_KERNEL,
            )?;
            rx_slots.push(
                RxSlot {
                    put_on_send: None,
                    deferred: None,
                },
                GFP_KERNEL,
            )?;
        }
        // Whether this is a discovery session is not known yet at bind (see
        // `Shared::discovery`): the pool is sized as for any session, as in C.
        let nfr = (info.scsi_cmds_max as usize).clamp(1, ptask::EXPOSED_MAX_MRS as usize);
        let mut fr = KVec::with_capacity(nfr, GFP_KERNEL)?;
        let mut valid_key = KVec::with_capacity(nfr, GFP_KERNEL)?;
        for _ in 0..nfr {
            fr.push(
                Mr::new(&d.pd, d.caps.sg_gaps_reg, s.pages_per_mr)?,
                GFP_KERNEL,
            )?;
            valid_key.push(AtomicU64::new(0), GFP_KERNEL)?;
        }
        let fr_free = FreeList::new(nfr)?;
        let ndo = sizing::dataout_descs(s.max_send_wr, n);
        let dataout_free = FreeList::new(ndo)?;
        let mut dataout_owner = KVec::with_capacity(ndo, GFP_KERNEL)?;
        for _ in 0..ndo {
            dataout_owner.push(AtomicUsize::new(usize::MAX), GFP_KERNEL)?;
        }
        let pages = ndo.div_ceil(sizing::DATAOUTS_PER_PAGE);
        let mut dataout = KVec::with_capacity(pages, GFP_KERNEL)?;
        for _ in 0..pages {
            dataout.push(
                DmaBuf::new(
                    dev,
                    sizing::DATAOUTS_PER_PAGE * sizing::HEADERS_LEN,
                    DmaDir::ToDevice,
                )?,
                GFP_KERNEL,
            )?;
        }
        let sh = Arc::new(
            Shared {
                iscsi,
                n,
                nrx,
                cqes: CqeTable::new(cqe_table_len(n, nrx, ndo))?,
                rx: DmaBuf::new(dev, nrx * sizing::RX_PAYLOAD, DmaDir::FromDevice)?,
                login_rsp: DmaBuf::new(dev, sizing::RX_LOGIN_SIZE, DmaDir::FromDevice)?,
                lkey: d.pd.local_dma_lkey(),
                remote_inv,
                discovery: AtomicBool::new(info.discovery),
                slots: sh_slots,
                valid_key,
                dataout_owner,
            },
            GFP_KERNEL,
        )?;
        let res = Res {
            sh: sh.clone(),
            dirs,
            fr_free,
        };
        let side = RxSide {
            sh: sh.clone(),
            batch: sq::RxBatch::default(),
            slots: rx_slots,
        };
        let b = Bound {
            sh,
            login_req: DmaBuf::new(dev, sizing::LOGIN_DATA_LEN, DmaDir::ToDevice)?,
            ring_posted: false,
            hdrs,
            fr,
            dataout,
            dataout_free,
            dataout_cap: ndo,
            signals: sq::Signals::default(),
            global_rkey: d.pd.global_rkey(),
            always_register: params::always_register(),
            dev,
            st,
        };
        Ok((b, side, res))
    }

    /// `start_conn`: refuses negotiated parameters under which one write could need more
    /// unsolicited Data-Outs than the connection has descriptors (it could never be sent:
    /// see `Bound::dataout`). Say so in the log; iscsid reports the login as failed.
    pub(crate) fn start(iconn: IscsiConn) -> Result {
        let Some(c) = iconn.bound::<IserConn>() else {
            return Ok(());
        };
        let max_io = c
            .ctrl
            .lock()
            .sizing
            .map_or(0, |s| s.sg_tablesize.saturating_mul(sizing::PAGE));
        let cap = Self::with_bh(&c.dp, |dp| dp.bound.as_ref().map(|b| b.dataout_cap));
        let Some(cap) = cap else {
            return Ok(());
        };
        let n = iconn.negotiated();
        let need =
            sizing::max_dataouts_per_cmd(n.initial_r2t, n.first_burst, max_io, n.max_xmit_dlength);
        match need {
            Some(k) if k <= cap => Ok(()),
            _ => {
                iser_err!(
                    "{}: FirstBurstLength {} in Data-Out PDUs of {} bytes (MaxXmitDataSegmentLength) needs up to {} PDUs per {}-byte write, more than the {} this connection's send queue holds; refusing the connection (lower FirstBurstLength or max_sectors, or raise the target's MaxRecvDataSegmentLength)\n",
                    c.peer,
                    n.first_burst,
                    n.max_xmit_dlength,
                    need.map_or(u64::MAX, |k| k as u64),
                    max_io,
                    cap
                );
                Err(EINVAL)
            }
        }
    }

    /// `stop_conn` (3.7): terminate and release the RDMA side if `ep_disconnect` has not,
    /// let libiscsi fail the outstanding tasks, then unbind.
    pub(crate) fn stop(iconn: IscsiConn, flag: kernel::ffi::c_int) {
        let conn: Option<Arc<IserConn>> = iconn.bound::<IserConn>();
        if let Some(c) = &conn {
            let mut ctrl = c.ctrl.lock();
            let left = c.release_rdma(&mut ctrl);
            drop(ctrl);
            drop(left);
        }
        iconn.stop(flag);
        if let Some(c) = iconn.unbind::<IserConn>() {
            let mut ctrl = c.ctrl.lock();
            if ctrl.iscsi.as_ref().is_some_and(|i| i.same(&iconn)) {
                ctrl.iscsi = None;
            }
        }
        drop(conn);
    }
}
