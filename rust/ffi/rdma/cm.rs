// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! RDMA CM ids ([`CmId`]): address and route resolution, the QP created on the id, connect
//! and disconnect, and the CM event trampoline that calls the driver's [`CmHandler`].

use super::*;

/// RDMA CM events the driver distinguishes (iser-spec.md 3.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CmEventKind {
    /// Address resolved.
    AddrResolved,
    /// Route resolved.
    RouteResolved,
    /// Connection established.
    Established,
    /// Peer rejected the connection.
    Rejected,
    /// Address, route, connect error or unreachable.
    ConnectError,
    /// Disconnected, address change or timewait exit.
    Disconnected,
    /// The device is being removed.
    DeviceRemoval,
    /// Anything else.
    Other,
}

/// One RDMA CM event, decoded.
pub(crate) struct CmEvent<'a> {
    /// What happened.
    pub(crate) kind: CmEventKind,
    /// Raw event number.
    pub(crate) raw: u32,
    /// Event name (`rdma_event_msg`).
    pub(crate) name: &'a str,
    /// Event status.
    pub(crate) status: i32,
    /// Connection private data (ESTABLISHED, REJECTED), if any.
    pub(crate) private_data: Option<&'a [u8]>,
    /// Reject reason string (REJECTED).
    pub(crate) reject_msg: Option<&'a str>,
}

/// The owner of an RDMA CM id: receives its events (process context, may sleep).
pub(crate) trait CmHandler: Send + Sync + Sized {
    /// Handles one event. Returning `true` is only allowed after
    /// [`CmId::hand_over_to_cm`] consumed the id (the CM then destroys it).
    fn cm_event(this: &Arc<Self>, ev: &CmEvent<'_>) -> bool;
}

/// An RDMA CM id of an RC connection in the initial network namespace.
///
/// # Invariants
///
/// - `ptr` was returned by `rdma_create_id` with context `Arc::into_raw` of a `T`; that
///   reference is owned by this value and released after `rdma_destroy_id` in `drop`.
/// - `has_qp` tells whether `rdma_create_qp` succeeded and `rdma_destroy_qp` did not run.
pub(crate) struct CmId<T: CmHandler> {
    pub(super) ptr: NonNull<bindings::rdma_cm_id>,
    pub(super) ctx: *const T,
}

// SAFETY: CM ids may be used and destroyed from any process context.
unsafe impl<T: CmHandler> Send for CmId<T> {}
// SAFETY: Methods taking `&self` only read the id or call thread-safe CM functions.
unsafe impl<T: CmHandler> Sync for CmId<T> {}

impl<T: CmHandler> CmId<T> {
    /// Creates an id whose events go to `ctx`.
    pub(crate) fn new(ctx: Arc<T>) -> Result<Self> {
        let raw = Arc::into_raw(ctx);
        // SAFETY: `cm_trampoline::<T>` matches `rdma_cm_event_handler`; `raw` stays valid
        // until we release it after `rdma_destroy_id`.
        let id = unsafe {
            bindings::iser_rs_rdma_create_id(Some(cm_trampoline::<T>), raw.cast_mut().cast())
        };
        match from_err_ptr(id) {
            Ok(ptr) => Ok(CmId { ptr, ctx: raw }),
            Err(e) => {
                // SAFETY: The id was not created, so we still own the reference.
                drop(unsafe { Arc::from_raw(raw) });
                Err(e)
            }
        }
    }

    /// Starts address resolution of `dst` (ADDR_RESOLVED or ADDR_ERROR follows).
    pub(crate) fn resolve_addr(&self, dst: &SocketAddr, timeout_ms: u32) -> Result {
        let mut ss = bindings::__kernel_sockaddr_storage::default();
        sockaddr_fill(&mut ss, dst);
        // SAFETY: `ptr` is valid; `ss` holds a valid sockaddr for the duration of the call
        // (the CM copies it).
        to_result(unsafe {
            bindings::rdma_resolve_addr(
                self.ptr.as_ptr(),
                core::ptr::null_mut(),
                (&raw mut ss).cast(),
                timeout_ms as kernel::ffi::c_ulong,
            )
        })
    }

