// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! The `iser` iSCSI transport: the driver's side of the libiscsi seam. Connection work is
//! in `conn/`; this file maps transport callbacks onto it and holds the policies of the
//! C driver's callback table (iser-spec.md 2).

use crate::conn::IserConn;
use crate::ffi::errno;
use crate::ffi::iscsi::{
    self, caps, host_param as hp, param as p, Attr, HostLimits, IscsiConn, Op, Poll,
    SessionRequest, SetParam, Task,
};
use crate::ffi::rdma::SysfsBuf;
use crate::proto;
use core::net::SocketAddr;
use kernel::c_str;
use kernel::ffi::c_int;
use kernel::prelude::*;
use kernel::str::CStr;
use kernel::sync::{Arc, ArcBorrow};

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

/// Task pool size for sessions created without an endpoint (old iscsid).
const NO_EP_MAX_CMDS: u32 = proto::sizing::MAX_XMIT_CMDS;

impl iscsi::TransportOps for Iser {
    type Conn = IserConn;
    const NAME: &'static CStr = c_str!("iser");
    const CAPS: u32 = caps::RECOVERY_L0 | caps::MULTI_R2T | caps::TEXT_NEGO;

    fn attr_is_visible(attr: Attr) -> bool {
        match attr {
            Attr::Param(n) => VISIBLE_PARAMS.contains(&n),
            Attr::Host(n) => VISIBLE_HOST_PARAMS.contains(&n),
            Attr::Other => false,
        }
    }

    fn ep_connect(dst: Option<SocketAddr>, non_blocking: bool) -> Result<Arc<IserConn>> {
        let Some(dst) = dst else {
            iser_err!("ep_connect: unsupported address family (IPv4 and IPv6 only)\n");
            return Err(EINVAL);
        };
        if !non_blocking {
            // A blocking connect would wait with the CM handler's lock held in the C driver
            // (deadlock, iser-spec.md 11); iscsid always asks for a non-blocking one, and
            // ep_poll does the waiting either way.
            iser_info!("ep_connect: blocking connect requested, connecting asynchronously\n");
        }
        IserConn::connect(dst)
    }

    fn ep_poll(conn: &Arc<IserConn>, timeout_ms: u32) -> Result<Poll> {
        conn.poll(timeout_ms)
    }

    fn ep_disconnect(conn: Arc<IserConn>) {
        conn.disconnect();
    }

    fn get_ep_param(conn: &Arc<IserConn>, param: u32, buf: &mut SysfsBuf) -> Result<usize> {
        conn.ep_param(param, buf)
    }

    fn session_limits(conn: Option<&Arc<IserConn>>, req: SessionRequest) -> Result<HostLimits> {
        match conn {
            Some(c) => c.session_limits(req),
            None => Ok(HostLimits {
                can_queue: proto::sizing::can_queue(req.cmds_max, NO_EP_MAX_CMDS),
                cmd_per_lun: req.qdepth,
                max_lun: crate::ffi::params::max_lun(),
                sg_tablesize: 128,
                max_sectors: proto::sizing::host_max_sectors(
                    crate::ffi::params::max_sectors(),
                    128,
                ),
                virt_boundary_4k: true,
                parent: core::ptr::null_mut(),
            }),
        }
    }

    fn bind_conn(iconn: IscsiConn, conn: &Arc<IserConn>) -> Result {
        IserConn::bind(conn, iconn)
    }

    fn start_conn(iconn: IscsiConn) -> Result {
        IserConn::start(iconn)
    }

    fn stop_conn(iconn: IscsiConn, flag: c_int) {
        #[cfg(iser_test_faults)]
        crate::planted::on_stop(flag);
        IserConn::stop(iconn, flag);
    }

    fn set_param(_iconn: IscsiConn, param: u32, value: &[u8]) -> Result<SetParam> {
        match param {
            // iSER receives at most 128 data bytes per PDU; the value stays.
            p::ISCSI_PARAM_MAX_RECV_DLENGTH => Ok(SetParam::Ignore),
            p::ISCSI_PARAM_HDRDGST_EN
            | p::ISCSI_PARAM_DATADGST_EN
            | p::ISCSI_PARAM_IFMARKER_EN
            | p::ISCSI_PARAM_OFMARKER_EN => {
                let v = proto::param::parse_u32(value).map_err(|_| EINVAL)?;
                if v != 0 {
                    let what = match param {
                        p::ISCSI_PARAM_HDRDGST_EN => "HeaderDigest",
                        p::ISCSI_PARAM_DATADGST_EN => "DataDigest",
                        p::ISCSI_PARAM_IFMARKER_EN => "IFMarker",
                        _ => "OFMarker",
                    };
                    iser_err!("{} wasn't negotiated to None/No\n", what);
                    return Err(errno::EPROTO());
                }
                Ok(SetParam::Libiscsi)
            }
            _ => Ok(SetParam::Libiscsi),
        }
    }

    fn init_task(conn: &IserConn, task: &mut Task<'_>) -> Result {
        conn.init_task(task)
    }

    fn xmit_task(conn: ArcBorrow<'_, IserConn>, task: &mut Task<'_>) -> Result {
        IserConn::xmit_task(conn, task)
    }

    fn cleanup_task(conn: &IserConn, task: &mut Task<'_>) {
        conn.cleanup_task(task);
    }

    fn foreign_object(op: Op) -> Error {
        // The object came from another transport through a netlink message naming ours:
        // refuse and touch nothing.
        iser_err!(
            "{}: called for an object this transport did not create; refused\n",
            op.name()
        );
        EINVAL
    }
}
