// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! The state both sides of the data path share, fixed at bind: the task slots (what the
//! submission side publishes for the completion side: SENDs pending, the exposed
//! registrations, the LUN, a task management request's scope), the CQE table's regions, the
//! receive ring, and the submission side's and completion side's own resources.
//!
//! Locks and contexts: [`Shared`] is read by both sides without a lock (its per-slot words are
//! atomics); [`Bound`] is under `dp`, [`RxSide`] under `rx`. Teardown frees them after the QP
//! was drained, when the last reference goes.

use super::*;

/// What both sides know of one task slot.
pub(super) struct SlotShared {
    /// SENDs of the task (command, control PDU, Data-Out) whose completion its response
    /// waits for: raised before each post, lowered by the completion.
    pub(super) sends_pending: AtomicU32,
    /// Set while `xmit_task` posts a command whose unsolicited Data-Outs follow: a response
    /// that overtakes them waits for `dp`, which `xmit_task` holds until all are counted.
    pub(super) xmit_busy: AtomicBool,
    /// Set (under `rx`, after the PDU) when a response is held in the slot's [`RxSlot`]
    /// (`deferred`); cleared by `cleanup_task` when it takes it. `cleanup_task` takes `rx`
    /// only when this is set or a registration of the slot is still valid.
    pub(super) held: AtomicBool,
    /// `local_clock()` when the SCSI command's SEND was posted (latency histogram); 0 when
    /// not measured (`latency_histogram` off).
    pub(super) t0: AtomicU64,
    /// [read, write]: [`Exposed`] words, what a Send with Invalidate is checked against.
    pub(super) exposed: [AtomicU64; 2],
    /// For a task management request in this slot: the tasks its answer releases
    /// ([`ptask::TmfRef::encode`]; 0: none). Its answer is held until their registrations
    /// are invalidated (`on_rx`).
    pub(super) tmf_ref: AtomicU32,
    /// The LUN field (raw, [`bhs::lun`]) of the slot's SCSI command that registered memory,
    /// or of its task management request. Written before `exposed` or `tmf_ref` (Release),
    /// read after them (Acquire).
    pub(super) lun: AtomicU64,
}

/// Completion-side state of one task slot.
pub(super) struct RxSlot {
    /// The task reference to drop when its SEND completed (a NOP-Out nobody answers).
    pub(super) put_on_send: Option<TaskHandle>,
    /// A received PDU held until the task's SENDs completed.
    pub(super) deferred: Option<HeldPdu>,
}

/// A received PDU copied out of its ring buffer, so that the buffer goes back to the target
/// before the PDU is delivered, and so that nothing reads the ring while the HCA may write
/// it: only the bytes that arrived are copied (`DmaBuf::read_uninit`: iSER header, BHS and a
/// data segment only if there is one: sense data, NOP-In data, Async Message, Reject; a read's
/// or write's SCSI Response has none), into an area of the caller's left uninitialised beyond
/// them (a value holding the whole 204 bytes would be cleared or copied whole on every PDU).
/// This splits that copy into the BHS and the data segment; the iSER header is not libiscsi's
/// business.
pub(super) struct RxCopy<'a> {
    pub(super) bhs: &'a mut [u8; bhs::BHS_LEN],
    pub(super) data: &'a mut [u8],
}

impl<'a> RxCopy<'a> {
    /// Splits the copy `pdu` of a received PDU whose data segment is `data_len` bytes (both
    /// validated by [`rx::parse`]); `None` if `pdu` is shorter.
    pub(super) fn new(pdu: &'a mut [u8], data_len: usize) -> Option<Self> {
        let pdu = pdu.get_mut(hdr::LEN..sizing::HEADERS_LEN.checked_add(data_len)?)?;
        let (bhs, data) = pdu.split_at_mut(bhs::BHS_LEN);
        Some(RxCopy {
            bhs: bhs.try_into().ok()?,
            data,
        })
    }
}

/// A received PDU held in its task's slot until the task's SENDs completed (rare).
pub(super) struct HeldPdu {
    pub(super) bhs: [u8; bhs::BHS_LEN],
    pub(super) data: [u8; sizing::RECV_DATA_SEG_LEN],
    pub(super) data_len: usize,
}

