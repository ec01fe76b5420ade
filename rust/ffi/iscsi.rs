// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! Registration of an iSCSI transport with `scsi_transport_iscsi`, and the C entry points of
//! its callback table.
//!
//! The driver implements [`TransportOps`] in safe Rust; [`Registration::new`] fills a
//! `struct iscsi_transport` with `extern "C"` trampolines that decode the C arguments and call
//! one safe method each. Callbacks that libiscsi implements for every software transport
//! (parameter getters, host parameters, recovery timeout) point at libiscsi directly, as in
//! the C driver.
//!
//! `scsi_transport_iscsi` calls most callbacks without a NULL check (a netlink message from
//! user space can reach them), so every callback the C driver provides is present here too.

use super::bindings;
use super::rdma::{DeviceRef, DmaDir, HdrMapping, MappedSg, SysfsBuf};
use core::ffi::c_void;
use core::marker::PhantomData;
use core::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use core::pin::Pin;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, Ordering};
use kernel::error::code::{EINVAL, ENODEV, ENOMEM};
use kernel::ffi::{c_char, c_int};
use kernel::prelude::*;
use kernel::str::CStr;
use kernel::sync::{Arc, ArcBorrow};
use kernel::types::Opaque;
use kernel::ThisModule;

/// `enum iscsi_host_param` values.
pub(crate) use bindings::iscsi_host_param as host_param;
/// `enum iscsi_param` values (connection and session parameters).
pub(crate) use bindings::iscsi_param as param;

/// Transport capability bits (`CAP_*` in `include/scsi/iscsi_if.h`).
pub(crate) mod caps {
    use super::bindings;
    /// Error recovery level 0 (session recovery).
    pub(crate) const RECOVERY_L0: u32 = bindings::CAP_RECOVERY_L0;
    /// More than one outstanding R2T.
    pub(crate) const MULTI_R2T: u32 = bindings::CAP_MULTI_R2T;
    /// Text negotiation (login) done by user space through `send_pdu`.
    pub(crate) const TEXT_NEGO: u32 = bindings::CAP_TEXT_NEGO;
}

/// `enum iscsi_err` values passed to `iscsi_conn_failure`.
pub(crate) mod err {
    use super::bindings;
    /// The connection failed.
    pub(crate) const CONN_FAILED: u32 = bindings::iscsi_err_ISCSI_ERR_CONN_FAILED;
    /// A PDU's data segment length was wrong.
    pub(crate) const DATALEN: u32 = bindings::iscsi_err_ISCSI_ERR_DATALEN;
    /// A PDU violated the protocol (iSER header, opcode, AHS).
    pub(crate) const PROTO: u32 = bindings::iscsi_err_ISCSI_ERR_PROTO;
    /// Transmitting a PDU failed.
    pub(crate) const XMIT_FAILED: u32 = bindings::iscsi_err_ISCSI_ERR_XMIT_FAILED;
    /// A response for a task that no longer exists (not a failure).
    pub(crate) const NO_SCSI_CMD: u32 = bindings::iscsi_err_ISCSI_ERR_NO_SCSI_CMD;
}

/// Which sysfs attribute `attr_is_visible` asks about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Attr {
    /// A session or connection parameter (`enum iscsi_param`).
    Param(u32),
    /// A host parameter (`enum iscsi_host_param`).
    Host(u32),
    /// Anything else (iface, net, flashnode, CHAP parameters).
    Other,
}

/// The callbacks a callback table is not complete without, in the driver's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// `ep_poll`.
    EpPoll,
    /// `ep_disconnect`.
    EpDisconnect,
    /// `get_ep_param`.
    GetEpParam,
    /// `create_session`.
    CreateSession,
    /// `destroy_session`.
    DestroySession,
    /// `create_conn`.
    CreateConn,
    /// `bind_conn`.
    BindConn,
    /// `unbind_conn`.
    UnbindConn,
    /// `start_conn`.
    StartConn,
    /// `stop_conn`.
    StopConn,
    /// `destroy_conn`.
    DestroyConn,
    /// `set_param`.
    SetParam,
    /// `get_stats`.
    GetStats,
}

impl Op {
    /// The C name of the callback, for log lines.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::EpPoll => "ep_poll",
            Op::EpDisconnect => "ep_disconnect",
            Op::GetEpParam => "get_ep_param",
            Op::CreateSession => "create_session",
            Op::DestroySession => "destroy_session",
            Op::CreateConn => "create_conn",
            Op::BindConn => "bind_conn",
            Op::UnbindConn => "unbind_conn",
            Op::StartConn => "start_conn",
            Op::StopConn => "stop_conn",
            Op::DestroyConn => "destroy_conn",
            Op::SetParam => "set_param",
            Op::GetStats => "get_stats",
        }
    }
}

/// What `create_session` is asked for.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SessionRequest {
    /// Requested size of the task pool.
    pub(crate) cmds_max: u16,
    /// Requested queue depth per LUN.
    pub(crate) qdepth: u16,
}

/// The SCSI host limits the driver chose for a new session.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HostLimits {
    /// Task pool size handed to `iscsi_session_setup` (also `can_queue`).
    pub(crate) can_queue: u16,
    /// Commands per LUN.
    pub(crate) cmd_per_lun: u16,
    /// `max_lun`.
    pub(crate) max_lun: u32,
    /// Scatter/gather entries per command.
    pub(crate) sg_tablesize: u16,
    /// Sectors per command.
    pub(crate) max_sectors: u32,
    /// Set a 4 KiB virt boundary (devices without SG-gaps registration).
    pub(crate) virt_boundary_4k: bool,
    /// The parent device for `iscsi_host_add` (the HCA), or NULL.
    pub(crate) parent: *mut bindings::device,
}

/// What to do with a `set_param` value.
pub(crate) enum SetParam {
    /// Accept without storing (the transport keeps its own value).
    Ignore,
    /// Store through libiscsi's `iscsi_set_param`.
    Libiscsi,
}

/// The result of `ep_poll`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Poll {
    /// Connected.
    Up,
    /// Still connecting.
    Pending,
    /// Connection failed.
    Failed,
}

