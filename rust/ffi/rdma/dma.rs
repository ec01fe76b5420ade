// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! DMA mappings to an RDMA device: coherent-looking buffers the driver owns ([`DmaBuf`]),
//! libiscsi's task header areas ([`HdrMapping`]) and SCSI scatterlists ([`MappedSg`]).

use super::*;

/// DMA direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DmaDir {
    /// Memory to device.
    ToDevice,
    /// Device to memory.
    FromDevice,
}

impl DmaDir {
    pub(super) fn raw(self) -> bindings::dma_data_direction {
        match self {
            DmaDir::ToDevice => crate::ffi::compat::DMA_TO_DEVICE,
            DmaDir::FromDevice => crate::ffi::compat::DMA_FROM_DEVICE,
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
    pub(super) fn range(&self, off: usize, len: usize) -> Option<*const u8> {
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
    pub(super) len: usize,
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
    pub(in crate::ffi) unsafe fn new(dev: DeviceRef, addr: *mut u8, len: usize) -> Result<Self> {
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

/// A scatterlist mapped for DMA.
///
/// # Invariants
///
/// `sgl` has `orig` entries mapped with `ib_dma_map_sg` on `dev` in `dir`, giving `nents`
/// DMA entries; it is unmapped only by [`MappedSg::unmap`]. The memory belongs to a SCSI
/// command that libiscsi does not complete before `cleanup_task` (or the connection
/// teardown) unmapped it.
pub(crate) struct MappedSg {
    pub(super) sgl: NonNull<bindings::scatterlist>,
    orig: c_int,
    pub(super) nents: c_int,
    dir: DmaDir,
    dev: DeviceRef,
}

// SAFETY: The mapping is plain data; unmapping may happen on any CPU.
unsafe impl Send for MappedSg {}

impl MappedSg {
    /// Maps `sgl` (`orig` entries) — used by the SCSI wrapper.
    pub(in crate::ffi) fn map(
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
