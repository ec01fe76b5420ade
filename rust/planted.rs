// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! Planted faults: test builds only (`--cfg iser_test_faults`, built by `make check-harness`
//! into a copy of the tree; never in the shipped module). The `planted_fault` parameter
//! picks one at load time, and `make check-harness` runs the VM tests that must report it as
//! a failure (Documentation/testing.rst, "Showing that the harness can fail"):
//!
//! - `warn_unload`: a `WARN` while the module unloads (the kernel log check after cleanup);
//! - `flip_read`: one byte flipped in the data of the 20th completed read of 4 KiB or more
//!   (fio's verification);
//! - `leak_logout`: 128 bytes leaked at every connection stop for logout (kmemleak);
//! - `conn_error`: the connection failed at every 300th SCSI response (the check for
//!   connection failures in tests that inject none);
//! - `stall_completion`: the completion handler spins for 100 s once, in softirq context (the
//!   soft-lockup and RCU-stall detectors).

use crate::ffi::iscsi::Task;
use crate::ffi::{planted, time};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use kernel::prelude::*;

#[derive(PartialEq, Eq)]
enum Fault {
    None,
    WarnUnload,
    FlipRead,
    LeakLogout,
    ConnError,
    StallCompletion,
}

fn fault() -> Fault {
    match planted::name() {
        b"warn_unload" => Fault::WarnUnload,
        b"flip_read" => Fault::FlipRead,
        b"leak_logout" => Fault::LeakLogout,
        b"conn_error" => Fault::ConnError,
        b"stall_completion" => Fault::StallCompletion,
        _ => Fault::None,
    }
}

/// Logs which fault this load plants (at module init).
pub(crate) fn announce() {
    if fault() != Fault::None {
        pr_info!(
            "TEST BUILD: planted fault {}\n",
            core::str::from_utf8(planted::name()).unwrap_or("?")
        );
    }
}

/// Module unload.
pub(crate) fn on_unload() {
    if fault() == Fault::WarnUnload {
        planted::warn();
    }
}

static READS: AtomicU32 = AtomicU32::new(0);

/// `cleanup_task`: the task's response was processed, the command not yet completed.
pub(crate) fn on_cleanup_task(task: &Task<'_>) {
    if fault() != Fault::FlipRead || READS.load(Ordering::Relaxed) >= 20 {
        return;
    }
    let Some(d) = task.scsi_data() else {
        return;
    };
    if !d.is_read || d.result != 0 || d.len < 4096 {
        return;
    }
    if READS.fetch_add(1, Ordering::Relaxed) + 1 == 20 && planted::flip_read_byte(task, 4096) {
        pr_info!("TEST BUILD: planted fault flip_read: one byte of a read flipped\n");
    }
}

/// A connection stopped (`flag`: `STOP_CONN_*`; `STOP_CONN_TERM` is a logout).
pub(crate) fn on_stop(flag: i32) {
    if fault() == Fault::LeakLogout && flag == crate::ffi::iscsi::STOP_CONN_TERM {
        if let Ok(b) = KBox::new([0x6cu8; 128], GFP_KERNEL) {
            let _ = KBox::into_raw(b);
        }
    }
}

static RSPS: AtomicU32 = AtomicU32::new(0);

/// A SCSI response arrived: whether to fail the connection now.
pub(crate) fn fail_at_response() -> bool {
    fault() == Fault::ConnError && RSPS.fetch_add(1, Ordering::Relaxed) % 300 == 299
}

static STALLED: AtomicBool = AtomicBool::new(false);

/// The completion handler (softirq): spins for 100 s, once per load.
pub(crate) fn maybe_stall() {
    if fault() == Fault::StallCompletion && !STALLED.swap(true, Ordering::Relaxed) {
        pr_info!("TEST BUILD: planted fault stall_completion: spinning 100 s\n");
        let t0 = time::clock_ns();
        while time::clock_ns().saturating_sub(t0) < 100_000_000_000 {
            core::hint::spin_loop();
        }
    }
}
