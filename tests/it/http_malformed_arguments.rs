//! Argument errors never echo a presented key, and SQL metacharacters in names are stored
//! verbatim or refused; property-tested (harness: `malformed`).

use std::cell::Cell;

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Value, json};

use crate::malformed::*;
use crate::malformed_inputs::*;

/// Where a pasted key could be echoed back: every audit filter, and the enum-valued and
/// free-text arguments of the key and role tools.
const ECHO_SITES: &[(&str, &str, &str)] = &[
    ("audit_query", "actor", "list"),
    ("audit_query", "role", "list"),
    ("audit_query", "tenant", "list"),
    ("audit_query", "action", "list"),
    ("audit_query", "target", "list"),
    ("audit_query", "status", "list"),
    ("audit_query", "source", "list"),
    ("audit_query", "client_ip", "list"),
    ("audit_query", "since", "text"),
    ("audit_query", "until", "text"),
    ("audit_query", "time_zone", "text"),
    ("audit_query", "limit", "text"),
    ("audit_query", "cursor", "text"),
    ("audit_summary", "group_by", "list"),
    ("audit_summary", "top", "text"),
    ("audit_get", "id", "text"),
    ("key_create", "role", "text"),
    ("key_create", "tenants", "list"),
    ("key_create", "expires", "text"),
    ("key_create", "name", "text"),
    ("key_list", "role", "list"),
    ("key_get", "key_id", "text"),
    ("key_rotate", "grace_period", "text"),
    ("role_create", "permissions", "list"),
    ("role_create", "name", "text"),
    ("role_get", "name", "text"),
];

const ECHO_PREFIXES: &[&str] = &["", "x ", "\"", "[", "kw_"];

