use super::*;
use crate::domain::checkpoint::VerifyingKey;
use crate::domain::merkle::{self, inclusion_proof, root};

pub(super) fn event(seq: i64) -> StoredEvent<'static> {
    StoredEvent {
        seq,
        at: 1_733_350_000_000_000 + seq * 1_000_000,
        actor_kind: "key".into(),
        actor_id: Some("key_1".into()),
        actor_name: Some("ci-agent".into()),
        actor_preview: Some("kw_hHIYdeIN".into()),
        role: Some("admin".into()),
        tenants: if seq % 2 == 0 {
            "*".into()
        } else {
            "acme".into()
        },
        action: "key_revoke".into(),
        target_type: Some("key".into()),
        target_id: Some(format!("key_{seq}").into()),
        target_name: Some("=cmd|' /C calc'!A0".into()),
        status: "success".into(),
        reason: None,
        source: "http".into(),
        request_source: None,
        client_name: None,
        client_version: None,
        request_id: None,
        client_ip: Some("127.0.0.1".into()),
        user_agent: None,
        channel: None,
        args: Some(format!("{{\"key_id\":\"key_{seq}\"}}").into()),
        before_state: None,
        after_state: None,
        salt: None,
    }
}

fn signer(name: &str) -> SigningKey {
    SigningKey::from_seed(name, [7u8; 32]).unwrap()
}

/// A bundle of the events `pick` of a 10-event log, and the key that verifies it.
fn bundle(pick: &[i64]) -> (Vec<u8>, VerifyingKey) {
    let key = signer("keyward/test");
    let all: Vec<StoredEvent> = (0..10).map(event).collect();
    let leaves: Vec<Hash> = all.iter().map(StoredEvent::leaf_hash).collect();
    let r = root(leaves.as_slice(), 10).unwrap();
    let note = Checkpoint {
        origin: "keyward/test".into(),
        size: 10,
        root: r,
        time: 1_733_350_100,
        kind: "commit".into(),
        extra: vec![],
    }
    .sign(&[&key]);
    let events: Vec<StoredEvent> = pick.iter().map(|s| event(*s)).collect();
    let paths: Vec<Vec<Hash>> = pick
        .iter()
        .map(|s| inclusion_proof(leaves.as_slice(), *s as u64, 10).unwrap())
        .collect();
    let c = Contents {
        origin: "keyward/test",
        vkeys: vec![key.verifying().to_string()],
        created_at: "2024-12-04T22:10:00Z".into(),
        created_unix: 1_733_350_200,
        filters: serde_json::json!({}),
        time_zone: "UTC".into(),
        tenant_scope: vec!["*".into()],
        checkpoint: &note,
        tree_size: 10,
        root: r,
        truncated: false,
        events: &events,
        paths: &paths,
    };
    (build(&c, &key).unwrap().1, key.verifying())
}

fn unpacked(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
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

/// The same bundle with `file` changed by `edit`.
fn edited(archive: &[u8], file: &str, edit: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
    let mut files = unpacked(archive);
    for (n, b) in &mut files {
        if n == file {
            edit(b);
        }
    }
    let refs: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    pack(&refs, 0).unwrap()
}

#[test]
fn a_full_and_a_filtered_bundle_verify_and_are_deterministic() {
    let (full, vkey) = bundle(&(0..10).collect::<Vec<_>>());
    let v = check(&full, std::slice::from_ref(&vkey)).unwrap();
    assert_eq!((v.events, v.first_seq, v.last_seq), (10, Some(0), Some(9)));
    let (some, _) = bundle(&[1, 4, 9]);
    assert_eq!(check(&some, std::slice::from_ref(&vkey)).unwrap().events, 3);
    let (none, _) = bundle(&[]);
    assert_eq!(check(&none, std::slice::from_ref(&vkey)).unwrap().events, 0);
    assert_eq!(bundle(&[1, 4, 9]).0, some, "same contents, same bytes");
}

#[test]
fn any_edit_fails_with_a_clear_message() {
    let (b, vkey) = bundle(&[1, 4, 9]);
    let trusted = [vkey];
    let flip = |at: usize| move |v: &mut Vec<u8>| v[at] ^= 0x01;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "event byte",
            edited(&b, EVENTS, flip(40)),
            "events.jsonl does not match",
        ),
        (
            "manifest byte",
            edited(&b, MANIFEST, flip(30)),
            "does not sign this manifest",
        ),
        (
            "proof byte",
            edited(&b, PROOFS, flip(20)),
            "proofs.jsonl does not match",
        ),
        (
            "checkpoint byte",
            edited(&b, CHECKPOINT, flip(3)),
            "checkpoint.txt does not match",
        ),
        (
            "csv byte",
            edited(&b, CSV, flip(3)),
            "events.csv does not match",
        ),
    ];
    for (what, bytes, want) in cases {
        let e = check(&bytes, &trusted).unwrap_err().to_string();
        assert!(e.contains(want), "{what}: {e}");
    }
    assert!(check(&b[..b.len() / 2], &trusted).is_err());
    let other = signer("keyward/test2").verifying();
    let e = check(&b, &[other]).unwrap_err().to_string();
    assert!(e.starts_with("manifest.sig:"), "{e}");
}

#[test]
fn the_csv_is_a_quoted_view_that_defuses_formulas() {
    let c = csv(&[event(1)]);
    assert!(c.starts_with("\"action\",\"actor_id\""), "{c}");
    assert!(c.contains("\"'=cmd|' /C calc'!A0\""), "{c}");
    assert!(c.contains("\"{\"\"key_id\"\":\"\"key_1\"\"}\""), "{c}");
}

#[test]
fn leaves_are_the_event_lines() {
    let (b, _) = bundle(&[2]);
    let files = unpacked(&b);
    let events = &files.iter().find(|(n, _)| n == EVENTS).unwrap().1;
    let line = std::str::from_utf8(events).unwrap().trim_end_matches('\n');
    assert_eq!(merkle::leaf_hash(line.as_bytes()), event(2).leaf_hash());
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            MANIFEST,
            MANIFEST_SIG,
            CHECKPOINT,
            EVENTS,
            PROOFS,
            CSV,
            VERIFY
        ]
    );
}
