//! Inputs for the malformed-input tests (`http_malformed_*`): strings that break naive SQL,
//! LIKE patterns, JSON or logs, arbitrary JSON and JSON-RPC-shaped bodies.

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Value, json};

/// Strings that break naive SQL, LIKE patterns, JSON or logs.
pub const INJECTIONS: &[&str] = &[
    "' OR 1=1 --",
    "' OR '1'='1",
    "\" OR \"\"=\"",
    "'; DROP TABLE audit_events; --",
    "\"; DROP TABLE audit_events; --",
    "1; DELETE FROM api_keys; --",
    "') UNION SELECT id, name FROM api_keys --",
    "admin'--",
    "' AND 1=(SELECT COUNT(*) FROM roles) --",
    "%",
    "%%",
    "_",
    "__",
    "key_%",
    "kw_%",
    "%' OR '%'='",
    "\\",
    "\\'",
    "\\\"",
    "\\%",
    "\0",
    "a\0b",
    "'\0'",
    "*",
    "?",
    "$1",
    "?1",
    ":name",
    "@p1",
    "NULL",
    "null",
    "/*",
    "*/",
    "--",
    ";",
    "`",
    "'||'",
    "CHAR(39)",
    "0x27",
    "\u{202e}admin",
    "\u{feff}",
    "🔑",
    "Ω≈ç√",
    "ключ",
    "鍵",
    "é",
    "\r\n",
    "\t",
    " ",
    "",
    "127.0.0.1' OR '1'='1",
    "::1; --",
    "UTC'; --",
    "reader' OR role_name LIKE '%",
];

/// Repeated into very long strings.
pub const REPEATED: &[&str] = &["'", "%", "_", "\\", "x", "é", "\0", "🔑"];

pub fn injection() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => select(INJECTIONS).prop_map(str::to_owned),
        2 => (select(INJECTIONS), select(INJECTIONS)).prop_map(|(a, b)| format!("{a}{b}")),
        1 => "(key|kw|evt)?_[_%]{1,40}",
        1 => "[ -~]{0,80}",
        1 => any::<String>(),
        1 => (select(REPEATED), 1usize..6000).prop_map(|(s, n)| s.repeat(n)),
    ]
}

/// Object keys that make random JSON look a little like JSON-RPC.
pub const KEYS: &[&str] = &[
    "jsonrpc",
    "id",
    "method",
    "params",
    "name",
    "arguments",
    "result",
    "error",
    "_meta",
];

/// Strings that make random JSON look a little like MCP (none that could create anything).
pub const WORDS: &[&str] = &[
    "2.0",
    "tools/call",
    "tools/list",
    "initialize",
    "ping",
    "whoami",
    "key_list",
    "audit_query",
    "role_get",
    "",
];

pub fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::from),
        select(WORDS).prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![select(KEYS).prop_map(str::to_owned), any::<String>()],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Methods a client may send.
pub const METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "server/discover",
    "resources/list",
    "resources/read",
    "prompts/list",
    "prompts/get",
    "logging/setLevel",
    "completion/complete",
    "notifications/initialized",
    "notifications/cancelled",
];

/// A JSON-RPC-shaped message with random parts.
pub fn rpc_shaped() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just(json!("2.0")), Just(json!("1.0")), arb_json()],
        prop::option::of(arb_json()),
        prop_oneof![
            select(METHODS).prop_map(Value::from),
            "[a-z/]{0,20}".prop_map(Value::from),
            arb_json()
        ],
        prop::option::of(arb_json()),
    )
        .prop_map(|(jsonrpc, id, method, params)| {
            let mut m = serde_json::Map::new();
            m.insert("jsonrpc".into(), jsonrpc);
            if let Some(id) = id {
                m.insert("id".into(), id);
            }
            m.insert("method".into(), method);
            if let Some(p) = params {
                m.insert("params".into(), p);
            }
            Value::Object(m)
        })
}

pub fn key_create_body(name: &str) -> String {
    json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "key_create",
        "arguments": {"name": name, "role": "reader", "tenants": ["*"], "description": "clé ключ 鍵"}}})
    .to_string()
}

/// Whether rmcp takes this Content-Type as JSON (its own rule).
pub fn is_json_content_type(ct: &str) -> bool {
    ct.split_once(';')
        .map_or(ct, |(essence, _)| essence)
        .trim()
        .eq_ignore_ascii_case("application/json")
}

/// The injections every field gets, every time; the underscores are LIKE wildcards as long as
/// a key id (`key_` + 16) and a key preview (`kw_` + 8).
pub const CLASSICS: &[&str] = &[
    "' OR 1=1 --",
    "'; DROP TABLE audit_events; --",
    "\" OR \"\"=\"",
    "%",
    "_",
    "key________________",
    "kw_________",
    "\\",
    "\0",
    "🔑",
];
