//! Serving connections, bounded: at most `--max-connections` at once, and `--max-connections-
//! per-ip` from one client address (an IPv6 /64 counts as one; a trusted proxy's address is
//! exempt, since every client behind it shares it). A connection over either cap is closed
//! as soon as it is accepted, so a flood of silent sockets holds no file descriptors beyond
//! the caps. Each connection must send its request headers within `--header-read-timeout`,
//! which hyper also applies to a keep-alive connection waiting for its next request; so an
//! idle or trickling socket is closed after that long, whatever else it does.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::listener::Peer;

/// The connection bounds, from the command line.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    pub max: usize,
    pub per_ip: usize,
    pub header_read_timeout: Duration,
    /// Proxies (not counted per address).
    pub trusted: Vec<IpNet>,
}

/// Counts open connections, in all and per client address.
pub struct Gate {
    limits: ConnLimits,
    open: Mutex<(usize, HashMap<String, usize>)>,
}

/// Held for as long as one admitted connection is open.
pub struct Admitted {
    gate: Arc<Gate>,
    address: Option<String>,
}

impl Gate {
    pub fn new(limits: ConnLimits) -> Arc<Self> {
        Arc::new(Gate {
            limits,
            open: Mutex::new((0, HashMap::new())),
        })
    }

    /// Admits a connection from `ip`, or `None` when it would exceed a cap.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admitted> {
        let proxy = self.limits.trusted.iter().any(|n| n.contains(&ip));
        let address = (!proxy).then(|| crate::domain::lockout::address_key(ip));
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.0 >= self.limits.max {
            return None;
        }
        if let Some(a) = &address {
            let n = open.1.entry(a.clone()).or_insert(0);
            if *n >= self.limits.per_ip {
                return None;
            }
            *n += 1;
        }
        open.0 += 1;
        Some(Admitted {
            gate: self.clone(),
            address,
        })
    }

    /// Open connections, in all.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).0
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.gate.open.lock().unwrap_or_else(|e| e.into_inner());
        open.0 = open.0.saturating_sub(1);
        if let Some(a) = &self.address
            && let Some(n) = open.1.get_mut(a)
        {
            *n -= 1;
            if *n == 0 {
                open.1.remove(a);
            }
        }
    }
}

/// An admitted connection's stream: its place under the caps is given back when it closes.
pub struct Counted<S> {
    io: S,
    _admitted: Admitted,
}

impl<S> Counted<S> {
    pub fn new(io: S, admitted: Admitted) -> Self {
        Counted {
            io,
            _admitted: admitted,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.io
    }
}

impl ConnLimits {
    /// Generous bounds (for tools and examples that serve on loopback).
    pub fn loopback() -> Self {
        ConnLimits {
            max: 4096,
            per_ip: 4096,
            header_read_timeout: Duration::from_secs(10),
            trusted: Vec::new(),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Where connections come from (plain TCP or TLS), already admitted by the gate.
pub trait Incoming: Send + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&mut self) -> impl Future<Output = Option<(Self::Io, SocketAddr)>> + Send;
}

/// Serves `router` on every connection from `incoming` until `shutdown`; then lets requests
/// in progress finish (connections close once their current response has ended).
pub async fn serve<I: Incoming>(
    mut incoming: I,
    router: Router,
    limits: &ConnLimits,
    shutdown: CancellationToken,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    loop {
        let (io, addr) = tokio::select! {
            () = shutdown.cancelled() => break,
            next = incoming.accept() => match next {
                Some(conn) => conn,
                None => break,
            },
        };
        let svc = router.clone().map_request(move |mut req: Request<_>| {
            req.extensions_mut().insert(ConnectInfo(Peer(addr)));
            req
        });
        let conn = http.serve_connection(TokioIo::new(io), TowerToHyperService::new(svc));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(client = %addr, error = %e, "connection ended with an error");
            }
        });
    }
    drop(incoming);
    graceful.shutdown().await;
}
