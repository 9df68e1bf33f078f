//! An audit event as the log stores and proves it: every stored column in its stored form
//! (plaintext, before any encryption at rest, so re-keying changes no leaf), plus its place in
//! the log. The leaf preimage is the RFC 8785 (JCS) canonical JSON of that row with the schema
//! version `v`; every value is a string, an integer below 2^53 or null, so canonical form is
//! sorted keys and serde_json's minimal escaping. `tests/fixtures/audit-bundle-v1/` publishes
//! examples (events, leaf hashes, root) for third-party verifiers.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::audit::AuditEvent;
use super::merkle::{self, Hash};

/// The leaf format's version (the `v` member): 1, or 2 for a leaf with a `salt` member.
pub const LEAF_VERSION: i64 = 1;
pub const SALTED_LEAF_VERSION: i64 = 2;

/// Text as the database keeps it: no NUL characters (neither backend stores them in text).
/// Borrowed unless it holds one: this runs for every column of every event written.
fn stored(v: &str) -> Cow<'_, str> {
    if v.as_bytes().contains(&0) {
        Cow::Owned(v.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(v)
    }
}

fn stored_opt(v: Option<&str>) -> Option<Cow<'_, str>> {
    v.map(stored)
}

/// A member of the canonical form.
enum Member<'a> {
    Text(Option<&'a str>),
    Int(i64),
    /// Not a member at all (an absent salt).
    Absent,
}

/// One event's stored columns. Field names are the leaf's member names. The writer's rows
/// borrow from the event they are made of; rows read back own their text
/// (`StoredEvent<'static>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent<'a> {
    pub seq: i64,
    pub at: i64,
    pub actor_kind: Cow<'a, str>,
    pub actor_id: Option<Cow<'a, str>>,
    pub actor_name: Option<Cow<'a, str>>,
    pub actor_preview: Option<Cow<'a, str>>,
    pub role: Option<Cow<'a, str>>,
    pub tenants: Cow<'a, str>,
    pub action: Cow<'a, str>,
    pub target_type: Option<Cow<'a, str>>,
    pub target_id: Option<Cow<'a, str>>,
    pub target_name: Option<Cow<'a, str>>,
    pub status: Cow<'a, str>,
    pub reason: Option<Cow<'a, str>>,
    pub source: Cow<'a, str>,
    pub request_source: Option<Cow<'a, str>>,
    pub client_name: Option<Cow<'a, str>>,
    pub client_version: Option<Cow<'a, str>>,
    pub request_id: Option<Cow<'a, str>>,
    pub client_ip: Option<Cow<'a, str>>,
    pub user_agent: Option<Cow<'a, str>>,
    pub channel: Option<Cow<'a, str>>,
    pub args: Option<Cow<'a, str>>,
    pub before_state: Option<Cow<'a, str>>,
    pub after_state: Option<Cow<'a, str>>,
    /// Random text in the leaf of an event stored under encryption at rest (sealed in the
    /// database), so its leaf hash cannot be matched against guessed values. Absent otherwise
    /// (and then not a member of the canonical form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<Cow<'a, str>>,
}

fn json_text(v: Option<&Value>) -> Option<Cow<'static, str>> {
    v.map(|v| Cow::Owned(stored(&v.to_string()).into_owned()))
}

/// Tenants as stored: sorted, without repeats, space-separated (one tenant, the usual case, is
/// borrowed). Queries rely on that form to find a tenant caller's events by their exact text.
fn tenants_text(tenants: &[String]) -> Cow<'_, str> {
    match tenants {
        [one] => stored(one),
        many => Cow::Owned(stored(&tenant_set(many).join(" ")).into_owned()),
    }
}

/// An event's tenants as a set: sorted, each once (what its stored text and its tenant rows
/// hold).
pub fn tenant_set(tenants: &[String]) -> Vec<&str> {
    let mut set: Vec<&str> = tenants.iter().map(String::as_str).collect();
    set.sort_unstable();
    set.dedup();
    set
}

