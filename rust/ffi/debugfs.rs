// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! debugfs: the module's `iser` directory and, under it, one directory per connection with
//! a read-only `seq_file` whose text a Rust type writes (`/sys/kernel/debug/iser/<conn>/stats`).
//!
//! Files are created with `debugfs_create_file` (not `_unsafe`): debugfs wraps the file
//! operations in its full proxy, so removing the file waits for readers inside `show` and
//! fails later reads of still-open files. The file operations name the module as owner, so
//! an open file pins the module. With debugfs disabled or failing, every call here returns
//! an error pointer that the other debugfs calls accept: the driver runs without the files.

use super::bindings;
use super::global::Global;
use core::fmt;
use core::marker::PhantomData;
use kernel::prelude::*;
use kernel::sync::Arc;

/// Something a debugfs file shows.
pub(crate) trait Show: Send + Sync + 'static {
    /// Writes the file's whole text.
    fn show(&self, w: &mut SeqWriter<'_>) -> fmt::Result;
}

/// Text sink of one `show` call (`seq_write` into the seq_file's buffer).
///
/// # Invariants
///
/// `m` is the `seq_file` of a `show` call in progress.
pub(crate) struct SeqWriter<'a> {
    m: *mut bindings::seq_file,
    _call: PhantomData<&'a mut bindings::seq_file>,
}

impl fmt::Write for SeqWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // SAFETY: `m` is live during the call (invariant); `s` is valid for `s.len()` bytes.
        // On overflow seq_file retries `show` with a bigger buffer; no error to report.
        unsafe { bindings::seq_write(self.m, s.as_ptr().cast(), s.len()) };
        Ok(())
    }
}

/// The module's `iser` directory and the file operations of its `T` files.
///
/// # Invariants
///
/// `dir` is what `debugfs_create_dir` returned (a dentry or an error pointer), removed only
/// by `drop`; `fops` is initialised and lives as long as `self`, so every file created with
/// it (all removed with `dir`) can use it.
pub(crate) struct Root<T: Show> {
    dir: *mut bindings::dentry,
    fops: bindings::file_operations,
    _t: PhantomData<T>,
}

// SAFETY: The dentry pointer is only passed to debugfs, which is thread-safe; `fops` is
// read-only after construction.
unsafe impl<T: Show> Send for Root<T> {}
// SAFETY: As above.
unsafe impl<T: Show> Sync for Root<T> {}

impl<T: Show> Root<T> {
    /// Creates `/sys/kernel/debug/<name>` for files that show a `T`.
    pub(crate) fn new(name: &'static CStr, module: &'static ThisModule) -> Self {
        let fops = bindings::file_operations {
            owner: module.as_ptr(),
            open: Some(open::<T>),
            read: Some(bindings::seq_read),
            llseek: Some(bindings::seq_lseek),
            release: Some(bindings::single_release),
            ..Default::default()
        };
        let root = core::ptr::null_mut();
        // SAFETY: `name` is a NUL-terminated static string; NULL parent is the debugfs root.
        let dir = unsafe { bindings::debugfs_create_dir(name.as_char_ptr(), root) };
        Root {
            dir,
            fops,
            _t: PhantomData,
        }
    }

    /// Creates directory `name` with one file `file` showing `data`. `None` if debugfs
    /// refused (disabled, out of memory, or a directory of that name exists).
    pub(crate) fn add(&self, name: &CStr, file: &'static CStr, data: Arc<T>) -> Option<Entry<T>> {
        // SAFETY: `name` is NUL-terminated; `self.dir` is a dentry or an error pointer
        // (invariant), which debugfs accepts as parent (it then fails).
        let dir = unsafe { bindings::debugfs_create_dir(name.as_char_ptr(), self.dir) };
        if is_err_or_null(dir) {
            return None;
        }
        let ptr = Arc::into_raw(data);
        // SAFETY: `dir` is a live dentry; `fops` outlives the file (removed with `self.dir`
        // at the latest, and `Entry` removes it earlier); `ptr` stays valid until the
        // `Entry` removed the file (below).
        let f = unsafe { create_file(file, dir, ptr.cast_mut().cast(), &self.fops) };
        if is_err_or_null(f) {
            // SAFETY: `dir` is ours; nothing in it refers to `ptr`.
            unsafe { bindings::debugfs_remove(dir) };
            // SAFETY: From `Arc::into_raw` above, not used by debugfs.
            drop(unsafe { Arc::from_raw(ptr) });
            return None;
        }
        Some(Entry { dir, data: ptr })
    }
}

