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

/* Implemented in Rust (rust/ffi/params.rs): `kernel_param_ops.set` with validation. */
int iser_rs_param_set_max_lun(const char *val, const struct kernel_param *kp);
int iser_rs_param_set_max_sectors(const char *val, const struct kernel_param *kp);

#endif /* IB_ISER_RS_SHIMS_H */
