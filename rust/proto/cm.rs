// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! The iSER CM private data (`struct iser_cm_hdr`, RFC 7145 section 9.1 as used by Linux):
//! four bytes exchanged in the RDMA CM connect request and reply, one flag byte followed by
//! three reserved zero bytes.

/// Length of the iSER CM header in bytes.
pub(crate) const LEN: usize = 4;

/// Request flag: the initiator does not use zero-based virtual addresses (`ISER_ZBVA_NOT_SUP`).
pub(crate) const REQ_ZBVA_NOT_SUP: u8 = 0x80;
/// Request flag: the initiator does not support Send with Invalidate
/// (`ISER_SEND_W_INV_NOT_SUP`).
pub(crate) const REQ_SEND_W_INV_NOT_SUP: u8 = 0x40;
/// Reply flag: the target does not use zero-based virtual addresses (`ISERT_ZBVA_NOT_USED`).
pub(crate) const REP_ZBVA_NOT_USED: u8 = 0x80;
/// Reply flag: the target will not use Send with Invalidate (`ISERT_SEND_W_INV_NOT_USED`).
pub(crate) const REP_SEND_W_INV_NOT_USED: u8 = 0x40;

/// What the initiator asks for in its connect request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Request {
    /// The initiator can take remote invalidation (false with `always_register=0`, where
    /// buffers use the PD's global rkey, which must never be invalidated).
    pub(crate) send_with_invalidate: bool,
}

impl Request {
    /// Encodes the connect request private data. Zero-based VAs are never used.
    pub(crate) fn encode(&self) -> [u8; LEN] {
        let mut flags = REQ_ZBVA_NOT_SUP;
        if !self.send_with_invalidate {
            flags |= REQ_SEND_W_INV_NOT_SUP;
        }
        [flags, 0, 0, 0]
    }

    /// Decodes a connect request (used by tests and by a target-side peer).
    pub(crate) fn decode(buf: &[u8]) -> Option<Self> {
        let flags = *buf.first()?;
        Some(Request {
            send_with_invalidate: flags & REQ_SEND_W_INV_NOT_SUP == 0,
        })
    }
}

/// What the target's accept (ESTABLISHED private data) allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reply {
    /// The target may invalidate our rkeys with Send with Invalidate.
    pub(crate) send_with_invalidate: bool,
}

impl Reply {
    /// Interprets the private data of the target's reply.
    ///
    /// `None` (the CM event carried no private data at all, possible on iWARP) means the
    /// target said nothing: no remote invalidation. Private data is at least [`LEN`] bytes on
    /// InfiniBand and RoCE (the CM pads it with zeros), so an all-zero area (a target that
    /// sends none) allows remote invalidation, as in the C driver. Data shorter than one byte
    /// is treated like no data. Reserved bytes and the ZBVA bit are ignored (RFC 7145: ignore
    /// on receipt).
    pub(crate) fn decode(private_data: Option<&[u8]>) -> Self {
        let send_with_invalidate = match private_data.and_then(|d| d.first()) {
            Some(flags) => flags & REP_SEND_W_INV_NOT_USED == 0,
            None => false,
        };
        Reply {
            send_with_invalidate,
        }
    }

    /// Encodes a reply (used by tests and by a target-side peer).
    pub(crate) fn encode(&self) -> [u8; LEN] {
        let mut flags = REP_ZBVA_NOT_USED;
        if !self.send_with_invalidate {
            flags |= REP_SEND_W_INV_NOT_USED;
        }
        [flags, 0, 0, 0]
    }
}

/// Remote invalidation is used only if both sides allow it.
pub(crate) fn remote_invalidation(req: Request, rep: Reply) -> bool {
    req.send_with_invalidate && rep.send_with_invalidate
}