impl<'a> StoredEvent<'a> {
    /// The row `event` becomes at log position `seq` (borrowing its text).
    pub fn of(event: &'a AuditEvent, seq: i64) -> StoredEvent<'a> {
        StoredEvent {
            seq,
            at: event.at.timestamp_micros(),
            actor_kind: stored(&event.actor_kind),
            actor_id: stored_opt(event.actor_id.as_deref()),
            actor_name: stored_opt(event.actor_name.as_deref()),
            actor_preview: stored_opt(event.actor_preview.as_deref()),
            role: stored_opt(event.role.as_deref()),
            tenants: tenants_text(&event.tenants),
            action: event.action.as_str().into(),
            target_type: stored_opt(event.target_type.as_deref()),
            target_id: stored_opt(event.target_id.as_deref()),
            target_name: stored_opt(event.target_name.as_deref()),
            status: event.status.as_str().into(),
            reason: stored_opt(event.reason.as_deref()),
            source: event.source.as_str().into(),
            request_source: stored_opt(event.request_source.as_deref()),
            client_name: stored_opt(event.client_name.as_deref()),
            client_version: stored_opt(event.client_version.as_deref()),
            request_id: stored_opt(event.request_id.as_deref()),
            client_ip: stored_opt(event.client_ip.as_deref()),
            user_agent: stored_opt(event.user_agent.as_deref()),
            channel: stored_opt(event.channel.as_deref()),
            args: json_text(event.args.as_ref()),
            before_state: json_text(event.before.as_ref()),
            after_state: json_text(event.after.as_ref()),
            salt: None,
        }
    }

    /// The canonical JSON the leaf hash is taken over (one line of an export's events.jsonl).
    /// Written member by member in JCS order (sorted names; every name is ASCII, so UTF-16
    /// order is byte order), strings escaped by serde_json: it runs for every event written,
    /// so no intermediate map. A test holds it equal to the generic sort.
    pub fn canonical(&self) -> String {
        let mut out = Vec::with_capacity(640);
        self.write_canonical(&mut out);
        // Names are ASCII and serde_json writes valid UTF-8.
        String::from_utf8(out).unwrap_or_default()
    }

    /// Appends the canonical form to `out`.
    fn write_canonical(&self, out: &mut Vec<u8>) {
        fn text(out: &mut Vec<u8>, v: Option<&str>) {
            match v {
                // Most values need no escaping (JSON escapes only `"`, `\` and controls):
                // copied as they are.
                Some(t) if t.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') => {
                    out.push(b'"');
                    out.extend_from_slice(t.as_bytes());
                    out.push(b'"');
                }
                // Serialising a &str into memory cannot fail.
                Some(t) => {
                    let _ = serde_json::to_writer(&mut *out, t);
                }
                None => out.extend_from_slice(b"null"),
            }
        }
        let salt = match &self.salt {
            Some(s) => Member::Text(Some(s)),
            None => Member::Absent,
        };
        let members: [(&str, Member<'_>); 27] = [
            ("action", Member::Text(Some(&self.action))),
            ("actor_id", Member::Text(self.actor_id.as_deref())),
            ("actor_kind", Member::Text(Some(&self.actor_kind))),
            ("actor_name", Member::Text(self.actor_name.as_deref())),
            ("actor_preview", Member::Text(self.actor_preview.as_deref())),
            ("after_state", Member::Text(self.after_state.as_deref())),
            ("args", Member::Text(self.args.as_deref())),
            ("at", Member::Int(self.at)),
            ("before_state", Member::Text(self.before_state.as_deref())),
            ("channel", Member::Text(self.channel.as_deref())),
            ("client_ip", Member::Text(self.client_ip.as_deref())),
            ("client_name", Member::Text(self.client_name.as_deref())),
            (
                "client_version",
                Member::Text(self.client_version.as_deref()),
            ),
            ("reason", Member::Text(self.reason.as_deref())),
            ("request_id", Member::Text(self.request_id.as_deref())),
            (
                "request_source",
                Member::Text(self.request_source.as_deref()),
            ),
            ("role", Member::Text(self.role.as_deref())),
            ("salt", salt),
            ("seq", Member::Int(self.seq)),
            ("source", Member::Text(Some(&self.source))),
            ("status", Member::Text(Some(&self.status))),
            ("target_id", Member::Text(self.target_id.as_deref())),
            ("target_name", Member::Text(self.target_name.as_deref())),
            ("target_type", Member::Text(self.target_type.as_deref())),
            ("tenants", Member::Text(Some(&self.tenants))),
            ("user_agent", Member::Text(self.user_agent.as_deref())),
            ("v", Member::Int(self.version())),
        ];
        out.push(b'{');
        let present = members.iter().filter(|(_, v)| !matches!(v, Member::Absent));
        for (i, (name, value)) in present.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            match value {
                Member::Text(t) => text(out, *t),
                Member::Int(n) => {
                    let _ = serde_json::to_writer(&mut *out, n);
                }
                Member::Absent => {}
            }
        }
        out.push(b'}');
    }

