// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! Kernel API differences between the kernels we build on (6.12 and 7.3), in one place. Each
//! `iser_*` cfg is set by `Kbuild` from the target tree's headers (feature detection, not
//! version numbers); Documentation/build.rst lists them. Elsewhere:
//!
//! - `iser_module_authors` (6.15+): `module!` takes `authors` (`ib_iser.rs`);
//! - `iser_debugfs_file_full` (6.14+): `debugfs_create_file` is a macro (`debugfs.rs`);
//! - `iser_bindgen_maybe_zeroable` (6.18+): bindgen output derives `MaybeZeroable`
//!   (`bindings.rs`).

use super::bindings;

/// `DMA_TO_DEVICE` / `DMA_FROM_DEVICE`: constants of a newtype enum from 6.18
/// (`iser_dma_dir_newtype`), plain constants before.
#[cfg(iser_dma_dir_newtype)]
pub(crate) const DMA_TO_DEVICE: bindings::dma_data_direction =
    bindings::dma_data_direction::DMA_TO_DEVICE;
#[cfg(iser_dma_dir_newtype)]
pub(crate) const DMA_FROM_DEVICE: bindings::dma_data_direction =
    bindings::dma_data_direction::DMA_FROM_DEVICE;
#[cfg(not(iser_dma_dir_newtype))]
pub(crate) const DMA_TO_DEVICE: bindings::dma_data_direction =
    bindings::dma_data_direction_DMA_TO_DEVICE;
#[cfg(not(iser_dma_dir_newtype))]
pub(crate) const DMA_FROM_DEVICE: bindings::dma_data_direction =
    bindings::dma_data_direction_DMA_FROM_DEVICE;

/// The bytes of a C string without its NUL: the kernel's own `CStr` has `as_bytes`; from 6.17
/// it is `core::ffi::CStr` (`iser_core_cstr`), whose method is `to_bytes`.
pub(crate) fn cstr_bytes(s: &kernel::str::CStr) -> &[u8] {
    #[cfg(iser_core_cstr)]
    return s.to_bytes();
    #[cfg(not(iser_core_cstr))]
    return s.as_bytes();
}

#[cfg(not(iser_alloc_wq_noprof))]
pub(crate) use bindings::alloc_workqueue;
/// `alloc_workqueue`: a macro over `alloc_workqueue_noprof` with memory allocation profiling
/// (`iser_alloc_wq_noprof`), a function before.
#[cfg(iser_alloc_wq_noprof)]
pub(crate) use bindings::alloc_workqueue_noprof as alloc_workqueue;
