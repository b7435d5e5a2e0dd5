//! Flower's records: the typed payload of a [`Message`].
//!
//! A [`RecordDict`] maps names to records; a record is an [`ArrayRecord`] (tensors), a
//! [`MetricRecord`] (numbers) or a [`ConfigRecord`] (configuration values). Like Python's
//! dicts, all of them keep insertion order, and replacing a key keeps its position: object
//! ids depend on that order.

mod array;
mod convert;
mod message;
mod value;

pub use array::Array;
pub use message::{Error, Message, Metadata};
pub use value::{ConfigValue, MetricValue};

/// An insertion-ordered map from string keys to values (Python `dict` semantics).
#[derive(Debug, Clone, PartialEq)]
pub struct OrderedMap<V> {
    items: Vec<(String, V)>,
}

/// Named arrays (Flower's `ArrayRecord`).
pub type ArrayRecord = OrderedMap<Array>;
/// Named numbers and number lists (Flower's `MetricRecord`).
pub type MetricRecord = OrderedMap<MetricValue>;
/// Named configuration values (Flower's `ConfigRecord`).
pub type ConfigRecord = OrderedMap<ConfigValue>;
/// Named records (Flower's `RecordDict`), the content of a message.
pub type RecordDict = OrderedMap<Record>;

impl<V> Default for OrderedMap<V> {
    fn default() -> Self {
        Self { items: Vec::new() }
    }
}

impl<V> OrderedMap<V> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts or replaces `key`; a replaced key keeps its position. Returns the old value.
    pub fn insert(&mut self, key: impl Into<String>, value: V) -> Option<V> {
        let key = key.into();
        match self.items.iter_mut().find(|(k, _)| *k == key) {
            Some((_, slot)) => Some(std::mem::replace(slot, value)),
            None => {
                self.items.push((key, value));
                None
            }
        }
    }

    /// Builder form of [`OrderedMap::insert`].
    pub fn with(mut self, key: impl Into<String>, value: V) -> Self {
        self.insert(key, value);
        self
    }

    /// The value for `key`.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.items.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The value for `key`, mutably.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.items.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Removes `key`, keeping the order of the others.
    pub fn remove(&mut self, key: &str) -> Option<V> {
        let index = self.items.iter().position(|(k, _)| k == key)?;
        Some(self.items.remove(index).1)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Entries in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.items.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Keys in insertion order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.items.iter().map(|(k, _)| k.as_str())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl<K: Into<String>, V> FromIterator<(K, V)> for OrderedMap<V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = Self::new();
        iter.into_iter().for_each(|(k, v)| {
            map.insert(k, v);
        });
        map
    }
}

impl<V> IntoIterator for OrderedMap<V> {
    type Item = (String, V);
    type IntoIter = std::vec::IntoIter<(String, V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

/// One record of a [`RecordDict`].
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// An [`ArrayRecord`].
    Array(ArrayRecord),
    /// A [`MetricRecord`].
    Metric(MetricRecord),
    /// A [`ConfigRecord`].
    Config(ConfigRecord),
}

impl From<ArrayRecord> for Record {
    fn from(r: ArrayRecord) -> Self {
        Record::Array(r)
    }
}

impl From<MetricRecord> for Record {
    fn from(r: MetricRecord) -> Self {
        Record::Metric(r)
    }
}

impl From<ConfigRecord> for Record {
    fn from(r: ConfigRecord) -> Self {
        Record::Config(r)
    }
}

impl RecordDict {
    /// The [`ArrayRecord`] named `key`, if that record is one.
    pub fn array_record(&self, key: &str) -> Option<&ArrayRecord> {
        match self.get(key)? {
            Record::Array(r) => Some(r),
            _ => None,
        }
    }

    /// The [`MetricRecord`] named `key`, if that record is one.
    pub fn metric_record(&self, key: &str) -> Option<&MetricRecord> {
        match self.get(key)? {
            Record::Metric(r) => Some(r),
            _ => None,
        }
    }

    /// The [`ConfigRecord`] named `key`, if that record is one.
    pub fn config_record(&self, key: &str) -> Option<&ConfigRecord> {
        match self.get(key)? {
            Record::Config(r) => Some(r),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
