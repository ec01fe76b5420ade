// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

use crate::proto::param::{self, Error};

#[test]
fn parses_like_kstrtouint_base10() {
    assert_eq!(param::parse_u32(b"1024"), Ok(1024));
    assert_eq!(param::parse_u32(b"1024\n"), Ok(1024));
    assert_eq!(param::parse_u32(b"+7"), Ok(7));
    assert_eq!(param::parse_u32(b"010"), Ok(10), "decimal, not octal");
    assert_eq!(param::parse_u32(b"4294967295"), Ok(u32::MAX));
}

#[test]
fn rejects_malformed() {
    for s in [
        &b""[..],
        b"\n",
        b"+",
        b"-1",
        b"0x10",
        b"1 2",
        b" 1",
        b"1\n\n",
        b"abc",
        b"12a",
    ] {
        assert_eq!(param::parse_u32(s), Err(Error::NotDecimal), "{s:?}");
    }
    assert_eq!(param::parse_u32(b"4294967296"), Err(Error::Overflow));
    assert_eq!(
        param::parse_u32(b"99999999999999999999"),
        Err(Error::Overflow)
    );
}

#[test]
fn max_lun_must_be_positive() {
    assert_eq!(param::max_lun(b"0"), Err(Error::Zero));
    assert_eq!(param::max_lun(b"1"), Ok(1));
    assert_eq!(param::max_lun(b"512\n"), Ok(512));
    assert_eq!(param::max_lun(b"4294967295"), Ok(u32::MAX));
}

#[test]
fn max_sectors_bounds() {
    assert_eq!(param::max_sectors(b"0"), Err(Error::Zero));
    assert_eq!(param::max_sectors(b"1024"), Ok(1024));
    assert_eq!(param::max_sectors(b"32768"), Ok(32768));
    let lim = param::MAX_SECTORS_LIMIT;
    assert_eq!(param::max_sectors(lim.to_string().as_bytes()), Ok(lim));
    assert!(u64::from(lim) * 512 <= u64::from(u32::MAX));
    assert_eq!(
        param::max_sectors((lim + 1).to_string().as_bytes()),
        Err(Error::TooLarge { max: lim })
    );
    assert_eq!(param::max_sectors(b"abc"), Err(Error::NotDecimal));
}

#[test]
fn every_error_has_a_reason() {
    let all = [
        Error::NotDecimal,
        Error::Overflow,
        Error::Zero,
        Error::TooLarge { max: 1 },
    ];
    for (i, e) in all.iter().enumerate() {
        assert!(!e.reason().is_empty());
        for f in &all[i + 1..] {
            assert_ne!(e.reason(), f.reason());
        }
    }
}
