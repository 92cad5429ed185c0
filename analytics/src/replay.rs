//! `analytics replay`: the statistics rebuilt from the click topic into fresh tables,
//! then switched in at once (after the bot list changes, or to check the live numbers).
//! The API serves the old numbers until the switch, and the live consumers may keep
//! running throughout.
//!
//! Rounds: the replay reads every partition from the start of the log up to the live
//! consumers' positions (the last offset each has applied), writing the fresh tables
//! with offsets exactly as the live consumers do; then it asks the store to switch
//! (`shortener_storage::rebuild`), which happens only if the fresh positions equal the
//! live ones under a lock that holds the live writers off. If the live consumers moved
//! on meanwhile, the next round reads on to their new positions. A replay stopped
//! half-way resumes from the fresh tables' positions.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

use shortener_config::Settings;
use shortener_core::StoreError;
use shortener_core::report::Report;
use shortener_storage::OpenError;
use shortener_storage::rebuild::{Rebuild, Switch};

use crate::consumer::{self, ConsumerError, source};
use crate::run::consumer_config;

/// Rounds tried before giving up on live consumers that outpace the replay.
const MAX_ROUNDS: u32 = 20;

/// Why a replay did not switch.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The store cannot be opened or cannot hold a rebuild.
    #[error("cannot open the statistics store for a rebuild")]
    Open(#[from] OpenError),
    /// The store failed.
    #[error("the statistics store failed")]
    Store(#[from] StoreError),
    /// The topic could not be read.
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
    /// The consumer thread could not be started or panicked.
    #[error("the replay thread failed")]
    Thread,
    /// Every round ended behind the live consumers.
    #[error(
        "the live consumers kept ahead of the replay for {0} rounds; the rebuilt tables are kept, run the replay again (it resumes) or stop the consumers for the last round"
    )]
    Outpaced(u32),
}

/// What a finished replay did.
#[derive(Debug, Clone)]
pub struct Replayed {
    /// Rounds it took.
    pub rounds: u32,
    /// The last offset replayed per partition (absent: nothing there to replay).
    pub positions: BTreeMap<i32, i64>,
}

/// Rebuilds the statistics from the topic and switches them in.
pub async fn replay(settings: &Settings) -> Result<Replayed, ReplayError> {
    let rebuild = Rebuild::open(&settings.store).await?;
    let result = rounds(settings, &rebuild).await;
    rebuild.close();
    result
}

async fn rounds(settings: &Settings, rebuild: &Rebuild) -> Result<Replayed, ReplayError> {
    let config = consumer_config(settings);
    let partitions = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || consumer::partitions(&config))
            .await
            .map_err(|_| ReplayError::Thread)??
    };
    let live = rebuild.live();
    for round in 1..=MAX_ROUNDS {
        let mut targets = BTreeMap::new();
        for &partition in &partitions {
            if let Some(applied) = live.applied(&source(&config.topic, partition)).await? {
                targets.insert(partition, applied as i64);
            }
        }
        tracing::info!(round, ?targets, "replaying to the live positions");
        let (config, fresh, runtime) = (
            config.clone(),
            rebuild.fresh(),
            tokio::runtime::Handle::current(),
        );
        let read = targets.clone();
        tokio::task::spawn_blocking(move || {
            consumer::replay(&config, fresh, runtime, &read, &AtomicBool::new(false))
        })
        .await
        .map_err(|_| ReplayError::Thread)??;
        match rebuild.switch(&format!("{}/", settings.kafka.topic)).await {
            Ok(Switch::Switched) => {
                tracing::info!(round, "rebuilt statistics switched in");
                return Ok(Replayed {
                    rounds: round,
                    positions: targets,
                });
            }
            Ok(Switch::Behind) => {
                tracing::info!(round, "the live consumers moved on; reading on");
            }
            Err(error) => {
                tracing::warn!(error = %Report(&error), "switching failed; another round");
            }
        }
    }
    Err(ReplayError::Outpaced(MAX_ROUNDS))
}
