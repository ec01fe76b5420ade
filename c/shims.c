// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Module parameters of ib_iser (names, defaults, permissions and descriptions as in the
 * C driver). Each line is a macro the Rust side cannot write on 6.12; validation is Rust.
 */
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <net/net_namespace.h>
#include <rdma/ib_verbs.h>
#include <rdma/rdma_cm.h>
#include <linux/scatterlist.h>
#include "shims.h"

/* Only the Rust module has a version: tests and users tell it from the C driver by it. */
MODULE_VERSION("0.1.0");

static int iser_rs_debug_level;
module_param_named(debug_level, iser_rs_debug_level, int, 0644);
MODULE_PARM_DESC(debug_level, "Enable debug tracing if > 0 (default:disabled)");

static unsigned int iser_rs_max_lun = 512;
static const struct kernel_param_ops iser_rs_max_lun_ops = {
	.set = iser_rs_param_set_max_lun,
	.get = param_get_uint,
};
module_param_cb(max_lun, &iser_rs_max_lun_ops, &iser_rs_max_lun, 0444);
MODULE_PARM_DESC(max_lun, "Max LUNs to allow per session, should > 0 (default:512)");

static unsigned int iser_rs_max_sectors = 1024;
static const struct kernel_param_ops iser_rs_max_sectors_ops = {
	.set = iser_rs_param_set_max_sectors,
	.get = param_get_uint,
};
module_param_cb(max_sectors, &iser_rs_max_sectors_ops, &iser_rs_max_sectors, 0644);
MODULE_PARM_DESC(max_sectors, "Max number of sectors in a single scsi command, should > 0 (default:1024)");

static bool iser_rs_always_register = true;
module_param_named(always_register, iser_rs_always_register, bool, 0444);
MODULE_PARM_DESC(always_register, "Always register memory, even for continuous memory regions (default:true)");

static bool iser_rs_pi_enable;
module_param_named(pi_enable, iser_rs_pi_enable, bool, 0444);
MODULE_PARM_DESC(pi_enable, "Enable T10-PI offload support (default:disabled)");

/* Ours only (the C driver has no statistics). */
static bool iser_rs_latency_histogram;
module_param_named(latency_histogram, iser_rs_latency_histogram, bool, 0644);
MODULE_PARM_DESC(latency_histogram, "Record every SCSI command's latency in the debugfs histogram, at two clock reads per command (default:disabled)");

int iser_rs_param_debug_level(void) { return READ_ONCE(iser_rs_debug_level); }
unsigned int iser_rs_param_max_lun(void) { return READ_ONCE(iser_rs_max_lun); }
unsigned int iser_rs_param_max_sectors(void) { return READ_ONCE(iser_rs_max_sectors); }
bool iser_rs_param_latency_histogram(void) { return READ_ONCE(iser_rs_latency_histogram); }
bool iser_rs_param_always_register(void) { return READ_ONCE(iser_rs_always_register); }
bool iser_rs_param_pi_enable(void) { return READ_ONCE(iser_rs_pi_enable); }

/* Function-like macros and accessors of the RDMA and SCSI APIs, one line each. */
const char *iser_rs_ib_device_name(struct ib_device *dev) { return dev_name(&dev->dev); }
struct device *iser_rs_ib_device_parent(struct ib_device *dev) { return dev->dev.parent; }
struct ib_pd *iser_rs_ib_alloc_pd(struct ib_device *dev, unsigned int flags) { return ib_alloc_pd(dev, flags); }
struct rdma_cm_id *iser_rs_rdma_create_id(iser_rs_cm_handler handler, void *ctx) { return rdma_create_id(&init_net, handler, ctx, RDMA_PS_TCP, IB_QPT_RC); }
u64 iser_rs_sg_dma_address(struct scatterlist *sg) { return sg_dma_address(sg); }
unsigned int iser_rs_sg_dma_len(struct scatterlist *sg) { return sg_dma_len(sg); }
void iser_rs_mutex_lock(struct mutex *m) { mutex_lock(m); }

#ifdef ISER_TEST_FAULTS
/* Test builds only (make check-harness, Documentation/testing.rst): never in the shipped module. */
#include <linux/highmem.h>
static char *iser_rs_planted_fault = "";
module_param_named(planted_fault, iser_rs_planted_fault, charp, 0444);
MODULE_PARM_DESC(planted_fault, "TEST BUILD: the fault to plant (warn_unload, flip_read, leak_logout, conn_error, stall_completion)");
const char *iser_rs_param_planted_fault(void) { return iser_rs_planted_fault; }
void iser_rs_test_warn(void) { WARN(1, "ib_iser: planted fault warn_unload\n"); }
void iser_rs_test_flip_sg_byte(struct scatterlist *sg) { u8 *p = kmap_local_page(sg_page(sg)); p[sg->offset] ^= 0x5a; kunmap_local(p); }
#endif
