//! `testkit up <server>`: one of the test kit's servers, for a script or a person, started
//! by the same recipe the tests use.
//!
//! Prints one line, what a client connects to (a URL for PostgreSQL and Redis, `host:port`
//! for Kafka and Cassandra), then keeps the server until interrupted (Ctrl-C, or SIGTERM
//! from a script's cleanup) and stops it, deleting its directory. PostgreSQL gets an empty
//! database named `shortener`. A missing server is an error that names the package to
//! install.
//!
//! ```text
//! cargo run -q -p shortener-testkit -- up postgres     # postgres://postgres@127.0.0.1:<port>/shortener
//! cargo run -q -p shortener-testkit -- up redis        # redis://127.0.0.1:<port>
//! cargo run -q -p shortener-testkit -- up kafka        # 127.0.0.1:<port> (bootstrap.servers)
//! cargo run -q -p shortener-testkit -- up cassandra    # 127.0.0.1:<port> (CQL)
//! ```

#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line tool

use std::io::Write;
use std::process::ExitCode;

use shortener_testkit::cassandra::Cassandra;
use shortener_testkit::kafka::Kafka;
use shortener_testkit::postgres::PgCluster;
use shortener_testkit::redis::RedisServer;

const USAGE: &str = "usage: testkit up <postgres|redis|kafka|cassandra>";

/// A started server, kept (and stopped when dropped) until the process is told to stop.
type Running = Box<dyn std::any::Any>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let server = match args.as_slice() {
        [verb, server] if verb == "up" => server.as_str(),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("testkit: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        // Handlers first: a script may send SIGTERM the moment the address is printed,
        // and before a handler exists that signal's default action kills this process
        // without stopping the server.
        let stop = stopped();
        let (running, address) = match up(server).await {
            Ok(up) => up,
            Err(why) => {
                eprintln!("testkit up {server}: {why}");
                return ExitCode::FAILURE;
            }
        };
        println!("{address}");
        let _ = std::io::stdout().flush();
        stop.await;
        drop(running);
        ExitCode::SUCCESS
    })
}

/// Starts `server`; returns it and its address.
async fn up(server: &str) -> Result<(Running, String), String> {
    Ok(match server {
        "postgres" => {
            let cluster = PgCluster::launch()?;
            let url = cluster.create_database("shortener").await;
            (Box::new(cluster) as Running, url)
        }
        "redis" => {
            let redis = RedisServer::launch()?;
            let url = redis.url();
            (Box::new(redis) as Running, url)
        }
        "kafka" => {
            let kafka = Kafka::launch()?;
            let bootstrap = kafka.bootstrap();
            (Box::new(kafka) as Running, bootstrap)
        }
        "cassandra" => {
            let node = Cassandra::launch()?;
            let address = node.node();
            (Box::new(node) as Running, address)
        }
        other => return Err(format!("no such server {other:?}; {USAGE}")),
    })
}

/// Installs the SIGINT and SIGTERM handlers now; the future resolves at the first of
/// them (a signal that arrived before it is awaited is not lost).
fn stopped() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    );
    async move {
        let (Ok(mut interrupt), Ok(mut terminate)) = handlers else {
            // Without handlers the default action (exit) still applies; the supervised
            // servers stop when this process is gone.
            std::future::pending::<()>().await;
            return;
        };
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    }
}
