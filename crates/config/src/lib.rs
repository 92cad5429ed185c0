//! Configuration: one typed tree, loaded in layers and validated before anything starts.
//!
//! `config/default.toml` is compiled in and lists every key with its unit and trade-off,
//! so the binary always has a complete configuration. A file passed with `--config` and
//! then `APP__SECTION__KEY` environment variables override it. Deserialization refuses
//! unknown keys and [`Settings::validate`] refuses nonsensical values, so a bad config
//! stops the process at start with a message naming the key.

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use shortener_core::CodeGenerator;
pub use shortener_core::secret::Secret;
pub use shortener_kafka::{Compression, KafkaSettings};
pub use shortener_storage::{PostgresSettings, StoreBackend, StoreSettings};

/// The defaults, compiled in.
pub const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

/// Why configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A layer could not be read or a key has the wrong type or is unknown.
    #[error(transparent)]
    Load(#[from] config::ConfigError),
    /// An `APP__…` environment variable names no setting.
    #[error("environment variable {var} names no setting (APP__SECTION__KEY sets `section.key`)")]
    UnknownInEnvironment {
        /// The variable.
        var: String,
        /// What the loader said (boxed: it is large, and errors are passed by value).
        source: Box<config::ConfigError>,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid configuration: {key}: {reason}")]
    Invalid {
        /// The offending key, dotted (`http.max_body_bytes`).
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// The whole configuration tree. Field docs live in `config/default.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Settings {
    pub http: HttpSettings,
    pub admin: AdminSettings,
    pub links: LinkSettings,
    pub cache: CacheSettings,
    pub store: StoreSettings,
    pub clicks: ClickSettings,
    pub stats: StatsSettings,
    pub redis: RedisSettings,
    pub kafka: KafkaSettings,
    pub analytics: AnalyticsSettings,
    pub telemetry: TelemetrySettings,
    pub auth: AuthSettings,
    pub limits: LimitSettings,
    pub targets: TargetSettings,
}

/// `[auth]`: who may use the management API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct AuthSettings {
    pub mode: AuthMode,
    pub bootstrap_key_file: String,
    pub open_on_any_address: bool,
    pub pepper: Secret,
    pub key_cache_ttl_ms: NonZeroU64,
}

/// `auth.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// `Authorization: Bearer <key>` on the management API.
    Keys,
    /// No keys: every API request acts as an administrator (loopback development only).
    Open,
}

/// `[limits]`: rate limits (GCRA) on the API and on redirect misses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct LimitSettings {
    pub enabled: bool,
    pub api_per_client: Rate,
    pub api_per_key: Rate,
    pub redirect_miss_per_client: Rate,
    pub cached_redirect_per_client: Rate,
    pub table_slots: NonZeroUsize,
}

/// A GCRA rate: a sustained `per_s` with bursts of up to `burst` requests. `per_s = 0`
/// turns that limit off.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Rate {
    pub per_s: u32,
    pub burst: u32,
}

/// `[targets]`: where new links may point.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct TargetSettings {
    pub allow_private: bool,
    pub allow_hosts: Vec<String>,
    pub idn_allow: Vec<String>,
    pub blocklist_file: String,
    pub blocklist_reload_ms: u64,
}

/// Where the service sends click events (`clicks.sink`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClickSink {
    /// Aggregated inside the service and written to its store (the default).
    InProcess,
    /// Produced to Kafka (`[kafka]`); the analytics consumer aggregates them.
    Kafka,
}

/// `[analytics]`: the analytics consumer (`analytics run`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct AnalyticsSettings {
    pub group: String,
    pub session_timeout_ms: NonZeroU64,
    pub flush_interval_ms: NonZeroU64,
    pub listen: SocketAddr,
}

/// `[redis]`: the shared second-level cache (off when `url` is empty).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RedisSettings {
    pub url: Secret,
    pub pool_size: NonZeroUsize,
    pub command_timeout_ms: NonZeroU64,
    pub write_timeout_ms: NonZeroU64,
    pub connect_timeout_ms: u64,
    pub max_command_buffer: NonZeroUsize,
    pub ttl_s: NonZeroU64,
    pub negative_ttl_s: NonZeroU64,
    pub key_prefix: String,
    pub invalidation_channel: String,
    pub breaker_failures: NonZeroU32,
    pub breaker_open_ms: NonZeroU64,
    pub probe_interval_ms: NonZeroU64,
}

