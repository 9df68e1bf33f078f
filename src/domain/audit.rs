//! The audit event: what every call and every authentication attempt leaves behind.
//!
//! Actions, statuses and sources are closed sets so the query tools can validate filters and
//! tell a model exactly which values exist.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use super::catalog::Action;
use super::closed::closed_enum;
use super::{secrets, text};

closed_enum!(
    /// How it ended.
    Status {
        /// Allowed and completed.
        Success = "success",
        /// Refused: missing permission, containment, or a bad credential.
        Denied = "denied",
        /// Allowed but did not complete: invalid arguments, not found, conflict.
        Failed = "failed",
        /// An internal error.
        Error = "error",
    }
);

closed_enum!(
    /// Where the call came in.
    Source {
        Stdio = "stdio",
        Http = "http",
        Cli = "cli",
    }
);

/// One audit record, ready to be written. Built only from values that are safe to keep.
/// (De)serialised only for the SQLite audit journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub at: DateTime<Utc>,
    pub actor_kind: String,
    pub actor_id: Option<String>,
    /// The actor's name as it was at the event (the key's name, the operator's username).
    #[serde(default)]
    pub actor_name: Option<String>,
    pub actor_preview: Option<String>,
    pub role: Option<String>,
    /// The tenants this event concerns (the target's, else the actor's); `*` means all.
    pub tenants: Vec<String>,
    pub action: Action,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    /// The target's name as it was at the event.
    #[serde(default)]
    pub target_name: Option<String>,
    pub status: Status,
    pub reason: Option<String>,
    pub source: Source,
    pub request_source: Option<String>,
    pub client_name: Option<String>,
    pub client_version: Option<String>,
    pub request_id: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    /// The OAuth grant and client a call came through (established by the server).
    #[serde(default)]
    pub channel: Option<String>,
    pub args: Option<Value>,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Field names whose values are secrets wherever they appear in arguments.
fn is_secret_field(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("password")
        || n.contains("secret")
        || n.contains("token")
        || matches!(
            n.as_str(),
            "api_key" | "apikey" | "key" | "authorization" | "cookie" | "setup_code"
        )
}

/// At most this much (bytes, roughly) of a call's arguments, and of a change's state before
/// and after, is kept per event: one call cannot bloat the trail, whoever makes it.
pub const MAX_RECORDED: usize = 16 * 1024;
/// Longest string kept inside arguments.
const MAX_STRING: usize = 512;
/// Most members or items kept per object or array.
const MAX_ITEMS: usize = 100;

/// Arguments as they may be kept: secret-named fields replaced; secrets scrubbed from every
/// string and every member name; hidden characters made visible; long strings clipped; and
/// the whole bounded by `MAX_RECORDED`.
pub fn redact(value: &Value) -> Value {
    let mut budget = MAX_RECORDED;
    walk(value, &mut budget, true)
}

/// Server-built state (before and after a change), bounded like arguments.
pub fn bounded(value: Value) -> Value {
    if value.to_string().len() <= MAX_RECORDED {
        return value;
    }
    let mut budget = MAX_RECORDED;
    walk(&value, &mut budget, false)
}

fn walk(value: &Value, budget: &mut usize, scrub: bool) -> Value {
    let text = |s: &str, max: usize, budget: &mut usize| {
        let t = if scrub {
            clip(&text::neutralize(&secrets::scrub(s), true), max)
        } else {
            clip(s, max)
        };
        *budget = budget.saturating_sub(t.len() + 2);
        t
    };
    // Every node costs something, so nesting empty containers cannot dodge the budget.
    *budget = budget.saturating_sub(2);
    match value {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            let mut left_out = 0usize;
            for (k, v) in map {
                if *budget == 0 || out.len() >= MAX_ITEMS {
                    left_out += 1;
                    continue;
                }
                let name = text(k, 64, budget);
                let v = if scrub && is_secret_field(k) {
                    Value::String("[redacted]".into())
                } else {
                    walk(v, budget, scrub)
                };
                out.insert(name, v);
            }
            if left_out > 0 {
                out.insert(
                    "…".into(),
                    Value::String(format!("{left_out} more members not recorded")),
                );
            }
            Value::Object(out)
        }
        Value::Array(items) => {
            let mut out = Vec::new();
            for v in items {
                if *budget == 0 || out.len() >= MAX_ITEMS {
                    break;
                }
                out.push(walk(v, budget, scrub));
            }
            if out.len() < items.len() {
                out.push(Value::String(format!(
                    "… {} more items not recorded",
                    items.len() - out.len()
                )));
            }
            Value::Array(out)
        }
        Value::String(s) => {
            let max = MAX_STRING.min(*budget);
            Value::String(text(s, max, budget))
        }
        other => {
            *budget = budget.saturating_sub(6);
            other.clone()
        }
    }
}

