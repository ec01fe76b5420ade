// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! `icount-mark reset|dump`: executes the magic no-op that the icount plugin (src/lib.rs)
//! reacts to: `xchg bx, bx` resets the counts, `xchg cx, cx` writes the counts since the
//! last reset and resets them. Outside QEMU with the plugin it does nothing.

fn main() {
    match std::env::args().nth(1).as_deref() {
        // SAFETY: A register exchanged with itself: no memory, stack or flags touched.
        Some("reset") => unsafe { core::arch::asm!(".byte 0x66, 0x87, 0xdb") },
        // SAFETY: As above.
        Some("dump") => unsafe { core::arch::asm!(".byte 0x66, 0x87, 0xc9") },
        _ => {
            eprintln!("usage: icount-mark reset|dump");
            std::process::exit(2);
        }
    }
}
