// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! RDMA wrappers: RDMA CM ids, protection domains, CQs from the device pool, RC QPs, fast
//! registration MRs, DMA mappings and work requests.
//!
//! The driver above sees owned handles whose `Drop` releases the C object, borrowed device
//! handles, and a completion trait. Lifetime rules the C API imposes and that the types
//! cannot express alone are written down as `# Invariants` and are upheld by the driver's
//! connection teardown order (drain the QP before anything a work request references is
//! freed; destroy the QP before its CQ; free every per-device object before the
//! DEVICE_REMOVAL handler returns).

use super::bindings;
use core::ffi::c_void;
use core::net::SocketAddr;
use core::ptr::NonNull;
use kernel::error::{code::*, to_result};
use kernel::ffi::c_int;
use kernel::prelude::*;
use kernel::sync::Arc;
use kernel::types::Opaque;

/// What the peer may do through a fast registration: one direction only, so that a target
/// can neither write into the buffer of a SCSI WRITE nor read the buffer of a SCSI READ.
/// (The C driver, SRP and NVMe/RDMA hosts grant both to every registration.)
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum RemoteAccess {
    /// The peer reads the memory with RDMA READ (the data of a SCSI WRITE).
    Read,
    /// The peer writes the memory with RDMA WRITE (the data of a SCSI READ); remote write
    /// needs local write too (`ib_check_mr_access()`).
    Write,
}

impl RemoteAccess {
    /// The `ib_access_flags` of a registration for this direction.
    fn flags(self) -> c_int {
        let f = match self {
            Self::Read => bindings::ib_access_flags_IB_ACCESS_REMOTE_READ,
            Self::Write => {
                bindings::ib_access_flags_IB_ACCESS_LOCAL_WRITE
                    | bindings::ib_access_flags_IB_ACCESS_REMOTE_WRITE
            }
        };
        f as c_int
    }
}

/// Registration page size (`SZ_4K`, iser-spec.md 5.3).
pub(crate) const REG_PAGE_SIZE: u32 = 4096;
/// Longest receive chain [`RecvQp::post_recv_many`] takes.
pub(crate) const MAX_RECV_CHAIN: usize = 16;

/// Converts an `ERR_PTR`-or-valid pointer into a `Result`.
fn from_err_ptr<T>(ptr: *mut T) -> Result<NonNull<T>> {
    let v = ptr as isize;
    if (-4095..0).contains(&v) {
        return Err(Error::from_errno(v as c_int));
    }
    NonNull::new(ptr).ok_or(ENOMEM)
}

/// What the driver needs to know about an RDMA device.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DeviceCaps {
    /// `IB_DEVICE_MEM_MGT_EXTENSIONS`: fast registration work requests.
    pub(crate) mem_mgt_extensions: bool,
    /// `IBK_SG_GAPS_REG`: MRs can map SG lists with gaps.
    pub(crate) sg_gaps_reg: bool,
    /// `IBK_INTEGRITY_HANDOVER`: T10-PI offload.
    pub(crate) integrity_handover: bool,
    /// Largest work queue.
    pub(crate) max_qp_wr: u32,
    /// Outstanding RDMA reads/atomics as responder.
    pub(crate) max_qp_rd_atom: u32,
    /// Pages per fast-registration MR.
    pub(crate) max_fast_reg_page_list_len: u32,
}

/// A borrowed RDMA device.
///
/// # Invariants
///
/// `ptr` points to a registered `struct ib_device`. Holders keep it only while an RDMA CM id
/// bound to the device exists or until the device's DEVICE_REMOVAL event was handled.
#[derive(Clone, Copy)]
pub(crate) struct DeviceRef {
    ptr: NonNull<bindings::ib_device>,
}

// SAFETY: An `ib_device` is usable from any thread; the handle is only an address.
unsafe impl Send for DeviceRef {}
// SAFETY: As above.
unsafe impl Sync for DeviceRef {}

impl PartialEq for DeviceRef {
    fn eq(&self, other: &Self) -> bool {
        self.ptr == other.ptr
    }
}

impl DeviceRef {
    fn raw(&self) -> *mut bindings::ib_device {
        self.ptr.as_ptr()
    }

    /// Whether the device takes kernel virtual addresses instead of DMA addresses (soft
    /// RDMA: rxe, siw), as `ib_uses_virt_dma()` decides; then the `ib_dma_sync_*` helpers do
    /// nothing and the data path does not call them (one out-of-line call per buffer saved).
    fn virt_dma(&self) -> bool {
        // SAFETY: `ptr` is valid by the type invariant; `dma_device` is set at registration.
        cfg!(CONFIG_INFINIBAND_VIRT_DMA) && unsafe { (*self.raw()).dma_device.is_null() }
    }

    /// The device's capabilities.
    pub(crate) fn caps(&self) -> DeviceCaps {
        // SAFETY: `ptr` is valid by the type invariant; `attrs` is read-only after
        // registration.
        let attrs = unsafe { &(*self.raw()).attrs };
        DeviceCaps {
            mem_mgt_extensions: attrs.device_cap_flags
                & wide(bindings::ib_device_cap_flags_IB_DEVICE_MEM_MGT_EXTENSIONS)
                != 0,
            sg_gaps_reg: attrs.kernel_cap_flags
                & wide(bindings::ib_kernel_cap_flags_IBK_SG_GAPS_REG)
                != 0,
            integrity_handover: attrs.kernel_cap_flags
                & wide(bindings::ib_kernel_cap_flags_IBK_INTEGRITY_HANDOVER)
                != 0,
            max_qp_wr: nonneg(attrs.max_qp_wr),
            max_qp_rd_atom: nonneg(attrs.max_qp_rd_atom),
            max_fast_reg_page_list_len: attrs.max_fast_reg_page_list_len,
        }
    }

    /// The device name (`rxe0`, `siw0`, `mlx5_0`, ...).
    pub(crate) fn name(&self) -> &str {
        // SAFETY: `ptr` is valid; `dev_name` of a registered device is a NUL-terminated
        // string that lives as long as the device.
        unsafe { c_text(bindings::iser_rs_ib_device_name(self.raw())) }
    }

    /// The parent (bus) device, for `iscsi_host_add` (DMA limits propagate from it).
    pub(crate) fn dma_parent(&self) -> *mut bindings::device {
        // SAFETY: `ptr` is valid; the parent is set at registration.
        unsafe { bindings::iser_rs_ib_device_parent(self.raw()) }
    }

