//! TRUSTED_HOSTS: which `Host` values a function answers for, and which client a request
//! counts as (the rate-limit key). Both use the catalog's parsed values (`HostPattern`,
//! `IpNet`), so the rules validated at start are exactly the rules applied per request.

use std::net::IpAddr;

use http::header;
use secrets_catalog::{canonical_ip, HostPattern, IpNet};

use crate::Request;

/// Allowed hosts, from the catalog's `TRUSTED_HOSTS` patterns (`api.example.com`,
/// `localhost:3000`, `*.example.app`). Empty means any host (allowed outside production only;
/// the catalog requires the list in production).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedHosts {
    patterns: Vec<HostPattern>,
}

impl TrustedHosts {
    /// From the catalog's parsed patterns.
    pub fn new(patterns: Vec<HostPattern>) -> Self {
        Self { patterns }
    }

    /// Parses a comma-separated list with the catalog's parser (tests and benches; the
    /// configuration loader passes the patterns it already validated). Malformed entries
    /// are dropped, which can only narrow the list.
    pub fn parse(list: &str) -> Self {
        Self::new(
            list.split(',')
                .filter_map(|p| HostPattern::parse(p.trim()).ok())
                .collect(),
        )
    }

    /// Whether any host is accepted (no list configured).
    pub fn is_open(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether the request's host is allowed: the URI authority (`host[:port]`; Spin builds
    /// the URI from the client's Host header, Workers give the full URL), else the `Host`
    /// header. A request that names no host at all is refused once a list is configured.
    pub fn allows(&self, req: &Request) -> bool {
        if self.is_open() {
            return true;
        }
        let authority = match req.uri().authority() {
            Some(a) => a.as_str(),
            None => match req
                .headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
            {
                Some(h) => h,
                None => return false,
            },
        };
        // Userinfo never belongs in a Host; refuse rather than strip it.
        if authority.contains('@') {
            return false;
        }
        self.patterns.iter().any(|p| p.allows(authority))
    }
}

/// The rate-limit key of an address: an IPv4 address as itself; an IPv6 address by its /64,
/// the smallest block a single subscriber is normally given, so rotating through the
/// addresses of one /64 does not buy a fresh budget. IPv4-mapped IPv6 counts as IPv4.
pub fn client_key(ip: IpAddr) -> String {
    match canonical_ip(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// Parses one `X-Forwarded-For` entry: an address, `a.b.c.d:port` or `[v6]:port`.
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse() {
        return Some(ip);
    }
    if let Some(rest) = entry.strip_prefix('[') {
        let (ip, port) = rest.split_once("]:")?;
        port.parse::<u16>().ok()?;
        return ip.parse().ok();
    }
    let (ip, port) = entry.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    ip.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// The client a request counts as (see [`client_key`] for the key's shape): the peer the
/// platform reports, unless that peer is a trusted proxy. Then `X-Forwarded-For` is walked
/// from the right over its raw entries, skipping trusted proxies, and the first entry that is
/// not one decides: its address if it parses, the peer's if it does not (an `unknown` or
/// garbled entry must never let the walk continue into entries the client wrote itself).
/// When every entry is a trusted proxy, the left-most one is the origin. Without a peer every
/// request shares the key `unknown`.
pub fn client_address(req: &Request, peer: Option<IpAddr>, trusted: &[IpNet]) -> String {
    let Some(peer) = peer.map(canonical_ip) else {
        return "unknown".into();
    };
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return client_key(peer);
    }
    let mut origin = peer;
    let values: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.to_str().unwrap_or("\u{0}"))
        .collect();
    for entry in values.iter().rev().flat_map(|v| v.rsplit(',')) {
        match parse_forwarded(entry.trim()).map(canonical_ip) {
            Some(ip) if is_trusted(ip) => origin = ip,
            Some(ip) => return client_key(ip),
            None => return client_key(peer),
        }
    }
    client_key(origin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Bytes;

    fn req(uri: &str, host_header: Option<&str>, xff: &[&str]) -> Request {
        let mut r = Request::new(Bytes::new());
        *r.uri_mut() = uri.parse().unwrap_or_default();
        if let Some(h) = host_header {
            r.headers_mut().insert(
                header::HOST,
                h.parse().unwrap_or(http::HeaderValue::from_static("x")),
            );
        }
        for x in xff {
            r.headers_mut().append(
                "x-forwarded-for",
                x.parse().unwrap_or(http::HeaderValue::from_static("x")),
            );
        }
        r
    }

    fn nets(list: &str) -> Vec<IpNet> {
        list.split(',')
            .filter_map(|n| IpNet::parse(n.trim()).ok())
            .collect()
    }

    fn ip(text: &str) -> Option<IpAddr> {
        text.parse().ok()
    }

    #[test]
    fn an_empty_list_accepts_any_host() {
        assert!(TrustedHosts::parse("").allows(&req("https://anything.io/health", None, &[])));
    }

    #[test]
    fn listed_hosts_and_explicit_subdomain_patterns_are_accepted() {
        let t = TrustedHosts::parse("api.example.com, *.workers.dev");
        assert!(t.allows(&req("https://api.example.com/health", None, &[])));
        assert!(t.allows(&req("https://API.example.com:8443/health", None, &[])));
        assert!(t.allows(&req("https://fn.acct.workers.dev/health", None, &[])));
        assert!(t.allows(&req("/health", Some("api.example.com:443"), &[])));
    }

    #[test]
    fn a_pattern_with_a_port_matches_that_port_only() {
        let t = TrustedHosts::parse("localhost:3000");
        assert!(t.allows(&req("http://localhost:3000/health", None, &[])));
        assert!(t.allows(&req("/health", Some("localhost:3000"), &[])));
        assert!(!t.allows(&req("http://localhost:3001/health", None, &[])));
        assert!(!t.allows(&req("http://localhost/health", None, &[])));
    }

    #[test]
    fn other_hosts_are_refused() {
        let t = TrustedHosts::parse("api.example.com,*.workers.dev");
        assert!(!t.allows(&req("https://evil.io/health", None, &[])));
        assert!(!t.allows(&req("https://api.example.com.evil.io/", None, &[])));
        assert!(!t.allows(&req("https://workers.dev/", None, &[])));
        assert!(!t.allows(&req("https://a..workers.dev/", None, &[])));
        assert!(!t.allows(&req("/health", None, &[])), "no host at all");
        assert!(!t.allows(&req("/health", Some("evil@api.example.com"), &[])));
    }

    #[test]
    fn forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() {
        let r = req("/", None, &["203.0.113.9"]);
        assert_eq!(client_address(&r, ip("198.51.100.1"), &[]), "198.51.100.1");
        assert_eq!(
            client_address(&r, ip("198.51.100.1"), &nets("198.51.100.1")),
            "203.0.113.9"
        );
    }

    #[test]
    fn the_rightmost_untrusted_forwarded_address_counts_across_header_lines() {
        let trusted = nets("10.0.0.0/8");
        let r = req("/", None, &["1.1.1.1, 203.0.113.9", "10.0.0.2, 10.0.0.1"]);
        assert_eq!(client_address(&r, ip("10.0.0.3"), &trusted), "203.0.113.9");
    }

    #[test]
    fn an_unparseable_entry_stops_the_walk_and_the_peer_counts() {
        let trusted = nets("10.0.0.1");
        for xff in [
            "1.1.1.1, unknown",
            "1.1.1.1, garbage, 10.0.0.1",
            "1.1.1.1, 2.2.2.2:x",
        ] {
            let r = req("/", None, &[xff]);
            assert_eq!(
                client_address(&r, ip("10.0.0.1"), &trusted),
                "10.0.0.1",
                "{xff}"
            );
        }
    }

    #[test]
    fn entries_with_ports_are_their_addresses() {
        let trusted = nets("10.0.0.1");
        let r = req("/", None, &["9.9.9.9, 203.0.113.9:51234"]);
        assert_eq!(client_address(&r, ip("10.0.0.1"), &trusted), "203.0.113.9");
        let r = req("/", None, &["[2001:db8::1]:443"]);
        assert_eq!(
            client_address(&r, ip("10.0.0.1"), &trusted),
            "2001:db8:0:0::/64"
        );
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64_and_mapped_ipv4_is_ipv4() {
        let a = client_address(&req("/", None, &[]), ip("2001:db8:1:2::1"), &[]);
        let b = client_address(&req("/", None, &[]), ip("2001:db8:1:2:ffff::9"), &[]);
        let c = client_address(&req("/", None, &[]), ip("2001:db8:1:3::1"), &[]);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            client_address(&req("/", None, &[]), ip("::ffff:203.0.113.5"), &[]),
            "203.0.113.5"
        );
    }

    #[test]
    fn a_mapped_peer_matches_an_ipv4_trusted_proxy() {
        let r = req("/", None, &["203.0.113.9"]);
        assert_eq!(
            client_address(&r, ip("::ffff:127.0.0.1"), &nets("127.0.0.1")),
            "203.0.113.9"
        );
    }

    #[test]
    fn when_every_entry_is_a_trusted_proxy_the_leftmost_is_the_origin() {
        let r = req("/", None, &["10.0.0.5, 10.0.0.2"]);
        assert_eq!(
            client_address(&r, ip("10.0.0.1"), &nets("10.0.0.0/8")),
            "10.0.0.5"
        );
    }

    #[test]
    fn without_a_peer_every_request_shares_one_bucket() {
        assert_eq!(client_address(&req("/", None, &[]), None, &[]), "unknown");
    }
}