/// Bytes of the task's transport area (`task->dd_data`): the 28-byte iSER header followed
/// by the 48-byte BHS that libiscsi fills (`task->hdr` points at it), rounded up.
pub(crate) const TASK_DD_SIZE: usize = 128;
/// Offset of the BHS in the task's transport area.
const TASK_BHS_OFF: usize = crate::proto::hdr::LEN;
/// Bytes of iSER header + BHS sent from the task's transport area.
pub(crate) const TASK_HDRS_LEN: usize = crate::proto::hdr::LEN + crate::proto::bhs::BHS_LEN;

/// The driver side of an iSCSI transport. Every method documents its execution context.
pub(crate) trait TransportOps {
    /// The driver's per-endpoint connection.
    type Conn: Send + Sync;
    /// Transport name (`/sys/class/iscsi_transport/<NAME>`).
    const NAME: &'static CStr;
    /// Capability bits (`caps` module).
    const CAPS: u32;

    /// Whether a sysfs attribute is shown. Process context, may be called at registration.
    fn attr_is_visible(attr: Attr) -> bool;

    /// Starts connecting to `dst` (`None`: an address family other than IPv4/IPv6).
    /// Process context (netlink from iscsid).
    fn ep_connect(dst: Option<SocketAddr>, non_blocking: bool) -> Result<Arc<Self::Conn>>;

    /// Waits up to `timeout_ms` for the connection. Process context.
    fn ep_poll(conn: &Arc<Self::Conn>, timeout_ms: u32) -> Result<Poll>;

    /// Disconnects; the endpoint is destroyed after this returns. Process context.
    fn ep_disconnect(conn: Arc<Self::Conn>);

    /// Formats an endpoint parameter (address, port) into `buf`. Process context.
    fn get_ep_param(conn: &Arc<Self::Conn>, param: u32, buf: &mut SysfsBuf) -> Result<usize>;

    /// Chooses the host limits for a session on `conn` (`None`: iscsid passed no
    /// endpoint). Process context.
    fn session_limits(conn: Option<&Arc<Self::Conn>>, req: SessionRequest) -> Result<HostLimits>;

    /// Binds `iconn` (already bound in libiscsi) to `conn`. Process context.
    fn bind_conn(iconn: IscsiConn, conn: &Arc<Self::Conn>) -> Result;

    /// Checks that `iconn`, bound and logged in, can carry what was negotiated, before
    /// libiscsi starts it (full feature phase). An error refuses the start: iscsid reports
    /// the login as failed. Process context.
    fn start_conn(iconn: IscsiConn) -> Result;

    /// Stops `iconn` (`flag`: `STOP_CONN_*`); must call [`IscsiConn::stop`] once. Process
    /// context.
    fn stop_conn(iconn: IscsiConn, flag: c_int);

    /// Judges a parameter value from iscsid. Process context.
    fn set_param(iconn: IscsiConn, param: u32, value: &[u8]) -> Result<SetParam>;

