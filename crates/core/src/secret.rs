//! A value that must not reach a log: a URL that may carry a password, a hashing secret.
//! Shared because every binary's configuration holds some.

use serde::Deserialize;

/// A configuration value that must not reach a log: a URL that may carry a password, the
/// visitor-hashing secret. `Debug` (and so `?settings` in a log line or a panic message)
/// prints `[redacted]`; the value is read only through [`Secret::expose`], which makes
/// every use greppable. The secrecy crate does the same and also zeroes the memory on
/// drop; these values live for the whole process, so that part buys nothing here.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "[empty]"
        } else {
            "[redacted]"
        })
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}
