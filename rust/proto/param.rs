// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! Parsing and validation of the module parameters whose values the C driver checks.

/// Why a module parameter value was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Error {
    /// Not a decimal unsigned number (optionally with a leading '+' and one trailing newline,
    /// as `kstrtouint` accepts).
    NotDecimal,
    /// Larger than `u32::MAX`.
    Overflow,
    /// Zero, which the parameter does not allow.
    Zero,
    /// Larger than the parameter's maximum.
    TooLarge {
        /// The largest accepted value.
        max: u32,
    },
}

impl Error {
    /// A sentence for the kernel log.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Error::NotDecimal => "not a decimal number",
            Error::Overflow => "out of range",
            Error::Zero => "must be greater than 0",
            Error::TooLarge { .. } => "too large",
        }
    }
}

/// Parses a base-10 `u32` the way `kstrtouint(s, 10, ..)` does.
pub(crate) fn parse_u32(s: &[u8]) -> Result<u32, Error> {
    let s = s.strip_suffix(b"\n").unwrap_or(s);
    let s = s.strip_prefix(b"+").unwrap_or(s);
    if s.is_empty() {
        return Err(Error::NotDecimal);
    }
    let mut v: u32 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return Err(Error::NotDecimal);
        }
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u32::from(c - b'0')))
            .ok_or(Error::Overflow)?;
    }
    Ok(v)
}

/// Largest `max_sectors` accepted: `max_sectors * 512` must fit a `u32` byte count (the C
/// driver has no upper bound and overflows there). Values above what one command can map
/// (32768 sectors, 16 MiB) are accepted and clamped per session, as the C driver does.
pub(crate) const MAX_SECTORS_LIMIT: u32 = u32::MAX / 512;

/// Validates `max_lun`: a decimal number greater than zero.
pub(crate) fn max_lun(s: &[u8]) -> Result<u32, Error> {
    match parse_u32(s)? {
        0 => Err(Error::Zero),
        v => Ok(v),
    }
}

/// Validates `max_sectors`: a decimal number in `1..=MAX_SECTORS_LIMIT`.
pub(crate) fn max_sectors(s: &[u8]) -> Result<u32, Error> {
    match parse_u32(s)? {
        0 => Err(Error::Zero),
        v if v > MAX_SECTORS_LIMIT => Err(Error::TooLarge {
            max: MAX_SECTORS_LIMIT,
        }),
        v => Ok(v),
    }
}
