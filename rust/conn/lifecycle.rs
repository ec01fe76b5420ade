// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! Connection establishment and teardown: the RDMA CM state machine (iser-spec.md 3):
//! `ep_connect` (address and route resolution, QP creation, the connect request with its
//! private data), `ep_poll`, the CM event handler (established, rejected, disconnected,
//! device removal), `ep_disconnect` and the release of every RDMA resource.
//!
//! Locks and contexts: everything here runs in process context under `ctrl` (the CM handler
//! too: the CM calls it from its work queue). The data-path locks (`dp`, `rx`, `res`) are
//! taken only to install or take back what they guard, with softirqs off
//! ([`IserConn::with_bh`]), never across a call into the CM or libiscsi. A CM id is dropped
//! after `ctrl` is unlocked ([`Leftovers`]): destroying it waits for its handler.

use super::*;

/// Address and route resolution timeout (iser-spec.md 6.2).
const RESOLVE_TIMEOUT_MS: u32 = 1000;

impl IserConn {
    /// `ep_connect`: starts resolving `dst` (non-blocking; `ep_poll` waits).
    pub(crate) fn connect(dst: SocketAddr) -> Result<Arc<Self>> {
        let always_register = params::always_register();
        let stats = Arc::new(
            ConnStats {
                peer: dst,
                s: Stats::default(),
            },
            GFP_KERNEL,
        )?;
        let conn = Arc::pin_init(
            pin_init!(IserConn {
                ctrl <- new_mutex!(Ctrl {
                    state: State::Init,
                    cm_id: None,
                    device: None,
                    sizing: None,
                    req: cm::Request { send_with_invalidate: always_register },
                    remote_inv: false,
                    iscsi: None,
                    dbg: None,
                }, "iser_conn_ctrl"),
                up <- new_condvar!("iser_conn_up"),
                dp <- new_spinlock!(Dp { qp: None, bound: None }, "iser_conn_dp"),
                rx <- new_spinlock!(Rx { rq: None, side: None }, "iser_conn_rx"),
                res <- new_spinlock!(None, "iser_conn_res"),
                peer: dst,
                fail_work <- kernel::workqueue::new_work!("iser_conn_fail"),
                stats,
            }),
            GFP_KERNEL,
        )?;
        let mut ctrl = conn.ctrl.lock();
        ctrl.state = State::Pending;
        let id = match CmId::new(conn.clone()) {
            Ok(id) => id,
            Err(e) => {
                iser_err!("rdma_create_id for {} failed: {:?}\n", dst, e);
                ctrl.state = State::Down;
                return Err(e);
            }
        };
        if let Err(e) = id.resolve_addr(&dst, RESOLVE_TIMEOUT_MS) {
            iser_err!("resolving address {} failed: {:?}\n", dst, e);
            ctrl.state = State::Down;
            drop(ctrl);
            drop(id);
            return Err(e);
        }
        ctrl.cm_id = Some(id);
        drop(ctrl);
        iser_info!("connecting to {}\n", dst);
        Ok(conn)
    }

    /// `ep_poll`.
    pub(crate) fn poll(&self, timeout_ms: u32) -> Result<Poll> {
        let mut ctrl = self.ctrl.lock();
        let mut left = kernel::time::msecs_to_jiffies(timeout_ms);
        loop {
            match ctrl.state {
                State::Up => return Ok(Poll::Up),
                State::Terminating | State::Down => return Ok(Poll::Failed),
                State::Init | State::Pending => {}
            }
            if left == 0 {
                return Ok(Poll::Pending);
            }
            match self.up.wait_interruptible_timeout(&mut ctrl, left) {
                CondVarTimeoutResult::Timeout => left = 0,
                CondVarTimeoutResult::Woken { jiffies } => left = jiffies,
                CondVarTimeoutResult::Signal { .. } => return Err(ERESTARTSYS),
            }
        }
    }

    /// `ep_disconnect`: tears the RDMA side down now; the libiscsi connection (if bound)
    /// stays bound until `stop_conn`.
    pub(crate) fn disconnect(&self) {
        let mut ctrl = self.ctrl.lock();
        let left = self.release_rdma(&mut ctrl);
        if ctrl.state != State::Down {
            ctrl.state = State::Down;
        }
        drop(ctrl);
        drop(left);
    }

    /// Terminates the connection if it is up (3.8.1); returns whether it did.
    fn terminate(&self, ctrl: &mut Ctrl) -> bool {
        if ctrl.state != State::Up {
            return false;
        }
        ctrl.state = State::Terminating;
        if let Some(i) = &ctrl.iscsi {
            i.suspend_queue();
        }
        if let Some(id) = &ctrl.cm_id {
            if let Err(e) = id.disconnect() {
                iser_warn!("rdma_disconnect to {} failed: {:?}\n", self.peer, e);
            }
        }
        self.up.notify_all();
        true
    }

