// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! Fast-registration memory regions ([`Mr`]): mapping a scatterlist into one, its keys, and
//! the one direction of remote access a registration grants ([`RemoteAccess`]).

use super::*;

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
    pub(super) fn flags(self) -> c_int {
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

/// A fast-registration memory region.
///
/// # Invariants
///
/// `ptr` came from a successful `ib_alloc_mr` and is deregistered in `drop`.
pub(crate) struct Mr {
    pub(super) ptr: NonNull<bindings::ib_mr>,
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
