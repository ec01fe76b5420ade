// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! A libiscsi connection as the driver holds it ([`IscsiConn`]): its session's parameters
//! and SCSI host shape, the binding to the driver's connection, PDU delivery and failure
//! reports.

use super::*;

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
    pub(super) cls: NonNull<bindings::iscsi_cls_conn>,
    pub(super) conn: NonNull<bindings::iscsi_conn>,
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
    pub(super) fn session(&self) -> *mut bindings::iscsi_session {
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
