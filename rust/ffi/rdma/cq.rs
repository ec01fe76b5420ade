// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! Completion queues from the device's pool ([`Cq`]), the completion trait the driver
//! implements ([`CqHandler`]), work completions ([`Wc`]) and the table of `ib_cqe`s that
//! routes each completion back to its work request ([`CqeTable`]).

use super::*;

/// A completion queue from the device's CQ pool, polled in softirq context.
///
/// # Invariants
///
/// `ptr` came from `ib_cq_pool_get(.., nr_cqe, ..)` and is put back in `drop`.
pub(crate) struct Cq {
    pub(super) ptr: NonNull<bindings::ib_cq>,
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
pub(crate) struct CqeRef(pub(super) *mut bindings::ib_cqe);

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
    #[inline(always)]
    pub(crate) fn get(&self, i: usize) -> CqeRef {
        CqeRef(self.cqes[i].get())
    }

    /// Which entry a completion's `cqe` address is, if it is one of ours.
    #[inline]
    pub(crate) fn index_of(&self, addr: usize) -> Option<usize> {
        let base = self.cqes.as_ptr() as usize;
        let sz = core::mem::size_of::<Opaque<bindings::ib_cqe>>();
        let off = addr.checked_sub(base)?;
        (off % sz == 0 && off / sz < self.cqes.len()).then_some(off / sz)
    }
}
