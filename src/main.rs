//! The `shortener` binary: parse the command line, load config, start, map errors to an
//! exit code. Everything else lives in the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use shortener::config::Settings;
use shortener::service::keys::Keys;
use shortener::startup::{self, Application};
use shortener::{shutdown, telemetry};
use shortener_core::{Owner, Scopes};
use std::io::Write;

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
    /// Manage API keys in the configured store (the embedded store only while the
    /// service is stopped; a running service has the key API, /api/v1/keys).
    Keys {
        /// A TOML file overriding config/default.toml (APP__SECTION__KEY env vars override both).
        #[arg(long, value_name = "PATH", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Bring the configured store's schema up to date (PostgreSQL; the embedded store
    /// migrates itself when opened), then exit.
    Migrate {
        /// A TOML file overriding config/default.toml (APP__SECTION__KEY env vars override both).
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Make a key and print its token (shown this once; the store keeps only a hash).
    Create {
        /// Who the key and the links it creates belong to.
        #[arg(long)]
        owner: String,
        /// Comma-separated: links:write, links:read, stats:read, admin.
        #[arg(long, default_value = "links:write,links:read,stats:read")]
        scopes: String,
    },
    /// List keys (id, owner, scopes, created, revoked), never their secrets.
    List,
    /// Revoke a key by its id.
    Revoke {
        /// The key's id (the 12 characters after `sk_`).
        id: String,
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
        Command::Keys { config, action } => {
            let settings = Settings::load(config.as_deref()).context("loading configuration")?;
            telemetry::init(&settings.telemetry.log_filter)?;
            let keys = startup::keys(&settings)
                .await
                .context("opening the store")?;
            keys_command(&keys, action).await?;
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

/// `shortener keys ...`: what it prints goes to stdout, one line per key.
async fn keys_command(keys: &Keys, action: KeysAction) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match action {
        KeysAction::Create { owner, scopes } => {
            let owner = Owner::parse(&owner)?;
            let scopes = Scopes::parse(&scopes)?;
            let issued = keys
                .create(owner, scopes)
                .await
                .context("storing the key")?;
            writeln!(out, "{}", issued.token)?;
            eprintln!(
                "key {} for {} ({}); the token above is shown once",
                issued.record.id,
                issued.record.owner,
                issued.record.scopes.names().join(",")
            );
        }
        KeysAction::List => {
            for key in keys.list().await.context("listing keys")? {
                let revoked = key
                    .revoked_at
                    .map_or_else(|| "-".to_owned(), |at| at.to_string());
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}",
                    key.id,
                    key.owner,
                    key.scopes.names().join(","),
                    key.created_at,
                    revoked
                )?;
            }
        }
        KeysAction::Revoke { id } => {
            if !keys.revoke(&id).await.context("revoking the key")? {
                anyhow::bail!("no key with id {id}");
            }
            eprintln!("key {id} revoked");
        }
    }
    Ok(())
}
