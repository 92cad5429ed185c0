//! Stopping: the signal that starts it, and the background tasks it stops in order.

use std::future::Future;

use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Resolves on SIGINT or SIGTERM.
///
/// - SIGINT: Ctrl-C in a terminal, during development.
/// - SIGTERM: what orchestrators (Docker, Kubernetes, systemd) send to ask for a graceful
///   stop before they escalate to SIGKILL. Handling it is what makes rolling deploys drop
///   no requests.
pub async fn signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received; shutting down"),
        () = terminate => tracing::info!("SIGTERM received; shutting down"),
    }
}

/// The background tasks of a running application, stopped one by one in the order they
/// were spawned, each with its own cancellation token.
///
/// One token per task rather than one for all, because the order matters: the click
/// batcher must flush after the last request, and the admin listener must outlive the
/// drain so it can be watched. A task that panicked is reported (logged, and returned by
/// [`Background::stop_in_order`]), not dropped with a `let _ =` on its join handle.
#[derive(Default)]
pub struct Background {
    tasks: Vec<Task>,
}

struct Task {
    name: &'static str,
    stop: CancellationToken,
    handle: JoinHandle<()>,
}

/// A background task panicked (its name).
#[derive(Debug, thiserror::Error)]
#[error("the {0} task panicked")]
pub struct TaskPanicked(pub &'static str);

impl Background {
    /// No tasks yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns `run`, handing it the future that resolves when this task is asked to
    /// stop. Tasks are stopped in the order they were spawned.
    pub fn spawn<F, Fut>(&mut self, name: &'static str, run: F)
    where
        F: FnOnce(WaitForCancellationFutureOwned) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let stop = CancellationToken::new();
        let handle = tokio::spawn(run(stop.clone().cancelled_owned()));
        self.tasks.push(Task { name, stop, handle });
    }

    /// Asks each task in turn to stop and waits for it to finish; every task is stopped
    /// even if one panicked. Returns the first panic.
    pub async fn stop_in_order(self) -> Result<(), TaskPanicked> {
        let mut first_panic = None;
        for Task { name, stop, handle } in self.tasks {
            stop.cancel();
            match handle.await {
                Ok(()) => tracing::debug!(task = name, "stopped"),
                Err(error) => {
                    tracing::error!(task = name, %error, "background task failed");
                    first_panic.get_or_insert(TaskPanicked(name));
                }
            }
        }
        first_panic.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn tasks_stop_in_the_order_they_were_spawned() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut background = Background::new();
        for name in ["first", "second", "third"] {
            let order = order.clone();
            background.spawn(name, move |stop| async move {
                stop.await;
                order.lock().expect("lock").push(name);
            });
        }
        background.stop_in_order().await.expect("no panic");
        assert_eq!(*order.lock().expect("lock"), ["first", "second", "third"]);
    }

    #[tokio::test]
    async fn a_panicked_task_is_reported_and_the_others_still_stop() {
        let stopped = Arc::new(Mutex::new(false));
        let mut background = Background::new();
        background.spawn("broken", |_stop| async { panic!("boom") });
        let flag = stopped.clone();
        background.spawn("healthy", move |stop| async move {
            stop.await;
            *flag.lock().expect("lock") = true;
        });
        let result = background.stop_in_order().await;
        assert_eq!(result.expect_err("a panic").0, "broken");
        assert!(
            *stopped.lock().expect("lock"),
            "the healthy task stopped too"
        );
    }
}