    /// Prepares a task for transmission (atomic: frwd_lock held, BH off).
    fn init_task(conn: &Self::Conn, task: &mut Task<'_>) -> Result;

    /// Transmits a task (atomic: frwd_lock held, BH off). `conn` can be cloned into an
    /// `Arc` to hand work to another context.
    fn xmit_task(conn: ArcBorrow<'_, Self::Conn>, task: &mut Task<'_>) -> Result;

    /// Releases a task's transport resources (atomic: back_lock held).
    fn cleanup_task(conn: &Self::Conn, task: &mut Task<'_>);

    /// A callback for an object this driver did not create, reached only through a netlink
    /// message naming another transport's object. Returns the errno to report, where the
    /// callback can report one. Process context.
    fn foreign_object(op: Op) -> Error;
}

/// The registered transport and host template, for the trampolines (one transport per
/// module).
static TT: AtomicPtr<bindings::iscsi_transport> = AtomicPtr::new(core::ptr::null_mut());
static SHT: AtomicPtr<bindings::scsi_host_template> = AtomicPtr::new(core::ptr::null_mut());
static TEMPLATE: AtomicPtr<bindings::scsi_transport_template> =
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
    conn: *const c_void,
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
fn is_ours(transport: *mut bindings::iscsi_transport) -> bool {
    !transport.is_null() && transport == TT.load(Ordering::Acquire)
}

/// The connection stored in one of our endpoints, borrowed; `None` for foreign endpoints.
///
/// # Safety
///
/// `ep` is a live endpoint.
unsafe fn ep_conn<'a, C>(ep: *mut bindings::iscsi_endpoint) -> Option<ArcBorrow<'a, C>> {
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
unsafe extern "C" fn ep_connect<T: TransportOps>(
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
unsafe extern "C" fn ep_poll<T: TransportOps>(
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
/// Called by `scsi_transport_iscsi` once per endpoint: `ep` is an `iscsi_endpoint` (of any
/// transport: handles are global) that the transport class keeps live for the call, and
/// nothing uses `ep` after this returns (we destroy it).
unsafe extern "C" fn ep_disconnect<T: TransportOps>(ep: *mut bindings::iscsi_endpoint) {
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
unsafe extern "C" fn get_ep_param<T: TransportOps>(
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

/// # Safety
///
/// Called by `scsi_transport_iscsi` for `ISCSI_UEVENT_CREATE_BOUND_SESSION` /
/// `ISCSI_UEVENT_CREATE_SESSION`: `ep` is NULL or an `iscsi_endpoint` (of any transport) that
/// the transport class keeps live for the call.
unsafe extern "C" fn create_session<T: TransportOps>(
    ep: *mut bindings::iscsi_endpoint,
    cmds_max: u16,
    qdepth: u16,
    initial_cmdsn: u32,
) -> *mut bindings::iscsi_cls_session {
    let req = SessionRequest { cmds_max, qdepth };
    let conn = if ep.is_null() {
        None
    } else {
        // SAFETY: The class passes a live endpoint looked up by handle.
        match unsafe { ep_conn::<T::Conn>(ep) } {
            Some(c) => Some(Arc::<T::Conn>::from(c)),
            None => {
                T::foreign_object(Op::CreateSession);
                return core::ptr::null_mut();
            }
        }
    };
    let Ok(lim) = T::session_limits(conn.as_ref(), req) else {
        // The C interface has no errno here: NULL makes the transport class report -ENOMEM.
        return core::ptr::null_mut();
    };
    let (sht, tt, template) = (
        SHT.load(Ordering::Acquire),
        TT.load(Ordering::Acquire),
        TEMPLATE.load(Ordering::Acquire),
    );
    // SAFETY: `sht` is our registered template (invariant of `Registration`).
    let shost = unsafe { bindings::iscsi_host_alloc(sht, 0, false) };
    if shost.is_null() {
        return core::ptr::null_mut();
    }
    // SAFETY: `shost` is new and not yet visible to anyone.
    unsafe {
        let h = &mut *shost;
        h.transportt = template;
        h.cmd_per_lun = lim.cmd_per_lun.min(i16::MAX as u16) as i16;
        h.max_lun = lim.max_lun.into();
        h.max_id = 0;
        h.max_channel = 0;
        h.max_cmd_len = 16;
        h.can_queue = lim.can_queue.into();
        h.sg_tablesize = lim.sg_tablesize;
        h.max_sectors = lim.max_sectors;
        if lim.virt_boundary_4k {
            h.virt_boundary_mask = 4096 - 1;
        }
    }
    // SAFETY: `shost` is allocated; `parent` is the HCA's device or NULL.
    if unsafe { bindings::iscsi_host_add(shost, lim.parent) } != 0 {
        // SAFETY: Allocated and not added.
        unsafe { bindings::iscsi_host_free(shost) };
        return core::ptr::null_mut();
    }
    // SAFETY: `tt` is registered, `shost` added.
    let cls = unsafe {
        bindings::iscsi_session_setup(
            tt,
            shost,
            lim.can_queue,
            0,
            TASK_DD_SIZE as c_int,
            initial_cmdsn,
            0,
        )
    };
    if cls.is_null() {
        // SAFETY: Added above, no session on it.
        unsafe {
            bindings::iscsi_host_remove(shost, false);
            bindings::iscsi_host_free(shost);
        }
        return core::ptr::null_mut();
    }
    cls
}

/// # Safety
///
/// Called by `scsi_transport_iscsi` with `s` a live `iscsi_cls_session` (possibly of
/// another transport), which is not used by the caller after this returns.
unsafe extern "C" fn destroy_session<T: TransportOps>(s: *mut bindings::iscsi_cls_session) {
    // SAFETY: The class passes a live session.
    if !is_ours(unsafe { (*s).transport }) {
        T::foreign_object(Op::DestroySession);
        return;
    }
    // SAFETY: Our session: its host is `dev.parent` (iscsi_session_to_shost).
    unsafe {
        let shost = bindings::dev_to_shost((*s).dev.parent);
        bindings::iscsi_session_teardown(s);
        bindings::iscsi_host_remove(shost, false);
        bindings::iscsi_host_free(shost);
    }
}

/// # Safety
///
/// Called by `scsi_transport_iscsi` with `s` a live `iscsi_cls_session` (possibly of another
/// transport).
unsafe extern "C" fn create_conn<T: TransportOps>(
    s: *mut bindings::iscsi_cls_session,
    cid: u32,
) -> *mut bindings::iscsi_cls_conn {
    // SAFETY: The class passes a live session.
    if !is_ours(unsafe { (*s).transport }) {
        T::foreign_object(Op::CreateConn);
        return core::ptr::null_mut();
    }
    // SAFETY: Our session.
    let c = unsafe { bindings::iscsi_conn_setup(s, 0, cid) };
    if !c.is_null() {
        // SAFETY: `c` is a new libiscsi connection; iSER receives at most
        // `proto::hdr::RECV_DATA_SEG_LEN` data bytes per PDU in full feature phase.
        unsafe {
            let conn = (*c).dd_data.cast::<bindings::iscsi_conn>();
            (*conn).max_recv_dlength = crate::proto::sizing::RECV_DATA_SEG_LEN as u32;
        }
    }
    c
}

/// # Safety
///
/// `c` is a live class connection.
unsafe fn our_conn(c: *mut bindings::iscsi_cls_conn) -> Option<IscsiConn> {
    // SAFETY: Live by the contract.
    if c.is_null() || !is_ours(unsafe { (*c).transport }) {
        return None;
    }
    // SAFETY: Our class connections carry a libiscsi `iscsi_conn` in `dd_data`.
    let conn = unsafe { (*c).dd_data.cast::<bindings::iscsi_conn>() };
    Some(IscsiConn {
        cls: NonNull::new(c)?,
        conn: NonNull::new(conn)?,
    })
}

/// # Safety
///
/// Called by `scsi_transport_iscsi` with `s` a live `iscsi_cls_session` and `c` a live
/// `iscsi_cls_conn` of it (possibly of another transport).
unsafe extern "C" fn bind_conn<T: TransportOps>(
    s: *mut bindings::iscsi_cls_session,
    c: *mut bindings::iscsi_cls_conn,
    eph: u64,
    is_leading: c_int,
) -> c_int {
    // SAFETY: The class passes a live session and connection.
    let Some(iconn) = (unsafe { our_conn(c) }) else {
        return T::foreign_object(Op::BindConn).to_errno();
    };
    // SAFETY: As above.
    if !is_ours(unsafe { (*s).transport }) {
        return T::foreign_object(Op::BindConn).to_errno();
    }
    // SAFETY: Both are ours and live.
    let rc = unsafe { bindings::iscsi_conn_bind(s, c, is_leading) };
    if rc != 0 {
        return rc;
    }
    // SAFETY: Plain lookup; takes a reference we put below.
    let ep = unsafe { bindings::iscsi_lookup_endpoint(eph) };
    if ep.is_null() {
        iser_err!("can't bind eph {:x}\n", eph);
        return EINVAL.to_errno();
    }
    // SAFETY: `ep` is live while we hold the lookup reference.
    let rc = match unsafe { ep_conn::<T::Conn>(ep) } {
        None => T::foreign_object(Op::BindConn).to_errno(),
        Some(conn) => {
            let conn: Arc<T::Conn> = conn.into();
            match T::bind_conn(iconn, &conn) {
                Ok(()) => 0,
                Err(e) => e.to_errno(),
            }
        }
    };
    // SAFETY: Drops the lookup reference.
    unsafe { bindings::iscsi_put_endpoint(ep) };
    rc
}

/// # Safety
///
/// Called by `scsi_transport_iscsi` with `c` a live `iscsi_cls_conn` (possibly of another
/// transport).
unsafe extern "C" fn unbind_conn<T: TransportOps>(c: *mut bindings::iscsi_cls_conn, active: bool) {
    // SAFETY: The class passes a live connection.
    if unsafe { our_conn(c) }.is_none() {
        T::foreign_object(Op::UnbindConn);
        return;
    }
    // SAFETY: Ours.
    unsafe { bindings::iscsi_conn_unbind(c, active) }
}

/// # Safety
///
/// Called by `scsi_transport_iscsi` with `c` a live `iscsi_cls_conn` (possibly of another
/// transport).
unsafe extern "C" fn start_conn<T: TransportOps>(c: *mut bindings::iscsi_cls_conn) -> c_int {
    // SAFETY: The class passes a live connection.
    let Some(iconn) = (unsafe { our_conn(c) }) else {
        return T::foreign_object(Op::StartConn).to_errno();
    };
    if let Err(e) = T::start_conn(iconn) {
        return e.to_errno();
    }
    // SAFETY: Ours.
    unsafe { bindings::iscsi_conn_start(c) }
}

/// # Safety
///
/// Called by `scsi_transport_iscsi` with `c` a live `iscsi_cls_conn` (possibly of another
/// transport).
unsafe extern "C" fn stop_conn<T: TransportOps>(c: *mut bindings::iscsi_cls_conn, flag: c_int) {
    // SAFETY: The class passes a live connection.
    match unsafe { our_conn(c) } {
        Some(iconn) => T::stop_conn(iconn, flag),
        None => {
            T::foreign_object(Op::StopConn);
        }
    }
}

/// `stop_conn`'s flag for a connection that ends for good (logout, destroy).
pub(crate) const STOP_CONN_TERM: c_int = bindings::STOP_CONN_TERM as c_int;

/// # Safety
///
/// Called by `scsi_transport_iscsi` with `c` a live `iscsi_cls_conn` (possibly of another
/// transport), which is not used by the caller after this returns.
unsafe extern "C" fn destroy_conn<T: TransportOps>(c: *mut bindings::iscsi_cls_conn) {
    // SAFETY: The class passes a live connection.
    let Some(iconn) = (unsafe { our_conn(c) }) else {
        T::foreign_object(Op::DestroyConn);
        return;
    };
    // iscsid stops a connection before destroying it; a crashed iscsid or another netlink
    // caller may not have: stop it here, so that nothing of ours outlives the libiscsi
    // connection (the C driver releases its connection here too).
    if iconn.bound::<T::Conn>().is_some() {
        iser_err!("destroy_conn of a connection that was not stopped: stopping it first\n");
        T::stop_conn(iconn, STOP_CONN_TERM);
    }
    // SAFETY: Ours, and no longer bound to our connection (stopped above if it was).
    unsafe { bindings::iscsi_conn_teardown(c) }
}

/// # Safety
///
/// Called by `scsi_transport_iscsi` with `c` a live `iscsi_cls_conn` (possibly of another
/// transport) and `buf` NULL or `len` readable bytes of the netlink payload holding a
/// NUL-terminated value.
unsafe extern "C" fn set_param<T: TransportOps>(
    c: *mut bindings::iscsi_cls_conn,
    param: bindings::iscsi_param::Type,
    buf: *mut c_char,
    len: c_int,
) -> c_int {
    // SAFETY: The class passes a live connection.
    let Some(iconn) = (unsafe { our_conn(c) }) else {
        return T::foreign_object(Op::SetParam).to_errno();
    };
    let value: &[u8] = if buf.is_null() || len <= 0 {
        &[]
    } else {
        // SAFETY: The class passes `len` readable bytes (the netlink payload).
        unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), len as usize) }
    };
    // The value is a NUL-terminated string inside `len` bytes.
    let value = value.split(|&b| b == 0).next().unwrap_or(&[]);
    match T::set_param(iconn, param, value) {
        Ok(SetParam::Ignore) => 0,
        // SAFETY: Ours; the arguments are the class's.
        Ok(SetParam::Libiscsi) => unsafe { bindings::iscsi_set_param(c, param, buf, len) },
        Err(e) => e.to_errno(),
    }
}

/// # Safety
///
/// Called by `scsi_transport_iscsi` with `c` a live `iscsi_cls_conn` (possibly of another
/// transport) and `stats` its zeroed, writable `iscsi_stats` output buffer.
unsafe extern "C" fn get_stats<T: TransportOps>(
    c: *mut bindings::iscsi_cls_conn,
    stats: *mut bindings::iscsi_stats,
) {
    // SAFETY: The class passes a live connection.
    let Some(iconn) = (unsafe { our_conn(c) }) else {
        T::foreign_object(Op::GetStats);
        return;
    };
    // SAFETY: `stats` is the class's zeroed output buffer; the counters are libiscsi's.
    unsafe {
        let conn = &*iconn.conn.as_ptr();
        let s = &mut *stats;
        s.txdata_octets = conn.txdata_octets;
        s.rxdata_octets = conn.rxdata_octets;
        s.scsicmd_pdus = conn.scsicmd_pdus_cnt;
        s.dataout_pdus = conn.dataout_pdus_cnt;
        s.scsirsp_pdus = conn.scsirsp_pdus_cnt;
        s.datain_pdus = conn.datain_pdus_cnt;
        s.r2t_pdus = conn.r2t_pdus_cnt;
        s.tmfcmd_pdus = conn.tmfcmd_pdus_cnt;
        s.tmfrsp_pdus = conn.tmfrsp_pdus_cnt as u32;
        s.custom_length = 0;
    }
}

/// Points the task's header at the BHS slot of its transport area.
///
/// # Safety
///
/// Called by libiscsi under the session's frwd_lock with `task` a live `iscsi_task` of a
/// session of this transport, whose `dd_data` has `TASK_DD_SIZE` bytes.
unsafe extern "C" fn alloc_pdu(task: *mut bindings::iscsi_task, _opcode: u8) -> c_int {
    // SAFETY: libiscsi passes a task of our session, whose `dd_data` has `TASK_DD_SIZE`
    // bytes.
    unsafe {
        (*task).hdr = (*task).dd_data.cast::<u8>().add(TASK_BHS_OFF).cast();
        (*task).hdr_max = crate::proto::bhs::BHS_LEN as u16;
    }
    0
}

/// The transport connection bound to a task's connection.
///
/// # Safety
///
/// `task` is a live task of our session; the caller holds frwd_lock or back_lock (the
/// binding changes only with both held, see [`IscsiConn::unbind`]).
unsafe fn task_conn<'a, C>(task: *mut bindings::iscsi_task) -> Option<ArcBorrow<'a, C>> {
    // SAFETY: Live task (contract); `conn` is set for allocated tasks.
    let conn = unsafe { (*task).conn };
    if conn.is_null() {
        return None;
    }
    // SAFETY: `dd_data` is NULL or an `Arc<C>` reference set by `IscsiConn::bind`, stable
    // while the caller holds one of the session locks.
    let dd = unsafe { (*conn).dd_data };
    // SAFETY: As above: a live `Arc<C>` whose reference (held by the binding) outlives the
    // callback, during which the binding cannot change.
    (!dd.is_null()).then(|| unsafe { ArcBorrow::from_raw(dd.cast::<C>()) })
}

/// # Safety
///
/// Called by libiscsi under the session's frwd_lock with `task` a live `iscsi_task` of a
/// session of this transport, used by nobody else during the call.
unsafe extern "C" fn init_task<T: TransportOps>(task: *mut bindings::iscsi_task) -> c_int {
    // SAFETY: libiscsi calls this under frwd_lock with a live task.
    let Some(conn) = (unsafe { task_conn::<T::Conn>(task) }) else {
        return ENODEV.to_errno();
    };
    // SAFETY: As above; the task is exclusively ours during the callback.
    let mut t = unsafe { Task::new(task) };
    match T::init_task(&conn, &mut t) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// # Safety
///
/// Called by libiscsi under the session's frwd_lock (our hosts have no xmit workqueue) with
/// `task` a live `iscsi_task` of a session of this transport, used by nobody else during the
/// call.
unsafe extern "C" fn xmit_task<T: TransportOps>(task: *mut bindings::iscsi_task) -> c_int {
    // SAFETY: libiscsi calls this under frwd_lock (no xmit workqueue) with a live task.
    let Some(conn) = (unsafe { task_conn::<T::Conn>(task) }) else {
        return ENODEV.to_errno();
    };
    // SAFETY: As above.
    let mut t = unsafe { Task::new(task) };
    match T::xmit_task(conn, &mut t) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// # Safety
///
/// Called by libiscsi (`iscsi_free_task`) under the session's back_lock with `task` a live
/// `iscsi_task` of a session of this transport, used by nobody else during the call.
unsafe extern "C" fn cleanup_task<T: TransportOps>(task: *mut bindings::iscsi_task) {
    // SAFETY: libiscsi calls this under back_lock with a live task. A connection that was
    // stopped and unbound already released every task resource, so `None` is fine.
    let Some(conn) = (unsafe { task_conn::<T::Conn>(task) }) else {
        return;
    };
    // SAFETY: As above.
    let mut t = unsafe { Task::new(task) };
    T::cleanup_task(&conn, &mut t);
}

/// A libiscsi connection of our transport.
///
/// # Invariants
///
/// `cls`/`conn` are a live class connection and its libiscsi connection. The driver keeps
/// an `IscsiConn` only between `bind_conn` and `stop_conn` (which precede
/// `destroy_conn`), and uses it from completion handlers only before the QP drain that ends
/// them.
#[derive(Clone, Copy)]
pub(crate) struct IscsiConn {
    cls: NonNull<bindings::iscsi_cls_conn>,
    conn: NonNull<bindings::iscsi_conn>,
}

// SAFETY: libiscsi connections are used from any context with their own locking.
unsafe impl Send for IscsiConn {}
// SAFETY: As above.
unsafe impl Sync for IscsiConn {}

/// Negotiated parameters of a connection about to start (see [`IscsiConn::negotiated`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Negotiated {
    /// InitialR2T=Yes: no unsolicited Data-Out.
    pub(crate) initial_r2t: bool,
    /// FirstBurstLength.
    pub(crate) first_burst: u32,
    /// MaxXmitDataSegmentLength (the target's MaxRecvDataSegmentLength).
    pub(crate) max_xmit_dlength: u32,
}

/// The limits a session's SCSI host was created with (see [`IscsiConn::host_shape`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct HostShape {
    /// `sg_tablesize`.
    pub(crate) sg_tablesize: u32,
    /// `max_sectors`.
    pub(crate) max_sectors: u32,
    /// `can_queue`.
    pub(crate) can_queue: u32,
    /// `virt_boundary_mask` is not zero.
    pub(crate) virt_boundary: bool,
}

/// Session facts a bound connection needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SessionInfo {
    /// Task pool size (RX ring size).
    pub(crate) cmds_max: u32,
    /// SCSI task count (registration pool size).
    pub(crate) scsi_cmds_max: u32,
    /// Discovery session (SendTargets only).
    pub(crate) discovery: bool,
}

impl IscsiConn {
    fn session(&self) -> *mut bindings::iscsi_session {
        // SAFETY: Live by the invariant.
        unsafe { (*self.conn.as_ptr()).session }
    }

    /// Facts about the session.
    pub(crate) fn session_info(&self) -> SessionInfo {
        // SAFETY: The session of a live connection is live.
        let s = unsafe { &*self.session() };
        SessionInfo {
            cmds_max: s.cmds_max.max(0) as u32,
            scsi_cmds_max: s.scsi_cmds_max.max(0) as u32,
            discovery: s.discovery_sess != 0,
        }
    }

    /// The limits the session's SCSI host was created with, which the SCSI midlayer keeps for
    /// the session's life (a connection bound after a recovery must carry them); `None` if
    /// the session has no host.
    pub(crate) fn host_shape(&self) -> Option<HostShape> {
        // SAFETY: The session of a live connection is live (invariant); libiscsi allocates the
        // session inside its host and frees the host after the session, so a non-NULL `host`
        // is live. The fields read are set before `iscsi_host_add` and not written after.
        unsafe {
            let h = (*self.session()).host;
            if h.is_null() {
                return None;
            }
            Some(HostShape {
                sg_tablesize: u32::from((*h).sg_tablesize),
                max_sectors: (*h).max_sectors,
                can_queue: (*h).can_queue.max(0) as u32,
                virt_boundary: (*h).virt_boundary_mask != 0,
            })
        }
    }

    /// The negotiated parameters that size unsolicited Data-Out traffic, read at
    /// `start_conn` (iscsid set them after the login, before the start).
    pub(crate) fn negotiated(&self) -> Negotiated {
        // SAFETY: The connection and its session are live (invariant); iscsid's netlink
        // requests are serialised, so no set_param writes them during `start_conn`.
        unsafe {
            let s = &*self.session();
            Negotiated {
                initial_r2t: s.initial_r2t_en != 0,
                first_burst: s.first_burst,
                max_xmit_dlength: (*self.conn.as_ptr()).max_xmit_dlength,
            }
        }
    }

    /// Whether the session is a discovery session, as its `ISCSI_PARAM_DISCOVERY_SESS`
    /// parameter says now: iscsiadm sets it after bind, before the login.
    pub(crate) fn is_discovery(&self) -> bool {
        // SAFETY: The session of a live connection is live (invariant). The field is a plain
        // `int` that `iscsi_set_param` may write concurrently from the netlink path: a
        // volatile read of an aligned `int` reads either value, as C's plain read does.
        unsafe { core::ptr::read_volatile(&raw const (*self.session()).discovery_sess) != 0 }
    }

    /// The session id and connection id, as in the sysfs name `connection<sid>:<cid>`.
    pub(crate) fn ids(&self) -> (u32, u32) {
        // SAFETY: The connection and its session are live (invariant); a libiscsi session
        // always has its class session.
        unsafe {
            let cls_session = (*self.session()).cls_session;
            ((*cls_session).sid.max(0) as u32, (*self.cls.as_ptr()).cid)
        }
    }

    /// Whether two handles are the same connection.
    pub(crate) fn same(&self, other: &IscsiConn) -> bool {
        self.conn == other.conn
    }

    /// Stores `c` as the connection's transport data (libiscsi tasks see it from now on).
    pub(crate) fn bind<C>(&self, c: Arc<C>) {
        let raw = Arc::into_raw(c);
        let old = self.swap_dd(raw.cast_mut().cast());
        if !old.is_null() {
            // SAFETY: A previous binding's reference, now unreachable.
            drop(unsafe { Arc::from_raw(old.cast::<C>()) });
        }
    }

    /// Clears the transport data; returns the reference it held. Takes both session locks
    /// so no task callback is using the old value afterwards.
    pub(crate) fn unbind<C>(&self) -> Option<Arc<C>> {
        let old = self.swap_dd(core::ptr::null_mut());
        // SAFETY: Non-NULL values are references stored by `bind::<C>`.
        (!old.is_null()).then(|| unsafe { Arc::from_raw(old.cast::<C>()) })
    }

    /// A new reference to the bound transport connection, if any.
    pub(crate) fn bound<C>(&self) -> Option<Arc<C>> {
        let s = self.session();
        // SAFETY: As in `swap_dd`; the value read under the locks is a live `Arc<C>`
        // reference (stored by `bind::<C>`), which we clone before unlocking.
        unsafe {
            bindings::spin_lock_bh(&raw mut (*s).frwd_lock);
            let dd = (*self.conn.as_ptr()).dd_data;
            let r = (!dd.is_null()).then(|| Arc::from(ArcBorrow::from_raw(dd.cast::<C>())));
            bindings::spin_unlock_bh(&raw mut (*s).frwd_lock);
            r
        }
    }

    fn swap_dd(&self, new: *mut c_void) -> *mut c_void {
        let s = self.session();
        // SAFETY: The session is live; frwd_lock then back_lock is libiscsi's lock order;
        // task callbacks read `dd_data` under one of them.
        unsafe {
            bindings::spin_lock_bh(&raw mut (*s).frwd_lock);
            bindings::spin_lock_bh(&raw mut (*s).back_lock);
            let old = (*self.conn.as_ptr()).dd_data;
            (*self.conn.as_ptr()).dd_data = new;
            bindings::spin_unlock_bh(&raw mut (*s).back_lock);
            bindings::spin_unlock_bh(&raw mut (*s).frwd_lock);
            old
        }
    }

    /// Stops further transmission (`iscsi_suspend_queue`).
    pub(crate) fn suspend_queue(&self) {
        // SAFETY: Live connection.
        unsafe { bindings::iscsi_suspend_queue(self.conn.as_ptr()) }
    }

    /// Whether the session is logging out: libiscsi sets `ISCSI_STATE_LOGGING_OUT` when it
    /// prepares a Logout Request, and the target closes the connection after its Logout
    /// Response.
    pub(crate) fn logging_out(&self) -> bool {
        // SAFETY: The session of a live connection is live (invariant). `state` is an `int`
        // libiscsi writes under `frwd_lock`; a volatile read of an aligned `int` returns
        // either value (a hint: see the caller).
        let state = unsafe { core::ptr::read_volatile(&raw const (*self.session()).state) };
        state == bindings::ISCSI_STATE_LOGGING_OUT as c_int
    }

    /// Reports a connection failure to libiscsi (any context).
    pub(crate) fn failure(&self, err: u32) {
        // SAFETY: Live connection.
        unsafe { bindings::iscsi_conn_failure(self.conn.as_ptr(), err) }
    }

    /// `iscsi_conn_stop`: fails outstanding tasks (their `cleanup_task` runs now).
    pub(crate) fn stop(&self, flag: c_int) {
        // SAFETY: Live connection.
        unsafe { bindings::iscsi_conn_stop(self.cls.as_ptr(), flag) }
    }

    /// Delivers a received PDU (header + data segment) to libiscsi (softirq context);
    /// returns libiscsi's status (0 or an `ISCSI_ERR_*`).
    pub(crate) fn complete_pdu(
        &self,
        bhs: &mut [u8; crate::proto::bhs::BHS_LEN],
        data: &mut [u8],
    ) -> c_int {
        let dp = if data.is_empty() {
            core::ptr::null_mut()
        } else {
            data.as_mut_ptr().cast()
        };
        // SAFETY: Live connection; `bhs` is a full BHS and `data` has `len` bytes, both
        // valid for the call (libiscsi copies what it keeps).
        unsafe {
            bindings::iscsi_complete_pdu(
                self.conn.as_ptr(),
                bhs.as_mut_ptr().cast(),
                dp,
                data.len() as c_int,
            )
        }
    }
}

/// A SCSI command's data direction as the iSCSI BHS states it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DataDir {
    /// No data.
    None,
    /// Target to initiator (READ flag).
    Read,
    /// Initiator to target (WRITE flag).
    Write,
}

/// A task in one of libiscsi's task callbacks.
///
/// # Invariants
///
/// `ptr` is a live task of our session whose `dd_data` has `TASK_DD_SIZE` bytes; the
/// value lives only for the callback.
pub(crate) struct Task<'a> {
    ptr: NonNull<bindings::iscsi_task>,
    _p: PhantomData<&'a mut bindings::iscsi_task>,
}

/// A task kept across callbacks to drop the reference libiscsi left to the transport
/// (NOP-Out replies with the reserved ITT, released on send completion).
///
/// # Invariants
///
/// `ptr` is a live task whose last reference is released by [`TaskHandle::put`].
pub(crate) struct TaskHandle {
    ptr: NonNull<bindings::iscsi_task>,
}

// SAFETY: `iscsi_put_task` may run in any context.
unsafe impl Send for TaskHandle {}

impl TaskHandle {
    /// Drops the task reference (`iscsi_put_task`).
    pub(crate) fn put(self) {
        // SAFETY: By the invariant.
        unsafe { bindings::iscsi_put_task(self.ptr.as_ptr()) }
    }
}

impl<'a> Task<'a> {
    /// # Safety
    ///
    /// `ptr` satisfies the type invariant for `'a`.
    unsafe fn new(ptr: *mut bindings::iscsi_task) -> Self {
        Task {
            // SAFETY: libiscsi never passes NULL.
            ptr: unsafe { NonNull::new_unchecked(ptr) },
            _p: PhantomData,
        }
    }

