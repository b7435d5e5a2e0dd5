//! The process allocator of Sepal's binaries: the system allocator, and transparent huge
//! pages for big buffers.
//!
//! A model's arrays pass through big buffers: 20 MiB object chunks, gRPC frames, decoded
//! messages, encodings for a Wasm app. Most are fresh memory, and the first touch of each
//! 4 KiB page costs a page fault and a zeroed page: profiled in the large-model benchmark,
//! that was the largest single term of the SuperNode's CPU time. Asking the kernel for
//! 2 MiB pages on such buffers (`MADV_HUGEPAGE`) takes 512 times fewer faults; the
//! benchmark's round trip took a quarter less time. Where transparent huge pages are
//! `never`, the kernel ignores the advice; where they are `always`, it changes nothing.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations of at least this many bytes are advised to use huge pages. Smaller ones are
/// left alone: they hold few whole 2 MiB pages, and a request's small buffers would only
/// cost memory on huge pages. (Advising only glibc's own mmaps, 32 MiB and up, left the
/// object chunks on small pages and kept half the gain.)
pub const HUGE_BUFFER_BYTES: usize = 4 << 20;

/// The size of a transparent huge page on x86-64 and (4 KiB granule) aarch64 Linux.
const HUGE_PAGE: usize = 2 << 20;

/// [`System`], plus `MADV_HUGEPAGE` on every allocation of [`HUGE_BUFFER_BYTES`] or more.
///
/// ```ignore
/// #[global_allocator]
/// static ALLOCATOR: sepal_alloc::HugeBuffers = sepal_alloc::HugeBuffers;
/// ```
pub struct HugeBuffers;

// SAFETY: every call is forwarded to `System` with the caller's arguments unchanged; the
// advice only changes how the kernel backs pages of the returned block, never its contents
// or its ownership.
unsafe impl GlobalAlloc for HugeBuffers {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc`, passed on.
        advise(unsafe { System.alloc(layout) }, layout.size())
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc_zeroed`, passed on.
        advise(unsafe { System.alloc_zeroed(layout) }, layout.size())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc`, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract for `realloc`, passed on.
        advise(unsafe { System.realloc(ptr, layout, new_size) }, new_size)
    }
}

/// Advises huge pages for the whole 2 MiB pages inside `[block, block + size)`, if the block
/// is big enough; returns `block`.
fn advise(block: *mut u8, size: usize) -> *mut u8 {
    if size < HUGE_BUFFER_BYTES || block.is_null() {
        return block;
    }
    let start = (block as usize).next_multiple_of(HUGE_PAGE);
    let end = (block as usize + size) / HUGE_PAGE * HUGE_PAGE;
    if end > start {
        // SAFETY: the range lies inside a block this process just allocated, and
        // MADV_HUGEPAGE changes no contents. Failure (no THP in this kernel) leaves the
        // block on ordinary pages, which is fine.
        let _ = unsafe {
            rustix::mm::madvise(start as *mut std::ffi::c_void, end - start, rustix::mm::Advice::LinuxHugepage)
        };
    }
    block
}
