// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! Host tests of `rust/proto`: the same source files the kernel module compiles, included by
//! path, tested with `std`.

#![allow(dead_code)]

#[path = "../../../rust/proto/mod.rs"]
mod proto;

#[cfg(test)]
mod bhs_tests;
#[cfg(test)]
mod cm_tests;
#[cfg(test)]
mod hdr_tests;
#[cfg(test)]
mod param_tests;
#[cfg(test)]
mod rx_tests;
#[cfg(test)]
mod sizing_tests;
#[cfg(test)]
mod sq_tests;
#[cfg(test)]
mod stats_tests;
#[cfg(test)]
mod task_tests;
