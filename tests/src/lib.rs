//! End-to-end and interop tests
