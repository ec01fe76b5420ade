// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! One iSER connection: the RDMA CM state machine (iser-spec.md 3), the per-connection
//! buffers and registration pool, and the data path (4, 5).
//!
//! # Rooms
//!
//! - [`lifecycle`]: establishment and teardown (the RDMA CM state machine, `ep_*`);
//! - [`session`]: binding to a libiscsi session (`bind_conn`, `start_conn`, `stop_conn`);
//! - [`submit`]: `init_task`, `xmit_task` (commands, Data-Outs, control PDUs);
//! - [`complete`]: the CQ handler, the receive ring, delivery to libiscsi, `cleanup_task`;
//! - [`reg`]: memory registration and invalidation;
//! - [`slots`]: the state both sides share (task slots, CQE table, bound resources);
//! - [`stats`]: the debugfs counters.
//!
//! This file holds the connection itself, the states and locks each room works under, and
//! the helpers all rooms use.
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
//!   `cleanup_task` (under `back_lock`; alone, or after `rx` for a task that ended with a
//!   response held or a key valid), and at bind and teardown. A task's release thus
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

mod complete;
mod lifecycle;
mod reg;
mod session;
mod slots;
mod stats;
mod submit;

use reg::*;
use slots::*;
pub(crate) use stats::{ConnStats, EndedCounters};

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
}
