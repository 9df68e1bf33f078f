//! Malformed bodies at the HTTP edge, property-tested: random and truncated JSON-RPC bodies,
//! wrong content types and Accept headers (harness: `malformed`).

use proptest::prelude::*;
use proptest::sample::select;
use reqwest::header::HeaderValue;
use serde_json::{Value, json};

use crate::malformed::*;
use crate::malformed_inputs::*;

// ---------------------------------------------------------------------------------------------
// 1. Random bodies
// ---------------------------------------------------------------------------------------------

#[test]
fn random_bodies_get_clear_answers_and_change_nothing() {
    let f = Fixture::start(&[]);
    let before = f.snapshot();
    let bodies = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..600),
        "[ -~]{0,200}".prop_map(String::into_bytes),
        arb_json().prop_map(|v| v.to_string().into_bytes()),
        rpc_shaped().prop_map(|v| v.to_string().into_bytes()),
    ];
    let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes();
    let examples: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"{}".to_vec(),
        b"[]".to_vec(),
        b"null".to_vec(),
        b"\"tools/call\"".to_vec(),
        b"{\"jsonrpc\":\"2.0\",\"id\":1}".to_vec(),
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}".to_vec(),
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":1,\"message\":\"x\"}}".to_vec(),
        b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]".to_vec(),
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":[]}".to_vec(),
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":42}}".to_vec(),
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"whoami\",\"arguments\":[]}}".to_vec(),
        b"{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"ping\"}".to_vec(),
        b"{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"ping\"}".to_vec(),
        b"{\"jsonrpc\":\"2.0\",\"id\":1e400,\"method\":\"ping\"}".to_vec(),
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"id\":2,\"method\":\"ping\",\"method\":\"tools/list\"}".to_vec(),
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}".to_vec(),
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"} trailing".to_vec(),
        "\u{feff}{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}".as_bytes().to_vec(),
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{}}".to_vec(),
        nested(100),
        nested(200_000),
    ];
    f.check("random bodies", examples, bodies, |body| {
        let reply = f.post(body.clone(), f.headers())?;
        let answer = reply.sane()?;
        if matches!(answer, Answer::Accepted) {
            // Only a notification (a message without id) may be accepted without an answer.
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if !v.is_object() || v.get("id").is_some() {
                fail!(
                    "accepted without an answer: {}",
                    String::from_utf8_lossy(&body)
                );
            }
        }
        f.alive()?;
        let now = f.snapshot();
        prop_assert_eq!(&now, &before, "state changed");
        Ok(())
    });
    // Odd but valid request ids: the call works and the answer carries the id back.
    for id in [
        json!("a\u{0}b"),
        json!("' OR 1=1 --"),
        json!("🔑 ключ"),
        json!(""),
        json!("x".repeat(10_000)),
        json!(-1),
        json!(i64::MAX),
    ] {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "whoami", "arguments": {}}});
        let reply = f.post(body.to_string().into_bytes(), f.headers()).unwrap();
        let answer = reply
            .sane()
            .unwrap_or_else(|e| panic!("request id {}: {e}", clip(&id.to_string(), 80)));
        assert!(
            matches!(answer, Answer::ToolOk(ref me) if me["role"] == "admin")
                && reply.json().is_some_and(|v| v["id"] == id),
            "request id {}: {}",
            clip(&id.to_string(), 80),
            reply.describe()
        );
    }
    assert_eq!(f.snapshot(), before);
    f.finish();
    f.stop();
}

// ---------------------------------------------------------------------------------------------
// 2. Truncated bodies
// ---------------------------------------------------------------------------------------------

