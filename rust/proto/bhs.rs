// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! The iSCSI Basic Header Segment (RFC 7143 section 11.2.1) as the initiator receives it, and
//! the RFC 1982 serial number arithmetic used for the CmdSN and StatSN windows.
//!
//! Every PDU the target sends arrives in a receive buffer posted by the initiator: the 28-byte
//! iSER header, the 48-byte BHS and the data segment (128 bytes in full-feature phase, 8192
//! during login). The target is not trusted, so [`decode_rx`] checks the BHS against what
//! the initiator can accept before anything else looks at it.
//!
//! ```text
//!  byte 0      bits 0x80 and 0x40 reserved in target PDUs (ignored), opcode in the low 6 bits
//!  byte 1      opcode-specific flags, 0x80 = F (final)
//!  bytes 2-3   opcode-specific
//!  byte 4      TotalAHSLength, in 4-byte words
//!  bytes 5-7   DataSegmentLength, in bytes (24-bit big-endian)
//!  bytes 8-15  LUN or opcode-specific
//!  bytes 16-19 Initiator Task Tag (opaque to the target)
//!  bytes 20-23 opcode-specific (Target Transfer Tag, ...)
//!  bytes 24-27 StatSN
//!  bytes 28-31 ExpCmdSN
//!  bytes 32-35 MaxCmdSN
//!  bytes 36-47 opcode-specific
//! ```
//!
//! iSER does not pad the data segment on the wire (the Linux initiator and target send it
//! unpadded), so the received length is not required to be a multiple of four.

/// Length of the Basic Header Segment in bytes.
pub(crate) const BHS_LEN: usize = 48;

/// Mask of the opcode bits in byte 0 (the two high bits are the retry/immediate bits in
/// initiator PDUs and reserved in target PDUs).
pub(crate) const OPCODE_MASK: u8 = 0x3f;
/// Flag in byte 1: F, the final PDU of a sequence.
pub(crate) const FLAG_FINAL: u8 = 0x80;
/// The Initiator Task Tag of a PDU that belongs to no task (unsolicited NOP-In, Async
/// Message, ...). The same in either byte order.
pub(crate) const RESERVED_ITT: u32 = 0xffff_ffff;

/// Initiator opcode: NOP-Out.
pub(crate) const OP_NOOP_OUT: u8 = 0x00;
/// Initiator opcode: SCSI Command.
pub(crate) const OP_SCSI_CMD: u8 = 0x01;
/// Initiator opcode: SCSI Task Management Function Request.
pub(crate) const OP_TMF: u8 = 0x02;
/// Initiator opcode: Login Request.
pub(crate) const OP_LOGIN: u8 = 0x03;
/// Initiator opcode: Text Request.
pub(crate) const OP_TEXT: u8 = 0x04;
/// Initiator opcode: SCSI Data-Out.
pub(crate) const OP_DATA_OUT: u8 = 0x05;
/// Initiator opcode: Logout Request.
pub(crate) const OP_LOGOUT: u8 = 0x06;

/// Target opcode: NOP-In.
pub(crate) const OP_NOOP_IN: u8 = 0x20;
/// Target opcode: SCSI Response.
pub(crate) const OP_SCSI_RSP: u8 = 0x21;
/// Target opcode: SCSI Task Management Function Response.
pub(crate) const OP_TMF_RSP: u8 = 0x22;
/// Target opcode: Login Response.
pub(crate) const OP_LOGIN_RSP: u8 = 0x23;
/// Target opcode: Text Response.
pub(crate) const OP_TEXT_RSP: u8 = 0x24;
/// Target opcode: SCSI Data-In (never sent over iSER, where read data moves by RDMA Write).
pub(crate) const OP_DATA_IN: u8 = 0x25;
/// Target opcode: Logout Response.
pub(crate) const OP_LOGOUT_RSP: u8 = 0x26;
/// Target opcode: Ready To Transfer (never sent over iSER, where the target fetches write
/// data by RDMA Read).
pub(crate) const OP_R2T: u8 = 0x31;
/// Target opcode: Asynchronous Message.
pub(crate) const OP_ASYNC_MSG: u8 = 0x32;
/// Target opcode: Reject.
pub(crate) const OP_REJECT: u8 = 0x3f;

