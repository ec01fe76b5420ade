// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! The `iser` iSCSI transport: the driver's side of the libiscsi seam.
//!
//! Status: connection establishment and sessions are not implemented yet. `ep_connect` and
//! `create_session` refuse with `EOPNOTSUPP` (netlink reports it to iscsid, which prints it)
//! and a log line, so `iscsiadm -I iser` fails clearly instead of hanging.

use crate::ffi::errno;
use crate::ffi::iscsi::{self, caps, host_param as hp, param as p, Attr, Op, SessionRequest};
use core::convert::Infallible;
use core::net::SocketAddr;
use kernel::c_str;
use kernel::prelude::*;
use kernel::str::CStr;

/// The iSER transport.
pub(crate) struct Iser;

/// Session and connection parameters shown in sysfs (the C driver's set, iser-spec.md 2.3).
const VISIBLE_PARAMS: &[u32] = &[
    p::ISCSI_PARAM_MAX_RECV_DLENGTH,
    p::ISCSI_PARAM_MAX_XMIT_DLENGTH,
    p::ISCSI_PARAM_HDRDGST_EN,
    p::ISCSI_PARAM_DATADGST_EN,
    p::ISCSI_PARAM_CONN_ADDRESS,
    p::ISCSI_PARAM_CONN_PORT,
    p::ISCSI_PARAM_EXP_STATSN,
    p::ISCSI_PARAM_PERSISTENT_ADDRESS,
    p::ISCSI_PARAM_PERSISTENT_PORT,
    p::ISCSI_PARAM_PING_TMO,
    p::ISCSI_PARAM_RECV_TMO,
    p::ISCSI_PARAM_INITIAL_R2T_EN,
    p::ISCSI_PARAM_MAX_R2T,
    p::ISCSI_PARAM_IMM_DATA_EN,
    p::ISCSI_PARAM_FIRST_BURST,
    p::ISCSI_PARAM_MAX_BURST,
    p::ISCSI_PARAM_PDU_INORDER_EN,
    p::ISCSI_PARAM_DATASEQ_INORDER_EN,
    p::ISCSI_PARAM_TARGET_NAME,
    p::ISCSI_PARAM_TPGT,
    p::ISCSI_PARAM_USERNAME,
    p::ISCSI_PARAM_PASSWORD,
    p::ISCSI_PARAM_USERNAME_IN,
    p::ISCSI_PARAM_PASSWORD_IN,
    p::ISCSI_PARAM_FAST_ABORT,
    p::ISCSI_PARAM_ABORT_TMO,
    p::ISCSI_PARAM_LU_RESET_TMO,
    p::ISCSI_PARAM_TGT_RESET_TMO,
    p::ISCSI_PARAM_IFACE_NAME,
    p::ISCSI_PARAM_INITIATOR_NAME,
    p::ISCSI_PARAM_DISCOVERY_SESS,
];

/// Host parameters shown in sysfs.
const VISIBLE_HOST_PARAMS: &[u32] = &[
    hp::ISCSI_HOST_PARAM_NETDEV_NAME,
    hp::ISCSI_HOST_PARAM_HWADDRESS,
    hp::ISCSI_HOST_PARAM_INITIATOR_NAME,
];

impl iscsi::TransportOps for Iser {
    const NAME: &'static CStr = c_str!("iser");
    const CAPS: u32 = caps::RECOVERY_L0 | caps::MULTI_R2T | caps::TEXT_NEGO;

    fn attr_is_visible(attr: Attr) -> bool {
        match attr {
            Attr::Param(n) => VISIBLE_PARAMS.contains(&n),
            Attr::Host(n) => VISIBLE_HOST_PARAMS.contains(&n),
            Attr::Other => false,
        }
    }

    fn ep_connect(dst: Option<SocketAddr>, non_blocking: bool) -> Result<Infallible> {
        let Some(dst) = dst else {
            iser_err!("ep_connect: unsupported address family (IPv4 and IPv6 only)\n");
            return Err(EINVAL);
        };
        if !non_blocking {
            // A blocking connect would wait with the CM handler's lock held in the C driver
            // (deadlock, iser-spec.md 11); iscsid always asks for a non-blocking one.
            iser_info!("ep_connect: blocking connect requested, will connect asynchronously\n");
        }
        iser_err!(
            "ep_connect to {dst}: RDMA connection setup is not implemented in this version\n"
        );
        Err(errno::EOPNOTSUPP())
    }

    fn create_session(req: SessionRequest) -> Result<Infallible> {
        iser_err!(
            "create_session (cmds_max {}, qdepth {}, initial CmdSN {}, endpoint {}): sessions are not implemented in this version\n",
            req.cmds_max,
            req.qdepth,
            req.initial_cmdsn,
            if req.has_endpoint { "yes" } else { "no" }
        );
        Err(errno::EOPNOTSUPP())
    }

    fn foreign_object(op: Op) -> Error {
        // No endpoint, session or connection of ours can exist yet, so the object came from
        // another transport through a crafted netlink message: refuse and touch nothing.
        iser_err!(
            "{}: called for an object this transport did not create; refused\n",
            op.name()
        );
        EINVAL
    }
}
