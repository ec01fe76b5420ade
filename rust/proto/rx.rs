// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! Validation of a received buffer as a whole: the one function the completion handler calls
//! before it looks at anything a target wrote (iSER header, BHS, data segment length against
//! the buffer and against the bytes received, the ITT against the task pool).
//!
//! The target is not trusted: a hostile or buggy target controls every byte of the buffer and
//! the completion's byte count. [`parse`] never indexes outside `buf`, and every value it
//! returns is within the bounds the caller gave it, so the driver can use them as indices.

use super::{bhs, hdr, task};

/// What a received buffer holds, once validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rx {
    /// The decoded BHS.
    pub(crate) pdu: bhs::RxPdu,
    /// The task slot the ITT names (`< pool`), or `None` for the reserved ITT (unsolicited
    /// NOP-In, Async Message, Reject without a task) and for ITTs outside the pool. libiscsi
    /// checks the ITT again (index and age) and drops PDUs for tasks it does not know.
    pub(crate) slot: Option<usize>,
    /// Bytes of `buf` to hand to libiscsi: iSER header + BHS + data segment.
    pub(crate) len: usize,
}

/// Why a received buffer was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Error {
    /// The iSER header is invalid.
    Hdr(hdr::Error),
    /// The BHS is invalid or its data segment does not fit.
    Bhs(bhs::Error),
}

impl Error {
    /// A sentence for the kernel log.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Error::Hdr(hdr::Error::Truncated) => "PDU shorter than an iSER header",
            Error::Hdr(hdr::Error::Opcode(_)) => "iSER header opcode is not iSCSI control",
            Error::Bhs(e) => e.reason(),
        }
    }
}

/// Validates the first `byte_len` bytes the target wrote into `buf` (a receive buffer:
/// iSER header, BHS, data segment of at most `max_data` bytes), and looks the ITT up in a task
/// pool of `pool` slots.
///
/// `byte_len` is the completion's byte count, which the hardware bounds by the posted length
/// but which is not trusted here either: only `min(byte_len, buf.len())` bytes count.
///
/// # Errors
///
/// The iSER header first ([`hdr::Header::decode`]), then the BHS ([`bhs::decode_rx`]).
#[inline]
pub(crate) fn parse(
    buf: &[u8],
    byte_len: usize,
    max_data: usize,
    pool: usize,
) -> Result<Rx, Error> {
    let received = byte_len.min(buf.len());
    let head = buf.get(..received).unwrap_or(&[]);
    hdr::Header::decode(head).map_err(Error::Hdr)?;
    let body = buf.get(hdr::LEN..).unwrap_or(&[]);
    let pdu =
        bhs::decode_rx(body, received.saturating_sub(hdr::LEN), max_data).map_err(Error::Bhs)?;
    let len = hdr::LEN + bhs::BHS_LEN + pdu.data_len;
    Ok(Rx {
        pdu,
        slot: task::itt_index(pdu.itt, pool),
        len,
    })
}
