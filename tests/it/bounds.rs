//! Every list argument of every tool is bounded: a hundred values get a clear argument error
//! naming the bound, never a database error or a slow call. The arguments are read from the
//! committed schemas, so a new list argument is covered without editing this test.

use serde_json::{Map, Value, json};

use crate::server::TestServer;
use crate::support::text;

/// Valid values for a tool's other required arguments, so the list is what gets refused.
fn base(tool: &str) -> Value {
    match tool {
        "key_create" => json!({"name": "bounded", "role": "reader", "tenants": ["*"]}),
        "role_create" => json!({"name": "bounded", "permissions": ["key:read"]}),
        "role_update" => json!({"name": "bounded"}),
        "operator_create" => json!({"username": "bounded", "password": "correct horse battery",
            "role": "reader", "tenants": ["*"]}),
        "audit_summary" => json!({"group_by": ["action"]}),
        _ => json!({}),
    }
}

/// A hundred values of the kind `items` describes.
fn many(items: &Value, defs: &Value) -> Vec<Value> {
    let item = match items.get("$ref").and_then(Value::as_str) {
        Some(r) => &defs[r.rsplit('/').next().unwrap()],
        None => items,
    };
    // Enumerations come as `enum` or as `oneOf` of `const`s.
    let values: Vec<Value> = match (item.get("enum"), item.get("oneOf")) {
        (Some(Value::Array(v)), _) => v.clone(),
        (_, Some(Value::Array(alts))) => alts
            .iter()
            .filter_map(|a| a.get("const").cloned())
            .collect(),
        _ => Vec::new(),
    };
    if values.is_empty() {
        (0..100).map(|i| json!(format!("v{i}"))).collect()
    } else {
        (0..100).map(|i| values[i % values.len()].clone()).collect()
    }
}

#[tokio::test]
async fn every_list_argument_is_bounded() {
    let h = TestServer::in_process(
        chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 6, 1, 0, 0, 0).unwrap(),
    )
    .await;
    let admin = h.admin().await;
    admin
        .ok(
            "role_create",
            json!({"name": "bounded", "permissions": ["key:read"]}),
        )
        .await;
    let mut checked = Vec::new();
    for entry in std::fs::read_dir("schemas").unwrap().flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(tool) = file.strip_suffix(".input.json") else {
            continue;
        };
        let schema: Value = serde_json::from_slice(&std::fs::read(entry.path()).unwrap()).unwrap();
        let defs = schema.get("$defs").cloned().unwrap_or(Value::Null);
        let Some(props) = schema["properties"].as_object() else {
            continue;
        };
        for (name, prop) in props {
            let is_array = prop["type"] == "array"
                || prop["type"]
                    .as_array()
                    .is_some_and(|t| t.contains(&json!("array")));
            if !is_array {
                continue;
            }
            let mut args: Map<String, Value> = base(tool).as_object().unwrap().clone();
            args.insert(name.clone(), Value::Array(many(&prop["items"], &defs)));
            let r = admin.call(tool, Value::Object(args)).await;
            let msg = text(&r);
            assert_eq!(r.is_error, Some(true), "{tool}.{name}: 100 values accepted");
            assert!(msg.contains("at most"), "{tool}.{name}: {msg}");
            checked.push(format!("{tool}.{name}"));
        }
    }
    // The schemas hold list arguments on these tools at least (a sanity check on the walk).
    for expected in [
        "key_list.role",
        "audit_query.action",
        "audit_summary.group_by",
        "key_create.tenants",
    ] {
        assert!(
            checked.iter().any(|c| c == expected),
            "{expected} not found in {checked:?}"
        );
    }
    admin.close().await;
}

#[tokio::test]
async fn repeated_values_count_once() {
    let h = TestServer::in_process(
        chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 6, 1, 0, 0, 0).unwrap(),
    )
    .await;
    let admin = h.admin().await;
    let page = admin
        .ok(
            "audit_query",
            json!({"action": ["bootstrap", "bootstrap", "bootstrap"]}),
        )
        .await;
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    admin.close().await;
}

#[tokio::test]
async fn times_outside_the_range_are_refused_never_moved() {
    let h = TestServer::in_process(
        chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 6, 1, 0, 0, 0).unwrap(),
    )
    .await;
    let admin = h.admin().await;
    for (tool, args) in [
        (
            "key_create",
            json!({"name": "late", "role": "reader", "tenants": ["*"],
            "expires": "9999-12-31T23:59:59Z"}),
        ),
        ("audit_query", json!({"since": "0000-01-01"})),
        ("audit_query", json!({"until": "9999-12-31T23:59:59Z"})),
        (
            "audit_summary",
            json!({"group_by": ["day"], "since": "0000-01-01", "time_zone": "Pacific/Kiritimati"}),
        ),
    ] {
        let r = admin.call(tool, args.clone()).await;
        assert_eq!(r.is_error, Some(true), "{tool} {args}: accepted");
        assert!(
            text(&r).contains("outside the range keyward accepts"),
            "{tool} {args}: {}",
            text(&r)
        );
    }
    admin.close().await;
}

#[tokio::test]
async fn a_tampered_cursor_is_checked_like_fresh_arguments() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let h = TestServer::in_process(
        chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 6, 1, 0, 0, 0).unwrap(),
    )
    .await;
    let admin = h.admin().await;
    for _ in 0..3 {
        admin.ok("whoami", json!({})).await;
    }
    let page = admin
        .ok("audit_query", json!({"limit": 1, "since": "2026-01-01"}))
        .await;
    let cursor = page["next_cursor"].as_str().unwrap();
    let mut c: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(cursor).unwrap()).unwrap();
    // The same window as arguments would be "empty": since after until.
    c["f"]["until"] = json!(c["f"]["since"].as_i64().unwrap() - 1);
    let forged = URL_SAFE_NO_PAD.encode(c.to_string());
    let msg = admin.err("audit_query", json!({"cursor": forged})).await;
    assert!(msg.contains("invalid cursor"), "{msg}");
    admin.close().await;
}
