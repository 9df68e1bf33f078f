//! What use cases return: plain, serialisable views with no secret except where a secret is
//! the point (a newly created or rotated key, shown once). Their doc comments become the
//! descriptions in each tool's output schema.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::domain::permission::Permission;

mod audit;
pub use audit::*;

/// An API key's metadata. Never contains the secret or its digest.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct KeyView {
    /// Stable identifier; it survives rotation.
    pub id: String,
    pub name: String,
    pub description: String,
    /// Role whose permissions the key carries.
    pub role: String,
    /// Tenants the key is scoped to; ["*"] means all tenants.
    pub tenants: Vec<String>,
    /// The first characters of the current secret, to recognise it. Not usable as a key.
    pub preview: String,
    pub status: KeyStatus,
    /// RFC 3339 with offset.
    pub created_at: String,
    /// Id of the key that created this one ("bootstrap" for the first admin key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// RFC 3339 with offset; absent means the key never expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// When the secret was last replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<String>,
    /// Last successful authentication, to the minute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    Active,
    /// Temporarily refused; `key_enable` restores it.
    Disabled,
    /// Permanently refused.
    Revoked,
    Expired,
}

/// A key and its secret. The secret is shown only in this response: store it now. Its
/// `Debug` leaves the secret out.
#[derive(Clone, Serialize, Deserialize, JsonSchema)]
pub struct KeyWithSecret {
    pub key: KeyView,
    /// The full API key. It is not stored anywhere and cannot be shown again.
    pub api_key: String,
    /// When the previous secret stops working (rotation only; absent when it stopped at once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_valid_until: Option<String>,
}

impl std::fmt::Debug for KeyWithSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyWithSecret")
            .field("key", &self.key)
            .field("api_key", &"..")
            .field(
                "previous_secret_valid_until",
                &self.previous_secret_valid_until,
            )
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct KeyPage {
    /// Newest first.
    pub keys: Vec<KeyView>,
    /// True when more keys match; pass `next_cursor` to continue.
    pub truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct KeyResult {
    pub key: KeyView,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct RoleView {
    pub name: String,
    pub description: String,
    pub permissions: Vec<Permission>,
    /// Built-in roles cannot be changed or deleted.
    pub builtin: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RoleList {
    pub roles: Vec<RoleView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RoleResult {
    pub role: RoleView,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RoleDeleted {
    /// Name of the deleted role.
    pub deleted: String,
}

/// The caller as keyward sees it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct WhoAmI {
    /// "key", "operator", "legacy", or "development" when authentication is disabled.
    pub actor_kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_preview: Option<String>,
    pub role: String,
    pub permissions: Vec<Permission>,
    /// ["*"] means all tenants.
    pub tenants: Vec<String>,
    /// Absent means never.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Set when the caller acts through an OAuth grant: which client, which grant, and who
    /// signed it (the actor above). Permissions and tenants are then the grant's ceiling met
    /// with the signer's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oauth: Option<OAuthChannel>,
}

/// The OAuth grant a caller acts through.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct OAuthChannel {
    pub grant_id: String,
    pub client_id: String,
}

/// One OAuth grant: a client acting for a signer within a ceiling.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct GrantView {
    pub id: String,
    pub client_id: String,
    /// As the client named itself (self-asserted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// "key" or "operator".
    pub signer_kind: String,
    /// The key id or operator id that consented.
    pub signer_id: String,
    /// The role picked as the ceiling at consent.
    pub role: String,
    /// The ceiling: the most the client may ever do (met with the signer's current role).
    pub permissions: Vec<Permission>,
    pub tenants: Vec<String>,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
    /// No token of this grant outlives this.
    pub expires_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct GrantList {
    pub grants: Vec<GrantView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct GrantRevoked {
    pub grant_id: String,
    /// False when it had already ended.
    pub revoked: bool,
}

/// A person who signs in with a password. Never includes the password or its hash.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct OperatorView {
    pub id: String,
    pub username: String,
    pub role: String,
    /// ["*"] means all tenants.
    pub tenants: Vec<String>,
    /// "active" or "disabled".
    pub status: String,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_login_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct OperatorResult {
    pub operator: OperatorView,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct OperatorList {
    /// By username.
    pub operators: Vec<OperatorView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_secret_never_prints() {
        let k = KeyWithSecret {
            key: KeyView {
                id: "key_x".into(),
                name: "n".into(),
                description: String::new(),
                role: "reader".into(),
                tenants: vec!["*".into()],
                preview: "kw_abcdefgh".into(),
                status: KeyStatus::Active,
                created_at: "t".into(),
                created_by: None,
                expires_at: None,
                disabled_at: None,
                revoked_at: None,
                rotated_at: None,
                last_used_at: None,
            },
            api_key: "kw_the_whole_secret".into(),
            previous_secret_valid_until: None,
        };
        assert!(!format!("{k:?}").contains("the_whole_secret"));
        // An answer leaves out what has no value (portable schemas): no `null` anywhere.
        let json = serde_json::to_value(&k).unwrap();
        assert!(json["key"].get("expires_at").is_none(), "{json}");
        assert!(json.get("previous_secret_valid_until").is_none(), "{json}");
        assert!(!json.to_string().contains("null"), "{json}");
    }
}
