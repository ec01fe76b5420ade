// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! The module's own workqueue: work that must not run in the context that detects the need
//! for it (a connection failure found while libiscsi holds `frwd_lock`, which
//! `iscsi_conn_failure` takes) is queued here. Owning the queue lets module exit wait for
//! every queued item (`destroy_workqueue` drains it) before the module's code goes away;
//! items queued on the system workqueue could still be pending then.

use super::global::Global;
use core::ptr::NonNull;
use kernel::prelude::*;
use kernel::workqueue::Queue;

/// `WQ_MEM_RECLAIM`: connection recovery sits on the writeback path, so the queue keeps a
/// rescuer thread and makes progress under memory pressure. `WQ_UNBOUND`: the work has no
/// CPU affinity to keep (and 7.x warns about a queue that says neither unbound nor per-CPU).
const WQ_FLAGS: u32 =
    kernel::bindings::wq_flags_WQ_MEM_RECLAIM | kernel::bindings::wq_flags_WQ_UNBOUND;

/// An allocated workqueue, destroyed (after draining) on drop.
///
/// # Invariants
///
/// `ptr` came from `alloc_workqueue` and is destroyed only by `drop`.
pub(crate) struct OwnedQueue {
    ptr: NonNull<kernel::bindings::workqueue_struct>,
}

// SAFETY: A workqueue may be used and destroyed from any thread.
unsafe impl Send for OwnedQueue {}
// SAFETY: Queueing work is thread-safe.
unsafe impl Sync for OwnedQueue {}

impl OwnedQueue {
    /// Allocates a workqueue named `name`.
    pub(crate) fn new(name: &'static CStr) -> Result<Self> {
        // SAFETY: `"%s"` with one C string argument; `name` outlives the queue (static).
        let p = unsafe {
            super::compat::alloc_workqueue(
                kernel::c_str!("%s").as_char_ptr(),
                WQ_FLAGS,
                0,
                name.as_char_ptr(),
            )
        };
        Ok(OwnedQueue {
            ptr: NonNull::new(p).ok_or(ENOMEM)?,
        })
    }

    /// The queue, to enqueue work on.
    pub(crate) fn queue(&self) -> &Queue {
        // SAFETY: `ptr` is a live workqueue for as long as `self` (invariant).
        unsafe { Queue::from_raw(self.ptr.as_ptr()) }
    }
}

impl Drop for OwnedQueue {
    fn drop(&mut self) {
        // SAFETY: By the invariant; waits for every queued item to finish.
        unsafe { kernel::bindings::destroy_workqueue(self.ptr.as_ptr()) };
    }
}

/// The module's workqueue (installed by module init before the transport is registered).
pub(crate) static WQ: Global<OwnedQueue> = Global::new();
