// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! One iSER connection: the RDMA CM state machine (iser-spec.md 3), the per-connection
//! buffers and registration pool, and the data path (4, 5).
//!
//! # Locks and contexts
//!
//! - `ctrl` (mutex): connection management — CM handler, ep_* callbacks, bind, stop,
//!   session limits. Process context only.
//! - `dp` (spinlock): the submission side — the QP's send side, the task slots' header
//!   mappings, the registration MRs, the Data-Out descriptors, the signalling state. Taken in
//!   `xmit_task` (atomic, under libiscsi's `frwd_lock`, BH off), for Data-Out completions
//!   (softirq), and from process context with BH disabled.
//! - `res` (spinlock, leaf): the task slots' buffer mappings and the registration MRs' free
//!   list. Taken by `xmit_task` under `dp` (briefly: take an MR, record a mapping), by
//!   `cleanup_task` (under `back_lock`) alone, and at bind and teardown. A task's release thus
//!   never waits for a transmit on another CPU, which holds `dp` across `post_send`.
//! - `rx` (spinlock, leaf): the completion side — the QP's completion-side handle
//!   ([`RecvQp`]: receives, and the LOCAL_INV of a registration its response did not
//!   invalidate), the receive ring and its repost batch, responses held until their task's
//!   SENDs and that LOCAL_INV completed.
//!   Taken by the completion handler (the CQ's softirq poller, one at a time per CQ, so the
//!   I/O path finds it free), by `xmit_task` only for login and NOP-Out PDUs, and at bind
//!   and teardown. Order: `dp` before `rx` and before `res`; the completion handler never
//!   holds `rx` while it takes `dp`. A 4k read's response is thus handled without the lock
//!   its submission holds.
//! - None of them is held while calling into libiscsi (which takes its own locks and calls
//!   `cleanup_task` back).
//! - What both sides read is in [`Shared`], fixed at bind, with per-task atomics: the count
//!   of SENDs (and LOCAL_INVs) a response must wait for (raised before the post), the
//!   command's send time, which MR each direction exposes and which key each MR leaves valid.
//!
//! # Teardown
//!
//! Everything RDMA is released synchronously by [`IserConn::release_rdma`], from
//! `ep_disconnect`, `stop_conn` or DEVICE_REMOVAL, in this order: suspend libiscsi's queue,
//! `rdma_disconnect`, drain the QP (no completion can follow), free every task's DMA
//! mappings and MRs, destroy the QP and its CQ, free the buffers, drop the device reference,
//! and finally destroy the CM id outside `ctrl`. A task that libiscsi cleans up later (in
//! `iscsi_conn_stop`, or an abort after stop) finds nothing left to release, so the order in
//! which 6.12 calls `ep_disconnect` and `stop_conn` (3.8.5) does not matter and a late
//! `cleanup_task` cannot touch freed memory (11, item 3).

use crate::device::{IserDevice, DEVICES};
use crate::ffi::debugfs::{self, Entry, SeqWriter, Show};
use crate::ffi::iscsi::{self, DataDir, IscsiConn, Poll, SessionInfo, Task, TaskHandle};
use crate::ffi::rdma::{
    CmEvent, CmEventKind, CmHandler, CmId, ConnParam, Cq, CqHandler, CqeTable, DmaBuf, DmaDir,
    Gather, HdrMapping, MappedSg, Mr, Qp, QpCaps, RecvQp, RegReq, RemoteAccess, Sge, SysfsBuf, Wc,
};
use crate::ffi::{bh, errno, params, time};
use crate::proto::stats::{Counters, Stats};
use crate::proto::{bhs, cm, hdr, rx, sizing, sq, task as ptask};
use core::fmt::{self, Write};
use core::mem::MaybeUninit;
use core::net::SocketAddr;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use kernel::prelude::*;
use kernel::str::CString;
use kernel::sync::lock::{spinlock::SpinLockBackend, Guard};
use kernel::sync::{Arc, ArcBorrow, CondVar, CondVarTimeoutResult, Mutex, SpinLock};
use kernel::workqueue::{Work, WorkItem};
use kernel::{c_str, new_condvar, new_mutex, new_spinlock};

/// Address and route resolution timeout (iser-spec.md 6.2).
const RESOLVE_TIMEOUT_MS: u32 = 1000;

/// Connection states (iser-spec.md 3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Init,
    Pending,
    Up,
    Terminating,
    Down,
}

/// The locked completion side.
type RxGuard<'a> = Guard<'a, Rx, SpinLockBackend>;

/// Management state, under `ctrl`.
struct Ctrl {
    state: State,
    cm_id: Option<CmId<IserConn>>,
    device: Option<Arc<IserDevice>>,
    sizing: Option<sizing::Sizing>,
    /// We asked for Send with Invalidate (`always_register=1`).
    req: cm::Request,
    /// Negotiated remote invalidation.
    remote_inv: bool,
    /// The bound libiscsi connection.
    iscsi: Option<IscsiConn>,
    /// `/sys/kernel/debug/iser/connection<sid>:<cid>/` while bound.
    dbg: Option<Entry<ConnStats>>,
}

/// The submission side, under `dp`.
struct Dp {
    qp: Option<Qp<IserConn>>,
    bound: Option<Bound>,
}

/// The completion side, under `rx`.
struct Rx {
    /// The QP's receive handle, from QP creation until teardown takes it back to drain.
    rq: Option<RecvQp>,
    side: Option<RxSide>,
}

/// How one direction of a command's buffer is exposed to the target.
struct DirRes {
    sg: MappedSg,
    /// Index of the registration MR, or `None` for the DMA-key path.
    fr: Option<usize>,
    lkey: u32,
    iova: u64,
}

/// The task slots' buffer mappings and the registration pool's free list, under `res`: what
/// `cleanup_task` releases, so that it never waits for `dp`, which `xmit_task` holds across
/// the provider's `post_send`.
struct Res {
    sh: Arc<Shared>,
    /// Per task slot: [read, write].
    dirs: KVVec<[Option<DirRes>; 2]>,
    /// Free registration MRs (indices into `Bound::fr`).
    fr_free: FreeList,
}

/// What both sides know of one task slot.
struct SlotShared {
    /// SENDs of the task (command, control PDU, Data-Out) whose completion its response
    /// waits for: raised before each post, lowered by the completion.
    sends_pending: AtomicU32,
    /// Set while `xmit_task` posts a command whose unsolicited Data-Outs follow: a response
    /// that overtakes them waits for `dp`, which `xmit_task` holds until all are counted.
    xmit_busy: AtomicBool,
    /// `local_clock()` when the SCSI command's SEND was posted (latency histogram); 0 when
    /// not measured (`latency_histogram` off).
    t0: AtomicU64,
    /// [read, write]: [`Exposed`] words, what a Send with Invalidate is checked against.
    exposed: [AtomicU64; 2],
    /// For a task management request in this slot: the tasks its answer releases
    /// ([`ptask::TmfRef::encode`]; 0: none). Its answer is held until their registrations
    /// are invalidated (`on_rx`).
    tmf_ref: AtomicU32,
    /// The LUN field (raw, [`bhs::lun`]) of the slot's SCSI command that registered memory,
    /// or of its task management request. Written before `exposed` or `tmf_ref` (Release),
    /// read after them (Acquire).
    lun: AtomicU64,
}

/// Completion-side state of one task slot.
struct RxSlot {
    /// The task reference to drop when its SEND completed (a NOP-Out nobody answers).
    put_on_send: Option<TaskHandle>,
    /// A received PDU held until the task's SENDs completed.
    deferred: Option<HeldPdu>,
}

/// A received PDU copied out of its ring buffer, so that the buffer goes back to the target
/// before the PDU is delivered, and so that nothing reads the ring while the HCA may write
/// it: only the bytes that arrived are copied (`DmaBuf::read_uninit`: iSER header, BHS and a
/// data segment only if there is one: sense data, NOP-In data, Async Message, Reject; a read's
/// or write's SCSI Response has none), into an area of the caller's left uninitialised beyond
/// them (a value holding the whole 204 bytes would be cleared or copied whole on every PDU).
/// This splits that copy into the BHS and the data segment; the iSER header is not libiscsi's
/// business.
struct RxCopy<'a> {
    bhs: &'a mut [u8; bhs::BHS_LEN],
    data: &'a mut [u8],
}

impl<'a> RxCopy<'a> {
    /// Splits the copy `pdu` of a received PDU whose data segment is `data_len` bytes (both
    /// validated by [`rx::parse`]); `None` if `pdu` is shorter.
    fn new(pdu: &'a mut [u8], data_len: usize) -> Option<Self> {
        let pdu = pdu.get_mut(hdr::LEN..sizing::HEADERS_LEN.checked_add(data_len)?)?;
        let (bhs, data) = pdu.split_at_mut(bhs::BHS_LEN);
        Some(RxCopy {
            bhs: bhs.try_into().ok()?,
            data,
        })
    }
}

/// A received PDU held in its task's slot until the task's SENDs completed (rare).
struct HeldPdu {
    bhs: [u8; bhs::BHS_LEN],
    data: [u8; sizing::RECV_DATA_SEG_LEN],
    data_len: usize,
}