    /// The same, the slow generic way: every member through a sorted map.
    #[cfg(test)]
    fn canonical_by_sorting(&self) -> String {
        let Ok(Value::Object(members)) = serde_json::to_value(self) else {
            return String::new();
        };
        let mut sorted: std::collections::BTreeMap<String, Value> = members.into_iter().collect();
        sorted.insert("v".into(), Value::from(self.version()));
        serde_json::to_string(&sorted).unwrap_or_default()
    }

    /// `v`: whether the leaf has a salt.
    pub fn version(&self) -> i64 {
        match self.salt {
            Some(_) => SALTED_LEAF_VERSION,
            None => LEAF_VERSION,
        }
    }

    pub fn leaf_hash(&self) -> Hash {
        self.leaf_hash_in(&mut Vec::with_capacity(640))
    }

    /// The same, writing the preimage into `buf` (cleared first): the sequencer keeps one
    /// buffer for a whole batch instead of allocating a string per event.
    pub fn leaf_hash_in(&self, buf: &mut Vec<u8>) -> Hash {
        buf.clear();
        self.write_canonical(buf);
        merkle::leaf_hash(buf)
    }
}

impl StoredEvent<'static> {
    /// Reads a line of `events.jsonl` back (any other member, or a missing one, is refused).
    pub fn from_canonical(line: &str) -> Option<StoredEvent<'static>> {
        let mut v: serde_json::Map<String, Value> = serde_json::from_str(line).ok()?;
        // The version must be the one the members imply (checked by re-serialising below).
        if !matches!(
            v.remove("v")?.as_i64(),
            Some(LEAF_VERSION | SALTED_LEAF_VERSION)
        ) {
            return None;
        }
        let e: StoredEvent = serde_json::from_value(Value::Object(v)).ok()?;
        (e.canonical() == line).then_some(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StoredEvent<'static> {
        StoredEvent {
            seq: 3,
            at: 1_733_350_000_000_000,
            actor_kind: "key".into(),
            actor_id: Some("k_1".into()),
            actor_name: Some("ci-agent".into()),
            actor_preview: Some("kw_hHIYdeIN".into()),
            role: Some("admin".into()),
            tenants: "*".into(),
            action: "key_revoke".into(),
            target_type: Some("key".into()),
            target_id: Some("k_2".into()),
            target_name: Some("old \"bot\"\n\u{1}é".into()),
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
            args: Some("{\"id\":\"k_2\"}".into()),
            before_state: None,
            after_state: None,
            salt: None,
        }
    }

    #[test]
    fn the_canonical_form_is_sorted_minimal_and_reads_back() {
        let c = sample().canonical();
        assert!(c.starts_with("{\"action\":\"key_revoke\",\"actor_id\":\"k_1\""));
        assert!(c.ends_with("\"user_agent\":null,\"v\":1}"));
        assert!(c.contains(r#""target_name":"old \"bot\"\n\u0001é""#));
        assert_eq!(StoredEvent::from_canonical(&c), Some(sample()));
        // Not canonical (spaces, reordered) or an unknown member: refused.
        assert_eq!(StoredEvent::from_canonical(&c.replacen(':', ": ", 1)), None);
        assert_eq!(
            StoredEvent::from_canonical(&c.replacen("{", "{\"x\":1,", 1)),
            None
        );
    }

    #[test]
    fn a_reused_preimage_buffer_gives_each_event_its_own_hash() {
        let (a, mut b) = (sample(), sample());
        b.seq += 1;
        b.actor_name = None;
        let mut buf = b"left over from an earlier, longer event".repeat(40);
        assert_eq!(a.leaf_hash_in(&mut buf), a.leaf_hash());
        assert_eq!(buf, a.canonical().as_bytes());
        assert_eq!(b.leaf_hash_in(&mut buf), b.leaf_hash());
        assert_eq!(b.leaf_hash(), merkle::leaf_hash(b.canonical().as_bytes()));
        assert_ne!(a.leaf_hash(), b.leaf_hash());
    }

    #[test]
    fn text_copied_unescaped_is_exactly_what_serde_json_writes() {
        for t in [
            "plain",
            "",
            "\u{7f}",
            "é ü",
            "\u{2028}\u{2029}",
            "</script>",
            "a/b",
            "\u{1f}",
            "\"",
            "\\",
            "\u{0}",
            "tab\t",
            "\u{FFFD}",
        ] {
            let mut e = sample();
            e.role = Some(t.into());
            e.seq = -1;
            e.at = 1 << 53;
            assert_eq!(e.canonical(), e.canonical_by_sorting(), "{t:?}");
        }
    }

    #[test]
    fn rows_borrow_clean_text_and_replace_nul_as_the_database_would() {
        let mut e = crate::domain::audit::sample_event("fine");
        e.actor_name = Some("ci\0agent".into());
        e.tenants = vec!["acme".into(), "globex".into()];
        let row = StoredEvent::of(&e, 7);
        assert_eq!(row.actor_name.as_deref(), Some("ci\u{FFFD}agent"));
        assert_eq!(row.tenants, "acme globex");
        assert!(matches!(row.reason, Some(Cow::Borrowed("fine"))));
        let mut unsorted = e.clone();
        unsorted.tenants = vec!["globex".into(), "acme".into(), "globex".into()];
        assert_eq!(
            StoredEvent::of(&unsorted, 7).tenants,
            "acme globex",
            "sorted, without repeats: tenant callers find events by this text"
        );
        e.tenants = vec!["acme".into()];
        assert!(matches!(
            StoredEvent::of(&e, 7).tenants,
            Cow::Borrowed("acme")
        ));
    }

    proptest::proptest! {
        #[test]
        fn the_direct_form_equals_the_generic_sort(
            texts in proptest::collection::vec(proptest::option::of(".{0,12}"), 20),
            seq in 0i64..1 << 40,
            at in 0i64..1 << 52,
        ) {
            let t = |i: usize| texts[i].clone().map(Cow::Owned);
            let s = |i: usize| Cow::Owned(texts[i].clone().unwrap_or_default());
            let e = StoredEvent {
                seq, at,
                actor_kind: s(0), actor_id: t(1), actor_name: t(2), actor_preview: t(3),
                role: t(4), tenants: s(5), action: s(6), target_type: t(7), target_id: t(8),
                target_name: t(9), status: s(10), reason: t(11), source: s(12),
                request_source: t(13), client_name: t(14), client_version: t(15),
                request_id: t(16), client_ip: t(17), user_agent: t(18), channel: t(19),
                args: t(0), before_state: t(1), after_state: t(2), salt: t(3),
            };
            proptest::prop_assert_eq!(e.canonical(), e.canonical_by_sorting());
        }
    }

    #[test]
    fn every_field_and_the_position_change_the_leaf() {
        let base = sample().leaf_hash();
        let mut moved = sample();
        moved.seq = 4;
        assert_ne!(moved.leaf_hash(), base);
        let mut edited = sample();
        edited.client_ip = Some("10.0.0.1".into());
        assert_ne!(edited.leaf_hash(), base);
        // A salt is a member of its own (and without one the form is what v1 always was).
        let mut salted = sample();
        salted.salt = Some("Zq3".into());
        let c = salted.canonical();
        assert!(c.contains(r#""role":"admin","salt":"Zq3","seq":3"#), "{c}");
        assert!(c.ends_with(r#""v":2}"#), "{c}");
        // The version follows the members: a salted line claiming v 1 (or the reverse) is no leaf.
        assert_eq!(
            StoredEvent::from_canonical(&c.replace(r#""v":2"#, r#""v":1"#)),
            None
        );
        let plain = sample().canonical();
        assert_eq!(
            StoredEvent::from_canonical(&plain.replace(r#""v":1"#, r#""v":2"#)),
            None
        );
        assert_ne!(salted.leaf_hash(), base);
        assert_eq!(StoredEvent::from_canonical(&c), Some(salted));
        assert!(!sample().canonical().contains("salt"));
        assert_eq!(sample().leaf_hash(), base);
    }
}
