// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! The clock of the latency histogram.

use super::bindings;

/// `local_clock()`: nanoseconds, cheap (the TSC where the CPU has a usable one), monotonic on
/// one CPU and close across CPUs; enough for a log2 histogram of command latencies.
#[inline]
pub(crate) fn clock_ns() -> u64 {
    // SAFETY: Callable from any context.
    unsafe { bindings::local_clock() }
}
