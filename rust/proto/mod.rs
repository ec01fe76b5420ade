// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! Pure protocol code: encoding, decoding and validation of everything that crosses the wire
//! or comes from user space, with no `kernel::` dependency, no `unsafe` and no allocation.
//!
//! The same files are compiled by the host test crate (`tests/host`), so every parser here is
//! unit-tested and fuzzed without a VM. Rules for this directory:
//!
//! - `use core::...` only;
//! - items are `pub(crate)`;
//! - errors are local enums converted to errnos at the kernel boundary;
//! - nothing panics on input: no indexing that is not proven in range, no `unwrap`.

pub(crate) mod bhs;
pub(crate) mod cm;
pub(crate) mod hdr;
pub(crate) mod param;
pub(crate) mod rx;
pub(crate) mod sizing;
pub(crate) mod sq;
pub(crate) mod stats;
pub(crate) mod task;
