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

mod conn;
mod device;
mod ffi;
#[cfg(iser_test_faults)]
mod planted;
#[allow(
    dead_code,
    reason = "protocol helpers the driver does not use yet (decoders for the target side, Hello opcodes) are kept for the host tests"
)]
mod proto;
mod transport;

use kernel::c_str;
use kernel::prelude::*;
use kernel::sync::Arc;

// `module!` takes `author` up to 6.16 and `authors` from 6.15 (Kbuild sets
// `iser_module_authors` where the macro knows the latter).
#[cfg(not(iser_module_authors))]
module! {
    type: IserModule,
    name: "ib_iser",
    author: "iser-rs developers",
    description: "iSER (iSCSI Extensions for RDMA) Datamover",
    license: "Dual BSD/GPL",
}

#[cfg(iser_module_authors)]
module! {
    type: IserModule,
    name: "ib_iser",
    authors: ["iser-rs developers"],
    description: "iSER (iSCSI Extensions for RDMA) Datamover",
    license: "Dual BSD/GPL",
}

/// The module's global objects. Fields drop in declaration order, which is the teardown
/// order: the transport is unregistered before the device list goes away (no callback can
/// reach the list afterwards).
struct IserModule {
    /// The registered `iser` transport.
    _transport: ffi::iscsi::Registration<transport::Iser>,
    /// The module's workqueue (deferred connection failures); dropping it waits for them.
    _wq: ffi::global::Installed<ffi::wq::OwnedQueue>,
    /// The RDMA devices in use.
    _devices: ffi::global::Installed<device::Devices>,
    /// `/sys/kernel/debug/iser/ended/counters`: the counters of the connections that ended
    /// (`conn::ENDED`); `None` if debugfs could not create it (only the file is lost).
    _ended: Option<ffi::debugfs::Entry<conn::EndedCounters>>,
    /// `/sys/kernel/debug/iser` (per-connection statistics), removed last.
    _debugfs: ffi::global::Installed<ffi::debugfs::Root>,
}

impl kernel::Module for IserModule {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let debugfs = ffi::debugfs::ROOT.install(KBox::pin(
            ffi::debugfs::Root::new(c_str!("iser"), module),
            GFP_KERNEL,
        )?);
        let ended = ffi::debugfs::ROOT.get().and_then(|root| {
            let view = Arc::new(conn::EndedCounters, GFP_KERNEL).ok()?;
            root.add(c_str!("ended"), c_str!("counters"), view)
        });
        let devices = device::DEVICES.install(KBox::pin_init(device::Devices::new(), GFP_KERNEL)?);
        let wq = ffi::wq::WQ.install(KBox::pin(
            ffi::wq::OwnedQueue::new(c_str!("ib_iser_rs"))?,
            GFP_KERNEL,
        )?);
        let transport = ffi::iscsi::Registration::<transport::Iser>::new(
            module,
            c_str!("iSCSI Initiator over iSER"),
            c_str!("iscsi_iser"),
        )
        .inspect_err(|e| {
            iser_err!("registering iSCSI transport 'iser' failed: {:?}\n", e);
        })?;
        #[cfg(iser_test_faults)]
        planted::announce();
        iser_info!(
            "loaded: debug_level={} max_lun={} max_sectors={} always_register={} pi_enable={}\n",
            ffi::params::debug_level(),
            ffi::params::max_lun(),
            ffi::params::max_sectors(),
            ffi::params::always_register(),
            ffi::params::pi_enable()
        );
        Ok(IserModule {
            _transport: transport,
            _wq: wq,
            _devices: devices,
            _ended: ended,
            _debugfs: debugfs,
        })
    }
}

impl Drop for IserModule {
    fn drop(&mut self) {
        iser_info!("unloading\n");
        #[cfg(iser_test_faults)]
        planted::on_unload();
    }
}
