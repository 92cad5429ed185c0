//! Target URLs: where a short link sends the browser.
//!
//! A shortener is an open redirector by design, so what it agrees to redirect to is a
//! security boundary. [`TargetUrl::parse`] is the only constructor and it admits exactly:
//! absolute `http`/`https` URLs with a host, no credentials (`https://good.com@evil.com`
//! phishing), no control characters or whitespace anywhere in the input (the classic
//! `java\tscript:` and CRLF header-injection tricks), at most [`MAX_URL_LEN`] bytes before
//! and after normalisation. The stored form is the WHATWG serialisation produced by the
//! `url` crate, which is pure visible ASCII (IDN hosts become punycode, other non-ASCII is
//! percent-encoded), so it is always a valid HTTP `Location` header value.

use std::fmt;
use std::sync::Arc;

use url::Url;

/// Longest accepted URL, in bytes, both as submitted and once normalised. 2048 is the
/// de-facto interoperable limit (older browsers, CDNs, sitemaps).
pub const MAX_URL_LEN: usize = 2048;

/// Why a target URL was refused. The messages are shown to API clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetUrlError {
    /// Empty input.
    #[error("url must not be empty")]
    Empty,
    /// Longer than [`MAX_URL_LEN`].
    #[error("url must be at most {MAX_URL_LEN} bytes")]
    TooLong,
    /// Control characters or whitespace anywhere in the input.
    #[error("url must not contain whitespace or control characters (percent-encode them)")]
    ForbiddenCharacter,
    /// Not an absolute URL the `url` crate accepts.
    #[error("url is not a valid absolute URL: {0}")]
    Malformed(String),
    /// A scheme other than http/https (`javascript:`, `data:`, `file:`, ...).
    #[error("url scheme must be http or https")]
    Scheme,
    /// No host, or an empty one.
    #[error("url must have a host")]
    MissingHost,
    /// `user:pass@` before the host.
    #[error("url must not contain credentials (user:password@)")]
    Credentials,
    /// An invisible character (zero-width, bidi control, variation selector, tag...):
    /// the parser would drop some of them silently, so what is stored would not be what
    /// the user saw, and a host could hide one to look like another.
    #[error("url must not contain invisible characters (U+{0:04X})")]
    Invisible(u32),
}

/// A validated, normalised redirect target. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TargetUrl(Arc<str>);

impl TargetUrl {
    /// Parses and normalises a user-submitted URL.
    pub fn parse(input: &str) -> Result<Self, TargetUrlError> {
        if input.is_empty() {
            return Err(TargetUrlError::Empty);
        }
        if input.len() > MAX_URL_LEN {
            return Err(TargetUrlError::TooLong);
        }
        // Checked on the raw input because the WHATWG parser silently *removes* tabs and
        // newlines and trims leading C0/space: `java\nscript:` would otherwise parse as
        // `javascript:`. We refuse rather than guess what the user meant.
        if input.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(TargetUrlError::ForbiddenCharacter);
        }
        // IDNA maps a zero-width space in a host to nothing: `goo\u{200b}gle.com` would be
        // stored as `google.com`. Refused, never stripped.
        if let Some(c) = input.chars().find(|&c| is_invisible(c)) {
            return Err(TargetUrlError::Invisible(u32::from(c)));
        }
        let url = Url::parse(input).map_err(|e| TargetUrlError::Malformed(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(TargetUrlError::Scheme);
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(TargetUrlError::MissingHost);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(TargetUrlError::Credentials);
        }
        let serialized = String::from(url);
        if serialized.len() > MAX_URL_LEN {
            return Err(TargetUrlError::TooLong);
        }
        // The `url` crate guarantees this; we check because the HTTP layer builds the
        // `Location` header from it and must never be handed something it cannot send.
        if !serialized.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TargetUrlError::ForbiddenCharacter);
        }
        Ok(Self(Arc::from(serialized)))
    }

    /// The normalised URL; always visible ASCII, so a valid `Location` value.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the URL already has a query string (decides `?` vs `&` when forwarding).
    pub fn has_query(&self) -> bool {
        self.0.contains('?')
    }
}

/// Unicode's default-ignorable code points (rendered as nothing) and the Hangul fillers
/// (rendered as blank): the characters a reader cannot see.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