    fn t(&self) -> &bindings::iscsi_task {
        // SAFETY: Live by the invariant.
        unsafe { self.ptr.as_ref() }
    }

    /// The task's index in the session pool (the low ITT bits).
    pub(crate) fn index(&self) -> usize {
        self.t().itt.max(0) as usize
    }

    /// Whether this is a SCSI command (else a management task).
    pub(crate) fn is_scsi(&self) -> bool {
        !self.t().sc.is_null()
    }

    /// Whether this is the connection's login/text task.
    pub(crate) fn is_login_task(&self) -> bool {
        let t = self.t();
        // SAFETY: `conn` of a live task is live.
        !t.conn.is_null() && core::ptr::eq(unsafe { (*t.conn).login_task }, self.ptr.as_ptr())
    }

    fn dd(&self) -> *mut u8 {
        self.t().dd_data.cast()
    }

    /// The iSER header + BHS area (76 bytes) this task sends from.
    pub(crate) fn hdrs_mut(&mut self) -> &mut [u8; TASK_HDRS_LEN] {
        // SAFETY: `dd_data` has `TASK_DD_SIZE >= TASK_HDRS_LEN` bytes owned by this task.
        unsafe { &mut *self.dd().cast::<[u8; TASK_HDRS_LEN]>() }
    }

