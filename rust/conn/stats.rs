// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! Per-connection statistics in debugfs (`/sys/kernel/debug/iser/connection<sid>:<cid>/stats`)
//! and the sums of every ended connection (`/sys/kernel/debug/iser/ended/counters`).
//!
//! Locks and contexts: the counters are atomics, incremented from any context; the files are
//! read in process context.

use super::*;

/// The counters of every connection that ended since the module was loaded
/// (`/sys/kernel/debug/iser/ended/counters`): a connection's are added when its statistics
/// are dropped, after its own debugfs file is gone, so that what a failed connection counted
/// outlives it.
pub(crate) static ENDED: Counters = Counters::new();

/// What `/sys/kernel/debug/iser/connection<sid>:<cid>/stats` shows: the peer, then the
/// counters and latency histogram of [`Stats`] (Documentation/admin-guide.rst).
pub(crate) struct ConnStats {
    /// The target.
    pub(super) peer: SocketAddr,
    pub(super) s: Stats,
}

impl Show for ConnStats {
    fn show(&self, w: &mut SeqWriter<'_>) -> fmt::Result {
        writeln!(w, "peer {}", self.peer)?;
        self.s.write(w)
    }
}

impl Drop for ConnStats {
    fn drop(&mut self) {
        self.s.c.add_to(&ENDED);
    }
}

/// What `/sys/kernel/debug/iser/ended/counters` shows: `peer -`, then the counters of
/// [`ENDED`] (no latency histogram).
pub(crate) struct EndedCounters;

impl Show for EndedCounters {
    fn show(&self, w: &mut SeqWriter<'_>) -> fmt::Result {
        writeln!(w, "peer -")?;
        ENDED.write(w)
    }
}
