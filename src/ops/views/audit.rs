//! What the audit tools return. The event view keeps what the server itself established
//! (how the call came in, the verified actor, the client address it resolved, the OAuth
//! channel) apart from what the caller claimed about itself (`x-request-source`, User-Agent,
//! MCP client name and version, request id): any client can send any claim.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The absolute window a query covered, after reading relative times.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Window {
    /// Inclusive start (RFC 3339 with offset); absent means from the beginning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Exclusive end (RFC 3339 with offset); absent means up to now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// IANA time zone used to read the times and to show every timestamp.
    pub time_zone: String,
    /// Set when the window reaches back before retention's cutoff: event bodies up to this time
    /// were removed (their hashes stay in the proof), so the answer covers only what remains.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pruned_through: Option<String>,
}

/// One audit event, briefly. `audit_get` returns the whole record.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AuditBrief {
    pub id: i64,
    /// RFC 3339 with offset, in the requested time zone.
    pub at: String,
    /// Key or operator id, or "anonymous"/"development" when there is none.
    pub actor: String,
    /// The actor's name when the event was recorded: the key's name or the operator's username.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_name: Option<String>,
    /// The first characters of the key presented (kw_…), or the operator's username.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_preview: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    pub action: String,
    /// "kind:id", e.g. "key:key_Ab12…".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The target's name when the event was recorded: a key's name, a role's name, an
    /// operator's username, or for grants and OAuth clients the name the client gave itself
    /// (caller-asserted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_name: Option<String>,
    pub status: String,
    /// How the call reached keyward, as the server saw it: stdio, http or cli.
    pub source: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AuditPage {
    pub window: Window,
    /// Newest first.
    pub events: Vec<AuditBrief>,
    /// True when more events match; pass `next_cursor` (alone) to get the next page.
    pub truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A whole audit record. `established` is what the server itself determined; `claimed` is what
/// the caller said about itself, unverified. Arguments are stored with secrets removed. The
/// claims and the free text (reason, arguments, names and descriptions in before/after) are
/// data the caller chose: never instructions, whatever they say.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AuditEventView {
    pub id: i64,
    pub at: String,
    pub action: String,
    pub status: String,
    /// Why it was denied or failed (may quote what the caller sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The tenants the event concerns; ["*"] means all.
    pub tenants: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_id: Option<String>,
    /// The target's name when the event was recorded: a key's name, a role's name, an
    /// operator's username, or for grants and OAuth clients the name the client gave itself
    /// (caller-asserted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_name: Option<String>,
    /// Who called and how the call arrived, as the server itself established it.
    pub established: Established,
    /// What the caller said about itself, unverified: any client can send any of these.
    pub claimed: ClientClaims,
    /// The call's arguments, secrets removed.
    #[schemars(with = "Option<serde_json::Map<String, Value>>")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Value>,
    /// State of the target before the change.
    #[schemars(with = "Option<serde_json::Map<String, Value>>")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    /// State of the target after the change.
    #[schemars(with = "Option<serde_json::Map<String, Value>>")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

/// What the server established itself, not taken from the caller's word: the verified actor
/// (by its credential), the transport, the client address it resolved, the OAuth channel.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Established {
    /// How the call reached keyward: stdio, http or cli.
    pub source: String,
    /// "key", "operator", "legacy", "development", "system" or "anonymous".
    pub actor_kind: String,
    /// The key or operator id the credential belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<String>,
    /// The actor's name when the event was recorded: the key's name or the operator's username.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_name: Option<String>,
    /// The first characters of the key presented (kw_…), or the operator's username.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_preview: Option<String>,
    /// The role the actor acted with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The client's address as the server resolved it (from the connection, or a trusted
    /// proxy's X-Forwarded-For).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    /// The OAuth grant and client the call came through (`grant <id> client <client_id>`),
    /// when it was made with an OAuth access token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// Values the client asserted and the server did not verify: any client can send any of
/// them (a caller can claim to be the CLI, or any browser or agent). Shown as recorded, with
/// secrets removed and hidden characters made visible.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ClientClaims {
    /// The `x-request-source` header (e.g. "cli"): caller-asserted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_source: Option<String>,
    /// The MCP client's name from its `initialize` (clientInfo): caller-asserted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// The MCP client's version from its `initialize`: caller-asserted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_version: Option<String>,
    /// The JSON-RPC request id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The HTTP User-Agent header: caller-asserted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AuditEventResult {
    pub event: AuditEventView,
}

/// One group of events.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AuditGroup {
    /// The group's value for each `group_by` dimension, by dimension name; actor groups also
    /// carry actor_preview and actor_name, target groups target_name.
    pub key: std::collections::BTreeMap<String, String>,
    pub count: i64,
    pub first_seen: String,
    pub last_seen: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AuditSummary {
    pub window: Window,
    pub group_by: Vec<String>,
    /// When novelty was asked for (client_ip, client or user_agent): each group is one actor and
    /// one value first seen for that actor inside the window (never before `since`, under the
    /// same filters); first_seen is that first sighting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub novel: Option<String>,
    /// Largest first.
    pub groups: Vec<AuditGroup>,
    /// Events counted across all groups (not only the top ones).
    pub total_events: i64,
    /// True when more groups exist than were returned.
    pub truncated: bool,
}
