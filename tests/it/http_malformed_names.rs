//! Unknown methods and tools, and SQL metacharacters in every audit filter, property-tested
//! (harness: `malformed`).

use std::cell::Cell;

use keyward::domain::catalog::ToolName;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Value, json};

use crate::malformed::*;
use crate::malformed_inputs::*;

// ---------------------------------------------------------------------------------------------
// 6. Unknown methods and tools
// ---------------------------------------------------------------------------------------------

const NEAR_MISS_METHODS: &[&str] = &[
    "tools/Call",
    "TOOLS/LIST",
    "tools//call",
    "tools/call/",
    "/tools/call",
    "tools",
    "tool/call",
    "tools.call",
    "rpc.discover",
    "../tools/call",
    "tools/call\0",
    "tools/list?x=1",
    "initialize2",
    "keys/list",
    "audit/query",
    "admin/shutdown",
    "$/cancelRequest",
    "ping ",
    " ping",
];

const NEAR_MISS_TOOLS: &[&str] = &[
    "WHOAMI",
    "Whoami",
    "whoami ",
    " whoami",
    "whoami\0",
    "key-create",
    "keys_list",
    "key_create;",
    "audit_query' OR 1=1 --",
    "../whoami",
    "whoami/../key_create",
    "",
    "unknown_tool",
    "auth_failed",
    "bootstrap",
    "login",
    "tools/call",
    "null",
    "🔑",
    "\u{202e}etaerc_yek",
];

#[test]
fn unknown_methods_get_method_not_found() {
    let f = Fixture::start(&[]);
    let before = f.snapshot();
    let methods = prop_oneof![
        select(NEAR_MISS_METHODS).prop_map(str::to_owned),
        "[a-zA-Z_/.$-]{1,40}".prop_filter("unknown", |m| !METHODS.contains(&m.as_str())),
        "[ -~]{0,60}".prop_filter("unknown", |m| !METHODS.contains(&m.as_str())),
    ];
    let mut examples: Vec<(String, u32)> = NEAR_MISS_METHODS
        .iter()
        .map(|m| ((*m).to_owned(), 1))
        .collect();
    // Nothing to name, and a secret pasted where the method goes.
    examples.push((String::new(), 2));
    examples.push((f.key.clone(), 3));
    f.check(
        "unknown methods",
        examples,
        (methods, any::<u32>()),
        |(method, id)| {
            let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": {}});
            let reply = f.post(body.to_string().into_bytes(), f.headers())?;
            match reply.clear_error()? {
                Answer::RpcError { code: -32601, .. } => {}
                _ => fail!("expected method not found (-32601): {}", reply.describe()),
            }
            if reply.text().contains(&f.key) {
                fail!("the error echoes the API key: {}", reply.describe());
            }
            if let Some(v) = reply.json()
                && v["id"] != json!(id)
            {
                fail!("the error must answer request {id}: {}", reply.describe());
            }
            f.alive()?;
            prop_assert_eq!(&f.snapshot(), &before, "state changed");
            Ok(())
        },
    );
    f.finish();
    f.stop();
}

#[test]
fn unknown_tools_get_tool_not_found_and_are_audited() {
    let f = Fixture::start(&[]);
    let before = f.snapshot();
    let unknown_before = f.events(&["unknown_tool"], &[]).len();
    let tools = prop_oneof![
        select(NEAR_MISS_TOOLS).prop_map(str::to_owned),
        "[a-z_]{1,30}".prop_filter("unknown", |t| ToolName::parse(t).is_none()),
        injection().prop_filter("unknown", |t| ToolName::parse(t).is_none()),
    ];
    let mut examples: Vec<(String, Value)> = NEAR_MISS_TOOLS
        .iter()
        .map(|t| ((*t).to_owned(), json!({})))
        .collect();
    examples.push((f.key.clone(), json!({})));
    examples.push(("x".repeat(100_000), json!({"name": "' OR 1=1 --"})));
    let calls = Cell::new(0usize);
    f.check(
        "unknown tools",
        examples,
        (tools, arb_json()),
        |(tool, args)| {
            let args = if args.is_object() { args } else { json!({}) };
            let reply = f.call(&tool, &args)?;
            calls.set(calls.get() + 1);
            match reply.clear_error()? {
                Answer::RpcError { message, .. } if message.contains("tool not found") => {}
                Answer::ToolError { .. } => {}
                _ => fail!("expected 'tool not found': {}", reply.describe()),
            }
            if reply.text().contains(&f.key) {
                fail!("the error echoes the API key: {}", reply.describe());
            }
            f.alive()?;
            prop_assert_eq!(&f.snapshot(), &before, "state changed");
            Ok(())
        },
    );
    // Every call to a tool that does not exist is on the trail.
    let recorded = f.events(&["unknown_tool"], &["failed"]).len() - unknown_before;
    assert_eq!(recorded, calls.get(), "unknown-tool calls audited");
    f.finish();
    f.stop();
}

