// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! An owned workqueue (6.12's `kernel::workqueue` only borrows the system queues).

use super::bindings;
use core::ptr::NonNull;
use kernel::error::code::ENOMEM;
use kernel::prelude::*;
use kernel::str::CStr;
use kernel::workqueue::Queue;

/// A workqueue allocated with `alloc_workqueue` and destroyed on drop.
///
/// # Invariants
///
/// `ptr` came from a successful `alloc_workqueue` and is destroyed only by `drop`.
pub(crate) struct OwnedQueue {
    ptr: NonNull<bindings::workqueue_struct>,
}

// SAFETY: A workqueue may be used and destroyed from any thread.
unsafe impl Send for OwnedQueue {}
// SAFETY: All workqueue operations are thread-safe.
unsafe impl Sync for OwnedQueue {}

impl OwnedQueue {
    /// Allocates a workqueue named `name` whose work items may run while memory is reclaimed
    /// (`WQ_MEM_RECLAIM`: teardown of a storage connection must make progress under memory
    /// pressure, when writeback may be waiting for it).
    pub(crate) fn new_reclaim(name: &'static CStr) -> Result<Self> {
        // SAFETY: `name` is a NUL-terminated string without format directives, so the
        // variadic part is empty; `max_active` 0 selects the default.
        let ptr = unsafe {
            bindings::alloc_workqueue(name.as_char_ptr(), bindings::wq_flags_WQ_MEM_RECLAIM, 0)
        };
        // INVARIANT: `ptr` is non-NULL only when `alloc_workqueue` succeeded.
        NonNull::new(ptr)
            .map(|ptr| OwnedQueue { ptr })
            .ok_or(ENOMEM)
    }

    /// The queue, to enqueue work items on.
    #[allow(dead_code)]
    pub(crate) fn queue(&self) -> &Queue {
        // SAFETY: By the type invariant the queue stays valid until `self` is dropped, which
        // the returned borrow cannot outlive.
        unsafe { Queue::from_raw(self.ptr.as_ptr()) }
    }
}

impl Drop for OwnedQueue {
    fn drop(&mut self) {
        // SAFETY: By the type invariant `ptr` is a live workqueue destroyed only here;
        // `destroy_workqueue` drains pending work first.
        unsafe { bindings::destroy_workqueue(self.ptr.as_ptr()) };
    }
}