/// Half the serial number space (RFC 1982 with SERIAL_BITS = 32): two numbers this far apart
/// are not comparable.
const SNA32_CHECK: u32 = 1 << 31;

/// Why a received BHS was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Error {
    /// The buffer or the received byte count is shorter than [`BHS_LEN`].
    Truncated,
    /// The opcode (low 6 bits of byte 0) is an initiator opcode or one no target sends.
    Opcode(u8),
    /// Data-In or R2T: valid iSCSI, but an iSER target moves data by RDMA Write and RDMA Read
    /// (RFC 7145) and never sends these.
    DataMovement(u8),
    /// TotalAHSLength is not zero; the initiator posts no room for AHS.
    Ahs {
        /// The announced AHS length in bytes.
        len: usize,
    },
    /// DataSegmentLength exceeds the capacity of the receive buffer.
    DataTooLong {
        /// The announced data segment length in bytes.
        len: usize,
        /// The receive buffer's data capacity in bytes.
        max: usize,
    },
    /// DataSegmentLength exceeds the bytes that actually arrived after the BHS.
    DataBeyondReceived {
        /// The announced data segment length in bytes.
        len: usize,
        /// The bytes received after the BHS.
        received: usize,
    },
}

impl Error {
    /// A sentence for the kernel log.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Error::Truncated => "PDU shorter than a basic header segment",
            Error::Opcode(_) => "opcode not valid from a target",
            Error::DataMovement(_) => "Data-In or R2T received on an iSER connection",
            Error::Ahs { .. } => "additional header segments not supported",
            Error::DataTooLong { .. } => "data segment larger than the receive buffer",
            Error::DataBeyondReceived { .. } => "data segment longer than the bytes received",
        }
    }
}

/// Reads the big-endian `u32` at `at` in the BHS.
fn be32(b: &[u8; BHS_LEN], at: usize) -> u32 {
    let mut v = [0u8; 4];
    // PANIC: callers pass constant offsets with at + 4 <= BHS_LEN.
    v.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(v)
}

// The accessors below index a `[u8; BHS_LEN]` with constant indices below BHS_LEN, which the
// compiler checks: they cannot panic.

/// The opcode: byte 0 without the two high bits.
pub(crate) fn opcode(bhs: &[u8; BHS_LEN]) -> u8 {
    bhs[0] & OPCODE_MASK
}

/// TotalAHSLength (byte 4, counted in 4-byte words), converted to bytes.
pub(crate) fn ahs_length(bhs: &[u8; BHS_LEN]) -> usize {
    usize::from(bhs[4]) * 4
}

/// DataSegmentLength: the 24-bit big-endian byte count in bytes 5 to 7 (padding excluded).
pub(crate) fn data_segment_length(bhs: &[u8; BHS_LEN]) -> u32 {
    (u32::from(bhs[5]) << 16) | (u32::from(bhs[6]) << 8) | u32::from(bhs[7])
}

/// The Initiator Task Tag (bytes 16 to 19) as the raw wire bytes in host order, as the kernel
/// reads `itt_t` from `struct iscsi_hdr`: the tag is opaque to the target and is echoed back
/// exactly as the initiator (libiscsi) stored it.
pub(crate) fn itt(bhs: &[u8; BHS_LEN]) -> u32 {
    u32::from_ne_bytes([bhs[16], bhs[17], bhs[18], bhs[19]])
}

/// Task management functions (RFC 7143 11.5.1) whose answer releases tasks.
pub(crate) const TMF_ABORT_TASK: u8 = 1;
pub(crate) const TMF_ABORT_TASK_SET: u8 = 2;
pub(crate) const TMF_CLEAR_TASK_SET: u8 = 3;
pub(crate) const TMF_LOGICAL_UNIT_RESET: u8 = 5;
pub(crate) const TMF_TARGET_WARM_RESET: u8 = 6;
pub(crate) const TMF_TARGET_COLD_RESET: u8 = 7;