#[test]
fn argument_errors_never_echo_a_presented_key() {
    let f = Fixture::start(&[]);
    let me = f.ok("whoami", &json!({})).unwrap();
    let own_id = me["key_id"].as_str().unwrap().to_owned();
    let other = f
        .ok(
            "key_create",
            &json!({"name": "rotate-me", "role": "reader", "tenants": ["*"]}),
        )
        .unwrap()["key"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = f.snapshot();
    let base = |tool: &str| match tool {
        "audit_summary" => json!({"group_by": ["action"]}),
        "audit_get" => json!({"id": 1}),
        "key_create" => json!({"name": "echo", "role": "reader", "tenants": ["*"]}),
        "key_get" => json!({"key_id": own_id}),
        "key_rotate" => json!({"key_id": other}),
        "role_create" => json!({"name": "echo", "permissions": ["key:read"]}),
        "role_get" => json!({"name": "reader"}),
        _ => json!({}),
    };
    let case = |((tool, field, shape), prefix): ((&str, &str, &str), &str)| -> CaseResult {
        // The key as the whole value, or with something in front of it.
        let value = format!("{prefix}{}", f.key);
        let mut args = base(tool);
        args[field] = if shape == "list" {
            json!([value])
        } else {
            json!(value)
        };
        let reply = f.call(tool, &args)?;
        // A key is a well-formed actor or target id: that filter just finds nothing.
        reply.sane()?;
        if reply.text().contains(&f.key) {
            fail!(
                "{tool}.{field}: {}",
                reply.describe().replace(&f.key, "<THE KEY>")
            );
        }
        f.alive()?;
        prop_assert_eq!(&f.snapshot(), &before, "state changed");
        Ok(())
    };
    // Every site, all reported at once.
    let echoes: Vec<String> = ECHO_SITES
        .iter()
        .filter_map(|site| case((*site, "")).err().map(|e| e.to_string()))
        .collect();
    assert!(
        echoes.is_empty(),
        "{} of {} argument errors echo the API key:\n{}",
        echoes.len(),
        ECHO_SITES.len(),
        echoes.join("\n")
    );
    f.check(
        "key echo",
        Vec::new(),
        (select(ECHO_SITES), select(ECHO_PREFIXES)),
        case,
    );
    f.finish();
    f.stop();
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum NameField {
    KeyName,
    KeyDescription,
    KeyRole,
    KeyTenant,
    KeyExpires,
    KeyGet,
    KeyListRole,
    RoleName,
    RoleDescription,
    RoleGet,
}

const NAME_FIELDS: &[NameField] = &[
    NameField::KeyName,
    NameField::KeyDescription,
    NameField::KeyRole,
    NameField::KeyTenant,
    NameField::KeyExpires,
    NameField::KeyGet,
    NameField::KeyListRole,
    NameField::RoleName,
    NameField::RoleDescription,
    NameField::RoleGet,
];

/// A description as stored: trimmed, hidden characters written out as `<U+XXXX>`.
fn visible(value: &str) -> String {
    keyward::domain::text::neutralize(value.trim(), true).into_owned()
}

#[test]
fn sql_metacharacters_in_names_are_stored_verbatim_or_refused() {
    let f = Fixture::start(&[]);
    let n = Cell::new(0u32);
    let fields = select(NAME_FIELDS);
    let mut examples = Vec::new();
    for field in NAME_FIELDS {
        for value in CLASSICS {
            examples.push((*field, (*value).to_owned()));
        }
        examples.push((*field, "x".repeat(5000)));
    }
    f.check(
        "names",
        examples,
        (fields, injection()),
        |(field, value)| {
            n.set(n.get() + 1);
            let unique = format!("inj-{}", n.get());
            let before = f.snapshot();
            let key = |name: &str, extra: Value| {
                let mut a = json!({"name": name, "role": "reader", "tenants": ["*"]});
                for (k, v) in extra.as_object().unwrap() {
                    a[k] = v.clone();
                }
                a
            };
            let (tool, args) = match field {
                NameField::KeyName => ("key_create", key(&value, json!({}))),
                NameField::KeyDescription => {
                    ("key_create", key(&unique, json!({"description": value})))
                }
                NameField::KeyRole => ("key_create", key(&unique, json!({"role": value}))),
                NameField::KeyTenant => ("key_create", key(&unique, json!({"tenants": [value]}))),
                NameField::KeyExpires => ("key_create", key(&unique, json!({"expires": value}))),
                NameField::KeyGet => ("key_get", json!({"key_id": value})),
                NameField::KeyListRole => ("key_list", json!({"role": [value]})),
                NameField::RoleName => (
                    "role_create",
                    json!({"name": value, "permissions": ["key:read"]}),
                ),
                NameField::RoleDescription => (
                    "role_create",
                    json!({"name": unique, "permissions": ["key:read"], "description": value}),
                ),
                NameField::RoleGet => ("role_get", json!({"name": value})),
            };
            let reply = f.call(tool, &args)?;
            let answer = reply.sane()?;
            let after = f.snapshot();
            match answer {
                Answer::ToolOk(v) => match field {
                    NameField::KeyName
                    | NameField::KeyDescription
                    | NameField::KeyTenant
                    | NameField::KeyExpires
                    | NameField::KeyRole => {
                        // Stored exactly as given (names and descriptions are trimmed).
                        let k = &v["key"];
                        let want = |got: &Value, sent: &str| got == sent.trim();
                        let same = match field {
                            NameField::KeyName => want(&k["name"], &value),
                            // Descriptions keep hidden characters as visible escapes.
                            NameField::KeyDescription => k["description"] == visible(&value),
                            NameField::KeyTenant => k["tenants"] == json!([value]),
                            NameField::KeyRole => k["role"] == value,
                            _ => true,
                        };
                        if !same {
                            fail!("{field:?} {value:?} stored as {k}");
                        }
                        let id = k["id"].as_str().unwrap_or_default().to_owned();
                        let got = f.ok("key_get", &json!({"key_id": id}))?;
                        if got["key"]["name"] != k["name"]
                            || got["key"]["description"] != k["description"]
                        {
                            fail!("key_get disagrees with key_create: {got} vs {k}");
                        }
                        prop_assert_eq!(after.keys.len(), before.keys.len() + 1);
                        prop_assert_eq!(&after.roles, &before.roles);
                    }
                    NameField::RoleName | NameField::RoleDescription => {
                        let r = &v["role"];
                        let same = match field {
                            NameField::RoleName => r["name"] == value,
                            _ => r["description"] == visible(&value),
                        };
                        if !same {
                            fail!("{field:?} {value:?} stored as {r}");
                        }
                        prop_assert_eq!(after.roles.len(), before.roles.len() + 1);
                        prop_assert_eq!(&after.keys, &before.keys);
                    }
                    NameField::KeyGet => fail!("key_get found {value:?}: {v}"),
                    NameField::RoleGet => {
                        if v["role"]["name"] != value {
                            fail!("role_get {value:?} returned {v}");
                        }
                    }
                    NameField::KeyListRole => {
                        for k in v["keys"].as_array().into_iter().flatten() {
                            if k["role"] != value {
                                fail!("key_list role {value:?} listed {k}");
                            }
                        }
                    }
                },
                Answer::ToolError { kind, .. }
                    if [
                        "invalid_argument",
                        "not_found",
                        "conflict",
                        "permission_denied",
                    ]
                    .contains(&kind.as_str()) =>
                {
                    prop_assert_eq!(&after, &before, "a refused call changed state");
                }
                Answer::RpcError { code: -32602, .. } => {
                    prop_assert_eq!(&after, &before, "a refused call changed state");
                }
                _ => fail!("expected a result or a clear error: {}", reply.describe()),
            }
            f.alive()?;
            Ok(())
        },
    );
    f.finish();
    f.stop();
}
