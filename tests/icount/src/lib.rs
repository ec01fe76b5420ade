// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! A TCG plugin for QEMU system emulation (plugin API version 1, QEMU 7.2): counts every
//! instruction the guest kernel executes, per instruction address, exactly (an inline add
//! per instruction, no sampling), between marks that a guest program sets by executing a
//! magic no-op in user mode (`icount-mark`): `xchg bx, bx` resets the counts, `xchg cx, cx`
//! appends the counts since the reset to the output file and resets them.
//!
//! Arguments: `out=PATH` (required). Output, per dump: `dump N TOTAL`, then one line
//! `ADDRESS COUNT` (hex address, decimal count) per kernel instruction that executed.
//! `make bench-insns` maps the addresses to modules and symbols with the guest's
//! `/proc/kallsyms` (scripts/bench-insns.py).
//!
//! The counters are not atomic: exact with `-accel tcg,thread=single` (one host thread runs
//! every vCPU, as scripts/vm-run does by default).

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

type PluginId = u64;

/// `struct qemu_plugin_tb` (opaque).
#[repr(C)]
struct Tb {
    _p: [u8; 0],
}

/// `struct qemu_plugin_insn` (opaque).
#[repr(C)]
struct Insn {
    _p: [u8; 0],
}

/// `QEMU_PLUGIN_INLINE_ADD_U64`.
const INLINE_ADD_U64: c_int = 0;
/// `QEMU_PLUGIN_CB_NO_REGS`.
const CB_NO_REGS: c_int = 0;

extern "C" {
    fn qemu_plugin_register_vcpu_tb_trans_cb(id: PluginId, cb: extern "C" fn(PluginId, *mut Tb));
    fn qemu_plugin_register_atexit_cb(
        id: PluginId,
        cb: extern "C" fn(PluginId, *mut c_void),
        userdata: *mut c_void,
    );
    fn qemu_plugin_tb_n_insns(tb: *const Tb) -> usize;
    fn qemu_plugin_tb_get_insn(tb: *const Tb, idx: usize) -> *mut Insn;
    fn qemu_plugin_insn_vaddr(insn: *const Insn) -> u64;
    fn qemu_plugin_insn_data(insn: *const Insn) -> *const c_void;
    fn qemu_plugin_insn_size(insn: *const Insn) -> usize;
    fn qemu_plugin_register_vcpu_insn_exec_inline(
        insn: *mut Insn,
        op: c_int,
        ptr: *mut c_void,
        imm: u64,
    );
    fn qemu_plugin_register_vcpu_insn_exec_cb(
        insn: *mut Insn,
        cb: extern "C" fn(c_uint, *mut c_void),
        flags: c_int,
        userdata: *mut c_void,
    );
}

/// The API version this plugin was written against (`QEMU_PLUGIN_VERSION` of QEMU 7.2).
#[no_mangle]
pub static qemu_plugin_version: c_int = 1;

/// The lowest kernel address of x86-64 (canonical upper half).
const KERNEL_START: u64 = 0xffff_8000_0000_0000;
/// `xchg bx, bx` and `xchg cx, cx` (16-bit operands).
const MARK_RESET: [u8; 3] = [0x66, 0x87, 0xdb];
const MARK_DUMP: [u8; 3] = [0x66, 0x87, 0xc9];

