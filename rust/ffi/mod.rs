// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! The wrapper layer: the only code that sees raw C bindings, and the only place with
//! `unsafe`. Every wrapper type states its `# Invariants`; every `unsafe` block says why it
//! is sound. Driver logic above this layer is safe Rust.

pub(crate) mod bh;
pub(crate) mod bindings;
pub(crate) mod compat;
pub(crate) mod debugfs;
pub(crate) mod errno;
pub(crate) mod global;
pub(crate) mod iscsi;
pub(crate) mod params;
#[cfg(iser_test_faults)]
pub(crate) mod planted;
pub(crate) mod rdma;
pub(crate) mod time;
pub(crate) mod wq;
