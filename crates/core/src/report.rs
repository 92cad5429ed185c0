//! An error and all its causes on one line, for logs.
//!
//! Errors here follow the standard library's convention: an error's `Display` says what
//! failed at its own level, and the error it wraps is its `source()`, not part of its
//! message. That keeps each message free of repetition, but a log line that prints only
//! `Display` then drops the cause (`storage backend error: embedded store` without the
//! I/O error that made redb fail). Every place that logs an error prints it through
//! [`Report`].

use std::error::Error;
use std::fmt;

/// Displays an error followed by each of its sources: `outer: inner: root`.
pub struct Report<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn every_source_is_printed_once_in_order() {
        let error = Outer(std::io::Error::other("disk on fire"));
        assert_eq!(Report(&error).to_string(), "outer: disk on fire");
    }
}