    /// Maps `len` bytes at `addr` for DMA; returns the device address.
    ///
    /// # Safety
    ///
    /// `addr..addr + len` is memory the caller owns and keeps alive, unmoved, until it
    /// passes the result to [`DeviceRef::unmap_single`].
    unsafe fn map_single(&self, addr: *mut u8, len: usize, dir: DmaDir) -> Result<u64> {
        // SAFETY: `ptr` is valid; the memory stays alive until unmapped (function contract).
        let dma = unsafe { bindings::ib_dma_map_single(self.raw(), addr.cast(), len, dir.raw()) };
        // SAFETY: `ptr` is valid.
        if unsafe { bindings::ib_dma_mapping_error(self.raw(), dma) } != 0 {
            return Err(ENOMEM);
        }
        Ok(dma)
    }

    /// Unmaps a mapping made by [`DeviceRef::map_single`].
    ///
    /// # Safety
    ///
    /// `dma` was returned by `map_single` on this device with the same `len` and `dir`, is
    /// not unmapped yet, and no posted work request uses it any more.
    unsafe fn unmap_single(&self, dma: u64, len: usize, dir: DmaDir) {
        // SAFETY: Per the function's contract.
        unsafe { bindings::ib_dma_unmap_single(self.raw(), dma, len, dir.raw()) }
    }

    /// `ib_dma_sync_single_for_cpu()` of `len` bytes at `dma` (a range inside a mapping made
    /// with `map_single` in `dir`); nothing to do (and no call) on a virt-DMA device.
    ///
    /// # Safety
    ///
    /// `dma..dma + len` lies inside a live mapping made by `map_single` on this device in
    /// direction `dir`.
    unsafe fn sync_for_cpu(&self, dma: u64, len: usize, dir: DmaDir) {
        if self.virt_dma() {
            return;
        }
        // SAFETY: Per the function's contract.
        unsafe { bindings::ib_dma_sync_single_for_cpu(self.raw(), dma, len, dir.raw()) }
    }

    /// `ib_dma_sync_single_for_device()`; as [`DeviceRef::sync_for_cpu`].
    ///
    /// # Safety
    ///
    /// As for [`DeviceRef::sync_for_cpu`].
    unsafe fn sync_for_device(&self, dma: u64, len: usize, dir: DmaDir) {
        if self.virt_dma() {
            return;
        }
        // SAFETY: Per the function's contract.
        unsafe { bindings::ib_dma_sync_single_for_device(self.raw(), dma, len, dir.raw()) }
    }
}

/// DMA direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DmaDir {
    /// Memory to device.
    ToDevice,
    /// Device to memory.
    FromDevice,
}

impl DmaDir {
    fn raw(self) -> bindings::dma_data_direction {
        match self {
            DmaDir::ToDevice => super::compat::DMA_TO_DEVICE,
            DmaDir::FromDevice => super::compat::DMA_FROM_DEVICE,
        }
    }
}

/// A kmalloc'ed buffer mapped for DMA for its whole life.
///
/// # Invariants
///
/// `buf` is mapped at `dma` in direction `dir` on `dev` until `drop`; the owner drops it
/// before the device goes away (see the module documentation).
pub(crate) struct DmaBuf {
    buf: KVec<u8>,
    dma: u64,
    dir: DmaDir,
    dev: DeviceRef,
}

impl DmaBuf {
    /// Allocates `len` zeroed bytes and maps them.
    pub(crate) fn new(dev: DeviceRef, len: usize, dir: DmaDir) -> Result<Self> {
        let mut buf = KVec::from_elem(0u8, len, GFP_KERNEL)?;
        // SAFETY: `buf` is owned by the `DmaBuf`, never reallocated, and unmapped in `drop`
        // before it is freed.
        let dma = unsafe { dev.map_single(buf.as_mut_ptr(), len, dir)? };
        Ok(DmaBuf { buf, dma, dir, dev })
    }

    /// Device address of byte `off`.
    pub(crate) fn dma(&self, off: usize) -> u64 {
        self.dma + off as u64
    }

    /// Makes `len` bytes at `off` visible to the CPU after the device wrote them.
    pub(crate) fn sync_for_cpu(&self, off: usize, len: usize) {
        let len = len.min(self.buf.len().saturating_sub(off));
        // SAFETY: The range is clamped to the mapping, which is live (type invariant).
        unsafe { self.dev.sync_for_cpu(self.dma + off as u64, len, self.dir) };
    }

    /// Hands `len` bytes at `off` back to the device.
    pub(crate) fn sync_for_device(&self, off: usize, len: usize) {
        let len = len.min(self.buf.len().saturating_sub(off));
        // SAFETY: The range is clamped to the mapping, which is live (type invariant).
        unsafe {
            self.dev
                .sync_for_device(self.dma + off as u64, len, self.dir)
        };
    }

    /// Copies `dst.len()` bytes at `off` out of the buffer (call `sync_for_cpu` first);
    /// `None`, copying nothing, if the range is not inside the buffer.
    ///
    /// The device may be writing other parts of a receive buffer meanwhile (the rest of a
    /// receive ring), so no Rust reference to the buffer's memory is ever formed: the bytes
    /// are copied with a raw read.
    pub(crate) fn read_into(&self, off: usize, dst: &mut [u8]) -> Option<()> {
        let src = self.range(off, dst.len())?;
        // SAFETY: `src..src + dst.len()` is inside the live allocation (`range`), `dst` is a
        // distinct, exclusively borrowed buffer of that length, and a raw copy forms no
        // reference to the device-written memory.
        unsafe { core::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), dst.len()) };
        Some(())
    }

    /// Copies `len` bytes at `off` into the start of `dst` and returns them, initialised; as
    /// [`Self::read_into`] for a destination the caller leaves uninitialised (the receive
    /// path copies only what arrived). `None` if the range is not inside the buffer or
    /// `len > N`.
    pub(crate) fn read_uninit<'b, const N: usize>(
        &self,
        off: usize,
        len: usize,
        dst: &'b mut core::mem::MaybeUninit<[u8; N]>,
    ) -> Option<&'b mut [u8]> {
        if len > N {
            return None;
        }
        let src = self.range(off, len)?;
        let d = dst.as_mut_ptr().cast::<u8>();
        // SAFETY: `src..src + len` is inside the live allocation (`range`); `d` points to `N
        // >= len` writable bytes that `dst` borrows exclusively; a raw copy forms no
        // reference to the device-written memory. Afterwards the first `len` bytes of `dst`
        // are initialised, and the returned slice borrows `dst` for `'b`.
        unsafe {
            core::ptr::copy_nonoverlapping(src, d, len);
            Some(core::slice::from_raw_parts_mut(d, len))
        }
    }

    /// The address of byte `off`, if `off..off + len` is inside the buffer.
    fn range(&self, off: usize, len: usize) -> Option<*const u8> {
        let end = off.checked_add(len)?;
        if end > self.buf.len() {
            return None;
        }
        // `as_ptr` reads the vector's pointer without forming a reference to its contents.
        Some(self.buf.as_ptr().wrapping_add(off))
    }

    /// Mutable CPU view of a buffer the device only reads (`DmaDir::ToDevice`; call
    /// `sync_for_device` afterwards). Empty for a `FromDevice` buffer, which the device
    /// writes: read those with [`Self::read_into`].
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        if self.dir != DmaDir::ToDevice {
            return &mut [];
        }
        &mut self.buf
    }
}