impl RedisSettings {
    /// Whether a Redis URL is configured.
    pub fn enabled(&self) -> bool {
        !self.url.expose().is_empty()
    }

    /// `command_timeout_ms` as a duration.
    pub fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms.get())
    }

    /// `write_timeout_ms` as a duration.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms.get())
    }

    /// `probe_interval_ms` as a duration.
    pub fn probe_interval(&self) -> Duration {
        Duration::from_millis(self.probe_interval_ms.get())
    }
}

/// `[clicks]`: the click pipeline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ClickSettings {
    pub enabled: bool,
    pub sink: ClickSink,
    pub queue_capacity: NonZeroUsize,
    pub batch_max: NonZeroUsize,
    pub flush_interval_ms: NonZeroU64,
    pub visitor_secret: Secret,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub country_header: String,
}

/// `[stats]`: in-memory aggregation between the click batcher and the stats store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct StatsSettings {
    pub flush_interval_ms: NonZeroU64,
    pub max_pending_cells: NonZeroUsize,
    pub agent_memo_entries: NonZeroUsize,
    pub referrer_memo_entries: NonZeroUsize,
}

impl StatsSettings {
    /// `flush_interval_ms` as a duration.
    pub fn flush_interval(&self) -> Duration {
        Duration::from_millis(self.flush_interval_ms.get())
    }
}

/// `[http]`: the public listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    pub public_base_url: String,
    pub request_timeout_ms: NonZeroU64,
    pub header_read_timeout_ms: NonZeroU64,
    pub http2_idle_timeout_ms: NonZeroU64,
    pub http2_keep_alive_interval_ms: NonZeroU64,
    pub http2_keep_alive_timeout_ms: NonZeroU64,
    pub body_read_timeout_ms: NonZeroU64,
    pub write_timeout_ms: NonZeroU64,
    pub max_connections: usize,
    pub listen_backlog: NonZeroU32,
    pub max_headers: NonZeroUsize,
    pub max_header_bytes: usize,
    pub max_body_bytes: NonZeroUsize,
    pub redirect_concurrency_limit: NonZeroUsize,
    pub api_concurrency_limit: NonZeroUsize,
    pub api_concurrency_per_connection: NonZeroUsize,
    pub shutdown_grace_ms: u64,
}

/// `[admin]`: the metrics listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct AdminSettings {
    pub listen: SocketAddr,
}

/// `[links]`: code generation and redirect behaviour.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct LinkSettings {
    pub code_length: usize,
    pub code_alphabet: String,
    pub max_create_attempts: NonZeroU32,
    pub forward_query: bool,
    pub permanent_redirect_max_age_s: u64,
}

/// `[cache]`: the in-process link cache.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct CacheSettings {
    pub max_capacity_bytes: NonZeroU64,
    pub ttl_s: NonZeroU64,
    pub negative_ttl_s: u64,
}

/// `[telemetry]`: logging.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct TelemetrySettings {
    pub log_filter: String,
}

