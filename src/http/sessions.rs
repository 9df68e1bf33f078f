//! MCP sessions, bounded and bound to the principal that opened them. rmcp keeps the sessions;
//! this wrapper around its session manager keeps, for each one, who sent its `initialize` (by
//! key, operator, legacy or development id, so a rotated key keeps its session), when it was
//! last used, and which request ids are in flight. From that:
//! - another principal naming a session's id gets the same 404 as for an unknown one;
//! - a principal at its cap (`--max-sessions-per-principal`) loses its least recently used
//!   idle session to the new one (evicted, not refused: in legacy mode every agent is one
//!   principal); past the global cap (`--max-sessions`) new sessions are refused (the HTTP
//!   layer answers 503 before rmcp sees the request; this wrapper holds the bound under races);
//! - a request id already in flight in the session, or a second `initialize`, is answered
//!   with JSON-RPC `-32600`, and every streamed answer is cut at the request timeout (the tool's
//!   own, longer one for long-running tools) with a JSON-RPC error for its id.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use rmcp::model::{
    ClientJsonRpcMessage, ClientRequest, ErrorCode, ErrorData, GetExtensions, RequestId,
    ServerJsonRpcMessage,
};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::session::{
    ServerSseMessage, SessionId, SessionManager,
};

use crate::domain::catalog::ToolName;
use crate::domain::principal::{Actor, Principal};

/// Who a session belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    Key(String),
    Operator(String),
    Legacy,
    Development,
}

impl Owner {
    pub fn of(p: &Principal) -> Self {
        match p.actor() {
            Actor::Key { id, .. } => Owner::Key(id.clone()),
            Actor::Operator { id, .. } => Owner::Operator(id.clone()),
            Actor::Legacy => Owner::Legacy,
            Actor::Development => Owner::Development,
        }
    }
}

/// Bounds and clocks for sessions, from the command line.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub max: usize,
    pub per_principal: usize,
    pub idle: Duration,
    pub request_timeout: Duration,
    pub long_request_timeout: Duration,
}

struct Entry {
    owner: Owner,
    last_used: Instant,
    in_flight: Vec<RequestId>,
}

/// Every live session this process holds.
pub struct SessionTable {
    limits: SessionLimits,
    entries: Mutex<HashMap<Arc<str>, Entry>>,
}

/// JSON-RPC "invalid request".
const INVALID_REQUEST: ErrorCode = ErrorCode(-32600);
/// keyward's code for an answer that did not come within the request timeout.
pub const REQUEST_TIMEOUT: ErrorCode = ErrorCode(-32001);