/// Free text kept in the trail (error reasons): scrubbed of secrets, hidden characters made
/// visible, on one line, clipped.
pub fn redact_text(text: &str) -> String {
    claim(text, 1024)
}

/// A value a client asserted (User-Agent, `x-request-source`, MCP client name and version,
/// request id), as the trail keeps it: scrubbed, visible, on one line, at most `max` characters.
pub fn claim(value: &str, max: usize) -> String {
    clip(&text::neutralize(&secrets::scrub(value), false), max)
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}

/// A whoami record by an admin key over HTTP, for tests; change fields with `..`.
#[cfg(test)]
pub(crate) fn sample_event(reason: &str) -> AuditEvent {
    AuditEvent {
        at: chrono::DateTime::from_timestamp_micros(1_780_000_000_123_456).unwrap(),
        actor_kind: "key".into(),
        actor_id: Some("key_abc".into()),
        actor_name: Some("ci-agent".into()),
        actor_preview: Some("kw_abcdefgh".into()),
        role: Some("admin".into()),
        tenants: vec!["*".into()],
        action: Action::Whoami,
        target_type: None,
        target_id: None,
        target_name: None,
        status: Status::Success,
        reason: Some(reason.into()),
        source: Source::Http,
        request_source: None,
        client_name: Some("c".into()),
        client_version: Some("1".into()),
        request_id: Some("7".into()),
        client_ip: Some("127.0.0.1".into()),
        user_agent: None,
        channel: None,
        args: Some(serde_json::json!({"x": [1, "two"]})),
        before: None,
        after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::key::PlainKey;
    use serde_json::json;

    #[test]
    fn redaction_removes_secrets_by_name_and_by_shape() {
        let k = PlainKey::generate();
        let args = json!({
            "name": "ci",
            "password": "hunter2hunter2",
            "nested": {"api_key": k.expose(), "note": format!("use {}", k.expose())},
            "list": [k.expose()],
            "key_id": "key_abc"
        });
        let red = redact(&args);
        let text = red.to_string();
        assert!(!text.contains(k.expose()));
        assert!(!text.contains("hunter2"));
        assert_eq!(red["key_id"], "key_abc");
        assert_eq!(red["name"], "ci");
    }

    #[test]
    fn member_names_are_scrubbed_and_made_visible() {
        let k = PlainKey::generate();
        let mut args = serde_json::Map::new();
        args.insert(k.expose().to_owned(), json!(1));
        args.insert("evil\u{202E}name".into(), json!("a\u{200B}b"));
        let red = redact(&Value::Object(args)).to_string();
        assert!(!red.contains(&k.expose()[12..]), "{red}");
        assert!(
            red.contains("evil<U+202E>name") && red.contains("a<U+200B>b"),
            "{red}"
        );
    }

    #[test]
    fn one_event_keeps_a_bounded_amount() {
        let big: serde_json::Map<String, Value> =
            (0..100_000).map(|i| (format!("a{i}"), json!(0))).collect();
        let red = redact(&Value::Object(big)).to_string();
        assert!(red.len() < 2 * MAX_RECORDED, "{}", red.len());
        assert!(red.contains("more members not recorded"));
        let wide: Vec<Value> = (0..90).map(|_| json!("x".repeat(2000))).collect();
        let red = redact(&json!({"list": wide})).to_string();
        assert!(red.len() < 2 * MAX_RECORDED, "{}", red.len());
        // Empty containers, nested and wide, cost too.
        let hollow = json!({"a": vec![vec![json!([]); 100]; 100]});
        let red = redact(&hollow).to_string();
        assert!(red.len() < 2 * MAX_RECORDED, "{}", red.len());
        let state = json!({"description": "y".repeat(100_000)});
        assert!(bounded(state).to_string().len() < 2 * MAX_RECORDED);
        assert_eq!(
            bounded(json!({"key": 1})),
            json!({"key": 1}),
            "state is not scrubbed by name"
        );
    }

    #[test]
    fn closed_sets_parse_their_own_text() {
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(a));
        }
        assert_eq!(Status::parse("denied"), Some(Status::Denied));
        assert_eq!(Source::parse("carrier-pigeon"), None);
    }
}
