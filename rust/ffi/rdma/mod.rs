// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! RDMA wrappers: RDMA CM ids, protection domains, CQs from the device pool, RC QPs, fast
//! registration MRs, DMA mappings and work requests.
//!
//! The driver above sees owned handles whose `Drop` releases the C object, borrowed device
//! handles, and a completion trait. Lifetime rules the C API imposes and that the types
//! cannot express alone are written down as `# Invariants` and are upheld by the driver's
//! connection teardown order (drain the QP before anything a work request references is
//! freed; destroy the QP before its CQ; free every per-device object before the
//! DEVICE_REMOVAL handler returns).
//!
//! A file per C object: [`device`] (`ib_device`, PD, async events), [`cm`] (`rdma_cm_id`),
//! [`cq`] (`ib_cq`, completions), [`qp`] (`ib_qp`: posting work requests), [`mr`] (fast
//! registration `ib_mr`) and [`dma`] (DMA mappings). This file holds the conversions they
//! share.

use super::bindings;
use core::ffi::c_void;
use core::net::SocketAddr;
use core::ptr::NonNull;
use kernel::error::{code::*, to_result};
use kernel::ffi::c_int;
use kernel::prelude::*;
use kernel::sync::Arc;
use kernel::types::Opaque;

mod cm;
mod cq;
mod device;
mod dma;
mod mr;
mod qp;

pub(crate) use cm::{CmEvent, CmEventKind, CmHandler, CmId, ConnParam};
pub(crate) use cq::{Cq, CqHandler, CqeRef, CqeTable, Wc};
pub(crate) use device::{AsyncEvent, DeviceCaps, DeviceRef, EventHandler, Pd};
pub(crate) use dma::{DmaBuf, DmaDir, HdrMapping, MappedSg};
pub(crate) use mr::{Mr, RemoteAccess};
use qp::qp_event_trampoline;
pub(crate) use qp::{Gather, InlineSge, Qp, QpCaps, RecvQp, RegReq, Sge};

/// Converts an `ERR_PTR`-or-valid pointer into a `Result`.
fn from_err_ptr<T>(ptr: *mut T) -> Result<NonNull<T>> {
    let v = ptr as isize;
    if (-4095..0).contains(&v) {
        return Err(Error::from_errno(v as c_int));
    }
    NonNull::new(ptr).ok_or(ENOMEM)
}

/// A sysfs output page handed to a `get_*_param` callback.
pub(crate) struct SysfsBuf {
    pub(super) ptr: *mut kernel::ffi::c_char,
}

/// A C string from the kernel, as text for log messages (non-UTF-8 shows as `?`). From 6.17
/// the kernel's `CStr` is `core::ffi::CStr`, which has no `Display`: callers get `&str`.
///
/// # Safety
///
/// `p` is a NUL-terminated string that lives for `'a`.
unsafe fn c_text<'a>(p: *const kernel::ffi::c_char) -> &'a str {
    // SAFETY: Per the function's contract.
    unsafe { CStr::from_char_ptr(p) }.to_str().unwrap_or("?")
}

/// A flag constant as `u64` (its C enum's Rust type differs between kernels).
fn wide(v: impl TryInto<u64>) -> u64 {
    v.try_into().unwrap_or(0)
}

/// A device limit as `u32`, negative values as 0 (`int` up to 6.x, `u32` in 7.x).
fn nonneg(v: impl TryInto<u32>) -> u32 {
    v.try_into().unwrap_or(0)
}
