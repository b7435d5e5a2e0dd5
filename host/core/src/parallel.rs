//! CPU-bound work spread over the machine's cores: hashing and copying a model's chunks.

use std::sync::OnceLock;

/// At most this many threads per call: beyond a few, hashing and copying are bound by
/// memory bandwidth, not by cores.
const MAX_THREADS: usize = 4;

/// The CPUs this process may use (read once: it looks at cgroup files).
fn cpus() -> usize {
    static CPUS: OnceLock<usize> = OnceLock::new();
    *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// `items.iter().map(f)`, in order, computed in contiguous runs by up to one thread per
/// CPU (the calling thread takes the first run). With one CPU or one item, it all runs on
/// the calling thread.
pub fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = cpus().min(MAX_THREADS).min(items.len());
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let per_thread = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let others: Vec<_> = items
            .chunks(per_thread)
            .skip(1)
            .map(|run| scope.spawn(move || run.iter().map(f).collect::<Vec<R>>()))
            .collect();
        let mut out: Vec<R> = items[..per_thread].iter().map(f).collect();
        for other in others {
            out.extend(other.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_order_of_the_items() {
        for len in [0, 1, 2, 3, 7, 64] {
            let items: Vec<u64> = (0..len).collect();
            assert_eq!(map(&items, |x| x * 3), items.iter().map(|x| x * 3).collect::<Vec<_>>(), "{len} items");
        }
    }

    #[test]
    fn work_runs_on_several_threads_when_there_are_cpus() {
        let items: Vec<u32> = (0..8).collect();
        let threads: std::collections::HashSet<_> = map(&items, |_| std::thread::current().id()).into_iter().collect();
        assert_eq!(threads.len(), cpus().min(MAX_THREADS), "one thread per CPU, at most {MAX_THREADS}");
    }
}
