// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! Session and connection callbacks: create and destroy a session (its SCSI host) and a
//! connection, bind, start, stop and unbind a connection, parameters and statistics.

use super::*;

/// # Safety
///
/// Called by `scsi_transport_iscsi` for `ISCSI_UEVENT_CREATE_BOUND_SESSION` /
/// `ISCSI_UEVENT_CREATE_SESSION`: `ep` is NULL or an `iscsi_endpoint` (of any transport) that
/// the transport class keeps live for the call.
pub(super) unsafe extern "C" fn create_session<T: TransportOps>(
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
pub(super) unsafe extern "C" fn destroy_session<T: TransportOps>(
    s: *mut bindings::iscsi_cls_session,
) {
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
pub(super) unsafe extern "C" fn create_conn<T: TransportOps>(
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
pub(super) unsafe extern "C" fn bind_conn<T: TransportOps>(
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
pub(super) unsafe extern "C" fn unbind_conn<T: TransportOps>(
    c: *mut bindings::iscsi_cls_conn,
    active: bool,
) {
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
pub(super) unsafe extern "C" fn start_conn<T: TransportOps>(
    c: *mut bindings::iscsi_cls_conn,
) -> c_int {
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
pub(super) unsafe extern "C" fn stop_conn<T: TransportOps>(
    c: *mut bindings::iscsi_cls_conn,
    flag: c_int,
) {
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
pub(super) unsafe extern "C" fn destroy_conn<T: TransportOps>(c: *mut bindings::iscsi_cls_conn) {
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
        // As the class's own stop path does when iscsid cannot (`iscsi_if_stop_conn`): the
        // endpoint still bound is disconnected first, under `ep_mutex`. The class never
        // clears `ep->conn`, so an endpoint left behind would point at the connection freed
        // below, and a later EP_DISCONNECT would lock that freed connection's mutex (seen:
        // KASAN slab-use-after-free in `iscsi_if_ep_disconnect`). Disconnecting destroys the
        // endpoint: a later EP_DISCONNECT finds no endpoint.
        // SAFETY: `c` is live; its `ep_mutex` was initialised with it. The class holds no
        // `ep_mutex` while calling `destroy_conn` (it flushed the cleanup work that takes it).
        let ep = unsafe {
            bindings::iser_rs_mutex_lock(&raw mut (*c).ep_mutex);
            core::mem::replace(&mut (*c).ep, core::ptr::null_mut())
        };
        if !ep.is_null() {
            // SAFETY: What `iscsi_ep_disconnect` does with a bound endpoint: unbind, then
            // disconnect (ours: destroys the endpoint, so the class never calls it again).
            unsafe {
                unbind_conn::<T>(c, true);
                super::transport::ep_disconnect::<T>(ep);
            }
        }
        // SAFETY: Locked above.
        unsafe { bindings::mutex_unlock(&raw mut (*c).ep_mutex) };
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
pub(super) unsafe extern "C" fn set_param<T: TransportOps>(
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
pub(super) unsafe extern "C" fn get_stats<T: TransportOps>(
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
