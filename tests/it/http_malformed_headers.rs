//! Malformed headers at the HTTP edge, property-tested: huge headers and invalid UTF-8 in
//! bodies and headers (harness: `malformed`).

use std::cell::Cell;

use proptest::prelude::*;
use proptest::sample::select;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::json;

use crate::malformed::*;
use crate::malformed_inputs::*;

// ---------------------------------------------------------------------------------------------
// 4. Huge headers
// ---------------------------------------------------------------------------------------------

const BIG_HEADER_NAMES: &[&str] = &[
    "x-pad",
    "user-agent",
    "x-request-source",
    "cookie",
    "x-forwarded-for",
    "x-forwarded-proto",
    "mcp-protocol-version",
    "mcp-session-id",
    "accept-language",
    "traceparent",
];

const FILLS: &[char] = &['a', '0', ' ', ',', ';', '=', '%', '\''];

#[derive(Debug, Clone)]
struct Padding {
    name: &'static str,
    count: usize,
    size: usize,
    fill: char,
}

fn padding() -> impl Strategy<Value = Padding> {
    let fill = select(FILLS);
    prop_oneof![
        // A few huge values.
        (
            select(BIG_HEADER_NAMES),
            1usize..=6,
            16 * 1024..=64 * 1024usize,
            fill.clone()
        ),
        // Many small ones.
        (select(BIG_HEADER_NAMES), 20usize..=250, 1usize..=64, fill),
    ]
    .prop_map(|(name, count, size, fill)| Padding {
        name,
        count,
        size,
        fill,
    })
}

#[test]
fn huge_headers_are_refused_or_served_never_5xx_never_hang() {
    let f = Fixture::start(&[]);
    let before = f.snapshot();
    let whoami = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "whoami", "arguments": {}}})
    .to_string();
    let tally = Cell::new((0usize, 0usize, 0usize));
    let pad = |name, count, size| Padding {
        name,
        count,
        size,
        fill: 'a',
    };
    let examples = vec![
        pad("x-pad", 1, 16 * 1024),
        pad("x-pad", 1, 64 * 1024),
        pad("user-agent", 1, 64 * 1024),
        pad("cookie", 1, 64 * 1024),
        pad("mcp-protocol-version", 1, 64 * 1024),
        pad("x-forwarded-for", 1, 64 * 1024),
        pad("x-pad", 8, 64 * 1024),
        pad("x-pad", 95, 1),
        pad("x-pad", 101, 1),
        pad("x-pad", 1000, 8),
    ];
    f.check("huge headers", examples, padding(), |p| {
        let mut h = f.headers();
        let value = p.fill.to_string().repeat(p.size);
        for i in 0..p.count {
            let name = if p.name == "x-pad" {
                HeaderName::from_bytes(format!("x-pad-{i}").as_bytes()).unwrap()
            } else {
                HeaderName::from_static(p.name)
            };
            h.append(name, HeaderValue::from_str(&value).unwrap());
        }
        let total = p.count * (p.size + p.name.len() + 8);
        let (mut served, mut refused, mut dropped) = tally.get();
        match f.send(whoami.clone().into_bytes(), h) {
            Ok(reply) => match reply.sane()? {
                Answer::ToolOk(me) if me["role"] == "admin" => served += 1,
                Answer::ToolOk(_) | Answer::RpcResult | Answer::Accepted => {
                    fail!("wrong answer: {}", reply.describe())
                }
                _ if (400..500).contains(&reply.status) => refused += 1,
                _ => fail!("neither served nor refused: {}", reply.describe()),
            },
            // A request far past the header limit may be cut off while it is still being
            // written; that is a refusal too, but only for such a request, and never a hang.
            Err(e) if !e.is_timeout() && total > 256 * 1024 => dropped += 1,
            Err(e) => fail!(
                "no answer for {total} header bytes (timeout: {}): {e:?}",
                e.is_timeout()
            ),
        }
        tally.set((served, refused, dropped));
        f.alive()?;
        prop_assert_eq!(&f.snapshot(), &before, "state changed");
        Ok(())
    });
    let (served, refused, dropped) = tally.get();
    eprintln!("huge headers: {served} served, {refused} refused, {dropped} cut off");
    f.finish();
    f.stop();
}

// ---------------------------------------------------------------------------------------------
// 5. Invalid UTF-8
// ---------------------------------------------------------------------------------------------

const UTF8_HEADER_NAMES: &[&str] = &[
    "content-type",
    "accept",
    "authorization",
    "mcp-protocol-version",
    "mcp-session-id",
    "user-agent",
    "x-request-source",
    "cookie",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "origin",
    "x-custom",
];

