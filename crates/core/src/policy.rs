//! The target policy: which hosts a new link may send browsers to.
//!
//! [`TargetUrl::parse`] decides what is a well-formed, safe-to-send URL; this decides
//! where a shortener facing the internet agrees to point. The two are apart on purpose:
//! the URL rules are fixed and re-checked on every stored row, while the policy is
//! configuration (a deployment may allow its own intranet) applied when a link is made.
//!
//! Refused unless allowed by config:
//! - **Addresses that are not public**, in any spelling the WHATWG parser accepts
//!   (`0x7f000001`, `2130706433`, `0177.0.0.1`, `127.1` all arrive here as `127.0.0.1`)
//!   and inside IPv6 (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible, NAT64, 6to4):
//!   loopback, private, link-local (where the cloud metadata services live:
//!   169.254.169.254), unspecified, shared CGNAT space (Alibaba's metadata at
//!   100.100.100.200), unique-local IPv6 (AWS's fd00:ec2::254), multicast, reserved.
//! - **Names that are not public**: `localhost` and `*.localhost`, `*.local` (mDNS),
//!   `*.internal` (`metadata.google.internal`), `*.home.arpa`, and any name without a dot
//!   (`http://intranet/`, `http://metadata/`).
//! - **Blocked domains**: a [`Blocklist`] (a domain blocks its subdomains too).
//! - **IDN homographs** (Unicode TS #39, by the `unicode-security` crate): a label whose
//!   characters mix scripts beyond what TS #39 calls *highly restrictive* (`аpple` with
//!   a Cyrillic `а`), or a label in another script that looks entirely like Latin
//!   (Cyrillic `асе` for `ace`: its confusable skeleton is plain ASCII). A whole-script
//!   domain (`пример.рф`, `例子.测试`) and any path are fine.
//!
//! What it cannot see: a public name whose DNS answers with a private address (DNS can
//! change after the link is made, and it is the browser that resolves it, not us).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use unicode_security::{RestrictionLevel, RestrictionLevelDetection, skeleton};
use url::{Host, Url};

use crate::TargetUrl;

/// Why a target is refused. The messages are shown to API clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The host is an IP address that is not public.
    #[error("url points to a {kind} address ({addr}), which is not allowed")]
    Address {
        /// The address as the parser read it.
        addr: IpAddr,
        /// Which kind of non-public address.
        kind: &'static str,
    },
    /// The host is a name that only resolves inside some network.
    #[error("url host `{0}` is not a public domain name")]
    LocalName(String),
    /// The host, or a domain above it, is on the blocklist.
    #[error("url host is in the blocked domain `{0}`")]
    Blocked(String),
    /// A label that can pass for another (IDN homograph).
    #[error("url host label `{0}` mixes scripts or imitates Latin letters (IDN homograph)")]
    Homograph(String),
}

/// Domains refused with their subdomains: one per line, `#` starts a comment.
#[derive(Debug, Clone, Default)]
pub struct Blocklist(HashSet<Box<str>>);

impl Blocklist {
    /// Reads a blocklist file's text. International names may be written in Unicode or
    /// punycode; a line that is not a domain name is an error naming its line number.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut domains = HashSet::new();
        for (number, line) in text.lines().enumerate() {
            let entry = line.split('#').next().unwrap_or_default().trim();
            if entry.is_empty() {
                continue;
            }
            let domain = ascii_domain(entry)
                .ok_or_else(|| format!("line {}: `{entry}` is not a domain name", number + 1))?;
            domains.insert(domain.into_boxed_str());
        }
        Ok(Self(domains))
    }

    /// How many domains it holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entry that blocks `host` (the host itself or a domain above it).
    fn blocking(&self, host: &str) -> Option<&str> {
        suffixes(host).find_map(|suffix| self.0.get(suffix).map(|d| &**d))
    }
}

