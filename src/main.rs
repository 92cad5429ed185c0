//! The `shortener` binary: parse the command line, load config, start, map errors to an
//! exit code. Everything else lives in the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use shortener::config::Settings;
use shortener::startup::{self, Application};
use shortener::{shutdown, telemetry};

/// The allocator, the binary's choice and not the library's: jemalloc, whose background
/// threads give freed pages back to the system (glibc kept the memory of a connection
/// flood; docs/benchmarks.md, "Memory after a connection flood").
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// mimalloc, for comparison (`--no-default-features --features mimalloc`).
#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(version, about = "A high-performance URL shortener")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve redirects and the API (defaults need no servers: an embedded store in ./data).
    Serve {
        /// A TOML file overriding config/default.toml (APP__SECTION__KEY env vars override both).
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Bring the configured store's schema up to date (PostgreSQL; the embedded store
    /// migrates itself when opened), then exit.
    Migrate {
        /// A TOML file overriding config/default.toml (APP__SECTION__KEY env vars override both).
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => {
            let settings = Settings::load(config.as_deref()).context("loading configuration")?;
            telemetry::init(&settings.telemetry.log_filter)?;
            let app = Application::build(settings)
                .await
                .context("starting the service")?;
            app.run_until_stopped(shutdown::signal())
                .await
                .context("running the service")?;
        }
        Command::Migrate { config } => {
            let settings = Settings::load(config.as_deref()).context("loading configuration")?;
            telemetry::init(&settings.telemetry.log_filter)?;
            let outcome = startup::migrate(&settings)
                .await
                .context("migrating the store")?;
            tracing::info!("{outcome}");
        }
    }
    Ok(())
}
