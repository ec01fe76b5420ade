// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! The transport's registration with `scsi_transport_iscsi` ([`Registration`]: the callback
//! table and its owner) and the endpoint callbacks (`ep_connect`, `ep_poll`,
//! `ep_disconnect`, `get_ep_param`), which carry the driver's connection in the endpoint.

use super::*;

/// The registered transport and host template, for the trampolines (one transport per
/// module).
pub(super) static TT: AtomicPtr<bindings::iscsi_transport> = AtomicPtr::new(core::ptr::null_mut());
pub(super) static SHT: AtomicPtr<bindings::scsi_host_template> =
    AtomicPtr::new(core::ptr::null_mut());
pub(super) static TEMPLATE: AtomicPtr<bindings::scsi_transport_template> =
    AtomicPtr::new(core::ptr::null_mut());

/// The owning module: every endpoint holds a reference on it, so the module cannot be
/// unloaded under a connection that iscsid has not disconnected (sessions pin it anyway).
static OWNER: AtomicPtr<bindings::module> = AtomicPtr::new(core::ptr::null_mut());

/// Marks the endpoints this module created (the address is what matters).
static EP_MAGIC: u8 = 0;

/// The transport area of our endpoints.
#[repr(C)]
struct EpData {
    magic: *const u8,
    pub(super) conn: *const c_void,
}

/// A registered iSCSI transport; unregistered on drop.
///
/// # Invariants
///
/// - `tt` was passed to a successful `iscsi_register_transport` and stays registered, at the
///   same address, until `drop`; `sht` is the host template of every host we allocate and
///   outlives them (hosts pin the module).
/// - `TT`, `SHT` and `TEMPLATE` point at them while registered.
pub(crate) struct Registration<T: TransportOps> {
    tt: Pin<KBox<Opaque<bindings::iscsi_transport>>>,
    _sht: Pin<KBox<Opaque<bindings::scsi_host_template>>>,
    _ops: PhantomData<T>,
}

// SAFETY: The registered transport is only read by the iSCSI transport class, from any
// thread; unregistration may run on any thread.
unsafe impl<T: TransportOps> Send for Registration<T> {}
// SAFETY: `&Registration` gives no access to the C objects.
unsafe impl<T: TransportOps> Sync for Registration<T> {}

