//! DNS-rebinding and cross-origin protection for every route, and CORS.
//!
//! One `OriginPolicy`, built from keyward's configuration, decides which `Host` and `Origin`
//! values are acceptable. It runs first on every route, `/mcp` included (so a foreign Origin
//! gets 403 before any authentication); rmcp's own copy of these checks is therefore off.

use axum::extract::Request;
use axum::http::uri::Authority;
use axum::http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

use super::edge::PublicBase;
use super::error::HttpError;

#[derive(Debug, Clone)]
pub struct OriginPolicy {
    /// Hosts, lowercase, with the port when the entry named one (any port otherwise).
    hosts: Vec<(String, Option<u16>)>,
    /// Listed origins as `(scheme, host, port)`; port `None` matches any port.
    origins: Vec<(String, String, Option<u16>)>,
    /// Authentication disabled: any origin (development only).
    pub any_origin: bool,
}

impl OriginPolicy {
    /// `hosts` are `host` (any port) or `host:port` entries; `origins` are
    /// `scheme://host[:port]` entries where port `*` matches any port. Both are split here,
    /// once, so the check on every request only compares; malformed entries match nothing
    /// (configuration refuses them before this).
    pub fn new(hosts: &[String], origins: &[String], any_origin: bool) -> Self {
        OriginPolicy {
            hosts: hosts
                .iter()
                .filter_map(|h| h.parse::<Authority>().ok())
                .map(|a| (a.host().to_ascii_lowercase(), a.port_u16()))
                .collect(),
            origins: origins
                .iter()
                .filter_map(|o| split_origin_pattern(o))
                .collect(),
            any_origin,
        }
    }

    pub fn has_listed_origins(&self) -> bool {
        !self.origins.is_empty()
    }

    pub fn host_allowed(&self, host: &str) -> bool {
        let Ok(a) = host.parse::<Authority>() else {
            return false;
        };
        let port = a.port_u16();
        self.hosts
            .iter()
            .any(|(name, p)| a.host().eq_ignore_ascii_case(name) && (p.is_none() || *p == port))
    }

    /// Whether `origin` is on the configured list.
    pub fn listed(&self, origin: &str) -> bool {
        let Some((scheme, host, port)) = split_origin(origin) else {
            return false;
        };
        self.origins
            .iter()
            .any(|(s, h, p)| *s == scheme && *h == host && (p.is_none() || *p == Some(port)))
    }

    /// Same-origin with the URL the request came in on, or listed.
    pub fn origin_allowed(&self, origin: &str, base: &PublicBase) -> bool {
        if self.any_origin || self.listed(origin) {
            return true;
        }
        match (split_origin(origin), split_origin(&base.url())) {
            (Some(o), Some(b)) => o == b,
            _ => false,
        }
    }
}

/// `(scheme, host, port)` of a concrete origin, ports defaulted.
fn split_origin(origin: &str) -> Option<(String, String, u16)> {
    let uri: axum::http::Uri = origin.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let a = uri.authority()?;
    let port = a.port_u16().or(match scheme.as_str() {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    })?;
    if uri.path() != "/" && !uri.path().is_empty() {
        return None;
    }
    Some((scheme, a.host().to_ascii_lowercase(), port))
}

/// Like `split_origin`, but `:*` means any port (`None`).
fn split_origin_pattern(entry: &str) -> Option<(String, String, Option<u16>)> {
    if let Some(prefix) = entry.strip_suffix(":*") {
        let (s, h, _) = split_origin(prefix)?;
        return Some((s, h, None));
    }
    split_origin(entry).map(|(s, h, p)| (s, h, Some(p)))
}

/// Validates an `--allowed-origins` entry at start-up.
pub fn check_origin_entry(entry: &str) -> Result<String, String> {
    let e = entry.trim().trim_end_matches('/').to_ascii_lowercase();
    match split_origin_pattern(&e) {
        Some(_) => Ok(e),
        None => Err(format!(
            "invalid allowed origin '{entry}': use scheme://host[:port], with :* for any port"
        )),
    }
}

/// The routes any web page may call (no cookies, no ambient authority): the metadata
/// documents and the OAuth token, registration and revocation endpoints. They skip the
/// Origin allow-list (the Host check stays) and answer CORS `*` without credentials. Never
/// the authorization and sign-in pages.
pub fn is_public_path(path: &str) -> bool {
    matches!(
        path,
        "/.well-known/oauth-protected-resource"
            | "/.well-known/oauth-protected-resource/mcp"
            | "/.well-known/oauth-authorization-server"
            | "/token"
            | "/register"
            | "/revoke"
    )
}

/// CORS for the public routes: any origin, never credentials.
pub fn public_cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static("mcp-protocol-version"),
        ])
}

