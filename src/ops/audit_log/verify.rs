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
    /// Records that are not checkpoints (cut short by a crash or a full disk): skipped.
    #[serde(skip_serializing_if = "is_zero")]
    pub damaged_records: i64,
    /// Why the file could not be read (then it proves nothing: fix its permissions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
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

/// How far back in time a checkpoint may sit behind one already read from the same file:
/// processes sharing one SQLite database may append their checkpoints out of order, but only
/// by moments. Older than that is a replay of an old checkpoint.
const REORDER_SLACK: i64 = 60;

struct AnchorFound {
    view: AnchorView,
    best: Option<Opened>,
}

/// The largest checkpoint of this log in an anchor file, with what is wrong with the file.
fn anchor_claim(
    path: &std::path::Path,
    mode: Mode,
    origin: &str,
    trusted: &[crate::domain::checkpoint::VerifyingKey],
    f: &mut Findings,
) -> AnchorFound {
    // Named by file name only: a remote caller learns no directory layout.
    let source = path.file_name().map_or_else(
        || "anchor".to_owned(),
        |n| format!("file {}", n.to_string_lossy()),
    );
    let mut view = AnchorView {
        source: source.clone(),
        size: 0,
        consistent: true,
        before_restore: false,
        damaged_records: 0,
        unreadable: None,
    };
    let notes = match mode {
        Mode::Quick => read_tail(path),
        Mode::Full => anchors::read_file(path),
    };
    let notes = match notes {
        Ok(n) => n,
        Err(e) => {
            view.unreadable = Some(e.to_string());
            view.consistent = false;
            return AnchorFound { view, best: None };
        }
    };
    let mut ours: Vec<Opened> = Vec::new();
    let mut latest_time = i64::MIN;
    // Signatures are deterministic, so the same checkpoint twice can be two processes racing
    // to sign one size; three times or more is a flood of copies.
    let mut copies: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for n in &notes {
        let seen = copies.entry(n.as_str()).or_default();
        *seen += 1;
        if *seen == 3 {
            f.found(
                Verdict::Tampered,
                "anchor_replayed",
                None,
                format!(
                    "{source} holds the same checkpoint three times or more: an old checkpoint was appended again"
                ),
            );
        }
        let Some(cp) = n
            .find("\n\n")
            .and_then(|end| checkpoint::Checkpoint::parse_body(&n[..=end]).ok())
        else {
            view.damaged_records += 1;
            continue;
        };
        // Another log sharing the file (another instance): not ours to judge.
        if cp.origin != origin {
            continue;
        }
        match checkpoint::open(n, trusted) {
            Ok(o) => {
                if o.checkpoint.time + REORDER_SLACK < latest_time {
                    f.found(
                        Verdict::Tampered,
                        "anchor_replayed",
                        Some(o.checkpoint.size),
                        format!(
                            "{source} holds a checkpoint (size {}) older than one before it: an old checkpoint was appended again",
                            o.checkpoint.size
                        ),
                    );
                }
                latest_time = latest_time.max(o.checkpoint.time);
                ours.push(o);
            }
            Err(e) if !trusted.is_empty() => f.found(
                Verdict::Forged,
                "bad_signature",
                Some(cp.size),
                format!(
                    "the checkpoint for size {} in {source} does not verify: {e}",
                    cp.size
                ),
            ),
            Err(_) => {}
        }
    }
    // A deliberate restore re-anchors: checkpoints signed before the newest "restored" one
    // this file holds belong to the history given up then. (It must reach the file itself,
    // and a replayed old restore excuses only what came before it.)
    let restored_at = ours
        .iter()
        .filter(|o| o.checkpoint.kind == "restored")
        .map(|o| o.checkpoint.time)
        .max();
    let mut best: Option<Opened> = None;
    for o in ours {
        let c = &o.checkpoint;
        if restored_at.is_some_and(|t| c.time < t) {
            view.before_restore = true;
            continue;
        }
        if best.as_ref().is_none_or(|b| c.size >= b.checkpoint.size) {
            best = Some(o);
        }
    }
    if let Some(b) = &best {
        view.size = b.checkpoint.size;
        view.before_restore = false;
    }
    AnchorFound { view, best }
}

/// Events without a place in the log are exactly those the signed genesis checkpoint counted.
async fn check_unproven(
    store: &crate::store::Store,
    trusted: &[crate::domain::checkpoint::VerifyingKey],
    f: &mut Findings,
) -> Result<(), LogError> {
    let (rows, max_id) = tree::unproven_rows(store).await?;
    let genesis = checkpoints::genesis(store).await?;
    let counted = genesis
        .as_ref()
        .and_then(|g| checkpoint::open(&g.note, trusted).ok())
        .and_then(|o| {
            let line = o.checkpoint.extension("unproven")?.to_owned();
            let mut parts = line.split(' ').map(str::parse::<i64>);
            Some((parts.next()?.ok()?, parts.next()?.ok()?))
        });
    let problem = match counted {
        Some((n, max)) if rows == n && max_id <= max => None,
        Some((n, max)) => Some(format!(
            "events from before the log changed: the genesis checkpoint counted {n} (ids up to {max}), the database holds {rows} (ids up to {max_id})"
        )),
        None if rows == 0 => None,
        None => Some(format!(
            "{rows} events have no place in the log and no signed genesis checkpoint counts them"
        )),
    };
    if let Some(detail) = problem {
        f.found(Verdict::Tampered, "unproven_changed", None, detail);
    }
    Ok(())
}