impl<T: TransportOps> Registration<T> {
    /// Registers transport `T` with a SCSI host template named `host_name` /
    /// `proc_name`, owned by `module` (sessions pin the module through it).
    pub(crate) fn new(
        module: &'static ThisModule,
        host_name: &'static CStr,
        proc_name: &'static CStr,
    ) -> Result<Self> {
        let sht = bindings::scsi_host_template {
            module: module.as_ptr(),
            name: host_name.as_char_ptr(),
            proc_name: proc_name.as_char_ptr(),
            queuecommand: Some(bindings::iscsi_queuecommand),
            change_queue_depth: Some(bindings::scsi_change_queue_depth),
            sg_tablesize: 128,
            cmd_per_lun: 512,
            eh_timed_out: Some(bindings::iscsi_eh_cmd_timed_out),
            eh_abort_handler: Some(bindings::iscsi_eh_abort),
            eh_device_reset_handler: Some(bindings::iscsi_eh_device_reset),
            eh_target_reset_handler: Some(bindings::iscsi_eh_recover_target),
            target_alloc: Some(bindings::iscsi_target_alloc),
            this_id: -1,
            cmd_size: core::mem::size_of::<bindings::iscsi_cmd>() as u32,
            ..Default::default()
        };
        let sht = KBox::pin(Opaque::new(sht), GFP_KERNEL)?;
        // SAFETY: `sht` is ours and not shared yet; `track_queue_depth` is a bitfield.
        unsafe { (*sht.get()).set_track_queue_depth(1) };
        let tt = bindings::iscsi_transport {
            owner: module.as_ptr(),
            name: T::NAME.as_char_ptr().cast_mut(),
            caps: T::CAPS,
            create_session: Some(create_session::<T>),
            destroy_session: Some(destroy_session::<T>),
            create_conn: Some(create_conn::<T>),
            bind_conn: Some(bind_conn::<T>),
            unbind_conn: Some(unbind_conn::<T>),
            start_conn: Some(start_conn::<T>),
            stop_conn: Some(stop_conn::<T>),
            destroy_conn: Some(destroy_conn::<T>),
            set_param: Some(set_param::<T>),
            get_ep_param: Some(get_ep_param::<T>),
            get_conn_param: Some(bindings::iscsi_conn_get_param),
            get_session_param: Some(bindings::iscsi_session_get_param),
            get_host_param: Some(bindings::iscsi_host_get_param),
            set_host_param: Some(bindings::iscsi_host_set_param),
            send_pdu: Some(bindings::iscsi_conn_send_pdu),
            get_stats: Some(get_stats::<T>),
            init_task: Some(init_task::<T>),
            xmit_task: Some(xmit_task::<T>),
            cleanup_task: Some(cleanup_task::<T>),
            alloc_pdu: Some(alloc_pdu),
            session_recovery_timedout: Some(bindings::iscsi_session_recovery_timedout),
            ep_connect: Some(ep_connect::<T>),
            ep_poll: Some(ep_poll::<T>),
            ep_disconnect: Some(ep_disconnect::<T>),
            attr_is_visible: Some(attr_is_visible::<T>),
            ..Default::default()
        };
        let tt = KBox::pin(Opaque::new(tt), GFP_KERNEL)?;
        TT.store(tt.get(), Ordering::Release);
        SHT.store(sht.get(), Ordering::Release);
        OWNER.store(module.as_ptr(), Ordering::Release);
        // SAFETY: `tt` is a fully initialised transport that lives at a stable address until
        // it is unregistered in `drop`; `name` points to a `'static` string.
        let template = unsafe { bindings::iscsi_register_transport(tt.get()) };
        if template.is_null() {
            TT.store(core::ptr::null_mut(), Ordering::Release);
            SHT.store(core::ptr::null_mut(), Ordering::Release);
            return Err(EINVAL);
        }
        TEMPLATE.store(template, Ordering::Release);
        // INVARIANT: registration succeeded; the statics point at our objects.
        Ok(Registration {
            tt,
            _sht: sht,
            _ops: PhantomData,
        })
    }
}

impl<T: TransportOps> Drop for Registration<T> {
    fn drop(&mut self) {
        // SAFETY: By the type invariant `tt` is registered; sessions hold a reference on the
        // owner module, so none exists when the module is unloaded and this runs.
        unsafe { bindings::iscsi_unregister_transport(self.tt.get()) };
        TEMPLATE.store(core::ptr::null_mut(), Ordering::Release);
        TT.store(core::ptr::null_mut(), Ordering::Release);
        SHT.store(core::ptr::null_mut(), Ordering::Release);
    }
}

/// Whether a class object names our transport.
pub(super) fn is_ours(transport: *mut bindings::iscsi_transport) -> bool {
    !transport.is_null() && transport == TT.load(Ordering::Acquire)
}

