// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! Logging gated by the `debug_level` module parameter, with the C driver's levels:
//! errors always; warnings if `debug_level > 0`; info if `> 1`; debug if `> 2`.
//! Every line is prefixed "ib_iser: " by the kernel crate's `pr_*` macros.
//!
//! The message is formatted by `core::format_args!` and handed over as one argument: from
//! 6.17 the kernel's macros accept only types that implement `kernel::fmt::Display`, which
//! `core::net::SocketAddr` and our own `Display` types do not.

/// An error: always logged.
macro_rules! iser_err {
    ($($arg:tt)*) => { ::kernel::pr_err!("{}", ::core::format_args!($($arg)*)) };
}

/// A warning: logged if `debug_level > 0`.
#[allow(unused_macros)]
macro_rules! iser_warn {
    ($($arg:tt)*) => {
        if $crate::ffi::params::debug_level() > 0 { ::kernel::pr_warn!("{}", ::core::format_args!($($arg)*)) }
    };
}

/// Information: logged if `debug_level > 1`.
macro_rules! iser_info {
    ($($arg:tt)*) => {
        if $crate::ffi::params::debug_level() > 1 { ::kernel::pr_info!("{}", ::core::format_args!($($arg)*)) }
    };
}

/// Debugging detail: logged if `debug_level > 2`.
#[allow(unused_macros)]
macro_rules! iser_dbg {
    ($($arg:tt)*) => {
        if $crate::ffi::params::debug_level() > 2 { ::kernel::pr_info!("{}", ::core::format_args!($($arg)*)) }
    };
}