/// What comes before the invalid bytes in a header value.
const PREFIXES: &[&str] = &["", "application/json", "Bearer ", "2025-06-18", "x"];

#[derive(Debug, Clone)]
enum BadUtf8 {
    /// Bytes ≥ 0x80 spliced into a valid key_create body at a position.
    Body { at: usize, bytes: Vec<u8> },
    /// A header (replacing the well-behaved one) with such bytes in its value.
    Header {
        name: &'static str,
        prefix: &'static str,
        bytes: Vec<u8>,
    },
}

fn bad_utf8() -> impl Strategy<Value = BadUtf8> {
    // Lone continuation bytes, truncated sequences, overlongs, surrogates, > U+10FFFF, 0xFF.
    let bytes = prop_oneof![
        prop::collection::vec(0x80u8..=0xFF, 1..6),
        select(vec![
            vec![0xC0, 0x80],
            vec![0xED, 0xA0, 0x80],
            vec![0xF4, 0x90, 0x80, 0x80],
            vec![0xE2, 0x82],
            vec![0xFF, 0xFE],
            vec![0xF0, 0x9F, 0x94],
        ]),
    ];
    prop_oneof![
        (0usize..400, bytes.clone()).prop_map(|(at, bytes)| BadUtf8::Body { at, bytes }),
        (select(UTF8_HEADER_NAMES), select(PREFIXES), bytes).prop_map(|(name, prefix, bytes)| {
            BadUtf8::Header {
                name,
                prefix,
                bytes,
            }
        }),
    ]
}

#[test]
fn invalid_utf8_in_bodies_and_headers_gets_clear_errors() {
    // Refused credentials must not lock the test's own address out.
    let f = Fixture::start(&["--lockout-threshold", "1000000"]);
    let before = f.snapshot();
    let body = key_create_body("utf8-probe");
    let whoami = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "whoami", "arguments": {}}})
    .to_string();
    let mut examples: Vec<BadUtf8> = UTF8_HEADER_NAMES
        .iter()
        .map(|name| BadUtf8::Header {
            name,
            prefix: "x",
            bytes: vec![0xFF],
        })
        .collect();
    examples.extend([
        BadUtf8::Body {
            at: 0,
            bytes: vec![0xFF],
        },
        BadUtf8::Body {
            at: body.len(),
            bytes: vec![0xC3],
        },
        // Inside the name string: {"jsonrpc"…"arguments":{"name":"
        BadUtf8::Body {
            at: body.find("utf8-probe").unwrap(),
            bytes: vec![0xED, 0xA0, 0x80],
        },
    ]);
    f.check("invalid UTF-8", examples, bad_utf8(), |case| {
        match &case {
            BadUtf8::Body { at, bytes } => {
                let mut b = body.clone().into_bytes();
                let at = (*at).min(b.len());
                b.splice(at..at, bytes.iter().copied());
                prop_assume!(std::str::from_utf8(&b).is_err());
                let reply = f.post(b, f.headers())?;
                reply.refused()?;
            }
            BadUtf8::Header {
                name,
                prefix,
                bytes,
            } => {
                let mut value = prefix.as_bytes().to_vec();
                value.extend_from_slice(bytes);
                value.extend_from_slice(b"z");
                let mut h = f.headers();
                h.insert(
                    HeaderName::from_static(name),
                    HeaderValue::from_bytes(&value).unwrap(),
                );
                let reply = f.post(whoami.clone().into_bytes(), h)?;
                match reply.sane()? {
                    Answer::ToolOk(me) if me["role"] == "admin" => {}
                    Answer::ToolOk(_) | Answer::RpcResult | Answer::Accepted => {
                        fail!("wrong answer: {}", reply.describe())
                    }
                    _ => {
                        reply.refused()?;
                    }
                }
                // Headers that carry meaning cannot be half-read into a success.
                let must_refuse = matches!(
                    *name,
                    "content-type" | "accept" | "authorization" | "mcp-protocol-version"
                );
                if must_refuse && reply.status < 400 {
                    fail!(
                        "{name} with invalid UTF-8 was accepted: {}",
                        reply.describe()
                    );
                }
                if *name == "authorization" && reply.status != 401 {
                    fail!("a non-text credential must get 401: {}", reply.describe());
                }
            }
        }
        f.alive()?;
        prop_assert_eq!(&f.snapshot(), &before, "state changed");
        Ok(())
    });
    f.finish();
    f.stop();
}