/// The connection stored in one of our endpoints, borrowed; `None` for foreign endpoints.
///
/// # Safety
///
/// `ep` is a live endpoint.
pub(super) unsafe fn ep_conn<'a, C>(ep: *mut bindings::iscsi_endpoint) -> Option<ArcBorrow<'a, C>> {
    if ep.is_null() {
        return None;
    }
    // SAFETY: `ep` is live (contract).
    let dd = unsafe { (*ep).dd_data }.cast::<EpData>();
    if dd.is_null() {
        return None;
    }
    // SAFETY: Every endpoint's dd area is at least pointer-sized or absent (NULL above)...
    // except that a foreign transport may have a smaller area. Transports that use
    // endpoints (bnx2i, cxgbi, qedi, be2iscsi, iser) all have dd areas larger than
    // `EpData`; reading the magic first identifies ours.
    let d = unsafe { &*dd };
    if !core::ptr::eq(d.magic, &EP_MAGIC) || d.conn.is_null() {
        return None;
    }
    // SAFETY: Our endpoints hold an `Arc<C>` reference in `conn` until `ep_disconnect`.
    Some(unsafe { ArcBorrow::from_raw(d.conn.cast::<C>()) })
}
/// Reads the destination address iscsid passed to `ep_connect`.
///
/// # Safety
///
/// `dst` is NULL or points to a `sockaddr` whose family-specific size is readable (iscsid
/// sends a `struct sockaddr_storage` after the netlink event header).
unsafe fn read_sockaddr(dst: *const bindings::sockaddr) -> Option<SocketAddr> {
    if dst.is_null() {
        return None;
    }
    // SAFETY: `dst` is non-NULL and points to at least a readable `sa_family_t` by the
    // contract; `read_unaligned` because the netlink buffer gives no alignment guarantee
    // (`addr_of!` takes the field's address without creating a reference).
    let family = u32::from(unsafe { core::ptr::addr_of!((*dst).sa_family).read_unaligned() });
    if family == bindings::AF_INET {
        // SAFETY: The family is `AF_INET`, so a `sockaddr_in` is readable by the contract;
        // `read_unaligned` because the netlink buffer gives no alignment guarantee.
        let sin = unsafe { dst.cast::<bindings::sockaddr_in>().read_unaligned() };
        let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
        Some(SocketAddr::V4(SocketAddrV4::new(
            ip,
            u16::from_be(sin.sin_port),
        )))
    } else if family == bindings::AF_INET6 {
        // SAFETY: As above for `AF_INET6` and `sockaddr_in6`.
        let sin6 = unsafe { dst.cast::<bindings::sockaddr_in6>().read_unaligned() };
        // SAFETY: Every bit pattern of the 16-byte address union is a valid `[u8; 16]`.
        let octets = unsafe { sin6.sin6_addr.in6_u.u6_addr8 };
        Some(SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(octets),
            u16::from_be(sin6.sin6_port),
            u32::from_be(sin6.sin6_flowinfo),
            sin6.sin6_scope_id,
        )))
    } else {
        None
    }
}

extern "C" fn attr_is_visible<T: TransportOps>(
    param_type: c_int,
    param: c_int,
) -> bindings::umode_t {
    let param = param as u32;
    let attr = match param_type as u32 {
        bindings::iscsi_param_type_ISCSI_PARAM => Attr::Param(param),
        bindings::iscsi_param_type_ISCSI_HOST_PARAM => Attr::Host(param),
        _ => Attr::Other,
    };
    if T::attr_is_visible(attr) {
        0o444
    } else {
        0
    }
}

/// # Safety
///
/// Called by `scsi_transport_iscsi` with `dst` as described at [`read_sockaddr`].
pub(super) unsafe extern "C" fn ep_connect<T: TransportOps>(
    _shost: *mut bindings::Scsi_Host,
    dst: *mut bindings::sockaddr,
    non_blocking: c_int,
) -> *mut bindings::iscsi_endpoint {
    // SAFETY: The transport class passes the address that follows the netlink event.
    let dst = unsafe { read_sockaddr(dst) };
    let owner = OWNER.load(Ordering::Acquire);
    // SAFETY: `owner` is this module, which is live (we are running its code).
    if !unsafe { bindings::try_module_get(owner) } {
        return ENODEV.to_ptr();
    }
    let conn = match T::ep_connect(dst, non_blocking != 0) {
        Ok(c) => c,
        Err(e) => {
            // SAFETY: Drops the reference taken above.
            unsafe { bindings::module_put(owner) };
            return e.to_ptr();
        }
    };
    // SAFETY: Plain allocation call.
    let ep = unsafe { bindings::iscsi_create_endpoint(core::mem::size_of::<EpData>() as c_int) };
    if ep.is_null() {
        T::ep_disconnect(conn);
        // SAFETY: Drops the reference taken above.
        unsafe { bindings::module_put(owner) };
        return ENOMEM.to_ptr();
    }
    // SAFETY: `ep` is new and its dd area is an `EpData` (size requested above).
    unsafe {
        (*ep).dd_data.cast::<EpData>().write(EpData {
            magic: &EP_MAGIC,
            conn: Arc::into_raw(conn).cast(),
        })
    };
    ep
}