impl Settings {
    /// Defaults, then `file` (if any), then `APP__*` environment variables; validated.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, config::Environment::with_prefix("APP"))
            .map_err(|error| from_environment(error, std::env::vars()))
    }

    /// The compiled-in defaults alone (no file, no environment): for tests and benches.
    pub fn from_defaults() -> Result<Self, ConfigError> {
        let empty = std::collections::HashMap::new();
        Self::load_from(
            None,
            config::Environment::with_prefix("APP").source(Some(empty)),
        )
    }

    /// Like [`Settings::load`] with an explicit environment source (tests inject one).
    pub fn load_from(file: Option<&Path>, env: config::Environment) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_TOML,
            config::FileFormat::Toml,
        ));
        if let Some(path) = file {
            // Always TOML, whatever the file is called (the crate would guess the format
            // from the extension and refuse `shortener.conf`).
            let file = config::File::new(&path.to_string_lossy(), config::FileFormat::Toml);
            builder = builder.add_source(file.required(true));
        }
        let env = env
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .list_separator(",")
            .with_list_parse_key("clicks.trusted_proxies")
            .with_list_parse_key("store.scylla.nodes")
            .with_list_parse_key("targets.allow_hosts")
            .with_list_parse_key("targets.idn_allow");
        let settings: Self = builder.add_source(env).build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Range and consistency checks that types alone cannot express (every "must be
    /// > 0" is a `NonZero*` field, refused by deserialization with its key named).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                reason: reason.into(),
            })
        };
        let h = &self.http;
        if h.max_header_bytes < 8192 {
            return invalid(
                "http.max_header_bytes",
                "must be >= 8192 (hyper's minimum buffer)",
            );
        }
        if !h.public_base_url.is_empty() {
            let base = url::Url::parse(&h.public_base_url).map_err(|e| ConfigError::Invalid {
                key: "http.public_base_url",
                reason: e.to_string(),
            })?;
            if !matches!(base.scheme(), "http" | "https") || base.query().is_some() {
                return invalid(
                    "http.public_base_url",
                    "must be an http(s) URL without a query",
                );
            }
        }
        self.code_generator()?;
        let c = &self.clicks;
        if !c.country_header.is_empty()
            && http::HeaderName::try_from(c.country_header.as_str()).is_err()
        {
            return invalid("clicks.country_header", "must be a valid header name");
        }
        if let Err((key, reason)) = self.store.validate() {
            return invalid(key, reason);
        }
        let r = &self.redis;
        if r.enabled() {
            let url = url::Url::parse(r.url.expose()).map_err(|e| ConfigError::Invalid {
                key: "redis.url",
                reason: e.to_string(),
            })?;
            if !matches!(url.scheme(), "redis" | "rediss") {
                return invalid("redis.url", "must be a redis:// URL");
            }
        }
        if r.invalidation_channel.is_empty() {
            return invalid("redis.invalidation_channel", "must not be empty");
        }
        if c.enabled && c.sink == ClickSink::Kafka && self.store.backend == StoreBackend::Embedded {
            return invalid(
                "clicks.sink",
                "\"kafka\" needs a shared store (store.backend = \"postgres\" or \"scylla\"): the analytics consumer writes the statistics, and the embedded file belongs to this process; use \"in_process\" with the embedded store",
            );
        }
        if self.auth.mode == AuthMode::Open
            && !self.http.listen.ip().is_loopback()
            && !self.auth.open_on_any_address
        {
            return invalid(
                "auth.mode",
                "\"open\" (no API keys) is refused on a non-loopback listener: use \"keys\", or set auth.open_on_any_address = true for a network you trust",
            );
        }
        for (key, rate) in [
            ("limits.api_per_client", self.limits.api_per_client),
            ("limits.api_per_key", self.limits.api_per_key),
            (
                "limits.redirect_miss_per_client",
                self.limits.redirect_miss_per_client,
            ),
            (
                "limits.cached_redirect_per_client",
                self.limits.cached_redirect_per_client,
            ),
        ] {
            if rate.per_s > 0 && rate.burst == 0 {
                return invalid(key, "burst must be at least 1 when per_s is set");
            }
        }
        for host in self
            .targets
            .allow_hosts
            .iter()
            .chain(&self.targets.idn_allow)
        {
            if url::Host::parse(host).is_err() || host.to_ascii_lowercase() != *host {
                return invalid(
                    "targets",
                    "allow_hosts and idn_allow take lower-case host names or addresses as URLs store them (punycode for international names)",
                );
            }
        }
        let k = &self.kafka;
        if k.brokers.trim().is_empty() || k.topic.is_empty() || k.dead_letter_topic.is_empty() {
            return invalid(
                "kafka",
                "brokers, topic and dead_letter_topic must not be empty",
            );
        }
        if k.topic == k.dead_letter_topic {
            return invalid("kafka.dead_letter_topic", "must differ from kafka.topic");
        }
        if self.analytics.group.is_empty() {
            return invalid("analytics.group", "must not be empty");
        }
        Ok(())
    }

    /// The code generator described by `[links]`.
    pub fn code_generator(&self) -> Result<CodeGenerator, ConfigError> {
        CodeGenerator::new(&self.links.code_alphabet, self.links.code_length).map_err(|e| {
            ConfigError::Invalid {
                key: "links.code_alphabet/code_length",
                reason: e.to_string(),
            }
        })
    }
}

