//! The HTTP transport: the only module that knows about hyper.
//!
//! - [`server`]: the accept loop, connection settings and the connection cap.
//! - [`connection`]: one connection's deadlines and its part in the graceful drain.
//! - [`write_deadline`]: the socket under hyper, cut when a write makes no progress.
//! - [`parse_errors`]: JSON bodies for the 400 and 431 hyper answers on its own.
//! - [`adapter`]: the tower stack as a hyper service, called as soon as a request is parsed.
//! - [`middleware`]: the tower stack (metrics, request id, tracing, load shedding, deadline, body limit).
//! - [`app`]: the innermost service, dispatching by [`router::Route`] to the handlers in
//!   `redirect` (the hot path) and `api` (JSON).
//! - [`admin`]: the separate listener that serves `/metrics`.

pub mod adapter;
pub mod admin;
mod api;
pub mod app;
pub mod connection;
pub mod error;
mod keys_api;
pub mod middleware;
pub mod parse_errors;
mod redirect;
pub mod router;
pub mod server;
pub mod write_deadline;
