//! Exporting the trail over the wire: `audit_export` answers where to fetch the bundle, only
//! its exporter can fetch it (with the same bearer key), the bundle verifies offline with
//! `keyward audit verify-bundle`, a tenant-scoped export holds only its tenants' events, and
//! the export directory stays capped, private and expiring.

use std::path::{Path, PathBuf};

use keyward::ops::app::AppOptions;
use keyward::ops::audit_log::KeySource;
use serde_json::{Value, json};

use crate::audit_export_bundle::{files_of, verify_bundle};
use crate::server::{TestServer, http};

/// An HTTP server exporting to `dir`, signing with a key file in it (on both backends).
async fn server(dir: &Path, tweak: impl FnOnce(&mut AppOptions)) -> TestServer {
    let (key, exports) = (dir.join("audit.key"), dir.join("exports"));
    TestServer::http_with(&[], move |o| {
        o.audit_log.signing_key = Some(KeySource::File(key));
        o.exports.dir = Some(exports);
        tweak(o);
    })
    .await
}

async fn get(s: &TestServer, path: &str, key: Option<&str>) -> (u16, Vec<u8>) {
    let mut req = http().get(s.url(path));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.bytes().await.unwrap().to_vec())
}

fn public_key(s: &TestServer) -> String {
    s.app().audit_log.public_key().unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[tokio::test]
async fn an_export_is_fetched_by_its_exporter_only_and_verifies_offline() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), |_| {}).await;
    let admin = s.admin().await;
    admin.mint("one", "reader", &["*"]).await;
    let out = admin.ok("audit_export", json!({})).await;
    let path = out["download"].as_str().unwrap().to_owned();
    assert!(out["events"].as_u64().unwrap() >= 2, "{out}");
    assert_eq!(out["truncated"], false);
    assert!(
        out["checkpoint"]
            .as_str()
            .unwrap()
            .contains("\n\n\u{2014} ")
    );
    assert_eq!(out["public_key"].as_str(), Some(public_key(&s).as_str()));

    let (status, bytes) = get(&s, &path, Some(&admin.key)).await;
    assert_eq!(status, 200);
    assert_eq!(keyward::domain::bundle::sha256_hex(&bytes), out["sha256"]);
    assert_eq!(bytes.len() as u64, out["bytes"].as_u64().unwrap());
    let file = write(dir.path(), "b.tar.gz", &bytes);
    let (ok, text) = verify_bundle(&file, &public_key(&s));
    assert!(ok, "{text}");

    // Private on disk: the directory 0700, every file 0600.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let exports = dir.path().join("exports");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&exports), 0o700);
        for e in std::fs::read_dir(&exports).unwrap().flatten() {
            assert_eq!(mode(&e.path()), 0o600, "{}", e.path().display());
        }
    }

    // Another caller with audit:export, no caller, and names that are not export names.
    let auditor = s.persona("auditor", &["*"]).await;
    assert_eq!(get(&s, &path, Some(&auditor.key)).await.0, 404);
    assert_eq!(get(&s, &path, None).await.0, 401);
    let reader = s.persona("reader", &["*"]).await;
    assert_eq!(get(&s, &path, Some(&reader.key)).await.0, 403);
    for bad in [
        "/audit/exports/..%2Fkeyward.db",
        "/audit/exports/..%2F..%2Fetc%2Fpasswd",
        "/audit/exports/%2Fetc%2Fpasswd",
        "/audit/exports/audit.key",
        &format!("{path}.json"),
    ] {
        let (status, _) = get(&s, bad, Some(&admin.key)).await;
        assert!(status == 400 || status == 404, "{bad}: {status}");
    }

    // The downloads are in the trail, allowed and refused alike.
    let fetched = admin.audit(json!({"action": ["audit_export_fetch"]})).await;
    let statuses: Vec<&str> = fetched
        .iter()
        .filter_map(|e| e["status"].as_str())
        .collect();
    assert!(statuses.contains(&"success"), "{fetched:?}");
    assert!(
        statuses.contains(&"failed") && statuses.contains(&"denied"),
        "{fetched:?}"
    );
    assert!(
        !admin
            .audit(json!({"action": ["audit_export"]}))
            .await
            .is_empty()
    );
    s.stop().await;
}

