//! Encryption at rest, as an operator and an attacker with a copy of the files meet it: with a
//! key, known plaintext (a description, arguments, a client IP, a User-Agent) is nowhere in
//! the database files, the write-ahead log or the audit journal, yet every filter and grouping
//! the tools offer still answers and the trail still verifies; without the key, with the wrong
//! one, or with a key for a plaintext database, nothing starts and nothing changes; `keyward
//! rekey` encrypts, rotates and decrypts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use keyward::domain::at_rest::AtRestKey;
use serde_json::json;

use crate::server::{TestServer, call, http};
use crate::support::Env;

const DESCRIPTION: &str = "pelican-ledger-robot";
const ROLE_DESCRIPTION: &str = "heron-quarterly-close";
const IP: &str = "203.0.113.77";
const FAILED_IP: &str = "198.51.100.201";
const AGENT: &str = "MarkerAgent/7.7";
/// An argument a refused call's reason quotes back.
const ECHOED: &str = "osprey-layoff-list";
/// Self-contained calls (no session), so a raw request can carry its own headers.
const STATELESS: &[&str] = &["--stateless"];

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// A fresh key written to an owner-only file in `env`'s directory.
fn key_file(dir: &Path, name: &str) -> (PathBuf, Arc<AtRestKey>) {
    let text = AtRestKey::generate().expect("rng");
    let path = dir.join(name);
    std::fs::write(&path, format!("{text}\n")).expect("write key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    (path, Arc::new(AtRestKey::parse(&text).expect("parses")))
}

/// History that puts every known plaintext where the server stores it: a key and a role with
/// descriptions (columns, arguments, after-states), calls from a forwarded client IP with a
/// User-Agent, and a failed authentication from another IP (lockout's table).
async fn make_history(s: &TestServer) -> String {
    let admin_key = s.admin_key().await;
    let client = http();
    let headers = [("x-forwarded-for", IP), ("user-agent", AGENT)];
    for (tool, args) in [
        (
            "key_create",
            json!({"name": "ledger", "role": "reader", "tenants": ["*"], "description": DESCRIPTION}),
        ),
        (
            "role_create",
            json!({"name": "closer", "permissions": ["key:read"], "description": ROLE_DESCRIPTION}),
        ),
    ] {
        let (status, body) = call(&client, &s.mcp(), &admin_key, tool, args, &headers)
            .await
            .expect("answered");
        assert_eq!(status, 200, "{body}");
        assert_ne!(body["result"]["isError"], true, "{body}");
    }
    // A malformed argument: the refusal's reason quotes it.
    let (_, body) = call(
        &client,
        &s.mcp(),
        &admin_key,
        "key_create",
        json!({"name": "x", "role": "reader", "tenants": ECHOED}),
        &headers,
    )
    .await
    .expect("answered");
    assert_eq!(body["result"]["isError"], true, "{body}");
    let forged = keyward::domain::key::PlainKey::generate();
    let (status, _) = call(
        &client,
        &s.mcp(),
        forged.expose(),
        "whoami",
        json!({}),
        &[("x-forwarded-for", FAILED_IP)],
    )
    .await
    .expect("answered");
    assert_eq!(status, 401);
    signed(s).await;
    admin_key
}

/// Everything written so far, covered by a signed checkpoint (the signer runs only in
/// `keyward serve`).
async fn signed(s: &TestServer) {
    s.app().audit.sync().await.expect("trail written");
    keyward::ops::audit_log::sign(s.app(), keyward::ops::audit_log::Why::Commit)
        .await
        .expect("signed");
}

/// What the tools answer, through the sealed columns: the description, the role's
/// description, events filtered and grouped by client IP, novelty by User-Agent, the full
/// event, and a full verification.
async fn tools_still_answer(s: &TestServer, admin_key: &str) {
    let admin = s.client(admin_key).await;
    let keys = admin.ok("key_list", json!({})).await;
    assert!(keys.to_string().contains(DESCRIPTION), "{keys}");
    let role = admin.ok("role_get", json!({"name": "closer"})).await;
    assert!(role.to_string().contains(ROLE_DESCRIPTION), "{role}");
    let page = admin
        .ok("audit_query", json!({"client_ip": [IP], "since": "1d"}))
        .await;
    let events = page["events"].as_array().expect("events");
    assert_eq!(events.len(), 3, "the three calls from {IP}: {page}");
    let id = events
        .iter()
        .find(|e| e["action"] == "key_create" && e["status"] == "success")
        .expect("the key_create")["id"]
        .clone();
    let event = admin.ok("audit_get", json!({"id": id})).await;
    assert_eq!(event["event"]["established"]["client_ip"], IP, "{event}");
    assert_eq!(event["event"]["claimed"]["user_agent"], AGENT, "{event}");
    assert_eq!(
        event["event"]["args"]["description"], DESCRIPTION,
        "{event}"
    );
    let by_ip = admin
        .ok(
            "audit_summary",
            json!({"group_by": ["client_ip"], "since": "1d"}),
        )
        .await;
    let ip_count = by_ip["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["key"].to_string().contains(IP))
        .unwrap_or_else(|| panic!("a group for {IP}: {by_ip}"))["count"]
        .clone();
    assert_eq!(ip_count, 3, "{by_ip}");
    let novel = admin
        .ok(
            "audit_summary",
            json!({"group_by": ["actor"], "novel": "user_agent", "since": "1d"}),
        )
        .await;
    assert!(novel.to_string().contains(AGENT), "{novel}");
    signed(s).await;
    let verified = admin.ok("audit_verify", json!({"full": true})).await;
    assert_eq!(verified["verdict"], "ok", "{verified}");
    admin.close().await;
}

fn markers_found(bytes: &[u8]) -> Vec<&'static str> {
    [DESCRIPTION, ROLE_DESCRIPTION, IP, FAILED_IP, AGENT, ECHOED]
        .into_iter()
        .filter(|m| contains(bytes, m))
        .collect()
}

#[tokio::test]
async fn with_a_key_nothing_sensitive_is_readable_from_the_files_and_every_question_still_answers()
{
    // Control: without a key the same history leaves every marker readable, so the scan
    // below can fail.
    let plain = TestServer::http(STATELESS).await;
    make_history(&plain).await;
    let journal = plain.env.journal_bytes();
    let env = plain.stop().await;
    let mut bytes = env.db_bytes();
    bytes.extend(journal);
    assert_eq!(
        markers_found(&bytes),
        vec![DESCRIPTION, ROLE_DESCRIPTION, IP, FAILED_IP, AGENT, ECHOED]
    );

    let s = encrypted_server().await;
    let admin = make_history(&s).await;
    tools_still_answer(&s, &admin).await;
    // While it runs: the journal (SQLite) holds this process's records, sealed.
    let journal = s.env.journal_bytes();
    let env = s.stop().await;
    let mut bytes = env.db_bytes();
    bytes.extend(journal);
    assert!(
        bytes.len() > 2_000,
        "the database was read: {} bytes",
        bytes.len()
    );
    assert_eq!(markers_found(&bytes), Vec::<&str>::new());
}

/// A stateless HTTP server on a fresh database, encrypted with a fresh key.
async fn encrypted_server() -> TestServer {
    let env = Arc::new(Env::new());
    let (_, key) = key_file(&env_dir(&env), "enc.key");
    TestServer::try_http_with(env, STATELESS, |o| o.encryption = Some(key))
        .await
        .expect("starts")
}

fn env_dir(env: &Env) -> PathBuf {
    env.db_path()
        .parent()
        .expect("the environment's directory")
        .to_path_buf()
}

/// `keyward migrate` on `env` with `key` (a file) or none: its exit status and stderr.
fn migrate(env: &Env, key: Option<&Path>) -> (bool, String) {
    let mut c = env.command();
    c.arg("migrate").env_remove("KEYWARD_ENCRYPTION_KEY");
    if let Some(k) = key {
        c.args(["--encryption-key-file", &k.display().to_string()]);
    }
    let out = c.output().expect("run migrate");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `keyward rekey <args>` with the current key file (if any).
fn rekey(env: &Env, key: Option<&Path>, args: &[&str]) -> (bool, String) {
    let mut c = env.command();
    c.arg("rekey")
        .args(args)
        .env_remove("KEYWARD_ENCRYPTION_KEY");
    if let Some(k) = key {
        c.env("KEYWARD_ENCRYPTION_KEY_FILE", k);
    }
    let out = c.output().expect("run rekey");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// What a refused start must leave as it was: every row of every table.
fn snapshot(env: &Env) -> String {
    env.logical_dump()
}

#[tokio::test]
async fn a_missing_or_wrong_key_or_a_key_for_plaintext_is_refused_and_changes_nothing_and_rekey_encrypts_rotates_and_decrypts()
 {
    // A plaintext database with history.
    let s = TestServer::http(STATELESS).await;
    let admin = make_history(&s).await;
    let env = s.stop().await;
    let dir = env_dir(&env);
    let (first, _) = key_file(&dir, "first.key");
    let (second, second_key) = key_file(&dir, "second.key");

    // A key for a plaintext database: refused, nothing changed.
    let before = snapshot(&env);
    let (ok, err) = migrate(&env, Some(&first));
    assert!(!ok);
    assert!(err.contains("keyward rekey --encrypt"), "{err}");
    assert!(
        snapshot(&env) == before,
        "a refused start changed the database"
    );

    // Encrypting is explicit.
    let (ok, out) = rekey(&env, Some(&first), &["--encrypt"]);
    assert!(ok, "{out}");
    assert!(out.contains("is encrypted with key id"), "{out}");
    assert_eq!(markers_found(&env.db_bytes()), Vec::<&str>::new());

    // Without the key, or with another: refused with a clear reason, nothing changed.
    let before = snapshot(&env);
    let (ok, err) = migrate(&env, None);
    assert!(!ok);
    assert!(err.contains("this database is encrypted"), "{err}");
    let (ok, err) = migrate(&env, Some(&second));
    assert!(!ok);
    assert!(
        err.contains("is not the one this database is encrypted with"),
        "{err}"
    );
    assert!(
        snapshot(&env) == before,
        "a refused start changed the database"
    );
    let (ok, err) = rekey(
        &env,
        Some(&second),
        &["--new-key-file", &first.display().to_string()],
    );
    assert!(!ok, "rotation from a wrong key must fail: {err}");

    // The right key opens it; the trail verifies through the sealed columns.
    let out = env
        .command()
        .args(["audit", "verify", "--full"])
        .env("KEYWARD_ENCRYPTION_KEY_FILE", &first)
        .output()
        .expect("verify");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Rotation: the old key no longer opens it, the new one does, every value intact.
    let (ok, out) = rekey(
        &env,
        Some(&first),
        &["--new-key-file", &second.display().to_string()],
    );
    assert!(ok, "{out}");
    assert!(out.contains(second_key.id()), "{out}");
    let (ok, err) = migrate(&env, Some(&first));
    assert!(!ok, "{err}");
    let s = TestServer::try_http_with(env, STATELESS, |o| o.encryption = Some(second_key.clone()))
        .await
        .expect("starts with the new key");
    tools_still_answer(&s, &admin).await;
    let env = s.stop().await;
    assert_eq!(markers_found(&env.db_bytes()), Vec::<&str>::new());

    // And back to plaintext, explicitly.
    let (ok, out) = rekey(&env, Some(&second), &["--decrypt"]);
    assert!(ok, "{out}");
    let (ok, err) = migrate(&env, None);
    assert!(ok, "{err}");
    let s = TestServer::try_http_on(env, STATELESS)
        .await
        .expect("starts");
    tools_still_answer(&s, &admin).await;
    s.stop().await;
}

#[tokio::test]
async fn key_settings_that_cannot_be_right_are_refused_before_anything_opens() {
    let env = Env::new();
    let dir = env_dir(&env);
    let (file, _) = key_file(&dir, "k.key");
    // Given twice.
    let out = env
        .command()
        .arg("migrate")
        .env(
            "KEYWARD_ENCRYPTION_KEY",
            AtRestKey::generate().expect("rng"),
        )
        .env("KEYWARD_ENCRYPTION_KEY_FILE", &file)
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("both set"));
    // Malformed: says what a key looks like, never echoes it.
    let out = env
        .command()
        .arg("migrate")
        .env("KEYWARD_ENCRYPTION_KEY", "hunter2-not-a-key")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("32 random bytes"), "{err}");
    assert!(!err.contains("hunter2"), "the key text was echoed: {err}");
    // A key file others can read.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let (ok, err) = migrate(&env, Some(&file));
        assert!(!ok);
        assert!(err.contains("chmod 600"), "{err}");
    }
    // Set but empty: a secret that failed to load is not a choice to run unencrypted.
    let out = env
        .command()
        .arg("migrate")
        .env("KEYWARD_ENCRYPTION_KEY", "")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("set but empty"));
    // The key itself given where its file belongs: refused without echoing it.
    let text = AtRestKey::generate().expect("rng");
    let (ok, err) = migrate(&env, Some(Path::new(&text)));
    assert!(!ok);
    assert!(err.contains("names no file"), "{err}");
    assert!(!err.contains(&text), "the key was echoed: {err}");
    // rekey with nothing to do says what it can do.
    let (ok, err) = rekey(&env, None, &[]);
    assert!(!ok);
    assert!(
        err.contains("--encrypt, --new-key-file FILE or --decrypt"),
        "{err}"
    );
}

