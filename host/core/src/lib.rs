//! Flower messages, records and the content-addressed object store
