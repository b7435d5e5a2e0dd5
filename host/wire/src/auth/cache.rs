//! Signatures already verified: a SuperLink checks each (key, timestamp, signature) triple
//! once while its timestamp is inside the window.
//!
//! The check is ECDSA P-384 (about 0.7 ms of CPU), and a node sends a request every few
//! milliseconds during a round. Accepting a triple seen before is exactly what
//! the window already allows anyone who captured it (Flower has no nonce, see the module
//! docs), so remembering the outcome changes no security property: a cached triple is
//! accepted only while its timestamp is still inside the window, and only for the key it
//! was verified with (the allow-list is fixed for the SuperLink's life).

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

/// At most this many nodes' triples are remembered (about 100 bytes each); past it, those
/// whose timestamp left the window are dropped, and if that is not enough, the older half.
const CAPACITY: usize = 65_536;

/// The latest verified triple of each key, by a digest of the key. One entry per node, not
/// per triple: a node that signs anew (every request, for a Python SuperNode) replaces its
/// entry, so a large fleet never fills the cache with superseded triples and never makes
/// it drop the ones still in use.
#[derive(Debug)]
pub struct VerifiedCache {
    entries: Mutex<HashMap<[u8; 32], Verified>>,
    capacity: usize,
}

impl Default for VerifiedCache {
    fn default() -> Self {
        Self { entries: Mutex::default(), capacity: CAPACITY }
    }
}

#[derive(Debug, Clone, Copy)]
struct Verified {
    triple: [u8; 32],
    signed_at: DateTime<Utc>,
}

/// A request's (key, timestamp, signature), as the cache knows it: a digest of the key (the
/// entry's address) and one of the timestamp and signature (what the entry must match).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Triple {
    key: [u8; 32],
    triple: [u8; 32],
}

impl Triple {
    pub(crate) fn of(key: &[u8], timestamp: &str, signature: &[u8]) -> Triple {
        let mut h = Sha256::new();
        for part in [timestamp.as_bytes(), signature] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        Triple { key: Sha256::digest(key).into(), triple: h.finalize().into() }
    }
}

impl VerifiedCache {
    /// When `triple` was signed, if it is the latest one of its key that verified.
    pub(crate) fn signed_at(&self, triple: &Triple) -> Option<DateTime<Utc>> {
        self.lock().get(&triple.key).filter(|v| v.triple == triple.triple).map(|v| v.signed_at)
    }

    /// Remembers a triple that verified, unless its key has a later one; `fresh_after` is
    /// the oldest signing time still inside the window (what is older is dropped when room
    /// is needed).
    pub(crate) fn insert(&self, triple: Triple, signed_at: DateTime<Utc>, fresh_after: DateTime<Utc>) {
        let mut entries = self.lock();
        if let Some(latest) = entries.get(&triple.key) {
            if latest.signed_at > signed_at {
                return;
            }
        } else if entries.len() >= self.capacity {
            make_room(&mut entries, self.capacity, fresh_after);
        }
        entries.insert(triple.key, Verified { triple: triple.triple, signed_at });
    }

    /// How many keys have a remembered triple.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Verified>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Drops the triples signed before `fresh_after`, then, if still full, the older half (a
/// node whose entry goes pays one more verification on its next request).
fn make_room(entries: &mut HashMap<[u8; 32], Verified>, capacity: usize, fresh_after: DateTime<Utc>) {
    entries.retain(|_, v| v.signed_at > fresh_after);
    if entries.len() < capacity {
        return;
    }
    let mut times: Vec<DateTime<Utc>> = entries.values().map(|v| v.signed_at).collect();
    let mid = times.len() / 2;
    let (_, median, _) = times.select_nth_unstable(mid);
    let median = *median;
    entries.retain(|_, v| v.signed_at > median);
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn at(secs_ago: i64) -> DateTime<Utc> {
        Utc::now() - Duration::seconds(secs_ago)
    }

    #[test]
    fn a_node_has_one_entry_its_latest_triple() {
        let cache = VerifiedCache::default();
        let (first, second) = (Triple::of(b"key", "t1", b"s1"), Triple::of(b"key", "t2", b"s2"));
        cache.insert(first, at(40), at(300));
        cache.insert(second, at(10), at(300));
        assert_eq!(cache.len(), 1);
        assert!(cache.signed_at(&first).is_none(), "superseded: checked again if it comes back");
        assert!(cache.signed_at(&second).is_some());

        // An older triple verified later (a replay) does not push out the node's latest.
        cache.insert(first, at(40), at(300));
        assert!(cache.signed_at(&second).is_some());
    }

    #[test]
    fn a_full_cache_drops_expired_then_the_older_half_not_everything() {
        let cache = VerifiedCache { capacity: 8, ..Default::default() };
        for i in 0..8 {
            // Two of them (i < 2) signed outside the window.
            let signed = if i < 2 { at(400) } else { at(300 - i * 10) };
            cache.insert(Triple::of(format!("k{i}").as_bytes(), "t", b"s"), signed, at(305));
        }
        cache.insert(Triple::of(b"new", "t", b"s"), at(0), at(305));
        assert_eq!(cache.len(), 7, "the two expired ones went");
        assert!(cache.signed_at(&Triple::of(b"k7", "t", b"s")).is_some());

        cache.insert(Triple::of(b"newer", "t", b"s"), at(0), at(305));
        cache.insert(Triple::of(b"newest", "t", b"s"), at(0), at(305));
        assert!(cache.len() <= 8 && cache.len() >= 4, "{} entries", cache.len());
        assert!(cache.signed_at(&Triple::of(b"newest", "t", b"s")).is_some());
        assert!(cache.signed_at(&Triple::of(b"k2", "t", b"s")).is_none(), "the oldest fresh one made room");
    }
}
