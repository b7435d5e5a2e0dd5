//! The allocator as a process's global allocator: big buffers get huge pages (where the
//! kernel offers them) and keep their contents when they grow.

use sepal_alloc::{smaps_field_at, HugeBuffers, HUGE_BUFFER_BYTES};

#[global_allocator]
static ALLOCATOR: HugeBuffers = HugeBuffers;

/// The kernel's THP mode, the bracketed word of `enabled`; `None` without THP support.
fn thp_mode() -> Option<String> {
    let modes = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok()?;
    Some(modes.split_whitespace().find(|m| m.starts_with('['))?.trim_matches(['[', ']']).to_string())
}

#[test]
fn a_big_buffer_is_backed_by_huge_pages() {
    if thp_mode().is_none_or(|m| m == "never") {
        eprintln!("transparent huge pages are off on this machine; nothing to check");
        return;
    }
    let mut buffer = vec![0u8; 64 << 20];
    // Touch every page, as a received model would.
    buffer.iter_mut().step_by(4096).for_each(|b| *b = 1);
    let middle = buffer.as_ptr() as usize + buffer.len() / 2;
    let huge = smaps_field_at(middle, "AnonHugePages").expect("the buffer's mapping");
    assert_ne!(huge.trim_end_matches("kB").trim(), "0", "the buffer got no huge pages");
}

#[test]
fn a_growing_big_buffer_keeps_its_contents() {
    let mut buffer: Vec<u32> = (0..(HUGE_BUFFER_BYTES / 4) as u32).collect();
    buffer.extend(0..(HUGE_BUFFER_BYTES / 2) as u32);
    buffer.shrink_to_fit();
    assert!(buffer[..HUGE_BUFFER_BYTES / 4].iter().enumerate().all(|(i, v)| *v == i as u32));
    assert!(buffer[HUGE_BUFFER_BYTES / 4..].iter().enumerate().all(|(i, v)| *v == i as u32));
}
