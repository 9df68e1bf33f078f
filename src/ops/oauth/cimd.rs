//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document): a client whose
//! `client_id` is an https URL is described by the JSON document at that URL. This module
//! fetches it safely (public addresses only, resolved once and connected to directly, so DNS
//! rebinding cannot redirect the fetch; TLS; no redirects; bounded time and size), checks it,
//! caches it, and falls back to a stale copy or to keyward's pinned copies of well-known
//! clients when the live fetch fails. The caller applies its own redirect URI rules.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::header::{ACCEPT, CONTENT_LENGTH, HOST, USER_AGENT};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use url::{Host, Position, Url};

pub use self::document::{CimdError, ClientDocument};
use self::document::{check_url, is_json, ttl, validate};
use crate::domain::oauth::address::is_public;

mod document;

/// How documents are fetched and kept.
#[derive(Debug, Clone)]
pub struct CimdSettings {
    /// Allow loopback hosts (`localhost`, `127.0.0.1`): tests only.
    pub allow_loopback: bool,
    /// Trust anchors added to the Web PKI roots: tests only.
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// The whole fetch: name resolution, connection, TLS and the response.
    pub timeout: Duration,
    /// The largest document accepted, in bytes.
    pub max_bytes: usize,
    /// Documents kept in memory; the oldest goes first.
    pub max_entries: usize,
}

impl Default for CimdSettings {
    fn default() -> Self {
        CimdSettings {
            allow_loopback: false,
            extra_roots: Vec::new(),
            timeout: Duration::from_secs(5),
            max_bytes: 5 * 1024,
            max_entries: 256,
        }
    }
}

/// How old a cached document may be and still stand in for a failed fetch.
const STALE_LIMIT_DAYS: i64 = 7;

/// keyward's pinned copies of well-known clients' documents, used only when the live fetch
/// fails (or serves an invalid document). Each must match what its client publishes.
const PINNED: [(&str, &str); 3] = [
    // Claude connectors (claude.ai, Claude Desktop): keyward's pinned copy, used only when the
    // live fetch fails.
    (
        "https://claude.ai/oauth/mcp-oauth-client-metadata",
        include_str!("pinned/claude.json"),
    ),
    // Claude Code: keyward's pinned copy, used only when the live fetch fails.
    (
        "https://claude.ai/oauth/claude-code-client-metadata",
        include_str!("pinned/claude-code.json"),
    ),
    // Visual Studio Code: keyward's pinned copy, used only when the live fetch fails.
    (
        "https://vscode.dev/oauth/client-metadata.json",
        include_str!("pinned/vscode.json"),
    ),
];

struct Entry {
    doc: ClientDocument,
    fetched: DateTime<Utc>,
    expires: DateTime<Utc>,
}

/// Fetches, checks and caches client metadata documents.
pub struct Cimd {
    settings: CimdSettings,
    tls: TlsConnector,
    cache: Mutex<HashMap<String, Entry>>,
    pinned: HashMap<String, ClientDocument>,
}

impl std::fmt::Debug for Cimd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cimd")
            .field("settings", &self.settings)
            .field("pinned", &self.pinned.len())
            .finish_non_exhaustive()
    }
}

