//! Which address a click came from.
//!
//! Without trusted proxies it is the TCP peer. Behind a load balancer the peer is the
//! balancer, and the client is in `X-Forwarded-For` - but any client can write that
//! header, so only entries appended by proxies we trust count: walking the list from the
//! right (each proxy appends the address it saw), skip our own trusted hops; the first
//! untrusted entry is the client. A client that forges entries can only forge them to the
//! *left* of that one, which we never read.

use std::net::IpAddr;

use ipnet::IpNet;

/// The client address of a request from `peer` carrying `forwarded_for`
/// (`X-Forwarded-For`), given the networks of our trusted proxies.
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&[u8]>, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let Some(header) = forwarded_for.and_then(|h| std::str::from_utf8(h).ok()) else {
        return peer;
    };
    let mut nearest = peer;
    for entry in header.rsplit(',') {
        match entry.trim().parse::<IpAddr>() {
            Ok(ip) if is_trusted(&ip) => nearest = ip,
            Ok(ip) => return ip,
            // Garbage where an address should be: the hop that wrote it is not one of
            // ours, so the last trusted address we saw is the best we know.
            Err(_) => return nearest,
        }
    }
    nearest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().expect("cidr")).collect()
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client_whatever_the_header_says() {
        assert_eq!(
            client_ip(ip("198.51.100.7"), Some(b"1.2.3.4"), &[]),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn behind_a_trusted_proxy_the_rightmost_untrusted_entry_is_the_client() {
        let trusted = nets(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.2");
        assert_eq!(
            client_ip(peer, Some(b"203.0.113.5"), &trusted),
            ip("203.0.113.5")
        );
        // The client forged "6.6.6.6"; the balancer appended the address it really saw.
        assert_eq!(
            client_ip(peer, Some(b"6.6.6.6, 203.0.113.5"), &trusted),
            ip("203.0.113.5")
        );
        // Two layers of our own proxies.
        assert_eq!(
            client_ip(peer, Some(b"203.0.113.5, 10.1.1.1"), &trusted),
            ip("203.0.113.5")
        );
        assert_eq!(
            client_ip(peer, Some(b"2001:db8::1"), &trusted),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn missing_or_garbled_headers_fall_back_to_the_nearest_trusted_hop() {
        let trusted = nets(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.2");
        assert_eq!(client_ip(peer, None, &trusted), peer);
        assert_eq!(client_ip(peer, Some(b"not-an-ip"), &trusted), peer);
        assert_eq!(
            client_ip(peer, Some(b"junk, 10.9.9.9"), &trusted),
            ip("10.9.9.9")
        );
        assert_eq!(client_ip(peer, Some(b"\xff\xfe"), &trusted), peer);
        assert_eq!(
            client_ip(peer, Some(b"10.1.1.1, 10.2.2.2"), &trusted),
            ip("10.1.1.1")
        );
    }
}
