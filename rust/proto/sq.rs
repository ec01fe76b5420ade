// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! Work-request economy of the data path (Documentation/design.rst, "Data path rules"):
//! which SENDs ask for a work completion, and receive buffers reposted in batches.
//!
//! # Selective signalling
//!
//! The C driver signals every SEND. A completion is needed only
//!
//! - when the SEND reads memory that is released once its task completes: immediate data
//!   and unsolicited Data-Out read the SCSI buffer, which is unmapped when the task is
//!   cleaned up. The task's response is held until these completions arrived (a
//!   retransmission after the response must not read an unmapped buffer);
//! - when a control task is freed at send completion (NOP-Out with the reserved ITT), and
//!   for the rest of the control PDUs, which are rare;
//! - often enough that send-queue slots are reclaimed: a provider learns that unsignalled
//!   work requests are done only from a later signalled completion, so at most
//!   [`MAX_UNSIGNALED`] SENDs in a row go without one.
//!
//! A command SEND that carries no data reads only its task's header slot, which stays mapped
//! for the connection's lifetime: the command's response proves that the target received it
//! (RC delivers in order), a retransmission after that re-reads the header slot (still
//! mapped) and the target discards it as a duplicate. Such a SEND (every read command) needs
//! no completion, which saves a completion queue entry, a poll and a lock per I/O.

pub(crate) use super::sizing::RX_BATCH;

/// Longest run of SENDs posted without a completion request.
pub(crate) const MAX_UNSIGNALED: u32 = 16;

/// How one SEND is posted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signal {
    /// Signalled; its task waits for the completion.
    Track,
    /// Signalled to reclaim send-queue slots; nobody waits for it.
    Reclaim,
    /// Not signalled.
    Quiet,
}

impl Signal {
    /// Whether the work request asks for a completion.
    pub(crate) fn signaled(self) -> bool {
        self != Signal::Quiet
    }
}

/// The send queue's signalling state: SENDs posted since the last signalled one.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Signals {
    unsignaled: u32,
}

impl Signals {
    /// How to post the next SEND; `track`: its task needs the completion.
    pub(crate) fn next(&self, track: bool) -> Signal {
        if track {
            Signal::Track
        } else if self.unsignaled + 1 >= MAX_UNSIGNALED {
            Signal::Reclaim
        } else {
            Signal::Quiet
        }
    }

    /// A SEND posted as `s` (call only after the post succeeded).
    pub(crate) fn posted(&mut self, s: Signal) {
        self.unsignaled = if s.signaled() {
            0
        } else {
            self.unsignaled.saturating_add(1)
        };
    }

    /// SENDs posted without a completion request since the last signalled one.
    pub(crate) fn unsignaled(&self) -> u32 {
        self.unsignaled
    }
}

/// Consumed receive-ring buffers waiting to be reposted together.
///
/// The C driver reposts each buffer on its own (one `ib_post_recv`, and on soft-RoCE three
/// lock round trips, per response). Here a buffer waits until [`RX_BATCH`] are consumed and
/// they go back in one chain. The ring is `RX_BATCH` buffers larger than the session's task
/// pool, so at most `RX_BATCH - 1` held back still leave one posted buffer per task.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RxBatch {
    idx: [usize; RX_BATCH],
    len: usize,
}

impl RxBatch {
    /// Adds consumed buffer `i`; returns the full batch to post (and starts a new one).
    pub(crate) fn push(&mut self, i: usize) -> Option<[usize; RX_BATCH]> {
        if let Some(slot) = self.idx.get_mut(self.len) {
            *slot = i;
            self.len += 1;
        }
        if self.len == RX_BATCH {
            self.len = 0;
            Some(self.idx)
        } else {
            None
        }
    }

    /// Buffers held back.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}