    /// Starts route resolution (ROUTE_RESOLVED or ROUTE_ERROR follows).
    pub(crate) fn resolve_route(&self, timeout_ms: u32) -> Result {
        // SAFETY: `ptr` is valid.
        to_result(unsafe {
            bindings::rdma_resolve_route(self.ptr.as_ptr(), timeout_ms as kernel::ffi::c_ulong)
        })
    }

    /// The device the id is bound to (after ADDR_RESOLVED).
    pub(crate) fn device(&self) -> Option<DeviceRef> {
        // SAFETY: `ptr` is valid; `device` is set by address resolution and stable while
        // the id is bound.
        NonNull::new(unsafe { (*self.ptr.as_ptr()).device }).map(|ptr| DeviceRef { ptr })
    }

    /// Connects from inside the CM handler (`rdma_connect_locked`).
    pub(crate) fn connect_locked(&self, p: &ConnParam<'_>) -> Result {
        let mut cp = bindings::rdma_conn_param {
            private_data: p.private_data.as_ptr().cast(),
            private_data_len: p.private_data.len() as u8,
            responder_resources: p.responder_resources,
            initiator_depth: p.initiator_depth,
            retry_count: p.retry_count,
            rnr_retry_count: p.rnr_retry_count,
            ..Default::default()
        };
        // SAFETY: `ptr` is valid; called from the id's own event handler (the caller's
        // contract, see `ConnParam`); `cp` and the private data outlive the call.
        to_result(unsafe { bindings::rdma_connect_locked(self.ptr.as_ptr(), &raw mut cp) })
    }

    /// Disconnects (errors are returned for logging only).
    pub(crate) fn disconnect(&self) -> Result {
        // SAFETY: `ptr` is valid.
        to_result(unsafe { bindings::rdma_disconnect(self.ptr.as_ptr()) })
    }

    /// Formats the destination address or port into `buf` the way iscsid reads it.
    pub(crate) fn dst_param(&self, param: u32, buf: &mut SysfsBuf) -> Result<usize> {
        // SAFETY: `ptr` is valid; `route.addr.dst_addr` is a `sockaddr_storage` inside it;
        // `buf` is a sysfs page.
        let n = unsafe {
            bindings::iscsi_conn_get_addr_param(
                (&raw mut (*self.ptr.as_ptr()).route.addr.dst_addr).cast(),
                param,
                buf.ptr,
            )
        };
        if n < 0 {
            Err(Error::from_errno(n))
        } else {
            Ok(n as usize)
        }
    }

