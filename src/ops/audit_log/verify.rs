//! Verifying the log: signatures, the tree against every checkpoint and anchor, the rows
//! against their leaf hashes. One verdict, the first problem's place, and a sentence a model
//! can act on.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use schemars::JsonSchema;
use serde::Serialize;

use crate::domain::checkpoint::{self, Opened};
use crate::domain::merkle::{self, CHUNK, Frontier, Hash};
use crate::ops::app::App;
use crate::store::audit::{checkpoints, tree};

use super::{LogError, anchors};

/// Rows re-hashed by a quick check (the newest).
pub const QUICK_BODIES: u64 = 1000;
/// Rows read per page by a full check.
const PAGE: i64 = 2000;
/// How much of each anchor file a check reads (its newest checkpoints).
const ANCHOR_TAIL: u64 = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Signatures, roots from stored hashes, consistency with every checkpoint and anchor,
    /// the newest bodies re-hashed.
    Quick,
    /// Also every body re-hashed and every chunk rebuilt from them.
    Full,
}

/// The outcome, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A checkpoint's signature does not verify with a trusted key.
    Forged,
    /// Fewer events than a signed checkpoint covers.
    Truncated,
    /// An event's stored body (or its place) changed, or an event is missing.
    Tampered,
    /// The stored tree is not the one a signed checkpoint committed to, though every body
    /// matches its stored hash (hashes recomputed after an edit).
    Rewritten,
    /// No recent checkpoint: events newer than the newest checkpoint by more than the
    /// heartbeat, or a live signer that missed its heartbeat.
    Stale,
    /// No key here to check signatures with.
    Unverifiable,
    Ok,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct TreeView {
    #[schemars(with = "i64")]
    pub size: u64,
    /// Base64 SHA-256 root.
    pub root: String,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CheckpointView {
    #[schemars(with = "i64")]
    pub size: u64,
    /// When it was signed (RFC 3339, UTC).
    pub time: String,
    pub kind: String,
    /// The key ids whose signatures verified.
    pub key_ids: Vec<String>,
    pub age_seconds: i64,
    /// The signed note (C2SP checkpoint), verbatim.
    pub note: String,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct AnchorView {
    /// Where it was read: `file <name>` (the file's name, not its directory).
    pub source: String,
    /// The largest checkpoint found there.
    #[schemars(with = "i64")]
    pub size: u64,
    /// Whether the stored tree extends it.
    pub consistent: bool,
    /// Set when it predates a deliberate restore (`keyward audit restored`): the history it
    /// signed was given up then, so it is not held against the log.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub before_restore: bool,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Checked {
    #[schemars(with = "i64")]
    pub from_seq: u64,
    #[schemars(with = "i64")]
    pub to_seq: u64,
    #[schemars(with = "i64")]
    pub bodies_rehashed: u64,
    /// Events below this seq had their bodies removed by retention (their hashes remain, so
    /// roots and proofs still verify): reported as pruned, not missing.
    #[schemars(with = "i64")]
    pub pruned_below: u64,
    /// The newest pruned event's time, when anything was pruned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pruned_through: Option<String>,
    /// Events written before the log existed (covered by the genesis checkpoint as unproven).
    pub unproven: i64,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Problem {
    /// `bad_signature`, `fewer_events`, `root_mismatch`, `body_mismatch`, `missing_event`,
    /// `no_recent_checkpoint`.
    pub kind: String,
    #[schemars(with = "Option<i64>")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    pub detail: String,
}

/// What `audit_verify` and `keyward audit verify` answer.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct VerifyReport {
    pub verdict: Verdict,
    /// `quick` or `full`.
    pub mode: String,
    pub tree: TreeView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<CheckpointView>,
    pub anchors: Vec<AnchorView>,
    pub checked: Checked,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_problem: Option<Problem>,
    /// The public key checkpoints are checked with (vkey).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    #[schemars(with = "i64")]
    pub duration_ms: u64,
    /// One sentence on what to do next.
    pub next_step: String,
}

struct Findings {
    worst: Verdict,
    problem: Option<Problem>,
}

impl Findings {
    fn found(&mut self, v: Verdict, kind: &str, seq: Option<u64>, detail: String) {
        if v < self.worst {
            self.worst = v;
            self.problem = Some(Problem {
                kind: kind.into(),
                seq,
                detail,
            });
        }
    }
}

fn iso(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// The tail of a file (its newest records), from a record boundary.
fn read_tail(path: &std::path::Path) -> std::io::Result<Vec<String>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    let start = len.saturating_sub(ANCHOR_TAIL);
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    // Skip to the start of a record: after the first blank line that follows signatures.
    let text = if start > 0 {
        text.find("\n\n\u{2014}")
            .and_then(|i| text[i + 2..].find("\n\n").map(|j| i + 2 + j + 2))
            .map_or("", |k| &text[k..])
    } else {
        &text
    };
    Ok(anchors::split_notes(text))
}

/// Runs the check. `progress(done, total)` is called as bodies are re-hashed.
pub async fn verify(
    app: &App,
    mode: Mode,
    live: bool,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<VerifyReport, LogError> {
    let started = std::time::Instant::now();
    let log = &app.audit_log;
    let store = &app.store;
    let trusted = log.trusted();
    let now = app.now();
    let head = tree::head(store).await?;
    let mut f = Findings {
        worst: Verdict::Ok,
        problem: None,
    };
    let root = match Frontier::from_bytes(head.size, &head.frontier) {
        Ok(fr) => fr.root(),
        Err(e) => {
            f.found(Verdict::Rewritten, "root_mismatch", None, e.to_string());
            merkle::empty_root()
        }
    };
    if trusted.is_empty() {
        f.found(
            Verdict::Unverifiable,
            "no_key",
            None,
            "no signing key is configured here, so signatures cannot be checked".into(),
        );
    }

    // Every checkpoint to hold the tree to: the newest and the largest stored, and the
    // largest in each anchor file.
    let mut claims: Vec<(String, Opened)> = Vec::new();
    let mut newest: Option<(Opened, String)> = None;
    let stored_latest = checkpoints::latest(store).await?;
    let stored_largest = checkpoints::largest(store).await?;
    for (label, c) in [("database", &stored_latest), ("database", &stored_largest)] {
        let Some(c) = c else { continue };
        match checkpoint::open(&c.note, &trusted) {
            Ok(o) => {
                if newest.is_none() {
                    newest = Some((o.clone(), c.note.clone()));
                }
                claims.push((label.to_owned(), o));
            }
            Err(e) if !trusted.is_empty() => f.found(
                Verdict::Forged,
                "bad_signature",
                Some(c.size as u64),
                format!(
                    "the checkpoint stored for size {} does not verify: {e}",
                    c.size
                ),
            ),
            Err(_) => {}
        }
    }
    let mut anchor_views = Vec::new();
    for path in log.anchor_files() {
        // Named by file name only: a remote caller learns no directory layout.
        let label = path.file_name().map_or_else(
            || "anchor".to_owned(),
            |n| format!("file {}", n.to_string_lossy()),
        );
        let notes = read_tail(&path).unwrap_or_default();
        // A deliberate restore re-anchors: checkpoints this file holds from before the newest
        // "restored" one it also holds belong to the history given up then. (The restore must
        // reach the file itself: one only in the database does not excuse an anchor.)
        let restored_at = notes.iter().rposition(|n| {
            checkpoint::open(n, &trusted)
                .is_ok_and(|o| o.checkpoint.kind == "restored" && o.checkpoint.origin == log.origin)
        });
        let mut best: Option<Opened> = None;
        let mut given_up = false;
        for (i, n) in notes.iter().enumerate() {
            match checkpoint::open(n, &trusted) {
                Ok(_) if restored_at.is_some_and(|r| i < r) => given_up = true,
                Ok(o) if o.checkpoint.origin == log.origin => {
                    if best
                        .as_ref()
                        .is_none_or(|b| o.checkpoint.size >= b.checkpoint.size)
                    {
                        best = Some(o);
                    }
                }
                Ok(_) => {}
                Err(e) if !trusted.is_empty() => f.found(
                    Verdict::Forged,
                    "bad_signature",
                    None,
                    format!("a checkpoint in {label} does not verify: {e}"),
                ),
                Err(_) => {}
            }
        }
        if let Some(b) = best {
            anchor_views.push(AnchorView {
                source: label.clone(),
                size: b.checkpoint.size,
                consistent: true,
                before_restore: false,
            });
            claims.push((label.clone(), b));
        } else if given_up {
            anchor_views.push(AnchorView {
                source: label.clone(),
                size: 0,
                consistent: true,
                before_restore: true,
            });
        }
    }
    // A pruned range needs its record: otherwise old events were simply deleted.
    if head.pruned_below > 0 && tree::prune_records(store).await? == 0 {
        f.found(
            Verdict::Tampered,
            "missing_event",
            Some(0),
            format!(
                "events 0..{} are gone and no audit_prune event records their removal",
                head.pruned_below - 1
            ),
        );
    }

    // Rows: how many, the highest, any hole.
    let (count, max_seq) = tree::count_from(store, head.pruned_below).await?;
    let stored_end = max_seq.map_or(head.pruned_below, |m| m + 1);
    for (label, o) in &claims {
        let c = &o.checkpoint;
        if c.size > head.size || c.size > stored_end {
            f.found(
                Verdict::Truncated,
                "fewer_events",
                Some(head.size.min(stored_end)),
                format!(
                    "the checkpoint in {label} covers {} events but the log holds {}",
                    c.size,
                    head.size.min(stored_end)
                ),
            );
        }
    }
    if stored_end < head.size {
        f.found(
            Verdict::Truncated,
            "fewer_events",
            Some(stored_end),
            format!(
                "the tree head counts {} events but the newest stored is {}",
                head.size,
                stored_end.saturating_sub(1)
            ),
        );
    }
    if count < stored_end.saturating_sub(head.pruned_below)
        && let Some(hole) = tree::first_missing(store, head.pruned_below, stored_end).await?
    {
        {
            f.found(
                Verdict::Tampered,
                "missing_event",
                Some(hole),
                format!("event {hole} is missing from the middle of the log"),
            );
        }
    }

    // The tree from stored hashes against the head and every checkpoint.
    let sizes: Vec<u64> = claims
        .iter()
        .map(|(_, o)| o.checkpoint.size.min(head.size))
        .collect();
    let stored = tree::StoredTree::load(store, head.size, &sizes).await?;
    match merkle::root(&stored, head.size) {
        Ok(r) if r == root => {}
        Ok(_) => f.found(
            Verdict::Rewritten,
            "root_mismatch",
            None,
            "the stored hashes do not give the tree head's root".into(),
        ),
        Err(e) => f.found(Verdict::Tampered, "missing_event", None, e.to_string()),
    }
    for (label, o) in &claims {
        let c = &o.checkpoint;
        if c.size > head.size {
            continue;
        }
        let consistent = merkle::root(&stored, c.size).is_ok_and(|r| r == c.root);
        if !consistent {
            f.found(
                Verdict::Rewritten,
                "root_mismatch",
                Some(c.size),
                format!(
                    "the log's first {} events are not the ones the checkpoint in {label} signed",
                    c.size
                ),
            );
        }
        if let Some(a) = anchor_views.iter_mut().find(|a| a.source == *label) {
            a.consistent = consistent;
        }
    }

    // Bodies: re-hashed against their leaf hashes (and, in full, chunks rebuilt from them).
    let from = match mode {
        Mode::Quick => stored_end
            .saturating_sub(QUICK_BODIES)
            .max(head.pruned_below),
        Mode::Full => head.pruned_below,
    };
    let total = stored_end.saturating_sub(from);
    let mut next = from;
    let mut rehashed = 0u64;
    let mut chunk_leaves: Vec<Hash> = Vec::new();
    let mut chunk_start = from.div_ceil(CHUNK) * CHUNK;
    while next < stored_end {
        let rows = tree::rows_from(store, next, PAGE).await?;
        let Some(last) = rows.last() else { break };
        next = last.0.seq as u64 + 1;
        for (row, leaf) in &rows {
            let seq = row.seq as u64;
            let h = row.leaf_hash();
            rehashed += 1;
            if Some(h) != *leaf {
                f.found(
                    Verdict::Tampered,
                    "body_mismatch",
                    Some(seq),
                    format!("event {seq}'s stored content does not match its leaf hash"),
                );
            }
            if mode == Mode::Full && seq >= chunk_start {
                if seq != chunk_start + chunk_leaves.len() as u64 {
                    chunk_leaves.clear();
                    chunk_start = seq.div_ceil(CHUNK) * CHUNK;
                    continue;
                }
                chunk_leaves.push(h);
                if chunk_leaves.len() as u64 == CHUNK {
                    let idx = chunk_start / CHUNK;
                    let Ok(rebuilt) = merkle::subtree_root(chunk_leaves.as_slice(), 0, CHUNK);
                    let kept = tree::chunks(store, idx, idx + 1).await?.get(&idx).copied();
                    if kept != Some(rebuilt) {
                        f.found(
                            Verdict::Tampered,
                            "body_mismatch",
                            Some(chunk_start),
                            format!(
                                "events {chunk_start}..{} do not give their stored chunk hash",
                                chunk_start + CHUNK - 1
                            ),
                        );
                    }
                    chunk_leaves.clear();
                    chunk_start += CHUNK;
                }
            }
        }
        progress(rehashed, total);
    }

    // Freshness.
    let heartbeat = log.settings.heartbeat.num_seconds();
    if let Some((o, _)) = &newest {
        let t = o.checkpoint.time;
        let newest_event = head.updated_at / 1_000_000;
        if newest_event - t > heartbeat {
            f.found(
                Verdict::Stale,
                "no_recent_checkpoint",
                Some(o.checkpoint.size),
                format!(
                    "events were written up to {} but the newest checkpoint is from {}",
                    iso(newest_event),
                    iso(t)
                ),
            );
        } else if live && now.timestamp() - t > heartbeat + log.settings.every.num_seconds() {
            f.found(
                Verdict::Stale,
                "no_recent_checkpoint",
                Some(o.checkpoint.size),
                format!(
                    "the signer missed its heartbeat: the newest checkpoint is from {}",
                    iso(t)
                ),
            );
        }
    } else if head.size > 0 && !trusted.is_empty() {
        f.found(
            Verdict::Stale,
            "no_recent_checkpoint",
            None,
            "no checkpoint has been signed for this log".into(),
        );
    }

    let checkpoint = newest.map(|(o, note)| CheckpointView {
        size: o.checkpoint.size,
        time: iso(o.checkpoint.time),
        kind: o.checkpoint.kind.clone(),
        key_ids: o.signed_by.iter().map(|k| k.key_id()).collect(),
        age_seconds: now.timestamp() - o.checkpoint.time,
        note,
    });
    let next_step = next_step(f.worst);
    Ok(VerifyReport {
        verdict: f.worst,
        mode: match mode {
            Mode::Quick => "quick",
            Mode::Full => "full",
        }
        .into(),
        tree: TreeView {
            size: head.size,
            root: B64.encode(root),
        },
        checkpoint,
        anchors: anchor_views,
        checked: Checked {
            from_seq: from,
            to_seq: stored_end.saturating_sub(1),
            bodies_rehashed: rehashed,
            pruned_below: head.pruned_below,
            pruned_through: (head.pruned_until > 0).then(|| iso(head.pruned_until / 1_000_000)),
            unproven: head.unproven,
        },
        first_problem: f.problem,
        public_key: log.public_key(),
        duration_ms: started.elapsed().as_millis() as u64,
        next_step,
    })
}

fn next_step(v: Verdict) -> String {
    match v {
        Verdict::Ok => "The trail verifies: nothing to do.",
        Verdict::Forged => "A checkpoint carries a signature no trusted key made: treat the database and the checkpoint files as compromised, keep copies, and tell the operators.",
        Verdict::Truncated => "Events a signed checkpoint covered are gone: compare with a backup or an export, and if a backup was restored on purpose run `keyward audit restored`.",
        Verdict::Rewritten => "The log differs from what was signed: keep the database and checkpoint files as evidence and compare with an export or a backup.",
        Verdict::Tampered => "An event was changed or removed in the database: look at the event named in first_problem and compare with an export or a backup.",
        Verdict::Stale => "No recent checkpoint: check that the server signing checkpoints is running and can write; rerun the check after the next heartbeat.",
        Verdict::Unverifiable => "Configure the signing key (--audit-signing-key) or pass the public key so checkpoints can be checked.",
    }
    .into()
}

/// `verify` for a caller: needs `audit:verify`. The trail of a live server is also held to its
/// heartbeat.
pub async fn verify_as(
    app: &App,
    caller: &crate::domain::principal::Principal,
    mode: Mode,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<VerifyReport, crate::ops::OpsError> {
    crate::domain::policy::require(caller, crate::domain::permission::Permission::AuditVerify)?;
    app.audit.sync().await?;
    verify(app, mode, true, progress)
        .await
        .map_err(|e| match e {
            LogError::Store(s) => s.into(),
            other => {
                crate::ops::OpsError::Store(crate::store::StoreError::Corrupt(other.to_string()))
            }
        })
}
