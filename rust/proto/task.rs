// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! Per-task protocol decisions of the initiator's data path (iser-spec.md 4.5, 4.11): the
//! write STag/VA of a SCSI command, login stage transitions, and the task index an ITT
//! carries.

use super::hdr::Stag;

/// Login flags (byte 1 of a login request/response BHS): transit bit.
pub(crate) const LOGIN_TRANSIT: u8 = 0x80;
/// Login flags: next stage (NSG) mask.
pub(crate) const LOGIN_NSG_MASK: u8 = 0x03;
/// Login stage: full feature phase.
pub(crate) const FULL_FEATURE_PHASE: u8 = 0x03;
/// ITT bits that index libiscsi's task pool (`ISCSI_ITT_MASK`).
pub(crate) const ITT_INDEX_MASK: u32 = 0x1fff;

/// Whether a login PDU's flags ask for (request) or grant (response) the transition to full
/// feature phase: T set and NSG = 3.
pub(crate) fn login_to_ffp(flags: u8) -> bool {
    flags & LOGIN_TRANSIT != 0 && flags & LOGIN_NSG_MASK == FULL_FEATURE_PHASE
}

/// The pool index in an ITT as libiscsi builds it (`index | age << 28`, host order, echoed
/// by the target), or `None` for the reserved ITT or an index outside `0..pool`.
pub(crate) fn itt_index(itt: u32, pool: usize) -> Option<usize> {
    if itt == u32::MAX {
        return None;
    }
    let i = usize::try_from(itt & ITT_INDEX_MASK).ok()?;
    (i < pool).then_some(i)
}

/// The write STag of a SCSI WRITE (RFC 7145; iser-spec.md 4.5): what the target RDMA-Reads
/// beyond the unsolicited data (`imm` immediate bytes plus `unsol` unsolicited Data-Out
/// bytes) of a command with expected transfer length `edtl` and a buffer of `buf_len`
/// bytes registered at (`rkey`, `iova`).
///
/// `None` when everything is unsolicited; a zero STag/VA when the target must still be told
/// (W flag) but the buffer holds nothing beyond the immediate data (the PI corner case where
/// `edtl` exceeds the buffer).
pub(crate) fn write_stag(
    rkey: u32,
    iova: u64,
    imm: u32,
    unsol: u32,
    edtl: u32,
    buf_len: u32,
) -> Option<Stag> {
    let sent = imm.saturating_add(unsol);
    if sent >= edtl {
        return None;
    }
    Some(if buf_len > imm {
        Stag {
            stag: rkey,
            va: iova.wrapping_add(u64::from(sent)),
        }
    } else {
        Stag { stag: 0, va: 0 }
    })
}
