//! What a client metadata document and its address must be, and how long a fetched document
//! is kept: pure rules, no I/O, applied by the fetcher in `cimd.rs` and to the pinned copies.

use std::net::IpAddr;

use hyper::HeaderMap;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE};
use serde_json::Value;
use url::{Host, Url};

use crate::domain::text::is_hidden;

/// A client as its metadata document describes it, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientDocument {
    pub client_id: String,
    /// Trimmed, at most 100 characters, hidden characters removed.
    pub client_name: Option<String>,
    /// As the document lists them (1 to 20); their shape is the caller's to check.
    pub redirect_uris: Vec<String>,
    /// A subset of `authorization_code` and `refresh_token`.
    pub grant_types: Vec<String>,
    /// Always `none`: only public clients identify themselves this way here.
    pub token_endpoint_auth_method: String,
    /// Kept only when an https URL.
    pub client_uri: Option<String>,
    /// Kept only when an https URL.
    pub logo_uri: Option<String>,
    /// Whether this is keyward's pinned copy, served because the live fetch failed.
    pub pinned: bool,
}

/// Why a client's metadata document could not be used. Messages are for the client's
/// developer; none carries a response body.
#[derive(Debug, thiserror::Error)]
pub enum CimdError {
    #[error(
        "the client_id must be an https URL, since it is the address of the client's metadata document"
    )]
    NotHttps,
    #[error("the client_id is not a usable client metadata document address: {0}")]
    BadUrl(String),
    #[error(
        "the client metadata document's address resolves to a private or local network address, which this server refuses to fetch"
    )]
    PrivateAddress,
    #[error("the client metadata document's host {0} could not be resolved")]
    Dns(String),
    #[error("the client metadata document could not be fetched within the time allowed")]
    Timeout,
    #[error("the client metadata document is larger than this server accepts")]
    TooLarge,
    #[error(
        "the client metadata document's address answered HTTP status {0}; it must answer 200 directly, without redirects"
    )]
    Status(u16),
    #[error(
        "the client metadata document is not JSON: it must be served as application/json and hold a JSON object"
    )]
    NotJson,
    #[error("the client metadata document is invalid: {0}")]
    Invalid(String),
    #[error("a secure connection to the client metadata document's host failed: {0}")]
    Tls(String),
    #[error("the client metadata document's host could not be reached: {0}")]
    Io(String),
}

impl CimdError {
    /// A short name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            CimdError::NotHttps => "not_https",
            CimdError::BadUrl(_) => "bad_url",
            CimdError::PrivateAddress => "private_address",
            CimdError::Dns(_) => "dns",
            CimdError::Timeout => "timeout",
            CimdError::TooLarge => "too_large",
            CimdError::Status(_) => "status",
            CimdError::NotJson => "not_json",
            CimdError::Invalid(_) => "invalid",
            CimdError::Tls(_) => "tls",
            CimdError::Io(_) => "io",
        }
    }
}

const MAX_REDIRECT_URIS: usize = 20;
const MAX_NAME_CHARS: usize = 100;
const GRANT_TYPES: [&str; 2] = ["authorization_code", "refresh_token"];
/// Cache lifetimes in seconds: `max-age` is clamped to [MIN, MAX]; DEFAULT when absent.
pub(super) const MIN_TTL: u64 = 5 * 60;
pub(super) const MAX_TTL: u64 = 24 * 60 * 60;
pub(super) const DEFAULT_TTL: u64 = 60 * 60;

/// The checks made before any network use.
pub(super) fn check_url(client_id: &str, allow_loopback: bool) -> Result<Url, CimdError> {
    let url = Url::parse(client_id).map_err(|_| CimdError::BadUrl("it is not a URL".into()))?;
    if url.scheme() != "https" {
        return Err(CimdError::NotHttps);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(CimdError::BadUrl(
            "it must not hold a user name or password".into(),
        ));
    }
    if url.fragment().is_some() {
        return Err(CimdError::BadUrl("it must not have a fragment (#…)".into()));
    }
    let literal = match url.host() {
        Some(Host::Domain(_)) => None,
        Some(Host::Ipv4(ip)) => Some(IpAddr::from(ip)),
        Some(Host::Ipv6(ip)) => Some(IpAddr::from(ip)),
        None => return Err(CimdError::BadUrl("it has no host".into())),
    };
    if literal.is_some_and(|ip| !(allow_loopback && ip.is_loopback())) {
        return Err(CimdError::BadUrl(
            "its host must be a domain name, not an IP address".into(),
        ));
    }
    if url.path() == "/" {
        return Err(CimdError::BadUrl(
            "it must have a path, such as https://example.com/client.json".into(),
        ));
    }
    // The identity is the exact string: one spelling per document (no dot segments, default
    // port, upper-case host or other forms a parser would rewrite).
    if url.as_str() != client_id {
        return Err(CimdError::BadUrl(format!(
            "it must be written in normal form, as {url}"
        )));
    }
    Ok(url)
}