struct State {
    /// One counter per kernel instruction address; boxed, so that the address the
    /// translated code adds to never moves.
    counters: HashMap<u64, Box<AtomicU64>>,
    out: BufWriter<File>,
    dumps: u64,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> Option<R> {
    let mut g = STATE.lock().unwrap_or_else(|e| e.into_inner());
    g.as_mut().map(f)
}

fn reset(s: &mut State) {
    for c in s.counters.values() {
        c.store(0, Ordering::Relaxed);
    }
}

fn dump(s: &mut State) {
    s.dumps += 1;
    let mut lines: Vec<(u64, u64)> = s
        .counters
        .iter()
        .map(|(&a, c)| (a, c.load(Ordering::Relaxed)))
        .filter(|&(_, n)| n > 0)
        .collect();
    lines.sort_unstable();
    let total: u64 = lines.iter().map(|&(_, n)| n).sum();
    let _ = writeln!(s.out, "dump {} {}", s.dumps, total);
    for (a, n) in lines {
        let _ = writeln!(s.out, "{:x} {}", a, n);
    }
    let _ = s.out.flush();
    reset(s);
}

extern "C" fn on_mark(_vcpu: c_uint, userdata: *mut c_void) {
    let is_dump = !userdata.is_null();
    with_state(|s| if is_dump { dump(s) } else { reset(s) });
}

extern "C" fn on_tb(_id: PluginId, tb: *mut Tb) {
    // SAFETY: QEMU passes a live translation block for the duration of the callback.
    let n = unsafe { qemu_plugin_tb_n_insns(tb) };
    with_state(|s| {
        for i in 0..n {
            // SAFETY: `i` is below the block's instruction count.
            let insn = unsafe { qemu_plugin_tb_get_insn(tb, i) };
            // SAFETY: A live instruction handle of this block.
            let vaddr = unsafe { qemu_plugin_insn_vaddr(insn) };
            if vaddr >= KERNEL_START {
                let c = s
                    .counters
                    .entry(vaddr)
                    .or_insert_with(|| Box::new(AtomicU64::new(0)));
                // SAFETY: The counter is boxed and never freed while QEMU runs (the map
                // only grows), so the address stays valid for the translated code.
                unsafe {
                    qemu_plugin_register_vcpu_insn_exec_inline(
                        insn,
                        INLINE_ADD_U64,
                        c.as_ptr().cast(),
                        1,
                    )
                };
                continue;
            }
            // SAFETY: As above.
            let size = unsafe { qemu_plugin_insn_size(insn) };
            if size != 3 {
                continue;
            }
            // SAFETY: `size` bytes of instruction data, valid during the callback.
            let data = unsafe {
                std::slice::from_raw_parts(qemu_plugin_insn_data(insn).cast::<u8>(), size)
            };
            let kind = if data == MARK_RESET {
                0usize
            } else if data == MARK_DUMP {
                1
            } else {
                continue;
            };
            // SAFETY: A live instruction handle; the callback takes no registers, and the
            // user data is a flag, not a pointer.
            unsafe {
                qemu_plugin_register_vcpu_insn_exec_cb(
                    insn,
                    on_mark,
                    CB_NO_REGS,
                    kind as *mut c_void,
                )
            };
        }
    });
}

extern "C" fn on_exit(_id: PluginId, _u: *mut c_void) {
    with_state(|s| {
        let _ = s.out.flush();
    });
}

/// # Safety
///
/// Called by QEMU once, with `argv` holding `argc` NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn qemu_plugin_install(
    id: PluginId,
    _info: *const c_void,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    let mut out = None;
    for i in 0..usize::try_from(argc).unwrap_or(0) {
        // SAFETY: Per the function's contract.
        let a = unsafe { CStr::from_ptr(*argv.add(i)) }.to_string_lossy();
        if let Some(p) = a.strip_prefix("out=") {
            out = Some(p.to_string());
        }
    }
    let Some(path) = out else {
        eprintln!("icount plugin: out=PATH is required");
        return 1;
    };
    let file = match OpenOptions::new().create(true).append(true).open(&path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("icount plugin: {}: {}", path, e);
            return 1;
        }
    };
    *STATE.lock().unwrap_or_else(|e| e.into_inner()) = Some(State {
        counters: HashMap::new(),
        out: BufWriter::new(file),
        dumps: 0,
    });
    // SAFETY: Registering callbacks during install is what the API is for.
    unsafe {
        qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb);
        qemu_plugin_register_atexit_cb(id, on_exit, std::ptr::null_mut());
    }
    0
}
