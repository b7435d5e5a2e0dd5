//! Flower App Bundles: read, verify, write, unpack