/// `application/json` or `application/<something>+json`, parameters aside.
pub(super) fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    let essence = essence.to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.len() > "+json".len() && sub.ends_with("+json"))
}

/// Seconds to keep a document, from `Cache-Control`.
pub(super) fn ttl(headers: &HeaderMap) -> u64 {
    let mut max_age = None;
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',').map(str::trim) {
            if directive.eq_ignore_ascii_case("no-store") {
                return MIN_TTL;
            }
            if let Some((name, seconds)) = directive.split_once('=')
                && name.trim().eq_ignore_ascii_case("max-age")
                && let Ok(seconds) = seconds.trim().trim_matches('"').parse::<u64>()
            {
                max_age = Some(seconds);
            }
        }
    }
    max_age.map_or(DEFAULT_TTL, |s| s.clamp(MIN_TTL, MAX_TTL))
}

/// The document's rules; `client_id` is the address it was fetched from.
pub(super) fn validate(client_id: &str, body: &[u8]) -> Result<ClientDocument, CimdError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| CimdError::NotJson)?;
    let Value::Object(doc) = value else {
        return Err(CimdError::Invalid("it must be a JSON object".into()));
    };
    let invalid = |why: &str| CimdError::Invalid(why.to_owned());
    if doc.get("client_id").and_then(Value::as_str) != Some(client_id) {
        return Err(invalid(
            "its client_id must be exactly the address it is served from",
        ));
    }
    let strings = |field: &str| -> Option<Result<Vec<String>, CimdError>> {
        let list = doc.get(field)?;
        let why = format!("{field} must be an array of strings");
        Some(match list.as_array() {
            Some(items) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| invalid(&why)))
                .collect(),
            None => Err(invalid(&why)),
        })
    };
    let redirect_uris = strings("redirect_uris").unwrap_or_else(|| Ok(Vec::new()))?;
    if redirect_uris.is_empty() || redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(invalid(
            "redirect_uris must list between 1 and 20 addresses",
        ));
    }
    let grant_types =
        strings("grant_types").unwrap_or_else(|| Ok(vec!["authorization_code".to_owned()]))?;
    if grant_types.is_empty()
        || !grant_types
            .iter()
            .all(|g| GRANT_TYPES.contains(&g.as_str()))
    {
        return Err(invalid(
            "grant_types may hold only authorization_code and refresh_token",
        ));
    }
    let method = match doc.get("token_endpoint_auth_method") {
        None => "none",
        Some(v) => v.as_str().unwrap_or_default(),
    };
    if method != "none" {
        return Err(invalid(
            "token_endpoint_auth_method must be \"none\": this server accepts only public clients by metadata document",
        ));
    }
    Ok(ClientDocument {
        client_id: client_id.to_owned(),
        client_name: doc
            .get("client_name")
            .and_then(Value::as_str)
            .and_then(name),
        redirect_uris,
        grant_types,
        token_endpoint_auth_method: method.to_owned(),
        client_uri: https(doc.get("client_uri")),
        logo_uri: https(doc.get("logo_uri")),
        pinned: false,
    })
}

/// A name fit to show: hidden characters (controls, bidi overrides…) removed, trimmed, capped.
fn name(raw: &str) -> Option<String> {
    let visible: String = raw.chars().filter(|c| !is_hidden(*c)).collect();
    let capped: String = visible.trim().chars().take(MAX_NAME_CHARS).collect();
    let capped = capped.trim_end();
    (!capped.is_empty()).then(|| capped.to_owned())
}

fn https(value: Option<&Value>) -> Option<String> {
    let text = value?.as_str()?;
    let url = Url::parse(text).ok()?;
    (url.scheme() == "https" && url.host().is_some()).then(|| text.to_owned())
}
