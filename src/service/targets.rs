//! The target policy as the service holds it: built from `[targets]`, with its blocklist
//! file read at start and reloaded when the file changes, without a restart.
//!
//! The rules themselves are `shortener_core::policy`; this module is only the I/O around
//! them. A create reads the current policy (an `Arc` clone under a read lock held for
//! nanoseconds); a reload builds a new one aside and swaps it in.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use shortener_config::TargetSettings;
use shortener_core::policy::{Blocklist, TargetPolicy};
use tokio_util::sync::WaitForCancellationFutureOwned;

/// Why the blocklist file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BlocklistError {
    /// The file could not be read.
    #[error("reading the blocklist {path}: {source}")]
    Read {
        /// `targets.blocklist_file`.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is not a domain.
    #[error("the blocklist {path}: {reason}")]
    Parse {
        /// `targets.blocklist_file`.
        path: PathBuf,
        /// Which line, and why.
        reason: String,
    },
}

/// The current policy, swappable.
pub struct Targets {
    current: RwLock<Arc<TargetPolicy>>,
    file: Option<PathBuf>,
}

impl Targets {
    /// The policy of `[targets]`, with the blocklist file read now: a missing or bad
    /// file at start is an error, not a silently empty list.
    pub fn load(settings: &TargetSettings) -> Result<Self, BlocklistError> {
        let file =
            (!settings.blocklist_file.is_empty()).then(|| PathBuf::from(&settings.blocklist_file));
        let blocklist = match &file {
            Some(path) => read(path)?,
            None => Blocklist::default(),
        };
        Ok(Self {
            current: RwLock::new(Arc::new(policy(settings, blocklist))),
            file,
        })
    }

    /// The policy of `[targets]` without its blocklist file (no I/O): what a service
    /// built outside `startup` (benches, unit tests) holds.
    pub fn without_file(settings: &TargetSettings) -> Self {
        Self {
            current: RwLock::new(Arc::new(policy(settings, Blocklist::default()))),
            file: None,
        }
    }

    /// The policy in force now.
    pub fn current(&self) -> Arc<TargetPolicy> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Re-reads the blocklist file; on an error the old list stays and the error is
    /// returned (and logged by the caller).
    pub fn reload(&self) -> Result<usize, BlocklistError> {
        let Some(path) = &self.file else {
            return Ok(0);
        };
        let blocklist = read(path)?;
        let domains = blocklist.len();
        let policy = TargetPolicy {
            blocklist,
            ..(*self.current()).clone()
        };
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(policy);
        Ok(domains)
    }

    /// Watches the blocklist file's modification time every `interval` and reloads it
    /// when it changes, until `stop`.
    pub async fn watch(self: Arc<Self>, interval: Duration, stop: WaitForCancellationFutureOwned) {
        let Some(path) = self.file.clone() else {
            return;
        };
        let mut seen = modified(&path);
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                _ = tick.tick() => {}
            }
            let now = modified(&path);
            if now == seen {
                continue;
            }
            seen = now;
            match self.reload() {
                Ok(domains) => {
                    tracing::info!(path = %path.display(), domains, "blocklist reloaded")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "blocklist not reloaded; the previous list stays")
                }
            }
        }
    }
}

fn policy(settings: &TargetSettings, blocklist: Blocklist) -> TargetPolicy {
    TargetPolicy {
        allow_private: settings.allow_private,
        allow_hosts: settings.allow_hosts.clone(),
        idn_allow: settings.idn_allow.clone(),
        blocklist,
    }
}

fn read(path: &Path) -> Result<Blocklist, BlocklistError> {
    let text = std::fs::read_to_string(path).map_err(|source| BlocklistError::Read {
        path: path.to_owned(),
        source,
    })?;
    Blocklist::parse(&text).map_err(|reason| BlocklistError::Parse {
        path: path.to_owned(),
        reason,
    })
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
