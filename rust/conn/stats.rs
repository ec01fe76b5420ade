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
    /// The target; `None` for the view of [`ENDED`] ([`ConnStats::ended`]).
    pub(super) peer: Option<SocketAddr>,
    pub(super) s: Stats,
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