/// A pruned range is covered by a proven `audit_prune` record whose boundary is exactly it.
async fn check_pruned(
    store: &crate::store::Store,
    pruned_below: u64,
    f: &mut Findings,
) -> Result<(), LogError> {
    if pruned_below == 0 {
        return Ok(());
    }
    let record = tree::latest_prune(store).await?;
    let covered = record.as_ref().and_then(|(row, leaf)| {
        let proven = Some(row.leaf_hash()) == *leaf;
        let to = serde_json::from_str::<serde_json::Value>(row.after_state.as_deref()?)
            .ok()?
            .get("to_seq")?
            .as_u64()?;
        (proven && row.seq as u64 >= to).then_some(to)
    });
    if covered != Some(pruned_below) {
        f.found(
            Verdict::Tampered,
            "missing_event",
            Some(0),
            format!(
                "events 0..{} are gone and no proven audit_prune event records their removal",
                pruned_below - 1
            ),
        );
    }
    Ok(())
}

/// Runs the check. `progress(done, total)` is called as bodies are re-hashed.
pub async fn verify(
    app: &App,
    mode: Mode,
    live: bool,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<VerifyReport, LogError> {
    check(app, mode, live, app.audit_log.trusted(), progress).await
}

/// `verify` from the console, with the given public keys instead of the key file's (no
/// secret needed), never held to a live signer's heartbeat.
pub async fn verify_with(
    app: &App,
    mode: Mode,
    trusted: Option<Vec<crate::domain::checkpoint::VerifyingKey>>,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<VerifyReport, LogError> {
    let trusted = trusted.unwrap_or_else(|| app.audit_log.trusted());
    check(app, mode, false, trusted, progress).await
}

async fn check(
    app: &App,
    mode: Mode,
    live: bool,
    trusted: Vec<crate::domain::checkpoint::VerifyingKey>,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<VerifyReport, LogError> {
    let started = std::time::Instant::now();
    let log = &app.audit_log;
    let store = &app.store;
    let now = app.now();
    let mut f = Findings {
        worst: Verdict::Ok,
        problem: None,
    };
    if trusted.is_empty() {
        f.found(
            Verdict::Unverifiable,
            "no_key",
            None,
            "no key to check signatures with: configure --audit-signing-key or pass --public-key"
                .into(),
        );
    }

    // Every checkpoint to hold the tree to: the newest and the largest stored, and the
    // largest in each anchor file. Read before the head: the head only grows, so a checkpoint
    // signed meanwhile can never look larger than the log.
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
        let found = anchor_claim(&path, mode, &log.origin, &trusted, &mut f);
        if let Some(b) = &found.best {
            claims.push((found.view.source.clone(), b.clone()));
        }
        anchor_views.push(found.view);
    }

    let head = tree::head(store).await?;
    let root = match Frontier::from_bytes(head.size, &head.frontier) {
        Ok(fr) => fr.root(),
        Err(e) => {
            f.found(Verdict::Rewritten, "root_mismatch", None, e.to_string());
            merkle::empty_root()
        }
    };
    // Events from before the log: exactly those the genesis checkpoint counted.
    check_unproven(store, &trusted, &mut f).await?;
    // A pruned range needs its records: proven audit_prune events covering it exactly.
    check_pruned(store, head.pruned_below, &mut f).await?;

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
    if stored_end > head.size {
        f.found(
            Verdict::Tampered,
            "missing_event",
            Some(head.size),
            format!(
                "events {}..{} are stored past the tree head (size {}): added outside the log",
                head.size,
                stored_end - 1,
                head.size
            ),
        );
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

    // The tree from stored hashes against the head and every checkpoint (never larger than
    // what is stored: a head claiming more is truncation, found above, not memory to spend).
    let tree_size = head.size.min(stored_end);
    let sizes: Vec<u64> = claims
        .iter()
        .map(|(_, o)| o.checkpoint.size.min(tree_size))
        .collect();
    let stored = tree::StoredTree::load(store, tree_size, &sizes).await?;
    if tree_size == head.size {
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
    }
    for (label, o) in &claims {
        let c = &o.checkpoint;
        if c.size > tree_size {
            continue;
        }
        // Inside what retention removed, only chunk boundaries can still be recomputed.
        if c.size < head.pruned_below && !c.size.is_multiple_of(CHUNK) {
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
    // Quick starts on a chunk boundary, so every complete chunk it reads is rebuilt from the
    // bodies and held to its stored hash (a recomputed leaf hash cannot hide an edit there).
    let from = match mode {
        Mode::Quick => {
            (stored_end.saturating_sub(QUICK_BODIES) / CHUNK * CHUNK).max(head.pruned_below)
        }
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
            if seq >= chunk_start {
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
        public_key: trusted.first().map(ToString::to_string),
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