/// Task Management Function Response "Function complete" (byte 2; RFC 7143 11.6.1): the
/// only answer after which libiscsi releases the tasks the function named.
pub(crate) const TMF_RSP_COMPLETE: u8 = 0;

/// The LUN field (bytes 8 to 15) as raw wire bytes in host order: compared, never decoded.
pub(crate) fn lun(bhs: &[u8; BHS_LEN]) -> u64 {
    u64::from_ne_bytes([
        bhs[8], bhs[9], bhs[10], bhs[11], bhs[12], bhs[13], bhs[14], bhs[15],
    ])
}

/// The tasks of this connection that a Task Management Function Request acts on, once it is
/// answered "Function complete": after that answer the target transfers no more data for
/// them (RFC 7143 4.2.3.3, 11.5.1) and libiscsi hands them back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TmfScope {
    /// ABORT TASK: the task of this Referenced Task Tag (bytes 20 to 23, raw as [`itt`]).
    Task(u32),
    /// ABORT TASK SET, CLEAR TASK SET, LOGICAL UNIT RESET: every task of this LUN (raw, as
    /// [`lun`]).
    Lun(u64),
    /// TARGET WARM RESET, TARGET COLD RESET: every task.
    Target,
}

/// What a Task Management Function Request acts on; `None` for any other PDU and for the
/// functions that release no task (CLEAR ACA, TASK REASSIGN, unknown ones).
pub(crate) fn tmf_scope(bhs: &[u8; BHS_LEN]) -> Option<TmfScope> {
    if opcode(bhs) != OP_TMF {
        return None;
    }
    match bhs[1] & 0x7f {
        TMF_ABORT_TASK => Some(TmfScope::Task(u32::from_ne_bytes([
            bhs[20], bhs[21], bhs[22], bhs[23],
        ]))),
        TMF_ABORT_TASK_SET | TMF_CLEAR_TASK_SET | TMF_LOGICAL_UNIT_RESET => {
            Some(TmfScope::Lun(lun(bhs)))
        }
        TMF_TARGET_WARM_RESET | TMF_TARGET_COLD_RESET => Some(TmfScope::Target),
        _ => None,
    }
}

/// Whether a target may send `op` on an iSER connection (Data-In and R2T excluded).
fn is_target_opcode(op: u8) -> bool {
    matches!(
        op,
        OP_NOOP_IN
            | OP_SCSI_RSP
            | OP_TMF_RSP
            | OP_LOGIN_RSP
            | OP_TEXT_RSP
            | OP_LOGOUT_RSP
            | OP_ASYNC_MSG
            | OP_REJECT
    )
}

/// A received PDU whose BHS passed [`decode_rx`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RxPdu {
    /// The opcode, one of the target opcodes other than Data-In and R2T.
    pub(crate) opcode: u8,
    /// The flags byte (byte 1), opcode-specific.
    pub(crate) flags: u8,
    /// The Initiator Task Tag, raw as on the wire (see [`itt`]).
    pub(crate) itt: u32,
    /// The AHS length in bytes; always zero once accepted.
    pub(crate) ahs_len: usize,
    /// The data segment length in bytes (unpadded); the data follows the BHS directly.
    pub(crate) data_len: usize,
    /// The F bit of the flags byte.
    pub(crate) final_bit: bool,
    /// StatSN (bytes 24 to 27).
    pub(crate) stat_sn: u32,
    /// ExpCmdSN (bytes 28 to 31).
    pub(crate) exp_cmd_sn: u32,
    /// MaxCmdSN (bytes 32 to 35).
    pub(crate) max_cmd_sn: u32,
}

