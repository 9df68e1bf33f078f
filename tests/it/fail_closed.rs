//! Fail closed: when the database will not take audit records, calls fail with a clear error
//! instead of running unaudited, nothing changes, and service resumes once the trail is back.

use serde_json::json;

use crate::support::{Harness, text};

/// Makes every audit insert fail, as a full disk or a broken trail would.
async fn break_the_trail(h: &Harness, broken: bool) {
    match &h.app.store {
        keyward::store::Store::Sqlite(p) => {
            let sql = if broken {
                "CREATE TRIGGER audit_down BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'audit storage refused the write'); END"
            } else {
                "DROP TRIGGER audit_down"
            };
            sqlx::query(sql).execute(p).await.unwrap();
        }
        keyward::store::Store::Postgres(p) => {
            let statements: &[&str] = if broken {
                &[
                    "CREATE FUNCTION audit_down() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'audit storage refused the write'; END $$ LANGUAGE plpgsql",
                    "CREATE TRIGGER audit_down BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION audit_down()",
                ]
            } else {
                &[
                    "DROP TRIGGER audit_down ON audit_events",
                    "DROP FUNCTION audit_down()",
                ]
            };
            for s in statements {
                sqlx::query(s).execute(p).await.unwrap();
            }
        }
    }
}

#[tokio::test]
async fn calls_fail_clearly_and_change_nothing_while_the_trail_is_down() {
    let h =
        Harness::at(chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 6, 1, 0, 0, 0).unwrap())
            .await;
    let admin = h.client(&h.bootstrap().await).await;
    let before = admin.ok("key_list", json!({"include_revoked": true})).await["keys"]
        .as_array()
        .unwrap()
        .len();

    break_the_trail(&h, true).await;
    // A read: it ran, but its result is withheld because its record could not be written.
    let r = admin.call("whoami", json!({})).await;
    assert_eq!(r.is_error, Some(true));
    assert_eq!(
        text(&r),
        "the audit trail is unavailable, so the call was not completed"
    );
    // A change: rolled back together with its record.
    let r = admin
        .call(
            "key_create",
            json!({"name": "x", "role": "reader", "tenants": ["*"]}),
        )
        .await;
    assert_eq!(r.is_error, Some(true));
    assert!(r.structured_content.is_none(), "no secret was handed out");
    // A denial cannot be recorded either, and says so.
    let r = admin
        .call("key_get", json!({"key_id": "key_missing"}))
        .await;
    assert_eq!(r.is_error, Some(true));
    assert_eq!(
        text(&r),
        "the audit trail is unavailable, so the call was not completed"
    );

    break_the_trail(&h, false).await;
    let after = admin.ok("key_list", json!({"include_revoked": true})).await["keys"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        after, before,
        "nothing was created while the trail was down"
    );
    admin.ok("whoami", json!({})).await;
    let trail = admin.audit(json!({"limit": 100})).await;
    assert!(
        trail.iter().all(|e| e["action"] != "key_create"),
        "no record of a change that did not happen"
    );
}

/// Makes the database refuse only audit records whose reason mentions "poison".
async fn refuse_poison(h: &Harness) {
    let statements: &[&str] = match &h.app.store {
        keyward::store::Store::Sqlite(_) => &[
            "CREATE TRIGGER audit_poison BEFORE INSERT ON audit_events WHEN NEW.reason LIKE '%poison%' BEGIN SELECT RAISE(ABORT, 'refused'); END",
        ],
        keyward::store::Store::Postgres(_) => &[
            "CREATE FUNCTION audit_poison() RETURNS trigger AS $$ BEGIN IF NEW.reason LIKE '%poison%' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER audit_poison BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION audit_poison()",
        ],
    };
    for s in statements {
        match &h.app.store {
            keyward::store::Store::Sqlite(p) => sqlx::query(s).execute(p).await.map(|_| ()),
            keyward::store::Store::Postgres(p) => sqlx::query(s).execute(p).await.map(|_| ()),
        }
        .unwrap();
    }
}

#[tokio::test]
async fn a_record_the_database_refuses_fails_only_its_own_call() {
    let h =
        Harness::at(chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 6, 1, 0, 0, 0).unwrap())
            .await;
    let admin = h.client(&h.bootstrap().await).await;
    refuse_poison(&h).await;
    // Many calls at once, so the writer batches the refused record with others.
    for _ in 0..5 {
        let calls = (0..24).map(|i| {
            let (tool, args) = if i == 12 {
                ("key_get", json!({"key_id": "key_poison"}))
            } else {
                ("whoami", json!({}))
            };
            admin.call(tool, args)
        });
        let results = futures::future::join_all(calls).await;
        for (i, r) in results.iter().enumerate() {
            if i == 12 {
                assert_eq!(
                    text(r),
                    "the audit trail is unavailable, so the call was not completed"
                );
            } else {
                assert_ne!(r.is_error, Some(true), "call {i} failed: {}", text(r));
            }
        }
    }
    let s = admin
        .ok(
            "audit_summary",
            json!({"action": ["whoami"], "group_by": ["status"]}),
        )
        .await;
    assert_eq!(
        s["total_events"],
        5 * 23,
        "every answered call is in the trail"
    );
}
