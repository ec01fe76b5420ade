// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

use crate::proto::rx::{parse, Error};
use crate::proto::{bhs, hdr, sizing};

/// A receive buffer holding an iSER control header and a SCSI Response BHS with `itt` and a
/// data segment of `dlen` bytes.
fn rsp(itt: u32, dlen: usize) -> [u8; sizing::RX_PAYLOAD] {
    let mut b = [0u8; sizing::RX_PAYLOAD];
    b[..hdr::LEN].copy_from_slice(&hdr::Header::default().encode());
    let h = hdr::LEN;
    b[h] = bhs::OP_SCSI_RSP;
    b[h + 1] = bhs::FLAG_FINAL;
    b[h + 5] = (dlen >> 16) as u8;
    b[h + 6] = (dlen >> 8) as u8;
    b[h + 7] = dlen as u8;
    b[h + 16..h + 20].copy_from_slice(&itt.to_ne_bytes());
    b
}

#[test]
fn valid_response_names_its_slot() {
    let b = rsp(5, 18);
    let rx = parse(&b, sizing::HEADERS_LEN + 18, sizing::RECV_DATA_SEG_LEN, 128).unwrap();
    assert_eq!(rx.slot, Some(5));
    assert_eq!(rx.len, sizing::HEADERS_LEN + 18);
    assert_eq!(rx.pdu.opcode, bhs::OP_SCSI_RSP);
}

#[test]
fn itt_outside_pool_or_reserved_has_no_slot() {
    let b = rsp(200, 0);
    assert_eq!(parse(&b, sizing::HEADERS_LEN, 128, 128).unwrap().slot, None);
    let b = rsp(u32::MAX, 0);
    assert_eq!(parse(&b, sizing::HEADERS_LEN, 128, 128).unwrap().slot, None);
    // The age bits above the index mask do not matter.
    let b = rsp(0x3000_0007, 0);
    assert_eq!(
        parse(&b, sizing::HEADERS_LEN, 128, 128).unwrap().slot,
        Some(7)
    );
}

#[test]
fn bad_iser_header_is_rejected_first() {
    let mut b = rsp(1, 0);
    b[0] = 0x20; // Hello
    assert_eq!(
        parse(&b, sizing::HEADERS_LEN, 128, 128),
        Err(Error::Hdr(hdr::Error::Opcode(2)))
    );
    b[0] = 0x00; // unassigned
    assert_eq!(
        parse(&b, sizing::HEADERS_LEN, 128, 128),
        Err(Error::Hdr(hdr::Error::Opcode(0)))
    );
    // Reserved flag bits and bytes are ignored on receive (RFC 7145 9.2): the PDU parses
    // exactly as with zeros there.
    let want = parse(&rsp(1, 0), sizing::HEADERS_LEN, 128, 128).unwrap();
    let mut b = rsp(1, 0);
    b[0] |= 0x03;
    b[1..4].copy_from_slice(&[0xff, 1, 0x80]);
    assert_eq!(parse(&b, sizing::HEADERS_LEN, 128, 128), Ok(want));
}

#[test]
fn short_completions_are_rejected() {
    let b = rsp(1, 0);
    for n in [0, 1, hdr::LEN - 1] {
        assert_eq!(
            parse(&b, n, 128, 128),
            Err(Error::Hdr(hdr::Error::Truncated)),
            "{n}"
        );
    }
    for n in [hdr::LEN, sizing::HEADERS_LEN - 1] {
        assert_eq!(
            parse(&b, n, 128, 128),
            Err(Error::Bhs(bhs::Error::Truncated)),
            "{n}"
        );
    }
}

#[test]
fn data_segment_must_fit_buffer_and_received_bytes() {
    let b = rsp(1, 129);
    assert!(matches!(
        parse(&b, sizing::RX_PAYLOAD, 128, 128),
        Err(Error::Bhs(bhs::Error::DataTooLong { len: 129, max: 128 }))
    ));
    let b = rsp(1, 100);
    assert!(matches!(
        parse(&b, sizing::HEADERS_LEN + 99, 128, 128),
        Err(Error::Bhs(bhs::Error::DataBeyondReceived {
            len: 100,
            received: 99
        }))
    ));
    // A byte count larger than the buffer only counts up to the buffer.
    let b = rsp(1, 128);
    assert!(parse(&b, usize::MAX, 128, 128).is_ok());
    assert!(parse(&b[..sizing::RX_PAYLOAD - 1], usize::MAX, 128, 128).is_err());
}

#[test]
fn returned_length_is_within_buffer_for_every_byte_count() {
    let b = rsp(3, 64);
    let mut ok = 0;
    for n in 0..=sizing::RX_PAYLOAD + 4 {
        let r = parse(&b, n, 128, 128);
        // Accepted exactly when the headers and the whole data segment were received.
        assert_eq!(r.is_ok(), n >= sizing::HEADERS_LEN + 64, "{n}: {r:?}");
        if let Ok(rx) = r {
            ok += 1;
            assert!(rx.len <= n.min(b.len()));
            assert_eq!(rx.len, sizing::HEADERS_LEN + 64);
            assert_eq!(rx.slot, Some(3));
        }
    }
    // Byte counts HEADERS_LEN + 64 ..= RX_PAYLOAD + 4.
    assert_eq!(ok, sizing::RX_PAYLOAD + 4 - (sizing::HEADERS_LEN + 64) + 1);
}