#[tokio::test]
async fn a_tenant_scoped_export_holds_only_its_tenants_events_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), |_| {}).await;
    let admin = s.admin().await;
    let (acme_key, _) = admin.mint("acme-admin", "admin", &["acme"]).await;
    let acme = s.client(&acme_key).await;
    acme.mint("acme-bot", "reader", &["acme"]).await;
    let (other_key, _) = admin.mint("other-admin", "admin", &["other"]).await;
    let other = s.client(&other_key).await;
    other.mint("other-bot", "reader", &["other"]).await;
    let auditor = s.persona("auditor", &["acme"]).await;
    let out = auditor.ok("audit_export", json!({})).await;
    let (status, bytes) = get(&s, out["download"].as_str().unwrap(), Some(&auditor.key)).await;
    assert_eq!(status, 200);
    let files = files_of(&bytes);
    let events = std::str::from_utf8(&files["events.jsonl"]).unwrap();
    assert!(!events.is_empty());
    for line in events.lines() {
        let e: Value = serde_json::from_str(line).unwrap();
        assert_eq!(e["tenants"], "acme", "{line}");
    }
    // The same events as audit_query shows that caller, with the same filters.
    let filter = json!({"action": ["key_create"], "since": "1h"});
    let seen = auditor.audit(filter.clone()).await;
    let out = auditor.ok("audit_export", filter).await;
    assert_eq!(out["events"].as_u64(), Some(seen.len() as u64));
    assert!(seen.len() >= 2, "{seen:?}");
    let file = write(dir.path(), "acme.tar.gz", &bytes);
    let (ok, text) = verify_bundle(&file, &public_key(&s));
    assert!(ok, "{text}");
    admin.close().await;
    s.stop().await;
}

#[tokio::test]
async fn the_export_directory_is_capped_in_size_and_number_and_expires() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), |o| {
        o.exports.keep = 2;
        o.exports.max_bytes = 16384;
    })
    .await;
    let admin = s.admin().await;
    for i in 0..20 {
        admin.mint(&format!("k{i}"), "reader", &["*"]).await;
    }
    let mut names = Vec::new();
    for _ in 0..3 {
        // Bundles are kept newest first, by when they were made.
        s.clock().advance(chrono::Duration::seconds(1));
        let out = admin.ok("audit_export", json!({})).await;
        assert_eq!(out["truncated"], true, "{out}");
        assert!(out["bytes"].as_u64().unwrap() <= 16384, "{out}");
        names.push(out["download"].as_str().unwrap().to_owned());
    }
    // Truncated is still proven.
    let (status, bytes) = get(&s, &names[2], Some(&admin.key)).await;
    assert_eq!(status, 200);
    let file = write(dir.path(), "t.tar.gz", &bytes);
    let (ok, text) = verify_bundle(&file, &public_key(&s));
    assert!(ok && text.contains("truncated"), "{text}");
    // At most two kept: the oldest went.
    assert_eq!(get(&s, &names[0], Some(&admin.key)).await.0, 404);
    assert_eq!(get(&s, &names[1], Some(&admin.key)).await.0, 200);
    let kept = std::fs::read_dir(dir.path().join("exports"))
        .unwrap()
        .count();
    assert_eq!(kept, 4, "two bundles and their sidecars");
    // Past seven days, gone.
    s.clock().advance(chrono::Duration::days(8));
    assert_eq!(get(&s, &names[2], Some(&admin.key)).await.0, 404);
    s.stop().await;
}

#[tokio::test]
async fn without_an_export_directory_on_postgresql_the_tool_refuses() {
    if !crate::support::postgres_selected() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("audit.key");
    let s = TestServer::http_with(&[], move |o| {
        o.audit_log.signing_key = Some(KeySource::File(key));
    })
    .await;
    let admin = s.admin().await;
    let e = admin.err("audit_export", json!({})).await;
    assert!(e.contains("--audit-export-dir"), "{e}");
    s.stop().await;
}
