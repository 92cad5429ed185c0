//! The `analytics` binary: parse the command line, load the shared configuration, run.
//! Everything else lives in the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use shortener_config::Settings;
use shortener_kafka::topics::{self, Created};
use shortener_process::{shutdown, telemetry};

#[derive(Parser)]
#[command(
    version,
    about = "The shortener's analytics consumer: clicks from Kafka into statistics"
)]
struct Cli {
    /// A TOML file overriding config/default.toml (APP__SECTION__KEY env vars override
    /// both); the service's and the consumer's configuration are one tree.
    #[arg(long, value_name = "PATH", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Join the consumer group and aggregate clicks into the statistics store, exactly once.
    Run,
    /// Rebuild the statistics from the click topic into fresh tables, then switch them in
    /// (the old ones are kept as *_before_rebuild). Live consumers may keep running.
    Replay,
    /// Kafka topics.
    Topics {
        #[command(subcommand)]
        command: TopicsCommand,
    },
}

#[derive(Subcommand)]
enum TopicsCommand {
    /// Create the click topic and the dead-letter topic (safe to run twice).
    Create,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(cli.config.as_deref()).context("loading configuration")?;
    telemetry::init(&settings.telemetry.log_filter)?;
    match cli.command {
        Command::Run => shortener_analytics::run::run(settings, shutdown::signal())
            .await
            .context("running the consumer")?,
        Command::Replay => {
            let replayed = shortener_analytics::replay::replay(&settings)
                .await
                .context("replaying the click topic")?;
            tracing::info!(
                rounds = replayed.rounds,
                positions = ?replayed.positions,
                "statistics rebuilt from the topic and switched in"
            );
        }
        Command::Topics {
            command: TopicsCommand::Create,
        } => {
            for (topic, created) in topics::create(&settings.kafka)
                .await
                .context("creating topics")?
            {
                match created {
                    Created::New => tracing::info!(topic, "created"),
                    Created::Existed => tracing::info!(topic, "exists; left as it is"),
                }
            }
        }
    }
    Ok(())
}
