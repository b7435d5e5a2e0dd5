//! [`RecentArrays`]: the array data a sender encoded lately, so that the same model sent to
//! many nodes is cut into chunks and hashed once, not once per message.

use std::collections::VecDeque;

use bytes::Bytes;

use super::encode::{chunk_data, chunk_matches, KnownChunks};

/// How many arrays are remembered; the oldest is forgotten first.
const REMEMBERED: usize = 16;

/// Arrays smaller than this are cut and hashed again: that is cheap, and keeps the memory
/// for the arrays where it pays.
const MIN_BYTES: usize = 1 << 20;

/// A stand-in for an array's content: its length and 64 bytes sampled across it. An equal
/// sample only names a candidate; its chunks are compared in full before they are reused.
#[derive(Debug, PartialEq, Eq)]
struct Sample {
    len: usize,
    bytes: [u8; 64],
}

impl Sample {
    fn of(data: &[u8]) -> Sample {
        let last = data.len().saturating_sub(1);
        let bytes = std::array::from_fn(|i| data.get(i * last / 63).copied().unwrap_or(0));
        Sample { len: data.len(), bytes }
    }
}

/// The arrays one sender (a ServerApp's run) encoded lately, each by its sample with the
/// ids of its chunks. Holds ids only: reusing the chunks needs them still stored.
#[derive(Debug, Default)]
pub struct RecentArrays {
    arrays: VecDeque<(Sample, Vec<String>)>,
}

impl RecentArrays {
    /// Known chunks for an encoder ([`message_to_objects_with`]), found by `lookup` (the
    /// bytes of a stored object, by id).
    ///
    /// [`message_to_objects_with`]: super::message_to_objects_with
    pub fn known<'a, F>(&'a mut self, lookup: F) -> impl KnownChunks + 'a
    where
        F: Fn(&str) -> Option<Bytes> + 'a,
    {
        Known { recent: self, lookup }
    }
}

struct Known<'a, F> {
    recent: &'a mut RecentArrays,
    lookup: F,
}

impl<F: Fn(&str) -> Option<Bytes>> KnownChunks for Known<'_, F> {
    fn chunks_of(&mut self, data: &Bytes) -> Option<Vec<(String, Bytes)>> {
        if data.len() < MIN_BYTES {
            return None;
        }
        let sample = Sample::of(data);
        let (_, ids) = self.recent.arrays.iter().find(|(s, _)| *s == sample)?;
        let chunks: Vec<(String, Bytes)> =
            ids.iter().map(|id| Some((id.clone(), (self.lookup)(id)?))).collect::<Option<_>>()?;
        let same = chunks
            .iter()
            .enumerate()
            .all(|(i, (_, object))| chunk_data(data, i).is_some_and(|slice| chunk_matches(object, &slice)));
        (same && chunk_data(data, chunks.len()).is_none()).then_some(chunks)
    }

    fn learn(&mut self, data: &Bytes, ids: &[String]) {
        if data.len() < MIN_BYTES {
            return;
        }
        let sample = Sample::of(data);
        self.recent.arrays.retain(|(s, _)| *s != sample);
        if self.recent.arrays.len() >= REMEMBERED {
            self.recent.arrays.pop_front();
        }
        self.recent.arrays.push_back((sample, ids.to_vec()));
    }
}