impl HeldPdu {
    pub(super) fn hold(c: &RxCopy<'_>) -> Self {
        let mut data = [0; sizing::RECV_DATA_SEG_LEN];
        let data_len = c.data.len().min(data.len());
        data[..data_len].copy_from_slice(&c.data[..data_len]);
        HeldPdu {
            bhs: *c.bhs,
            data,
            data_len,
        }
    }
}

/// A stack of free indices (the 6.12 `KVec` has no `pop`).
pub(super) struct FreeList {
    pub(super) items: KVec<usize>,
    pub(super) len: usize,
}

impl FreeList {
    /// Holds `0..n`, handing out low indices first.
    pub(super) fn new(n: usize) -> Result<Self> {
        let mut items = KVec::with_capacity(n, GFP_KERNEL)?;
        for i in (0..n).rev() {
            items.push(i, GFP_KERNEL)?;
        }
        Ok(FreeList { items, len: n })
    }

    pub(super) fn pop(&mut self) -> Option<usize> {
        self.len = self.len.checked_sub(1)?;
        self.items.get(self.len).copied()
    }

    pub(super) fn push(&mut self, i: usize) {
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = i;
            self.len += 1;
        }
    }

    /// Entries free now.
    pub(super) fn available(&self) -> usize {
        self.len
    }
}

/// Regions of the CQE table.
#[derive(Clone, Copy, Debug)]
pub(super) enum Cqe {
    /// A SEND its task waits for ([`sq::Signal::Track`]).
    Send(usize),
    Rx(usize),
    LoginRx,
    Reg,
    /// A SEND nobody waits for: success only reclaims send-queue slots; errors and flushes
    /// of unsignalled SENDs arrive here too.
    Quiet,
    DataOut(usize),
    /// The LOCAL_INV of task slot `i`'s registration, posted when its SCSI Response came
    /// without a Send with Invalidate; the response waits for it.
    Inv(usize),
}

/// Per-connection state both sides read, allocated at bind and sized by the session: fixed
/// after bind except for the atomics. Freed when both sides dropped it, which teardown does
/// after draining the QP.
pub(super) struct Shared {
    pub(super) iscsi: IscsiConn,
    /// Task slots (the session's task pool).
    pub(super) n: usize,
    /// Receive ring buffers: `n + RX_BATCH`.
    pub(super) nrx: usize,
    pub(super) cqes: CqeTable<IserConn>,
    pub(super) rx: DmaBuf,
    pub(super) login_rsp: DmaBuf,
    pub(super) lkey: u32,
    pub(super) remote_inv: bool,
    /// A discovery session (SendTargets only): its Text responses all land in the login
    /// buffer, so the receive ring is never posted. iscsiadm sets the session parameter
    /// after bind and before the login (create, bind, set_param, login), so it is read
    /// when each login request goes out, as the C driver does, and recorded here for the
    /// login response's handler, which runs after that request was sent.
    pub(super) discovery: AtomicBool,
    pub(super) slots: KVVec<SlotShared>,
    /// Per registration MR: the key the target may still use ([`valid_key`]: 0, or
    /// `VALID_KEY | rkey` from its registration until it is invalidated, remotely or by us).
    /// Changed by one swap or compare-exchange each, so a key is invalidated once.
    pub(super) valid_key: KVec<AtomicU64>,
    /// Task slot of each Data-Out descriptor in flight (its response waits for it).
    pub(super) dataout_owner: KVec<AtomicUsize>,
}

/// Submission-side resources allocated at bind.
pub(super) struct Bound {
    pub(super) sh: Arc<Shared>,
    pub(super) login_req: DmaBuf,
    pub(super) ring_posted: bool,
    /// Per task slot: the mapping of libiscsi's header area, made at its first transmission.
    pub(super) hdrs: KVVec<Option<HdrMapping>>,
    /// Registration MRs; which are free is in [`Res`].
    pub(super) fr: KVec<Mr>,
    /// Unsolicited Data-Out headers, [`sizing::DATAOUTS_PER_PAGE`] per page-sized buffer;
    /// as many as the send queue holds beside the commands ([`sizing::dataout_descs`]), so
    /// that a write never finds the pool dry after its command went out: `xmit_task` sends
    /// a write only when all its Data-Outs have a descriptor, else libiscsi requeues it.
    pub(super) dataout: KVec<DmaBuf>,
    pub(super) dataout_free: FreeList,
    /// Descriptors in all (`start_conn` refuses parameters a command would need more for).
    pub(super) dataout_cap: usize,
    /// Send-queue signalling state.
    pub(super) signals: sq::Signals,
    pub(super) global_rkey: Option<u32>,
    pub(super) always_register: bool,
    pub(super) dev: crate::ffi::rdma::DeviceRef,
    pub(super) st: Arc<ConnStats>,
}

