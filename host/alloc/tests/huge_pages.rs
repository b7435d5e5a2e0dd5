//! The allocator as a process's global allocator: big buffers get huge pages (where the
//! kernel offers them) and keep their contents when they grow.

use sepal_alloc::{HugeBuffers, HUGE_BUFFER_BYTES};

#[global_allocator]
static ALLOCATOR: HugeBuffers = HugeBuffers;

/// The kernel's THP mode, the bracketed word of `enabled`; `None` without THP support.
fn thp_mode() -> Option<String> {
    let modes = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok()?;
    Some(modes.split_whitespace().find(|m| m.starts_with('['))?.trim_matches(['[', ']']).to_string())
}

/// `AnonHugePages` of the mapping of /proc/self/smaps that contains `addr`, in KiB.
fn huge_kib_at(addr: usize) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("/proc/self/smaps");
    let mut inside = false;
    for line in smaps.lines() {
        if let Some((range, _)) = line.split_once(' ').filter(|(r, _)| r.contains('-') && !r.ends_with(':')) {
            let (lo, hi) = range.split_once('-').expect("a range");
            let (lo, hi) = (usize::from_str_radix(lo, 16).unwrap(), usize::from_str_radix(hi, 16).unwrap());
            inside = (lo..hi).contains(&addr);
        } else if let Some(kib) = line.strip_prefix("AnonHugePages:").filter(|_| inside) {
            return kib.trim().trim_end_matches("kB").trim().parse().expect("a number of kB");
        }
    }
    panic!("no mapping contains {addr:#x}")
}

#[test]
fn a_big_buffer_is_backed_by_huge_pages() {
    if thp_mode().is_none_or(|m| m == "never") {
        eprintln!("transparent huge pages are off on this machine; nothing to check");
        return;
    }
    let mut buffer = vec![0u8; 4 * HUGE_BUFFER_BYTES];
    // Touch every page, as a received model would.
    buffer.iter_mut().step_by(4096).for_each(|b| *b = 1);
    let middle = buffer.as_ptr() as usize + buffer.len() / 2;
    assert!(huge_kib_at(middle) > 0, "the buffer got no huge pages");
}

#[test]
fn a_growing_big_buffer_keeps_its_contents() {
    let mut buffer: Vec<u32> = (0..(HUGE_BUFFER_BYTES / 4) as u32).collect();
    buffer.extend(0..(HUGE_BUFFER_BYTES / 2) as u32);
    buffer.shrink_to_fit();
    assert!(buffer[..HUGE_BUFFER_BYTES / 4].iter().enumerate().all(|(i, v)| *v == i as u32));
    assert!(buffer[HUGE_BUFFER_BYTES / 4..].iter().enumerate().all(|(i, v)| *v == i as u32));
}
