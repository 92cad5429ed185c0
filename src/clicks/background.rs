//! A low-priority runtime for the click pipeline's background work.
//!
//! Enriching clicks, aggregating them and writing statistics is work that can wait a
//! few milliseconds; a redirect cannot. On the service's own runtime that work ran on
//! threads with the same OS priority as the workers answering requests, so on one core
//! the kernel gave a 5 ms aggregation or a 100 ms store write its fair time slices
//! *between* redirects: p99 went from 3 ms to 12 ms in the long-tail benchmark.
//!
//! So the batcher, the aggregation and the stats writer run on a second tokio runtime
//! (one thread, plus its blocking pool) whose threads run at nice 19: the kernel's
//! scheduler lets a runnable request worker preempt them almost at once, and they use
//! whatever CPU the redirects leave. Under sustained overload that is less than they
//! need; then the in-memory aggregates fill, the batcher waits, and clicks overflow
//! from the bounded queue, counted: the redirect path is protected first, analytics
//! degrades and says so. (If lowering the priority is refused, the runtime still works
//! at normal priority and a warning says so.)

use std::io;

use thread_priority::{ThreadPriority, set_current_thread_priority};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// The background runtime. Dropping it stops its thread (after the tasks on it, which
/// the application has awaited by then).
pub struct Background {
    handle: Handle,
    /// Dropped (or sent) to let the runtime's thread return and shut the runtime down.
    stop: Option<oneshot::Sender<()>>,
}

impl Background {
    /// Starts the runtime on a thread named `clicks`.
    pub fn start() -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("clicks-blocking")
            // Also runs on every blocking-pool thread the runtime starts later (the
            // aggregation and the store's transactions run there).
            .on_thread_start(lower_priority)
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("clicks".into())
            .spawn(move || {
                lower_priority();
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(Self {
            handle,
            stop: Some(stop),
        })
    }

    /// Where to spawn background tasks.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Nice 19 for the calling thread (Linux: `setpriority` applies per thread).
fn lower_priority() {
    if let Err(error) = set_current_thread_priority(ThreadPriority::Min) {
        tracing::warn!(
            ?error,
            "cannot lower the priority of a click pipeline thread"
        );
    }
}