    /// The BHS libiscsi built.
    pub(crate) fn bhs(&self) -> &[u8; crate::proto::bhs::BHS_LEN] {
        // SAFETY: As above; the BHS follows the iSER header.
        unsafe {
            &*self
                .dd()
                .add(TASK_BHS_OFF)
                .cast::<[u8; crate::proto::bhs::BHS_LEN]>()
        }
    }

    /// Management payload (login/text data).
    pub(crate) fn mgmt_data(&self) -> &[u8] {
        let t = self.t();
        if t.data.is_null() || t.data_count == 0 {
            return &[];
        }
        // SAFETY: libiscsi keeps `data_count` bytes at `data` while the task is queued.
        unsafe { core::slice::from_raw_parts(t.data.cast::<u8>(), t.data_count as usize) }
    }

    /// Immediate data bytes (in the command PDU).
    pub(crate) fn imm_count(&self) -> u32 {
        self.t().imm_count
    }

    /// Unsolicited Data-Out bytes (beyond immediate data) libiscsi scheduled.
    pub(crate) fn unsol_len(&self) -> u32 {
        self.t().unsol_r2t.data_length
    }

    /// The connection's negotiated MaxXmitDataSegmentLength: the data bytes of each
    /// unsolicited Data-Out libiscsi prepares (0 if the task has no connection).
    pub(crate) fn max_xmit_dlength(&self) -> u32 {
        let c = self.t().conn;
        if c.is_null() {
            return 0;
        }
        // SAFETY: `conn` of a live task is live; libiscsi writes the field only while the
        // connection is stopped (set_param before start), never during a transmit.
        unsafe { (*c).max_xmit_dlength }
    }