fn gunzip(bytes: &[u8]) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .ok()
        .map(|_| out)
}

/// `keyward audit verify-bundle FILE --public-key VKEY`, with an encryption key file or none.
fn verify_bundle(file: &Path, vkey: &str, key: Option<&Path>) -> (bool, String) {
    let mut c = std::process::Command::new(crate::support::BIN);
    c.args(["audit", "verify-bundle"])
        .arg(file)
        .args(["--public-key", vkey])
        .env_remove("KEYWARD_ENCRYPTION_KEY")
        .env_remove("KEYWARD_ENCRYPTION_KEY_FILE");
    if let Some(k) = key {
        c.args(["--encryption-key-file", &k.display().to_string()]);
    }
    let out = c.output().expect("run verify-bundle");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[tokio::test]
async fn exports_are_sealed_at_rest_served_in_the_clear_to_their_exporter_and_private_cli_bundles_need_the_key()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key_path, key) = key_file(dir.path(), "enc.key");
    let exports = dir.path().join("exports");
    let (exports_in, signing) = (exports.clone(), dir.path().join("audit.key"));
    let s = TestServer::http_with(&[], move |o| {
        o.audit_log.signing_key = Some(keyward::ops::audit_log::KeySource::File(signing));
        o.exports.dir = Some(exports_in);
        o.encryption = Some(key.clone());
    })
    .await;
    let admin = s.admin().await;
    admin
        .ok(
            "key_create",
            json!({"name": "ledger", "role": "reader", "tenants": ["*"], "description": DESCRIPTION}),
        )
        .await;
    signed(&s).await;
    let out = admin.ok("audit_export", json!({})).await;
    let download = out["download"].as_str().expect("download").to_owned();
    let res = http()
        .get(s.url(&download))
        .bearer_auth(&admin.key)
        .send()
        .await
        .expect("fetch");
    assert_eq!(res.status(), 200);
    let fetched = res.bytes().await.expect("body").to_vec();
    assert_eq!(keyward::domain::bundle::sha256_hex(&fetched), out["sha256"]);
    let tar = gunzip(&fetched).expect("the download is the .tar.gz");
    assert!(contains(&tar, DESCRIPTION), "the exporter gets the events");
    // On disk the bundle is sealed: not gzip, and nothing of it readable.
    let stored = std::fs::read(exports.join(out["name"].as_str().expect("name"))).expect("stored");
    assert_eq!(stored[0], keyward::domain::at_rest::SEALED_RECORD);
    assert!(gunzip(&stored).is_none());
    assert!(!contains(&stored, DESCRIPTION));
    admin.close().await;
    let public = s.app().audit_log.public_key().expect("vkey");
    let env = s.stop().await;

    // The CLI's private bundle: sealed; verify-bundle needs the key, then verifies.
    let file = dir.path().join("private.bundle");
    let run = env
        .command()
        .args(["audit", "export", "--private", "--out"])
        .arg(&file)
        .env("KEYWARD_AUDIT_SIGNING_KEY", dir.path().join("audit.key"))
        .env("KEYWARD_ENCRYPTION_KEY_FILE", &key_path)
        .output()
        .expect("export");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let bytes = std::fs::read(&file).expect("bundle");
    assert_eq!(bytes[0], keyward::domain::at_rest::SEALED_RECORD);
    assert!(gunzip(&bytes).is_none());
    let (ok, text) = verify_bundle(&file, &public, None);
    assert!(!ok);
    assert!(text.contains("this bundle is private"), "{text}");
    let (other, _) = key_file(dir.path(), "other.key");
    let (ok, text) = verify_bundle(&file, &public, Some(&other));
    assert!(!ok);
    assert!(text.contains("does not open"), "{text}");
    let (ok, text) = verify_bundle(&file, &public, Some(&key_path));
    assert!(ok, "{text}");
    // One edited byte of the sealed file: refused.
    let mut edited = bytes.clone();
    let i = edited.len() / 2;
    edited[i] ^= 1;
    std::fs::write(&file, &edited).expect("write");
    let (ok, _) = verify_bundle(&file, &public, Some(&key_path));
    assert!(!ok);
}

