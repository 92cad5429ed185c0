//! API tests: each starts the real server on 127.0.0.1:0 and speaks HTTP to it.
//! Set `TEST_LOG=1` to see the server's logs.

mod accepted;
mod access;
mod cache;
mod clicks;
mod connections;
mod create;
mod errors;
mod helpers;
#[cfg(feature = "redis")]
mod l2;
mod openapi;
mod ops;
mod redirect;
