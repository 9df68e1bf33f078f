//! Malformed JSON-RPC over HTTP gets JSON-RPC answers: 400 with `-32700` for what is not JSON,
//! `-32600` for JSON that is no message, `-32602` (and an audit record) for a `tools/call`
//! whose params do not parse; a 413 has a JSON body; an encoded body gets 415; the Base64
//! sentinel of `Mcp-*` headers is read case-insensitively.

use serde_json::{Value, json};

use crate::server::{TestServer, http};

async fn send(s: &TestServer, key: &str, body: Vec<u8>, extra: &[(&str, &str)]) -> (u16, Value) {
    let mut req = http()
        .post(s.mcp())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", format!("Bearer {key}"));
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let res = req.body(body).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn malformed_bodies_get_json_rpc_errors() {
    let s = TestServer::http(&["--stateless", "--max-body-bytes", "65536"]).await;
    let key = s.admin_key().await;
    let call = |id: Value| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}})
            .to_string()
    };
    let mut bom = vec![0xEF, 0xBB, 0xBF];
    bom.extend(call(json!(1)).into_bytes());
    let cases: Vec<(&str, Vec<u8>, i64)> = vec![
        ("not json", b"{not json".to_vec(), -32700),
        (
            "deep nesting",
            ("[".repeat(10_000) + &"]".repeat(10_000)).into_bytes(),
            -32700,
        ),
        (
            "a lone surrogate",
            br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"\ud800"}}"#.to_vec(),
            -32700,
        ),
        ("a byte-order mark", bom, -32700),
        (
            "latin-1",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"caf\xe9\"}".to_vec(),
            -32700,
        ),
        (
            "a batch",
            format!("[{}]", call(json!(1))).into_bytes(),
            -32600,
        ),
        ("an empty batch", b"[]".to_vec(), -32600),
        ("a null id", call(Value::Null).into_bytes(), -32600),
        ("a fractional id", call(json!(1.5)).into_bytes(), -32600),
        ("a boolean id", call(json!(true)).into_bytes(), -32600),
        (
            "an id past i64",
            call(json!(9_223_372_036_854_775_808u64)).into_bytes(),
            -32600,
        ),
        (
            "jsonrpc 1.0",
            call(json!(1)).replace("2.0", "1.0").into_bytes(),
            -32600,
        ),
    ];
    for (what, body, code) in cases {
        let (status, v) = send(&s, &key, body, &[]).await;
        assert_eq!(status, 400, "{what}: {v}");
        assert_eq!(v["error"]["code"], code, "{what}: {v}");
        assert_eq!(v["jsonrpc"], "2.0", "{what}");
    }
    // Too large: JSON, like every other error.
    let (status, v) = send(&s, &key, vec![b' '; 70_000], &[]).await;
    assert_eq!(status, 413);
    assert_eq!(v["error"], "payload_too_large", "{v}");
    // An encoding keyward does not decode.
    let (status, v) = send(
        &s,
        &key,
        call(json!(1)).into_bytes(),
        &[("content-encoding", "gzip")],
    )
    .await;
    assert_eq!(status, 415);
    assert_eq!(v["error"], "unsupported_media_type");
    s.stop().await;
}

#[tokio::test]
async fn a_tools_call_that_does_not_parse_is_invalid_params_and_on_the_record() {
    let s = TestServer::http(&["--stateless"]).await;
    let key = s.admin_key().await;
    for (i, params) in [
        json!({"name": "whoami", "arguments": [1, 2]}),
        json!({"arguments": {}}),
        json!({"name": 42}),
    ]
    .into_iter()
    .enumerate()
    {
        let body = json!({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": params});
        let (_, v) = send(&s, &key, body.to_string().into_bytes(), &[]).await;
        assert_eq!(v["error"]["code"], -32602, "{params}: {v}");
    }
    let admin = s.client_2026(&key).await;
    let events = admin.audit_full(json!({"action": ["invalid_call"]})).await;
    assert_eq!(events.len(), 3);
    assert!(
        events
            .iter()
            .all(|e| e["status"] == "failed" && e["established"]["actor_kind"] == "key")
    );
    admin.close().await;
    s.stop().await;
}

#[tokio::test]
async fn the_base64_sentinel_is_read_in_any_case() {
    let s = TestServer::http(&["--stateless"]).await;
    let key = s.admin_key().await;
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "whoami", "arguments": {}}})
    .to_string();
    for sentinel in [
        "=?base64?d2hvYW1p?=",
        "=?BASE64?d2hvYW1p?=",
        "=?Base64?d2hvYW1p?=",
    ] {
        let (status, v) = send(
            &s,
            &key,
            body.clone().into_bytes(),
            &[("mcp-method", "tools/call"), ("mcp-name", sentinel)],
        )
        .await;
        assert_eq!(status, 200, "{sentinel}: {v}");
        assert_eq!(
            v["result"]["structuredContent"]["role"], "admin",
            "{sentinel}"
        );
    }
    s.stop().await;
}
