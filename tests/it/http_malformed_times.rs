//! Absurd time ranges and limits get clear errors or correct pages, and a malformed request
//! does not fail the calls beside it; property-tested (harness: `malformed`).

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Value, json};

use crate::malformed::*;

// ---------------------------------------------------------------------------------------------
// 8. Absurd time ranges and limits
// ---------------------------------------------------------------------------------------------

const ABSURD_TIMES: &[&str] = &[
    "99999999d",
    "-5h",
    "-0s",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59.999999999Z",
    "10000-01-01T00:00:00Z",
    "+10000-01-01T00:00:00Z",
    "0000-01-01T00:00:00Z",
    "-0001-01-01T00:00:00Z",
    "0001-01-01",
    "9999-12-31",
    "0000-01-01",
    "10000-01-01",
    "1969-12-31T23:59:59Z",
    "1970-01-01T00:00:00Z",
    "2262-04-11T23:47:16.854775807Z",
    "1677-09-21T00:12:43.145224192Z",
    "2038-01-19T03:14:08Z",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-12:00",
    "3660d",
    "3661d",
    "87840h",
    "18446744073709551615s",
    "9223372036854775807s",
    "9223372036854775808ns",
    "1e9d",
    "0s",
    "0d",
    "now",
    "today",
    "yesterday",
    "tomorrow",
    "NaN",
    "inf",
    "",
    "  ",
    "2026-02-30",
    "2026-13-01",
    "2026-00-10T00:00:00Z",
    "2026-01-01T24:00:00Z",
    "2026-01-01T23:59:60Z",
];

const TIME_ZONES: &[&str] = &[
    "UTC",
    "Pacific/Kiritimati",
    "Etc/GMT+12",
    "Etc/GMT-14",
    "Asia/Kathmandu",
    "America/St_Johns",
    "Europe/Paris",
    "Nowhere/Nothing",
    "",
    "+14:00",
    "UTC'; --",
];

const UNITS: &[&str] = &["s", "m", "h", "d", "w", "y", "ms", "us", "ns", ""];

fn absurd_time() -> impl Strategy<Value = String> {
    let ymd = || (0i64..=12000, 1u32..=12, 1u32..=28);
    prop_oneof![
        4 => select(ABSURD_TIMES).prop_map(str::to_owned),
        1 => ymd().prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}T00:00:00Z")),
        1 => ymd().prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}")),
        1 => ("-?[0-9]{1,25}", select(UNITS))
            .prop_map(|(n, u)| format!("{n}{u}")),
    ]
}

static ABSURD_NUMBERS: std::sync::LazyLock<Vec<Value>> = std::sync::LazyLock::new(|| {
    vec![
        json!(-1),
        json!(0),
        json!(100),
        json!(101),
        json!(1_000_000_000_000i64),
        json!(i64::MAX),
        json!(i64::MIN),
        json!(u64::MAX),
        json!(1.5),
        json!(1.0),
        json!(-0.0),
        json!(1e308),
        json!("20"),
        json!(""),
        json!(null),
        json!(true),
        json!([]),
        json!({}),
    ]
});

fn absurd_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => (1i64..=3).prop_map(Value::from),
        3 => select(ABSURD_NUMBERS.clone()),
        1 => any::<i64>().prop_map(Value::from),
    ]
}

#[derive(Debug, Clone)]
struct Window {
    summary: bool,
    since: Option<String>,
    until: Option<String>,
    time_zone: Option<&'static str>,
    number: Option<Value>,
    group_by: &'static [&'static str],
}

const GROUPINGS: &[&[&str]] = &[
    &["action"],
    &["day"],
    &["hour"],
    &["hour", "actor"],
    &["status", "day"],
];

fn window() -> impl Strategy<Value = Window> {
    (
        any::<bool>(),
        prop::option::of(absurd_time()),
        prop::option::of(absurd_time()),
        prop::option::weighted(0.4, select(TIME_ZONES)),
        prop::option::of(absurd_number()),
        select(GROUPINGS),
    )
        .prop_map(
            |(summary, since, until, time_zone, number, group_by)| Window {
                summary,
                since,
                until,
                time_zone,
                number,
                group_by,
            },
        )
}

fn rfc3339(v: &Value) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    v.as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
}

