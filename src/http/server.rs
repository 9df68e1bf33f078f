//! Serving connections, bounded: at most `--max-connections` at once, and `--max-connections-
//! per-ip` from one client address (an IPv6 /64 counts as one; a trusted proxy's address is
//! exempt, since every client behind it shares it). At a cap, the oldest *idle* connection
//! under it (one with no request being answered: silent since it opened, or a keep-alive
//! waiting) is closed to make room; only when every one is busy is the newcomer closed
//! instead. So silent sockets, from any number of addresses or from the very address a real
//! client shares, cannot keep a request from being served, and hold no descriptors beyond the
//! caps. Each connection must send its request headers within `--header-read-timeout`, which
//! hyper also applies to a keep-alive connection waiting for its next request; and a response
//! the client stops reading is abandoned after `--request-timeout` of no progress.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use futures::StreamExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The peer address of a connection, for `ConnectInfo`.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

/// The connection bounds, from the command line.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    pub max: usize,
    pub per_ip: usize,
    pub header_read_timeout: Duration,
    /// How long a response may make no progress because the client does not read it.
    pub write_timeout: Duration,
    /// Proxies (not counted per address).
    pub trusted: Vec<IpNet>,
}

impl ConnLimits {
    /// Generous bounds (for tools and examples that serve on loopback).
    pub fn loopback() -> Self {
        ConnLimits {
            max: 4096,
            per_ip: 4096,
            header_read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            trusted: Vec::new(),
        }
    }
}

/// One open connection, as the gate sees it.
pub struct Conn {
    id: u64,
    address: Option<String>,
    opened: Instant,
    /// Requests being answered (a streamed answer counts until its last byte).
    busy: AtomicUsize,
    /// Cancelled to close the connection (evicted to make room).
    evict: CancellationToken,
}

impl Conn {
    fn idle(&self) -> bool {
        self.busy.load(Ordering::SeqCst) == 0
    }
}

#[derive(Default)]
struct Open {
    all: HashMap<u64, Arc<Conn>>,
    per_address: HashMap<String, usize>,
}

/// Counts open connections, in all and per client address, and picks which to close.
pub struct Gate {
    limits: ConnLimits,
    open: Mutex<Open>,
    next_id: AtomicU64,
}

/// Held for as long as one admitted connection is open.
pub struct Admitted {
    gate: Arc<Gate>,
    conn: Arc<Conn>,
}

impl Gate {
    pub fn new(limits: ConnLimits) -> Arc<Self> {
        Arc::new(Gate {
            limits,
            open: Mutex::new(Open::default()),
            next_id: AtomicU64::new(1),
        })
    }

    pub fn limits(&self) -> &ConnLimits {
        &self.limits
    }

    /// Admits a connection from `ip`, closing the oldest idle connection in its way when a cap
    /// is reached; `None` when every connection in the way is busy.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admitted> {
        let proxy = self.limits.trusted.iter().any(|n| n.contains(&ip));
        let address = (!proxy).then(|| crate::domain::lockout::address_key(ip));
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(a) = &address
            && open.per_address.get(a).copied().unwrap_or(0) >= self.limits.per_ip
        {
            let victim = Self::oldest_idle(&open, |c| c.address.as_ref() == Some(a))?;
            Self::evict(&mut open, &victim);
        }
        if open.all.len() >= self.limits.max {
            let victim = Self::oldest_idle(&open, |_| true)?;
            Self::evict(&mut open, &victim);
        }
        let conn = Arc::new(Conn {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            address,
            opened: Instant::now(),
            busy: AtomicUsize::new(0),
            evict: CancellationToken::new(),
        });
        if let Some(a) = &conn.address {
            *open.per_address.entry(a.clone()).or_insert(0) += 1;
        }
        open.all.insert(conn.id, conn.clone());
        Some(Admitted {
            gate: self.clone(),
            conn,
        })
    }

    fn oldest_idle(open: &Open, pick: impl Fn(&Conn) -> bool) -> Option<Arc<Conn>> {
        open.all
            .values()
            .filter(|c| pick(c) && c.idle())
            .min_by_key(|c| c.opened)
            .cloned()
    }

    fn evict(open: &mut Open, victim: &Arc<Conn>) {
        Self::forget(open, victim);
        victim.evict.cancel();
        tracing::debug!("closed an idle connection to make room under the connection caps");
    }

    fn forget(open: &mut Open, conn: &Conn) {
        if open.all.remove(&conn.id).is_none() {
            return;
        }
        if let Some(a) = &conn.address
            && let Some(n) = open.per_address.get_mut(a)
        {
            *n -= 1;
            if *n == 0 {
                open.per_address.remove(a);
            }
        }
    }

    /// Open connections, in all.
    pub fn open(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .all
            .len()
    }
}

impl Admitted {
    pub fn conn(&self) -> Arc<Conn> {
        self.conn.clone()
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.gate.open.lock().unwrap_or_else(|e| e.into_inner());
        Gate::forget(&mut open, &self.conn);
    }
}