    /// Releases every RDMA resource (see the module documentation). The CM id comes back to
    /// be dropped by the caller after unlocking `ctrl`.
    pub(super) fn release_rdma(&self, ctrl: &mut Ctrl) -> Leftovers {
        self.terminate(ctrl);
        if matches!(ctrl.state, State::Init | State::Pending) {
            ctrl.state = State::Terminating;
            self.up.notify_all();
        }
        // The completion side first: from here on completion handlers find nothing, so
        // they neither repost receives nor deliver PDUs; then the send side.
        let (rq, side) = Self::with_bh(&self.rx, |rx| (rx.rq.take(), rx.side.take()));
        let mut qp = Self::with_bh(&self.dp, |dp| dp.qp.take());
        if let Some(qp) = &mut qp {
            // All posted work completes (flushed) before this returns.
            qp.drain(rq);
        }
        // `xmit_task` found `bound` under `dp`, so it is done with `res` too; a later
        // `cleanup_task` finds nothing.
        let bound = Self::with_bh(&self.dp, |dp| dp.bound.take());
        if let Some(mut r) = Self::with_bh(&self.res, |r| r.take()) {
            r.release_all();
        }
        if let Some(mut b) = bound {
            b.release_all();
            drop(b);
        }
        // The ring's buffers go with the last reference to the shared state, after the drain.
        drop(side);
        if let Some(qp) = qp {
            qp.destroy();
        }
        if let Some(d) = ctrl.device.take() {
            if let Some(devs) = DEVICES.get() {
                devs.put(d);
            }
        }
        Leftovers {
            cm_id: ctrl.cm_id.take(),
            _dbg: ctrl.dbg.take(),
        }
    }

    /// `get_ep_param`.
    pub(crate) fn ep_param(&self, param: u32, buf: &mut SysfsBuf) -> Result<usize> {
        use crate::ffi::iscsi::param as p;
        if param != p::ISCSI_PARAM_CONN_PORT && param != p::ISCSI_PARAM_CONN_ADDRESS {
            return Err(errno::ENOSYS());
        }
        let ctrl = self.ctrl.lock();
        match &ctrl.cm_id {
            Some(id) if ctrl.device.is_some() => id.dst_param(param, buf),
            _ => Err(errno::ENOTCONN()),
        }
    }
}

impl CmHandler for IserConn {
    fn cm_event(this: &Arc<Self>, ev: &CmEvent<'_>) -> bool {
        iser_info!(
            "cm event {} ({}) status {} to {}\n",
            ev.name,
            ev.raw,
            ev.status,
            this.peer
        );
        let mut ctrl = this.ctrl.lock();
        match ev.kind {
            CmEventKind::AddrResolved => {
                if ctrl.state == State::Pending {
                    if let Err(e) = this.addr_resolved(&mut ctrl) {
                        iser_err!(
                            "connection to {} failed after address resolution: {:?}\n",
                            this.peer,
                            e
                        );
                        this.connect_error(&mut ctrl);
                    }
                }
            }
            CmEventKind::RouteResolved => {
                if ctrl.state == State::Pending {
                    if let Err(e) = this.route_resolved(&mut ctrl) {
                        iser_err!(
                            "connection to {} failed after route resolution: {:?}\n",
                            this.peer,
                            e
                        );
                        this.connect_error(&mut ctrl);
                    }
                }
            }
            CmEventKind::Established => {
                if ctrl.state == State::Pending {
                    let rep = cm::Reply::decode(ev.private_data);
                    ctrl.remote_inv = cm::remote_invalidation(ctrl.req, rep);
                    if let Some(qpn) = ctrl.cm_id.as_ref().and_then(|id| id.qp_nums()) {
                        iser_info!(
                            "connected to {} (qp {:#x}, remote invalidation {})\n",
                            this.peer,
                            qpn,
                            ctrl.remote_inv
                        );
                    }
                    ctrl.state = State::Up;
                    this.up.notify_all();
                }
            }
            CmEventKind::Rejected => {
                iser_err!(
                    "Connection rejected: {}\n",
                    ev.reject_msg.unwrap_or("unknown")
                );
                this.connect_error(&mut ctrl);
            }
            CmEventKind::ConnectError => {
                iser_err!(
                    "connection to {} failed: {} ({})\n",
                    this.peer,
                    ev.name,
                    ev.status
                );
                this.connect_error(&mut ctrl);
            }
            CmEventKind::Disconnected => {
                if this.terminate(&mut ctrl) {
                    match &ctrl.iscsi {
                        // The target closes the connection after its Logout Response: the
                        // end of a logout, not a failure (the C driver and iscsi_tcp report
                        // one, and every logout logs "detected conn error"). iscsid stops
                        // the connection when the logout completes, or after its logout
                        // timeout if the response never came.
                        Some(i) if i.logging_out() => {
                            iser_info!("{}: target closed the connection (logout)\n", this.peer);
                        }
                        Some(i) => {
                            // Said here: libiscsi logs only "detected conn error (1011)", the
                            // same line as for a local failure.
                            iser_err!("{}: the target closed the connection\n", this.peer);
                            fail(&this.stats, *i, crate::ffi::iscsi::err::CONN_FAILED)
                        }
                        None => iser_warn!("iscsi_iser connection isn't bound\n"),
                    }
                }
            }
            CmEventKind::DeviceRemoval => {
                // Release everything tied to the device now: iscsid may not be running, and
                // the device goes away when we return (3.9). The CM destroys the id.
                let bound = ctrl.iscsi;
                let was_up = ctrl.state == State::Up;
                let mut left = this.release_rdma(&mut ctrl);
                if was_up {
                    if let Some(i) = bound {
                        fail(&this.stats, i, crate::ffi::iscsi::err::CONN_FAILED);
                    }
                }
                if let Some(id) = left.cm_id.take() {
                    id.hand_over_to_cm();
                    drop(ctrl);
                    return true;
                }
            }
            CmEventKind::Other => {
                iser_warn!("Unexpected RDMA CM event: {} ({})\n", ev.name, ev.raw);
            }
        }
        false
    }
}

