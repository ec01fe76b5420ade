// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! Wrappers for the planted faults of test builds (`--cfg iser_test_faults`, `make
//! check-harness`): the `planted_fault` parameter, a real `WARN`, and a byte flipped in a
//! completed read's data. Never compiled into the shipped module.

use super::bindings;
use super::iscsi::Task;
use kernel::str::CStr;

/// The `planted_fault` parameter: which fault this load plants (empty: none).
pub(crate) fn name() -> &'static [u8] {
    // SAFETY: The getter returns the parameter's `charp`, which is NULL or a NUL-terminated
    // string the kernel keeps until the module is unloaded (0444: never rewritten).
    let p = unsafe { bindings::iser_rs_param_planted_fault() };
    if p.is_null() {
        return b"";
    }
    // SAFETY: As above: non-NULL, NUL-terminated, alive while the module is.
    super::compat::cstr_bytes(unsafe { CStr::from_char_ptr(p) })
}

/// A real `WARN(1, ...)` with its stack trace, as a driver bug would print it.
pub(crate) fn warn() {
    // SAFETY: `WARN` is callable from any context.
    unsafe { bindings::iser_rs_test_warn() }
}

/// Flips the first data byte of `task`'s SCSI buffer if it is a successfully completed read
/// (device to memory, no error result) of at least `min_len` bytes; returns whether it did.
/// Called from `cleanup_task`, which libiscsi runs before it completes the command to the
/// SCSI midlayer: the corruption reaches the reader.
pub(crate) fn flip_read_byte(task: &Task<'_>, min_len: u32) -> bool {
    let Some(d) = task.scsi_data() else {
        return false;
    };
    if !d.is_read || d.result != 0 || d.len < min_len {
        return false;
    }
    let Some(sgl) = d.sgl() else {
        return false;
    };
    // SAFETY: `sgl` is the live command's first scatterlist entry (`ScsiData` invariant);
    // the shim maps its page with `kmap_local_page` and writes one byte inside the entry.
    unsafe { bindings::iser_rs_test_flip_sg_byte(sgl.as_ptr()) };
    true
}