// ---------------------------------------------------------------------------------------------
// 7. SQL metacharacters in every filter, and in names
// ---------------------------------------------------------------------------------------------

const LIST_FIELDS: &[&str] = &[
    "actor",
    "role",
    "tenant",
    "action",
    "target",
    "status",
    "source",
    "client_ip",
];

const QUERY_FIELDS: &[&str] = &[
    "actor",
    "role",
    "tenant",
    "action",
    "target",
    "status",
    "source",
    "client_ip",
    "since",
    "until",
    "time_zone",
    "limit",
    "cursor",
];

const SUMMARY_FIELDS: &[&str] = &[
    "actor",
    "role",
    "tenant",
    "action",
    "target",
    "status",
    "source",
    "client_ip",
    "since",
    "until",
    "time_zone",
    "top",
    "group_by",
];

/// Checks that every event of a successful audit_query really matches the one filter given.
fn events_match(page: &Value, field: &str, value: &str) -> CaseResult {
    let Some(events) = page["events"].as_array() else {
        fail!("audit_query without events: {page}")
    };
    for e in events {
        let ok = match field {
            "actor" => e["actor"] == value || e["actor_preview"] == value,
            "role" => e["role"] == value,
            "action" => e["action"] == value,
            "status" => e["status"] == value,
            "source" => e["source"] == value,
            "target" => e["target"]
                .as_str()
                .and_then(|t| t.split_once(':'))
                .is_some_and(|(_, id)| id == value),
            _ => true,
        };
        if !ok {
            fail!("{field} = {value:?} matched an event it does not name: {e}");
        }
    }
    Ok(())
}

#[test]
fn sql_metacharacters_in_every_audit_filter_are_data() {
    let f = Fixture::start(&[]);
    // Some history to find (or, rather, not find).
    for i in 0..3 {
        f.ok(
            "key_create",
            &json!({"name": format!("seed-{i}"), "role": "reader", "tenants": ["acme"]}),
        )
        .unwrap();
    }
    let before = f.snapshot();
    let events_before = f.events(&[], &[]).len();
    let cases = prop_oneof![
        (Just(false), select(QUERY_FIELDS), injection()),
        (Just(true), select(SUMMARY_FIELDS), injection()),
    ];
    // Every field of both tools, with the classics.
    let mut examples = Vec::new();
    for (summary, fields) in [(false, QUERY_FIELDS), (true, SUMMARY_FIELDS)] {
        for field in fields {
            for value in CLASSICS {
                examples.push((summary, *field, (*value).to_owned()));
            }
            examples.push((summary, *field, "'".repeat(5000)));
        }
    }
    f.check(
        "audit filters",
        examples,
        cases,
        |(summary, field, value)| {
            let mut args = if summary {
                json!({"group_by": ["action"]})
            } else {
                json!({})
            };
            args[field] = if LIST_FIELDS.contains(&field) || field == "group_by" {
                json!([value])
            } else {
                json!(value)
            };
            let tool = if summary {
                "audit_summary"
            } else {
                "audit_query"
            };
            let reply = f.call(tool, &args)?;
            match reply.sane()? {
                Answer::ToolOk(v) if summary => {
                    if !v["groups"].is_array() {
                        fail!("audit_summary without groups: {v}");
                    }
                }
                Answer::ToolOk(v) => events_match(&v, field, &value)?,
                Answer::ToolError { kind, .. } if kind == "invalid_argument" => {}
                Answer::RpcError { code: -32602, .. } => {}
                _ => fail!(
                    "expected a result or an invalid-argument error: {}",
                    reply.describe()
                ),
            }
            f.alive()?;
            prop_assert_eq!(&f.snapshot(), &before, "state changed");
            Ok(())
        },
    );
    // The table is still there and still growing.
    assert!(f.events(&[], &[]).len() > events_before);
    f.finish();
    f.stop();
}
