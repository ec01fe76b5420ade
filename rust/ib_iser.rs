// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! iser-rs: the iSCSI Extensions for RDMA (iSER, RFC 7145) initiator, a drop-in replacement
//! for the C `ib_iser` driver.
//!
//! Layers (see Documentation/design.rst):
//!
//! - `ffi`: the wrapper layer, the only code with `unsafe` and raw bindings;
//! - `proto`: pure protocol code shared with the host test crate;
//! - the driver: `transport` (the libiscsi seam) and, later, connection, device and memory
//!   registration modules, all safe Rust.

#[macro_use]
mod log;

mod ffi;
#[expect(
    dead_code,
    reason = "the iSER header and CM encoders are used by the data path (next milestone); the host tests cover them now"
)]
mod proto;
mod transport;

use kernel::c_str;
use kernel::prelude::*;

module! {
    type: IserModule,
    name: "ib_iser",
    author: "iser-rs developers",
    description: "iSER (iSCSI Extensions for RDMA) Datamover",
    license: "Dual BSD/GPL",
}

/// The module's global objects. Fields drop in declaration order, which is the teardown
/// order: the release workqueue is drained before the transport goes away, because release
/// work still calls into the transport class.
struct IserModule {
    /// Runs connection release work (asynchronous teardown, iser-spec.md 3.8).
    _release_wq: ffi::workqueue::OwnedQueue,
    /// The registered `iser` transport.
    _transport: ffi::iscsi::Registration<transport::Iser>,
}

impl kernel::Module for IserModule {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let release_wq = ffi::workqueue::OwnedQueue::new_reclaim(c_str!("iser_release"))?;
        let transport =
            ffi::iscsi::Registration::<transport::Iser>::new(module).inspect_err(|e| {
                iser_err!("registering iSCSI transport 'iser' failed: {:?}\n", e);
            })?;
        iser_info!(
            "loaded: debug_level={} max_lun={} max_sectors={} always_register={} pi_enable={}\n",
            ffi::params::debug_level(),
            ffi::params::max_lun(),
            ffi::params::max_sectors(),
            ffi::params::always_register(),
            ffi::params::pi_enable()
        );
        Ok(IserModule {
            _release_wq: release_wq,
            _transport: transport,
        })
    }
}

impl Drop for IserModule {
    fn drop(&mut self) {
        iser_info!("unloading\n");
    }
}