impl IserConn {
    fn connect_error(&self, ctrl: &mut Ctrl) {
        if matches!(ctrl.state, State::Pending | State::Init | State::Up) {
            ctrl.state = State::Terminating;
        }
        self.up.notify_all();
    }

    fn addr_resolved(&self, ctrl: &mut Ctrl) -> Result {
        let id = ctrl.cm_id.as_ref().ok_or(EINVAL)?;
        let dev = id.device().ok_or(ENODEV)?;
        let devs = DEVICES.get().ok_or(ENODEV)?;
        let d = devs.get(dev)?;
        let caps = d.caps;
        if params::pi_enable() {
            // T10-PI needs an integrity-capable HCA (soft-RoCE and soft-iWARP have none), and
            // this version does not implement the signature path on any device yet.
            if caps.integrity_handover {
                iser_warn!(
                    "T10-PI offload is not implemented in this version, continue without T10-PI on {}\n",
                    dev.name()
                );
            } else {
                iser_warn!(
                    "T10-PI requested but not supported on {}, continue without T10-PI\n",
                    dev.name()
                );
            }
        }
        let s = sizing::connection(
            params::max_sectors(),
            sizing::DevLimits {
                max_qp_wr: caps.max_qp_wr,
                max_fast_reg_page_list_len: caps.max_fast_reg_page_list_len,
                sg_gaps: caps.sg_gaps_reg,
            },
        );
        let s = match s {
            Ok(s) => s,
            Err(e) => {
                iser_err!("device {}: {}\n", dev.name(), e.reason());
                devs.put(d);
                return Err(EINVAL);
            }
        };
        ctrl.device = Some(d);
        ctrl.sizing = Some(s);
        id.resolve_route(RESOLVE_TIMEOUT_MS)
    }

    fn route_resolved(self: &Arc<Self>, ctrl: &mut Ctrl) -> Result {
        let (Some(d), Some(s), Some(id)) = (ctrl.device.clone(), ctrl.sizing, ctrl.cm_id.as_ref())
        else {
            return Err(EINVAL);
        };
        let cq = Cq::new(d.dev, s.nr_cqe)?;
        let (qp, rq) = id.create_qp(
            &d.pd,
            cq,
            QpCaps {
                max_send_wr: s.max_send_wr,
                max_recv_wr: s.max_recv_wr,
                max_send_sge: 2,
                max_recv_sge: 1,
                max_inline_data: sizing::HEADERS_LEN as u32,
            },
            self.clone(),
        )?;
        let old_rq = Self::with_bh(&self.rx, |rx| rx.rq.replace(rq));
        if let Some(mut old) = Self::with_bh(&self.dp, |dp| dp.qp.replace(qp)) {
            old.drain(old_rq);
            old.destroy();
        }
        let pd = ctrl.req.encode();
        id.connect_locked(&ConnParam {
            private_data: &pd,
            responder_resources: d.caps.max_qp_rd_atom.min(u32::from(u8::MAX)) as u8,
            initiator_depth: 1,
            retry_count: 7,
            rnr_retry_count: 6,
        })
    }
}