/// # Safety
///
/// Called by `scsi_transport_iscsi` for `ISCSI_UEVENT_TRANSPORT_EP_POLL`: `ep` is an
/// `iscsi_endpoint` (of any transport: handles are global) that the transport class keeps live
/// for the call (it holds the reference `iscsi_lookup_endpoint` took).
pub(super) unsafe extern "C" fn ep_poll<T: TransportOps>(
    ep: *mut bindings::iscsi_endpoint,
    ms: c_int,
) -> c_int {
    // SAFETY: The class passes a live endpoint looked up by handle.
    let Some(conn) = (unsafe { ep_conn::<T::Conn>(ep) }) else {
        return T::foreign_object(Op::EpPoll).to_errno();
    };
    let conn: Arc<T::Conn> = conn.into();
    match T::ep_poll(&conn, ms.max(0) as u32) {
        Ok(Poll::Up) => 1,
        Ok(Poll::Pending) => 0,
        Ok(Poll::Failed) => -1,
        Err(e) => e.to_errno(),
    }
}

/// # Safety
///
/// Called once per endpoint, by `scsi_transport_iscsi` or by our `destroy_conn` for the
/// endpoint it took from a connection that was never stopped: `ep` is an `iscsi_endpoint`
/// (of any transport: handles are global) that stays live for the call, and nothing uses
/// `ep` after this returns (we destroy it; the class finds it no more).
pub(super) unsafe extern "C" fn ep_disconnect<T: TransportOps>(ep: *mut bindings::iscsi_endpoint) {
    // SAFETY: The class passes a live endpoint and calls this once per endpoint.
    if unsafe { ep_conn::<T::Conn>(ep) }.is_none() {
        T::foreign_object(Op::EpDisconnect);
        return;
    }
    // SAFETY: The endpoint is ours (checked above); take back the reference it held.
    let conn = unsafe {
        let d = (*ep).dd_data.cast::<EpData>();
        let c = (*d).conn;
        (*d).conn = core::ptr::null();
        Arc::<T::Conn>::from_raw(c.cast())
    };
    T::ep_disconnect(conn);
    // SAFETY: Ours, not used after this. Then the endpoint's module reference (taken in
    // `ep_connect`) is dropped as our last act. If it was the last one, unloading still
    // cannot overtake this return: without a session the caller is the netlink handler,
    // which holds `rx_queue_mutex`, and module exit's `iscsi_unregister_transport` takes it.
    unsafe {
        bindings::iscsi_destroy_endpoint(ep);
        bindings::module_put(OWNER.load(Ordering::Acquire));
    }
}

/// # Safety
///
/// Called by `scsi_transport_iscsi`'s connection sysfs `show` under the connection's
/// `ep_mutex` (so `ep_disconnect` cannot run): `ep` is an `iscsi_endpoint` (of any transport:
/// handles are global) that stays live for the call; `buf` is the sysfs output page.
pub(super) unsafe extern "C" fn get_ep_param<T: TransportOps>(
    ep: *mut bindings::iscsi_endpoint,
    param: bindings::iscsi_param::Type,
    buf: *mut c_char,
) -> c_int {
    // SAFETY: The class passes a live endpoint.
    let Some(conn) = (unsafe { ep_conn::<T::Conn>(ep) }) else {
        return T::foreign_object(Op::GetEpParam).to_errno();
    };
    let conn: Arc<T::Conn> = conn.into();
    match T::get_ep_param(&conn, param, &mut SysfsBuf { ptr: buf }) {
        Ok(n) => n as c_int,
        Err(e) => e.to_errno(),
    }
}
