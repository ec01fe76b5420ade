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
use core::marker::PhantomData;
use core::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use core::pin::Pin;
use core::ptr::NonNull;
use kernel::error::code::EINVAL;
use kernel::ffi::{c_char, c_int};
use kernel::prelude::*;
use kernel::str::CStr;
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
    /// `send_pdu`.
    SendPdu,
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
            Op::DestroySession => "destroy_session",
            Op::CreateConn => "create_conn",
            Op::BindConn => "bind_conn",
            Op::UnbindConn => "unbind_conn",
            Op::StartConn => "start_conn",
            Op::StopConn => "stop_conn",
            Op::DestroyConn => "destroy_conn",
            Op::SetParam => "set_param",
            Op::SendPdu => "send_pdu",
            Op::GetStats => "get_stats",
        }
    }
}

/// What `create_session` is asked for.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SessionRequest {
    /// Whether iscsid passed an endpoint (every iscsid since 2.0-870 does).
    pub(crate) has_endpoint: bool,
    /// Requested size of the task pool.
    pub(crate) cmds_max: u16,
    /// Requested queue depth per LUN.
    pub(crate) qdepth: u16,
    /// The first CmdSN.
    pub(crate) initial_cmdsn: u32,
}

/// The driver side of an iSCSI transport. Every method documents its execution context.
pub(crate) trait TransportOps {
    /// Transport name (`/sys/class/iscsi_transport/<NAME>`).
    const NAME: &'static CStr;
    /// Capability bits (`caps` module).
    const CAPS: u32;

    /// Whether a sysfs attribute is shown. Process context, may be called at registration.
    fn attr_is_visible(attr: Attr) -> bool;

    /// Starts connecting to `dst` (`None`: an address family other than IPv4/IPv6).
    /// Process context (netlink from iscsid).
    fn ep_connect(dst: Option<SocketAddr>, non_blocking: bool)
        -> Result<core::convert::Infallible>;

    /// Creates a session. Process context (netlink from iscsid).
    fn create_session(req: SessionRequest) -> Result<core::convert::Infallible>;

    /// A callback for an object this driver never created (no endpoint or session of ours
    /// exists yet), reached only by a netlink message naming another transport's object.
    /// Returns the errno to report, where the callback can report one. Process context.
    fn foreign_object(op: Op) -> Error;
}

/// A registered iSCSI transport; unregistered on drop.
///
/// # Invariants
///
/// - `tt` was passed to a successful `iscsi_register_transport` and stays registered, at the
///   same address, until `drop`.
/// - `template` is the `scsi_transport_template` that registration returned.
pub(crate) struct Registration<T: TransportOps> {
    tt: Pin<KBox<Opaque<bindings::iscsi_transport>>>,
    template: NonNull<bindings::scsi_transport_template>,
    _ops: PhantomData<T>,
}

// SAFETY: The registered transport is only read by the iSCSI transport class, from any
// thread; unregistration may run on any thread.
unsafe impl<T: TransportOps> Send for Registration<T> {}
// SAFETY: `&Registration` gives no access to the C objects except the template pointer,
// which the transport class hands out to every thread anyway.
unsafe impl<T: TransportOps> Sync for Registration<T> {}

impl<T: TransportOps> Registration<T> {
    /// Registers transport `T`, owned by `module` (sessions pin the module through it).
    pub(crate) fn new(module: &'static ThisModule) -> Result<Self> {
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
            send_pdu: Some(send_pdu::<T>),
            get_stats: Some(get_stats::<T>),
            session_recovery_timedout: Some(bindings::iscsi_session_recovery_timedout),
            ep_connect: Some(ep_connect::<T>),
            ep_poll: Some(ep_poll::<T>),
            ep_disconnect: Some(ep_disconnect::<T>),
            attr_is_visible: Some(attr_is_visible::<T>),
            ..Default::default()
        };
        let tt = KBox::pin(Opaque::new(tt), GFP_KERNEL)?;
        // SAFETY: `tt` is a fully initialised transport that lives at a stable address until
        // it is unregistered in `drop`; `name` points to a `'static` string.
        let template = unsafe { bindings::iscsi_register_transport(tt.get()) };
        let template = NonNull::new(template).ok_or(EINVAL)?;
        // INVARIANT: registration succeeded and returned `template`.
        Ok(Registration {
            tt,
            template,
            _ops: PhantomData,
        })
    }

    /// The SCSI transport template to assign to every `Scsi_Host` of this transport.
    #[allow(dead_code)]
    pub(crate) fn template(&self) -> *mut bindings::scsi_transport_template {
        self.template.as_ptr()
    }
}