#[test]
fn truncated_key_create_bodies_create_nothing() {
    let f = Fixture::start(&[]);
    let before = f.snapshot();
    let body = key_create_body("truncated-name");
    let len = body.len();
    // Every end of the body, and cuts inside multi-byte characters.
    let mut examples = vec![0, 1, len / 2, len - 2, len - 1];
    examples.extend(
        body.char_indices()
            .filter(|(_, c)| c.len_utf8() > 1)
            .map(|(i, _)| i + 1),
    );
    f.check("truncated bodies", examples, 0..len, |cut| {
        let reply = f.post(body.as_bytes()[..cut].to_vec(), f.headers())?;
        reply.refused()?;
        f.alive()?;
        prop_assert_eq!(&f.snapshot(), &before, "a truncated body changed state");
        Ok(())
    });
    // Control: the whole body is a valid call, so the cuts above were what it refused.
    let whole = f.post(body.into_bytes(), f.headers()).unwrap();
    match whole.sane().unwrap() {
        Answer::ToolOk(v) => assert_eq!(v["key"]["name"], "truncated-name"),
        _ => panic!("the whole body must work: {}", whole.describe()),
    }
    assert_eq!(f.snapshot().keys.len(), before.keys.len() + 1);
    f.finish();
    f.stop();
}

// ---------------------------------------------------------------------------------------------
// 3. Wrong content types (and Accept headers)
// ---------------------------------------------------------------------------------------------

const WRONG_CONTENT_TYPES: &[&str] = &[
    "text/plain",
    "text/plain; charset=utf-8",
    "multipart/form-data; boundary=----x",
    "application/x-www-form-urlencoded",
    "application/jsonl",
    "application/json-patch+json",
    "application/ld+json",
    "application/vnd.api+json",
    "application/json5",
    "application/json/x",
    "application\\json",
    "application/ json",
    "text/json",
    "json",
    "",
    "application/",
    "/json",
    ";application/json",
    "application/*",
    "*/*",
    "text/event-stream",
    "application/octet-stream",
    "application/xml",
];

const ACCEPTS: &[Option<&str>] = &[
    Some("application/json, text/event-stream"),
    Some("application/json, text/event-stream"),
    Some("application/json, text/event-stream"),
    Some("application/json"),
    Some("text/event-stream"),
    Some("*/*"),
    Some(""),
    Some("text/html"),
    None,
];

#[test]
fn wrong_content_types_are_refused_with_4xx() {
    let f = Fixture::start(&[]);
    let before = f.snapshot();
    let content_types = prop_oneof![
        Just(None),
        select(WRONG_CONTENT_TYPES).prop_map(|s| Some(s.to_owned())),
        "[ -~]{0,60}"
            .prop_filter("not JSON", |s| !is_json_content_type(s))
            .prop_map(Some),
    ];
    let body = key_create_body("content-type-probe");
    let mut examples: Vec<(Option<String>, Option<&str>)> = WRONG_CONTENT_TYPES
        .iter()
        .map(|ct| (Some((*ct).to_owned()), ACCEPTS[0]))
        .collect();
    examples.push((None, ACCEPTS[0]));
    f.check(
        "content types",
        examples,
        (content_types, select(ACCEPTS)),
        |(ct, accept)| {
            let mut h = f.headers();
            h.remove("content-type");
            h.remove("accept");
            if let Some(ct) = &ct {
                h.insert("content-type", HeaderValue::from_str(ct).unwrap());
            }
            if let Some(a) = accept {
                h.insert("accept", HeaderValue::from_str(a).unwrap());
            }
            let reply = f.post(body.clone().into_bytes(), h)?;
            reply.refused()?;
            if ![400, 406, 415].contains(&reply.status) {
                fail!("expected 400, 406 or 415: {}", reply.describe());
            }
            f.alive()?;
            prop_assert_eq!(&f.snapshot(), &before, "a refused body changed state");
            Ok(())
        },
    );
    // Control: with JSON (any case, with parameters) the same body works.
    let mut h = f.headers();
    h.insert(
        "content-type",
        HeaderValue::from_static("Application/JSON; charset=utf-8"),
    );
    let whole = f.post(body.into_bytes(), h).unwrap();
    assert!(
        matches!(whole.sane().unwrap(), Answer::ToolOk(_)),
        "{}",
        whole.describe()
    );
    f.finish();
    f.stop();
}
