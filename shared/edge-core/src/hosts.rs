//! TRUSTED_HOSTS: which `Host` values a function answers for, and which client address a
//! request counts as (for rate limiting).

use std::net::IpAddr;

use http::header;

use crate::Request;

/// Allowed hosts: exact names or `*.suffix` patterns. Empty means any host (development).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedHosts {
    exact: Vec<String>,
    suffixes: Vec<String>,
}

impl TrustedHosts {
    /// From configured entries (`api.example.com`, `*.example.com`), case-insensitive.
    pub fn new<'a>(hosts: impl IntoIterator<Item = &'a str>) -> Self {
        let mut out = Self::default();
        for h in hosts {
            let h = h.trim().to_ascii_lowercase();
            if h.is_empty() {
                continue;
            }
            match h.strip_prefix("*.") {
                Some(suffix) => out.suffixes.push(format!(".{suffix}")),
                None => out.exact.push(h),
            }
        }
        out
    }

    /// Whether any host is accepted (no list configured).
    pub fn is_open(&self) -> bool {
        self.exact.is_empty() && self.suffixes.is_empty()
    }

    /// Whether the request's host (URI authority, else `Host` header; port ignored) is allowed.
    /// Spin delivers no `Host` header but builds the URI from it; Workers give the full URL.
    pub fn allows(&self, req: &Request) -> bool {
        if self.is_open() {
            return true;
        }
        let host = req.uri().host().map(str::to_owned).or_else(|| {
            let value = req.headers().get(header::HOST)?.to_str().ok()?;
            Some(strip_port(value).to_owned())
        });
        let Some(host) = host.map(|h| h.to_ascii_lowercase()) else {
            return false;
        };
        self.exact.contains(&host)
            || self
                .suffixes
                .iter()
                .any(|s| host.ends_with(s.as_str()) && host.len() > s.len())
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split(']')
            .next()
            .map_or(host, |h| &host[..h.len() + 1]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// The address a request is counted under: the peer the platform reports, unless that peer is
/// a configured trusted proxy, in which case the right-most `X-Forwarded-For` entry that is not
/// itself a trusted proxy. `X-Forwarded-For` from anyone else is ignored: clients can write it.
pub fn client_address(req: &Request, peer: Option<IpAddr>, trusted_proxies: &[IpAddr]) -> String {
    let Some(peer) = peer else {
        return "unknown".into();
    };
    if !trusted_proxies.contains(&peer) {
        return peer.to_string();
    }
    let forwarded: Vec<IpAddr> = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    forwarded
        .into_iter()
        .rev()
        .find(|a| !trusted_proxies.contains(a))
        .unwrap_or(peer)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Bytes;

    fn req(uri: &str, host_header: Option<&str>, xff: Option<&str>) -> Request {
        let mut r = Request::new(Bytes::new());
        *r.uri_mut() = uri.parse().unwrap_or_default();
        if let Some(h) = host_header {
            r.headers_mut().insert(
                header::HOST,
                h.parse().unwrap_or(http::HeaderValue::from_static("x")),
            );
        }
        if let Some(x) = xff {
            r.headers_mut().insert(
                "x-forwarded-for",
                x.parse().unwrap_or(http::HeaderValue::from_static("x")),
            );
        }
        r
    }

    #[test]
    fn an_empty_list_accepts_any_host() {
        assert!(TrustedHosts::new([]).allows(&req("https://anything.io/health", None, None)));
    }

    #[test]
    fn listed_hosts_and_explicit_subdomain_patterns_are_accepted() {
        let t = TrustedHosts::new(["api.example.com", "*.workers.dev"]);
        assert!(t.allows(&req("https://api.example.com/health", None, None)));
        assert!(t.allows(&req("https://API.example.com:8443/health", None, None)));
        assert!(t.allows(&req("https://fn.acct.workers.dev/health", None, None)));
        assert!(t.allows(&req("/health", Some("api.example.com:443"), None)));
    }

    #[test]
    fn other_hosts_are_refused() {
        let t = TrustedHosts::new(["api.example.com", "*.workers.dev"]);
        assert!(!t.allows(&req("https://evil.io/health", None, None)));
        assert!(!t.allows(&req("https://api.example.com.evil.io/", None, None)));
        assert!(!t.allows(&req("https://workers.dev/", None, None)));
        assert!(!t.allows(&req("/health", None, None)), "no host at all");
    }

    #[test]
    fn forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() {
        let peer: IpAddr = [198, 51, 100, 1].into();
        let r = req("/", None, Some("203.0.113.9"));
        assert_eq!(client_address(&r, Some(peer), &[]), "198.51.100.1");
        assert_eq!(client_address(&r, Some(peer), &[peer]), "203.0.113.9");
    }

    #[test]
    fn the_rightmost_untrusted_forwarded_address_counts() {
        let proxy: IpAddr = [10, 0, 0, 1].into();
        let r = req("/", None, Some("1.1.1.1, 203.0.113.9, 10.0.0.1"));
        assert_eq!(client_address(&r, Some(proxy), &[proxy]), "203.0.113.9");
    }

    #[test]
    fn without_a_peer_every_request_shares_one_bucket() {
        assert_eq!(client_address(&req("/", None, None), None, &[]), "unknown");
    }
}
