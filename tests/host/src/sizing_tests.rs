// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

use crate::proto::sizing::*;

const RXE: DevLimits = DevLimits {
    max_qp_wr: 1 << 20,
    max_fast_reg_page_list_len: 512,
    sg_gaps: false,
};

#[test]
fn constants_match_the_c_driver() {
    assert_eq!(HEADERS_LEN, 76);
    assert_eq!(RX_PAYLOAD, 204);
    assert_eq!(RX_LOGIN_SIZE, 8268);
    assert_eq!(MAX_REQ_DTOS, 4618);
}

#[test]
fn default_max_sectors_on_a_large_device() {
    let s = connection(1024, RXE).unwrap();
    assert_eq!(s.sg_tablesize, 128);
    assert_eq!(s.pages_per_mr, 129);
    assert_eq!(s.max_send_wr, 4619);
    assert_eq!(s.max_recv_wr, 513 + 8);
    assert_eq!(s.nr_cqe, 4619 + 512 + 8);
    assert_eq!(s.max_cmds, 512);
    assert_eq!(host_max_sectors(1024, s.sg_tablesize), 1024);
}

#[test]
fn sixteen_mib_commands_need_a_device_that_registers_4096_pages() {
    let big = DevLimits {
        max_fast_reg_page_list_len: 65536,
        ..RXE
    };
    let s = connection(32768, big).unwrap();
    assert_eq!(s.sg_tablesize, 4096);
    assert_eq!(host_max_sectors(32768, s.sg_tablesize), 32768);
    // rxe's 512 pages cap the command size, and the host limit follows.
    let s = connection(32768, RXE).unwrap();
    assert_eq!(s.sg_tablesize, 511);
    assert_eq!(host_max_sectors(32768, s.sg_tablesize), 511 * 8);
}

#[test]
fn sg_gaps_devices_need_no_extra_page() {
    let d = DevLimits {
        sg_gaps: true,
        ..RXE
    };
    let s = connection(1024, d).unwrap();
    assert_eq!(s.pages_per_mr, s.sg_tablesize);
}

#[test]
fn huge_max_sectors_does_not_overflow() {
    let s = connection(u32::MAX / 512, RXE).unwrap();
    assert_eq!(s.sg_tablesize, 511);
    assert_eq!(host_max_sectors(u32::MAX, 4096), 32768);
}

#[test]
fn small_devices_are_refused_or_scaled() {
    let none = DevLimits {
        max_fast_reg_page_list_len: 0,
        ..RXE
    };
    assert_eq!(connection(1024, none), Err(Error::NoFastRegPages));
    let one = DevLimits {
        max_fast_reg_page_list_len: 1,
        ..RXE
    };
    assert_eq!(connection(1024, one), Err(Error::NoFastRegPages));
    let tiny = DevLimits {
        max_qp_wr: 10,
        ..RXE
    };
    assert_eq!(connection(1024, tiny), Err(Error::QueueTooSmall(10)));
    let small = DevLimits {
        max_qp_wr: 1024,
        ..RXE
    };
    let s = connection(1024, small).unwrap();
    assert_eq!(s.max_send_wr, 1024);
    assert_eq!(s.max_cmds, (1023 - 10) / 9);
}

#[test]
fn can_queue_is_bounded() {
    assert_eq!(can_queue(128, 512), 128);
    assert_eq!(can_queue(1024, 512), 512);
    assert_eq!(can_queue(0, 512), 1);
    assert_eq!(can_queue(u16::MAX, u32::MAX), u16::MAX);
}

#[test]
fn dataout_pool_fills_the_send_queue_left_by_commands() {
    // rxe: the full send queue (4618 + drain). 128 tasks x 3 WRs + 6 control + drain.
    let sq = MAX_REQ_DTOS + 1;
    assert_eq!(
        dataout_descs(sq, 128),
        (sq - 128 * WRS_PER_CMD - 7) as usize
    );
    assert_eq!(dataout_descs(sq, 128), 4228);
    // The largest task pool still leaves room for 3000+ descriptors.
    assert_eq!(dataout_descs(sq, 512), 3076);
    // A queue too small for the tasks still gets one descriptor (writes with unsolicited
    // data then wait for it; the connection is refused if a command needs more).
    assert_eq!(dataout_descs(64, 512), 1);
    // Commands plus descriptors never exceed the queue (drain slot and control PDUs kept).
    for tasks in [1usize, 16, 128, 512, 1024] {
        for sq in [64u32, 1024, 4619] {
            let d = dataout_descs(sq, tasks);
            let used = tasks as u64 * u64::from(WRS_PER_CMD) + 7 + d as u64;
            assert!(
                d == 1 || used <= u64::from(sq),
                "{tasks} tasks, sq {sq}: {d}"
            );
        }
    }
    assert_eq!(DATAOUTS_PER_PAGE, 53);
}

