// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! Module-wide objects reachable from C callbacks that carry no context pointer (the
//! transport's `ep_connect` is a plain function).

use core::pin::Pin;
use core::sync::atomic::{AtomicPtr, Ordering};
use kernel::prelude::*;

/// A slot for one module-wide object.
pub(crate) struct Global<T: Sync> {
    ptr: AtomicPtr<T>,
}

impl<T: Sync> Global<T> {
    /// An empty slot.
    pub(crate) const fn new() -> Self {
        Global {
            ptr: AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    /// Installs `v` until the returned guard is dropped.
    pub(crate) fn install(&'static self, v: Pin<KBox<T>>) -> Installed<T> {
        // SAFETY: The pointer is turned back into a box only by `Installed::drop`; the value
        // is never moved (we only hand out shared references).
        let raw = KBox::into_raw(unsafe { Pin::into_inner_unchecked(v) });
        self.ptr.store(raw, Ordering::Release);
        Installed { slot: self }
    }

    /// The installed object.
    ///
    /// The module installs its globals before it registers the transport and drops them
    /// after it unregistered it, so every callback that reaches this finds the object.
    pub(crate) fn get(&self) -> Option<&T> {
        let p = self.ptr.load(Ordering::Acquire);
        // SAFETY: Non-NULL values are live boxes installed by `install`, freed only by
        // `Installed::drop` at module exit after every caller is gone (see above).
        (!p.is_null()).then(|| unsafe { &*p })
    }
}

/// Keeps an object installed in a [`Global`]; frees it on drop.
///
/// # Invariants
///
/// `slot` holds a pointer from `KBox::into_raw`.
pub(crate) struct Installed<T: Sync + 'static> {
    slot: &'static Global<T>,
}

impl<T: Sync + 'static> Drop for Installed<T> {
    fn drop(&mut self) {
        let p = self.slot.ptr.swap(core::ptr::null_mut(), Ordering::AcqRel);
        if !p.is_null() {
            // SAFETY: By the invariant; the slot no longer hands it out.
            drop(unsafe { KBox::from_raw(p) });
        }
    }
}