/// An admitted connection's stream: its place under the caps is given back when it closes,
/// and a write the client leaves blocked fails after the write timeout.
pub struct Counted<S> {
    io: S,
    admitted: Admitted,
    write_timeout: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> Counted<S> {
    pub fn new(io: S, admitted: Admitted, write_timeout: Duration) -> Self {
        Counted {
            io,
            admitted,
            write_timeout,
            stalled: None,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.io
    }

    pub fn conn(&self) -> Arc<Conn> {
        self.admitted.conn()
    }

    /// A write that made no progress: keeps waiting, or fails once it has waited too long.
    fn blocked<T>(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<T>> {
        let timeout = self.write_timeout;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading the response",
            )));
        }
        Poll::Pending
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
        match Pin::new(&mut self.io).poll_write(cx, buf) {
            Poll::Pending => self.blocked(cx),
            done => {
                self.stalled = None;
                done
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Pending => self.blocked(cx),
            done => {
                self.stalled = None;
                done
            }
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.blocked(cx),
            done => {
                self.stalled = None;
                done
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Where connections come from (plain TCP or TLS), already admitted by the gate.
pub trait Incoming: Send + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&mut self) -> impl Future<Output = Option<(Self::Io, SocketAddr, Arc<Conn>)>> + Send;
}

/// Marks a connection busy while one request is answered (taken when its head has been read,
/// given back when the response is written).
struct Busy(Arc<Conn>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How long shutdown waits for connections to finish their current responses.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(30);

/// Serves `router` on every connection from `incoming` until `shutdown`; then lets requests
/// in progress finish (connections close once their current response has ended), for at most
/// `SHUTDOWN_WAIT`.
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
        let (io, addr, conn) = tokio::select! {
            () = shutdown.cancelled() => break,
            next = incoming.accept() => match next {
                Some(c) => c,
                None => break,
            },
        };
        let evicted = conn.evict.clone();
        let answering = conn.clone();
        let svc = router
            .clone()
            .map_request(move |mut req: Request<_>| {
                conn.busy.fetch_add(1, Ordering::SeqCst);
                req.extensions_mut().insert(ConnectInfo(Peer(addr)));
                req
            })
            .map_response(move |res| release_when_sent(res, Busy(answering.clone())));
        let served = http.serve_connection(TokioIo::new(io), TowerToHyperService::new(svc));
        let served = graceful.watch(served);
        tokio::spawn(async move {
            tokio::select! {
                r = served => if let Err(e) = r {
                    tracing::debug!(client = %addr, error = %e, "connection ended with an error");
                },
                () = evicted.cancelled() => {}
            }
        });
    }
    drop(incoming);
    if tokio::time::timeout(SHUTDOWN_WAIT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open at the end of the shutdown wait; closing them");
    }
}

/// The connection stays busy until the response is written: at once for a complete body, at
/// its last chunk for a stream.
fn release_when_sent(res: Response, busy: Busy) -> Response {
    if axum::body::HttpBody::size_hint(res.body())
        .exact()
        .is_some()
    {
        // A complete body: written in one go (and a stalled write times out).
        drop(busy);
        return res;
    }
    res.map(|body| {
        Body::from_stream(body.into_data_stream().map(move |chunk| {
            let _until_the_stream_ends = &busy;
            chunk
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn limits(per_ip: usize, max: usize) -> ConnLimits {
        ConnLimits {
            max,
            per_ip,
            header_read_timeout: Duration::from_secs(1),
            write_timeout: Duration::from_millis(100),
            trusted: vec!["10.0.0.0/8".parse().unwrap()],
        }
    }

    #[test]
    fn at_a_cap_the_oldest_idle_connection_makes_way() {
        let gate = Gate::new(limits(2, 10));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let first = gate.admit(ip).unwrap();
        let second = gate.admit(ip).unwrap();
        // The second is answering a request: not a candidate.
        second.conn().busy.fetch_add(1, Ordering::SeqCst);
        let third = gate.admit(ip).unwrap();
        assert!(
            first.conn().evict.is_cancelled(),
            "the oldest idle one went"
        );
        assert!(!second.conn().evict.is_cancelled());
        // Both left are busy: a newcomer is the one refused.
        third.conn().busy.fetch_add(1, Ordering::SeqCst);
        assert!(gate.admit(ip).is_none());
        // A proxy's address is not counted per address.
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let held: Vec<_> = (0..5).map(|_| gate.admit(proxy).unwrap()).collect();
        assert_eq!(gate.open(), 7);
        drop(held);
        drop(first);
        assert_eq!(gate.open(), 2);
    }

    #[tokio::test]
    async fn a_response_the_client_stops_reading_times_out() {
        let gate = Gate::new(limits(2, 10));
        let admitted = gate.admit("192.0.2.1".parse().unwrap()).unwrap();
        let (server_end, _client_end_never_read) = tokio::io::duplex(64);
        let mut io = Counted::new(server_end, admitted, Duration::from_millis(100));
        let err = io.write_all(&[0u8; 4096]).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    }
}