impl RxPdu {
    /// The data segment inside `buf`, the buffer that was passed to [`decode_rx`].
    ///
    /// Returns an empty slice if `buf` is too short, which cannot happen for the buffer the
    /// PDU was decoded from.
    pub(crate) fn data<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        BHS_LEN
            .checked_add(self.data_len)
            .and_then(|end| buf.get(BHS_LEN..end))
            .unwrap_or(&[])
    }
}

/// Decodes and validates a received BHS.
///
/// `buf` starts at the BHS (after the iSER header); `received_len` is the number of bytes of
/// `buf` the target actually wrote (the completion's byte count minus the iSER header);
/// `max_data` is the receive buffer's data capacity (128 in full-feature phase, 8192 during
/// login). Bytes beyond `buf` are never trusted: the data segment must lie within both
/// `received_len` and `buf`, so [`RxPdu::data`] always returns the whole segment.
///
/// # Errors
///
/// Rejects, in this order: fewer than [`BHS_LEN`] bytes in `buf` or received; initiator and
/// unknown opcodes; Data-In and R2T; a non-zero AHS length; a data segment larger than
/// `max_data`; a data segment extending past the received bytes. Padding after the data
/// segment is neither required nor checked.
#[inline]
pub(crate) fn decode_rx(buf: &[u8], received_len: usize, max_data: usize) -> Result<RxPdu, Error> {
    let b: &[u8; BHS_LEN] = buf
        .get(..BHS_LEN)
        .and_then(|s| s.try_into().ok())
        .ok_or(Error::Truncated)?;
    if received_len < BHS_LEN {
        return Err(Error::Truncated);
    }
    let op = opcode(b);
    if op == OP_DATA_IN || op == OP_R2T {
        return Err(Error::DataMovement(op));
    }
    if !is_target_opcode(op) {
        return Err(Error::Opcode(op));
    }
    let ahs_len = ahs_length(b);
    if ahs_len != 0 {
        return Err(Error::Ahs { len: ahs_len });
    }
    // A 24-bit value always fits a usize on the 32- and 64-bit targets Linux supports; the
    // fallback only makes the length check fail.
    let data_len = usize::try_from(data_segment_length(b)).unwrap_or(usize::MAX);
    if data_len > max_data {
        return Err(Error::DataTooLong {
            len: data_len,
            max: max_data,
        });
    }
    // PANIC: buf.len() >= BHS_LEN (the get above succeeded) and received_len >= BHS_LEN.
    let received = received_len.min(buf.len()) - BHS_LEN;
    if data_len > received {
        return Err(Error::DataBeyondReceived {
            len: data_len,
            received,
        });
    }
    Ok(RxPdu {
        opcode: op,
        flags: b[1],
        itt: itt(b),
        ahs_len,
        data_len,
        final_bit: b[1] & FLAG_FINAL != 0,
        stat_sn: be32(b, 24),
        exp_cmd_sn: be32(b, 28),
        max_cmd_sn: be32(b, 32),
    })
}

/// RFC 1982 "less than" for 32-bit serial numbers (CmdSN, StatSN): `b` is ahead of `a` by
/// less than 2^31.
///
/// Equal numbers and numbers exactly 2^31 apart are not ordered (RFC 1982 section 3.2), as
/// with the `SNA32_CHECK` form of `iscsi_sna_lt`. The 6.12 `iscsi_sna_lt`, written as
/// `(s32)(a - b) < 0`, agrees at every other distance but calls both orders "less than" at
/// exactly 2^31.
pub(crate) fn sn_lt(a: u32, b: u32) -> bool {
    let d = b.wrapping_sub(a);
    d != 0 && d < SNA32_CHECK
}

/// RFC 1982 "greater than" for 32-bit serial numbers: `a` is ahead of `b` by less than 2^31.
///
/// Equal numbers and numbers exactly 2^31 apart are not ordered; this matches the kernel's
/// `iscsi_sna_gt` at every distance.
pub(crate) fn sn_gt(a: u32, b: u32) -> bool {
    sn_lt(b, a)
}
