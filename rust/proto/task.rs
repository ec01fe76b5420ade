// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! Per-task protocol decisions of the initiator's data path (iser-spec.md 4.5, 4.11): the
//! write STag/VA of a SCSI command, the commands refused before they get a CmdSN, login stage
//! transitions, the task index an ITT carries, and what a task management request's answer
//! releases.

use super::bhs::TmfScope;
use super::hdr::Stag;

/// `ISCSI_FLAG_CMD_READ` in byte 1 of a SCSI command BHS.
pub(crate) const CMD_READ: u8 = 0x40;
/// `ISCSI_FLAG_CMD_WRITE` in byte 1 of a SCSI command BHS.
pub(crate) const CMD_WRITE: u8 = 0x20;

/// Why a SCSI command can never go out on this transport, whenever it is tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Both R and W set: iSER carries one direction per command (and the SCSI midlayer sends
    /// no bidirectional commands since 5.1).
    Bidirectional,
    /// A protection information operation: our hosts never register T10-PI (soft-RoCE and
    /// siw cannot carry it).
    ProtectionInfo,
    /// R or W set but no data buffer (the midlayer sets no direction for an empty one).
    NoBuffer,
}

impl Refusal {
    /// The reason, for the log line.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refusal::Bidirectional => "bidirectional commands are not supported",
            Refusal::ProtectionInfo => "T10-PI command on a connection without PI",
            Refusal::NoBuffer => "data command without a data buffer",
        }
    }
}

/// Whether a SCSI command with BHS flags `flags`, a protection operation (`!prot_normal`)
/// and a data buffer of `buf_len` bytes in `sg_count` entries must be refused for good:
/// retrying it can only fail the same way. Checked when libiscsi prepares the command
/// (`init_task`), where an error completes it at once (`DID_ABORT`), rather than when it is
/// sent (`xmit_task`), where any error requeues it until the SCSI timeout.
pub(crate) fn refusal(
    flags: u8,
    prot_normal: bool,
    buf_len: u32,
    sg_count: u32,
) -> Option<Refusal> {
    let (read, write) = (flags & CMD_READ != 0, flags & CMD_WRITE != 0);
    if read && write {
        Some(Refusal::Bidirectional)
    } else if !prot_normal {
        Some(Refusal::ProtectionInfo)
    } else if (read || write) && (buf_len == 0 || sg_count == 0) {
        Some(Refusal::NoBuffer)
    } else {
        None
    }
}

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

/// How one direction of a task's buffer is exposed to the target, packed into one word so
/// that the completion path can read it without the submission path's lock: a Send with
/// Invalidate is checked against it (iser-spec.md 5.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exposed {
    /// Nothing registered in this direction.
    None,
    /// The DMA key: nothing the target may invalidate.
    DmaKey,
    /// Fast-registration MR `idx` of the pool, registered with `rkey`.
    Mr { idx: u32, rkey: u32 },
}

/// MR indices an [`Exposed`] word can carry.
pub(crate) const EXPOSED_MAX_MRS: u32 = 1 << 30;
const EXPOSED_MR: u64 = 1 << 63;
const EXPOSED_DMA_KEY: u64 = 1 << 62;

impl Exposed {
    /// The word (`0` is [`Exposed::None`]). MR indices are below [`EXPOSED_MAX_MRS`] (pool
    /// sizes are at most the session's command count).
    pub(crate) const fn encode(self) -> u64 {
        match self {
            Exposed::None => 0,
            Exposed::DmaKey => EXPOSED_DMA_KEY,
            Exposed::Mr { idx, rkey } => {
                EXPOSED_MR | ((idx as u64) & (EXPOSED_MAX_MRS as u64 - 1)) << 32 | rkey as u64
            }
        }
    }

    /// Reads a word written by [`Exposed::encode`]; anything else is [`Exposed::None`].
    pub(crate) const fn decode(w: u64) -> Self {
        if w & EXPOSED_MR != 0 && w & EXPOSED_DMA_KEY == 0 {
            Exposed::Mr {
                idx: ((w >> 32) & 0x3fff_ffff) as u32,
                rkey: w as u32,
            }
        } else if w == EXPOSED_DMA_KEY {
            Exposed::DmaKey
        } else {
            Exposed::None
        }
    }
}

/// What the answer to a Task Management Function request releases, kept in the request's
/// task slot from its post to its answer as one word ([`TmfRef::encode`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TmfRef {
    /// The task in this slot (ABORT TASK).
    Task(usize),
    /// Every task of the LUN that the request's slot records (ABORT TASK SET, CLEAR TASK SET,
    /// LOGICAL UNIT RESET).
    Lun,
    /// Every task (TARGET WARM RESET, TARGET COLD RESET).
    Target,
}

const TMF_REF_LUN: u32 = u32::MAX;
const TMF_REF_TARGET: u32 = u32::MAX - 1;

impl TmfRef {
    /// The reference of a request acting on `scope` in a pool of `pool` task slots; `None`
    /// for an ABORT TASK whose Referenced Task Tag names no slot of the pool.
    pub(crate) fn of(scope: TmfScope, pool: usize) -> Option<Self> {
        match scope {
            TmfScope::Task(rtt) => itt_index(rtt, pool).map(TmfRef::Task),
            TmfScope::Lun(_) => Some(TmfRef::Lun),
            TmfScope::Target => Some(TmfRef::Target),
        }
    }

    /// The slot's word: 0 for nothing, else what [`TmfRef::decode`] reads back. A task index
    /// that does not fit below the two reserved words is nothing (not reached: indices are
    /// below [`ITT_INDEX_MASK`]).
    pub(crate) fn encode(r: Option<Self>) -> u32 {
        match r {
            None => 0,
            Some(TmfRef::Lun) => TMF_REF_LUN,
            Some(TmfRef::Target) => TMF_REF_TARGET,
            Some(TmfRef::Task(i)) => u32::try_from(i)
                .ok()
                .and_then(|i| i.checked_add(1))
                .filter(|&w| w < TMF_REF_TARGET)
                .unwrap_or(0),
        }
    }

    /// Reads a word written by [`TmfRef::encode`].
    pub(crate) fn decode(w: u32) -> Option<Self> {
        match w {
            0 => None,
            TMF_REF_LUN => Some(TmfRef::Lun),
            TMF_REF_TARGET => Some(TmfRef::Target),
            w => Some(TmfRef::Task((w - 1) as usize)),
        }
    }

    /// Whether a task of `lun` (raw, as [`super::bhs::lun`]) is released, for a request
    /// whose own LUN field is `req_lun`: always for [`TmfRef::Target`], on the same LUN for
    /// [`TmfRef::Lun`]; never for [`TmfRef::Task`], which names its task by slot.
    pub(crate) fn covers_lun(self, req_lun: u64, lun: u64) -> bool {
        match self {
            TmfRef::Task(_) => false,
            TmfRef::Lun => lun == req_lun,
            TmfRef::Target => true,
        }
    }
}