/// The policy, built once from config (and again when the blocklist file changes).
#[derive(Debug, Clone, Default)]
pub struct TargetPolicy {
    /// Addresses and names that are not public are allowed (an intranet shortener).
    pub allow_private: bool,
    /// Hosts (and their subdomains) exempt from every host rule.
    pub allow_hosts: Vec<String>,
    /// Hosts (and their subdomains) exempt from the homograph rule only.
    pub idn_allow: Vec<String>,
    /// Domains refused with their subdomains.
    pub blocklist: Blocklist,
}

impl TargetPolicy {
    /// Whether a new link may point at `target`.
    pub fn check(&self, target: &TargetUrl) -> Result<(), PolicyError> {
        // Every TargetUrl is a URL the parser accepted; parsing it again costs a create
        // a microsecond, and keeps the stored form a plain string.
        let Ok(url) = Url::parse(target.as_str()) else {
            return Ok(());
        };
        match url.host() {
            Some(Host::Ipv4(addr)) => self.address(IpAddr::V4(addr)),
            Some(Host::Ipv6(addr)) => self.address(IpAddr::V6(addr)),
            Some(Host::Domain(name)) => self.domain(name.strip_suffix('.').unwrap_or(name)),
            None => Ok(()),
        }
    }

    fn address(&self, addr: IpAddr) -> Result<(), PolicyError> {
        if self.allow_private || listed(&self.allow_hosts, &addr.to_string()) {
            return Ok(());
        }
        match non_public(addr) {
            Some(kind) => Err(PolicyError::Address { addr, kind }),
            None => Ok(()),
        }
    }

    fn domain(&self, host: &str) -> Result<(), PolicyError> {
        if listed(&self.allow_hosts, host) {
            return Ok(());
        }
        if let Some(domain) = self.blocklist.blocking(host) {
            return Err(PolicyError::Blocked(domain.to_owned()));
        }
        if !self.allow_private && is_local_name(host) {
            return Err(PolicyError::LocalName(host.to_owned()));
        }
        if !listed(&self.idn_allow, host) {
            for label in host.split('.') {
                if let Some(unicode) = label.strip_prefix("xn--").and_then(decode_punycode)
                    && is_homograph(&unicode)
                {
                    return Err(PolicyError::Homograph(unicode));
                }
            }
        }
        Ok(())
    }
}

/// Which kind of non-public address `addr` is, if it is one.
pub fn non_public(addr: IpAddr) -> Option<&'static str> {
    match addr {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(addr: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = addr.octets();
    Some(match () {
        () if addr.is_loopback() => "loopback",
        () if addr.is_private() => "private",
        () if addr.is_link_local() => "link-local (cloud metadata)",
        () if a == 0 => "unspecified",
        () if a == 100 && (b & 0xc0) == 64 => "shared (CGNAT)",
        () if a == 192 && b == 0 && c == 0 => "reserved",
        () if addr.is_multicast() => "multicast",
        () if a >= 240 => "reserved",
        () => return None,
    })
}

fn non_public_v6(addr: Ipv6Addr) -> Option<&'static str> {
    let segments = addr.segments();
    let embedded = |high: u16, low: u16| {
        let [a, b] = high.to_be_bytes();
        let [c, d] = low.to_be_bytes();
        non_public_v4(Ipv4Addr::new(a, b, c, d))
    };
    match segments {
        _ if addr.is_unspecified() => Some("unspecified"),
        _ if addr.is_loopback() => Some("loopback"),
        // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated): an IPv4
        // address dressed as IPv6, judged as the IPv4 address it is.
        [0, 0, 0, 0, 0, 0xffff | 0, high, low] => embedded(high, low),
        // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an IPv4 address too.
        [0x64, 0xff9b, 0, 0, 0, 0, high, low] => embedded(high, low),
        [0x2002, high, low, ..] => embedded(high, low),
        [first, ..] if first & 0xfe00 == 0xfc00 => Some("unique-local"),
        [first, ..] if first & 0xffc0 == 0xfe80 => Some("link-local"),
        [first, ..] if first & 0xff00 == 0xff00 => Some("multicast"),
        _ => None,
    }
}