impl HttpSettings {
    /// `request_timeout_ms` as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms.get())
    }

    /// `header_read_timeout_ms` as a duration.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms.get())
    }

    /// `http2_idle_timeout_ms` as a duration.
    pub fn http2_idle_timeout(&self) -> Duration {
        Duration::from_millis(self.http2_idle_timeout_ms.get())
    }

    /// `http2_keep_alive_interval_ms` as a duration.
    pub fn http2_keep_alive_interval(&self) -> Duration {
        Duration::from_millis(self.http2_keep_alive_interval_ms.get())
    }

    /// `http2_keep_alive_timeout_ms` as a duration.
    pub fn http2_keep_alive_timeout(&self) -> Duration {
        Duration::from_millis(self.http2_keep_alive_timeout_ms.get())
    }

    /// `body_read_timeout_ms` as a duration.
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms.get())
    }

    /// `write_timeout_ms` as a duration.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms.get())
    }

    /// `shutdown_grace_ms` as a duration.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

/// `error`, pointed at the environment variable that caused it when it is an unknown
/// key that one of `vars` (`APP__SECTION__KEY`) set: the loader names only the key.
fn from_environment(
    error: ConfigError,
    mut vars: impl Iterator<Item = (String, String)>,
) -> ConfigError {
    let ConfigError::Load(source) = error else {
        return error;
    };
    let message = source.to_string();
    let Some(field) = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
    else {
        return ConfigError::Load(source);
    };
    let var = vars.find_map(|(var, _)| {
        let key = var.strip_prefix("APP__")?;
        key.rsplit("__")
            .next()
            .is_some_and(|last| last.eq_ignore_ascii_case(field))
            .then_some(var)
    });
    match var {
        Some(var) => ConfigError::UnknownInEnvironment {
            var,
            source: Box::new(source),
        },
        None => ConfigError::Load(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// config/default.toml is the documentation of every key (its unit, default and
    /// trade-off), and the typed tree is the only reader: `deny_unknown_fields` plus
    /// fields without serde defaults make the file and the structs hold the same keys
    /// (`from_defaults` fails otherwise). This keeps the other half: every key has a
    /// comment, directly above it or above the run of keys it belongs to.
    #[test]
    fn open_mode_is_refused_on_a_public_listener_unless_explicitly_allowed() {
        let error = Settings::load_from(
            None,
            env(&[
                ("APP__AUTH__MODE", "open"),
                ("APP__HTTP__LISTEN", "0.0.0.0:8080"),
            ]),
        )
        .unwrap_err();
        assert!(error.to_string().contains("auth.mode"), "{error}");
        for vars in [
            &[
                ("APP__AUTH__MODE", "open"),
                ("APP__HTTP__LISTEN", "127.0.0.1:8080"),
            ][..],
            &[
                ("APP__AUTH__MODE", "open"),
                ("APP__HTTP__LISTEN", "0.0.0.0:8080"),
                ("APP__AUTH__OPEN_ON_ANY_ADDRESS", "true"),
            ],
            &[
                ("APP__AUTH__MODE", "keys"),
                ("APP__HTTP__LISTEN", "0.0.0.0:8080"),
            ],
        ] {
            Settings::load_from(None, env(vars)).expect("allowed");
        }
        let hosts = Settings::load_from(
            None,
            env(&[("APP__TARGETS__ALLOW_HOSTS", "wiki.corp.internal,10.1.2.3")]),
        )
        .expect("a list");
        assert_eq!(
            hosts.targets.allow_hosts,
            ["wiki.corp.internal", "10.1.2.3"]
        );
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let mut settings = Settings::from_defaults().expect("defaults");
        settings.redis.url = "redis://:hunter2@cache:6379".into();
        settings.store.postgres.url = "postgres://app:hunter2@db/app".into();
        settings.clicks.visitor_secret = "hunter2".into();
        let printed = format!("{settings:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("[redacted]"));
    }

    #[test]
    fn every_key_in_default_toml_is_commented() {
        let lines: Vec<&str> = DEFAULT_TOML.lines().map(str::trim).collect();
        let is_key = |line: &str| !line.is_empty() && !line.starts_with(['#', '[']);
        for (i, line) in lines.iter().enumerate() {
            if !is_key(line) {
                continue;
            }
            let above = lines[..i].iter().rev().find(|l| !is_key(l));
            assert!(
                above.is_some_and(|l| l.starts_with('#')),
                "config/default.toml: `{line}` has no comment above it"
            );
        }
        Settings::from_defaults().expect("the file and the structs hold the same keys");
    }

    #[test]
    fn an_unknown_store_backend_is_answered_with_the_valid_ones() {
        let error = Settings::load_from(None, env(&[("APP__STORE__BACKEND", "mysql")]))
            .expect_err("no such backend");
        let message = error.to_string();
        assert!(
            message.contains("unknown store backend `mysql`"),
            "{message}"
        );
        assert!(
            message.contains("`embedded`, `postgres` or `scylla`"),
            "{message}"
        );
    }

    #[test]
    fn clicks_through_kafka_need_a_shared_store() {
        let error = Settings::load_from(None, env(&[("APP__CLICKS__SINK", "kafka")]))
            .expect_err("kafka with the embedded store");
        let message = error.to_string();
        assert!(message.contains("clicks.sink"), "{message}");
        assert!(
            message.contains("store.backend = \"postgres\""),
            "{message}"
        );
        let settings = Settings::load_from(
            None,
            env(&[
                ("APP__CLICKS__SINK", "kafka"),
                ("APP__STORE__BACKEND", "postgres"),
                ("APP__STORE__POSTGRES__URL", "postgres://localhost/x"),
            ]),
        )
        .expect("kafka with postgres");
        assert_eq!(settings.clicks.sink, ClickSink::Kafka);
        let error = Settings::load_from(None, env(&[("APP__CLICKS__SINK", "rabbitmq")]))
            .expect_err("no such sink");
        assert!(error.to_string().contains("sink"), "{error}");
    }

    #[test]
    fn the_dead_letter_topic_is_not_the_click_topic() {
        let error = Settings::load_from(None, env(&[("APP__KAFKA__DEAD_LETTER_TOPIC", "clicks")]))
            .expect_err("same topic");
        assert!(
            error.to_string().contains("kafka.dead_letter_topic"),
            "{error}"
        );
    }

    #[test]
    fn an_unknown_key_set_by_the_environment_names_the_variable() {
        let vars = [("APP__HTTP__LISTN", "1")];
        let error = Settings::load_from(None, env(&vars)).expect_err("no such key");
        let vars = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        let error = from_environment(error, vars);
        assert!(
            error
                .to_string()
                .contains("APP__HTTP__LISTN names no setting"),
            "{error}"
        );
    }

    #[test]
    fn a_config_file_is_toml_whatever_its_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("shortener.conf");
        std::fs::write(&path, "[http]\nlisten = \"127.0.0.1:9999\"\n").expect("write");
        let settings = Settings::load_from(Some(&path), env(&[])).expect("a TOML file");
        assert_eq!(settings.http.listen.port(), 9999);
    }

    fn env(vars: &[(&str, &str)]) -> config::Environment {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        config::Environment::with_prefix("APP").source(Some(map))
    }

    #[test]
    fn the_compiled_in_defaults_are_complete_and_valid() {
        let settings = Settings::load_from(None, env(&[])).expect("defaults load");
        assert_eq!(settings.http.listen.port(), 8080);
        assert_eq!(settings.store.backend, StoreBackend::Embedded);
        assert_eq!(settings.links.code_length, 7);
        assert!(settings.clicks.enabled);
        assert!(settings.clicks.trusted_proxies.is_empty());
    }

    #[test]
    fn trusted_proxies_parse_from_a_comma_separated_variable() {
        let settings = Settings::load_from(
            None,
            env(&[("APP__CLICKS__TRUSTED_PROXIES", "10.0.0.0/8,192.168.1.0/24")]),
        )
        .expect("loads");
        assert_eq!(settings.clicks.trusted_proxies.len(), 2);
        let bad = Settings::load_from(
            None,
            env(&[("APP__CLICKS__TRUSTED_PROXIES", "10.0.0.0/33")]),
        );
        assert!(bad.is_err());
    }

    #[test]
    fn environment_variables_override_nested_keys() {
        let settings = Settings::load_from(
            None,
            env(&[
                ("APP__HTTP__LISTEN", "0.0.0.0:1234"),
                ("APP__LINKS__FORWARD_QUERY", "true"),
            ]),
        )
        .expect("loads");
        assert_eq!(settings.http.listen.to_string(), "0.0.0.0:1234");
        assert!(settings.links.forward_query);
    }

    #[test]
    fn a_config_file_overrides_defaults_and_env_overrides_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("custom.toml");
        std::fs::write(&path, "[cache]\nttl_s = 42\nnegative_ttl_s = 1\n").expect("write");
        let settings =
            Settings::load_from(Some(&path), env(&[("APP__CACHE__TTL_S", "7")])).expect("loads");
        assert_eq!(settings.cache.ttl_s.get(), 7);
        assert_eq!(settings.cache.negative_ttl_s, 1);
    }

    #[test]
    fn unknown_keys_and_bad_values_fail_with_the_key_named() {
        let typo = Settings::load_from(None, env(&[("APP__HTTP__LISTN", "x")])).unwrap_err();
        assert!(typo.to_string().contains("listn"), "{typo}");

        let bad_addr =
            Settings::load_from(None, env(&[("APP__HTTP__LISTEN", "nope")])).unwrap_err();
        assert!(bad_addr.to_string().contains("listen"), "{bad_addr}");

        let zero =
            Settings::load_from(None, env(&[("APP__HTTP__MAX_BODY_BYTES", "0")])).unwrap_err();
        assert!(zero.to_string().contains("http.max_body_bytes"), "{zero}");

        let alphabet =
            Settings::load_from(None, env(&[("APP__LINKS__CODE_ALPHABET", "abc")])).unwrap_err();
        assert!(alphabet.to_string().contains("code_alphabet"), "{alphabet}");

        let base = Settings::load_from(None, env(&[("APP__HTTP__PUBLIC_BASE_URL", "ftp://x")]))
            .unwrap_err();
        assert!(base.to_string().contains("public_base_url"), "{base}");

        for (var, key) in [
            ("APP__STATS__FLUSH_INTERVAL_MS", "stats.flush_interval_ms"),
            ("APP__STATS__MAX_PENDING_CELLS", "stats.max_pending_cells"),
            ("APP__STATS__AGENT_MEMO_ENTRIES", "stats.agent_memo_entries"),
            (
                "APP__STATS__REFERRER_MEMO_ENTRIES",
                "stats.referrer_memo_entries",
            ),
            ("APP__STORE__PAGE_CACHE_BYTES", "store.page_cache_bytes"),
            ("APP__STORE__MAX_GROUP", "store.max_group"),
            (
                "APP__STORE__POSTGRES__POOL_SIZE",
                "store.postgres.pool_size",
            ),
            (
                "APP__STORE__POSTGRES__STATEMENT_TIMEOUT_MS",
                "store.postgres.statement_timeout_ms",
            ),
        ] {
            let zero = Settings::load_from(None, env(&[(var, "0")])).unwrap_err();
            assert!(zero.to_string().contains(key), "{zero}");
        }
    }

    #[test]
    fn a_missing_config_file_is_an_error() {
        let err = Settings::load_from(Some(Path::new("/nonexistent/app.toml")), env(&[]));
        assert!(err.is_err());
    }
}
