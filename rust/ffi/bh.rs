// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! Bottom-half control: process-context code disables softirqs around locks that softirq
//! completion handlers also take (the 6.12 kernel crate's `SpinLock` is a plain spinlock).

use super::bindings;
use core::marker::PhantomData;

/// Softirqs are disabled on this CPU while this value lives.
pub(crate) struct Disabled {
    /// Must be dropped on the CPU that created it.
    _not_send: PhantomData<*mut ()>,
}

impl Disabled {
    /// Disables softirqs.
    pub(crate) fn new() -> Self {
        // SAFETY: Always allowed in process context; balanced by `drop`.
        unsafe { bindings::local_bh_disable() };
        Disabled {
            _not_send: PhantomData,
        }
    }
}

impl Drop for Disabled {
    fn drop(&mut self) {
        // SAFETY: Balances `new` on the same CPU (not `Send`).
        unsafe { bindings::local_bh_enable() };
    }
}
