// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! Per-connection counters and the SCSI command latency histogram shown in debugfs
//! (`/sys/kernel/debug/iser/<connection>/stats`, Documentation/admin-guide.rst).
//!
//! Counters are relaxed atomics: they are bumped on the data path (submission under the
//! connection's `dp` lock, completion in softirq) and read at any time by the debugfs file,
//! which tolerates a snapshot that is not atomic across counters.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Number of latency buckets: `[0, 1)` us, then `[2^(i-1), 2^i)` us for `i` in
/// `1..LAT_BUCKETS - 1`, and the last one open-ended (>= 2^24 us, about 17 s: commands
/// queued behind a slow target or a recovery, which a debug VM reaches in seconds).
pub(crate) const LAT_BUCKETS: usize = 26;

macro_rules! counters {
    ($( $(#[doc = $doc:literal])* $name:ident, )*) => {
        /// Event counters of one connection.
        #[derive(Default)]
        pub(crate) struct Counters {
            $( $(#[doc = $doc])* pub(crate) $name: AtomicU64, )*
        }

        impl Counters {
            /// The counter names, in the order [`Counters::write`] prints them.
            pub(crate) const NAMES: &'static [&'static str] = &[$(stringify!($name)),*];

            /// Every counter at zero (for a `static`).
            pub(crate) const fn new() -> Self {
                Counters { $( $name: AtomicU64::new(0), )* }
            }

            /// Adds every counter's value to the same counter of `into`.
            pub(crate) fn add_to(&self, into: &Counters) {
                $( into.$name.fetch_add(self.$name.load(Relaxed), Relaxed); )*
            }

            /// Writes one `name value` line per counter.
            pub(crate) fn write(&self, w: &mut impl Write) -> fmt::Result {
                $( writeln!(w, "{} {}", stringify!($name), self.$name.load(Relaxed))?; )*
                Ok(())
            }
        }
    };
}

counters! {
    /// SCSI commands sent that read from the target (Data-In by target RDMA WRITE).
    cmds_read,
    /// SCSI commands sent that write to the target.
    cmds_write,
    /// SCSI commands sent without data.
    cmds_nodata,
    /// Bytes of read commands (their buffers exposed to the target).
    bytes_read,
    /// Bytes of write commands (immediate + unsolicited Data-Out + RDMA READ by the target).
    bytes_write,
    /// Of `bytes_write`: bytes sent as immediate data in the command PDU.
    bytes_immediate,
    /// Unsolicited Data-Out PDUs sent.
    dataout_pdus,
    /// Of `bytes_write`: bytes sent in unsolicited Data-Out PDUs.
    bytes_dataout,
    /// Control PDUs sent (login, text, NOP-Out, task management, logout).
    control_pdus,
    /// SENDs posted without asking for a completion (commands without immediate data).
    sends_unsignaled,
    /// Header-only SENDs (commands without immediate data, control PDUs without data)
    /// whose 76 bytes the provider copied at post time (`IB_SEND_INLINE`).
    sends_inline,
    /// PDUs received (responses, NOP-In, async messages, login/text responses, ...).
    pdus_rx,
    /// SCSI responses received.
    scsi_rsp_rx,
    /// Responses that arrived before the tracked SENDs of their task (immediate data,
    /// Data-Out, control PDUs) completed (held until they did).
    rsp_before_send_done,
    /// Of those: held responses dropped because their task ended first (abort, cleanup),
    /// never delivered to the task tag's next owner.
    rsp_held_dropped,
    /// Buffers exposed through a fast registration (REG_MR).
    reg_fastreg,
    /// Buffers exposed through the device's DMA key (one contiguous DMA range).
    reg_dma_key,
    /// Local invalidations posted: for a response without Send with Invalidate, for a task
    /// that ended without its response, before reusing a registration still valid.
    inval_local,
    /// Of those: for a task that ended without its response, posted when an ABORT TASK, LUN
    /// reset or target reset naming it was answered "Function complete" (the answer held
    /// until the invalidation completed) or as it ended (a timed-out task management
    /// request, connection cleanup).
    inval_aborted,
    /// Answers to task management requests held until the invalidation of the tasks they
    /// released completed.
    tmf_held,
    /// Registrations invalidated by the target (Send with Invalidate).
    inval_remote,
    /// Writes handed back to libiscsi (requeued) because their unsolicited Data-Outs did not
    /// all have a descriptor yet (the pool refills as earlier Data-Outs complete).
    requeue_dataout,
    /// Work completions with an error (other than flushes).
    err_completion,
    /// Work requests flushed (QP in error: teardown or after a failure).
    err_flush,
    /// PDUs rejected by validation (protocol or length errors from the target).
    err_protocol,
    /// Failed posts of work requests.
    err_post,
    /// Registrations refused because the pool was empty.
    err_reg_pool,
    /// SCSI commands refused for good when libiscsi prepared them (bidirectional, T10-PI, no
    /// data buffer: [`super::task::refusal`]); each completed at once with an error.
    err_cmd_refused,
    /// Connection failures reported to libiscsi.
    err_conn_failure,
}

/// The bucket of a latency of `ns` nanoseconds.
pub(crate) fn bucket(ns: u64) -> usize {
    let us = ns / 1000;
    if us == 0 {
        0
    } else {
        // us in [2^(b-1), 2^b) has b significant bits.
        ((u64::BITS - us.leading_zeros()) as usize).min(LAT_BUCKETS - 1)
    }
}

/// Lower bound of bucket `i` in microseconds.
pub(crate) fn bucket_floor_us(i: usize) -> u64 {
    if i == 0 {
        0
    } else {
        1u64 << (i - 1)
    }
}

/// Latency histogram of SCSI commands: from posting the command's SEND to receiving its
/// response.
pub(crate) struct Histogram {
    buckets: [AtomicU64; LAT_BUCKETS],
    sum_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: [const { AtomicU64::new(0) }; LAT_BUCKETS],
            sum_ns: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// Records one command that took `ns` nanoseconds.
    pub(crate) fn record(&self, ns: u64) {
        if let Some(b) = self.buckets.get(bucket(ns)) {
            b.fetch_add(1, Relaxed);
        }
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    /// A snapshot of the bucket counts.
    pub(crate) fn snapshot(&self) -> [u64; LAT_BUCKETS] {
        let mut out = [0u64; LAT_BUCKETS];
        for (o, b) in out.iter_mut().zip(self.buckets.iter()) {
            *o = b.load(Relaxed);
        }
        out
    }

    /// Writes the histogram: one `from_us to_us count` line per bucket, then the count, the
    /// mean and the bucket bounds of p50 and p99.
    pub(crate) fn write(&self, w: &mut impl Write) -> fmt::Result {
        let s = self.snapshot();
        let n: u64 = s.iter().sum();
        writeln!(
            w,
            "# latency_us from to count (SCSI command SEND posted -> response)"
        )?;
        for (i, c) in s.iter().enumerate() {
            if i + 1 < LAT_BUCKETS {
                writeln!(
                    w,
                    "latency_us {} {} {}",
                    bucket_floor_us(i),
                    bucket_floor_us(i + 1),
                    c
                )?;
            } else {
                writeln!(w, "latency_us {} inf {}", bucket_floor_us(i), c)?;
            }
        }
        writeln!(w, "latency_count {}", n)?;
        let mean = self.sum_ns.load(Relaxed) / n.max(1) / 1000;
        writeln!(w, "latency_mean_us {}", mean)?;
        for (name, q) in [("p50", 50), ("p99", 99)] {
            match percentile_bucket(&s, q) {
                Some(i) if i + 1 < LAT_BUCKETS => {
                    writeln!(w, "latency_{}_us_below {}", name, bucket_floor_us(i + 1))?
                }
                Some(_) => writeln!(w, "latency_{}_us_below inf", name)?,
                None => writeln!(w, "latency_{}_us_below -", name)?,
            }
        }
        Ok(())
    }
}

/// The bucket holding the `q`-th percentile (1..=100) of `s`, `None` if `s` is empty.
pub(crate) fn percentile_bucket(s: &[u64], q: u64) -> Option<usize> {
    let n: u64 = s.iter().sum();
    if n == 0 {
        return None;
    }
    // The rank (1-based) of the percentile: ceil(n * q / 100), at least 1.
    let rank = (n.saturating_mul(q.min(100)).div_ceil(100)).max(1);
    let mut seen = 0u64;
    for (i, c) in s.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return Some(i);
        }
    }
    None
}

/// Everything debugfs shows for one connection.
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) c: Counters,
    pub(crate) lat: Histogram,
}

impl Stats {
    /// Bumps a counter by one.
    #[inline]
    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }

    /// Adds `n` to a counter.
    #[inline]
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    /// The whole `stats` file: counters, then the latency histogram.
    pub(crate) fn write(&self, w: &mut impl Write) -> fmt::Result {
        self.c.write(w)?;
        self.lat.write(w)
    }
}
