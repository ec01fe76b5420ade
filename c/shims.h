/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * One-line C shims for what Rust cannot express on 6.12: module parameters (6.12's
 * `module!` has no `params`) and function-like macros. No logic lives here: validation of
 * parameter values is done by the Rust functions declared at the bottom.
 */
#ifndef IB_ISER_RS_SHIMS_H
#define IB_ISER_RS_SHIMS_H

#include <linux/moduleparam.h>
#include <linux/types.h>

/* Current values of the module parameters (READ_ONCE: writable ones change at runtime). */
int iser_rs_param_debug_level(void);
unsigned int iser_rs_param_max_lun(void);
unsigned int iser_rs_param_max_sectors(void);
bool iser_rs_param_always_register(void);
bool iser_rs_param_pi_enable(void);
bool iser_rs_param_latency_histogram(void);

/* Implemented in Rust (rust/ffi/params.rs): `kernel_param_ops.set` with validation. */
int iser_rs_param_set_max_lun(const char *val, const struct kernel_param *kp);
int iser_rs_param_set_max_sectors(const char *val, const struct kernel_param *kp);

/* RDMA and SCSI macros (c/shims.c). */
struct device;
struct ib_device;
struct ib_pd;
struct rdma_cm_id;
struct rdma_cm_event;
struct scatterlist;
struct mutex;
typedef int (*iser_rs_cm_handler)(struct rdma_cm_id *id, struct rdma_cm_event *event);
const char *iser_rs_ib_device_name(struct ib_device *dev);
struct device *iser_rs_ib_device_parent(struct ib_device *dev);
struct ib_pd *iser_rs_ib_alloc_pd(struct ib_device *dev, unsigned int flags);
struct rdma_cm_id *iser_rs_rdma_create_id(iser_rs_cm_handler handler, void *ctx);
u64 iser_rs_sg_dma_address(struct scatterlist *sg);
unsigned int iser_rs_sg_dma_len(struct scatterlist *sg);
/* mutex_lock is a macro with lockdep (mutex_lock_nested). */
void iser_rs_mutex_lock(struct mutex *m);

#ifdef ISER_TEST_FAULTS
/* Test builds only (make check-harness): the planted faults of rust/planted.rs. */
const char *iser_rs_param_planted_fault(void);
void iser_rs_test_warn(void);
void iser_rs_test_flip_sg_byte(struct scatterlist *sg);
#endif

#endif /* IB_ISER_RS_SHIMS_H */
