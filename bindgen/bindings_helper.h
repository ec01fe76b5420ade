/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Headers bindgen reads for ib_iser (see bindgen_parameters for what is taken from them).
 * Only bindgen sees this file and the generated c/static_wrappers.c.
 */
#include <linux/debugfs.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/kstrtox.h>
#include <linux/moduleparam.h>
#include <linux/sched/clock.h>
#include <linux/seq_file.h>
#include <linux/socket.h>
#include <linux/workqueue.h>
#include <rdma/ib_verbs.h>
#include <rdma/rdma_cm.h>
#include <scsi/iscsi_if.h>
#include <scsi/iscsi_proto.h>
#include <scsi/iser.h>
#include <scsi/libiscsi.h>
#include <scsi/scsi_cmnd.h>
#include <scsi/scsi_host.h>
#include <scsi/scsi_transport_iscsi.h>

#include "shims.h"