impl HeldPdu {
    fn hold(c: &RxCopy<'_>) -> Self {
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
struct FreeList {
    items: KVec<usize>,
    len: usize,
}

impl FreeList {
    /// Holds `0..n`, handing out low indices first.
    fn new(n: usize) -> Result<Self> {
        let mut items = KVec::with_capacity(n, GFP_KERNEL)?;
        for i in (0..n).rev() {
            items.push(i, GFP_KERNEL)?;
        }
        Ok(FreeList { items, len: n })
    }

    fn pop(&mut self) -> Option<usize> {
        self.len = self.len.checked_sub(1)?;
        self.items.get(self.len).copied()
    }

    fn push(&mut self, i: usize) {
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = i;
            self.len += 1;
        }
    }

    /// Entries free now.
    fn available(&self) -> usize {
        self.len
    }
}

/// Regions of the CQE table.
#[derive(Clone, Copy, Debug)]
enum Cqe {
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
struct Shared {
    iscsi: IscsiConn,
    /// Task slots (the session's task pool).
    n: usize,
    /// Receive ring buffers: `n + RX_BATCH`.
    nrx: usize,
    cqes: CqeTable<IserConn>,
    rx: DmaBuf,
    login_rsp: DmaBuf,
    lkey: u32,
    remote_inv: bool,
    /// A discovery session (SendTargets only): its Text responses all land in the login
    /// buffer, so the receive ring is never posted. iscsiadm sets the session parameter
    /// after bind and before the login (create, bind, set_param, login), so it is read
    /// when each login request goes out, as the C driver does, and recorded here for the
    /// login response's handler, which runs after that request was sent.
    discovery: AtomicBool,
    slots: KVVec<SlotShared>,
    /// Per registration MR: the key the target may still use ([`valid_key`]: 0, or
    /// `VALID_KEY | rkey` from its registration until it is invalidated, remotely or by us).
    /// Changed by one swap or compare-exchange each, so a key is invalidated once.
    valid_key: KVec<AtomicU64>,
    /// Task slot of each Data-Out descriptor in flight (its response waits for it).
    dataout_owner: KVec<AtomicUsize>,
}

/// Submission-side resources allocated at bind.
struct Bound {
    sh: Arc<Shared>,
    login_req: DmaBuf,
    ring_posted: bool,
    /// Per task slot: the mapping of libiscsi's header area, made at its first transmission.
    hdrs: KVVec<Option<HdrMapping>>,
    /// Registration MRs; which are free is in [`Res`].
    fr: KVec<Mr>,
    /// Unsolicited Data-Out headers, [`sizing::DATAOUTS_PER_PAGE`] per page-sized buffer;
    /// as many as the send queue holds beside the commands ([`sizing::dataout_descs`]), so
    /// that a write never finds the pool dry after its command went out: `xmit_task` sends
    /// a write only when all its Data-Outs have a descriptor, else libiscsi requeues it.
    dataout: KVec<DmaBuf>,
    dataout_free: FreeList,
    /// Descriptors in all (`start_conn` refuses parameters a command would need more for).
    dataout_cap: usize,
    /// Send-queue signalling state.
    signals: sq::Signals,
    global_rkey: Option<u32>,
    always_register: bool,
    dev: crate::ffi::rdma::DeviceRef,
    st: Arc<ConnStats>,
}

/// Completion-side resources allocated at bind.
struct RxSide {
    sh: Arc<Shared>,
    /// Consumed ring buffers not yet reposted.
    batch: sq::RxBatch,
    slots: KVVec<RxSlot>,
}

/// Entries of the CQE table: `n` task slots, `nrx` receive buffers, then the fixed entries,
/// the `ndo` Data-Out descriptors and `n` task slots' local invalidations.
fn cqe_table_len(n: usize, nrx: usize, ndo: usize) -> usize {
    n + nrx + 3 + ndo + n
}

/// Marks a [`Shared::valid_key`] word as holding a key (an rkey may be 0).
const VALID_KEY: u64 = 1 << 32;

/// The [`Shared::valid_key`] word of a registration with `rkey`.
fn valid_key(rkey: u32) -> u64 {
    VALID_KEY | u64::from(rkey)
}

impl Shared {
    fn cqe_of(&self, c: Cqe) -> crate::ffi::rdma::CqeRef {
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

    fn which(&self, addr: usize) -> Option<Cqe> {
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

    fn post_rx(&self, rq: &RecvQp, i: usize) -> Result {
        let (cqe, sge) = self.rx_wr(i);
        rq.post_recv(cqe, sge)
    }

    /// Lowers task slot `i`'s count of pending SENDs; true when it reached zero.
    fn send_done(&self, i: usize) -> bool {
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
    fn repost(&mut self, rq: &RecvQp, i: usize) -> Result {
        let Some(batch) = self.batch.push(i) else {
            return Ok(());
        };
        let mut wrs = [(self.sh.cqe_of(Cqe::Rx(0)), Sge::default()); sq::RX_BATCH];
        for (w, &j) in wrs.iter_mut().zip(batch.iter()) {
            *w = self.sh.rx_wr(j);
        }
        rq.post_recv_many(&wrs)
    }
}

impl Res {
    /// Releases one direction's mapping and MR. The MR was invalidated before the task's
    /// response was delivered (remotely or by `on_rx`); only a task that ended without a
    /// response (abort, cleanup) leaves it valid until its reuse chains a LOCAL_INV (lazy
    /// invalidation, iser-spec.md 5.4).
    fn release_dir(&mut self, d: DirRes) {
        if let Some(i) = d.fr {
            self.fr_free.push(i);
        }
        d.sg.unmap();
    }

    fn release_task(&mut self, i: usize) {
        let dirs = match self.dirs.get_mut(i) {
            Some(d) => [d[0].take(), d[1].take()],
            None => return,
        };
        if let Some(s) = self.sh.slots.get(i) {
            for e in &s.exposed {
                e.store(ptask::Exposed::None.encode(), Ordering::Release);
            }
        }
        for d in dirs.into_iter().flatten() {
            self.release_dir(d);
        }
    }

    /// Releases every task's mappings (after the QP was drained).
    fn release_all(&mut self) {
        for i in 0..self.dirs.len() {
            self.release_task(i);
        }
    }
}

impl Bound {
    /// Exposes a mapped buffer to the target: DMA key or fast registration (5.1). Returns
    /// the mapping (with the MR index if registered), the MR's new rkey and the rkey to
    /// invalidate first. The MR comes from the pool in `res`, which the caller holds (it
    /// records the mapping there next, under the same lock round trip).
    fn register(
        &mut self,
        res: &mut Option<Res>,
        sg: MappedSg,
        all_imm: bool,
    ) -> Result<(DirRes, Option<u32>, Option<u32>)> {
        if sg.nents() == 1 && (all_imm || !self.always_register) {
            Stats::inc(&self.st.s.c.reg_dma_key);
            let (addr, _len) = sg.first();
            let lkey = self.sh.lkey;
            return Ok((
                DirRes {
                    sg,
                    fr: None,
                    lkey,
                    iova: addr,
                },
                None,
                None,
            ));
        }
        let Some(i) = res.as_mut().and_then(|r| r.fr_free.pop()) else {
            Stats::inc(&self.st.s.c.err_reg_pool);
            iser_err!("registration pool empty\n");
            sg.unmap();
            return Err(EAGAIN);
        };
        let (Some(mr), Some(vk)) = (self.fr.get_mut(i), self.sh.valid_key.get(i)) else {
            sg.unmap();
            return Err(EINVAL);
        };
        let old_key = mr.rkey();
        // The previous use was invalidated (remotely, or by `on_rx` before its response was
        // delivered) unless its task ended without a response: then its key is still here,
        // and is invalidated in the chain before the new registration. Taken by a swap, so
        // that `on_rx` cannot invalidate it a second time behind the new registration.
        let prev = vk.swap(0, Ordering::AcqRel);
        let inval = (prev & VALID_KEY != 0).then_some(prev as u32);
        if let Err(e) = mr.map(&sg) {
            // Nothing was posted: the MR keeps its registration and key.
            mr.restore_key(old_key);
            vk.store(prev, Ordering::Release);
            iser_err!(
                "failed to map {} DMA entries for registration: {:?}\n",
                sg.nents(),
                e
            );
            if let Some(r) = res {
                r.fr_free.push(i);
            }
            sg.unmap();
            return Err(e);
        }
        vk.store(valid_key(mr.rkey()), Ordering::Release);
        Stats::inc(&self.st.s.c.reg_fastreg);
        if inval.is_some() {
            Stats::inc(&self.st.s.c.inval_local);
        }
        let (iova, _) = mr.range();
        let (lkey, rkey) = (mr.lkey(), mr.rkey());
        Ok((
            DirRes {
                sg,
                fr: Some(i),
                lkey,
                iova,
            },
            Some(rkey),
            inval,
        ))
    }

    /// Drops the header mappings and resets the per-task counters (after the QP was
    /// drained).
    fn release_all(&mut self) {
        for h in self.hdrs.iter_mut() {
            *h = None;
        }
        for s in self.sh.slots.iter() {
            s.sends_pending.store(0, Ordering::Relaxed);
            s.xmit_busy.store(false, Ordering::Relaxed);
        }
    }
}

/// One iSER connection (one iSCSI endpoint).
#[pin_data]
pub(crate) struct IserConn {
    #[pin]
    ctrl: Mutex<Ctrl>,
    #[pin]
    up: CondVar,
    #[pin]
    dp: SpinLock<Dp>,
    #[pin]
    rx: SpinLock<Rx>,
    /// The task slots' buffer mappings and the free registration MRs (`None` while unbound).
    #[pin]
    res: SpinLock<Option<Res>>,
    peer: SocketAddr,
    /// Reports a transmit failure found where `iscsi_conn_failure` cannot be called (under
    /// libiscsi's `frwd_lock`) as `ISCSI_ERR_XMIT_FAILED`; runs on the module's workqueue.
    #[pin]
    fail_work: Work<IserConn>,
    /// Counters and latency histogram (debugfs).
    stats: Arc<ConnStats>,
}

/// The counters of every connection that ended since the module was loaded
/// (`/sys/kernel/debug/iser/ended/counters`): a connection's are added when its statistics
/// are dropped, after its own debugfs file is gone, so that what a failed connection counted
/// outlives it.
pub(crate) static ENDED: Counters = Counters::new();

/// What `/sys/kernel/debug/iser/connection<sid>:<cid>/stats` shows: the peer, then the
/// counters and latency histogram of [`Stats`] (Documentation/admin-guide.rst).
pub(crate) struct ConnStats {
    /// The target; `None` for the view of [`ENDED`] ([`ConnStats::ended`]).
    peer: Option<SocketAddr>,
    s: Stats,
}

impl ConnStats {
    /// The view of [`ENDED`]: `peer -`, then its counters (no latency histogram).
    pub(crate) fn ended() -> Self {
        ConnStats {
            peer: None,
            s: Stats::default(),
        }
    }
}

impl Show for ConnStats {
    fn show(&self, w: &mut SeqWriter<'_>) -> fmt::Result {
        match self.peer {
            Some(p) => {
                writeln!(w, "peer {}", p)?;
                self.s.write(w)
            }
            None => {
                writeln!(w, "peer -")?;
                ENDED.write(w)
            }
        }
    }
}

impl Drop for ConnStats {
    fn drop(&mut self) {
        if self.peer.is_some() {
            self.s.c.add_to(&ENDED);
        }
    }
}

kernel::workqueue::impl_has_work! {
    impl HasWork<Self> for IserConn { self.fail_work }
}

impl WorkItem for IserConn {
    type Pointer = Arc<IserConn>;

    fn run(this: Arc<IserConn>) {
        let ctrl = this.ctrl.lock();
        if ctrl.state == State::Up {
            if let Some(i) = ctrl.iscsi {
                fail(&this.stats, i, crate::ffi::iscsi::err::XMIT_FAILED);
            }
        }
    }
}

/// Why `xmit_task` failed.
enum XmitError {
    /// Nothing of the task went out; libiscsi may send it again.
    Requeue(Error),
    /// Posting failed: the connection must fail. `sent` says whether the task's command
    /// already went out (then libiscsi must not send it again).
    Fatal { err: Error, sent: bool },
}

impl From<Error> for XmitError {
    fn from(e: Error) -> Self {
        XmitError::Requeue(e)
    }
}

/// Objects to drop outside `ctrl` (destroying a CM id waits for its handler, which takes
/// `ctrl`).
#[must_use]
struct Leftovers {
    cm_id: Option<CmId<IserConn>>,
    /// Removing a debugfs directory waits for its readers.
    _dbg: Option<Entry<ConnStats>>,
}

/// Reports a connection failure to libiscsi and counts it.
fn fail(st: &ConnStats, i: IscsiConn, err: u32) {
    Stats::inc(&st.s.c.err_conn_failure);
    i.failure(err);
}

fn log_wc_error(st: &ConnStats, what: &str, wc: &Wc) {
    Stats::inc(if wc.flushed {
        &st.s.c.err_flush
    } else {
        &st.s.c.err_completion
    });
    if wc.flushed {
        iser_dbg!("{} flushed\n", what);
    } else {
        iser_err!(
            "{} failure: {} ({}) vend_err {:x}\n",
            what,
            wc.status_msg(),
            wc.status,
            wc.vendor_err
        );
    }
}

impl IserConn {
    /// `ep_connect`: starts resolving `dst` (non-blocking; `ep_poll` waits).
    pub(crate) fn connect(dst: SocketAddr) -> Result<Arc<Self>> {
        let always_register = params::always_register();
        let stats = Arc::new(
            ConnStats {
                peer: Some(dst),
                s: Stats::default(),
            },
            GFP_KERNEL,
        )?;
        let conn = Arc::pin_init(
            pin_init!(IserConn {
                ctrl <- new_mutex!(Ctrl {
                    state: State::Init,
                    cm_id: None,
                    device: None,
                    sizing: None,
                    req: cm::Request { send_with_invalidate: always_register },
                    remote_inv: false,
                    iscsi: None,
                    dbg: None,
                }, "iser_conn_ctrl"),
                up <- new_condvar!("iser_conn_up"),
                dp <- new_spinlock!(Dp { qp: None, bound: None }, "iser_conn_dp"),
                rx <- new_spinlock!(Rx { rq: None, side: None }, "iser_conn_rx"),
                res <- new_spinlock!(None, "iser_conn_res"),
                peer: dst,
                fail_work <- kernel::workqueue::new_work!("iser_conn_fail"),
                stats,
            }),
            GFP_KERNEL,
        )?;
        let mut ctrl = conn.ctrl.lock();
        ctrl.state = State::Pending;
        let id = match CmId::new(conn.clone()) {
            Ok(id) => id,
            Err(e) => {
                iser_err!("rdma_create_id for {} failed: {:?}\n", dst, e);
                ctrl.state = State::Down;
                return Err(e);
            }
        };
        if let Err(e) = id.resolve_addr(&dst, RESOLVE_TIMEOUT_MS) {
            iser_err!("resolving address {} failed: {:?}\n", dst, e);
            ctrl.state = State::Down;
            drop(ctrl);
            drop(id);
            return Err(e);
        }
        ctrl.cm_id = Some(id);
        drop(ctrl);
        iser_info!("connecting to {}\n", dst);
        Ok(conn)
    }

    /// `ep_poll`.
    pub(crate) fn poll(&self, timeout_ms: u32) -> Result<Poll> {
        let mut ctrl = self.ctrl.lock();
        let mut left = kernel::time::msecs_to_jiffies(timeout_ms);
        loop {
            match ctrl.state {
                State::Up => return Ok(Poll::Up),
                State::Terminating | State::Down => return Ok(Poll::Failed),
                State::Init | State::Pending => {}
            }
            if left == 0 {
                return Ok(Poll::Pending);
            }
            match self.up.wait_interruptible_timeout(&mut ctrl, left) {
                CondVarTimeoutResult::Timeout => left = 0,
                CondVarTimeoutResult::Woken { jiffies } => left = jiffies,
                CondVarTimeoutResult::Signal { .. } => return Err(ERESTARTSYS),
            }
        }
    }

    /// `ep_disconnect`: tears the RDMA side down now; the libiscsi connection (if bound)
    /// stays bound until `stop_conn`.
    pub(crate) fn disconnect(&self) {
        let mut ctrl = self.ctrl.lock();
        let left = self.release_rdma(&mut ctrl);
        if ctrl.state != State::Down {
            ctrl.state = State::Down;
        }
        drop(ctrl);
        drop(left);
    }

    /// Runs `f` under a data-path lock (`dp`, `rx` or `res`) from process context:
    /// softirqs (completion handlers) are off while the lock is held. Values returned are
    /// dropped by the caller, after both.
    fn with_bh<T: Unpin, R>(lock: &SpinLock<T>, f: impl FnOnce(&mut T) -> R) -> R {
        let bh = bh::Disabled::new();
        let mut g = lock.lock();
        let r = f(&mut g);
        drop(g);
        drop(bh);
        r
    }

    /// Terminates the connection if it is up (3.8.1); returns whether it did.
    fn terminate(&self, ctrl: &mut Ctrl) -> bool {
        if ctrl.state != State::Up {
            return false;
        }
        ctrl.state = State::Terminating;
        if let Some(i) = &ctrl.iscsi {
            i.suspend_queue();
        }
        if let Some(id) = &ctrl.cm_id {
            if let Err(e) = id.disconnect() {
                iser_warn!("rdma_disconnect to {} failed: {:?}\n", self.peer, e);
            }
        }
        self.up.notify_all();
        true
    }

    /// Releases every RDMA resource (see the module documentation). The CM id comes back to
    /// be dropped by the caller after unlocking `ctrl`.
    fn release_rdma(&self, ctrl: &mut Ctrl) -> Leftovers {
        self.terminate(ctrl);
        if matches!(ctrl.state, State::Init | State::Pending) {
            ctrl.state = State::Terminating;
            self.up.notify_all();
        }
        // The completion side first: from here on completion handlers find nothing, so
        // they neither repost receives nor deliver PDUs; then the send side.
        let (rq, side) = Self::with_bh(&self.rx, |rx| (rx.rq.take(), rx.side.take()));
        let mut qp = Self::with_bh(&self.dp, |dp| dp.qp.take());
        if let Some(qp) = &mut qp {
            // All posted work completes (flushed) before this returns.
            qp.drain(rq);
        }
        // `xmit_task` found `bound` under `dp`, so it is done with `res` too; a later
        // `cleanup_task` finds nothing.
        let bound = Self::with_bh(&self.dp, |dp| dp.bound.take());
        if let Some(mut r) = Self::with_bh(&self.res, |r| r.take()) {
            r.release_all();
        }
        if let Some(mut b) = bound {
            b.release_all();
            drop(b);
        }
        // The ring's buffers go with the last reference to the shared state, after the drain.
        drop(side);
        if let Some(qp) = qp {
            qp.destroy();
        }
        if let Some(d) = ctrl.device.take() {
            if let Some(devs) = DEVICES.get() {
                devs.put(d);
            }
        }
        Leftovers {
            cm_id: ctrl.cm_id.take(),
            _dbg: ctrl.dbg.take(),
        }
    }

    /// `get_ep_param`.
    pub(crate) fn ep_param(&self, param: u32, buf: &mut SysfsBuf) -> Result<usize> {
        use crate::ffi::iscsi::param as p;
        if param != p::ISCSI_PARAM_CONN_PORT && param != p::ISCSI_PARAM_CONN_ADDRESS {
            return Err(errno::ENOSYS());
        }
        let ctrl = self.ctrl.lock();
        match &ctrl.cm_id {
            Some(id) if ctrl.device.is_some() => id.dst_param(param, buf),
            _ => Err(errno::ENOTCONN()),
        }
    }

    /// Host limits for a session on this connection (2.4).
    pub(crate) fn session_limits(&self, req: iscsi::SessionRequest) -> Result<iscsi::HostLimits> {
        let ctrl = self.ctrl.lock();
        if ctrl.state != State::Up {
            iser_err!("iser conn to {} already started teardown\n", self.peer);
            return Err(EINVAL);
        }
        let (Some(s), Some(d)) = (ctrl.sizing, ctrl.device.as_ref()) else {
            return Err(EINVAL);
        };
        let param = params::max_sectors();
        let max_sectors = sizing::host_max_sectors(param, s.sg_tablesize);
        if max_sectors < param {
            iser_warn!(
                "max_sectors was reduced from {} to {}\n",
                param,
                max_sectors
            );
        }
        Ok(iscsi::HostLimits {
            can_queue: sizing::can_queue(req.cmds_max, s.max_cmds),
            cmd_per_lun: req.qdepth,
            max_lun: params::max_lun(),
            sg_tablesize: s.sg_tablesize.min(u32::from(u16::MAX)) as u16,
            max_sectors,
            virt_boundary_4k: !d.caps.sg_gaps_reg,
            parent: d.dev.dma_parent(),
        })
    }

    /// `bind_conn`: allocates the per-session buffers and the registration pool (3.6).
    pub(crate) fn bind(this: &Arc<Self>, iconn: IscsiConn) -> Result {
        let mut ctrl = this.ctrl.lock();
        if ctrl.state != State::Up {
            iser_err!("iser conn to {} already started teardown\n", this.peer);
            return Err(EINVAL);
        }
        if ctrl.iscsi.is_some() {
            iser_err!("iser conn to {} is already bound\n", this.peer);
            return Err(EINVAL);
        }
        let (Some(s), Some(d)) = (ctrl.sizing, ctrl.device.clone()) else {
            return Err(EINVAL);
        };
        // Sized for the session's SCSI host, which keeps the limits it was created with: after
        // a recovery the new connection may be on another device, and `max_sectors` may have
        // changed since. A device that cannot carry them is refused here with the reason,
        // rather than bound to requeue the commands it cannot take until the SCSI timeout.
        let s = match iconn.host_shape() {
            Some(h) => {
                let host = sizing::HostShape {
                    sg_tablesize: h.sg_tablesize,
                    max_sectors: h.max_sectors,
                    can_queue: h.can_queue,
                    virt_boundary: h.virt_boundary,
                };
                let dev = sizing::DevLimits {
                    max_qp_wr: d.caps.max_qp_wr,
                    max_fast_reg_page_list_len: d.caps.max_fast_reg_page_list_len,
                    sg_gaps: d.caps.sg_gaps_reg,
                };
                match sizing::for_host(host, dev) {
                    Ok(n) => n,
                    Err(e) => {
                        match e {
                            sizing::Unfit::Pages { host, conn }
                            | sizing::Unfit::Queue { host, conn } => iser_err!(
                                "cannot bind the connection to {} on {} to its session: {} ({} > {}); log the session out and in again to size it for this device\n",
                                this.peer,
                                d.dev.name(),
                                e.reason(),
                                host,
                                conn
                            ),
                            _ => iser_err!(
                                "cannot bind the connection to {} on {} to its session: {}; log the session out and in again to size it for this device\n",
                                this.peer,
                                d.dev.name(),
                                e.reason()
                            ),
                        }
                        return Err(EINVAL);
                    }
                }
            }
            None => s,
        };
        ctrl.sizing = Some(s);
        let info = iconn.session_info();
        let st = this.stats.clone();
        let (b, side, res) = Self::alloc_bound(iconn, &info, s, &d, ctrl.remote_inv, st)
            .inspect_err(|e| {
                iser_err!("failed allocating connection buffers: {:?}\n", e);
            })?;
        // `res` before `bound`: a transmit that finds `bound` finds `res`.
        let old_res = Self::with_bh(&this.res, |r| r.replace(res));
        let old = Self::with_bh(&this.dp, |dp| dp.bound.replace(b));
        let old_side = Self::with_bh(&this.rx, |rx| rx.side.replace(side));
        drop(old);
        drop(old_side);
        drop(old_res);
        ctrl.iscsi = Some(iconn);
        iconn.bind(this.clone());
        // Statistics in debugfs, named like the connection in sysfs. A failure (debugfs off,
        // or a directory left by a connection not yet torn down) only costs the file.
        let (sid, cid) = iconn.ids();
        if let (Some(root), Ok(name)) = (
            debugfs::ROOT.get(),
            CString::try_from_fmt(format_args!("connection{}:{}", sid, cid)),
        ) {
            ctrl.dbg = root.add(&name, c_str!("stats"), this.stats.clone());
            if ctrl.dbg.is_none() {
                iser_dbg!("no debugfs statistics for connection{}:{}\n", sid, cid);
            }
        }
        Ok(())
    }

    fn alloc_bound(
        iscsi: IscsiConn,
        info: &SessionInfo,
        s: sizing::Sizing,
        d: &IserDevice,
        remote_inv: bool,
        st: Arc<ConnStats>,
    ) -> Result<(Bound, RxSide, Res)> {
        let n = (info.cmds_max as usize).max(1);
        let nrx = n + sq::RX_BATCH;
        let dev = d.dev;
        let mut hdrs = KVVec::with_capacity(n, GFP_KERNEL)?;
        let mut dirs = KVVec::with_capacity(n, GFP_KERNEL)?;
        let mut sh_slots = KVVec::with_capacity(n, GFP_KERNEL)?;
        let mut rx_slots = KVVec::with_capacity(n, GFP_KERNEL)?;
        for _ in 0..n {
            hdrs.push(None, GFP_KERNEL)?;
            dirs.push([None, None], GFP_KERNEL)?;
            sh_slots.push(
                SlotShared {
                    sends_pending: AtomicU32::new(0),
                    tmf_ref: AtomicU32::new(0),
                    lun: AtomicU64::new(0),
                    xmit_busy: AtomicBool::new(false),
                    t0: AtomicU64::new(0),
                    exposed: [AtomicU64::new(0), AtomicU64::new(0)],
                },
                GFP_KERNEL,
            )?;
            rx_slots.push(
                RxSlot {
                    put_on_send: None,
                    deferred: None,
                },
                GFP_KERNEL,
            )?;
        }
        // Whether this is a discovery session is not known yet at bind (see
        // `Shared::discovery`): the pool is sized as for any session, as in C.
        let nfr = (info.scsi_cmds_max as usize).clamp(1, ptask::EXPOSED_MAX_MRS as usize);
        let mut fr = KVec::with_capacity(nfr, GFP_KERNEL)?;
        let mut valid_key = KVec::with_capacity(nfr, GFP_KERNEL)?;
        for _ in 0..nfr {
            fr.push(
                Mr::new(&d.pd, d.caps.sg_gaps_reg, s.pages_per_mr)?,
                GFP_KERNEL,
            )?;
            valid_key.push(AtomicU64::new(0), GFP_KERNEL)?;
        }
        let fr_free = FreeList::new(nfr)?;
        let ndo = sizing::dataout_descs(s.max_send_wr, n);
        let dataout_free = FreeList::new(ndo)?;
        let mut dataout_owner = KVec::with_capacity(ndo, GFP_KERNEL)?;
        for _ in 0..ndo {
            dataout_owner.push(AtomicUsize::new(usize::MAX), GFP_KERNEL)?;
        }
        let pages = ndo.div_ceil(sizing::DATAOUTS_PER_PAGE);
        let mut dataout = KVec::with_capacity(pages, GFP_KERNEL)?;
        for _ in 0..pages {
            dataout.push(
                DmaBuf::new(
                    dev,
                    sizing::DATAOUTS_PER_PAGE * sizing::HEADERS_LEN,
                    DmaDir::ToDevice,
                )?,
                GFP_KERNEL,
            )?;
        }
        let sh = Arc::new(
            Shared {
                iscsi,
                n,
                nrx,
                cqes: CqeTable::new(cqe_table_len(n, nrx, ndo))?,
                rx: DmaBuf::new(dev, nrx * sizing::RX_PAYLOAD, DmaDir::FromDevice)?,
                login_rsp: DmaBuf::new(dev, sizing::RX_LOGIN_SIZE, DmaDir::FromDevice)?,
                lkey: d.pd.local_dma_lkey(),
                remote_inv,
                discovery: AtomicBool::new(info.discovery),
                slots: sh_slots,
                valid_key,
                dataout_owner,
            },
            GFP_KERNEL,
        )?;
        let res = Res {
            sh: sh.clone(),
            dirs,
            fr_free,
        };
        let side = RxSide {
            sh: sh.clone(),
            batch: sq::RxBatch::default(),
            slots: rx_slots,
        };
        let b = Bound {
            sh,
            login_req: DmaBuf::new(dev, sizing::LOGIN_DATA_LEN, DmaDir::ToDevice)?,
            ring_posted: false,
            hdrs,
            fr,
            dataout,
            dataout_free,
            dataout_cap: ndo,
            signals: sq::Signals::default(),
            global_rkey: d.pd.global_rkey(),
            always_register: params::always_register(),
            dev,
            st,
        };
        Ok((b, side, res))
    }

    /// `start_conn`: refuses negotiated parameters under which one write could need more
    /// unsolicited Data-Outs than the connection has descriptors (it could never be sent:
    /// see `Bound::dataout`). Say so in the log; iscsid reports the login as failed.
    pub(crate) fn start(iconn: IscsiConn) -> Result {
        let Some(c) = iconn.bound::<IserConn>() else {
            return Ok(());
        };
        let max_io = c
            .ctrl
            .lock()
            .sizing
            .map_or(0, |s| s.sg_tablesize.saturating_mul(sizing::PAGE));
        let cap = Self::with_bh(&c.dp, |dp| dp.bound.as_ref().map(|b| b.dataout_cap));
        let Some(cap) = cap else {
            return Ok(());
        };
        let n = iconn.negotiated();
        let need =
            sizing::max_dataouts_per_cmd(n.initial_r2t, n.first_burst, max_io, n.max_xmit_dlength);
        match need {
            Some(k) if k <= cap => Ok(()),
            _ => {
                iser_err!(
                    "{}: FirstBurstLength {} in Data-Out PDUs of {} bytes (MaxXmitDataSegmentLength) needs up to {} PDUs per {}-byte write, more than the {} this connection's send queue holds; refusing the connection (lower FirstBurstLength or max_sectors, or raise the target's MaxRecvDataSegmentLength)\n",
                    c.peer,
                    n.first_burst,
                    n.max_xmit_dlength,
                    need.map_or(u64::MAX, |k| k as u64),
                    max_io,
                    cap
                );
                Err(EINVAL)
            }
        }
    }

    /// `stop_conn` (3.7): terminate and release the RDMA side if `ep_disconnect` has not,
    /// let libiscsi fail the outstanding tasks, then unbind.
    pub(crate) fn stop(iconn: IscsiConn, flag: kernel::ffi::c_int) {
        let conn: Option<Arc<IserConn>> = iconn.bound::<IserConn>();
        if let Some(c) = &conn {
            let mut ctrl = c.ctrl.lock();
            let left = c.release_rdma(&mut ctrl);
            drop(ctrl);
            drop(left);
        }
        iconn.stop(flag);
        if let Some(c) = iconn.unbind::<IserConn>() {
            let mut ctrl = c.ctrl.lock();
            if ctrl.iscsi.as_ref().is_some_and(|i| i.same(&iconn)) {
                ctrl.iscsi = None;
            }
        }
        drop(conn);
    }

    /// Iterates the task-send path: the caller holds `dp` via `g`.
    fn with_dp<R>(&self, f: impl FnOnce(&Qp<IserConn>, &mut Bound) -> Result<R>) -> Result<R> {
        let mut g = self.dp.lock();
        let dp = &mut *g;
        match (&dp.qp, dp.bound.as_mut()) {
            (Some(qp), Some(b)) => f(qp, b),
            _ => Err(ENODEV),
        }
    }

    /// `init_task` (atomic, under libiscsi's `frwd_lock`, before the command gets its CmdSN):
    /// refuses a SCSI command that can never go out on this transport
    /// ([`ptask::refusal`]). libiscsi completes a command whose `init_task` failed at once
    /// with `DID_ABORT` (no retry: the midlayer passes it up), where any error from
    /// `xmit_task` requeues it and the block layer sends it again until the SCSI timeout.
    /// Nothing else is done here: the task's header area is mapped at its first
    /// transmission, under the `dp` lock that `xmit_task` takes anyway.
    pub(crate) fn init_task(&self, task: &mut Task<'_>) -> Result {
        if !task.is_scsi() {
            return Ok(());
        }
        let flags = task.bhs()[1];
        let (prot_normal, len, entries) = match task.scsi_data() {
            Some(d) => (d.prot_normal, d.len, d.entries()),
            None => (true, 0, 0),
        };
        match ptask::refusal(flags, prot_normal, len, entries) {
            None => Ok(()),
            Some(r) => {
                Stats::inc(&self.stats.s.c.err_cmd_refused);
                iser_err!("command to {} refused: {}\n", self.peer, r.reason());
                Err(EINVAL)
            }
        }
    }

    /// `xmit_task` (atomic, under libiscsi's `frwd_lock`).
    ///
    /// A task none of whose PDUs went out returns its error, and libiscsi sends it again
    /// later. Once its command went out, a failure of a later PDU (an unsolicited Data-Out)
    /// must not make libiscsi send the command again with the same CmdSN: the connection
    /// fails instead (from the workqueue, because `iscsi_conn_failure` takes `frwd_lock`) and
    /// recovery completes the task.
    pub(crate) fn xmit_task(this: ArcBorrow<'_, Self>, task: &mut Task<'_>) -> Result {
        let r = this.with_dp(|qp, b| {
            // Map the task's header area once per connection (libiscsi keeps it for the
            // session's life). A failure returns the task to libiscsi, which sends it later.
            let dev = b.dev;
            let hdr = b.hdrs.get_mut(task.index()).ok_or(EINVAL)?;
            if hdr.is_none() {
                *hdr = Some(task.map_hdrs(dev).inspect_err(|e| {
                    iser_err!("mapping a task header failed: {:?}\n", e);
                })?);
            }
            Ok(if task.is_scsi() {
                // A response that overtakes the unsolicited Data-Outs waits for them to be
                // posted and counted (see `SlotShared::xmit_busy`).
                let busy = task.has_unsol_data();
                let idx = task.index();
                let mark = |b: &Bound, v: bool| {
                    if let Some(s) = b.sh.slots.get(idx) {
                        s.xmit_busy.store(v, Ordering::Release);
                    }
                };
                if busy {
                    // Every Data-Out of this write must have a descriptor before its command
                    // goes out (once it has, a Data-Out that cannot be sent fails the
                    // connection): else libiscsi requeues the command, and descriptors come
                    // back as earlier Data-Outs complete.
                    let need = sizing::dataouts_for(task.unsol_len(), task.max_xmit_dlength());
                    if !matches!(need, Some(k) if k <= b.dataout_free.available()) {
                        Stats::inc(&b.st.s.c.requeue_dataout);
                        return Ok(Err(XmitError::Requeue(EAGAIN)));
                    }
                    mark(b, true);
                }
                let r = Self::send_command(qp, b, &this.res, task).and_then(|w| {
                    Self::send_data_outs(qp, b, task, w)
                        .map_err(|err| XmitError::Fatal { err, sent: true })
                });
                if busy {
                    mark(b, false);
                }
                r
            } else {
                Self::send_control(qp, b, &this.rx, task)
            })
        })?;
        match r {
            Ok(()) => Ok(()),
            Err(XmitError::Requeue(e)) => Err(e),
            Err(XmitError::Fatal { err, sent }) => {
                iser_err!(
                    "transmit to {} failed ({:?}), failing the connection\n",
                    this.peer,
                    err
                );
                if let Some(wq) = crate::ffi::wq::WQ.get() {
                    // Already queued: the failure is reported once.
                    let _ = wq.queue().enqueue(Arc::<Self>::from(this));
                }
                if sent {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }

    fn post_task_send(
        qp: &Qp<IserConn>,
        b: &mut Bound,
        idx: usize,
        reg: Option<(usize, Option<u32>, RemoteAccess)>,
        data: Option<Sge>,
        track: bool,
    ) -> Result {
        let lkey = b.sh.lkey;
        let sig = b.signals.next(track);
        let cqe = b.sh.cqe_of(match sig {
            sq::Signal::Track => Cqe::Send(idx),
            _ => Cqe::Quiet,
        });
        let reg_cqe = b.sh.cqe_of(Cqe::Reg);
        let pending = &b.sh.slots.get(idx).ok_or(EINVAL)?.sends_pending;
        let h = b.hdrs.get(idx).and_then(Option::as_ref).ok_or(EINVAL)?;
        let mut sges = [
            Sge {
                addr: h.dma(),
                len: sizing::HEADERS_LEN as u32,
                lkey,
            },
            Sge::default(),
        ];
        // A header-only SEND goes inline where the QP allows it: the provider copies the 76
        // bytes at post time instead of the device reading them (for soft-RoCE: instead of a
        // memory region lookup and copy when it builds the packet).
        let inline = match data {
            None => h
                .inline(sizing::HEADERS_LEN)
                .filter(|i| i.len() <= qp.max_inline()),
            Some(_) => None,
        };
        let is_inline = inline.is_some();
        let payload = match inline {
            Some(i) => Gather::Inline(i),
            None => {
                h.sync_for_device();
                let nsge = if let Some(d) = data {
                    sges[1] = d;
                    2
                } else {
                    1
                };
                Gather::Mapped(&sges[..nsge])
            }
        };
        let rr = match reg {
            Some((i, inval, access)) => Some(RegReq {
                mr: b.fr.get(i).ok_or(EINVAL)?,
                invalidate: inval,
                cqe: reg_cqe,
                access,
            }),
            None => None,
        };
        // Counted before the post: the completion may run on another CPU before the post
        // returns.
        let track = matches!(sig, sq::Signal::Track);
        if track {
            pending.fetch_add(1, Ordering::AcqRel);
        }
        if let Err(e) = qp.post_send(rr, cqe, payload, sig.signaled()) {
            if track {
                pending.fetch_sub(1, Ordering::AcqRel);
            }
            Stats::inc(&b.st.s.c.err_post);
            return Err(e);
        }
        if is_inline {
            Stats::inc(&b.st.s.c.sends_inline);
        }
        b.signals.posted(sig);
        if matches!(sig, sq::Signal::Quiet) {
            Stats::inc(&b.st.s.c.sends_unsignaled);
        }
        Ok(())
    }

    fn send_control(
        qp: &Qp<IserConn>,
        b: &mut Bound,
        rx: &SpinLock<Rx>,
        task: &mut Task<'_>,
    ) -> core::result::Result<(), XmitError> {
        let fatal = |err| XmitError::Fatal { err, sent: false };
        let idx = task.index();
        let hdrs = task.hdrs_mut();
        hdrs[..hdr::LEN].copy_from_slice(&hdr::Header::default().encode());
        let bhs_bytes = *task.bhs();
        let dlen = bhs::data_segment_length(&bhs_bytes) as usize;
        let op = bhs::opcode(&bhs_bytes);
        // A task management request: which tasks its answer releases (set before the post;
        // `on_rx`).
        if let Some(s) = b.sh.slots.get(idx) {
            let r = bhs::tmf_scope(&bhs_bytes).and_then(|sc| ptask::TmfRef::of(sc, b.sh.n));
            s.lun.store(bhs::lun(&bhs_bytes), Ordering::Relaxed);
            s.tmf_ref.store(ptask::TmfRef::encode(r), Ordering::Release);
        }
        let login_task = task.is_login_task();
        let mut data = None;
        if dlen > 0 {
            if !login_task {
                iser_err!("data present on non login task (opcode {:#x})\n", op);
                return Err(EINVAL.into());
            }
            let payload = task.mgmt_data();
            if payload.len() > sizing::LOGIN_DATA_LEN || payload.len() < dlen {
                iser_err!(
                    "login/text payload of {} bytes does not fit\n",
                    payload.len()
                );
                return Err(EINVAL.into());
            }
            let n = payload.len();
            let Some(dst) = b.login_req.bytes_mut().get_mut(..n) else {
                return Err(EINVAL.into());
            };
            dst.copy_from_slice(payload);
            b.login_req.sync_for_device(0, n);
            data = Some(Sge {
                addr: b.login_req.dma(0),
                len: n as u32,
                lkey: b.sh.lkey,
            });
        }
        if login_task {
            let sh = &*b.sh;
            let g = rx.lock();
            let rq = g.rq.as_ref().ok_or(ENODEV).map_err(fatal)?;
            sh.login_rsp.sync_for_device(0, sizing::RX_LOGIN_SIZE);
            rq.post_recv(
                sh.cqe_of(Cqe::LoginRx),
                Sge {
                    addr: sh.login_rsp.dma(0),
                    len: sizing::RX_LOGIN_SIZE as u32,
                    lkey: sh.lkey,
                },
            )
            .map_err(fatal)?;
            let to_ffp = op == bhs::OP_LOGIN && ptask::login_to_ffp(bhs_bytes[1]);
            let discovery = sh.iscsi.is_discovery();
            sh.discovery.store(discovery, Ordering::Relaxed);
            // Pre-post the ring (all but slot 0, which follows the final login response)
            // once, before the request that may enter full feature phase (4.11); never for
            // a discovery session, whose Text responses need the login buffer.
            if to_ffp && !discovery && !b.ring_posted {
                for i in 1..sh.nrx {
                    sh.post_rx(rq, i).map_err(fatal)?;
                }
                b.ring_posted = true;
            }
        }
        // A PDU nobody answers (reserved ITT: a NOP-Out) gives its task reference back when
        // its SEND completed: recorded before the post, which the completion may overtake.
        let reserved = bhs::itt(&bhs_bytes) == bhs::RESERVED_ITT;
        if reserved {
            Self::set_put_on_send(rx, idx, Some(task.handle()));
        }
        if let Err(e) = Self::post_task_send(qp, b, idx, None, data, true) {
            if reserved {
                Self::set_put_on_send(rx, idx, None);
            }
            return Err(fatal(e));
        }
        Stats::inc(&b.st.s.c.control_pdus);
        Ok(())
    }

    /// Sets (or clears) the task reference slot `idx` drops when its SENDs completed.
    fn set_put_on_send(rx: &SpinLock<Rx>, idx: usize, h: Option<TaskHandle>) {
        let mut g = rx.lock();
        if let Some(s) = g.side.as_mut().and_then(|s| s.slots.get_mut(idx)) {
            s.put_on_send = h;
        }
    }

    /// Sends a SCSI command; returns the address and key of a write's buffer, from which
    /// its unsolicited Data-Outs are sent.
    fn send_command(
        qp: &Qp<IserConn>,
        b: &mut Bound,
        res: &SpinLock<Option<Res>>,
        task: &mut Task<'_>,
    ) -> core::result::Result<Option<(u64, u32)>, XmitError> {
        let idx = task.index();
        // The fields used, read in place (not a copy of the whole BHS).
        let (flags, edtl, lun) = {
            let h = task.bhs();
            (
                h[1],
                u32::from_be_bytes([h[20], h[21], h[22], h[23]]),
                bhs::lun(h),
            )
        };
        // The refusals below are not reached: `init_task` failed such a command for good
        // before it got here (`ptask::refusal`). Kept so that `send_command` stands alone.
        let dir = match (flags & ptask::CMD_READ != 0, flags & ptask::CMD_WRITE != 0) {
            (false, false) => DataDir::None,
            (true, false) => DataDir::Read,
            (false, true) => DataDir::Write,
            (true, true) => {
                iser_err!("bidirectional commands are not supported\n");
                return Err(EINVAL.into());
            }
        };
        let mut header = hdr::Header::default();
        let mut reg = None;
        let mut imm_sge = None;
        let mut write_buf = None;
        // (data length, immediate bytes), counted once the command went out: a command that
        // returns a `Requeue` error here is sent again by libiscsi.
        let mut counts = (0u32, 0u32);
        if dir != DataDir::None {
            let data = task.scsi_data().ok_or(EINVAL)?;
            if !data.prot_normal {
                iser_err!("T10-PI command on a connection without PI\n");
                return Err(EINVAL.into());
            }
            let (dma_dir, slot_dir) = match dir {
                DataDir::Read => (DmaDir::FromDevice, 0),
                _ => (DmaDir::ToDevice, 1),
            };
            let Some(sg) = data.map(b.dev, dma_dir)? else {
                iser_err!("{:?} command without a data buffer\n", dir);
                return Err(EINVAL.into());
            };
            let imm = task.imm_count();
            let all_imm = dir == DataDir::Write && data.len == imm;
            counts = (data.len, imm);
            // One round trip of `res` (a leaf lock; `cleanup_task` takes it on the completion
            // side): the MR from the pool, then the mapping recorded in the task's slot.
            let mut g = res.lock();
            let (dres, mr_rkey, inval) = b.register(&mut g, sg, all_imm)?;
            let (rkey, exposed) = match (dres.fr, mr_rkey) {
                (Some(i), Some(rkey)) => (
                    rkey,
                    ptask::Exposed::Mr {
                        idx: i as u32,
                        rkey,
                    },
                ),
                _ => (b.global_rkey.unwrap_or(0), ptask::Exposed::DmaKey),
            };
            match dir {
                DataDir::Read => {
                    header.read = Some(hdr::Stag {
                        stag: rkey,
                        va: dres.iova,
                    })
                }
                _ => {
                    header.write =
                        ptask::write_stag(rkey, dres.iova, imm, task.unsol_len(), edtl, data.len);
                    if imm > 0 {
                        imm_sge = Some(Sge {
                            addr: dres.iova,
                            len: imm,
                            lkey: dres.lkey,
                        });
                    }
                    write_buf = Some((dres.iova, dres.lkey));
                }
            }
            // The target writes a READ's buffer and reads a WRITE's, never the other way.
            let access = match dir {
                DataDir::Read => RemoteAccess::Write,
                _ => RemoteAccess::Read,
            };
            reg = dres.fr.map(|i| (i, inval, access));
            // Published before the post: the response's Send with Invalidate is checked
            // against it, a LUN reset's answer against the LUN.
            if let Some(s) = b.sh.slots.get(idx) {
                s.lun.store(lun, Ordering::Relaxed);
                s.exposed[slot_dir].store(exposed.encode(), Ordering::Release);
            }
            match &mut *g {
                Some(r) => {
                    // A slot index past the table (not reached: the header lookup checked
                    // it) releases the new mapping at once instead of dropping it mapped.
                    let old = match r.dirs.get_mut(idx) {
                        Some(d) => d[slot_dir].replace(dres),
                        None => Some(dres),
                    };
                    if let Some(old) = old {
                        r.release_dir(old);
                    }
                }
                // Not reached: `res` is installed before `bound` and taken after it, and
                // `dp` is held. The device is alive while `bound` is.
                None => dres.sg.unmap(),
            }
            drop(g);
        }
        task.hdrs_mut()[..hdr::LEN].copy_from_slice(&header.encode());
        if let Some(s) = b.sh.slots.get(idx) {
            // 0: not measured (the histogram is off by default: two clock reads per command).
            let t0 = if params::latency_histogram() {
                time::clock_ns().max(1)
            } else {
                0
            };
            s.t0.store(t0, Ordering::Relaxed);
        }
        // Immediate data reads the SCSI buffer: the response waits for this completion.
        let track = imm_sge.is_some();
        if let Err(e) = Self::post_task_send(qp, b, idx, reg, imm_sge, track) {
            // The chain (invalidation, registration, SEND) may have been posted in part:
            // the MR's key state is unknown, so the connection (and with it the pool) goes.
            if let Some(r) = &mut *res.lock() {
                r.release_task(idx);
            }
            return Err(XmitError::Fatal {
                err: e,
                sent: false,
            });
        }
        let c = &b.st.s.c;
        let (len, imm) = counts;
        match dir {
            DataDir::None => Stats::inc(&c.cmds_nodata),
            DataDir::Read => {
                Stats::inc(&c.cmds_read);
                Stats::add(&c.bytes_read, len.into());
            }
            _ => {
                Stats::inc(&c.cmds_write);
                Stats::add(&c.bytes_write, len.into());
                Stats::add(&c.bytes_immediate, imm.into());
            }
        }
        Ok(write_buf)
    }

    /// Sends a write's unsolicited Data-Outs from its buffer (`buf`: address and key).
    fn send_data_outs(
        qp: &Qp<IserConn>,
        b: &mut Bound,
        task: &mut Task<'_>,
        buf: Option<(u64, u32)>,
    ) -> Result {
        let idx = task.index();
        while task.has_unsol_data() {
            let Some((iova, lkey)) = buf else {
                return Err(EINVAL);
            };
            let buf_len = task.scsi_data().map_or(0, |s| s.len);
            let Some(di) = b.dataout_free.pop() else {
                iser_err!("no Data-Out descriptor free\n");
                return Err(EAGAIN);
            };
            let off = (di % sizing::DATAOUTS_PER_PAGE) * sizing::HEADERS_LEN;
            let Some(page) = b.dataout.get_mut(di / sizing::DATAOUTS_PER_PAGE) else {
                // Not reached: the free list holds indices of the pages allocated at bind.
                b.dataout_free.push(di);
                return Err(EINVAL);
            };
            let Some(area) = page.bytes_mut().get_mut(off..off + sizing::HEADERS_LEN) else {
                b.dataout_free.push(di);
                return Err(EINVAL);
            };
            area[..hdr::LEN].copy_from_slice(&hdr::Header::default().encode());
            let mut bhs48 = [0u8; bhs::BHS_LEN];
            let (doff, dlen) = task.prep_data_out(&mut bhs48);
            area[hdr::LEN..].copy_from_slice(&bhs48);
            if u64::from(doff) + u64::from(dlen) > u64::from(buf_len) {
                iser_err!(
                    "inconsistent Data-Out: offset {} length {} buffer {}\n",
                    doff,
                    dlen,
                    buf_len
                );
                task.undo_data_out();
                b.dataout_free.push(di);
                return Err(EINVAL);
            }
            page.sync_for_device(off, sizing::HEADERS_LEN);
            let sges = [
                Sge {
                    addr: page.dma(off),
                    len: sizing::HEADERS_LEN as u32,
                    lkey: b.sh.lkey,
                },
                Sge {
                    addr: iova + u64::from(doff),
                    len: dlen,
                    lkey,
                },
            ];
            // Owner and count before the post, which the completion may overtake.
            let (Some(owner), Some(pending)) = (
                b.sh.dataout_owner.get(di),
                b.sh.slots.get(idx).map(|s| &s.sends_pending),
            ) else {
                task.undo_data_out();
                b.dataout_free.push(di);
                return Err(EINVAL);
            };
            owner.store(idx, Ordering::Release);
            pending.fetch_add(1, Ordering::AcqRel);
            if let Err(e) = qp.post_send(
                None,
                b.sh.cqe_of(Cqe::DataOut(di)),
                Gather::Mapped(&sges),
                true,
            ) {
                pending.fetch_sub(1, Ordering::AcqRel);
                owner.store(usize::MAX, Ordering::Release);
                Stats::inc(&b.st.s.c.err_post);
                iser_err!("posting Data-Out failed: {:?}\n", e);
                task.undo_data_out();
                b.dataout_free.push(di);
                return Err(e);
            }
            task.advance_unsol(dlen);
            b.signals.posted(sq::Signal::Track);
            Stats::inc(&b.st.s.c.dataout_pdus);
            Stats::add(&b.st.s.c.bytes_dataout, dlen.into());
        }
        Ok(())
    }

    /// `cleanup_task` (atomic, back_lock held): takes only `rx` and then `res`, never `dp`,
    /// so a task completed on one CPU is not held up by a transmit on another.
    pub(crate) fn cleanup_task(&self, task: &mut Task<'_>) {
        #[cfg(iser_test_faults)]
        crate::planted::on_cleanup_task(task);
        let i = task.index();
        // A response held until this task's SENDs complete (`on_rx`) answers this task only:
        // when the task ends first (abort, connection cleanup), the response is dropped, so
        // that the completion never delivers it to the next owner of the task's tag.
        //
        // A task that ends without its response still has a valid key unless its ABORT
        // TASK's answer invalidated it (`on_rx`): a LUN or target reset, a TMF that timed
        // out, the connection's cleanup. The target could RDMA into or out of pages the
        // block layer takes back now. A LOCAL_INV is posted for it here, before the MR goes
        // back to the pool in `res` below, so that it precedes the MR's next registration on
        // the send queue. It cannot be waited for (atomic context, and libiscsi hands the
        // command back right after): the window is the LOCAL_INV's execution, where it was
        // until the MR's next use (SRP does the same). A failed post (a QP in error) leaves
        // the key to the next registration's chained LOCAL_INV or to teardown.
        //
        // `rx` is taken before `res`, never under it; libiscsi's locks may be held (never
        // taken under `rx`).
        let (dropped, invalidated) = Self::with_bh(&self.rx, |rx| {
            let Rx { rq, side } = rx;
            let Some(side) = side.as_mut() else {
                return (false, Ok(false));
            };
            let dropped = side
                .slots
                .get_mut(i)
                .and_then(|s| s.deferred.take())
                .is_some();
            // A task management request that ends here is not answered any more.
            if let Some(s) = side.sh.slots.get(i) {
                s.tmf_ref.store(0, Ordering::Release);
            }
            // After teardown took the handle there is nothing to post on (and no target).
            let invalidated = match rq {
                Some(_) => Self::invalidate_local(rq.as_ref(), &side.sh, i, i, |_| true),
                None => Ok(false),
            };
            (dropped, invalidated)
        });
        if dropped {
            Stats::inc(&self.stats.s.c.rsp_held_dropped);
        }
        // A failed post is counted; the key stays to the next registration's chained
        // LOCAL_INV or to teardown (see above).
        let invalidated = invalidated.unwrap_or_else(|_| {
            Stats::inc(&self.stats.s.c.err_post);
            false
        });
        if invalidated {
            Stats::inc(&self.stats.s.c.inval_local);
            Stats::inc(&self.stats.s.c.inval_aborted);
        }
        if let Some(r) = &mut *self.res.lock() {
            r.release_task(i);
        }
    }

    /// Delivers a validated PDU (BHS and data segment; see [`rx::parse`]) to libiscsi. No
    /// lock is held: libiscsi takes its own and may call `cleanup_task` back.
    fn deliver(st: &ConnStats, iconn: IscsiConn, h: &mut [u8; bhs::BHS_LEN], data: &mut [u8]) {
        let rc = iconn.complete_pdu(h, data);
        if rc != 0 && rc as u32 != crate::ffi::iscsi::err::NO_SCSI_CMD {
            fail(st, iconn, rc as u32);
        }
    }

    /// Fails the connection because of a PDU the target should not have sent.
    fn reject_pdu(st: &ConnStats, iconn: IscsiConn, what: &str, e: rx::Error) {
        Stats::inc(&st.s.c.err_protocol);
        iser_err!(
            "{}: {} ({:?}), terminating connection\n",
            what,
            e.reason(),
            e
        );
        let err = match e {
            rx::Error::Bhs(bhs::Error::DataTooLong { .. })
            | rx::Error::Bhs(bhs::Error::DataBeyondReceived { .. }) => {
                crate::ffi::iscsi::err::DATALEN
            }
            _ => crate::ffi::iscsi::err::PROTO,
        };
        fail(st, iconn, err);
    }

    /// A completed receive of the login/text response buffer.
    fn on_login_rx(st: &ConnStats, g: RxGuard<'_>, wc: &Wc) {
        let Some(side) = g.side.as_ref() else {
            return;
        };
        let sh = &*side.sh;
        let iconn = sh.iscsi;
        if !wc.ok {
            drop(g);
            log_wc_error(st, "login_rsp", wc);
            if !wc.flushed {
                fail(st, iconn, crate::ffi::iscsi::err::CONN_FAILED);
            }
            return;
        }
        sh.login_rsp.sync_for_cpu(0, sizing::RX_LOGIN_SIZE);
        // Login and text responses are rare and up to 8 KiB: copied out with an atomic
        // allocation rather than a per-connection buffer that would need its own lock, then
        // validated in the copy.
        let received = (wc.byte_len as usize).min(sizing::RX_LOGIN_SIZE);
        let Ok(mut copy) = KVec::from_elem(0u8, received, GFP_ATOMIC) else {
            drop(g);
            iser_err!("no memory for a login response\n");
            fail(st, iconn, crate::ffi::iscsi::err::CONN_FAILED);
            return;
        };
        if sh.login_rsp.read_into(0, &mut copy).is_none() {
            // Not reached: `received` is at most the buffer's size.
            drop(g);
            fail(st, iconn, crate::ffi::iscsi::err::CONN_FAILED);
            return;
        }
        let r = match rx::parse(&copy, received, sizing::LOGIN_DATA_LEN, sh.n) {
            Ok(r) => r,
            Err(e) => {
                drop(g);
                Self::reject_pdu(st, iconn, "login response rejected", e);
                return;
            }
        };
        Stats::inc(&st.s.c.pdus_rx);
        let ffp = r.pdu.opcode == bhs::OP_LOGIN_RSP && ptask::login_to_ffp(r.pdu.flags);
        if ffp && !sh.discovery.load(Ordering::Relaxed) {
            if let Some(rq) = &g.rq {
                if let Err(e) = sh.post_rx(rq, 0) {
                    iser_err!("posting receive buffer 0 failed: {:?}\n", e);
                }
            }
        }
        drop(g);
        // The copy is iSER header, BHS and data segment (`r.len` bytes, validated).
        let body = copy.get_mut(hdr::LEN..r.len).unwrap_or(&mut []);
        let (h, data) = body.split_at_mut(bhs::BHS_LEN.min(body.len()));
        if let Ok(h) = h.try_into() {
            Self::deliver(st, iconn, h, data);
        }
    }

    /// A completed receive of ring buffer `i`: validate, give the buffer back to the target,
    /// then deliver the PDU, or hold it in its task's slot until the task's SENDs completed
    /// (iser-spec.md 11, latent issues).
    fn on_rx<'a>(&'a self, st: &ConnStats, mut g: RxGuard<'a>, wc: &Wc, i: usize) {
        let Rx { rq, side } = &mut *g;
        let Some(side) = side.as_mut() else {
            return;
        };
        let iconn = side.sh.iscsi;
        if !wc.ok {
            drop(g);
            log_wc_error(st, "task_rsp", wc);
            if !wc.flushed {
                fail(st, iconn, crate::ffi::iscsi::err::CONN_FAILED);
            }
            return;
        }
        let off = i * sizing::RX_PAYLOAD;
        side.sh.rx.sync_for_cpu(off, sizing::RX_PAYLOAD);
        // What arrived is copied out (the HCA keeps writing the rest of the ring) into an
        // area left uninitialised beyond it, then validated in the copy.
        let received = (wc.byte_len as usize).min(sizing::RX_PAYLOAD);
        let mut area = MaybeUninit::<[u8; sizing::RX_PAYLOAD]>::uninit();
        let buf = side.sh.rx.read_uninit(off, received, &mut area);
        let r = rx::parse(
            buf.as_deref().unwrap_or(&[]),
            received,
            sizing::RECV_DATA_SEG_LEN,
            side.sh.n,
        );
        let copy = buf.and_then(|b| RxCopy::new(b, r.as_ref().map_or(0, |r| r.pdu.data_len)));
        // The copy is ours: give the buffer back to the target (4.11), in batches.
        if let Some(rq) = rq {
            if let Err(e) = side.repost(rq, i) {
                iser_err!("reposting receive buffers (up to {}) failed: {:?}\n", i, e);
            }
        }
        let (r, copy) = match (r, copy) {
            (Ok(r), Some(c)) => (r, c),
            (Err(e), _) => {
                drop(g);
                Self::reject_pdu(st, iconn, "received PDU rejected", e);
                return;
            }
            // Not reached: every ring buffer is `RX_PAYLOAD` bytes of the `rx` area.
            (Ok(_), None) => {
                drop(g);
                iser_err!("receive buffer {} outside the ring\n", i);
                fail(st, iconn, crate::ffi::iscsi::err::CONN_FAILED);
                return;
            }
        };
        Stats::inc(&st.s.c.pdus_rx);
        let sh = &*side.sh;
        let slot = r.slot.and_then(|s| sh.slots.get(s).map(|x| (s, x)));
        if r.pdu.opcode == bhs::OP_SCSI_RSP {
            Stats::inc(&st.s.c.scsi_rsp_rx);
            #[cfg(iser_test_faults)]
            {
                crate::planted::maybe_stall();
                if crate::planted::fail_at_response() {
                    drop(g);
                    iser_err!("TEST BUILD: planted fault conn_error: failing the connection\n");
                    fail(st, iconn, crate::ffi::iscsi::err::CONN_FAILED);
                    return;
                }
            }
            if let Some((_, s)) = slot {
                let t0 = s.t0.load(Ordering::Relaxed);
                if t0 != 0 {
                    st.s.lat.record(time::clock_ns().saturating_sub(t0));
                }
            }
        }
        if let Some(rkey) = wc.invalidated_rkey {
            if let Err(reason) = Self::remote_invalidate(sh, slot.map(|(_, s)| s), rkey) {
                drop(g);
                iser_err!("{} (rkey {:#x}), terminating connection\n", reason, rkey);
                fail(st, iconn, crate::ffi::iscsi::err::CONN_FAILED);
                return;
            }
            Stats::inc(&st.s.c.inval_remote);
        }
        let Some((si, s)) = slot else {
            drop(g);
            Self::deliver(st, iconn, copy.bhs, copy.data);
            return;
        };
        if s.xmit_busy.load(Ordering::Acquire) {
            // The response overtook the unsolicited Data-Outs of its own command (a target
            // answering early): wait until `xmit_task`, which holds `dp` until every SEND of
            // the task is posted and counted, is done. Rare; `rx` is not held meanwhile.
            drop(g);
            drop(self.dp.lock());
            g = self.rx.lock();
            if g.side.is_none() {
                // Torn down meanwhile: the task is failed by libiscsi.
                return;
            }
        }
        let Rx { rq, side } = &mut *g;
        let Some(side) = side.as_mut() else {
            return;
        };
        // A SCSI Response that did not invalidate its task's registration (the target did
        // not use Send with Invalidate, or Send with Invalidate was not negotiated): the
        // registration is invalidated here and the response waits for it, so that the
        // target can no longer reach the task's pages once libiscsi gave them back (issue 20
        // item 5; NVMe/RDMA hosts do the same). With Send with Invalidate, nothing to do.
        // The "Function complete" answer to a task management request releases the tasks
        // it names (ABORT TASK: one; ABORT/CLEAR TASK SET, LUN RESET: those of its LUN;
        // TARGET WARM/COLD RESET: all), which end without their responses: their
        // registrations are invalidated the same way before the answer is delivered (no
        // legitimate transfer for them follows the answer: RFC 7143 4.2.3.3). Any other
        // answer releases nothing (libiscsi keeps the tasks and escalates).
        let inval = if r.pdu.opcode == bhs::OP_SCSI_RSP && wc.invalidated_rkey.is_none() {
            Self::invalidate_local(rq.as_ref(), &side.sh, si, si, |_| true).map(usize::from)
        } else if r.pdu.opcode == bhs::OP_TMF_RSP {
            let tmf = side
                .sh
                .slots
                .get(si)
                .and_then(|s| ptask::TmfRef::decode(s.tmf_ref.swap(0, Ordering::AcqRel)));
            match tmf {
                Some(t) if copy.bhs[2] == bhs::TMF_RSP_COMPLETE => {
                    Self::invalidate_released(rq.as_ref(), &side.sh, si, t)
                }
                _ => Ok(0),
            }
        } else {
            Ok(0)
        };
        let inv_posted = match inval {
            Ok(n) => {
                // Counted per task (one or two registrations each).
                if n > 0 {
                    Stats::add(&st.s.c.inval_local, n as u64);
                    if r.pdu.opcode == bhs::OP_TMF_RSP {
                        Stats::add(&st.s.c.inval_aborted, n as u64);
                        Stats::inc(&st.s.c.tmf_held);
                    }
                }
                n > 0
            }
            Err(e) => {
                drop(g);
                Stats::inc(&st.s.c.err_post);
                iser_err!(
                    "could not invalidate the registrations that the response to {} releases ({:?}): the response is dropped, terminating connection\n",
                    r.pdu.itt,
                    e
                );
                fail(st, iconn, crate::ffi::iscsi::err::CONN_FAILED);
                return;
            }
        };
        let pending = side
            .sh
            .slots
            .get(si)
            .is_some_and(|s| s.sends_pending.load(Ordering::Acquire) > 0);
        if let (true, Some(rs)) = (pending, side.slots.get_mut(si)) {
            if rs.deferred.is_some() {
                // Two responses for one task before its request was even sent: the target
                // is broken; completing the task now would free buffers the HCA may still
                // be reading.
                drop(g);
                iser_err!(
                    "second response for task {} before its request completed, terminating connection\n",
                    r.pdu.itt
                );
                Stats::inc(&st.s.c.err_protocol);
                fail(st, iconn, crate::ffi::iscsi::err::PROTO);
                return;
            }
            if !inv_posted {
                Stats::inc(&st.s.c.rsp_before_send_done);
            }
            rs.deferred = Some(HeldPdu::hold(&copy));
            return;
        }
        drop(g);
        Self::deliver(st, iconn, copy.bhs, copy.data);
    }

    /// The tasks released by the "Function complete" answer to the task management
    /// request in slot `si`, which `t` names: a LOCAL_INV is posted for each of their
    /// registrations still valid, each counted as a SEND of `si` (see
    /// [`Self::invalidate_local`]). Returns how many tasks had one; an error leaves that
    /// task's key valid, and the caller must not deliver the answer. A LUN or target reset
    /// walks every slot (rare; `rx` held).
    fn invalidate_released(
        rq: Option<&RecvQp>,
        sh: &Shared,
        si: usize,
        t: ptask::TmfRef,
    ) -> Result<usize> {
        if let ptask::TmfRef::Task(ki) = t {
            return Self::invalidate_local(rq, sh, ki, si, |_| true).map(usize::from);
        }
        let req_lun = sh
            .slots
            .get(si)
            .map_or(0, |s| s.lun.load(Ordering::Relaxed));
        let mut n = 0;
        for ki in (0..sh.slots.len()).filter(|&ki| ki != si) {
            let covers = |k: &SlotShared| t.covers_lun(req_lun, k.lun.load(Ordering::Relaxed));
            if Self::invalidate_local(rq, sh, ki, si, covers)? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Posts a signalled LOCAL_INV for each registration of task slot `ki` whose key is still
    /// valid, each counted as a SEND of slot `si`, whose held response its completion
    /// delivers (`rx` held: that completion takes `rx` first, so it cannot run before the
    /// response is held). The key is taken by a compare-exchange, so it is invalidated once:
    /// not again by the MR's next registration, and not here if a new registration replaced
    /// it. Only registrations for which `covers(slot ki)` holds, read after the registration
    /// was (the slot's `lun` belongs to that registration's command). True if one was posted.
    /// An error leaves the key valid: the caller must not deliver the response.
    fn invalidate_local(
        rq: Option<&RecvQp>,
        sh: &Shared,
        ki: usize,
        si: usize,
        covers: impl Fn(&SlotShared) -> bool,
    ) -> Result<bool> {
        let (Some(k), Some(s)) = (sh.slots.get(ki), sh.slots.get(si)) else {
            return Ok(false);
        };
        let mut posted = false;
        for e in &k.exposed {
            let ptask::Exposed::Mr { idx, rkey } =
                ptask::Exposed::decode(e.load(Ordering::Acquire))
            else {
                continue;
            };
            if !covers(k) {
                continue;
            }
            let Some(vk) = sh.valid_key.get(idx as usize) else {
                continue;
            };
            let key = valid_key(rkey);
            if vk
                .compare_exchange(key, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue;
            }
            // Torn down meanwhile (not reached: the handle goes back only to drain, and no
            // completion follows the drain).
            let Some(rq) = rq else {
                vk.store(key, Ordering::Release);
                return Err(errno::ENOTCONN());
            };
            // Counted before the post: the completion may run on another CPU before the
            // post returns.
            s.sends_pending.fetch_add(1, Ordering::AcqRel);
            if let Err(err) = rq.post_local_inv(sh.cqe_of(Cqe::Inv(si)), rkey) {
                s.sends_pending.fetch_sub(1, Ordering::AcqRel);
                vk.store(key, Ordering::Release);
                return Err(err);
            }
            posted = true;
        }
        Ok(posted)
    }

    /// The LOCAL_INV of task slot `i`'s registration completed: deliver the response held
    /// for it. If it failed, the key may still be valid: the response is dropped (libiscsi
    /// fails the task after teardown deregistered the MR) and the connection fails.
    fn on_inv(&self, st: &ConnStats, mut g: RxGuard<'_>, wc: &Wc, i: usize) {
        let Some(side) = g.side.as_mut() else {
            return;
        };
        let iconn = side.sh.iscsi;
        let done = side.sh.send_done(i);
        let deferred = match side.slots.get_mut(i) {
            Some(s) if done || !wc.ok => s.deferred.take(),
            _ => None,
        };
        drop(g);
        if !wc.ok {
            log_wc_error(st, "local invalidation", wc);
            if deferred.is_some() {
                Stats::inc(&st.s.c.rsp_held_dropped);
            }
            if !wc.flushed {
                fail(st, iconn, crate::ffi::iscsi::err::CONN_FAILED);
            }
            return;
        }
        if let Some(mut h) = deferred {
            let data = h.data.get_mut(..h.data_len).unwrap_or(&mut []);
            Self::deliver(st, iconn, &mut h.bhs, data);
        }
    }

    /// Checks a Send with Invalidate against what the task's buffers expose (5.5).
    fn remote_invalidate(
        sh: &Shared,
        slot: Option<&SlotShared>,
        rkey: u32,
    ) -> core::result::Result<(), &'static str> {
        if !sh.remote_inv {
            return Err("unexpected remote invalidation");
        }
        let s = slot.ok_or("remote invalidation for an unknown task")?;
        let mut matched = false;
        for e in &s.exposed {
            match ptask::Exposed::decode(e.load(Ordering::Acquire)) {
                ptask::Exposed::None => {}
                ptask::Exposed::DmaKey => {
                    return Err("remote invalidation of an unregistered buffer")
                }
                ptask::Exposed::Mr { idx, rkey: k } => {
                    if k == rkey {
                        if let Some(f) = sh.valid_key.get(idx as usize) {
                            // A duplicate (the key already invalid) is still this task's.
                            let _ = f.compare_exchange(
                                valid_key(rkey),
                                0,
                                Ordering::AcqRel,
                                Ordering::Acquire,
                            );
                            matched = true;
                        }
                    }
                }
            }
        }
        if matched {
            Ok(())
        } else {
            Err("bogus remote invalidation")
        }
    }

    /// A completed SEND (command, control PDU: `Cqe::Send(i)`) or Data-Out (`dataout`) that
    /// task slot `i` waits for.
    fn on_send(
        &self,
        st: &ConnStats,
        mut g: RxGuard<'_>,
        wc: &Wc,
        i: usize,
        dataout: Option<usize>,
    ) {
        let Some(side) = g.side.as_mut() else {
            return;
        };
        let iconn = side.sh.iscsi;
        let mut deferred = None;
        let mut put = None;
        let i = match dataout {
            Some(di) => side
                .sh
                .dataout_owner
                .get(di)
                .map_or(usize::MAX, |o| o.swap(usize::MAX, Ordering::AcqRel)),
            None => i,
        };
        if side.sh.send_done(i) {
            if let Some(s) = side.slots.get_mut(i) {
                put = s.put_on_send.take();
                // Copied out (only when a response waits) to deliver it after unlocking.
                deferred = s.deferred.take();
            }
        }
        drop(g);
        if let Some(di) = dataout {
            // The descriptor belongs to the submission side. Teardown cannot have replaced
            // the bound state: its drain waits for this handler.
            let mut d = self.dp.lock();
            if let Some(b) = d.bound.as_mut() {
                b.dataout_free.push(di);
            }
        }
        if !wc.ok {
            log_wc_error(
                st,
                if dataout.is_some() {
                    "dataout"
                } else {
                    "command/control"
                },
                wc,
            );
            if !wc.flushed {
                fail(st, iconn, crate::ffi::iscsi::err::CONN_FAILED);
            }
        }
        if let Some(p) = put {
            p.put();
        }
        if let Some(mut h) = deferred {
            let data = h.data.get_mut(..h.data_len).unwrap_or(&mut []);
            Self::deliver(st, iconn, &mut h.bhs, data);
        }
    }
}

impl CqHandler for IserConn {
    /// Every completion takes `rx` once: classify, update, copy out, unlock, then call
    /// libiscsi. Only Data-Out completions also take `dp` (after `rx`, not under it).
    fn complete(&self, wc: &Wc) {
        let g = self.rx.lock();
        let Some(which) = g.side.as_ref().and_then(|s| s.sh.which(wc.cqe)) else {
            return;
        };
        let st = &*self.stats;
        match which {
            Cqe::Send(i) => self.on_send(st, g, wc, i, None),
            Cqe::DataOut(di) => self.on_send(st, g, wc, usize::MAX, Some(di)),
            Cqe::Rx(i) => self.on_rx(st, g, wc, i),
            Cqe::Inv(i) => self.on_inv(st, g, wc, i),
            Cqe::LoginRx => Self::on_login_rx(st, g, wc),
            Cqe::Reg => {
                let i = g.side.as_ref().map(|s| s.sh.iscsi);
                drop(g);
                log_wc_error(st, "memreg", wc);
                if let (false, Some(i)) = (wc.flushed, i) {
                    fail(st, i, crate::ffi::iscsi::err::CONN_FAILED);
                }
            }
            Cqe::Quiet => {
                let i = g.side.as_ref().map(|s| s.sh.iscsi);
                drop(g);
                if !wc.ok {
                    log_wc_error(st, "command", wc);
                    if let (false, Some(i)) = (wc.flushed, i) {
                        fail(st, i, crate::ffi::iscsi::err::CONN_FAILED);
                    }
                }
            }
        }
    }
}

impl CmHandler for IserConn {
    fn cm_event(this: &Arc<Self>, ev: &CmEvent<'_>) -> bool {
        iser_info!(
            "cm event {} ({}) status {} to {}\n",
            ev.name,
            ev.raw,
            ev.status,
            this.peer
        );
        let mut ctrl = this.ctrl.lock();
        match ev.kind {
            CmEventKind::AddrResolved => {
                if ctrl.state == State::Pending {
                    if let Err(e) = this.addr_resolved(&mut ctrl) {
                        iser_err!(
                            "connection to {} failed after address resolution: {:?}\n",
                            this.peer,
                            e
                        );
                        this.connect_error(&mut ctrl);
                    }
                }
            }
            CmEventKind::RouteResolved => {
                if ctrl.state == State::Pending {
                    if let Err(e) = this.route_resolved(&mut ctrl) {
                        iser_err!(
                            "connection to {} failed after route resolution: {:?}\n",
                            this.peer,
                            e
                        );
                        this.connect_error(&mut ctrl);
                    }
                }
            }
            CmEventKind::Established => {
                if ctrl.state == State::Pending {
                    let rep = cm::Reply::decode(ev.private_data);
                    ctrl.remote_inv = cm::remote_invalidation(ctrl.req, rep);
                    if let Some(qpn) = ctrl.cm_id.as_ref().and_then(|id| id.qp_nums()) {
                        iser_info!(
                            "connected to {} (qp {:#x}, remote invalidation {})\n",
                            this.peer,
                            qpn,
                            ctrl.remote_inv
                        );
                    }
                    ctrl.state = State::Up;
                    this.up.notify_all();
                }
            }
            CmEventKind::Rejected => {
                iser_err!(
                    "Connection rejected: {}\n",
                    ev.reject_msg.unwrap_or("unknown")
                );
                this.connect_error(&mut ctrl);
            }
            CmEventKind::ConnectError => {
                iser_err!(
                    "connection to {} failed: {} ({})\n",
                    this.peer,
                    ev.name,
                    ev.status
                );
                this.connect_error(&mut ctrl);
            }
            CmEventKind::Disconnected => {
                if this.terminate(&mut ctrl) {
                    match &ctrl.iscsi {
                        // The target closes the connection after its Logout Response: the
                        // end of a logout, not a failure (the C driver and iscsi_tcp report
                        // one, and every logout logs "detected conn error"). iscsid stops
                        // the connection when the logout completes, or after its logout
                        // timeout if the response never came.
                        Some(i) if i.logging_out() => {
                            iser_info!("{}: target closed the connection (logout)\n", this.peer);
                        }
                        Some(i) => {
                            // Said here: libiscsi logs only "detected conn error (1011)", the
                            // same line as for a local failure.
                            iser_err!("{}: the target closed the connection\n", this.peer);
                            fail(&this.stats, *i, crate::ffi::iscsi::err::CONN_FAILED)
                        }
                        None => iser_warn!("iscsi_iser connection isn't bound\n"),
                    }
                }
            }
            CmEventKind::DeviceRemoval => {
                // Release everything tied to the device now: iscsid may not be running, and
                // the device goes away when we return (3.9). The CM destroys the id.
                let bound = ctrl.iscsi;
                let was_up = ctrl.state == State::Up;
                let mut left = this.release_rdma(&mut ctrl);
                if was_up {
                    if let Some(i) = bound {
                        fail(&this.stats, i, crate::ffi::iscsi::err::CONN_FAILED);
                    }
                }
                if let Some(id) = left.cm_id.take() {
                    id.hand_over_to_cm();
                    drop(ctrl);
                    return true;
                }
            }
            CmEventKind::Other => {
                iser_warn!("Unexpected RDMA CM event: {} ({})\n", ev.name, ev.raw);
            }
        }
        false
    }
}

impl IserConn {
    fn connect_error(&self, ctrl: &mut Ctrl) {
        if matches!(ctrl.state, State::Pending | State::Init | State::Up) {
            ctrl.state = State::Terminating;
        }
        self.up.notify_all();
    }

    fn addr_resolved(&self, ctrl: &mut Ctrl) -> Result {
        let id = ctrl.cm_id.as_ref().ok_or(EINVAL)?;
        let dev = id.device().ok_or(ENODEV)?;
        let devs = DEVICES.get().ok_or(ENODEV)?;
        let d = devs.get(dev)?;
        let caps = d.caps;
        if params::pi_enable() {
            // T10-PI needs an integrity-capable HCA (soft-RoCE and soft-iWARP have none), and
            // this version does not implement the signature path on any device yet.
            if caps.integrity_handover {
                iser_warn!(
                    "T10-PI offload is not implemented in this version, continue without T10-PI on {}\n",
                    dev.name()
                );
            } else {
                iser_warn!(
                    "T10-PI requested but not supported on {}, continue without T10-PI\n",
                    dev.name()
                );
            }
        }
        let s = sizing::connection(
            params::max_sectors(),
            sizing::DevLimits {
                max_qp_wr: caps.max_qp_wr,
                max_fast_reg_page_list_len: caps.max_fast_reg_page_list_len,
                sg_gaps: caps.sg_gaps_reg,
            },
        );
        let s = match s {
            Ok(s) => s,
            Err(e) => {
                iser_err!("device {}: {}\n", dev.name(), e.reason());
                devs.put(d);
                return Err(EINVAL);
            }
        };
        ctrl.device = Some(d);
        ctrl.sizing = Some(s);
        id.resolve_route(RESOLVE_TIMEOUT_MS)
    }

    fn route_resolved(self: &Arc<Self>, ctrl: &mut Ctrl) -> Result {
        let (Some(d), Some(s), Some(id)) = (ctrl.device.clone(), ctrl.sizing, ctrl.cm_id.as_ref())
        else {
            return Err(EINVAL);
        };
        let cq = Cq::new(d.dev, s.nr_cqe)?;
        let (qp, rq) = id.create_qp(
            &d.pd,
            cq,
            QpCaps {
                max_send_wr: s.max_send_wr,
                max_recv_wr: s.max_recv_wr,
                max_send_sge: 2,
                max_recv_sge: 1,
                max_inline_data: sizing::HEADERS_LEN as u32,
            },
            self.clone(),
        )?;
        let old_rq = Self::with_bh(&self.rx, |rx| rx.rq.replace(rq));
        if let Some(mut old) = Self::with_bh(&self.dp, |dp| dp.qp.replace(qp)) {
            old.drain(old_rq);
            old.destroy();
        }
        let pd = ctrl.req.encode();
        id.connect_locked(&ConnParam {
            private_data: &pd,
            responder_resources: d.caps.max_qp_rd_atom.min(u32::from(u8::MAX)) as u8,
            initiator_depth: 1,
            retry_count: 7,
            rnr_retry_count: 6,
        })
    }
}