    /// Whether unsolicited Data-Out remains to be sent.
    pub(crate) fn has_unsol_data(&self) -> bool {
        let r = &self.t().unsol_r2t;
        r.data_length > r.sent.max(0) as u32
    }

    /// Builds the next unsolicited Data-Out BHS into `hdr`; returns (buffer offset, length).
    pub(crate) fn prep_data_out(
        &mut self,
        hdr: &mut [u8; crate::proto::bhs::BHS_LEN],
    ) -> (u32, u32) {
        let t = self.ptr.as_ptr();
        // SAFETY: Live task; `hdr` has room for a `struct iscsi_data` (48 bytes).
        unsafe {
            bindings::iscsi_prep_data_out_pdu(t, &raw mut (*t).unsol_r2t, hdr.as_mut_ptr().cast());
            let r = &(*t).unsol_r2t;
            (
                r.data_offset + r.sent.max(0) as u32,
                r.data_count.max(0) as u32,
            )
        }
    }

    /// Records `len` more unsolicited bytes as sent.
    pub(crate) fn advance_unsol(&mut self, len: u32) {
        // SAFETY: Live task, callback has exclusive use of the transport-owned counter.
        unsafe { (*self.ptr.as_ptr()).unsol_r2t.sent += len as c_int };
    }

    /// Undoes the DataSN increment of a Data-Out that was not sent.
    pub(crate) fn undo_data_out(&mut self) {
        // SAFETY: As above.
        unsafe { (*self.ptr.as_ptr()).unsol_r2t.datasn -= 1 };
    }

