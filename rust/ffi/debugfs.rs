// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause

//! debugfs: the module's `iser` directory and, under it, directories with a read-only
//! `seq_file` whose text a Rust type writes ([`Show`]; the driver's connection statistics,
//! `/sys/kernel/debug/iser/<conn>/stats`, and the sums of ended connections).
//!
//! Files are created with `debugfs_create_file` (not `_unsafe`): debugfs wraps the file
//! operations in its full proxy, so removing the file waits for readers inside `show` and
//! fails later reads of still-open files. The file operations name the module as owner, so
//! an open file pins the module. With debugfs disabled or failing, every call here returns
//! an error pointer that the other debugfs calls accept: the driver runs without the files.

use super::bindings;
use super::global::Global;
use core::ffi::c_void;
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

/// What a file's `i_private` points to: the object it shows and the `show` of that object's
/// type, so that one set of file operations (the root's) serves files of every type.
struct Node {
    data: *const c_void,
    show: unsafe fn(*const c_void, &mut SeqWriter<'_>) -> fmt::Result,
}

/// [`Node::show`] for a `T`.
///
/// # Safety
///
/// `data` came from `Arc::<T>::into_raw` and that reference is still held.
unsafe fn show_as<T: Show>(data: *const c_void, w: &mut SeqWriter<'_>) -> fmt::Result {
    // SAFETY: Per the function's contract, `data` is a live `T`.
    unsafe { &*data.cast::<T>() }.show(w)
}

/// The module's `iser` directory and the file operations of the files below it.
///
/// # Invariants
///
/// `dir` is what `debugfs_create_dir` returned (a dentry or an error pointer), removed only
/// by `drop`; `fops` is initialised and lives as long as `self`, so every file created with
/// it (all removed with `dir`) can use it.
pub(crate) struct Root {
    dir: *mut bindings::dentry,
    fops: bindings::file_operations,
}

// SAFETY: The dentry pointer is only passed to debugfs, which is thread-safe; `fops` is
// read-only after construction.
unsafe impl Send for Root {}
// SAFETY: As above.
unsafe impl Sync for Root {}

impl Root {
    /// Creates `/sys/kernel/debug/<name>`.
    pub(crate) fn new(name: &'static CStr, module: &'static ThisModule) -> Self {
        let fops = bindings::file_operations {
            owner: module.as_ptr(),
            open: Some(open),
            read: Some(bindings::seq_read),
            llseek: Some(bindings::seq_lseek),
            release: Some(bindings::single_release),
            ..Default::default()
        };
        let root = core::ptr::null_mut();
        // SAFETY: `name` is a NUL-terminated static string; NULL parent is the debugfs root.
        let dir = unsafe { bindings::debugfs_create_dir(name.as_char_ptr(), root) };
        Root { dir, fops }
    }

