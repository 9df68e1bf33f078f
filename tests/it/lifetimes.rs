//! Property: whatever an expiring (or tenant-scoped, or narrow) caller does through the tools,
//! no key or operator ends up with more power, more tenants or a later expiry than that caller
//! could grant. Random callers, targets, lifetimes and operations against the real server
//! (in-process, manual clock), the invariant read back from the database after every call.

use chrono::{DateTime, TimeZone, Utc};
use keyward::domain::permission::{Permission, PermissionSet};
use keyward::domain::tenant::TenantScope;
use keyward::store::{Db, Store};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

use crate::server::TestServer;
use crate::support::{Client, secret};

/// What a principal can do at a moment: `None` when it can do nothing (disabled, revoked,
/// expired, or its role deleted).
#[derive(Debug, Clone, PartialEq)]
struct Standing {
    permissions: PermissionSet,
    tenants: TenantScope,
    /// µs; `None` never expires.
    expires: Option<i64>,
}

impl Standing {
    /// Whether `self` holds anything `before` did not.
    fn gained_over(&self, before: Option<&Standing>) -> bool {
        match before {
            None => true,
            Some(b) => {
                !self.permissions.is_subset_of(b.permissions)
                    || !self.tenants.is_within(&b.tenants)
                    || later(self.expires, b.expires)
            }
        }
    }

    /// Whether `granter` could have handed out all of `self`.
    fn within(&self, granter: &Standing) -> bool {
        self.permissions.is_subset_of(granter.permissions)
            && self.tenants.is_within(&granter.tenants)
            && !later(self.expires, granter.expires)
    }
}

/// `a` ends after `b` (`None` = never).
fn later(a: Option<i64>, b: Option<i64>) -> bool {
    match (a, b) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(a), Some(b)) => a > b,
    }
}

type Row = (String, String, Option<i64>, bool, bool, String, bool);

/// Every key and operator, by id, as it stands at `now`.
async fn standings(store: &Store, now: DateTime<Utc>) -> Vec<(String, Option<Standing>)> {
    let sql = "SELECT k.id, k.tenants, k.expires_at, k.disabled_at IS NOT NULL, \
               k.revoked_at IS NOT NULL, r.permissions, r.deleted_at IS NOT NULL \
               FROM api_keys k JOIN roles r ON r.name = k.role_name \
               UNION ALL SELECT o.id, o.tenants, NULL, o.disabled_at IS NOT NULL, FALSE, \
               r.permissions, r.deleted_at IS NOT NULL \
               FROM operators o JOIN roles r ON r.name = o.role_name";
    let rows: Vec<Row> = match &store.db {
        Db::Sqlite(p) => sqlx::query_as(sql).fetch_all(p).await.unwrap(),
        Db::Postgres(p) => sqlx::query_as(sql).fetch_all(p).await.unwrap(),
    };
    let now = now.timestamp_micros();
    rows.into_iter()
        .map(
            |(id, tenants, expires, disabled, revoked, perms, deleted)| {
                let alive = !disabled && !revoked && !deleted && expires.is_none_or(|e| e > now);
                let names: Vec<&str> = tenants.split_whitespace().collect();
                let standing = alive.then(|| Standing {
                    permissions: perms.parse().unwrap(),
                    tenants: TenantScope::parse(&names).unwrap(),
                    expires,
                });
                (id, standing)
            },
        )
        .collect()
}

const CALLER_ROLES: [&str; 3] = ["admin", "key_manager", "granter"];
const TARGET_ROLES: [&str; 4] = ["reader", "key_manager", "admin", "custom"];
const TENANTS: [&[&str]; 3] = [&["*"], &["a"], &["a", "b"]];
const EXPIRIES: [&str; 4] = ["never", "1h", "10d", "100d"];

#[derive(Debug, Clone)]
struct Case {
    caller_role: usize,
    caller_tenants: usize,
    caller_expiry: usize,
    target_is_key: bool,
    target_role: usize,
    target_tenants: usize,
    target_expiry: usize,
    target_disabled: bool,
    op: u8,
    op_role: usize,
    custom_perms: u16,
    new_perms: u16,
}

fn case() -> impl Strategy<Value = Case> {
    (
        (0..3usize, 0..3usize, 0..4usize),
        (
            any::<bool>(),
            0..4usize,
            0..3usize,
            0..4usize,
            any::<bool>(),
        ),
        (0..8u8, 0..4usize, 1..512u16, 1..512u16),
    )
        .prop_map(|(c, t, o)| Case {
            caller_role: c.0,
            caller_tenants: c.1,
            caller_expiry: c.2,
            target_is_key: t.0,
            target_role: t.1,
            target_tenants: t.2,
            target_expiry: t.3,
            target_disabled: t.4,
            op: o.0,
            op_role: o.1,
            custom_perms: o.2,
            new_perms: o.3,
        })
}

fn perms(bits: u16) -> Vec<&'static str> {
    Permission::ALL
        .into_iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, p)| p.as_str())
        .collect()
}

/// What the admin set up for one case.
struct Target {
    id: String,
    kind: &'static str,
    custom: String,
}

impl Target {
    fn arg(&self) -> Value {
        if self.kind == "key" {
            json!({"key_id": self.id})
        } else {
            json!({"operator_id": self.id})
        }
    }
}

fn role_of(i: usize, custom: &str) -> String {
    if TARGET_ROLES[i] == "custom" {
        custom.to_owned()
    } else {
        TARGET_ROLES[i].to_owned()
    }
}