impl Drop for DmaBuf {
    fn drop(&mut self) {
        // SAFETY: Mapped in `new` with this length and direction (type invariant); the owner
        // drops the buffer only after the QP that used it was drained.
        unsafe { self.dev.unmap_single(self.dma, self.buf.len(), self.dir) };
    }
}

/// A DMA mapping (to the device) of a task's header area, which libiscsi keeps for the
/// session's lifetime.
///
/// # Invariants
///
/// `len` bytes at `cpu` are mapped at `dma` on `dev` until `drop`; the memory outlives the
/// mapping (owners drop it when the connection is torn down, before the session is
/// destroyed), so `cpu..cpu + len` is readable while the mapping exists.
pub(crate) struct HdrMapping {
    cpu: *const u8,
    dma: u64,
    len: usize,
    dev: DeviceRef,
}

// SAFETY: `cpu` is only read, by a provider copying it during `Qp::post_send` while a shared
// borrow of the mapping is held; the memory is not tied to a thread.
unsafe impl Send for HdrMapping {}
// SAFETY: As above: shared access never writes through `cpu`.
unsafe impl Sync for HdrMapping {}

impl HdrMapping {
    /// Maps `len` bytes at `addr` to the device.
    ///
    /// # Safety
    ///
    /// `addr..addr + len` stays valid and unmoved until the returned mapping is dropped.
    pub(super) unsafe fn new(dev: DeviceRef, addr: *mut u8, len: usize) -> Result<Self> {
        // SAFETY: Per the function's contract.
        let dma = unsafe { dev.map_single(addr, len, DmaDir::ToDevice)? };
        Ok(HdrMapping {
            cpu: addr.cast_const(),
            dma,
            len,
            dev,
        })
    }

    /// The first `len` bytes, for a SEND whose provider copies them at post time
    /// (`IB_SEND_INLINE`: no DMA read of the header by the device, and for soft-RoCE no memory
    /// region lookup). `None` if `len` exceeds the mapping.
    pub(crate) fn inline(&self, len: usize) -> Option<InlineSge<'_>> {
        (len <= self.len).then_some(InlineSge {
            addr: self.cpu,
            len: u32::try_from(len).ok()?,
            _mapping: core::marker::PhantomData,
        })
    }

    /// Device address.
    pub(crate) fn dma(&self) -> u64 {
        self.dma
    }

    /// Hands the CPU-written bytes to the device before a post.
    pub(crate) fn sync_for_device(&self) {
        // SAFETY: The range is the whole mapping, which is live (type invariant).
        unsafe {
            self.dev
                .sync_for_device(self.dma, self.len, DmaDir::ToDevice)
        };
    }
}

impl Drop for HdrMapping {
    fn drop(&mut self) {
        // SAFETY: Mapped in `new` with this length and direction (type invariant); dropped
        // only after the QP that used it was drained.
        unsafe { self.dev.unmap_single(self.dma, self.len, DmaDir::ToDevice) };
    }
}

/// A protection domain.
///
/// # Invariants
///
/// `ptr` was returned by a successful `ib_alloc_pd` and is deallocated in `drop`.
pub(crate) struct Pd {
    ptr: NonNull<bindings::ib_pd>,
}

// SAFETY: A PD is usable from any thread.
unsafe impl Send for Pd {}
// SAFETY: Shared access only reads immutable fields.
unsafe impl Sync for Pd {}

impl Pd {
    /// Allocates a PD; `global_rkey` asks for `IB_PD_UNSAFE_GLOBAL_RKEY`.
    pub(crate) fn new(dev: DeviceRef, global_rkey: bool) -> Result<Self> {
        let flags = if global_rkey {
            bindings::ib_pd_flags_IB_PD_UNSAFE_GLOBAL_RKEY
        } else {
            0
        };
        // SAFETY: `dev` is a registered device.
        let pd = unsafe { bindings::iser_rs_ib_alloc_pd(dev.raw(), flags) };
        Ok(Pd {
            ptr: from_err_ptr(pd)?,
        })
    }

    /// The local DMA lkey of this PD.
    pub(crate) fn local_dma_lkey(&self) -> u32 {
        // SAFETY: `ptr` is valid; the field is immutable after allocation.
        unsafe { (*self.ptr.as_ptr()).local_dma_lkey }
    }

    /// The PD's global rkey, if it was allocated with one.
    pub(crate) fn global_rkey(&self) -> Option<u32> {
        // SAFETY: As above.
        let pd = unsafe { &*self.ptr.as_ptr() };
        (pd.flags & bindings::ib_pd_flags_IB_PD_UNSAFE_GLOBAL_RKEY != 0)
            .then_some(pd.unsafe_global_rkey)
    }
}

impl Drop for Pd {
    fn drop(&mut self) {
        // SAFETY: By the invariant; every MR and QP of this PD is gone (owners drop them
        // first).
        unsafe { bindings::ib_dealloc_pd(self.ptr.as_ptr()) }
    }
}

