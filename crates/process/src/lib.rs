//! What every binary of the project needs to start and stop, written once: the service
//! uses it now and the analytics consumer next.
//!
//! # Layout
//!
//! ```text
//! crates/process/src/
//! ├── shutdown.rs    SIGTERM/SIGINT, and Background: tasks stopped in order, panics reported
//! └── telemetry.rs   logging, with a filter that refuses to log nothing by mistake
//! ```

pub mod shutdown;
pub mod telemetry;
