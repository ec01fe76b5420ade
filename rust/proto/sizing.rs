// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! Buffer, queue and host sizing of an iSER connection (iser-spec.md 3.5.2, 5.3 and 8),
//! computed from the device limits and the module parameters. Pure arithmetic, host-tested.

use super::{bhs::BHS_LEN, hdr};

/// Data bytes a full-feature-phase receive buffer holds (`ISER_RECV_DATA_SEG_LEN`); also the
/// connection's MaxRecvDataSegmentLength.
pub(crate) const RECV_DATA_SEG_LEN: usize = 128;
/// iSER header + BHS (`ISER_HEADERS_LEN`).
pub(crate) const HEADERS_LEN: usize = hdr::LEN + BHS_LEN;
/// Bytes posted per receive-ring buffer (`ISER_RX_PAYLOAD_SIZE`).
pub(crate) const RX_PAYLOAD: usize = HEADERS_LEN + RECV_DATA_SEG_LEN;
/// Login/text request data capacity (`ISCSI_DEF_MAX_RECV_SEG_LEN`).
pub(crate) const LOGIN_DATA_LEN: usize = 8192;
/// Login/text response buffer (`ISER_RX_LOGIN_SIZE`).
pub(crate) const RX_LOGIN_SIZE: usize = HEADERS_LEN + LOGIN_DATA_LEN;
/// Receive queue depth before the drain slot (`ISER_QP_MAX_RECV_DTOS`).
pub(crate) const MAX_RECV_DTOS: u32 = 512;
/// Consumed receive buffers reposted together in one chain (`super::sq::RxBatch`); the ring
/// has this many buffers more than the session has tasks, so the batch held back never
/// leaves a response without a posted buffer.
pub(crate) const RX_BATCH: usize = 8;
/// Commands per connection at most (`ISER_DEF_XMIT_CMDS_MAX`).
pub(crate) const MAX_XMIT_CMDS: u32 = 512;
/// Unsolicited Data-Out PDUs assumed in flight per command (`ISER_INFLIGHT_DATAOUTS`).
pub(crate) const INFLIGHT_DATAOUTS: u32 = 8;
/// Management send WRs (NOP-Out x2, text, TMF x2, logout).
const MAX_TX_MISC_PDUS: u32 = 6;
/// Management receives (NOP-In x2, async x2).
const MAX_RX_MISC_PDUS: u32 = 4;
/// Send queue depth before the drain slot (`ISER_QP_MAX_REQ_DTOS`, 4618).
pub(crate) const MAX_REQ_DTOS: u32 =
    MAX_XMIT_CMDS * (1 + INFLIGHT_DATAOUTS) + MAX_TX_MISC_PDUS + MAX_RX_MISC_PDUS;
/// Scatter/gather entries per command at most (16 MiB with 4 KiB pages).
pub(crate) const MAX_SG_TABLESIZE: u32 = 4096;
/// Registration page size.
pub(crate) const PAGE: u32 = 4096;
/// Sector size.
pub(crate) const SECTOR: u32 = 512;

/// Device limits that matter for sizing.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DevLimits {
    /// `max_qp_wr`.
    pub(crate) max_qp_wr: u32,
    /// `max_fast_reg_page_list_len`.
    pub(crate) max_fast_reg_page_list_len: u32,
    /// The device registers SG lists with gaps (no extra page for a misaligned start).
    pub(crate) sg_gaps: bool,
}

/// Per-connection sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sizing {
    /// SG entries per command (host `sg_tablesize`).
    pub(crate) sg_tablesize: u32,
    /// Pages per fast-registration MR.
    pub(crate) pages_per_mr: u32,
    /// Send queue depth including the drain slot.
    pub(crate) max_send_wr: u32,
    /// Receive queue depth including the drain slot.
    pub(crate) max_recv_wr: u32,
    /// CQ entries.
    pub(crate) nr_cqe: u32,
    /// Commands the send queue can carry.
    pub(crate) max_cmds: u32,
}

