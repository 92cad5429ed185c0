//! A short link: the code, where it points, how it redirects, and when it stops.

use time::OffsetDateTime;

use crate::{ShortCode, TargetUrl};

/// Which 3xx status a link answers with. Chosen per link at creation.
///
/// 302 is the default because it keeps every click visible to us (browsers do not cache
/// it); 301/308 let browsers cache the hop, which is faster for users and cheaper for us
/// but hides repeat clicks and makes a later delete or edit invisible to those browsers.
/// 307/308 additionally preserve the request method and body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedirectKind {
    /// 301 Moved Permanently.
    MovedPermanently,
    /// 302 Found (default).
    #[default]
    Found,
    /// 307 Temporary Redirect.
    TemporaryRedirect,
    /// 308 Permanent Redirect.
    PermanentRedirect,
}

impl RedirectKind {
    /// The kind for an HTTP status code, if it is one of the four we allow.
    pub fn from_status(status: u16) -> Option<Self> {
        match status {
            301 => Some(Self::MovedPermanently),
            302 => Some(Self::Found),
            307 => Some(Self::TemporaryRedirect),
            308 => Some(Self::PermanentRedirect),
            _ => None,
        }
    }

    /// The HTTP status code.
    pub fn status(self) -> u16 {
        match self {
            Self::MovedPermanently => 301,
            Self::Found => 302,
            Self::TemporaryRedirect => 307,
            Self::PermanentRedirect => 308,
        }
    }

    /// Whether browsers may cache it (301/308): such answers get a `Cache-Control` bound.
    pub fn is_permanent(self) -> bool {
        matches!(self, Self::MovedPermanently | Self::PermanentRedirect)
    }
}

/// A stored short link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The path segment that names it.
    pub code: ShortCode,
    /// Where it redirects.
    pub target: TargetUrl,
    /// When it was created (UTC, millisecond precision once stored).
    pub created_at: OffsetDateTime,
    /// After this instant the link answers 410 Gone.
    pub expires_at: Option<OffsetDateTime>,
    /// The redirect status it answers with.
    pub redirect: RedirectKind,
    /// After this many clicks (GET redirects) the link answers 410 Gone.
    pub max_clicks: Option<u64>,
    /// Whose link it is: the owner of the key that created it (`None`: made without
    /// keys, in `auth.mode = "open"`; only admin keys see those).
    pub owner: Option<crate::Owner>,
}

impl Link {
    /// Whether the link has expired at `now`.
    pub fn is_expired_at(&self, now: OffsetDateTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_four_redirect_statuses_are_kinds() {
        for status in [301, 302, 307, 308] {
            let kind = RedirectKind::from_status(status).expect("allowed");
            assert_eq!(kind.status(), status);
        }
        for status in [200, 300, 303, 304, 305, 306, 309, 404] {
            assert_eq!(RedirectKind::from_status(status), None);
        }
        assert!(RedirectKind::MovedPermanently.is_permanent());
        assert!(RedirectKind::PermanentRedirect.is_permanent());
        assert!(!RedirectKind::default().is_permanent());
    }

    #[test]
    fn a_link_expires_at_its_instant() {
        let now = OffsetDateTime::now_utc();
        let mut link = Link {
            code: ShortCode::parse("abc").expect("valid"),
            target: TargetUrl::parse("https://example.com").expect("valid"),
            created_at: now,
            expires_at: None,
            redirect: RedirectKind::Found,
            max_clicks: None,
            owner: None,
        };
        assert!(!link.is_expired_at(now));
        link.expires_at = Some(now);
        assert!(link.is_expired_at(now));
        assert!(!link.is_expired_at(now - time::Duration::seconds(1)));
    }
}