/// An asynchronous event from a device, for logging.
pub(crate) struct AsyncEvent<'a> {
    /// Device name.
    pub(crate) device: &'a str,
    /// Event name (`ib_event_msg`).
    pub(crate) name: &'a str,
    /// Event number.
    pub(crate) event: u32,
    /// Port number (meaningful for port events only).
    pub(crate) port: u32,
}

/// A registered device async event handler calling `F`.
///
/// # Invariants
///
/// `h` is registered with `ib_register_event_handler` until `drop`.
pub(crate) struct EventHandler {
    h: Pin<KBox<Opaque<bindings::ib_event_handler>>>,
}

// SAFETY: Registration state is owned; unregistering from any thread is allowed.
unsafe impl Send for EventHandler {}
// SAFETY: No shared access.
unsafe impl Sync for EventHandler {}

/// The callback an [`EventHandler`] runs (any context the core chooses; it only logs).
pub(crate) type EventFn = fn(&AsyncEvent<'_>);

impl EventHandler {
    /// Registers a handler for `dev` that calls `f`.
    pub(crate) fn new(dev: DeviceRef, f: EventFn) -> Result<Self> {
        let h = KBox::pin(
            Opaque::new(bindings::ib_event_handler {
                device: dev.raw(),
                handler: Some(event_trampoline),
                ..Default::default()
            }),
            GFP_KERNEL,
        )?;
        EVENT_FN.store(f as *mut (), core::sync::atomic::Ordering::Release);
        // SAFETY: `h` is initialised and stays at this address until unregistered in `drop`.
        unsafe { bindings::ib_register_event_handler(h.get()) };
        Ok(EventHandler { h })
    }
}

impl Drop for EventHandler {
    fn drop(&mut self) {
        // SAFETY: Registered by the invariant.
        unsafe { bindings::ib_unregister_event_handler(self.h.get()) };
    }
}

/// The logger every handler calls (one driver, one logger).
static EVENT_FN: core::sync::atomic::AtomicPtr<()> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

/// # Safety
///
/// Called by the RDMA core for a handler registered by [`EventHandler::new`]: `h` is that
/// registered `ib_event_handler` (its device is registered) and `ev` a valid `ib_event` for
/// the call.
unsafe extern "C" fn event_trampoline(
    h: *mut bindings::ib_event_handler,
    ev: *mut bindings::ib_event,
) {
    let f = EVENT_FN.load(core::sync::atomic::Ordering::Acquire);
    if f.is_null() {
        return;
    }
    // SAFETY: Only `EventFn` values are stored in `EVENT_FN`.
    let f: EventFn = unsafe { core::mem::transmute::<*mut (), EventFn>(f) };
    // SAFETY: The core passes a registered handler and a valid event.
    let (dev, event, port) = unsafe { ((*h).device, (*ev).event, (*ev).element.port_num) };
    // SAFETY: `ib_event_msg` returns a static string; the device is registered.
    let (name, device) = unsafe {
        (
            c_text(bindings::ib_event_msg(event)),
            c_text(bindings::iser_rs_ib_device_name(dev)),
        )
    };
    f(&AsyncEvent {
        device,
        name,
        event,
        port,
    });
}

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
    ptr: NonNull<bindings::rdma_cm_id>,
    ctx: *const T,
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

/// Queue sizes of a QP.
#[derive(Clone, Copy, Debug)]
pub(crate) struct QpCaps {
    /// Send queue depth.
    pub(crate) max_send_wr: u32,
    /// Receive queue depth.
    pub(crate) max_recv_wr: u32,
    /// Gather entries per send.
    pub(crate) max_send_sge: u32,
    /// Scatter entries per receive.
    pub(crate) max_recv_sge: u32,
    /// Bytes of inline data to ask for (0: none). If the provider refuses the QP with it,
    /// the QP is created without; [`Qp::max_inline`] is what was granted.
    pub(crate) max_inline_data: u32,
}

/// A completion queue from the device's CQ pool, polled in softirq context.
///
/// # Invariants
///
/// `ptr` came from `ib_cq_pool_get(.., nr_cqe, ..)` and is put back in `drop`.
pub(crate) struct Cq {
    ptr: NonNull<bindings::ib_cq>,
    nr_cqe: u32,
}

// SAFETY: CQs are used from any context by the core.
unsafe impl Send for Cq {}
// SAFETY: No shared mutable access from Rust.
unsafe impl Sync for Cq {}

impl Cq {
    /// Takes a CQ with room for `nr_cqe` entries from `dev`'s pool.
    pub(crate) fn new(dev: DeviceRef, nr_cqe: u32) -> Result<Self> {
        // SAFETY: `dev` is registered.
        let cq = unsafe {
            bindings::ib_cq_pool_get(
                dev.raw(),
                nr_cqe,
                -1,
                bindings::ib_poll_context_IB_POLL_SOFTIRQ,
            )
        };
        Ok(Cq {
            ptr: from_err_ptr(cq)?,
            nr_cqe,
        })
    }
}

impl Drop for Cq {
    fn drop(&mut self) {
        // SAFETY: By the invariant; the QP using it was destroyed first (`Qp` owns the CQ).
        unsafe { bindings::ib_cq_pool_put(self.ptr.as_ptr(), self.nr_cqe) }
    }
}

/// # Safety
///
/// Called by the RDMA core for a QP created by [`CmId::create_qp`] with `ev` a valid `ib_event`
/// for the call.
unsafe extern "C" fn qp_event_trampoline(ev: *mut bindings::ib_event, _ctx: *mut c_void) {
    // SAFETY: The core passes a valid event; `ib_event_msg` returns a static string.
    let (event, name) = unsafe {
        let e = (*ev).event;
        (e, c_text(bindings::ib_event_msg(e)))
    };
    iser_err!("qp event {} ({})\n", name, event);
}

/// The receiver of a QP's work completions (softirq context).
pub(crate) trait CqHandler: Send + Sync + Sized {
    /// One completion.
    fn complete(&self, wc: &Wc);
}

/// A work completion, decoded.
pub(crate) struct Wc {
    /// Address of the `ib_cqe` the work request carried (see [`CqeTable::index_of`]).
    pub(crate) cqe: usize,
    /// `IB_WC_SUCCESS`.
    pub(crate) ok: bool,
    /// `IB_WC_WR_FLUSH_ERR`.
    pub(crate) flushed: bool,
    /// Raw status.
    pub(crate) status: u32,
    /// Bytes received.
    pub(crate) byte_len: u32,
    /// Vendor error code.
    pub(crate) vendor_err: u32,
    /// The rkey the peer invalidated with Send-with-Invalidate.
    pub(crate) invalidated_rkey: Option<u32>,
}

impl Wc {
    /// Human-readable status.
    pub(crate) fn status_msg(&self) -> &'static str {
        // SAFETY: `ib_wc_status_msg` returns a static string for any value.
        unsafe { c_text(bindings::ib_wc_status_msg(self.status)) }
    }
}