/// Why a device cannot carry an iSER connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Error {
    /// The device registers no pages per MR.
    NoFastRegPages,
    /// The send queue is too small for even one command.
    QueueTooSmall(u32),
}

impl Error {
    /// A sentence for the kernel log.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Error::NoFastRegPages => "device reports no fast-registration pages",
            Error::QueueTooSmall(_) => "device work queues too small for iSER",
        }
    }
}

/// Sizes a connection for `max_sectors` (the module parameter) on a device.
pub(crate) fn connection(max_sectors: u32, dev: DevLimits) -> Result<Sizing, Error> {
    let reserved = u32::from(!dev.sg_gaps);
    let supported = dev
        .max_fast_reg_page_list_len
        .saturating_sub(reserved)
        .min(MAX_SG_TABLESIZE);
    if supported == 0 {
        return Err(Error::NoFastRegPages);
    }
    let bytes = u64::from(max_sectors) * u64::from(SECTOR);
    let wanted = bytes.div_ceil(u64::from(PAGE)).max(1);
    let sg_tablesize = u32::try_from(wanted).unwrap_or(u32::MAX).min(supported);
    let max_send_wr = (MAX_REQ_DTOS + 1).min(dev.max_qp_wr);
    let max_cmds = max_send_wr.saturating_sub(1 + MAX_TX_MISC_PDUS + MAX_RX_MISC_PDUS)
        / (1 + INFLIGHT_DATAOUTS);
    if max_cmds == 0 {
        return Err(Error::QueueTooSmall(dev.max_qp_wr));
    }
    Ok(Sizing {
        sg_tablesize,
        pages_per_mr: sg_tablesize + reserved,
        max_send_wr,
        max_recv_wr: MAX_RECV_DTOS + RX_BATCH as u32 + 1,
        nr_cqe: max_send_wr + MAX_RECV_DTOS + RX_BATCH as u32,
        max_cmds: max_cmds.min(MAX_XMIT_CMDS),
    })
}

/// Send-queue work requests one SCSI command takes besides its Data-Outs: the registration,
/// the command SEND and one invalidation, either after its response (a response without
/// Send with Invalidate) or before the registration (the MR's previous task ended without a
/// response). Both happen to one command only after an abort; a queue that overflows then
/// fails the post and the connection, which recovers.
pub(crate) const WRS_PER_CMD: u32 = 3;
/// Unsolicited Data-Out headers (iSER header + BHS) one page-sized DMA buffer holds.
pub(crate) const DATAOUTS_PER_PAGE: usize = PAGE as usize / HEADERS_LEN;

/// A connection's unsolicited Data-Out descriptors: the send-queue slots left when `tasks`
/// commands (each up to [`WRS_PER_CMD`]), the control PDUs and the drain slot are counted,
/// at least one. Every descriptor in flight is one SEND on the queue, so descriptors and
/// commands together never overflow it.
pub(crate) fn dataout_descs(max_send_wr: u32, tasks: usize) -> usize {
    let t = u32::try_from(tasks).unwrap_or(u32::MAX);
    let used = t
        .saturating_mul(WRS_PER_CMD)
        .saturating_add(1 + MAX_TX_MISC_PDUS);
    max_send_wr.saturating_sub(used).max(1) as usize
}

/// The Data-Out PDUs libiscsi makes of `unsol` unsolicited bytes: `iscsi_prep_data_out_pdu`
/// sends `min(MaxXmitDataSegmentLength, what is left)` each. `None` if `max_xmit` is 0 (no
/// PDU could carry a byte).
pub(crate) fn dataouts_for(unsol: u32, max_xmit: u32) -> Option<usize> {
    match (unsol, max_xmit) {
        (0, _) => Some(0),
        (_, 0) => None,
        (u, m) => usize::try_from(u.div_ceil(m)).ok(),
    }
}

/// The most Data-Out PDUs one command can need under the negotiated parameters: none with
/// `InitialR2T=Yes`, else its unsolicited data, at most `FirstBurstLength` and at most the
/// largest command (`max_io` bytes), in `max_xmit`-byte PDUs. `None`: no PDU can carry data.
pub(crate) fn max_dataouts_per_cmd(
    initial_r2t: bool,
    first_burst: u32,
    max_io: u32,
    max_xmit: u32,
) -> Option<usize> {
    if initial_r2t {
        return Some(0);
    }
    dataouts_for(first_burst.min(max_io), max_xmit)
}

