//! Accepting connections: plain TCP, or TLS with rustls. Every socket is first admitted by the
//! connection gate (or closed at once), then gets TCP_NODELAY (without it each SSE reply stalls
//! ~40 ms behind Nagle and delayed ACKs). TLS handshakes run in their own tasks, so a slow
//! client cannot hold up accepting others. When the process runs out of file descriptors,
//! accepting backs off (up to a second) and says so once every ten seconds, instead of
//! retrying in a hot loop.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;

use super::server::{Conn, Counted, Gate, Incoming};

/// Plain TCP.
pub struct PlainListener {
    tcp: TcpListener,
    gate: Arc<Gate>,
    backoff: Backoff,
}

impl PlainListener {
    pub fn new(tcp: TcpListener, gate: Arc<Gate>) -> Self {
        PlainListener {
            tcp,
            gate,
            backoff: Backoff::default(),
        }
    }
}

impl Incoming for PlainListener {
    type Io = Counted<TcpStream>;

    async fn accept(&mut self) -> Option<(Self::Io, SocketAddr, Arc<Conn>)> {
        loop {
            let (stream, addr) = match self.tcp.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    self.backoff.wait(&e).await;
                    continue;
                }
            };
            self.backoff.reset();
            let Some(admitted) = self.gate.admit(addr.ip()) else {
                refused(addr);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let conn = admitted.conn();
            let write_timeout = self.gate.limits().write_timeout;
            return Some((Counted::new(stream, admitted, write_timeout), addr, conn));
        }
    }
}

fn refused(addr: SocketAddr) {
    // A flood would make a line per socket: debug only (the caps are in the README).
    tracing::debug!(client = %addr, "connection refused: over --max-connections or --max-connections-per-ip");
}

/// Backing off from failed accepts (out of file descriptors, above all).
#[derive(Default)]
struct Backoff {
    delay: Duration,
    last_log: Option<Instant>,
    quiet: u64,
}

impl Backoff {
    async fn wait(&mut self, e: &std::io::Error) {
        // EMFILE or ENFILE: nothing can be accepted until something closes; waiting longer
        // each time keeps the loop from spinning.
        let exhausted = matches!(e.raw_os_error(), Some(23 | 24));
        self.delay = if exhausted {
            (self.delay * 2).clamp(Duration::from_millis(100), Duration::from_secs(1))
        } else {
            Duration::from_millis(50)
        };
        if self
            .last_log
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            tracing::warn!(error = %e, failures_since_last_report = self.quiet, backoff_ms = self.delay.as_millis() as u64, "accept failed; backing off");
            self.last_log = Some(Instant::now());
            self.quiet = 0;
        } else {
            self.quiet += 1;
        }
        tokio::time::sleep(self.delay).await;
    }

    fn reset(&mut self) {
        self.delay = Duration::ZERO;
    }
}

/// Loads a PEM certificate chain and private key into a rustls server configuration.
pub fn tls_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| anyhow::anyhow!("cannot read TLS certificate {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("invalid TLS certificate {}: {e}", cert.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "no certificate found in {}",
        cert.display()
    );
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow::anyhow!("cannot read TLS private key {}: {e}", key.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("TLS configuration: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| anyhow::anyhow!("TLS certificate and key do not match: {e}"))?;
    // HTTP/1.1 only: keyward's server speaks no HTTP/2, and advertising h2 makes clients that
    // prefer it (curl, browsers) negotiate it and then fail.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// TLS: sockets are admitted, then their handshakes run in tasks of their own.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<Counted<TcpStream>>, SocketAddr, Arc<Conn>)>,
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>, gate: Arc<Gate>) -> Self {
        let (tx, ready) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            let mut backoff = Backoff::default();
            loop {
                let (stream, addr) = match tcp.accept().await {
                    Ok(s) => s,
                    Err(e) => {
                        backoff.wait(&e).await;
                        continue;
                    }
                };
                backoff.reset();
                if tx.is_closed() {
                    break;
                }
                let Some(admitted) = gate.admit(addr.ip()) else {
                    refused(addr);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let conn = admitted.conn();
                let stream = Counted::new(stream, admitted, gate.limits().write_timeout);
                let acceptor = acceptor.clone();
                let ready = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = ready.send((tls, addr, conn)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(client = %addr, error = %e, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(client = %addr, "TLS handshake timed out"),
                    }
                });
            }
        });
        TlsListener { ready }
    }
}

impl Incoming for TlsListener {
    type Io = TlsStream<Counted<TcpStream>>;

    async fn accept(&mut self) -> Option<(Self::Io, SocketAddr, Arc<Conn>)> {
        self.ready.recv().await
    }
}