    /// The SCSI command's data.
    pub(crate) fn scsi_data(&self) -> Option<ScsiData> {
        let sc = self.t().sc;
        if sc.is_null() {
            return None;
        }
        // SAFETY: Live command of a live task. The fields are what the static inlines
        // `scsi_sglist()`, `scsi_sg_count()`, `scsi_bufflen()` and `scsi_get_prot_op()` read
        // (read directly: no out-of-line wrapper call per field on the I/O path).
        unsafe {
            let sdb = &(*sc).sdb;
            Some(ScsiData {
                sgl: NonNull::new(sdb.table.sgl),
                count: sdb.table.nents as c_int,
                len: sdb.length,
                prot_normal: (*sc).prot_op == bindings::scsi_prot_operations_SCSI_PROT_NORMAL as u8,
                #[cfg(iser_test_faults)]
                is_read: (*sc).sc_data_direction == super::compat::DMA_FROM_DEVICE,
                #[cfg(iser_test_faults)]
                result: (*sc).result,
            })
        }
    }

    /// Maps the header area for DMA to `dev` (the area lives as long as the session).
    pub(crate) fn map_hdrs(&self, dev: DeviceRef) -> Result<HdrMapping> {
        // SAFETY: The task's `dd_data` holds `TASK_HDRS_LEN` bytes that libiscsi allocates with
        // the session's task pool and frees after the connection (and its mappings) is gone.
        unsafe { HdrMapping::new(dev, self.dd(), TASK_HDRS_LEN) }
    }

