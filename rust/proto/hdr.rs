// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! The iSER header (RFC 7145 section 9.2), 28 bytes in front of every iSCSI PDU sent over an
//! iSER connection.
//!
//! ```text
//!  byte 0      flags: opcode in the high nibble (0x1 = iSCSI control-type PDU),
//!              0x08 = W (write STag valid), 0x04 = R (read STag valid), 0x03 reserved
//!  bytes 1-3   reserved
//!  bytes 4-7   write STag (big-endian)
//!  bytes 8-15  write base VA (big-endian)
//!  bytes 16-19 read STag (big-endian)
//!  bytes 20-27 read base VA (big-endian)
//! ```
//!
//! Reserved fields: "MUST be set to zero on transmit and MUST be ignored on receive" (RFC
//! 7145 9.2; 9.3 and 9.4 say the same of Hello and HelloReply): [`Header::encode`] writes
//! zeros and [`Header::decode`] ignores the two reserved flag bits and bytes 1-3, as it
//! ignores the STag and base offset of a buffer whose valid flag is clear. An unassigned
//! opcode is an iSER format error (10.1.3.3: the connection is terminated).
//!
//! The layout matches `struct iser_ctrl` in `include/scsi/iser.h`; `ffi` checks the size
//! against the kernel's struct at compile time.

/// Length of the iSER header in bytes.
pub(crate) const LEN: usize = 28;

/// Opcode (high nibble of the flags byte): iSCSI control-type PDU follows.
pub(crate) const OP_ISCSI_CTRL: u8 = 0x1;
/// Opcode: iSER Hello (never sent by an initiator that uses the CM private data).
pub(crate) const OP_HELLO: u8 = 0x2;
/// Opcode: iSER HelloReply.
pub(crate) const OP_HELLO_REPLY: u8 = 0x3;

/// Flag: the write STag and write base VA are valid (`ISER_WSV`).
pub(crate) const FLAG_WSV: u8 = 0x08;
/// Flag: the read STag and read base VA are valid (`ISER_RSV`).
pub(crate) const FLAG_RSV: u8 = 0x04;

/// A buffer the target may access with RDMA: steering tag (rkey) and base virtual address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stag {
    /// The remote key.
    pub(crate) stag: u32,
    /// The address of the first byte the target is to read or write.
    pub(crate) va: u64,
}

/// The key byte of a fast registration's new STag: the low byte of `key` plus one, wrapping
/// (`ib_inc_rkey()`); the other 24 bits name the MR and never change.
pub(crate) fn next_key_byte(key: u32) -> u8 {
    (key as u8).wrapping_add(1)
}

/// `key` with its low byte replaced by `b` (`ib_update_fast_reg_key()`).
pub(crate) fn with_key_byte(key: u32, b: u8) -> u32 {
    (key & 0xffff_ff00) | u32::from(b)
}

/// A decoded iSER header of an iSCSI control-type PDU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Header {
    /// Where the target reads solicited write data from (RDMA Read), if any.
    pub(crate) write: Option<Stag>,
    /// Where the target writes read data to (RDMA Write), if any.
    pub(crate) read: Option<Stag>,
}

/// Why a received iSER header was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Error {
    /// Fewer than [`LEN`] bytes.
    Truncated,
    /// The opcode is not iSCSI control (Hello/HelloReply or an unassigned value).
    Opcode(u8),
}

fn be32(b: &[u8; LEN], at: usize) -> u32 {
    let mut v = [0u8; 4];
    // PANIC: callers pass constant offsets with at + 4 <= LEN.
    v.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(v)
}

fn be64(b: &[u8; LEN], at: usize) -> u64 {
    let mut v = [0u8; 8];
    // PANIC: callers pass constant offsets with at + 8 <= LEN.
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(v)
}

impl Header {
    /// Encodes the header into its 28-byte wire form.
    ///
    /// An absent buffer is encoded as zero STag and VA with its valid flag clear.
    pub(crate) fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        let mut flags = OP_ISCSI_CTRL << 4;
        if let Some(w) = self.write {
            flags |= FLAG_WSV;
            b[4..8].copy_from_slice(&w.stag.to_be_bytes());
            b[8..16].copy_from_slice(&w.va.to_be_bytes());
        }
        if let Some(r) = self.read {
            flags |= FLAG_RSV;
            b[16..20].copy_from_slice(&r.stag.to_be_bytes());
            b[20..28].copy_from_slice(&r.va.to_be_bytes());
        }
        b[0] = flags;
        b
    }

    /// Decodes and validates a received iSER header (the first [`LEN`] bytes of `buf`).
    ///
    /// # Errors
    ///
    /// Rejects short buffers and opcodes other than iSCSI control. Reserved flag bits and
    /// bytes are ignored (RFC 7145 section 9.2: "MUST be ignored on receive").
    #[inline]
    pub(crate) fn decode(buf: &[u8]) -> Result<Self, Error> {
        let b: &[u8; LEN] = buf
            .get(..LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(Error::Truncated)?;
        let op = b[0] >> 4;
        if op != OP_ISCSI_CTRL {
            return Err(Error::Opcode(op));
        }
        // The reserved flag bits and bytes 1-3 are ignored on receive (RFC 7145 9.2).
        let low = b[0] & 0x0f;
        let write = (low & FLAG_WSV != 0).then(|| Stag {
            stag: be32(b, 4),
            va: be64(b, 8),
        });
        let read = (low & FLAG_RSV != 0).then(|| Stag {
            stag: be32(b, 16),
            va: be64(b, 20),
        });
        Ok(Header { write, read })
    }
}
