//! Signatures already verified: a SuperLink checks each (key, timestamp, signature) triple
//! once while its timestamp is inside the window.
//!
//! The check is ECDSA P-384 (about half a millisecond of CPU), and a node sends a request
//! every few milliseconds during a round. Accepting a triple seen before is exactly what
//! the window already allows anyone who captured it (Flower has no nonce, see the module
//! docs), so remembering the outcome changes no security property: a cached triple is
//! accepted only while its timestamp is still inside the window, and only for the key it
//! was verified with (the allow-list is fixed for the SuperLink's life).

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

/// At most this many triples are remembered (about 100 bytes each); past it, expired ones
/// are dropped, and if that is not enough, all of them (they are only a cache).
const CAPACITY: usize = 65_536;

/// Triples that verified, by a digest of the triple, with the time they were signed.
#[derive(Debug, Default)]
pub struct VerifiedCache {
    entries: Mutex<HashMap<[u8; 32], DateTime<Utc>>>,
}

/// The digest a triple is remembered by.
pub(crate) fn digest(key: &[u8], timestamp: &str, signature: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [key, timestamp.as_bytes(), signature] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.finalize().into()
}

impl VerifiedCache {
    /// When the triple with `digest` was signed, if it verified before.
    pub(crate) fn signed_at(&self, digest: &[u8; 32]) -> Option<DateTime<Utc>> {
        self.lock().get(digest).copied()
    }

    /// Remembers a triple that verified; `fresh_after` is the oldest signing time still
    /// inside the window (what is older is dropped when room is needed).
    pub(crate) fn insert(&self, digest: [u8; 32], signed_at: DateTime<Utc>, fresh_after: DateTime<Utc>) {
        let mut entries = self.lock();
        if entries.len() >= CAPACITY {
            entries.retain(|_, at| *at > fresh_after);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(digest, signed_at);
    }

    /// How many triples are remembered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], DateTime<Utc>>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}