impl fmt::Display for TargetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TargetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TargetUrl({:?})", &*self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each of these must be refused. Grouped by the trick they try.
    const HOSTILE: &[&str] = &[
        // javascript: in any case, with whitespace, control or encoding tricks
        "javascript:alert(1)",
        "JAVASCRIPT:alert(1)",
        "JaVaScRiPt:alert(document.cookie)",
        " javascript:alert(1)",
        "\tjavascript:alert(1)",
        "java\tscript:alert(1)",
        "java\nscript:alert(1)",
        "java\rscript:alert(1)",
        "javascript\t:alert(1)",
        "\u{0}javascript:alert(1)",
        "\u{1}javascript:alert(1)",
        "\u{feff}javascript:alert(1)",
        "\u{a0}javascript:alert(1)",
        "javascript://%0aalert(1)",
        "javascript:/*https://example.com*/alert(1)",
        "%6Aavascript:alert(1)",
        "&#106;avascript:alert(1)",
        "javascript&colon;alert(1)",
        "jav&#x09;ascript:alert(1)",
        // other dangerous or useless schemes
        "data:text/html,<script>alert(1)</script>",
        "DATA:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "file:///etc/passwd",
        "FILE://C:/Windows/win.ini",
        "vbscript:msgbox(1)",
        "VBScript:msgbox(1)",
        "ftp://example.com/file",
        "mailto:someone@example.com",
        "tel:+15555550100",
        "about:blank",
        "chrome://settings",
        "blob:https://example.com/0b9b1f5e",
        "ws://example.com/socket",
        // credentials (phishing: the eye reads the part before @)
        "http://a.com@evil.com",
        "https://paypal.com@evil.example/login",
        "https://user:pass@example.com",
        "https://:pass@example.com",
        "https://user@example.com",
        // control characters, whitespace, header injection
        "https://example.com/\r\nSet-Cookie:%20a=b",
        "https://example.com/a\u{7f}",
        "https://example.com/a\u{85}b",
        "https://example.com/a b",
        "https://exa mple.com/",
        "https://example.com/\u{2028}",
        "https://example.com/\u{0}",
        // missing host or not absolute
        "",
        "http://",
        "https://",
        "http:",
        "https:?x=1",
        "example.com",
        "//example.com/path",
        "/relative/path",
        // malformed hosts and ports
        "https://[::1",
        "https://exa<mple.com/",
        "http://256.256.256.256/",
        "https://example.com:99999/",
        "https://%00.com/",
    ];

    #[test]
    fn at_least_fifty_hostile_urls_are_rejected() {
        assert!(HOSTILE.len() >= 50, "only {} cases", HOSTILE.len());
        for input in HOSTILE {
            assert!(
                TargetUrl::parse(input).is_err(),
                "accepted hostile url {input:?}"
            );
        }
    }

    #[test]
    fn invisible_characters_are_refused_never_stripped() {
        for input in [
            "https://goo\u{200b}gle.com/",
            "https://google.com\u{200d}/",
            "https://exa\u{ad}mple.com/",
            "https://example.com/\u{2060}path",
            "https://example.com/?q=\u{202e}fdp.exe",
            "https://example\u{fe0f}.com/",
            "https://\u{feff}example.com/",
            "https://example.com/\u{e0041}",
            "https://\u{3164}.com/",
        ] {
            assert!(
                matches!(TargetUrl::parse(input), Err(TargetUrlError::Invisible(_))),
                "{input:?}: {:?}",
                TargetUrl::parse(input)
            );
        }
    }

    #[test]
    fn over_length_urls_are_rejected_before_and_after_normalisation() {
        let raw = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(TargetUrl::parse(&raw), Err(TargetUrlError::TooLong));
        // Fits as typed, but each 'é' becomes 6 bytes once percent-encoded.
        let grows = format!("https://example.com/{}", "é".repeat(900));
        assert!(grows.len() <= MAX_URL_LEN);
        assert_eq!(TargetUrl::parse(&grows), Err(TargetUrlError::TooLong));
    }

    #[test]
    fn rejections_say_why() {
        assert_eq!(
            TargetUrl::parse("javascript:alert(1)"),
            Err(TargetUrlError::Scheme)
        );
        assert_eq!(
            TargetUrl::parse("https://u:p@a.com"),
            Err(TargetUrlError::Credentials)
        );
        assert_eq!(
            TargetUrl::parse("java\tscript:x"),
            Err(TargetUrlError::ForbiddenCharacter)
        );
        assert!(matches!(
            TargetUrl::parse("/x"),
            Err(TargetUrlError::Malformed(_))
        ));
    }

    #[test]
    fn ordinary_urls_are_accepted_and_normalised() {
        let cases = [
            ("https://example.com", "https://example.com/"),
            ("HTTPS://EXAMPLE.COM/Path", "https://example.com/Path"),
            (
                "http://example.com:8080/a?b=c",
                "http://example.com:8080/a?b=c",
            ),
            ("https://example.com:443/", "https://example.com/"),
            ("http://127.0.0.1:3000/x", "http://127.0.0.1:3000/x"),
            (
                "https://[2001:db8::1]:8443/x",
                "https://[2001:db8::1]:8443/x",
            ),
            (
                "https://example.com/a%20b#frag",
                "https://example.com/a%20b#frag",
            ),
            (
                "https://münchen.de/straße",
                "https://xn--mnchen-3ya.de/stra%C3%9Fe",
            ),
            (
                "https://例子.测试/路径",
                "https://xn--fsqu00a.xn--0zwm56d/%E8%B7%AF%E5%BE%84",
            ),
            (
                "https://example.com/search?q=a+b&lang=en",
                "https://example.com/search?q=a+b&lang=en",
            ),
        ];
        for (input, normalised) in cases {
            let url = TargetUrl::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(url.as_str(), normalised);
        }
    }

    #[test]
    fn long_queries_up_to_the_limit_are_accepted() {
        let base = "https://example.com/search?q=";
        let url = format!("{base}{}", "x".repeat(MAX_URL_LEN - base.len()));
        assert_eq!(url.len(), MAX_URL_LEN);
        let parsed = TargetUrl::parse(&url).expect("exactly at the limit");
        assert!(parsed.has_query());
    }

    #[test]
    fn every_accepted_url_is_visible_ascii() {
        for input in ["https://ü.example/ü?ü=ü#ü", "https://example.com/<>\"{}|^`"] {
            let url = TargetUrl::parse(input).expect("valid");
            assert!(url.as_str().bytes().all(|b| b.is_ascii_graphic()), "{url}");
        }
    }
}