/// # Safety
///
/// Called by the RDMA core (CQ polling, softirq) with `wc` a valid completion for the call
/// whose `wr_cqe` is an entry of a [`CqeTable<H>`], so its `qp` was created by
/// `CmId::create_qp::<H>` and its `qp_context` is the live `Arc<H>` reference the `Qp<H>`
/// owns (the QP is destroyed only after the drain that makes a completion the last one).
unsafe extern "C" fn cqe_done<H: CqHandler>(_cq: *mut bindings::ib_cq, wc: *mut bindings::ib_wc) {
    // SAFETY: The core passes a valid completion whose `qp` is one of ours: only QPs created
    // by `CmId::create_qp::<H>` use CQEs of a `CqeTable<H>`.
    let wc = unsafe { &*wc };
    // SAFETY: As above; `qp_context` holds the reference the `Qp<H>` owns, alive until the
    // QP is destroyed, which happens after the drain that makes this the last completion.
    let h = unsafe { &*((*wc.qp).qp_context as *const H) };
    let ok = wc.status == bindings::ib_wc_status_IB_WC_SUCCESS;
    let inv = wc.wc_flags & bindings::ib_wc_flags_IB_WC_WITH_INVALIDATE as c_int != 0;
    let w = Wc {
        // SAFETY: Completions of CQ-API work requests carry `wr_cqe`.
        cqe: unsafe { wc.__bindgen_anon_1.wr_cqe } as usize,
        ok,
        flushed: wc.status == bindings::ib_wc_status_IB_WC_WR_FLUSH_ERR,
        status: wc.status,
        byte_len: wc.byte_len,
        vendor_err: wc.vendor_err,
        // SAFETY: Every bit pattern is a valid `u32`; the value means the invalidated rkey
        // when IB_WC_WITH_INVALIDATE is set, and is ignored otherwise.
        invalidated_rkey: (ok && inv).then_some(unsafe { wc.ex.invalidate_rkey }),
    };
    h.complete(&w);
}

/// An array of `ib_cqe`s that dispatch to `H`; a work request carries one of them and its
/// completion is recognised by address.
pub(crate) struct CqeTable<H: CqHandler> {
    cqes: KVec<Opaque<bindings::ib_cqe>>,
    _h: core::marker::PhantomData<H>,
}

// Moving the table moves only the vector's pointer, never the `ib_cqe`s (heap), whose
// addresses the posted work requests hold. (Without this, `Opaque` and a `!Unpin` `H` would
// make the data path `!Unpin`, which the 7.x lock guards require for `DerefMut`.)
impl<H: CqHandler> Unpin for CqeTable<H> {}

// SAFETY: The entries are written once at creation and only read afterwards.
unsafe impl<H: CqHandler> Send for CqeTable<H> {}
// SAFETY: As above.
unsafe impl<H: CqHandler> Sync for CqeTable<H> {}

/// One entry of a [`CqeTable`], to put in a work request.
#[derive(Clone, Copy)]
pub(crate) struct CqeRef(*mut bindings::ib_cqe);

impl<H: CqHandler> CqeTable<H> {
    /// `n` entries.
    pub(crate) fn new(n: usize) -> Result<Self> {
        let mut cqes = KVec::with_capacity(n, GFP_KERNEL)?;
        for _ in 0..n {
            cqes.push(
                Opaque::new(bindings::ib_cqe {
                    done: Some(cqe_done::<H>),
                }),
                GFP_KERNEL,
            )?;
        }
        Ok(CqeTable {
            cqes,
            _h: core::marker::PhantomData,
        })
    }

    /// Entry `i` (panics if out of range: callers index with their own bounds).
    pub(crate) fn get(&self, i: usize) -> CqeRef {
        CqeRef(self.cqes[i].get())
    }

    /// Which entry a completion's `cqe` address is, if it is one of ours.
    pub(crate) fn index_of(&self, addr: usize) -> Option<usize> {
        let base = self.cqes.as_ptr() as usize;
        let sz = core::mem::size_of::<Opaque<bindings::ib_cqe>>();
        let off = addr.checked_sub(base)?;
        (off % sz == 0 && off / sz < self.cqes.len()).then_some(off / sz)
    }
}

/// A gather/scatter element.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Sge {
    /// Device address.
    pub(crate) addr: u64,
    /// Length in bytes.
    pub(crate) len: u32,
    /// Local key.
    pub(crate) lkey: u32,
}

impl Sge {
    fn raw(&self) -> bindings::ib_sge {
        bindings::ib_sge {
            addr: self.addr,
            length: self.len,
            lkey: self.lkey,
        }
    }
}

/// Bytes a provider copies into the work request at post time (`IB_SEND_INLINE`).
///
/// # Invariants
///
/// `addr..addr + len` is readable for `'a` (it lies inside the [`HdrMapping`] it borrows).
pub(crate) struct InlineSge<'a> {
    addr: *const u8,
    len: u32,
    _mapping: core::marker::PhantomData<&'a HdrMapping>,
}

impl InlineSge<'_> {
    /// Length in bytes.
    pub(crate) fn len(&self) -> u32 {
        self.len
    }
}

/// What a SEND carries: DMA-mapped SGEs the device reads when it transmits, or a CPU buffer
/// the provider copies before `post_send` returns.
pub(crate) enum Gather<'a> {
    /// One or two SGEs (header, then data), read by the device.
    Mapped(&'a [Sge]),
    /// One buffer of at most [`Qp::max_inline`] bytes.
    Inline(InlineSge<'a>),
}

/// A fast registration to chain before a SEND.
pub(crate) struct RegReq<'a> {
    /// The MR, already mapped with [`Mr::map`].
    pub(crate) mr: &'a Mr,
    /// Invalidate the MR's previous key first (LOCAL_INV), with this rkey.
    pub(crate) invalidate: Option<u32>,
    /// CQE of the (unsignaled) registration WRs, reported only on error.
    pub(crate) cqe: CqeRef,
    /// What the peer may do through the new key.
    pub(crate) access: RemoteAccess,
}

