//! The process allocator of Sepal's binaries: the system allocator, and transparent huge
//! pages for big buffers; with glibc, one arena for all threads ([`share_one_arena`]).
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

/// Makes every thread of this process allocate from one glibc arena (`M_ARENA_MAX` 1);
/// returns whether it did: not on other C libraries, nor when the environment sets the
/// arena count itself (`MALLOC_ARENA_MAX`, or `arena_max` in `GLIBC_TUNABLES`), which an
/// operator of a many-core machine may prefer. Call it first in `main`, before any thread
/// starts: a thread keeps the arena it first allocated from.
///
/// glibc gives threads arenas of their own (up to 8 per core). After the first big
/// mapping is freed, glibc serves blocks up to its size (a 20 MiB chunk, a gRPC message)
/// from the arenas, and keeps a freed one in its thread's arena for that arena's next use;
/// a big buffer that another thread asks for comes from fresh memory instead. Which
/// worker thread happened to handle which request then decided the SuperLink's peak RSS:
/// 1.2x to 1.75x the payload in the large-model benchmark, 1.2x with one arena, and no
/// slower on 2 cores (a request's small allocations are served from per-thread caches,
/// without the arena's lock; bigger ones take it).
pub fn share_one_arena() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
        if std::env::var_os("MALLOC_ARENA_MAX").is_some() || tunables.contains("arena_max") {
            return false;
        }
        // SAFETY: mallopt only sets a parameter of glibc's allocator; it takes effect for
        // threads that have not allocated yet.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
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

/// Runs `reserve`, then advises huge pages on the largest anonymous mapping that appeared
/// meanwhile (in /proc/self/maps), if it has at least `min_len` bytes; returns what
/// `reserve` returned and whether a mapping was advised.
///
/// For memory that is reserved once and handed out by another allocator, like wasmtime's
/// pool of linear memories: an app that grows its memory by hundreds of MiB (a model)
/// then faults it in 2 MiB at a time. Small memories are not affected, since the kernel
/// only puts a huge page where a whole aligned 2 MiB of the mapping is accessible.
pub fn with_huge_reservation<T>(min_len: usize, reserve: impl FnOnce() -> T) -> (T, bool) {
    let before = anonymous_mappings();
    let out = reserve();
    let largest = anonymous_mappings()
        .into_iter()
        .filter(|m| !before.contains(m) && m.1 >= min_len.max(HUGE_PAGE))
        .max_by_key(|m| m.1);
    let Some((start, len)) = largest else {
        return (out, false);
    };
    // SAFETY: the range is a whole mapping of this process, and MADV_HUGEPAGE changes no
    // contents or permissions of it.
    let advised =
        unsafe { rustix::mm::madvise(start as *mut std::ffi::c_void, len, rustix::mm::Advice::LinuxHugepage) };
    (out, advised.is_ok())
}

/// Start and length of every anonymous mapping of this process (none if /proc is not
/// readable).
fn anonymous_mappings() -> Vec<(usize, usize)> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    maps.lines().filter_map(anonymous_mapping).collect()
}

/// `start-end perms offset dev inode [path]`: anonymous when the inode is 0 and there is
/// no path (not `[heap]`, `[stack]` or a file).
fn anonymous_mapping(line: &str) -> Option<(usize, usize)> {
    let mut fields = line.split_whitespace();
    let range = fields.next()?;
    let inode = fields.nth(3)?;
    if inode != "0" || fields.next().is_some() {
        return None;
    }
    let (lo, hi) = range.split_once('-')?;
    let (lo, hi) = (usize::from_str_radix(lo, 16).ok()?, usize::from_str_radix(hi, 16).ok()?);
    Some((lo, hi.checked_sub(lo)?))
}

/// The value of `field` (as `AnonHugePages` or `VmFlags`) in /proc/self/smaps for the
/// mapping that contains `addr`: for tests and diagnostics.
pub fn smaps_field_at(addr: usize, field: &str) -> Option<String> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut inside = false;
    for line in smaps.lines() {
        let range = line.split_whitespace().next().and_then(|r| r.split_once('-'));
        let bounds =
            range.and_then(|(lo, hi)| Some((usize::from_str_radix(lo, 16).ok()?, usize::from_str_radix(hi, 16).ok()?)));
        if let Some((lo, hi)) = bounds {
            inside = (lo..hi).contains(&addr);
        } else if let Some(value) = line.strip_prefix(field).and_then(|v| v.strip_prefix(':')).filter(|_| inside) {
            return Some(value.trim().to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_are_read_as_anonymous_mappings_or_not() {
        assert_eq!(
            anonymous_mapping("7f00a0000000-7f00a0400000 rw-p 00000000 00:00 0 "),
            Some((0x7f00a0000000, 4 << 20))
        );
        assert_eq!(anonymous_mapping("55d0c0a00000-55d0c0c00000 rw-p 00000000 00:00 0      [heap]"), None);
        assert_eq!(anonymous_mapping("7f00a0000000-7f00a0001000 r--p 00000000 08:01 1234   /usr/lib/libc.so.6"), None);
        assert_eq!(anonymous_mapping("garbage"), None);
    }

    #[test]
    fn the_largest_new_reservation_is_advised() {
        // glibc maps a block this big on its own: a new anonymous mapping.
        let (block, advised) = with_huge_reservation(48 << 20, || vec![0u8; 64 << 20]);
        assert!(advised);
        let flags = smaps_field_at(block.as_ptr() as usize + (32 << 20), "VmFlags").expect("the block's mapping");
        assert!(flags.split_whitespace().any(|f| f == "hg"), "not advised: {flags}");
        let (_small, advised) = with_huge_reservation(128 << 20, || vec![0u8; 64 << 20]);
        assert!(!advised, "a mapping under the minimum is left alone");
    }
}