#[tokio::test]
async fn a_private_export_of_an_unencrypted_database_is_refused() {
    let s = TestServer::http(&[]).await;
    s.admin_key().await;
    let env = s.stop().await;
    let out = env
        .command()
        .args(["audit", "export", "--private", "--out"])
        .arg(env_dir(&env).join("x.bundle"))
        .env_remove("KEYWARD_ENCRYPTION_KEY")
        .output()
        .expect("export");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("this database has none"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!env_dir(&env).join("x.bundle").exists());
}

#[tokio::test]
async fn an_edited_sealed_value_reads_as_tampered_at_its_event() {
    let s = encrypted_server().await;
    let admin = make_history(&s).await;
    let seq = {
        let c = s.client(&admin).await;
        let page = c
            .ok(
                "audit_query",
                json!({"action": ["key_create"], "since": "1d"}),
            )
            .await;
        c.close().await;
        page["events"][0]["id"].as_i64().expect("an event id")
    };
    // Another valid-looking sealed value in its arguments: it does not open here.
    s.sql(&format!(
        "UPDATE audit_events SET args = 'kw1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' WHERE id = {seq}"
    ))
    .await;
    let c = s.client(&admin).await;
    let verified = c.ok("audit_verify", json!({"full": true})).await;
    assert_eq!(verified["verdict"], "tampered", "{verified}");
    let at = s
        .scalar(&format!("SELECT seq FROM audit_events WHERE id = {seq}"))
        .await;
    assert_eq!(verified["first_problem"]["seq"], at, "{verified}");
    c.close().await;
}

