//! With one arena, a big buffer freed on one thread is reused by the next big buffer of
//! another, while both threads live (their own arenas would keep them apart).
//!
//! A test binary of its own (`harness = false`): the setting must come before any other
//! thread allocates.

use std::sync::mpsc;
use std::thread;

const BIG: usize = 20 << 20;

/// The address of a fresh big buffer, which is then freed.
fn big_buffer_at() -> usize {
    let block = vec![1u8; BIG];
    std::hint::black_box(&block);
    block.as_ptr() as usize
}

fn main() {
    if !sepal_alloc::share_one_arena() {
        println!("one_arena: not glibc, or the environment sets the arenas: nothing to test");
        return;
    }
    // The first big block glibc maps on its own; freeing it raises its threshold, so the
    // next ones up to its size (at most 32 MiB) come from an arena, as a long-running
    // daemon's do.
    drop(std::hint::black_box(vec![1u8; BIG + (4 << 20)]));

    let (freed_tx, freed_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let first = thread::spawn(move || {
        freed_tx.send(big_buffer_at()).unwrap();
        // Stays alive (holding its arena, if it had one) until the other thread is done.
        done_rx.recv().unwrap();
    });
    let freed = freed_rx.recv().unwrap();
    let reused = thread::spawn(big_buffer_at).join().unwrap();
    done_tx.send(()).unwrap();
    first.join().unwrap();

    // The same memory, give or take the other thread's first small allocations.
    assert!(
        reused.abs_diff(freed) < BIG / 2,
        "the block one thread freed ({freed:#x}) was not reused by another ({reused:#x})"
    );
    println!("one_arena: ok (a 20 MiB block freed on one thread reused on another)");
}