/// Sets up the target, as the never-expiring admin.
async fn setup(n: usize, c: &Case, root: &Client) -> Target {
    let custom = format!("custom{n}");
    root.ok(
        "role_create",
        json!({"name": custom, "permissions": perms(c.custom_perms)}),
    )
    .await;
    let role = role_of(c.target_role, &custom);
    let tenants = TENANTS[c.target_tenants];
    let target = if c.target_is_key {
        let v = root
            .ok(
                "key_create",
                json!({"name": format!("t{n}"), "role": role,
                "tenants": tenants, "expires": EXPIRIES[c.target_expiry]}),
            )
            .await;
        Target {
            id: v["key"]["id"].as_str().unwrap().to_owned(),
            kind: "key",
            custom,
        }
    } else {
        let v = root
            .ok(
                "operator_create",
                json!({"username": format!("op{n}"),
                "password": "correct horse battery", "role": role, "tenants": tenants}),
            )
            .await;
        Target {
            id: v["operator"]["id"].as_str().unwrap().to_owned(),
            kind: "operator",
            custom,
        }
    };
    if c.target_disabled {
        root.ok(&format!("{}_disable", target.kind), target.arg())
            .await;
    }
    target
}

/// One operation as the caller. Returns the id of the key whose secret the caller was handed.
async fn act(n: usize, c: &Case, t: &Target, caller: &Client) -> Option<String> {
    let kind = t.kind;
    let op_role = role_of(c.op_role, &t.custom);
    let tenants = TENANTS[c.target_tenants];
    match c.op {
        0 => {
            caller.call(&format!("{kind}_enable"), t.arg()).await;
        }
        1 if kind == "key" => {
            let r = caller.call("key_rotate", t.arg()).await;
            if r.is_error != Some(true) {
                return Some(t.id.clone());
            }
        }
        1 | 2 => {
            caller
                .call(
                    "operator_set_role",
                    json!({"operator_id": t.id, "role": op_role}),
                )
                .await;
        }
        3 => {
            caller
                .call(
                    "role_update",
                    json!({"name": t.custom, "permissions": perms(c.new_perms)}),
                )
                .await;
        }
        4 => {
            caller
                .call(
                    "key_create",
                    json!({"name": format!("n{n}"), "role": op_role,
                    "tenants": tenants, "expires": EXPIRIES[c.target_expiry]}),
                )
                .await;
        }
        5 => {
            caller
                .call(
                    "operator_create",
                    json!({"username": format!("new{n}"),
                    "password": "correct horse battery", "role": op_role, "tenants": tenants}),
                )
                .await;
        }
        6 => {
            caller.call(&format!("{kind}_disable"), t.arg()).await;
            caller.call(&format!("{kind}_enable"), t.arg()).await;
        }
        _ => {
            // A fresh role (no holders yet), then given to the target.
            let fresh = format!("fresh{n}");
            caller
                .call(
                    "role_create",
                    json!({"name": fresh, "permissions": perms(c.new_perms)}),
                )
                .await;
            if kind == "operator" {
                caller
                    .call(
                        "operator_set_role",
                        json!({"operator_id": t.id, "role": fresh}),
                    )
                    .await;
            }
        }
    }
    None
}

#[test]
fn no_principal_ends_with_more_than_its_granter_allowed() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let start = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
    let (h, root) = rt.block_on(async {
        let h = TestServer::in_process(start).await;
        let root = h.admin().await;
        root.ok(
            "role_create",
            json!({"name": "granter", "permissions": ["key:read", "key:create", "key:update",
                "role:read", "role:write", "operator:read", "operator:write"]}),
        )
        .await;
        (h, root)
    });
    let mut runner = TestRunner::new(Config {
        cases: 160,
        failure_persistence: None,
        ..Config::default()
    });
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let result = runner.run(&case(), |c| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        rt.block_on(async {
            let made = root
                .ok(
                    "key_create",
                    json!({"name": format!("caller{n}"),
                    "role": CALLER_ROLES[c.caller_role], "tenants": TENANTS[c.caller_tenants],
                    "expires": EXPIRIES[c.caller_expiry]}),
                )
                .await;
            let caller_id = made["key"]["id"].as_str().unwrap().to_owned();
            let caller = h.client(&secret(&made)).await;
            let target = setup(n, &c, &root).await;
            let before = standings(&h.app().store, h.app().now()).await;
            let granter = before
                .iter()
                .find(|(id, _)| *id == caller_id)
                .and_then(|(_, s)| s.clone())
                .expect("the caller is live");
            let handed = act(n, &c, &target, &caller).await;
            caller.close().await;
            let after = standings(&h.app().store, h.app().now()).await;
            let earlier = |id: &str| {
                before
                    .iter()
                    .find(|(i, _)| i == id)
                    .and_then(|(_, s)| s.as_ref())
            };
            for (id, standing) in &after {
                let Some(now) = standing else { continue };
                prop_assert!(
                    !now.gained_over(earlier(id)) || now.within(&granter),
                    "{id} gained {now:?} (was {:?}) through a caller holding {granter:?}",
                    earlier(id)
                );
            }
            if let Some(id) = handed {
                let s = after
                    .iter()
                    .find(|(i, _)| *i == id)
                    .and_then(|(_, s)| s.as_ref());
                prop_assert!(
                    s.is_none_or(|s| s.within(&granter)),
                    "a secret of {id} was handed over"
                );
            }
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