impl SessionTable {
    pub fn new(limits: SessionLimits) -> Self {
        SessionTable {
            limits,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn limits(&self) -> SessionLimits {
        self.limits
    }

    /// Whether `p` may use session `id`: only if it opened it. A session with no recorded
    /// owner (unknown here, or one whose opener could not be read) answers nobody.
    pub fn may_use(&self, id: &str, p: &Principal) -> bool {
        self.lock().get(id).is_some_and(|e| e.owner == Owner::of(p))
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a new session for `p` would exceed the global cap (one that replaces `p`'s own
    /// least recently used session adds none).
    pub fn full_for(&self, p: &Principal) -> bool {
        let entries = self.lock();
        // The cheap check first: this runs for every request that carries no session id.
        if entries.len() < self.limits.max {
            return false;
        }
        let owner = Owner::of(p);
        entries.values().filter(|e| e.owner == owner).count() < self.limits.per_principal
    }

    fn contains(&self, id: &str) -> bool {
        self.lock().contains_key(id)
    }

    fn ids(&self) -> Vec<Arc<str>> {
        self.lock().keys().cloned().collect()
    }

    fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Records `id` as `owner`'s, unless the global cap is reached. Returns the sessions to
    /// close first: the owner's least recently used beyond its own cap (idle ones first).
    fn admit(&self, id: &SessionId, owner: Owner) -> Result<Vec<Arc<str>>, ()> {
        let mut entries = self.lock();
        let mut mine: Vec<(&Arc<str>, &Entry)> =
            entries.iter().filter(|(_, e)| e.owner == owner).collect();
        let over = (mine.len() + 1).saturating_sub(self.limits.per_principal);
        mine.sort_by_key(|(_, e)| (!e.in_flight.is_empty(), e.last_used));
        let evict: Vec<Arc<str>> = mine.iter().take(over).map(|(k, _)| (*k).clone()).collect();
        // A principal replacing its own session adds none.
        if entries.len() - evict.len() >= self.limits.max {
            return Err(());
        }
        for k in &evict {
            entries.remove(k);
        }
        entries.insert(
            id.clone(),
            Entry {
                owner,
                last_used: Instant::now(),
                in_flight: Vec::new(),
            },
        );
        Ok(evict)
    }

    fn touch(&self, id: &str) {
        if let Some(e) = self.lock().get_mut(id) {
            e.last_used = Instant::now();
        }
    }

    /// Marks request `rid` in flight in session `id`; `false` when it already is.
    fn start(&self, id: &str, rid: &RequestId) -> bool {
        let mut entries = self.lock();
        let Some(e) = entries.get_mut(id) else {
            return true;
        };
        e.last_used = Instant::now();
        if e.in_flight.contains(rid) {
            return false;
        }
        e.in_flight.push(rid.clone());
        true
    }

    fn finish(&self, id: &str, rid: &RequestId) {
        if let Some(e) = self.lock().get_mut(id) {
            e.in_flight.retain(|r| r != rid);
            e.last_used = Instant::now();
        }
    }
}

/// rmcp's in-memory session manager, with the table above kept beside it.
pub struct BoundSessions {
    inner: LocalSessionManager,
    table: Arc<SessionTable>,
    /// Table entries beyond this trigger a sweep of sessions rmcp has since dropped (idle).
    sweep_at: Mutex<usize>,
}

const FIRST_SWEEP: usize = 64;

impl BoundSessions {
    pub fn new(table: Arc<SessionTable>) -> Self {
        let mut inner = LocalSessionManager::default();
        inner.session_config.keep_alive = Some(table.limits.idle);
        // Each session buffers this many messages; a client has few in flight at once, and
        // every slot is memory held for as long as the session lives.
        inner.session_config.channel_capacity = 8;
        BoundSessions {
            inner,
            table,
            sweep_at: Mutex::new(FIRST_SWEEP),
        }
    }

    /// Forgets sessions rmcp no longer has (closed after being idle).
    async fn sweep(&self) {
        let due = {
            let at = *self.sweep_at.lock().unwrap_or_else(|e| e.into_inner());
            self.table.len() >= at
        };
        if !due {
            return;
        }
        for id in self.table.ids() {
            if !self.inner.has_session(&id).await.unwrap_or(true) {
                self.table.forget(&id);
            }
        }
        *self.sweep_at.lock().unwrap_or_else(|e| e.into_inner()) =
            (2 * self.table.len()).max(FIRST_SWEEP);
    }

    /// The deadline for answering `request`.
    fn timeout_for(&self, request: &ClientRequest) -> Duration {
        let limits = self.table.limits;
        match request {
            ClientRequest::CallToolRequest(r)
                if ToolName::parse(&r.params.name).is_some_and(ToolName::long_running) =>
            {
                limits.long_request_timeout
            }
            _ => limits.request_timeout,
        }
    }
}

fn principal_of(message: &ClientJsonRpcMessage) -> Option<Principal> {
    let ClientJsonRpcMessage::Request(req) = message else {
        return None;
    };
    req.request
        .extensions()
        .get::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Principal>())
        .cloned()
}

fn error(code: ErrorCode, message: &'static str, id: &RequestId) -> ServerJsonRpcMessage {
    ServerJsonRpcMessage::error(ErrorData::new(code, message, None), Some(id.clone()))
}

/// One message as a whole response stream.
fn single(message: ServerJsonRpcMessage) -> Answer {
    Answer::Single(Some(ServerSseMessage::from_message(message)))
}

impl SessionManager for BoundSessions {
    type Error = <LocalSessionManager as SessionManager>::Error;
    type Transport = <LocalSessionManager as SessionManager>::Transport;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        self.sweep().await;
        self.inner.create_session().await
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        let owner = principal_of(&message).map(|p| Owner::of(&p));
        let rid = match &message {
            ClientJsonRpcMessage::Request(r) => Some(r.id.clone()),
            _ => None,
        };
        if let (Some(owner), Some(rid)) = (owner, rid) {
            match self.table.admit(id, owner) {
                Ok(evicted) => {
                    for old in evicted {
                        tracing::info!(
                            "evicted a principal's least recently used MCP session (at its session cap)"
                        );
                        let _ = self.inner.close_session(&old).await;
                    }
                }
                Err(()) => {
                    // Past the global cap under a race the HTTP layer could not see.
                    let _ = self.inner.close_session(id).await;
                    return Ok(error(
                        ErrorCode(-32000),
                        "the server holds as many MCP sessions as it allows; try again shortly",
                        &rid,
                    ));
                }
            }
        }
        self.inner.initialize_session(id, message).await
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        self.inner.has_session(id).await
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        self.table.forget(id);
        self.inner.close_session(id).await
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let ClientJsonRpcMessage::Request(req) = &message else {
            self.table.touch(id);
            return Ok(Answer::Inner(Box::pin(
                self.inner.create_stream(id, message).await?,
            )));
        };
        let rid = req.id.clone();
        if !self.table.contains(id) {
            return Ok(single(error(
                ErrorCode(-32000),
                "this session was closed (evicted at its principal's session cap); initialize a \
                 new one",
                &rid,
            )));
        }
        if matches!(req.request, ClientRequest::InitializeRequest(_)) {
            return Ok(single(error(
                INVALID_REQUEST,
                "this session is already initialized; initialize only once, as its first message",
                &rid,
            )));
        }
        if !self.table.start(id, &rid) {
            return Ok(single(error(
                INVALID_REQUEST,
                "a request with this id is already in flight in this session; use a new id",
                &rid,
            )));
        }
        let timeout = self.timeout_for(&req.request);
        let guard = InFlight {
            table: self.table.clone(),
            session: id.clone(),
            rid: rid.clone(),
        };
        // Closed between rmcp's check and here: an answer, not a 500.
        let Ok(inner) = self.inner.create_stream(id, message).await else {
            drop(guard);
            return Ok(single(error(
                ErrorCode(-32000),
                "this session was closed; initialize a new one",
                &rid,
            )));
        };
        Ok(Answer::Deadline(Deadline {
            inner: Some(Box::pin(inner)),
            sleep: Box::pin(tokio::time::sleep(timeout)),
            rid,
            timeout,
            drain_for: self.table.limits.long_request_timeout,
            guard: Some(guard),
            ended: false,
            cut: false,
        }))
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        self.table.touch(id);
        self.inner.accept_message(id, message).await
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.table.touch(id);
        self.inner.create_standalone_stream(id).await
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.table.touch(id);
        self.inner.resume(id, last_event_id).await
    }
}

/// Removes a request id from its session's in-flight list when its answer stream ends.
struct InFlight {
    table: Arc<SessionTable>,
    session: SessionId,
    rid: RequestId,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.table.finish(&self.session, &self.rid);
    }
}

type Inner = Pin<Box<dyn Stream<Item = ServerSseMessage> + Send + Sync + 'static>>;

/// A response stream: rmcp's, cut at a deadline with a JSON-RPC error for its request; or a
/// single message keyward answers itself.
enum Answer {
    Inner(Inner),
    Single(Option<ServerSseMessage>),
    Deadline(Deadline),
}

/// rmcp's answer to one request, with its deadline. The request id stays reserved until rmcp
/// has answered, even when the client was given up on (deadline, disconnect): rmcp routes an
/// answer by id, so a new request reusing it before then would receive the old one's answer.
struct Deadline {
    inner: Option<Inner>,
    sleep: Pin<Box<tokio::time::Sleep>>,
    rid: RequestId,
    timeout: Duration,
    /// How long an abandoned answer is waited for in the background.
    drain_for: Duration,
    guard: Option<InFlight>,
    /// rmcp's stream has ended (its answer was given).
    ended: bool,
    /// The deadline passed and the client was told so.
    cut: bool,
}

impl Stream for Answer {
    type Item = ServerSseMessage;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ServerSseMessage>> {
        match self.get_mut() {
            Answer::Inner(s) => s.as_mut().poll_next(cx),
            Answer::Single(m) => Poll::Ready(m.take()),
            Answer::Deadline(d) => d.poll(cx),
        }
    }
}

impl Deadline {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<ServerSseMessage>> {
        if self.ended || self.cut {
            return Poll::Ready(None);
        }
        if let Some(inner) = self.inner.as_mut()
            && let Poll::Ready(item) = inner.as_mut().poll_next(cx)
        {
            if item.is_none() {
                self.ended = true;
            }
            return Poll::Ready(item);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.cut = true;
            tracing::warn!(
                timeout_s = self.timeout.as_secs(),
                "an MCP answer was not ready within the request timeout; its stream was ended"
            );
            return Poll::Ready(Some(ServerSseMessage::from_message(error(
                REQUEST_TIMEOUT,
                "no answer within the request timeout; the call may still complete: check the \
                 audit trail before retrying a change",
                &self.rid,
            ))));
        }
        Poll::Pending
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        // Given up on before rmcp answered: wait for its answer in the background, holding
        // the request id, then let it go.
        let (Some(inner), Some(guard)) = (self.inner.take(), self.guard.take()) else {
            return;
        };
        let wait = self.drain_for;
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _reserved = guard;
                let _ = tokio::time::timeout(wait, inner.for_each(|_| async {})).await;
            });
        }
    }
}
