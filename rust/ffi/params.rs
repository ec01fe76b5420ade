// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! Module parameters: the values live in C (`c/shims.c`, because 6.12's `module!` has no
//! `params`), validation lives here and in `proto::param`.

use super::bindings;
use crate::proto::param as check;
use kernel::error::code::EINVAL;
use kernel::ffi::{c_char, c_int, c_uint};
use kernel::prelude::*;

/// `debug_level` (0644: may change at any time).
pub(crate) fn debug_level() -> i32 {
    // SAFETY: The getter only reads an `int` with `READ_ONCE`; no preconditions.
    unsafe { bindings::iser_rs_param_debug_level() }
}

/// `max_lun` (0444).
pub(crate) fn max_lun() -> u32 {
    // SAFETY: The getter only reads an `unsigned int`; no preconditions.
    unsafe { bindings::iser_rs_param_max_lun() }
}

/// `max_sectors` (0644: a new value applies to new connections and sessions).
pub(crate) fn max_sectors() -> u32 {
    // SAFETY: The getter only reads an `unsigned int` with `READ_ONCE`; no preconditions.
    unsafe { bindings::iser_rs_param_max_sectors() }
}

/// `always_register` (0444).
pub(crate) fn always_register() -> bool {
    // SAFETY: The getter only reads a `bool`; no preconditions.
    unsafe { bindings::iser_rs_param_always_register() }
}

/// `pi_enable` (0444).
pub(crate) fn pi_enable() -> bool {
    // SAFETY: The getter only reads a `bool`; no preconditions.
    unsafe { bindings::iser_rs_param_pi_enable() }
}

/// `latency_histogram` (0644: read at each SCSI command's submission).
#[inline]
pub(crate) fn latency_histogram() -> bool {
    // SAFETY: The getter only reads a `bool` with `READ_ONCE`; no preconditions.
    unsafe { bindings::iser_rs_param_latency_histogram() }
}

/// Validates `val` with `check` and stores the parsed value into the parameter's `unsigned
/// int`, or logs why the value is refused and returns `-EINVAL` (insmod then fails).
///
/// # Safety
///
/// `val` is NULL or a NUL-terminated string, and `kp` is the `kernel_param` of a parameter
/// declared with `module_param_cb(.., &<unsigned int>, ..)`, as the kernel guarantees for a
/// `kernel_param_ops.set` callback of such a parameter.
unsafe fn set_uint(
    name: &str,
    val: *const c_char,
    kp: *const bindings::kernel_param,
    check: fn(&[u8]) -> Result<u32, check::Error>,
) -> c_int {
    if val.is_null() || kp.is_null() {
        pr_err!("{name}: a value is required\n");
        return EINVAL.to_errno();
    }
    // SAFETY: `val` is a non-NULL NUL-terminated string by the function's safety contract.
    let s = unsafe { CStr::from_char_ptr(val) };
    match check(super::compat::cstr_bytes(s)) {
        Ok(v) => {
            // SAFETY: `kp` is valid and, by the safety contract, its `arg` union member points
            // to the parameter's `unsigned int`; the kernel serialises parameter writes
            // (`kernel_param_lock`), so the plain store does not race with another set.
            unsafe { *(*kp).__bindgen_anon_1.arg.cast::<c_uint>() = v };
            0
        }
        Err(e) => {
            let shown = s.to_str().unwrap_or("<not UTF-8>").trim_end();
            match e {
                check::Error::TooLarge { max } => {
                    pr_err!("{name}={shown} refused: {} (maximum {max})\n", e.reason())
                }
                _ => pr_err!("{name}={shown} refused: {}\n", e.reason()),
            }
            EINVAL.to_errno()
        }
    }
}

/// `kernel_param_ops.set` of `max_lun`: a decimal number greater than zero.
///
/// # Safety
///
/// Called by the kernel's parameter code with the arguments described at [`set_uint`].
#[no_mangle]
unsafe extern "C" fn iser_rs_param_set_max_lun(
    val: *const c_char,
    kp: *const bindings::kernel_param,
) -> c_int {
    // SAFETY: Forwarded from the kernel's `set` callback contract, see `set_uint`.
    unsafe { set_uint("max_lun", val, kp, check::max_lun) }
}

/// `kernel_param_ops.set` of `max_sectors`: a decimal number in
/// `1..=proto::param::MAX_SECTORS_LIMIT`.
///
/// # Safety
///
/// Called by the kernel's parameter code with the arguments described at [`set_uint`].
#[no_mangle]
unsafe extern "C" fn iser_rs_param_set_max_sectors(
    val: *const c_char,
    kp: *const bindings::kernel_param,
) -> c_int {
    // SAFETY: Forwarded from the kernel's `set` callback contract, see `set_uint`.
    unsafe { set_uint("max_sectors", val, kp, check::max_sectors) }
}
