//! What every binary of the project needs to start and stop, written once: the service
//! and the analytics consumer both use it.
//!
//! # Layout
//!
//! ```text
//! crates/process/src/
//! ├── admin.rs       the admin listener's accept loop; each binary brings its routes
//! ├── shutdown.rs    SIGTERM/SIGINT, and Background: tasks stopped in order, panics reported
//! └── telemetry.rs   logging, with a filter that refuses to log nothing by mistake
//! ```

pub mod admin;
pub mod shutdown;
pub mod telemetry;
