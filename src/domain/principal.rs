//! Who is calling: the proof that authentication happened.
//!
//! A `Principal` can only be built inside this crate by the authentication code (`ops::auth`),
//! so a tool or an op holding one knows the caller was checked.

use chrono::{DateTime, Utc};

use super::permission::{Permission, PermissionSet};
use super::tenant::TenantScope;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// An API key, identified by its id and the preview of the secret presented; `name` is the
    /// key's name (read with the key at authentication, so naming the actor costs no query).
    Key {
        id: String,
        preview: String,
        name: String,
    },
    /// A person, signed in with username and password (session cookie).
    Operator { id: String, username: String },
    /// The one shared key of `legacy` auth mode.
    Legacy,
    /// Authentication explicitly disabled for local development.
    Development,
}

impl Actor {
    pub fn kind(&self) -> &'static str {
        match self {
            Actor::Key { .. } => "key",
            Actor::Operator { .. } => "operator",
            Actor::Legacy => "legacy",
            Actor::Development => "development",
        }
    }

    pub fn id(&self) -> Option<&str> {
        match self {
            Actor::Key { id, .. } | Actor::Operator { id, .. } => Some(id),
            Actor::Legacy | Actor::Development => None,
        }
    }

    /// How people speak of the actor: the key's name, the operator's username.
    pub fn name(&self) -> Option<&str> {
        match self {
            Actor::Key { name, .. } => Some(name),
            Actor::Operator { username, .. } => Some(username),
            Actor::Legacy | Actor::Development => None,
        }
    }

    pub fn preview(&self) -> Option<&str> {
        match self {
            Actor::Key { preview, .. } => Some(preview),
            Actor::Operator { username, .. } => Some(username),
            Actor::Legacy | Actor::Development => None,
        }
    }
}

/// The OAuth grant a caller acts through. The signer (a key or an operator) stays the actor;
/// the grant and its client are the channel, recorded beside the actor in the trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub grant_id: String,
    pub client_id: String,
}

impl Channel {
    /// As the trail stores it.
    pub fn describe(&self) -> String {
        format!("grant {} client {}", self.grant_id, self.client_id)
    }
}

/// Cheap to clone (one reference count): it travels with every request.
#[derive(Debug, Clone)]
pub struct Principal(std::sync::Arc<Inner>);

#[derive(Debug)]
struct Inner {
    actor: Actor,
    role: String,
    permissions: PermissionSet,
    tenants: TenantScope,
    expires_at: Option<DateTime<Utc>>,
    channel: Option<Channel>,
}

impl Principal {
    pub(crate) fn new(
        actor: Actor,
        role: String,
        permissions: PermissionSet,
        tenants: TenantScope,
        expires_at: Option<DateTime<Utc>>,
    ) -> Self {
        Principal(std::sync::Arc::new(Inner {
            actor,
            role,
            permissions,
            tenants,
            expires_at,
            channel: None,
        }))
    }

    /// This signer acting through an OAuth grant, with only what the grant leaves it
    /// (`permissions` and `tenants` are the grant's ceiling met with the signer's own; `role`
    /// names the ceiling picked at consent).
    pub(crate) fn through(
        &self,
        channel: Channel,
        role: String,
        permissions: PermissionSet,
        tenants: TenantScope,
        expires_at: DateTime<Utc>,
    ) -> Self {
        let expires_at = Some(self.0.expires_at.map_or(expires_at, |e| e.min(expires_at)));
        Principal(std::sync::Arc::new(Inner {
            actor: self.0.actor.clone(),
            role,
            permissions,
            tenants,
            expires_at,
            channel: Some(channel),
        }))
    }

    /// The OAuth grant this caller acts through, if any.
    pub fn channel(&self) -> Option<&Channel> {
        self.0.channel.as_ref()
    }

    pub fn actor(&self) -> &Actor {
        &self.0.actor
    }

    pub fn role(&self) -> &str {
        &self.0.role
    }

    pub fn permissions(&self) -> PermissionSet {
        self.0.permissions
    }

    pub fn tenants(&self) -> &TenantScope {
        &self.0.tenants
    }

    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.expires_at
    }

    pub fn has(&self, p: Permission) -> bool {
        self.0.permissions.contains(p)
    }

    /// Whether this principal is the key with id `key_id`.
    pub fn is_key(&self, key_id: &str) -> bool {
        self.0.actor.id() == Some(key_id)
    }
}