/// Refuses, with 403, a request whose Host is not allowed or whose Origin is present and not
/// allowed (the public routes excepted). Requests without Origin (non-browser clients) pass on
/// to authentication.
pub fn check(policy: &OriginPolicy, req: &Request) -> Result<(), HttpError> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    if !host.is_some_and(|h| policy.host_allowed(h)) {
        tracing::warn!(
            host = host.unwrap_or("(none)"),
            "refused a request with a disallowed Host header (possible DNS rebinding)"
        );
        return Err(HttpError::forbidden("Host header is not allowed"));
    }
    let base = req.extensions().get::<PublicBase>();
    // A host forwarded by a trusted proxy is echoed into advertised URLs: it must be an
    // allowed host too.
    if let Some(base) = base
        && host != Some(base.host.as_str())
        && !policy.host_allowed(&base.host)
    {
        tracing::warn!(forwarded_host = %base.host, "refused a request with a disallowed X-Forwarded-Host");
        return Err(HttpError::forbidden("forwarded host is not allowed"));
    }
    if let Some(origin) = req.headers().get(header::ORIGIN)
        && !is_public_path(req.uri().path())
    {
        let ok = origin
            .to_str()
            .ok()
            .zip(base)
            .is_some_and(|(o, b)| policy.origin_allowed(o, b));
        if !ok {
            tracing::warn!(
                origin = origin.to_str().unwrap_or("(not text)"),
                "refused a request from a disallowed Origin"
            );
            return Err(HttpError::forbidden("Origin is not allowed"));
        }
    }
    Ok(())
}

const ALLOWED_HEADERS: [&str; 9] = [
    "content-type",
    "authorization",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
    "mcp-method",
    "mcp-name",
    "x-request-source",
    "accept",
];
const EXPOSED_HEADERS: [&str; 3] = ["mcp-session-id", "mcp-protocol-version", "www-authenticate"];

/// CORS in three modes: authentication disabled → any origin, no credentials; authentication
/// on with no allowed origins → none at all (same-origin only); with allowed origins → the
/// requesting origin echoed only when listed, credentials allowed, `Vary: Origin`.
pub fn cors(policy: &OriginPolicy) -> Option<CorsLayer> {
    let headers: Vec<HeaderName> = ALLOWED_HEADERS
        .iter()
        .map(|h| HeaderName::from_static(h))
        .collect();
    let exposed: Vec<HeaderName> = EXPOSED_HEADERS
        .iter()
        .map(|h| HeaderName::from_static(h))
        .collect();
    let methods = [Method::GET, Method::POST, Method::DELETE, Method::OPTIONS];
    if policy.any_origin {
        return Some(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_methods(methods)
                .allow_headers(headers)
                .expose_headers(exposed),
        );
    }
    if !policy.has_listed_origins() {
        return None;
    }
    let listed = policy.clone();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::predicate(move |origin: &HeaderValue, _| {
                origin.to_str().is_ok_and(|o| listed.listed(o))
            }))
            .allow_credentials(true)
            .allow_methods(methods)
            .allow_headers(headers)
            .expose_headers(exposed),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> OriginPolicy {
        OriginPolicy::new(
            &[
                "localhost".into(),
                "127.0.0.1".into(),
                "mcp.example.com:443".into(),
                "[::1]".into(),
            ],
            &[
                "https://app.example.com".into(),
                "http://localhost:*".into(),
            ],
            false,
        )
    }

    #[test]
    fn hosts_match_with_or_without_port() {
        let p = policy();
        assert!(p.host_allowed("localhost:19287"));
        assert!(p.host_allowed("127.0.0.1"));
        assert!(p.host_allowed("mcp.example.com:443"));
        assert!(!p.host_allowed("mcp.example.com:8443"));
        assert!(!p.host_allowed("evil.example"));
        assert!(!p.host_allowed("localhost.evil.example"));
        assert!(
            p.host_allowed("LOCALHOST:1"),
            "host names are case-insensitive"
        );
        assert!(p.host_allowed("[::1]:19287"));
        assert!(!p.host_allowed("[::2]:19287"));
        assert!(!p.host_allowed("bad host"));
    }

    #[test]
    fn origins_match_scheme_host_and_port() {
        let p = policy();
        let base = PublicBase {
            scheme: "http",
            host: "127.0.0.1:19287".into(),
        };
        assert!(p.origin_allowed("https://app.example.com", &base));
        assert!(p.origin_allowed("https://app.example.com:443", &base));
        assert!(!p.origin_allowed("http://app.example.com", &base));
        assert!(p.origin_allowed("http://localhost:3000", &base));
        assert!(
            p.origin_allowed("http://127.0.0.1:19287", &base),
            "same origin"
        );
        assert!(!p.origin_allowed("http://127.0.0.1:19288", &base));
        assert!(!p.origin_allowed("null", &base));
        assert!(!p.origin_allowed("https://evil.example", &base));
    }

    #[test]
    fn entries_are_validated() {
        assert_eq!(
            check_origin_entry("https://App.example.com/").unwrap(),
            "https://app.example.com"
        );
        assert!(check_origin_entry("http://localhost:*").is_ok());
        assert!(check_origin_entry("app.example.com").is_err());
        assert!(check_origin_entry("https://x.example/path").is_err());
    }
}
