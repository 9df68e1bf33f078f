//! Fail closed: when the database will not take audit records, calls fail with a clear error
//! instead of running unaudited, nothing changes, nothing answered is ever dropped from the
//! trail, and service resumes once the trail is back. SQLite commits a record to the journal
//! before answering and the refusal shows when it is moved; PostgreSQL commits it in the
//! database, so the refusal shows at once.

use serde_json::json;

use crate::server::TestServer;
use crate::support::text;

/// Makes every audit insert fail, as a full disk or a broken trail would.
async fn break_the_trail(h: &TestServer, broken: bool) {
    match &h.app().store.db {
        keyward::store::Db::Sqlite(p) => {
            let sql = if broken {
                "CREATE TRIGGER audit_down BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'audit storage refused the write'); END"
            } else {
                "DROP TRIGGER audit_down"
            };
            sqlx::query(sql).execute(p).await.unwrap();
        }
        keyward::store::Db::Postgres(p) => {
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

const UNAVAILABLE: &str = "the audit trail is unavailable, so the call was not completed";

fn journaled(h: &TestServer) -> bool {
    matches!(h.app().store.db, keyward::store::Db::Sqlite(_))
}

#[tokio::test]
async fn calls_fail_clearly_and_change_nothing_while_the_trail_is_down() {
    let h = TestServer::in_process(
        chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 6, 1, 0, 0, 0).unwrap(),
    )
    .await;
    let admin = h.admin().await;
    let before = admin.ok("key_list", json!({"include_revoked": true})).await["keys"]
        .as_array()
        .unwrap()
        .len();
    // Everything so far is in the tables: the breakage below meets an empty queue.
    h.app().audit.sync().await.unwrap();

    break_the_trail(&h, true).await;
    let r = admin.call("whoami", json!({})).await;
    if journaled(&h) {
        // SQLite: committed to the journal, so answered; the tables refuse it next.
        assert_ne!(r.is_error, Some(true), "{}", text(&r));
        // Reading the trail needs that record in the tables: the read fails, and from then
        // on the trail is unhealthy.
        let q = admin.call("audit_query", json!({})).await;
        assert_eq!(q.is_error, Some(true));
        assert_eq!(text(&q), UNAVAILABLE);
        // A read now runs, but its result is withheld: its record cannot be committed.
        let r = admin.call("whoami", json!({})).await;
        assert_eq!(r.is_error, Some(true));
        assert_eq!(text(&r), UNAVAILABLE);
    } else {
        // PostgreSQL: the record is committed in the database or not at all, so the read's
        // result is withheld at once.
        assert_eq!(r.is_error, Some(true));
        assert_eq!(text(&r), UNAVAILABLE);
    }
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
    assert_eq!(text(&r), UNAVAILABLE);

    break_the_trail(&h, false).await;
    // The trail takes what it refused (nothing acknowledged was dropped) and is healthy.
    h.app().audit.sync().await.unwrap();
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
    let whoamis = trail.iter().filter(|e| e["action"] == "whoami").count();
    assert_eq!(
        whoamis,
        if journaled(&h) { 2 } else { 1 },
        "every answered whoami is on the trail, and only those"
    );
}

/// Makes the database refuse only audit records whose reason mentions "poison".
async fn refuse_poison(h: &TestServer) {
    poison(h, true).await;
}

async fn lift_poison(h: &TestServer) {
    poison(h, false).await;
}

async fn poison(h: &TestServer, on: bool) {
    let statements: &[&str] = match (&h.app().store.db, on) {
        (keyward::store::Db::Sqlite(_), true) => &[
            "CREATE TRIGGER audit_poison BEFORE INSERT ON audit_events WHEN NEW.reason LIKE '%poison%' BEGIN SELECT RAISE(ABORT, 'refused'); END",
        ],
        (keyward::store::Db::Sqlite(_), false) => &["DROP TRIGGER audit_poison"],
        (keyward::store::Db::Postgres(_), true) => &[
            "CREATE FUNCTION audit_poison() RETURNS trigger AS $$ BEGIN IF NEW.reason LIKE '%poison%' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER audit_poison BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION audit_poison()",
        ],
        (keyward::store::Db::Postgres(_), false) => &[
            "DROP TRIGGER audit_poison ON audit_events",
            "DROP FUNCTION audit_poison()",
        ],
    };
    for s in statements {
        match &h.app().store.db {
            keyward::store::Db::Sqlite(p) => sqlx::query(s).execute(p).await.map(|_| ()),
            keyward::store::Db::Postgres(p) => sqlx::query(s).execute(p).await.map(|_| ()),
        }
        .unwrap();
    }
}

#[tokio::test]
async fn a_record_the_database_refuses_is_never_skipped() {
    let h = TestServer::in_process(
        chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 6, 1, 0, 0, 0).unwrap(),
    )
    .await;
    let admin = h.admin().await;
    h.app().audit.sync().await.unwrap();
    refuse_poison(&h).await;
    // Many calls at once, so the refused record travels with others.
    let calls = (0..24).map(|i| {
        let (tool, args) = if i == 12 {
            ("key_get", json!({"key_id": "key_poison"}))
        } else {
            ("whoami", json!({}))
        };
        admin.call(tool, args)
    });
    let results = futures::future::join_all(calls).await;
    let answered = |r: &rmcp::model::CallToolResult| text(r) != UNAVAILABLE;
    if journaled(&h) {
        // SQLite: the refused record was committed to the journal and its call answered;
        // moving it into the tables fails, and the trail stops there rather than skip it
        // (calls whose records come after it, if the mover got there first, are refused).
        assert!(answered(&results[12]), "{}", text(&results[12]));
        assert_eq!(
            text(
                &admin
                    .call("audit_summary", json!({"group_by": ["action"]}))
                    .await
            ),
            UNAVAILABLE
        );
        assert_eq!(text(&admin.call("whoami", json!({})).await), UNAVAILABLE);
    } else {
        // PostgreSQL: the refused record fails its own call only.
        for (i, r) in results.iter().enumerate() {
            assert_eq!(answered(r), i != 12, "call {i}: {}", text(r));
        }
    }
    let whoamis_answered = results
        .iter()
        .enumerate()
        .filter(|(i, r)| *i != 12 && answered(r))
        .count();

    lift_poison(&h).await;
    h.app().audit.sync().await.unwrap();
    let s = admin
        .ok(
            "audit_summary",
            json!({"action": ["whoami", "key_get"], "group_by": ["action"]}),
        )
        .await;
    let count = |action: &str| {
        s["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["key"]["action"] == action)
            .map_or(0, |g| g["count"].as_i64().unwrap())
    };
    assert_eq!(
        count("whoami") as usize,
        whoamis_answered,
        "every answered call is on the trail"
    );
    assert_eq!(
        count("key_get"),
        i64::from(journaled(&h)),
        "the refused record is on the trail once the database takes it (SQLite), or its call failed (PostgreSQL)"
    );
}

/// A PostgreSQL server and its admin, one call recorded (so the writer's connection is open);
/// none on SQLite, whose journal has no database session to lose.
async fn writing_on_postgres() -> Option<(TestServer, crate::server::Persona)> {
    let h = TestServer::in_process(
        chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 6, 1, 0, 0, 0).unwrap(),
    )
    .await;
    if journaled(&h) {
        return None;
    }
    let admin = h.admin().await;
    admin.ok("whoami", json!({})).await;
    Some((h, admin))
}

/// PostgreSQL: the audit writer keeps a connection of its own and does not test it before each
/// batch. When the database drops it (a restart, an operator ending its backend), the next
/// batch fails: a locked one on its first round trip, before anything is written, and is
/// tried once more on a fresh connection; one written after the head without an answer, and
/// a fresh connection finds its place empty and writes it. No call fails, none is recorded
/// twice, and the log stays whole.
#[tokio::test]
async fn a_writer_connection_the_database_dropped_fails_no_call() {
    let Some((h, admin)) = writing_on_postgres().await else {
        return;
    };
    for round in 0..3 {
        // The writer's session, by the name it connects under; the call waits until it has
        // ended.
        let ended = h
            .scalar(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM \
                 (SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
                  AND application_name = 'keyward-audit-writer' OFFSET 0) AS w",
            )
            .await;
        assert_eq!(
            ended, 1,
            "round {round}: the writer's one connection was open"
        );
        let calls = (0..8).map(|_| admin.call("whoami", json!({})));
        for r in futures::future::join_all(calls).await {
            assert_ne!(text(&r), UNAVAILABLE, "round {round}");
            assert_ne!(r.is_error, Some(true), "round {round}: {}", text(&r));
        }
    }
    assert_eq!(
        h.scalar("SELECT count(*) FROM audit_events WHERE action = 'whoami'")
            .await,
        1 + 3 * 8,
        "each answered call recorded once"
    );
    // Every body rehashed into the one tree (this server signs no checkpoints of its own).
    let size = h.scalar("SELECT count(*) FROM audit_events").await;
    let v = admin.ok("audit_verify", json!({"full": true})).await;
    assert_eq!(v["tree"]["size"], size, "{v:#}");
    assert_eq!(v["checked"]["bodies_rehashed"], size, "{v:#}");
    assert_eq!(v["first_problem"]["kind"], "no_recent_checkpoint", "{v:#}");
}

/// PostgreSQL: a session that ends in the middle of a batch's write, before it commits (here
/// the database ends it from a trigger, once), has written nothing: the batch is written on a
/// new connection (the writer, alone on the database, writes after the head it left, and then
/// finds the batch's place empty), and every call is answered and recorded once.
#[tokio::test]
async fn a_session_ended_in_the_middle_of_a_batch_is_retried_and_records_each_call_once() {
    let Some((h, admin)) = writing_on_postgres().await else {
        return;
    };
    // One at a time, so that the writer's batches go after the head it left.
    for _ in 0..3 {
        admin.ok("whoami", json!({})).await;
    }
    // A sequence, unlike a table, keeps its count through the aborted transaction.
    for s in [
        "CREATE SEQUENCE end_once",
        "CREATE FUNCTION end_once() RETURNS trigger AS $$ BEGIN \
           IF nextval('end_once') = 1 THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF; \
           RETURN NULL; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER end_once AFTER INSERT ON audit_events \
           FOR EACH STATEMENT EXECUTE FUNCTION end_once()",
    ] {
        h.sql(s).await;
    }
    let calls = (0..8).map(|_| admin.call("whoami", json!({})));
    for r in futures::future::join_all(calls).await {
        assert_ne!(r.is_error, Some(true), "{}", text(&r));
    }
    assert!(
        h.scalar("SELECT last_value FROM end_once").await >= 2,
        "the first batch's session was ended, and the batch written again"
    );
    h.sql("DROP TRIGGER end_once ON audit_events").await;
    assert_eq!(
        h.scalar("SELECT count(*) FROM audit_events WHERE action = 'whoami'")
            .await,
        1 + 3 + 8,
        "each answered call recorded once"
    );
    let size = h.scalar("SELECT count(*) FROM audit_events").await;
    let v = admin.ok("audit_verify", json!({"full": true})).await;
    assert_eq!(v["checked"]["bodies_rehashed"], size, "{v:#}");
}