#[test]
fn absurd_time_ranges_and_limits_get_clear_errors_or_correct_pages() {
    let f = Fixture::start(&[]);
    // Enough events for a page of 1-3 to be truncated.
    for _ in 0..6 {
        f.alive().unwrap();
    }
    let before = f.snapshot();
    // Every absurd time at each end of the window (with pages of one, so a cursor comes
    // back), and every absurd number as limit and as top.
    let plain = |summary: bool| Window {
        summary,
        since: None,
        until: None,
        time_zone: None,
        number: Some(json!(1)),
        group_by: GROUPINGS[0],
    };
    let mut examples = Vec::new();
    for t in ABSURD_TIMES {
        examples.push(Window {
            since: Some((*t).to_owned()),
            ..plain(false)
        });
        examples.push(Window {
            until: Some((*t).to_owned()),
            ..plain(false)
        });
        examples.push(Window {
            since: Some((*t).to_owned()),
            time_zone: Some("Pacific/Kiritimati"),
            group_by: GROUPINGS[1],
            ..plain(true)
        });
    }
    for n in ABSURD_NUMBERS.iter() {
        for summary in [false, true] {
            examples.push(Window {
                number: Some(n.clone()),
                ..plain(summary)
            });
        }
    }
    f.check("absurd windows", examples, window(), |w| {
        let mut args = if w.summary {
            json!({"group_by": w.group_by})
        } else {
            json!({})
        };
        if let Some(s) = &w.since {
            args["since"] = json!(s);
        }
        if let Some(u) = &w.until {
            args["until"] = json!(u);
        }
        if let Some(tz) = w.time_zone {
            args["time_zone"] = json!(tz);
        }
        let number_name = if w.summary { "top" } else { "limit" };
        if let Some(n) = &w.number {
            args[number_name] = n.clone();
        }
        let tool = if w.summary {
            "audit_summary"
        } else {
            "audit_query"
        };
        let reply = f.call(tool, &args)?;
        let bound = match &w.number {
            None | Some(Value::Null) if w.summary => Some(10),
            None | Some(Value::Null) => Some(20),
            Some(n) => n.as_i64().filter(|n| (1..=100).contains(n)),
        };
        match reply.sane()? {
            Answer::ToolOk(v) => {
                let Some(bound) = bound else {
                    fail!(
                        "{number_name} {:?} was accepted: {}",
                        w.number,
                        reply.describe()
                    );
                };
                let window = &v["window"];
                for edge in ["since", "until"] {
                    if !window[edge].is_null() && rfc3339(&window[edge]).is_none() {
                        fail!("window.{edge} is not RFC 3339: {window}");
                    }
                }
                if let (Some(s), Some(u)) = (rfc3339(&window["since"]), rfc3339(&window["until"]))
                    && s > u
                {
                    fail!("an inverted window was accepted: {window}");
                }
                let rows = if w.summary {
                    &v["groups"]
                } else {
                    &v["events"]
                };
                let Some(rows) = rows.as_array() else {
                    fail!("no rows: {v}")
                };
                if rows.len() as i64 > bound {
                    fail!("{} rows for {number_name} {bound}", rows.len());
                }
                // Any cursor the server hands out, it takes back.
                if let Some(cursor) = v["next_cursor"].as_str() {
                    let next = f.call("audit_query", &json!({"cursor": cursor}))?;
                    match next.sane()? {
                        Answer::ToolOk(page) if page["window"] == *window => {}
                        _ => fail!("the next page of {args} failed: {}", next.describe()),
                    }
                }
            }
            Answer::ToolError { kind, .. } if kind == "invalid_argument" => {}
            Answer::RpcError { code: -32602, .. } => {}
            _ => fail!(
                "expected a page or an invalid-argument error: {}",
                reply.describe()
            ),
        }
        f.alive()?;
        prop_assert_eq!(&f.snapshot(), &before, "state changed");
        Ok(())
    });
    f.finish();
    f.stop();
}

// ---------------------------------------------------------------------------------------------
// Neighbours
// ---------------------------------------------------------------------------------------------

/// A malformed request is its sender's problem alone: valid calls in flight at the same time
/// (whose audit records may share its batch) all succeed.
#[test]
fn a_malformed_request_does_not_fail_the_calls_beside_it() {
    let f = Fixture::start(&[]);
    let mut failed = Vec::new();
    for round in 0..10 {
        let requests: Vec<_> = (0..8)
            .map(|i| {
                // The first carries a NUL in its request id, which the trail records.
                let id = if i == 0 {
                    json!(format!("evil\u{0}{round}"))
                } else {
                    json!(i)
                };
                let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                    "params": {"name": "whoami", "arguments": {}}});
                f.http
                    .post(f.server.mcp())
                    .headers(f.headers())
                    .body(body.to_string())
            })
            .collect();
        let texts =
            f.rt.block_on(futures::future::join_all(requests.into_iter().map(
                |r| async move { r.send().await.unwrap().text().await.unwrap() },
            )));
        failed.extend(
            texts
                .into_iter()
                .skip(1)
                .filter(|t| !t.contains("\"role\":\"admin\"")),
        );
    }
    assert!(
        failed.is_empty(),
        "{} of 70 valid calls failed beside a malformed one, e.g. {}",
        failed.len(),
        failed[0]
    );
    f.finish();
    f.stop();
}