    /// Creates the RC QP of this id (after ROUTE_RESOLVED). `ctx` receives the completions
    /// of `cq`, which the QP owns from now on.
    pub(crate) fn create_qp<H: CqHandler>(
        &self,
        pd: &Pd,
        cq: Cq,
        caps: QpCaps,
        ctx: Arc<H>,
    ) -> Result<(Qp<H>, RecvQp)> {
        let raw = Arc::into_raw(ctx);
        let (id, pdp) = (self.ptr.as_ptr(), pd.ptr.as_ptr());
        let init = |inline| bindings::ib_qp_init_attr {
            event_handler: Some(qp_event_trampoline),
            qp_context: raw.cast_mut().cast(),
            send_cq: cq.ptr.as_ptr(),
            recv_cq: cq.ptr.as_ptr(),
            cap: bindings::ib_qp_cap {
                max_send_wr: caps.max_send_wr,
                max_recv_wr: caps.max_recv_wr,
                max_send_sge: caps.max_send_sge,
                max_recv_sge: caps.max_recv_sge,
                max_inline_data: inline,
                ..Default::default()
            },
            sq_sig_type: bindings::ib_sig_type_IB_SIGNAL_REQ_WR,
            qp_type: bindings::ib_qp_type_IB_QPT_RC,
            ..Default::default()
        };
        let mut attr = init(caps.max_inline_data);
        // SAFETY: `id` is valid and bound to `pd`'s device (route resolved); `attr` is
        // fully initialised.
        let mut rc = unsafe { bindings::rdma_create_qp(id, pdp, &raw mut attr) };
        if rc != 0 && caps.max_inline_data != 0 {
            // A provider that cannot carry that much inline fails the creation (rxe and siw
            // check the size, some hardware has no inline SENDs): try again without.
            attr = init(0);
            // SAFETY: As above.
            rc = unsafe { bindings::rdma_create_qp(id, pdp, &raw mut attr) };
        }
        if rc != 0 {
            // SAFETY: The QP was not created; we still own the reference.
            drop(unsafe { Arc::from_raw(raw) });
            return Err(Error::from_errno(rc));
        }
        // SAFETY: `rdma_create_qp` succeeded, so `id->qp` is set.
        let qp = NonNull::new(unsafe { (*self.ptr.as_ptr()).qp }).ok_or(EINVAL)?;
        Ok((
            Qp {
                qp,
                id: self.ptr,
                cq,
                ctx: raw,
                // Providers write back what they granted (possibly more than asked); never
                // use more than was asked for.
                max_inline: attr.cap.max_inline_data.min(caps.max_inline_data),
                recv_out: true,
            },
            // INVARIANT: `recv_out` records that this handle exists.
            RecvQp { qp },
        ))
    }

    /// Local and remote QP numbers, for the log.
    pub(crate) fn qp_nums(&self) -> Option<u32> {
        // SAFETY: `ptr` is valid; `qp` is NULL or a live QP.
        let qp = unsafe { (*self.ptr.as_ptr()).qp };
        // SAFETY: Non-NULL `qp` is valid while the id has it.
        (!qp.is_null()).then(|| unsafe { (*qp).qp_num })
    }