impl Cimd {
    pub fn new(settings: CimdSettings) -> Self {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for root in &settings.extra_roots {
            if let Err(e) = roots.add(root.clone()) {
                tracing::error!(error = %e, "an extra root for client metadata fetches is unusable");
            }
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        #[expect(
            clippy::expect_used,
            reason = "ring supports the safe default protocol versions: this cannot fail"
        )]
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports TLS 1.2 and 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let pinned = PINNED
            .iter()
            .filter_map(|(id, text)| match validate(id, text.as_bytes()) {
                Ok(doc) => Some((
                    (*id).to_owned(),
                    ClientDocument {
                        pinned: true,
                        ..doc
                    },
                )),
                Err(e) => {
                    tracing::error!(client_id = id, error = %e, "a pinned client metadata document is invalid");
                    None
                }
            })
            .collect();
        Cimd {
            settings,
            tls: TlsConnector::from(Arc::new(config)),
            cache: Mutex::new(HashMap::new()),
            pinned,
        }
    }

    /// Whether a fresh copy of `client_id`'s document is cached (a request for it fetches
    /// nothing).
    pub fn is_fresh(&self, client_id: &str, now: DateTime<Utc>) -> bool {
        self.fresh(client_id, now).is_some()
    }

    /// The checked document of `client_id`: from the cache while fresh, else fetched; when the
    /// fetch fails, a cached copy up to 7 days old, else keyward's pinned copy if it has one.
    pub async fn fetch(
        &self,
        client_id: &str,
        now: DateTime<Utc>,
    ) -> Result<ClientDocument, CimdError> {
        let url = match check_url(client_id, self.settings.allow_loopback) {
            Ok(url) => url,
            Err(e) => {
                tracing::warn!(
                    error = e.kind(),
                    "client_id refused as a metadata document address"
                );
                return Err(e);
            }
        };
        let host = url.host_str().unwrap_or_default();
        if let Some(doc) = self.fresh(client_id, now) {
            tracing::debug!(host, cached = true, "client metadata document");
            return Ok(doc);
        }
        let live = tokio::time::timeout(self.settings.timeout, self.live(&url)).await;
        let error = match live.unwrap_or(Err(CimdError::Timeout)) {
            Ok((doc, ttl)) => {
                self.remember(client_id, &doc, now, ttl);
                tracing::debug!(host, cached = false, "client metadata document");
                return Ok(doc);
            }
            Err(e) => e,
        };
        if let Some(doc) = self.stale(client_id, now) {
            tracing::warn!(
                host,
                error = error.kind(),
                served = "stale",
                "client metadata document could not be fetched; serving the cached copy"
            );
            return Ok(doc);
        }
        if let Some(doc) = self.pinned.get(client_id) {
            tracing::warn!(
                host,
                error = error.kind(),
                served = "pinned",
                "client metadata document could not be fetched; serving keyward's pinned copy"
            );
            return Ok(doc.clone());
        }
        tracing::warn!(
            host,
            error = error.kind(),
            "client metadata document could not be fetched"
        );
        Err(error)
    }

    /// Resolve, check every address, connect to a checked one, TLS, one GET, the body.
    async fn live(&self, url: &Url) -> Result<(ClientDocument, u64), CimdError> {
        let port = url.port_or_known_default().unwrap_or(443);
        let (addrs, name) = match url.host() {
            Some(Host::Domain(domain)) => {
                let addrs = tokio::net::lookup_host((domain, port))
                    .await
                    .map_err(|_| CimdError::Dns(domain.to_owned()))?
                    .collect::<Vec<_>>();
                let name = ServerName::try_from(domain.to_owned())
                    .map_err(|_| CimdError::BadUrl("its host is not a valid DNS name".into()))?;
                (addrs, name)
            }
            Some(Host::Ipv4(ip)) => (vec![SocketAddr::new(ip.into(), port)], ip.into()),
            Some(Host::Ipv6(ip)) => (vec![SocketAddr::new(ip.into(), port)], ip.into()),
            None => return Err(CimdError::BadUrl("it has no host".into())),
        };
        if addrs.is_empty() {
            return Err(CimdError::Dns(
                url.host_str().unwrap_or_default().to_owned(),
            ));
        }
        if !addrs.iter().all(|a| self.may_fetch_from(a.ip())) {
            return Err(CimdError::PrivateAddress);
        }
        // Port 443 only (tests excepted): any other port would let a caller aim the fetch at
        // whatever service answers there.
        if !self.settings.allow_loopback && url.port().is_some() {
            return Err(CimdError::BadUrl(
                "it must use https's own port (443)".into(),
            ));
        }
        let tcp = connect(&addrs).await?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| CimdError::Tls(e.to_string()))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| CimdError::Io(e.to_string()))?;
        let _connection = AbortOnDrop(tokio::spawn(async move {
            // Its failure shows in the request's own result.
            let _ = connection.await;
        }));
        let authority = &url[Position::BeforeHost..Position::BeforePath];
        let target = &url[Position::BeforePath..Position::AfterQuery];
        let request = Request::get(target)
            .header(HOST, authority)
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, "keyward")
            .body(Empty::<Bytes>::new())
            .map_err(|_| CimdError::BadUrl("its path cannot be requested".into()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| CimdError::Io(e.to_string()))?;
        if response.status() != StatusCode::OK {
            return Err(CimdError::Status(response.status().as_u16()));
        }
        if !is_json(response.headers()) {
            return Err(CimdError::NotJson);
        }
        let declared = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.settings.max_bytes as u64) {
            return Err(CimdError::TooLarge);
        }
        let ttl = ttl(response.headers());
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| CimdError::Io(e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                if bytes.len() + data.len() > self.settings.max_bytes {
                    return Err(CimdError::TooLarge);
                }
                bytes.extend_from_slice(&data);
            }
        }
        Ok((validate(url.as_str(), &bytes)?, ttl))
    }

    fn may_fetch_from(&self, ip: IpAddr) -> bool {
        is_public(ip) || (self.settings.allow_loopback && ip.to_canonical().is_loopback())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn fresh(&self, client_id: &str, now: DateTime<Utc>) -> Option<ClientDocument> {
        let cache = self.lock();
        let entry = cache.get(client_id)?;
        (now < entry.expires).then(|| entry.doc.clone())
    }

    fn stale(&self, client_id: &str, now: DateTime<Utc>) -> Option<ClientDocument> {
        let mut cache = self.lock();
        let entry = cache.get(client_id)?;
        if now - entry.fetched < TimeDelta::days(STALE_LIMIT_DAYS) {
            return Some(entry.doc.clone());
        }
        cache.remove(client_id);
        None
    }

    fn remember(&self, client_id: &str, doc: &ClientDocument, now: DateTime<Utc>, ttl: u64) {
        if self.settings.max_entries == 0 {
            return;
        }
        let mut cache = self.lock();
        if !cache.contains_key(client_id) && cache.len() >= self.settings.max_entries {
            let oldest = cache
                .iter()
                .min_by_key(|(_, e)| e.fetched)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                cache.remove(&oldest);
            }
        }
        let ttl = i64::try_from(ttl).unwrap_or(i64::MAX);
        cache.insert(
            client_id.to_owned(),
            Entry {
                doc: doc.clone(),
                fetched: now,
                expires: now + TimeDelta::seconds(ttl),
            },
        );
    }
}

/// Aborts the spawned connection task when the fetch ends or is dropped (a timeout).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The first of the checked addresses that accepts a connection.
async fn connect(addrs: &[SocketAddr]) -> Result<TcpStream, CimdError> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(CimdError::Io(
        last.map_or_else(|| "no address".to_owned(), |e| e.to_string()),
    ))
}

#[cfg(test)]
mod tests;
