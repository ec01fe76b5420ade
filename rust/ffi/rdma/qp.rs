// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! RC queue pairs: the send side ([`Qp`]: SENDs, inline and gathered, with a fast
//! registration and an invalidation chained in front) and the completion side's handle
//! ([`RecvQp`]: receives, local invalidations), with the scatter/gather entries they take.

use super::*;

/// Longest receive chain [`RecvQp::post_recv_each`] takes.
pub(crate) const MAX_RECV_CHAIN: usize = 16;

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

/// # Safety
///
/// Called by the RDMA core for a QP created by [`CmId::create_qp`] with `ev` a valid `ib_event`
/// for the call.
pub(super) unsafe extern "C" fn qp_event_trampoline(
    ev: *mut bindings::ib_event,
    _ctx: *mut c_void,
) {
    // SAFETY: The core passes a valid event; `ib_event_msg` returns a static string.
    let (event, name) = unsafe {
        let e = (*ev).event;
        (e, c_text(bindings::ib_event_msg(e)))
    };
    iser_err!("qp event {} ({})\n", name, event);
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
    pub(super) fn raw(&self) -> bindings::ib_sge {
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
    pub(super) addr: *const u8,
    pub(super) len: u32,
    pub(super) _mapping: core::marker::PhantomData<&'a HdrMapping>,
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
    pub(super) qp: NonNull<bindings::ib_qp>,
    pub(super) id: NonNull<bindings::rdma_cm_id>,
    pub(super) cq: Cq,
    pub(super) ctx: *const H,
    pub(super) max_inline: u32,
    pub(super) recv_out: bool,
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
    pub(super) qp: NonNull<bindings::ib_qp>,
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
    #[inline(always)]
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
        // The registration and invalidation WRs are built only when chained (most SENDs
        // carry neither: Data-Outs, control PDUs, commands on the DMA key); each lives on
        // this stack frame until the post below returns.
        let mut regwr;
        let inv;
        let head: *const bindings::ib_send_wr = match reg {
            None => &raw const send,
            Some(r) => {
                regwr = bindings::ib_reg_wr {
                    wr: bindings::ib_send_wr {
                        next: &raw mut send,
                        opcode: bindings::ib_wr_opcode_IB_WR_REG_MR,
                        ..Default::default()
                    },
                    mr: r.mr.ptr.as_ptr(),
                    key: r.mr.rkey(),
                    access: r.access.flags(),
                };
                regwr.wr.__bindgen_anon_1.wr_cqe = r.cqe.0;
                match r.invalidate {
                    None => &raw const regwr.wr,
                    Some(rkey) => {
                        let mut w = bindings::ib_send_wr {
                            next: &raw mut regwr.wr,
                            opcode: bindings::ib_wr_opcode_IB_WR_LOCAL_INV,
                            ..Default::default()
                        };
                        w.__bindgen_anon_1.wr_cqe = r.cqe.0;
                        w.ex.invalidate_rkey = rkey;
                        inv = w;
                        &raw const inv
                    }
                }
            }
        };
        // SAFETY: `qp` is valid; `head` starts the chain [LOCAL_INV ->] [REG_MR ->] SEND,
        // whose WRs and SGEs all live on this stack frame for the call. A mapped SGE
        // references memory the caller keeps mapped until the SEND completes or the QP is
        // drained; an inline one is readable for the call (`InlineSge` invariant), which is
        // when the provider copies it, and fits the QP's inline size (checked above); the MR
        // of a REG_MR is the caller's, mapped with `Mr::map`.
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

    /// Posts `N` (at most [`MAX_RECV_CHAIN`]) receive work requests in one chain (one
    /// provider call), the `i`-th from `wr_of(i)`. Each entry is built whole in place (no
    /// array cleared first and written again).
    #[inline]
    pub(crate) fn post_recv_each<const N: usize>(
        &self,
        mut wr_of: impl FnMut(usize) -> (CqeRef, Sge),
    ) -> Result {
        if N == 0 || N > MAX_RECV_CHAIN {
            return Err(EINVAL);
        }
        let mut cqes = [core::ptr::null_mut(); N];
        let mut sg: [bindings::ib_sge; N] = core::array::from_fn(|i| {
            let (c, g) = wr_of(i);
            cqes[i] = c.0;
            g.raw()
        });
        let sgp = sg.as_mut_ptr();
        let mut wr: [bindings::ib_recv_wr; N] = core::array::from_fn(|i| bindings::ib_recv_wr {
            next: core::ptr::null_mut(),
            __bindgen_anon_1: bindings::ib_recv_wr__bindgen_ty_1 { wr_cqe: cqes[i] },
            sg_list: sgp.wrapping_add(i),
            num_sge: 1,
        });
        for i in 1..N {
            let next = &raw mut wr[i];
            wr[i - 1].next = next;
        }
        // SAFETY: As in `post_recv`: the chain and its SGEs live on this stack frame for the
        // call (providers copy them; `sg_list` of entry `i` is `&sg[i]`), the last `next`
        // is null, and every buffer is the caller's DMA-mapped memory that stays mapped
        // until the QP is drained.
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