    /// Gives the id to the CM from inside a DEVICE_REMOVAL handler: the handler must then
    /// return `true`, and the CM destroys the id itself.
    pub(crate) fn hand_over_to_cm(self) {
        let ctx = self.ctx;
        core::mem::forget(self);
        // SAFETY: The CM destroys the id after the handler returns and calls no handler
        // again; the reference we owned is released here (the trampoline holds its own).
        drop(unsafe { Arc::from_raw(ctx) });
    }
}

impl<T: CmHandler> Drop for CmId<T> {
    fn drop(&mut self) {
        // SAFETY: `ptr` is valid; the caller is in process context and does not hold a lock
        // the handler takes (rdma_destroy_id waits for running handlers).
        unsafe { bindings::rdma_destroy_id(self.ptr.as_ptr()) };
        // SAFETY: No handler runs any more; release the reference the id owned.
        drop(unsafe { Arc::from_raw(self.ctx) });
    }
}

fn sockaddr_fill(ss: &mut bindings::__kernel_sockaddr_storage, dst: &SocketAddr) {
    let p = core::ptr::from_mut(ss).cast::<u8>();
    match dst {
        SocketAddr::V4(a) => {
            let sin = bindings::sockaddr_in {
                sin_family: bindings::AF_INET as bindings::__kernel_sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: bindings::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                ..Default::default()
            };
            // SAFETY: `sockaddr_storage` is larger than `sockaddr_in`.
            unsafe { p.cast::<bindings::sockaddr_in>().write_unaligned(sin) };
        }
        SocketAddr::V6(a) => {
            let sin6 = bindings::sockaddr_in6 {
                sin6_family: bindings::AF_INET6 as bindings::__kernel_sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo().to_be(),
                sin6_addr: bindings::in6_addr {
                    in6_u: bindings::in6_addr__bindgen_ty_1 {
                        u6_addr8: a.ip().octets(),
                    },
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: `sockaddr_storage` is larger than `sockaddr_in6`.
            unsafe { p.cast::<bindings::sockaddr_in6>().write_unaligned(sin6) };
        }
    }
}

/// # Safety
///
/// Called by the RDMA CM for an id created by [`CmId::new`] with `T`: `id` is that id, whose
/// `context` is the `Arc<T>` reference that a `CmId<T>` (or the CM, after
/// [`CmId::hand_over_to_cm`]) keeps alive while handlers can run; `ev` is a valid event for the
/// call.
unsafe extern "C" fn cm_trampoline<T: CmHandler>(
    id: *mut bindings::rdma_cm_id,
    ev: *mut bindings::rdma_cm_event,
) -> c_int {
    // SAFETY: The CM passes the id it created with our context, which a `CmId<T>` or the
    // CM-owned handover keeps alive while handlers can run.
    let ctx = unsafe { (*id).context as *const T };
    // SAFETY: `ctx` came from `Arc::into_raw` and is alive (see above); take our own
    // reference for the duration of the handler.
    let this = unsafe { kernel::sync::ArcBorrow::<T>::from_raw(ctx) };
    let this: Arc<T> = this.into();
    // SAFETY: The CM passes a valid event for the duration of the call.
    let ev = unsafe { &*ev };
    let raw = ev.event;
    use bindings::*;
    #[allow(non_upper_case_globals)]
    let kind = match raw {
        rdma_cm_event_type_RDMA_CM_EVENT_ADDR_RESOLVED => CmEventKind::AddrResolved,
        rdma_cm_event_type_RDMA_CM_EVENT_ROUTE_RESOLVED => CmEventKind::RouteResolved,
        rdma_cm_event_type_RDMA_CM_EVENT_ESTABLISHED => CmEventKind::Established,
        rdma_cm_event_type_RDMA_CM_EVENT_REJECTED => CmEventKind::Rejected,
        rdma_cm_event_type_RDMA_CM_EVENT_ADDR_ERROR
        | rdma_cm_event_type_RDMA_CM_EVENT_ROUTE_ERROR
        | rdma_cm_event_type_RDMA_CM_EVENT_CONNECT_ERROR
        | rdma_cm_event_type_RDMA_CM_EVENT_UNREACHABLE => CmEventKind::ConnectError,
        rdma_cm_event_type_RDMA_CM_EVENT_DISCONNECTED
        | rdma_cm_event_type_RDMA_CM_EVENT_ADDR_CHANGE
        | rdma_cm_event_type_RDMA_CM_EVENT_TIMEWAIT_EXIT => CmEventKind::Disconnected,
        rdma_cm_event_type_RDMA_CM_EVENT_DEVICE_REMOVAL => CmEventKind::DeviceRemoval,
        _ => CmEventKind::Other,
    };
    let private_data = match kind {
        // SAFETY: `param.conn` is the active union member for connection events; for others
        // we do not read it. The CM keeps the private data valid during the handler.
        CmEventKind::Established | CmEventKind::Rejected => unsafe {
            let c = &ev.param.conn;
            (!c.private_data.is_null()).then(|| {
                core::slice::from_raw_parts(
                    c.private_data.cast::<u8>(),
                    usize::from(c.private_data_len),
                )
            })
        },
        _ => None,
    };
    // SAFETY: `rdma_event_msg` and `rdma_reject_msg` return static strings.
    let name = unsafe { c_text(rdma_event_msg(raw)) };
    let reject_msg = (kind == CmEventKind::Rejected)
        // SAFETY: As above; `id` is valid.
        .then(|| unsafe { c_text(rdma_reject_msg(id, ev.status)) });
    let e = CmEvent {
        kind,
        raw,
        name,
        status: ev.status,
        private_data,
        reject_msg,
    };
    c_int::from(T::cm_event(&this, &e))
}

/// Connection parameters for `rdma_connect_locked`.
pub(crate) struct ConnParam<'a> {
    /// iSER CM private data.
    pub(crate) private_data: &'a [u8],
    /// Responder resources.
    pub(crate) responder_resources: u8,
    /// Initiator depth.
    pub(crate) initiator_depth: u8,
    /// Transport retries.
    pub(crate) retry_count: u8,
    /// RNR retries.
    pub(crate) rnr_retry_count: u8,
}
