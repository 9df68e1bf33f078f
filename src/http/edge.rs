//! Who is at the other end, and under which URL they reached us: the client IP (from the
//! connection, or `X-Forwarded-For` when the peer is a trusted proxy) and the public base URL
//! (scheme from `X-Forwarded-Proto`, host from `X-Forwarded-Host` or `Host`, the forwarded ones
//! honoured only from trusted proxies; a configured public URL overrides all of it).
//! Resolved once per request into extensions; everything else reads them.

use std::net::IpAddr;

use axum::extract::{ConnectInfo, Request};
use axum::http::HeaderMap;
use axum::http::uri::Authority;
use ipnet::IpNet;

/// The client's address, as resolved for this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    /// What failures are counted under: the address, or an IPv6 address's /64.
    pub fn lockout_key(&self) -> String {
        crate::domain::lockout::address_key(self.0)
    }
}

/// The absolute base URL the client used (`scheme://host[:port]`, no trailing slash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicBase {
    pub scheme: &'static str,
    pub host: String,
}

impl PublicBase {
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.host)
    }

    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.url())
    }

    /// The metadata document whose `resource` is exactly the MCP endpoint (RFC 9728 path
    /// insertion), as the 401 challenge advertises it.
    pub fn metadata_url(&self) -> String {
        format!("{}/.well-known/oauth-protected-resource/mcp", self.url())
    }

    /// Whether the host is the local machine (cookies then go without `Secure`).
    pub fn is_localhost(&self) -> bool {
        let host = self
            .host
            .parse::<Authority>()
            .map(|a| {
                a.host()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned()
            })
            .unwrap_or_default();
        host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

/// The settings this module needs, built once at start.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    pub trusted_proxies: Vec<IpNet>,
    /// `scheme://host[:port]` from configuration; overrides every header.
    pub public_url: Option<(&'static str, String)>,
    /// The scheme of our own listener.
    pub tls: bool,
    /// Host to assume when a request carries none (HTTP/1.0).
    pub fallback_host: String,
}

impl EdgeConfig {
    fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|n| n.contains(&ip))
    }

    /// The client IP: the peer, or, when the peer is a trusted proxy, the nearest address in
    /// `X-Forwarded-For` that is not itself a trusted proxy.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusted(peer) {
            return peer;
        }
        let chain: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse::<IpAddr>().ok())
            .collect();
        chain
            .iter()
            .rev()
            .find(|ip| !self.trusted(**ip))
            .or(chain.first())
            .copied()
            .unwrap_or(peer)
    }

    pub fn public_base(&self, peer: IpAddr, headers: &HeaderMap) -> PublicBase {
        if let Some((scheme, host)) = &self.public_url {
            return PublicBase {
                scheme,
                host: host.clone(),
            };
        }
        let own_scheme = if self.tls { "https" } else { "http" };
        let first = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        // Only well-formed authorities are ever echoed (no quotes can reach a header).
        let valid_host = |h: String| {
            h.parse::<Authority>()
                .ok()
                .map(|a| a.as_str().to_ascii_lowercase())
        };
        let host_header = first("host").and_then(valid_host);
        let (scheme, host) = if self.trusted(peer) {
            let scheme = match first("x-forwarded-proto")
                .map(|p| p.to_ascii_lowercase())
                .as_deref()
            {
                Some("https") => "https",
                Some("http") => "http",
                _ => own_scheme,
            };
            (
                scheme,
                first("x-forwarded-host")
                    .and_then(valid_host)
                    .or(host_header),
            )
        } else {
            (own_scheme, host_header)
        };
        PublicBase {
            scheme,
            host: host.unwrap_or_else(|| self.fallback_host.clone()),
        }
    }
}

/// Resolves `ClientIp` and `PublicBase` once and stores them in the request's extensions.
pub fn resolve(edge: &EdgeConfig, req: &mut Request) {
    let peer = req
        .extensions()
        .get::<ConnectInfo<super::server::Peer>>()
        .map(|c| c.0.0.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let ip = ClientIp(edge.client_ip(peer, req.headers()));
    let base = edge.public_base(peer, req.headers());
    req.extensions_mut().insert(ip);
    req.extensions_mut().insert(base);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> EdgeConfig {
        EdgeConfig {
            trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
            public_url: None,
            tls: false,
            fallback_host: "127.0.0.1:19287".into(),
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let c = config();
        let h = headers(&[
            ("host", "internal:8080"),
            ("x-forwarded-proto", "https, http"),
            ("x-forwarded-host", "keyward.example.com"),
            ("x-forwarded-for", "203.0.113.9, 10.1.1.1"),
        ]);
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let stranger: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(
            c.public_base(proxy, &h).url(),
            "https://keyward.example.com"
        );
        assert_eq!(
            c.client_ip(proxy, &h),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(c.public_base(stranger, &h).url(), "http://internal:8080");
        assert_eq!(c.client_ip(stranger, &h), stranger);
    }

    #[test]
    fn junk_in_forwarded_headers_is_ignored() {
        let c = config();
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let h = headers(&[
            ("host", "ok.example"),
            ("x-forwarded-proto", "gopher"),
            ("x-forwarded-host", "evil\"quote"),
        ]);
        assert_eq!(c.public_base(proxy, &h).url(), "http://ok.example");
        let spoof = headers(&[("x-forwarded-for", "not-an-ip")]);
        assert_eq!(c.client_ip(proxy, &spoof), proxy);
    }

    #[test]
    fn a_configured_public_url_wins() {
        let mut c = config();
        c.public_url = Some(("https", "mcp.example.com".into()));
        let h = headers(&[("host", "other"), ("x-forwarded-proto", "http")]);
        assert_eq!(
            c.public_base("10.0.0.2".parse().unwrap(), &h).mcp_url(),
            "https://mcp.example.com/mcp"
        );
    }

    #[test]
    fn localhost_detection() {
        for (host, local) in [
            ("localhost:8080", true),
            ("127.0.0.1", true),
            ("[::1]:19287", true),
            ("example.com", false),
        ] {
            let b = PublicBase {
                scheme: "http",
                host: host.into(),
            };
            assert_eq!(b.is_localhost(), local, "{host}");
        }
    }
}