impl<T: Show> Drop for Root<T> {
    fn drop(&mut self) {
        // SAFETY: By the invariant; removes everything still below (there is nothing left
        // when the module unloads: every `Entry` is owned by a connection, all gone).
        unsafe { bindings::debugfs_remove(self.dir) };
    }
}

/// A directory with a `T` file, removed on drop.
///
/// # Invariants
///
/// `dir` is a live dentry created by [`Root::add`]; `data` came from `Arc::into_raw` and is
/// the `i_private` of the file in `dir`, released only after `dir` was removed.
pub(crate) struct Entry<T: Show> {
    dir: *mut bindings::dentry,
    data: *const T,
}

// SAFETY: Removing a debugfs directory is allowed from any thread; `data` is an `Arc<T>`
// with `T: Send + Sync`.
unsafe impl<T: Show> Send for Entry<T> {}
// SAFETY: `Entry` has no `&self` methods that touch its pointers.
unsafe impl<T: Show> Sync for Entry<T> {}

impl<T: Show> Drop for Entry<T> {
    fn drop(&mut self) {
        // SAFETY: By the invariant. `debugfs_remove` returns after every reader left `show`
        // (full proxy), and later reads of open files fail without calling `open`/`show`.
        unsafe { bindings::debugfs_remove(self.dir) };
        // SAFETY: By the invariant, debugfs no longer hands `data` to `show`.
        drop(unsafe { Arc::from_raw(self.data) });
    }
}

fn is_err_or_null(p: *mut bindings::dentry) -> bool {
    p.is_null() || kernel::error::from_err_ptr(p).is_err()
}

/// `debugfs_create_file`, which became a `_Generic` macro over `debugfs_create_file_full`
/// in 6.14 (Kbuild sets `iser_debugfs_file_full` where the header has it).
///
/// # Safety
///
/// As `debugfs_create_file`: `name` NUL-terminated, `parent` a dentry, `fops` and `data`
/// valid for the file's lifetime.
unsafe fn create_file(
    name: &CStr,
    parent: *mut bindings::dentry,
    data: *mut kernel::ffi::c_void,
    fops: &bindings::file_operations,
) -> *mut bindings::dentry {
    const MODE: bindings::umode_t = 0o444;
    #[cfg(iser_debugfs_file_full)]
    // SAFETY: Per the function's contract; no aux data.
    return unsafe {
        bindings::debugfs_create_file_full(
            name.as_char_ptr(),
            MODE,
            parent,
            data,
            core::ptr::null(),
            fops,
        )
    };
    #[cfg(not(iser_debugfs_file_full))]
    // SAFETY: Per the function's contract.
    return unsafe { bindings::debugfs_create_file(name.as_char_ptr(), MODE, parent, data, fops) };
}

/// `open` of a `T` file: a single-record seq_file whose private data is the file's `T`.
///
/// # Safety
///
/// Called by the VFS (through debugfs' proxy) for a file created by [`Root::add`].
unsafe extern "C" fn open<T: Show>(
    inode: *mut bindings::inode,
    file: *mut bindings::file,
) -> kernel::ffi::c_int {
    // SAFETY: debugfs calls `open` with a live inode of our file, whose `i_private` is the
    // `T` given to `create_file`, alive while the file exists (the proxy holds it).
    unsafe { bindings::single_open(file, Some(show::<T>), (*inode).i_private) }
}

/// `show` of a `T` file.
///
/// # Safety
///
/// Called by `seq_read` for a seq_file opened by [`open`].
unsafe extern "C" fn show<T: Show>(
    m: *mut bindings::seq_file,
    _v: *mut kernel::ffi::c_void,
) -> kernel::ffi::c_int {
    // SAFETY: `single_open` stored our `T` as `private`; the proxy keeps the file (and so the
    // `Entry` that owns the reference) from being removed while `show` runs.
    let t = unsafe { &*((*m).private as *const T) };
    let mut w = SeqWriter {
        m,
        _call: PhantomData,
    };
    // A formatting error is impossible with `write_str` above; seq_file handles overflow.
    let _ = t.show(&mut w);
    0
}

/// The module's debugfs root for connection statistics (installed by module init).
pub(crate) static ROOT: Global<Root<crate::conn::ConnStats>> = Global::new();
