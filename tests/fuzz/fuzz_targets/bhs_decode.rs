// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! libFuzzer target: see `iser_proto_fuzz::bhs_decode`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| iser_proto_fuzz::bhs_decode(data));
