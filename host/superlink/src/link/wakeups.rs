//! Wake-ups addressed to one waiter group: a node's held pulls wait for *its*
//! instructions, a ServerApp for *its run's* replies. One shared signal would wake every
//! held pull of a large fleet on every message, each to re-check the state for nothing.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

use super::lock;

/// Change counters by key (a node id or a run id), made when someone subscribes and
/// dropped once nobody listens.
#[derive(Default)]
pub struct Wakeups {
    senders: Mutex<HashMap<u64, watch::Sender<u64>>>,
}

impl Wakeups {
    /// A receiver that sees every [`Wakeups::wake`] of `key` from now on. Subscribe before
    /// checking the state, so that a change between the check and the wait is not missed.
    pub fn subscribe(&self, key: u64) -> watch::Receiver<u64> {
        lock(&self.senders).entry(key).or_insert_with(|| watch::channel(0).0).subscribe()
    }

    /// Wakes whoever waits on `key` (nobody: nothing to do).
    pub fn wake(&self, key: u64) {
        let mut senders = lock(&self.senders);
        if let Some(tx) = senders.get(&key) {
            if tx.receiver_count() == 0 {
                senders.remove(&key);
            } else {
                tx.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }

    /// Drops `key`'s counter (its node left, its run ended); waiters still holding a
    /// receiver see no further wakes and end on their own deadlines.
    pub fn forget(&self, key: u64) {
        lock(&self.senders).remove(&key);
    }

    /// How many keys have a counter now (for tests: waiters that left leave nothing).
    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.senders).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wake_reaches_only_its_key() {
        let wakeups = Wakeups::default();
        let mut mine = wakeups.subscribe(1);
        let mut other = wakeups.subscribe(2);
        wakeups.wake(1);
        assert!(mine.has_changed().unwrap());
        assert!(!other.has_changed().unwrap());
        mine.changed().await.unwrap();
        assert!(!mine.has_changed().unwrap());
        other.mark_unchanged();
    }

    #[test]
    fn a_wake_before_the_wait_is_not_lost() {
        let wakeups = Wakeups::default();
        let rx = wakeups.subscribe(7);
        wakeups.wake(7); // between the waiter's state check and its wait
        assert!(rx.has_changed().unwrap());
    }

    #[test]
    fn keys_nobody_waits_on_are_dropped() {
        let wakeups = Wakeups::default();
        drop(wakeups.subscribe(1));
        wakeups.wake(1);
        wakeups.wake(3); // never subscribed
        assert_eq!(wakeups.len(), 0);
    }
}
