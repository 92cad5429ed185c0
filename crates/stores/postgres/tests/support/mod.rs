//! Test support shared by this crate's test binaries.
pub mod cluster;