#[test]
fn dataouts_per_command_follow_libiscsi() {
    // iscsi_prep_data_out_pdu: min(MaxXmitDataSegmentLength, left) per PDU.
    assert_eq!(dataouts_for(0, 8192), Some(0));
    assert_eq!(dataouts_for(1, 8192), Some(1));
    assert_eq!(dataouts_for(8192, 8192), Some(1));
    assert_eq!(dataouts_for(8193, 8192), Some(2));
    assert_eq!(dataouts_for(262144, 8192), Some(32));
    assert_eq!(dataouts_for(100, 0), None);
    // Issue 20 item 1: FirstBurstLength 256 KiB in 8 KiB PDUs is 32 per write.
    assert_eq!(
        max_dataouts_per_cmd(false, 262144, 512 * 1024, 8192),
        Some(32)
    );
    // InitialR2T=Yes: no unsolicited Data-Out at all.
    assert_eq!(max_dataouts_per_cmd(true, 16 << 20, 16 << 20, 512), Some(0));
    // Bounded by the largest command: 16 MiB FirstBurstLength, 512 KiB commands, 512 B PDUs.
    assert_eq!(
        max_dataouts_per_cmd(false, 16 << 20, 512 * 1024, 512),
        Some(1024)
    );
    // 16 MiB commands in 512-byte PDUs: more than any send queue here holds.
    let need = max_dataouts_per_cmd(false, 16776704, 16 << 20, 512).unwrap();
    assert!(need > dataout_descs(MAX_REQ_DTOS + 1, 16));
}

/// The host a session created on `dev` with `max_sectors` and `cmds_max` gets (what
/// `session_limits` gives the SCSI midlayer).
fn host_of(max_sectors: u32, cmds_max: u16, dev: DevLimits) -> HostShape {
    let s = connection(max_sectors, dev).unwrap();
    HostShape {
        sg_tablesize: s.sg_tablesize,
        max_sectors: host_max_sectors(max_sectors, s.sg_tablesize),
        can_queue: u32::from(can_queue(cmds_max, s.max_cmds)),
        virt_boundary: !dev.sg_gaps,
    }
}

#[test]
fn a_connection_is_sized_for_its_session_host_not_the_live_parameter() {
    // Session created with max_sectors 8192 (1024 pages on a device registering 4096).
    let big = DevLimits {
        max_fast_reg_page_list_len: 4096,
        ..RXE
    };
    let host = host_of(8192, 128, big);
    assert_eq!(host.max_sectors, 8192);
    // The parameter went down to 1024 since: a reconnect sized from it would register 128
    // pages and requeue every larger command; sized for the host it registers 1024.
    assert_eq!(connection(1024, big).unwrap().sg_tablesize, 128);
    let s = for_host(host, big).unwrap();
    assert_eq!(s.sg_tablesize, 1024);
    assert_eq!(s.pages_per_mr, 1025);
    // The send queue does not depend on max_sectors: a QP created before the bind fits.
    let q = connection(1024, big).unwrap();
    assert_eq!(
        (s.max_send_wr, s.max_recv_wr, s.nr_cqe, s.max_cmds),
        (q.max_send_wr, q.max_recv_wr, q.nr_cqe, q.max_cmds)
    );
    // The same host on the device the session was created on fits exactly.
    assert_eq!(
        for_host(host_of(1024, 128, RXE), RXE).unwrap(),
        connection(1024, RXE).unwrap()
    );
}

#[test]
fn a_device_that_cannot_carry_the_session_is_refused_with_the_reason() {
    let big = DevLimits {
        max_fast_reg_page_list_len: 4096,
        ..RXE
    };
    // Recovery lands on a device registering 512 pages: 1024-page commands cannot go.
    let host = host_of(8192, 128, big);
    assert_eq!(
        for_host(host, RXE),
        Err(Unfit::Pages {
            host: 1024,
            conn: 511
        })
    );
    // A small send queue: fewer commands than the host queues.
    let small_q = DevLimits {
        max_qp_wr: 200,
        ..RXE
    };
    let r = for_host(host_of(1024, 128, RXE), small_q);
    assert!(
        matches!(r, Err(Unfit::Queue { host: 128, conn }) if conn < 128),
        "{r:?}"
    );
    // A host without a virtual boundary (created on a gaps-capable device) on one without.
    let gaps = DevLimits {
        sg_gaps: true,
        ..RXE
    };
    assert_eq!(for_host(host_of(1024, 128, gaps), RXE), Err(Unfit::Gaps));
    // The other way round is fine: a boundary the device does not need costs nothing.
    assert!(for_host(host_of(1024, 128, RXE), gaps).is_ok());
    // A device that sizes nothing.
    let none = DevLimits {
        max_fast_reg_page_list_len: 1,
        ..RXE
    };
    assert_eq!(
        for_host(host_of(1024, 128, RXE), none),
        Err(Unfit::Device(Error::NoFastRegPages))
    );
    for u in [
        Unfit::Gaps,
        Unfit::Pages { host: 2, conn: 1 },
        Unfit::Queue { host: 2, conn: 1 },
    ] {
        assert!(!u.reason().is_empty());
    }
}