/// An RC QP created on an RDMA CM id, with its CQ.
///
/// # Invariants
///
/// - `qp` is `id->qp`, created by `rdma_create_qp` with context `ctx` (an `Arc<H>` reference
///   owned by this value); it is destroyed only by [`Qp::destroy`].
/// - The `CmId` that owns `id` outlives this value (the owner destroys the QP first).
/// - `recv_out` is true while the [`RecvQp`] made with this QP may exist; the QP is then
///   never destroyed.
pub(crate) struct Qp<H: CqHandler> {
    qp: NonNull<bindings::ib_qp>,
    id: NonNull<bindings::rdma_cm_id>,
    cq: Cq,
    ctx: *const H,
    max_inline: u32,
    recv_out: bool,
}

/// The completion side's handle on a [`Qp`], held apart from it so that completion handlers
/// can give receive buffers back, and invalidate a registration before a response is
/// delivered, without the lock that guards the send side. There is one per QP;
/// [`Qp::drain`] takes it back, so nothing can be posted through it once draining started,
/// and a QP whose handle did not come back is never destroyed.
///
/// # Invariants
///
/// `qp` is a live QP: the [`Qp`] it came from is not destroyed while this value exists.
pub(crate) struct RecvQp {
    qp: NonNull<bindings::ib_qp>,
}

// SAFETY: Posting receives is thread-safe in the verbs API.
unsafe impl Send for RecvQp {}
// SAFETY: As above.
unsafe impl Sync for RecvQp {}

// SAFETY: Posting is thread-safe in the verbs API; destroy needs `self` by value.
unsafe impl<H: CqHandler> Send for Qp<H> {}
// SAFETY: As above.
unsafe impl<H: CqHandler> Sync for Qp<H> {}

impl<H: CqHandler> Qp<H> {
    /// Bytes a SEND may carry inline ([`Gather::Inline`]); 0 if the device gave none.
    pub(crate) fn max_inline(&self) -> u32 {
        self.max_inline
    }

    /// Posts [LOCAL_INV →] [REG_MR →] SEND in one chain. Only the SEND is signaled (when
    /// `signaled`); registration WRs complete silently unless they fail.
    pub(crate) fn post_send(
        &self,
        reg: Option<RegReq<'_>>,
        cqe: CqeRef,
        payload: Gather<'_>,
        signaled: bool,
    ) -> Result {
        let mut sg = [bindings::ib_sge::default(); 2];
        let mut flags = if signaled {
            bindings::ib_send_flags_IB_SEND_SIGNALED
        } else {
            0
        };
        let nsge = match payload {
            Gather::Mapped(sges) => {
                if sges.is_empty() || sges.len() > sg.len() {
                    return Err(EINVAL);
                }
                for (d, s) in sg.iter_mut().zip(sges) {
                    *d = s.raw();
                }
                sges.len()
            }
            Gather::Inline(b) => {
                if b.len > self.max_inline {
                    return Err(EINVAL);
                }
                // Inline SGEs carry a CPU address (providers read it with
                // `ib_virt_dma_to_ptr()` or a plain cast) and no key.
                sg[0] = bindings::ib_sge {
                    addr: b.addr as u64,
                    length: b.len,
                    lkey: 0,
                };
                flags |= bindings::ib_send_flags_IB_SEND_INLINE;
                1
            }
        };
        let mut send = bindings::ib_send_wr {
            sg_list: sg.as_mut_ptr(),
            num_sge: nsge as c_int,
            opcode: bindings::ib_wr_opcode_IB_WR_SEND,
            send_flags: flags as c_int,
            ..Default::default()
        };
        send.__bindgen_anon_1.wr_cqe = cqe.0;
        let mut regwr = bindings::ib_reg_wr::default();
        let mut inv = bindings::ib_send_wr::default();
        let mut head: *const bindings::ib_send_wr = &raw const send;
        if let Some(r) = reg {
            regwr.wr.next = &raw mut send;
            regwr.wr.opcode = bindings::ib_wr_opcode_IB_WR_REG_MR;
            regwr.wr.__bindgen_anon_1.wr_cqe = r.cqe.0;
            regwr.mr = r.mr.ptr.as_ptr();
            regwr.key = r.mr.rkey();
            regwr.access = r.access.flags();
            head = &raw const regwr.wr;
            if let Some(rkey) = r.invalidate {
                inv.next = &raw mut regwr.wr;
                inv.opcode = bindings::ib_wr_opcode_IB_WR_LOCAL_INV;
                inv.__bindgen_anon_1.wr_cqe = r.cqe.0;
                inv.ex.invalidate_rkey = rkey;
                head = &raw const inv;
            }
        }
        // SAFETY: `qp` is valid; the chain lives on this stack frame for the call; a mapped
        // SGE references memory the caller keeps mapped until the SEND completes or the QP
        // is drained; an inline one is readable for the call (`InlineSge` invariant), which
        // is when the provider copies it, and fits the QP's inline size (checked above).
        to_result(unsafe { self.provider_post_send(head) })
    }

    /// [`provider_post_send`] on this QP.
    ///
    /// # Safety
    ///
    /// `wr` heads a valid chain of send work requests for this QP.
    #[inline]
    unsafe fn provider_post_send(&self, wr: *const bindings::ib_send_wr) -> c_int {
        // SAFETY: `qp` is valid (invariant); the chain is the caller's.
        unsafe { provider_post_send(self.qp, wr) }
    }

    /// Moves the QP to the error state and waits until every posted work request has
    /// completed (process context; flush completions reach the handler). `rq` is this QP's
    /// receive handle, taken back first so that no receive can be posted behind the drain;
    /// without it (or with another QP's) the QP stays allocated for good.
    pub(crate) fn drain(&mut self, rq: Option<RecvQp>) {
        match rq {
            Some(r) if r.qp == self.qp => self.recv_out = false,
            Some(_) => iser_err!("draining a QP with another QP's receive handle\n"),
            None if self.recv_out => iser_err!("draining a QP without its receive handle\n"),
            None => {}
        }
        // SAFETY: `qp` is valid; the caller is in process context.
        unsafe { bindings::ib_drain_qp(self.qp.as_ptr()) }
    }