    /// A handle to release this task's reference later.
    pub(crate) fn handle(&self) -> TaskHandle {
        TaskHandle { ptr: self.ptr }
    }
}

/// The data buffer of a SCSI command.
///
/// # Invariants
///
/// `sgl` (if any) has `count` entries and stays valid until libiscsi completes the command,
/// which happens after `cleanup_task`.
pub(crate) struct ScsiData {
    sgl: Option<NonNull<bindings::scatterlist>>,
    count: c_int,
    /// Transfer length in bytes.
    pub(crate) len: u32,
    /// No protection information operation.
    pub(crate) prot_normal: bool,
    /// Test builds: the command reads (device to memory).
    #[cfg(iser_test_faults)]
    pub(crate) is_read: bool,
    /// Test builds: the command's SCSI result so far (0: good).
    #[cfg(iser_test_faults)]
    pub(crate) result: c_int,
}

impl ScsiData {
    /// Entries of the buffer's scatterlist (0: no buffer).
    pub(crate) fn entries(&self) -> u32 {
        match self.sgl {
            Some(_) => u32::try_from(self.count).unwrap_or(0),
            None => 0,
        }
    }

    /// Test builds: the first scatterlist entry (valid while the command is, invariant).
    #[cfg(iser_test_faults)]
    pub(crate) fn sgl(&self) -> Option<NonNull<bindings::scatterlist>> {
        self.sgl.filter(|_| self.count > 0 && self.len > 0)
    }

    /// Maps the buffer for DMA on `dev` (None: empty buffer).
    pub(crate) fn map(&self, dev: DeviceRef, dir: DmaDir) -> Result<Option<MappedSg>> {
        match self.sgl {
            Some(sgl) if self.count > 0 && self.len > 0 => {
                MappedSg::map(dev, sgl, self.count, dir).map(Some)
            }
            _ => Ok(None),
        }
    }
}

// The iSER wire structs of `include/scsi/iser.h` and our `proto` encoders must agree.
const _: () = {
    assert!(core::mem::size_of::<bindings::iser_ctrl>() == crate::proto::hdr::LEN);
    assert!(core::mem::size_of::<bindings::iser_cm_hdr>() == crate::proto::cm::LEN);
    assert!(bindings::ISER_WSV as u8 == crate::proto::hdr::FLAG_WSV);
    assert!(bindings::ISER_RSV as u8 == crate::proto::hdr::FLAG_RSV);
    assert!(bindings::ISER_ZBVA_NOT_SUP as u8 == crate::proto::cm::REQ_ZBVA_NOT_SUP);
    assert!(bindings::ISER_SEND_W_INV_NOT_SUP as u8 == crate::proto::cm::REQ_SEND_W_INV_NOT_SUP);
    assert!(bindings::ISERT_SEND_W_INV_NOT_USED as u8 == crate::proto::cm::REP_SEND_W_INV_NOT_USED);
};
