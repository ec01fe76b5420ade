// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! An RDMA device as the driver sees it: a borrowed `ib_device` handle ([`DeviceRef`]) with
//! its limits, the DMA syncs of memory mapped to it, a protection domain ([`Pd`]) and the
//! device's asynchronous event handler.

use super::*;

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
    pub(super) ptr: NonNull<bindings::ib_device>,
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
    pub(super) fn raw(&self) -> *mut bindings::ib_device {
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
    pub(super) unsafe fn map_single(&self, addr: *mut u8, len: usize, dir: DmaDir) -> Result<u64> {
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
    pub(super) unsafe fn unmap_single(&self, dma: u64, len: usize, dir: DmaDir) {
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
    pub(super) unsafe fn sync_for_cpu(&self, dma: u64, len: usize, dir: DmaDir) {
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
    pub(super) unsafe fn sync_for_device(&self, dma: u64, len: usize, dir: DmaDir) {
        if self.virt_dma() {
            return;
        }
        // SAFETY: Per the function's contract.
        unsafe { bindings::ib_dma_sync_single_for_device(self.raw(), dma, len, dir.raw()) }
    }
}

/// A protection domain.
///
/// # Invariants
///
/// `ptr` was returned by a successful `ib_alloc_pd` and is deallocated in `drop`.
pub(crate) struct Pd {
    pub(super) ptr: NonNull<bindings::ib_pd>,
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
