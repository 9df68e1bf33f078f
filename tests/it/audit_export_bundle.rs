//! The bundle from the console and offline: `keyward audit export --out` writes one that
//! `keyward audit verify-bundle` accepts (exit 0) and any tampering makes it refuse (exit 1,
//! saying what failed); and the published test vectors in `tests/fixtures/audit-bundle-v1/`
//! are re-derived from the domain code, so they cannot drift from what keyward writes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use keyward::domain::audit_leaf::StoredEvent;
use keyward::domain::bundle::{self, Contents};
use keyward::domain::checkpoint::{Checkpoint, SigningKey};
use keyward::domain::encoding::hex;
use keyward::domain::merkle::{self, Hash};
use serde_json::{Value, json};

use crate::support::{BIN, Env};

/// The files of a bundle, by name.
pub fn files_of(archive: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    tar.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut b).unwrap();
            (name, b)
        })
        .collect()
}

/// `keyward audit verify-bundle FILE --public-key VKEY` (no database): success and output.
pub fn verify_bundle(file: &Path, vkey: &str) -> (bool, String) {
    let out = std::process::Command::new(BIN)
        .args(["audit", "verify-bundle"])
        .arg(file)
        .args(["--public-key", vkey])
        .env("KEYWARD_DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// `files` with `edit` applied, packed again.
fn repacked(files: &BTreeMap<String, Vec<u8>>, edit: impl Fn(&str, &mut Vec<u8>)) -> Vec<u8> {
    let order = [
        "manifest.json",
        "manifest.sig",
        "checkpoint.txt",
        "events.jsonl",
        "proofs.jsonl",
        "events.csv",
        "VERIFY.md",
    ];
    let list: Vec<(&str, Vec<u8>)> = order
        .iter()
        .map(|n| {
            let mut b = files[*n].clone();
            edit(n, &mut b);
            (*n, b)
        })
        .collect();
    bundle::pack(&list, 0).unwrap()
}

fn keyward(env: &Env, key_flags: &[String], args: &[&str]) -> std::process::Output {
    env.command().args(key_flags).args(args).output().unwrap()
}

#[tokio::test]
async fn the_cli_exports_a_bundle_that_verifies_and_any_tampering_fails() {
    let env = Env::new();
    let dir = tempfile::tempdir().unwrap();
    // The environment's commands carry its signing key (KEYWARD_AUDIT_SIGNING_KEY).
    let key_flags: Vec<String> = Vec::new();
    env.bootstrap();
    // Filtered by flags, still proven; an unknown action is refused.
    let some = dir.path().join("some.tar.gz");
    let o = keyward(
        &env,
        &key_flags,
        &[
            "audit",
            "export",
            "--out",
            some.to_str().unwrap(),
            "--action",
            "bootstrap",
            "--since",
            "1h",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let files = files_of(&std::fs::read(&some).unwrap());
    let lines: Vec<&str> = std::str::from_utf8(&files["events.jsonl"])
        .unwrap()
        .lines()
        .collect();
    assert_eq!(lines.len(), 1);
    assert!(lines[0].contains("\"action\":\"bootstrap\""));
    let o = keyward(
        &env,
        &key_flags,
        &["audit", "export", "--out", "x", "--action", "nope"],
    );
    assert!(!o.status.success());

    let out = dir.path().join("all.tar.gz");
    let o = keyward(
        &env,
        &key_flags,
        &["audit", "export", "--out", out.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = keyward(&env, &key_flags, &["audit", "public-key"]);
    let vkey = String::from_utf8(o.stdout).unwrap().trim().to_owned();
    let (ok, text) = verify_bundle(&out, &vkey);
    assert!(ok && text.starts_with("ok: "), "{text}");
    assert!(verify_bundle(&some, &vkey).0);

    // Tampering, each alone.
    let files = files_of(&std::fs::read(&out).unwrap());
    let swap = |b: &mut Vec<u8>| {
        let t = String::from_utf8(b.clone()).unwrap();
        let mut l: Vec<&str> = t.lines().collect();
        l.swap(0, 1);
        *b = (l.join("\n") + "\n").into_bytes();
    };
    let drop_last = |b: &mut Vec<u8>| {
        let t = String::from_utf8(b.clone()).unwrap();
        let l: Vec<&str> = t.lines().collect();
        *b = (l[..l.len() - 1].join("\n") + "\n").into_bytes();
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "a byte of events.jsonl",
            repacked(&files, |n, b| {
                if n == "events.jsonl" {
                    b[10] ^= 1
                }
            }),
            "events.jsonl",
        ),
        (
            "a byte of manifest.json",
            repacked(&files, |n, b| {
                if n == "manifest.json" {
                    b[20] ^= 1
                }
            }),
            "manifest",
        ),
        (
            "two event lines swapped",
            repacked(&files, |n, b| {
                if n == "events.jsonl" {
                    swap(b)
                }
            }),
            "events.jsonl",
        ),
        (
            "an event line dropped",
            repacked(&files, |n, b| {
                if n == "events.jsonl" {
                    drop_last(b)
                }
            }),
            "events.jsonl",
        ),
        (
            "a byte of proofs.jsonl",
            repacked(&files, |n, b| {
                if n == "proofs.jsonl" {
                    b[12] ^= 1
                }
            }),
            "proofs.jsonl",
        ),
        (
            "a byte of checkpoint.txt",
            repacked(&files, |n, b| {
                if n == "checkpoint.txt" {
                    b[2] ^= 1
                }
            }),
            "checkpoint.txt",
        ),
    ];
    for (what, bytes, names) in cases {
        let f = dir.path().join("tampered.tar.gz");
        std::fs::write(&f, bytes).unwrap();
        let (ok, text) = verify_bundle(&f, &vkey);
        assert!(!ok, "{what} verified: {text}");
        assert!(
            text.contains("did not verify") && text.contains(names),
            "{what}: {text}"
        );
    }
    // Signed by another key (a forged log): refused with that log's key and with its own.
    let other = SigningKey::generate("keyward/forged").unwrap();
    let (ok, text) = verify_bundle(&out, &other.verifying().to_string());
    assert!(!ok && text.contains("no signature"), "{text}");
    let resigned = repacked(&files, |n, b| {
        if n == "checkpoint.txt" {
            let text = String::from_utf8(b.clone()).unwrap();
            let body = &text[..=text.find("\n\n").unwrap()];
            let cp = Checkpoint::parse_body(body).unwrap();
            *b = cp.sign(&[&other]).into_bytes();
        }
    });
    let f = dir.path().join("resigned.tar.gz");
    std::fs::write(&f, resigned).unwrap();
    let (ok, text) = verify_bundle(&f, &vkey);
    assert!(!ok && text.contains("checkpoint.txt"), "{text}");
}

// -- published test vectors ---------------------------------------------------------------------

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audit-bundle-v1")
}

/// Five events with every kind of value a leaf holds (nulls, escapes, non-ASCII, JSON text).
fn vector_events() -> Vec<StoredEvent<'static>> {
    (0..5)
        .map(|i| StoredEvent {
            seq: i,
            at: 1_735_689_600_000_000 + i * 60_000_000,
            actor_kind: "key".into(),
            actor_id: Some("key_vectors1".into()),
            actor_name: Some(if i == 3 {
                "bot \"quoted\"\ttab é".into()
            } else {
                "ci-agent".into()
            }),
            actor_preview: Some("kw_TESTvect".into()),
            role: Some("admin".into()),
            tenants: if i % 2 == 0 {
                "*".into()
            } else {
                "acme globex".into()
            },
            action: [
                "key_create",
                "key_rotate",
                "key_revoke",
                "role_create",
                "audit_export",
            ][i as usize]
                .into(),
            target_type: (i != 4).then(|| "key".into()),
            target_id: (i != 4).then(|| format!("key_target{i}").into()),
            target_name: None,
            status: if i == 2 {
                "denied".into()
            } else {
                "success".into()
            },
            reason: (i == 2).then(|| "permission denied: this requires key:revoke".into()),
            source: "http".into(),
            request_source: None,
            client_name: Some("vectors".into()),
            client_version: Some("1.0".into()),
            request_id: None,
            client_ip: Some("192.0.2.1".into()),
            user_agent: Some("vector-test/1".into()),
            channel: None,
            args: Some(format!("{{\"key_id\":\"key_target{i}\"}}").into()),
            before_state: None,
            after_state: (i == 0).then(|| "{\"state\":\"active\"}".into()),
            // An event recorded under encryption at rest: its leaf covers a salt.
            salt: (i == 4).then(|| "q0ZCUa7RkSzTmEhV3x9bLw".into()),
        })
        .collect()
}

/// The vectors' bundle: a 5-event log, events 1, 2 and 4 exported, from a fixed key.
fn vector_bundle() -> (Vec<u8>, String, Value) {
    let key = SigningKey::from_seed("keyward/test-vectors", [0x2a; 32]).unwrap();
    let all = vector_events();
    let leaves: Vec<Hash> = all.iter().map(StoredEvent::leaf_hash).collect();
    let root = merkle::root(leaves.as_slice(), 5).unwrap();
    let note = Checkpoint {
        origin: "keyward/test-vectors".into(),
        size: 5,
        root,
        time: 1_735_690_000,
        kind: "commit".into(),
        extra: vec![],
    }
    .sign(&[&key]);
    let pick = [1usize, 2, 4];
    let events: Vec<StoredEvent> = pick.iter().map(|i| all[*i].clone()).collect();
    let paths: Vec<Vec<Hash>> = pick
        .iter()
        .map(|i| merkle::inclusion_proof(leaves.as_slice(), *i as u64, 5).unwrap())
        .collect();
    let vkey = key.verifying().to_string();
    let c = Contents {
        origin: "keyward/test-vectors",
        vkeys: vec![vkey.clone()],
        created_at: "2025-01-01T00:10:00Z".into(),
        created_unix: 1_735_690_200,
        filters: json!({"actions": ["key_rotate", "key_revoke", "audit_export"]}),
        time_zone: "UTC".into(),
        tenant_scope: vec!["*".into()],
        checkpoint: &note,
        tree_size: 5,
        root,
        truncated: false,
        events: &events,
        paths: &paths,
    };
    let (_, bytes) = bundle::build(&c, &key).unwrap();
    let b64 = |h: &Hash| base64_encode(h);
    let expected = json!({
        "format": bundle::FORMAT,
        "vkey": vkey,
        "tree_size": 5,
        "root_hex": hex(&root),
        "root_base64": b64(&root),
        "leaf_hashes_hex": leaves.iter().map(|h| hex(h)).collect::<Vec<_>>(),
        "exported_seqs": pick,
        "inclusion_paths_hex": paths.iter().map(|p| p.iter().map(|h| hex(h)).collect::<Vec<_>>()).collect::<Vec<_>>(),
    });
    (bytes, vkey, expected)
}

fn base64_encode(h: &Hash) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(h)
}

#[test]
fn the_published_test_vectors_are_what_the_code_makes_and_verify() {
    let (bytes, vkey, expected) = vector_bundle();
    let dir = fixtures();
    let expected_text = serde_json::to_string_pretty(&expected).unwrap() + "\n";
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("bundle.tar.gz"), &bytes).unwrap();
        std::fs::write(dir.join("vkey.txt"), format!("{vkey}\n")).unwrap();
        std::fs::write(dir.join("expected.json"), &expected_text).unwrap();
    }
    let stored = std::fs::read(dir.join("bundle.tar.gz"))
        .expect("tests/fixtures/audit-bundle-v1 (UPDATE_FIXTURES=1 writes it)");
    // Compared file by file: the gzip stream may differ between compressor versions, the
    // contents may not.
    assert_eq!(
        files_of(&stored),
        files_of(&bytes),
        "regenerate with UPDATE_FIXTURES=1"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("vkey.txt"))
            .unwrap()
            .trim(),
        vkey
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("expected.json")).unwrap(),
        expected_text
    );
    // The leaf hashes are those of the event lines, and the bundle verifies with the vkey.
    let events = files_of(&stored)["events.jsonl"].clone();
    let hashes: Vec<String> = std::str::from_utf8(&events)
        .unwrap()
        .lines()
        .map(|l| hex(&merkle::leaf_hash(l.as_bytes())))
        .collect();
    for (i, seq) in [1usize, 2, 4].iter().enumerate() {
        assert_eq!(expected["leaf_hashes_hex"][seq], hashes[i]);
    }
    let (ok, text) = verify_bundle(&dir.join("bundle.tar.gz"), &vkey);
    assert!(ok, "{text}");
}