    /// Destroys the QP (after [`Qp::drain`]), returns its CQ to the pool and releases the
    /// handler reference.
    pub(crate) fn destroy(self) {
        if self.recv_out {
            // Its receive handle may still be used: leak the QP, its CQ and the handler
            // reference rather than free what a post could reach.
            iser_err!("QP not destroyed: its receive handle was not given back\n");
            core::mem::forget(self);
            return;
        }
        let (id, ctx) = (self.id, self.ctx);
        let cq = {
            let me = core::mem::ManuallyDrop::new(self);
            // SAFETY: `me` is never used or dropped again; `cq` is moved out once.
            unsafe { core::ptr::read(&me.cq) }
        };
        // SAFETY: The owning id is alive (invariant) and has this QP.
        unsafe { bindings::rdma_destroy_qp(id.as_ptr()) };
        drop(cq);
        // SAFETY: The QP is gone; no completion can reach the handler any more.
        drop(unsafe { Arc::from_raw(ctx) });
    }
}

impl RecvQp {
    /// Posts one receive of `sge` carrying `cqe`.
    pub(crate) fn post_recv(&self, cqe: CqeRef, sge: Sge) -> Result {
        let mut s = sge.raw();
        let mut wr = bindings::ib_recv_wr {
            sg_list: &raw mut s,
            num_sge: 1,
            ..Default::default()
        };
        wr.__bindgen_anon_1.wr_cqe = cqe.0;
        // SAFETY: `qp` is live (invariant); `wr` and `s` outlive the call (providers copy
        // them); the buffer behind `sge` is the caller's DMA-mapped memory that stays
        // mapped until the QP is drained.
        to_result(unsafe { self.provider_post_recv(&raw const wr) })
    }

    /// Posts a signalled LOCAL_INV of `rkey` carrying `cqe` on the send queue (posts to one
    /// queue from several contexts are serialised by the provider).
    pub(crate) fn post_local_inv(&self, cqe: CqeRef, rkey: u32) -> Result {
        let mut wr = bindings::ib_send_wr {
            opcode: bindings::ib_wr_opcode_IB_WR_LOCAL_INV,
            send_flags: bindings::ib_send_flags_IB_SEND_SIGNALED as c_int,
            ..Default::default()
        };
        wr.__bindgen_anon_1.wr_cqe = cqe.0;
        wr.ex.invalidate_rkey = rkey;
        // SAFETY: `qp` is live (invariant); `wr` is one work request without SGEs that lives
        // on this stack frame for the call (providers copy it).
        to_result(unsafe { provider_post_send(self.qp, &raw const wr) })
    }

    /// Posts up to [`MAX_RECV_CHAIN`] receive work requests in one chain (one provider call).
    pub(crate) fn post_recv_many(&self, wrs: &[(CqeRef, Sge)]) -> Result {
        let mut sg = [bindings::ib_sge::default(); MAX_RECV_CHAIN];
        let mut wr = [bindings::ib_recv_wr::default(); MAX_RECV_CHAIN];
        let n = wrs.len();
        if n == 0 || n > MAX_RECV_CHAIN {
            return Err(EINVAL);
        }
        for (i, (c, g)) in wrs.iter().enumerate() {
            sg[i] = g.raw();
            wr[i].sg_list = &raw mut sg[i];
            wr[i].num_sge = 1;
            wr[i].__bindgen_anon_1.wr_cqe = c.0;
        }
        for i in 1..n {
            wr[i - 1].next = &raw mut wr[i];
        }
        // SAFETY: As in `post_recv`: the chain and its SGEs live on this stack frame for the
        // call (providers copy them), `wr[n - 1].next` is null, and every buffer is the
        // caller's DMA-mapped memory that stays mapped until the QP is drained.
        to_result(unsafe { self.provider_post_recv(&raw const wr[0]) })
    }

    /// `ib_post_recv()` without the out-of-line wrapper (see [`Qp::provider_post_send`]).
    ///
    /// # Safety
    ///
    /// `wr` heads a valid chain of receive work requests for this QP.
    #[inline]
    unsafe fn provider_post_recv(&self, wr: *const bindings::ib_recv_wr) -> c_int {
        let qp = self.qp.as_ptr();
        let mut bad: *const bindings::ib_recv_wr = core::ptr::null();
        // SAFETY: `qp` is live (invariant), so is its registered device and ops table, which
        // every provider fills with `post_recv`; the chain is the caller's.
        unsafe {
            match (*(*qp).device).ops.post_recv {
                Some(f) => f(qp, wr, &raw mut bad),
                None => -(bindings::EOPNOTSUPP as c_int),
            }
        }
    }
}

/// What the static inline `ib_post_send()` does (a call of the provider's `post_send` with a
/// place for the failed WR), without the out-of-line wrapper around it; shared by [`Qp`] and
/// [`RecvQp`], which post to the same send queue.
///
/// # Safety
///
/// `qp` is a live QP and `wr` heads a valid chain of send work requests for it.
#[inline]
unsafe fn provider_post_send(
    qp: NonNull<bindings::ib_qp>,
    wr: *const bindings::ib_send_wr,
) -> c_int {
    let qp = qp.as_ptr();
    let mut bad: *const bindings::ib_send_wr = core::ptr::null();
    // SAFETY: `qp` is live (the caller's contract), so is its registered device and ops table,
    // which every provider fills with `post_send`; the chain is the caller's.
    unsafe {
        match (*(*qp).device).ops.post_send {
            Some(f) => f(qp, wr, &raw mut bad),
            None => -(bindings::EOPNOTSUPP as c_int),
        }
    }
}

/// A fast-registration memory region.
///
/// # Invariants
///
/// `ptr` came from a successful `ib_alloc_mr` and is deregistered in `drop`.
pub(crate) struct Mr {
    ptr: NonNull<bindings::ib_mr>,
}

// SAFETY: MRs are usable from any context; mutation needs `&mut`.
unsafe impl Send for Mr {}
// SAFETY: `&Mr` only reads keys.
unsafe impl Sync for Mr {}