/// The host's `max_sectors`: the parameter, capped by what `sg_tablesize` pages hold.
pub(crate) fn host_max_sectors(param: u32, sg_tablesize: u32) -> u32 {
    let cap = u64::from(sg_tablesize) * u64::from(PAGE) / u64::from(SECTOR);
    u32::try_from(u64::from(param).min(cap)).unwrap_or(u32::MAX)
}

/// What a session's SCSI host was given when the session was created. The SCSI midlayer
/// keeps these for the session's life, whatever device a later connection (after a
/// recovery) lands on and whatever `max_sectors` says by then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HostShape {
    /// `shost->sg_tablesize`: SG entries per command.
    pub(crate) sg_tablesize: u32,
    /// `shost->max_sectors`.
    pub(crate) max_sectors: u32,
    /// `shost->can_queue`: commands in flight at most.
    pub(crate) can_queue: u32,
    /// `shost->virt_boundary_mask` is set: the block layer never builds an SG list with
    /// gaps (needed by devices that register without `sg_gaps`).
    pub(crate) virt_boundary: bool,
}

/// Why a connection cannot carry a session's commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unfit {
    /// The device sizes connections at all (see [`Error`]).
    Device(Error),
    /// The device registers fewer pages per command than the host sends (pages, host and
    /// connection).
    Pages { host: u32, conn: u32 },
    /// The send queue carries fewer commands than the host queues (host, connection).
    Queue { host: u32, conn: u32 },
    /// The host was created without a virtual boundary (on a device registering SG lists
    /// with gaps) and this device cannot register gaps.
    Gaps,
}

impl Unfit {
    /// A sentence for the kernel log (the numbers are in the variant).
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Unfit::Device(e) => e.reason(),
            Unfit::Pages { .. } => "the device registers fewer pages per command than the session's SCSI host was sized for",
            Unfit::Queue { .. } => "the device's send queue carries fewer commands than the session's SCSI host queues",
            Unfit::Gaps => "the session's SCSI host allows SG lists with gaps, which this device cannot register",
        }
    }
}

/// Sizes a connection for the session it is bound to: for the limits its host was created
/// with (`host`), not the current `max_sectors` (a recovery can meet another device, or a
/// parameter changed since). The send queue (`max_send_wr`, `max_cmds`) does not depend on
/// `max_sectors`, so a QP created from [`connection`] before the bind keeps fitting.
///
/// # Errors
///
/// What the device cannot carry: a command as large as the host sends, as many commands as
/// it queues, or an SG list with gaps the host lets through. A connection that binds anyway
/// would requeue those commands until the SCSI timeout.
pub(crate) fn for_host(host: HostShape, dev: DevLimits) -> Result<Sizing, Unfit> {
    let s = connection(host.max_sectors, dev).map_err(Unfit::Device)?;
    let bytes = u64::from(host.max_sectors) * u64::from(SECTOR);
    let pages = u32::try_from(bytes.div_ceil(u64::from(PAGE)))
        .unwrap_or(u32::MAX)
        .min(host.sg_tablesize)
        .max(1);
    if s.sg_tablesize < pages {
        return Err(Unfit::Pages {
            host: pages,
            conn: s.sg_tablesize,
        });
    }
    if s.max_cmds < host.can_queue {
        return Err(Unfit::Queue {
            host: host.can_queue,
            conn: s.max_cmds,
        });
    }
    if !host.virt_boundary && !dev.sg_gaps {
        return Err(Unfit::Gaps);
    }
    Ok(s)
}

/// The session's task pool request: `min(cmds_max, max_cmds)`, at least 1.
pub(crate) fn can_queue(cmds_max: u16, max_cmds: u32) -> u16 {
    let m = u16::try_from(max_cmds).unwrap_or(u16::MAX);
    cmds_max.min(m).max(1)
}
