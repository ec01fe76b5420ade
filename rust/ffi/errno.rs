// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! Errnos that `kernel::error::code` lacks on 6.12 (the network ones), built in one place.
//!
//! TODO: Use `kernel::error::code` once the oldest supported kernel has them.

use super::bindings;
use kernel::error::Error;

macro_rules! errno {
    ($($name:ident),* $(,)?) => {
        $(
            #[doc = concat!("`-", stringify!($name), "`.")]
            #[allow(dead_code)]
            pub(crate) fn $name() -> Error {
                // The constants are small positive values from the uapi errno headers, so the
                // conversion and negation cannot overflow.
                Error::from_errno(-(bindings::$name as kernel::ffi::c_int))
            }
        )*
    };
}

#[allow(non_snake_case)]
mod imp {
    use super::*;
    errno!(
        EOPNOTSUPP,
        ENOTCONN,
        ENOSYS,
        EPROTO,
        ETIMEDOUT,
        ECONNREFUSED,
        ECONNRESET,
        EADDRNOTAVAIL,
        EHOSTUNREACH,
        ENETUNREACH,
    );
}
pub(crate) use imp::*;