/// Names that only resolve inside a network (RFC 6761, 6762, 8375, and ICANN's 2024
/// reservation of `.internal`), and any name without a dot.
fn is_local_name(host: &str) -> bool {
    const LOCAL: [&str; 4] = ["localhost", "local", "internal", "home.arpa"];
    !host.contains('.') || suffixes(host).any(|suffix| LOCAL.contains(&suffix))
}

/// Whether a decoded label could pass for another: mixed scripts beyond *highly
/// restrictive*, or non-ASCII letters whose confusable skeleton is plain ASCII.
fn is_homograph(label: &str) -> bool {
    label.detect_restriction_level() > RestrictionLevel::HighlyRestrictive
        || (!label.is_ascii() && skeleton(label).all(|c| c.is_ascii()))
}

fn decode_punycode(encoded: &str) -> Option<String> {
    idna::punycode::decode_to_string(encoded)
}

/// `host` and every domain above it: `a.b.c`, `b.c`, `c`.
fn suffixes(host: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(host), |rest| rest.split_once('.').map(|(_, up)| up))
}

fn listed(list: &[String], host: &str) -> bool {
    suffixes(host).any(|suffix| list.iter().any(|entry| entry == suffix))
}

/// A domain name as the URL parser stores it (lower case, punycode), or `None`.
pub fn ascii_domain(name: &str) -> Option<String> {
    match Host::parse(name.trim_end_matches('.')) {
        Ok(Host::Domain(domain)) => Some(domain),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(policy: &TargetPolicy, url: &str) -> Result<(), PolicyError> {
        let target = TargetUrl::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        policy.check(&target)
    }

    /// Every spelling of an address or name that is not public, each refused.
    const NOT_PUBLIC: &[&str] = &[
        // cloud metadata services
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://100.100.100.200/latest/meta-data/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://metadata/computeMetadata/v1/",
        // loopback in every spelling the WHATWG parser reads as 127.0.0.1
        "http://127.0.0.1/",
        "http://127.1/",
        "http://0x7f000001/",
        "http://0x7f.0x0.0x0.0x1/",
        "http://2130706433/",
        "http://017700000001/",
        "http://0177.0.0.1/",
        "http://127.000.000.001/",
        "http://[::1]/",
        "http://[0:0:0:0:0:0:0:1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
        "http://[::127.0.0.1]/",
        "http://[64:ff9b::127.0.0.1]/",
        "http://[2002:7f00:1::]/",
        "http://[::ffff:169.254.169.254]/",
        "http://localhost/",
        "http://LOCALHOST:8080/",
        "http://localhost./",
        "http://api.localhost/",
        // private, link-local, unspecified, CGNAT, multicast, reserved
        "http://10.0.0.1/",
        "http://10.255.255.255/",
        "http://172.16.0.1/",
        "http://172.31.255.255/",
        "http://192.168.0.1/",
        "http://192.168.1.1:8443/admin",
        "http://0xc0a80001/",
        "http://169.254.0.1/",
        "http://0.0.0.0/",
        "http://0/",
        "http://[::]/",
        "http://100.64.0.1/",
        "http://100.127.255.254/",
        "http://224.0.0.1/",
        "http://255.255.255.255/",
        "http://240.0.0.1/",
        "http://[fc00::1]/",
        "http://[fe80::1]/",
        "http://[ff02::1]/",
        // names that resolve only inside a network
        "http://printer.local/",
        "http://db.internal/",
        "http://router.home.arpa/",
        "http://intranet/",
    ];

    #[test]
    fn addresses_and_names_that_are_not_public_are_refused_in_every_spelling() {
        let policy = TargetPolicy::default();
        for url in NOT_PUBLIC {
            assert!(
                matches!(
                    check(&policy, url),
                    Err(PolicyError::Address { .. } | PolicyError::LocalName(_))
                ),
                "accepted {url}"
            );
        }
        assert_eq!(
            check(&policy, "http://0x7f000001/")
                .unwrap_err()
                .to_string(),
            "url points to a loopback address (127.0.0.1), which is not allowed"
        );
    }

    #[test]
    fn allow_private_and_allow_hosts_let_an_intranet_through() {
        let open = TargetPolicy {
            allow_private: true,
            ..TargetPolicy::default()
        };
        for url in NOT_PUBLIC {
            assert_eq!(check(&open, url), Ok(()), "{url}");
        }
        let some = TargetPolicy {
            allow_hosts: vec!["wiki.corp.internal".into(), "10.1.2.3".into()],
            ..TargetPolicy::default()
        };
        assert_eq!(check(&some, "http://wiki.corp.internal/page"), Ok(()));
        assert_eq!(check(&some, "http://a.wiki.corp.internal/page"), Ok(()));
        assert_eq!(check(&some, "http://10.1.2.3/"), Ok(()));
        assert!(check(&some, "http://db.corp.internal/").is_err());
        assert!(check(&some, "http://10.1.2.4/").is_err());
    }

    #[test]
    fn public_addresses_and_international_names_pass() {
        let policy = TargetPolicy::default();
        for url in [
            "https://example.com/",
            "http://93.184.215.14/",
            "http://8.8.8.8/",
            "http://172.32.0.1/",
            "http://100.128.0.1/",
            "http://[2606:4700::1111]/",
            "https://münchen.de/straße",
            "https://пример.рф/",
            "https://例子.测试/路径",
            "https://日本語.jp/ひらがな",
            "https://xn--mnchen-3ya.de/",
            "https://ελληνικά.gr/",
            "https://example.com/путь/到/مسار",
            "https://fuß.de/",
            "https://example.com./",
        ] {
            assert_eq!(check(&policy, url), Ok(()), "{url}");
        }
    }

    #[test]
    fn homographs_are_refused_unless_allowed() {
        let policy = TargetPolicy::default();
        for url in [
            "https://аpple.com/",           // Cyrillic а, then Latin
            "https://xn--pple-43d.com/",    // the same, as punycode
            "https://pаypal.com/login",     // Cyrillic а inside
            "https://аррӏе.com/",           // all Cyrillic, reads as "apple"
            "https://асе.com/",             // all Cyrillic, reads as "ace"
            "https://gοogle.com/",          // Greek omicron
            "https://login.micrοsoft.com/", // in a subdomain label
        ] {
            assert!(
                matches!(check(&policy, url), Err(PolicyError::Homograph(_))),
                "accepted {url}: {:?}",
                check(&policy, url)
            );
        }
        let allowed = TargetPolicy {
            idn_allow: vec!["xn--80ak6aa92e.com".into()],
            ..TargetPolicy::default()
        };
        assert_eq!(check(&allowed, "https://аррӏе.com/"), Ok(()));
    }

    #[test]
    fn a_blocklist_refuses_a_domain_and_its_subdomains() {
        let blocklist =
            Blocklist::parse("# phishing\nevil.example\n\nпример.рф # idn\n").expect("parses");
        assert_eq!(blocklist.len(), 2);
        let policy = TargetPolicy {
            blocklist,
            ..TargetPolicy::default()
        };
        assert_eq!(
            check(&policy, "https://login.evil.example/x"),
            Err(PolicyError::Blocked("evil.example".into()))
        );
        assert!(check(&policy, "https://EVIL.example./").is_err());
        assert!(check(&policy, "https://пример.рф/").is_err());
        assert_eq!(check(&policy, "https://notevil.example/"), Ok(()));
        assert!(
            Blocklist::parse("ok.example\nnot a domain\n")
                .unwrap_err()
                .contains("line 2")
        );
    }
}