/// Completion-side resources allocated at bind.
pub(super) struct RxSide {
    pub(super) sh: Arc<Shared>,
    /// Consumed ring buffers not yet reposted.
    pub(super) batch: sq::RxBatch,
    pub(super) slots: KVVec<RxSlot>,
}

/// Entries of the CQE table: `n` task slots, `nrx` receive buffers, then the fixed entries,
/// the `ndo` Data-Out descriptors and `n` task slots' local invalidations.
pub(super) fn cqe_table_len(n: usize, nrx: usize, ndo: usize) -> usize {
    n + nrx + 3 + ndo + n
}

impl Shared {
    #[inline(always)]
    pub(super) fn cqe_of(&self, c: Cqe) -> crate::ffi::rdma::CqeRef {
        let (n, r) = (self.n, self.n + self.nrx);
        self.cqes.get(match c {
            Cqe::Send(i) => i,
            Cqe::Rx(i) => n + i,
            Cqe::LoginRx => r,
            Cqe::Reg => r + 1,
            Cqe::Quiet => r + 2,
            Cqe::DataOut(i) => r + 3 + i,
            Cqe::Inv(i) => r + 3 + self.dataout_owner.len() + i,
        })
    }

    #[inline]
    pub(super) fn which(&self, addr: usize) -> Option<Cqe> {
        let i = self.cqes.index_of(addr)?;
        let (n, r) = (self.n, self.n + self.nrx);
        Some(if i < n {
            Cqe::Send(i)
        } else if i < r {
            Cqe::Rx(i - n)
        } else if i == r {
            Cqe::LoginRx
        } else if i == r + 1 {
            Cqe::Reg
        } else if i == r + 2 {
            Cqe::Quiet
        } else if i < r + 3 + self.dataout_owner.len() {
            Cqe::DataOut(i - r - 3)
        } else {
            Cqe::Inv(i - r - 3 - self.dataout_owner.len())
        })
    }

    /// The work request giving ring buffer `i` to the target.
    #[inline(always)]
    fn rx_wr(&self, i: usize) -> (crate::ffi::rdma::CqeRef, Sge) {
        let off = i * sizing::RX_PAYLOAD;
        self.rx.sync_for_device(off, sizing::RX_PAYLOAD);
        (
            self.cqe_of(Cqe::Rx(i)),
            Sge {
                addr: self.rx.dma(off),
                len: sizing::RX_PAYLOAD as u32,
                lkey: self.lkey,
            },
        )
    }

    pub(super) fn post_rx(&self, rq: &RecvQp, i: usize) -> Result {
        let (cqe, sge) = self.rx_wr(i);
        rq.post_recv(cqe, sge)
    }

    /// Lowers task slot `i`'s count of pending SENDs; true when it reached zero.
    #[inline]
    pub(super) fn send_done(&self, i: usize) -> bool {
        self.slots.get(i).is_some_and(|s| {
            s.sends_pending
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| v.checked_sub(1))
                == Ok(1)
        })
    }
}

impl RxSide {
    /// Gives consumed ring buffer `i` back to the target: held until [`sq::RX_BATCH`] are
    /// consumed, then posted in one chain (the ring has that many spare buffers).
    pub(super) fn repost(&mut self, rq: &RecvQp, i: usize) -> Result {
        let Some(batch) = self.batch.push(i) else {
            return Ok(());
        };
        let sh = &*self.sh;
        rq.post_recv_each::<{ sq::RX_BATCH }>(|k| sh.rx_wr(batch[k]))
    }
}

impl Bound {
    /// Drops the header mappings and resets the per-task counters (after the QP was
    /// drained).
    pub(super) fn release_all(&mut self) {
        for h in self.hdrs.iter_mut() {
            *h = None;
        }
        for s in self.sh.slots.iter() {
            s.sends_pending.store(0, Ordering::Relaxed);
            s.xmit_busy.store(false, Ordering::Relaxed);
            s.held.store(false, Ordering::Relaxed);
        }
    }
}
