//! MCP sessions bound to the principal that opened them. rmcp keeps the sessions; this wrapper
//! around its session manager notes who sent each `initialize` (the key, operator, legacy key
//! or development principal, by id, so a rotated key or a refreshed sign-in keeps its
//! session), and the `/mcp` authentication refuses another principal's session id with the
//! same 404 as an unknown one: a session id learned from a log or a shared proxy is worth
//! nothing to anyone else.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::Stream;
use rmcp::model::{ClientJsonRpcMessage, GetExtensions, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::session::{
    ServerSseMessage, SessionId, SessionManager,
};

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

/// The owner of every live session this process holds.
#[derive(Default)]
pub struct SessionOwners {
    owners: Mutex<HashMap<Arc<str>, Owner>>,
}

impl SessionOwners {
    /// Whether `p` may use session `id`: only if it opened it. A session with no recorded
    /// owner (unknown here, or one whose opener could not be read) answers nobody.
    pub fn may_use(&self, id: &str, p: &Principal) -> bool {
        let owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        owners.get(id).is_some_and(|o| *o == Owner::of(p))
    }

    fn bind(&self, id: &SessionId, owner: Owner) {
        self.owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), owner);
    }

    fn forget(&self, id: &str) {
        self.owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    fn ids(&self) -> Vec<Arc<str>> {
        self.owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.owners.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// rmcp's in-memory session manager, with each session's owner recorded.
pub struct BoundSessions {
    inner: LocalSessionManager,
    owners: Arc<SessionOwners>,
    /// Owner entries beyond this trigger a sweep of sessions rmcp has since dropped (idle).
    sweep_at: Mutex<usize>,
}

const FIRST_SWEEP: usize = 1024;

impl BoundSessions {
    pub fn new(inner: LocalSessionManager, owners: Arc<SessionOwners>) -> Self {
        BoundSessions {
            inner,
            owners,
            sweep_at: Mutex::new(FIRST_SWEEP),
        }
    }

    /// Forgets owners of sessions rmcp no longer has (closed after being idle).
    async fn sweep(&self) {
        let due = {
            let at = *self.sweep_at.lock().unwrap_or_else(|e| e.into_inner());
            self.owners.len() >= at
        };
        if !due {
            return;
        }
        for id in self.owners.ids() {
            let gone = !self.inner.has_session(&id).await.unwrap_or(true);
            if gone {
                self.owners.forget(&id);
            }
        }
        *self.sweep_at.lock().unwrap_or_else(|e| e.into_inner()) =
            (2 * self.owners.len()).max(FIRST_SWEEP);
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
        if let Some(p) = principal_of(&message) {
            self.owners.bind(id, Owner::of(&p));
        }
        self.inner.initialize_session(id, message).await
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        self.inner.has_session(id).await
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        self.owners.forget(id);
        self.inner.close_session(id).await
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.create_stream(id, message).await
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        self.inner.accept_message(id, message).await
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.create_standalone_stream(id).await
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.resume(id, last_event_id).await
    }
}