impl<T: TransportOps> Drop for Registration<T> {
    fn drop(&mut self) {
        // SAFETY: By the type invariant `tt` is registered; sessions hold a reference on the
        // owner module, so none exists when the module is unloaded and this runs.
        unsafe { bindings::iscsi_unregister_transport(self.tt.get()) };
    }
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
    // SAFETY: `dst` is non-NULL and points to at least a `sa_family_t` by the contract.
    let family = u32::from(unsafe { (*dst).sa_family });
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
    match T::ep_connect(dst, non_blocking != 0) {
        Err(e) => e.to_ptr(),
    }
}

extern "C" fn ep_poll<T: TransportOps>(_ep: *mut bindings::iscsi_endpoint, _ms: c_int) -> c_int {
    T::foreign_object(Op::EpPoll).to_errno()
}

extern "C" fn ep_disconnect<T: TransportOps>(_ep: *mut bindings::iscsi_endpoint) {
    T::foreign_object(Op::EpDisconnect);
}

extern "C" fn get_ep_param<T: TransportOps>(
    _ep: *mut bindings::iscsi_endpoint,
    _param: bindings::iscsi_param::Type,
    _buf: *mut c_char,
) -> c_int {
    T::foreign_object(Op::GetEpParam).to_errno()
}

extern "C" fn create_session<T: TransportOps>(
    ep: *mut bindings::iscsi_endpoint,
    cmds_max: u16,
    qdepth: u16,
    initial_cmdsn: u32,
) -> *mut bindings::iscsi_cls_session {
    let req = SessionRequest {
        has_endpoint: !ep.is_null(),
        cmds_max,
        qdepth,
        initial_cmdsn,
    };
    match T::create_session(req) {
        // The C interface has no errno here: NULL makes the transport class report -ENOMEM.
        Err(_) => core::ptr::null_mut(),
    }
}

extern "C" fn destroy_session<T: TransportOps>(_s: *mut bindings::iscsi_cls_session) {
    T::foreign_object(Op::DestroySession);
}

extern "C" fn create_conn<T: TransportOps>(
    _s: *mut bindings::iscsi_cls_session,
    _cid: u32,
) -> *mut bindings::iscsi_cls_conn {
    T::foreign_object(Op::CreateConn);
    core::ptr::null_mut()
}

extern "C" fn bind_conn<T: TransportOps>(
    _s: *mut bindings::iscsi_cls_session,
    _c: *mut bindings::iscsi_cls_conn,
    _eph: u64,
    _is_leading: c_int,
) -> c_int {
    T::foreign_object(Op::BindConn).to_errno()
}

extern "C" fn unbind_conn<T: TransportOps>(_c: *mut bindings::iscsi_cls_conn, _active: bool) {
    T::foreign_object(Op::UnbindConn);
}

extern "C" fn start_conn<T: TransportOps>(_c: *mut bindings::iscsi_cls_conn) -> c_int {
    T::foreign_object(Op::StartConn).to_errno()
}

extern "C" fn stop_conn<T: TransportOps>(_c: *mut bindings::iscsi_cls_conn, _flag: c_int) {
    T::foreign_object(Op::StopConn);
}

extern "C" fn destroy_conn<T: TransportOps>(_c: *mut bindings::iscsi_cls_conn) {
    T::foreign_object(Op::DestroyConn);
}

extern "C" fn set_param<T: TransportOps>(
    _c: *mut bindings::iscsi_cls_conn,
    _param: bindings::iscsi_param::Type,
    _buf: *mut c_char,
    _len: c_int,
) -> c_int {
    T::foreign_object(Op::SetParam).to_errno()
}

extern "C" fn send_pdu<T: TransportOps>(
    _c: *mut bindings::iscsi_cls_conn,
    _hdr: *mut bindings::iscsi_hdr,
    _data: *mut c_char,
    _size: u32,
) -> c_int {
    T::foreign_object(Op::SendPdu).to_errno()
}

extern "C" fn get_stats<T: TransportOps>(
    _c: *mut bindings::iscsi_cls_conn,
    _stats: *mut bindings::iscsi_stats,
) {
    T::foreign_object(Op::GetStats);
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
