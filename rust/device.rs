// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! Per-RDMA-device resources shared by the connections on a device: the protection domain
//! and the async event logger (iser-spec.md 3.5.1).
//!
//! Devices are found by their `ib_device` itself, not by node GUID: several rxe instances
//! can share a GUID (iser-spec.md, latent issues).

use crate::ffi::global::Global;
use crate::ffi::rdma::{AsyncEvent, DeviceCaps, DeviceRef, EventHandler, Pd};
use kernel::new_mutex;
use kernel::prelude::*;
use kernel::sync::{Arc, Mutex};

/// One RDMA device in use.
pub(crate) struct IserDevice {
    /// The device.
    pub(crate) dev: DeviceRef,
    /// Its capabilities, read once.
    pub(crate) caps: DeviceCaps,
    /// Registered before the PD and unregistered after it (field order).
    _events: EventHandler,
    /// The PD every connection on the device uses.
    pub(crate) pd: Pd,
}

struct Entry {
    dev: Arc<IserDevice>,
    users: usize,
}

/// The devices in use, with a user count each.
#[pin_data]
pub(crate) struct Devices {
    #[pin]
    list: Mutex<KVec<Option<Entry>>>,
}

/// The module's device list.
pub(crate) static DEVICES: Global<Devices> = Global::new();

fn log_event(e: &AsyncEvent<'_>) {
    iser_err!(
        "async event {} ({}) on device {} port {}\n",
        e.name,
        e.event,
        e.device,
        e.port
    );
}

impl Devices {
    /// An empty list.
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Devices {
            list <- new_mutex!(KVec::new(), "iser_devices"),
        })
    }

    /// The device object for `dev`, created on first use; one user more.
    pub(crate) fn get(&self, dev: DeviceRef) -> Result<Arc<IserDevice>> {
        let mut list = self.list.lock();
        if let Some(e) = list.iter_mut().flatten().find(|e| e.dev.dev == dev) {
            e.users += 1;
            return Ok(e.dev.clone());
        }
        let caps = dev.caps();
        if !caps.mem_mgt_extensions {
            iser_err!(
                "device {} does not support memory registrations\n",
                dev.name()
            );
            return Err(crate::ffi::errno::EOPNOTSUPP());
        }
        let events = EventHandler::new(dev, log_event)?;
        let pd = Pd::new(dev, !crate::ffi::params::always_register())?;
        let d = Arc::new(
            IserDevice {
                dev,
                caps,
                _events: events,
                pd,
            },
            GFP_KERNEL,
        )?;
        let e = Entry {
            dev: d.clone(),
            users: 1,
        };
        match list.iter_mut().find(|e| e.is_none()) {
            Some(free) => *free = Some(e),
            None => list.push(Some(e), GFP_KERNEL)?,
        }
        iser_info!("using device {}\n", dev.name());
        Ok(d)
    }

    /// One user fewer; the last one frees the PD once every `Arc` is gone.
    pub(crate) fn put(&self, d: Arc<IserDevice>) {
        let mut list = self.list.lock();
        let slot = list
            .iter_mut()
            .find(|e| e.as_ref().is_some_and(|e| Arc::ptr_eq(&e.dev, &d)));
        if let Some(slot) = slot {
            let last = slot.as_mut().is_some_and(|e| {
                e.users -= 1;
                e.users == 0
            });
            if last {
                let e = slot.take();
                drop(list);
                iser_info!("releasing device {}\n", d.dev.name());
                drop(e);
            }
        }
        drop(d);
    }
}