    /// Creates directory `name` with one file `file` showing `data`. `None` if debugfs
    /// refused (disabled, out of memory, or a directory of that name exists).
    pub(crate) fn add<T: Show>(
        &self,
        name: &CStr,
        file: &'static CStr,
        data: Arc<T>,
    ) -> Option<Entry<T>> {
        // SAFETY: `name` is NUL-terminated; `self.dir` is a dentry or an error pointer
        // (invariant), which debugfs accepts as parent (it then fails).
        let dir = unsafe { bindings::debugfs_create_dir(name.as_char_ptr(), self.dir) };
        if is_err_or_null(dir) {
            return None;
        }
        let ptr = Arc::into_raw(data);
        let node = KBox::new(
            Node {
                data: ptr.cast(),
                show: show_as::<T>,
            },
            GFP_KERNEL,
        );
        let Ok(node) = node else {
            // SAFETY: `dir` is ours and empty.
            unsafe { bindings::debugfs_remove(dir) };
            // SAFETY: From `Arc::into_raw` above, not handed to debugfs.
            drop(unsafe { Arc::from_raw(ptr) });
            return None;
        };
        let node = KBox::into_raw(node);
        // SAFETY: `dir` is a live dentry; `fops` outlives the file (removed with `self.dir`
        // at the latest, and `Entry` removes it earlier); `node` and `ptr` stay valid until
        // the `Entry` removed the file.
        let f = unsafe { create_file(file, dir, node.cast(), &self.fops) };
        if is_err_or_null(f) {
            // SAFETY: `dir` is ours; nothing in it refers to `node` or `ptr`.
            unsafe { bindings::debugfs_remove(dir) };
            // SAFETY: From `KBox::into_raw` and `Arc::into_raw` above, not used by debugfs.
            drop(unsafe { KBox::from_raw(node) });
            // SAFETY: As above.
            drop(unsafe { Arc::from_raw(ptr) });
            return None;
        }
        Some(Entry {
            dir,
            data: ptr,
            node,
        })
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        // SAFETY: By the invariant; removes everything still below (there is nothing left
        // when the module unloads: every `Entry` is owned by a connection or the module, all
        // gone).
        unsafe { bindings::debugfs_remove(self.dir) };
    }
}

/// A directory with a file showing a `T`, removed on drop.
///
/// # Invariants
///
/// `dir` is a live dentry created by [`Root::add`]; `data` came from `Arc::into_raw` and
/// `node` from `KBox::into_raw`; the file in `dir` has `node` (pointing to `data`) as its
/// `i_private`. Both are released only after `dir` was removed.
pub(crate) struct Entry<T: Show> {
    dir: *mut bindings::dentry,
    data: *const T,
    node: *mut Node,
}

// SAFETY: Removing a debugfs directory is allowed from any thread; `data` is an `Arc<T>`
// with `T: Send + Sync`, and the node only points to it.
unsafe impl<T: Show> Send for Entry<T> {}
// SAFETY: `Entry` has no `&self` methods that touch its pointers.
unsafe impl<T: Show> Sync for Entry<T> {}

impl<T: Show> Drop for Entry<T> {
    fn drop(&mut self) {
        // SAFETY: By the invariant. `debugfs_remove` returns after every reader left `show`
        // (full proxy), and later reads of open files fail without calling `open`/`show`.
        unsafe { bindings::debugfs_remove(self.dir) };
        // SAFETY: By the invariant, debugfs no longer hands the node (and `data`) to `show`.
        drop(unsafe { KBox::from_raw(self.node) });
        // SAFETY: As above.
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

/// `open` of a file below the root: a single-record seq_file whose private data is the
/// file's [`Node`].
///
/// # Safety
///
/// Called by the VFS (through debugfs' proxy) for a file created by [`Root::add`].
unsafe extern "C" fn open(
    inode: *mut bindings::inode,
    file: *mut bindings::file,
) -> kernel::ffi::c_int {
    // SAFETY: debugfs calls `open` with a live inode of our file, whose `i_private` is the
    // node given to `create_file`, alive while the file exists (the proxy holds it).
    unsafe { bindings::single_open(file, Some(show), (*inode).i_private) }
}

/// `show` of a file below the root.
///
/// # Safety
///
/// Called by `seq_read` for a seq_file opened by [`open`].
unsafe extern "C" fn show(
    m: *mut bindings::seq_file,
    _v: *mut kernel::ffi::c_void,
) -> kernel::ffi::c_int {
    // SAFETY: `single_open` stored our node as `private`; the proxy keeps the file (and so
    // the `Entry` that owns the node and the reference it points to) from being removed
    // while `show` runs.
    let node = unsafe { &*((*m).private as *const Node) };
    let mut w = SeqWriter {
        m,
        _call: PhantomData,
    };
    // SAFETY: The node was made by `Root::add` for the type its `data` points to, alive
    // (above). A formatting error is impossible with `write_str` above; seq_file handles
    // overflow.
    let _ = unsafe { (node.show)(node.data, &mut w) };
    0
}

/// The module's debugfs root (installed by module init).
pub(crate) static ROOT: Global<Root> = Global::new();