#[tokio::test]
async fn an_encrypted_events_leaf_covers_a_sealed_salt_so_it_cannot_be_matched_against_guesses() {
    let s = encrypted_server().await;
    make_history(&s).await;
    let rows = keyward::store::audit::tree::rows_from(&s.app().store, 0, 100)
        .await
        .expect("rows");
    assert!(rows.len() >= 4);
    for (row, leaf) in &rows {
        let salt = row
            .salt
            .clone()
            .expect("every event stored under a key has a salt");
        assert_eq!(Some(row.leaf_hash()), *leaf, "the leaf covers the salt");
        // What someone with the files alone can compute: every value right, but no salt.
        let guessed = keyward::domain::audit_leaf::StoredEvent {
            salt: None,
            ..row.clone()
        };
        assert_ne!(Some(guessed.leaf_hash()), *leaf);
        assert!(salt.len() >= 22);
    }
    // Stored sealed.
    let raw: Vec<Option<String>> = match &s.app().store.db {
        keyward::store::Db::Sqlite(p) => sqlx::query_scalar("SELECT salt FROM audit_events")
            .fetch_all(p)
            .await
            .expect("salts"),
        keyward::store::Db::Postgres(p) => sqlx::query_scalar("SELECT salt FROM audit_events")
            .fetch_all(p)
            .await
            .expect("salts"),
    };
    assert!(
        raw.iter()
            .all(|v| v.as_deref().is_some_and(|v| v.starts_with("kw1:"))),
        "{raw:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn rekey_refuses_while_a_server_has_the_database_open_and_says_what_it_cannot_do() {
    let s = TestServer::http(STATELESS).await;
    s.admin_key().await;
    let dir = env_dir(&s.env);
    let (key, _) = key_file(&dir, "k.key");
    let (ok, out) = rekey(&s.env, Some(&key), &["--encrypt"]);
    assert!(!ok, "{out}");
    assert!(out.contains("another keyward process"), "{out}");
    let env = s.stop().await;
    // Nothing changed: the database is still plaintext and opens without a key.
    let (ok, err) = migrate(&env, None);
    assert!(ok, "{err}");
    // Decrypting or rotating a plaintext database, encrypting an encrypted one: told why not.
    let (ok, out) = rekey(&env, Some(&key), &["--decrypt"]);
    assert!(!ok);
    assert!(
        out.contains("is not encrypted: there is nothing to decrypt"),
        "{out}"
    );
    let (ok, out) = rekey(&env, Some(&key), &["--encrypt"]);
    assert!(ok, "{out}");
    let (ok, out) = rekey(&env, Some(&key), &["--encrypt"]);
    assert!(!ok);
    assert!(out.contains("is already encrypted"), "{out}");
}

#[tokio::test]
async fn a_server_that_missed_a_rekey_writes_nothing_under_its_old_key() {
    let s = encrypted_server().await;
    let admin = make_history(&s).await;
    let before: i64 = count_events(&s).await;
    // What a rekey elsewhere leaves: another key recorded (this server's session, and with it
    // its share of the in-use lock, having been lost).
    s.sql("UPDATE settings SET value = '00112233445566ff' WHERE name = 'encryption_key_id'")
        .await;
    // The next batch finds the change: on PostgreSQL that call fails; on SQLite the call's
    // record is already durable in this process's journal, and moving it into the tables
    // fails, after which every call does.
    let first = call(&http(), &s.mcp(), &admin, "whoami", json!({}), &[]).await;
    let moved = s.app().audit.sync().await;
    let refused = |b: &serde_json::Value| b.to_string().contains("audit trail is unavailable");
    assert!(
        first.as_ref().is_some_and(|(_, b)| refused(b)) || moved.is_err(),
        "{first:?}"
    );
    let (_, body) = call(&http(), &s.mcp(), &admin, "whoami", json!({}), &[])
        .await
        .expect("answered");
    assert!(refused(&body), "calls fail closed: {body}");
    assert_eq!(
        count_events(&s).await,
        before,
        "nothing written under the old key"
    );
    // Nor roll-ups: the folder is refused as the writer is.
    let rolled: i64 = s.scalar("SELECT COUNT(*) FROM audit_tallies_wide").await;
    let fold = keyward::ops::audit::fold::fold(s.app()).await;
    assert!(fold.is_err(), "{fold:?}");
    assert_eq!(
        s.scalar("SELECT COUNT(*) FROM audit_tallies_wide").await,
        rolled
    );
}

async fn count_events(s: &TestServer) -> i64 {
    s.scalar("SELECT COUNT(*) FROM audit_events").await
}
