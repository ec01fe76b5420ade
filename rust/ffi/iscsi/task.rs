// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! Task callbacks (`alloc_pdu`, `init_task`, `xmit_task`, `cleanup_task`) and the task as the
//! driver sees it: [`Task`] during a callback, [`TaskHandle`] to release a reference later,
//! [`ScsiData`] for a SCSI command's buffer.

use super::*;

/// Points the task's header at the BHS slot of its transport area.
///
/// # Safety
///
/// Called by libiscsi under the session's frwd_lock with `task` a live `iscsi_task` of a
/// session of this transport, whose `dd_data` has `TASK_DD_SIZE` bytes.
pub(super) unsafe extern "C" fn alloc_pdu(task: *mut bindings::iscsi_task, _opcode: u8) -> c_int {
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
pub(super) unsafe extern "C" fn init_task<T: TransportOps>(
    task: *mut bindings::iscsi_task,
) -> c_int {
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
pub(super) unsafe extern "C" fn xmit_task<T: TransportOps>(
    task: *mut bindings::iscsi_task,
) -> c_int {
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
pub(super) unsafe extern "C" fn cleanup_task<T: TransportOps>(task: *mut bindings::iscsi_task) {
    // SAFETY: libiscsi calls this under back_lock with a live task. A connection that was
    // stopped and unbound already released every task resource, so `None` is fine.
    let Some(conn) = (unsafe { task_conn::<T::Conn>(task) }) else {
        return;
    };
    // SAFETY: As above.
    let mut t = unsafe { Task::new(task) };
    T::cleanup_task(&conn, &mut t);
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
    pub(super) unsafe fn new(ptr: *mut bindings::iscsi_task) -> Self {
        Task {
            // SAFETY: libiscsi never passes NULL.
            ptr: unsafe { NonNull::new_unchecked(ptr) },
            _p: PhantomData,
        }
    }

    pub(super) fn t(&self) -> &bindings::iscsi_task {
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

    pub(super) fn dd(&self) -> *mut u8 {
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
                is_read: (*sc).sc_data_direction == crate::ffi::compat::DMA_FROM_DEVICE,
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
