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
//!
//! A file per C object: [`transport`] (the `iscsi_transport` registration and the endpoint
//! callbacks), [`session`] (session and connection callbacks), [`conn`] (`iscsi_conn` as the
//! driver holds it) and [`task`] (`iscsi_task`: its callbacks and accessors). This file holds
//! the driver-facing API: [`TransportOps`] and the types its methods take.

use super::bindings;
use crate::ffi::rdma::{DeviceRef, DmaDir, HdrMapping, MappedSg, SysfsBuf};
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

mod conn;
mod session;
mod task;
mod transport;

pub(crate) use conn::{IscsiConn, SessionInfo};
#[cfg(iser_test_faults)]
pub(crate) use session::STOP_CONN_TERM;
use session::{
    bind_conn, create_conn, create_session, destroy_conn, destroy_session, get_stats, set_param,
    start_conn, stop_conn, unbind_conn,
};
use task::{alloc_pdu, cleanup_task, init_task, xmit_task};
pub(crate) use task::{DataDir, Task, TaskHandle};
pub(crate) use transport::Registration;
use transport::{ep_conn, is_ours, SHT, TEMPLATE, TT};

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
