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