impl Mr {
    /// Allocates an MR for up to `pages` pages (`sg_gaps`: `IB_MR_TYPE_SG_GAPS`).
    pub(crate) fn new(pd: &Pd, sg_gaps: bool, pages: u32) -> Result<Self> {
        let ty = if sg_gaps {
            bindings::ib_mr_type_IB_MR_TYPE_SG_GAPS
        } else {
            bindings::ib_mr_type_IB_MR_TYPE_MEM_REG
        };
        // SAFETY: `pd` is valid.
        let mr = unsafe { bindings::ib_alloc_mr(pd.ptr.as_ptr(), ty, pages) };
        Ok(Mr {
            ptr: from_err_ptr(mr)?,
        })
    }

    /// Current rkey.
    pub(crate) fn rkey(&self) -> u32 {
        // SAFETY: `ptr` is valid.
        unsafe { (*self.ptr.as_ptr()).rkey }
    }

    /// Current lkey.
    pub(crate) fn lkey(&self) -> u32 {
        // SAFETY: `ptr` is valid.
        unsafe { (*self.ptr.as_ptr()).lkey }
    }

    /// IOVA and length of the current mapping.
    pub(crate) fn range(&self) -> (u64, u64) {
        // SAFETY: `ptr` is valid.
        unsafe { ((*self.ptr.as_ptr()).iova, (*self.ptr.as_ptr()).length) }
    }

    /// Sets the key byte back to `rkey`'s (after [`Mr::map`] bumped it but no registration
    /// work request was posted).
    pub(crate) fn restore_key(&mut self, rkey: u32) {
        self.set_key_byte(rkey as u8);
    }

    /// Bumps the key byte and maps the DMA-mapped `sg` (page size 4 KiB). Fails unless
    /// every entry was mapped.
    pub(crate) fn map(&mut self, sg: &MappedSg) -> Result {
        let mr = self.ptr.as_ptr();
        self.set_key_byte(crate::proto::hdr::next_key_byte(self.rkey()));
        // SAFETY: `sg` is a DMA-mapped list of `sg.nents` entries (MappedSg invariant).
        let n = unsafe {
            bindings::ib_map_mr_sg(
                mr,
                sg.sgl.as_ptr(),
                sg.nents,
                core::ptr::null_mut(),
                REG_PAGE_SIZE,
            )
        };
        if n != sg.nents {
            return Err(if n < 0 { Error::from_errno(n) } else { EINVAL });
        }
        Ok(())
    }

    /// `ib_update_fast_reg_key()`: the low byte of both keys becomes `b`.
    fn set_key_byte(&mut self, b: u8) {
        let mr = self.ptr.as_ptr();
        // SAFETY: `mr` is valid and not in use by a posted WR (`&mut self`: the caller took it
        // from its pool's free list).
        unsafe {
            (*mr).lkey = crate::proto::hdr::with_key_byte((*mr).lkey, b);
            (*mr).rkey = crate::proto::hdr::with_key_byte((*mr).rkey, b);
        }
    }
}

impl Drop for Mr {
    fn drop(&mut self) {
        // SAFETY: By the invariant; no WR references it (the QP was drained).
        unsafe { bindings::ib_dereg_mr(self.ptr.as_ptr()) };
    }
}

/// A scatterlist mapped for DMA.
///
/// # Invariants
///
/// `sgl` has `orig` entries mapped with `ib_dma_map_sg` on `dev` in `dir`, giving `nents`
/// DMA entries; it is unmapped only by [`MappedSg::unmap`]. The memory belongs to a SCSI
/// command that libiscsi does not complete before `cleanup_task` (or the connection
/// teardown) unmapped it.
pub(crate) struct MappedSg {
    sgl: NonNull<bindings::scatterlist>,
    orig: c_int,
    nents: c_int,
    dir: DmaDir,
    dev: DeviceRef,
}

// SAFETY: The mapping is plain data; unmapping may happen on any CPU.
unsafe impl Send for MappedSg {}

impl MappedSg {
    /// Maps `sgl` (`orig` entries) — used by the SCSI wrapper.
    pub(super) fn map(
        dev: DeviceRef,
        sgl: NonNull<bindings::scatterlist>,
        orig: c_int,
        dir: DmaDir,
    ) -> Result<Self> {
        // SAFETY: `sgl` is the command's list of `orig` entries (caller's contract).
        let nents = unsafe { bindings::ib_dma_map_sg(dev.raw(), sgl.as_ptr(), orig, dir.raw()) };
        if nents <= 0 {
            return Err(EINVAL);
        }
        Ok(MappedSg {
            sgl,
            orig,
            nents,
            dir,
            dev,
        })
    }

    /// Number of DMA entries.
    pub(crate) fn nents(&self) -> usize {
        self.nents as usize
    }

    /// Address and length of the first DMA entry.
    pub(crate) fn first(&self) -> (u64, u32) {
        // SAFETY: `sgl` is mapped with at least one DMA entry.
        unsafe {
            (
                bindings::iser_rs_sg_dma_address(self.sgl.as_ptr()),
                bindings::iser_rs_sg_dma_len(self.sgl.as_ptr()),
            )
        }
    }

    /// Unmaps the list.
    pub(crate) fn unmap(self) {
        // SAFETY: Mapped with these arguments (invariant); consumed, so unmapped once.
        unsafe {
            bindings::ib_dma_unmap_sg(self.dev.raw(), self.sgl.as_ptr(), self.orig, self.dir.raw())
        }
    }
}

/// A sysfs output page handed to a `get_*_param` callback.
pub(crate) struct SysfsBuf {
    pub(super) ptr: *mut kernel::ffi::c_char,
}

/// A C string from the kernel, as text for log messages (non-UTF-8 shows as `?`). From 6.17
/// the kernel's `CStr` is `core::ffi::CStr`, which has no `Display`: callers get `&str`.
///
/// # Safety
///
/// `p` is a NUL-terminated string that lives for `'a`.
unsafe fn c_text<'a>(p: *const kernel::ffi::c_char) -> &'a str {
    // SAFETY: Per the function's contract.
    unsafe { CStr::from_char_ptr(p) }.to_str().unwrap_or("?")
}

/// A flag constant as `u64` (its C enum's Rust type differs between kernels).
fn wide(v: impl TryInto<u64>) -> u64 {
    v.try_into().unwrap_or(0)
}

/// A device limit as `u32`, negative values as 0 (`int` up to 6.x, `u32` in 7.x).
fn nonneg(v: impl TryInto<u32>) -> u32 {
    v.try_into().unwrap_or(0)
}
