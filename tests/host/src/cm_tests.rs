// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

use crate::proto::cm::{self, Reply, Request};

#[test]
fn request_always_says_no_zbva() {
    let r = Request {
        send_with_invalidate: true,
    };
    assert_eq!(r.encode(), [0x80, 0, 0, 0]);
}

#[test]
fn request_without_remote_invalidation() {
    // always_register=0: the global rkey must never be invalidated by the target.
    let r = Request {
        send_with_invalidate: false,
    };
    assert_eq!(r.encode(), [0xc0, 0, 0, 0]);
}

#[test]
fn request_round_trips() {
    for s in [false, true] {
        let r = Request {
            send_with_invalidate: s,
        };
        assert_eq!(Request::decode(&r.encode()), Some(r));
    }
    assert_eq!(Request::decode(&[]), None);
}

#[test]
fn reply_from_lio_isert() {
    // ib_isert answers 0x80 (no ZBVA) and, when it will not send with invalidate, 0x40.
    assert!(Reply::decode(Some(&[0x80, 0, 0, 0])).send_with_invalidate);
    assert!(!Reply::decode(Some(&[0xc0, 0, 0, 0])).send_with_invalidate);
}

#[test]
fn reply_all_zero_allows_and_absent_forbids() {
    // IB/RoCE pad absent private data with zeros: the C driver then allows remote invalidation.
    assert!(Reply::decode(Some(&[0; 56])).send_with_invalidate);
    // No private data at all (iWARP): stay conservative.
    assert!(!Reply::decode(None).send_with_invalidate);
    assert!(!Reply::decode(Some(&[])).send_with_invalidate);
}

#[test]
fn reply_ignores_reserved_bits() {
    for b in 0u8..=255 {
        let r = Reply::decode(Some(&[b, 0xff, 0xff, 0xff]));
        assert_eq!(
            r.send_with_invalidate,
            b & cm::REP_SEND_W_INV_NOT_USED == 0,
            "flags {b:#x}"
        );
    }
}

#[test]
fn reply_round_trips() {
    for s in [false, true] {
        let r = Reply {
            send_with_invalidate: s,
        };
        assert_eq!(Reply::decode(Some(&r.encode())), r);
    }
}

#[test]
fn remote_invalidation_needs_both_sides() {
    for req in [false, true] {
        for rep in [false, true] {
            assert_eq!(
                cm::remote_invalidation(
                    Request {
                        send_with_invalidate: req
                    },
                    Reply {
                        send_with_invalidate: rep
                    }
                ),
                req && rep
            );
        }
    }
}
