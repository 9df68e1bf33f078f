//! The export use cases: building a bundle, `audit_export`, and fetching a bundle back.

use serde::Serialize;

use super::{files, filters};
use crate::domain::audit::{Action, Status};
use crate::domain::bundle::{self, Contents, Manifest};
use crate::domain::checkpoint;
use crate::domain::merkle::{self, Hash};
use crate::domain::permission::Permission;
use crate::domain::policy;
use crate::domain::principal::Principal;
use crate::domain::tenant::TenantScope;
use crate::ops::app::App;
use crate::ops::audit::Filters;
use crate::ops::audit_log::{self, Why};
use crate::ops::call::{Call, Outcome, Target};
use crate::ops::{CallMeta, OpsError};
use crate::store::StoreError;
use crate::store::audit::{checkpoints, export, tree};

/// Seqs read per query while gathering an export.
const PAGE: i64 = 1000;

/// A bundle made, in memory.
pub struct Exported {
    pub manifest: Manifest,
    pub bytes: Vec<u8>,
    pub sha256: String,
    pub checkpoint: String,
}

fn internal(why: impl Into<String>) -> OpsError {
    OpsError::Store(StoreError::Corrupt(why.into()))
}

/// Builds the bundle of the events `filters` select among those `scope` may see, up to the
/// newest checkpoint (signed first when events arrived since), at most about `max_bytes`
/// (then `truncated`). Checks no permission: callers do (`export_as`, the CLI).
pub async fn bundle(
    app: &App,
    scope: TenantScope,
    filters: &Filters,
    max_bytes: u64,
) -> Result<Exported, OpsError> {
    let resolved = filters::resolve(filters, app.now())?;
    let log = &app.audit_log;
    let keys = log.keys.as_ref().ok_or_else(|| {
        OpsError::invalid(
            "exporting needs the audit signing key (--audit-signing-key): it signs the bundle's manifest",
        )
    })?;
    app.audit.sync().await?;
    if let Err(e) = audit_log::sign(app, Why::Commit).await {
        tracing::warn!(error = %e, "no fresh checkpoint before an export; using the newest");
    }
    let cp = checkpoints::latest(&app.store)
        .await?
        .ok_or_else(|| OpsError::invalid("the audit log has no signed checkpoint yet"))?;
    let opened = checkpoint::open(&cp.note, &log.trusted())
        .map_err(|e| internal(format!("the newest checkpoint does not verify: {e}")))?;
    let (size, root) = (opened.checkpoint.size, opened.checkpoint.root);

    // The keys named looked up once, so every page of the export reads the same actors.
    let filter = crate::store::audit::with_named_keys(&app.store, &resolved.filter(scope.clone()))
        .await?
        .into_owned();
    let (mut events, mut used, mut truncated, mut from) = (Vec::new(), 0u64, false, 0u64);
    let per_proof = 64 + 46 * u64::from(64 - size.leading_zeros());
    'pages: loop {
        let seqs = export::seqs(&app.store, &filter, from, size, PAGE).await?;
        let Some(last) = seqs.last() else { break };
        from = (*last as u64) + 1;
        for (event, stored) in tree::rows_at(&app.store, &seqs).await? {
            if stored != Some(event.leaf_hash()) {
                return Err(internal(format!(
                    "event seq {} does not match its leaf hash: run audit_verify",
                    event.seq
                )));
            }
            used += 2 * event.canonical().len() as u64 + per_proof;
            if used > max_bytes {
                truncated = true;
                break 'pages;
            }
            events.push(event);
        }
    }
    let at: Vec<u64> = events.iter().map(|e| e.seq as u64).collect();
    let tree = tree::StoredTree::load(&app.store, size, &at).await?;
    if merkle::root(&tree, size).map_err(|e| internal(e.to_string()))? != root {
        return Err(internal(
            "the stored tree is not the one the newest checkpoint signed: run audit_verify",
        ));
    }
    let mut paths = at
        .iter()
        .map(|s| merkle::inclusion_proof(&tree, *s, size))
        .collect::<Result<Vec<Vec<Hash>>, _>>()
        .map_err(|e| internal(e.to_string()))?;
    let now = app.now();
    loop {
        let contents = Contents {
            origin: &log.origin,
            vkeys: log.trusted().iter().map(ToString::to_string).collect(),
            created_at: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            created_unix: now.timestamp(),
            filters: serde_json::to_value(&resolved).unwrap_or_default(),
            time_zone: resolved.tz.clone(),
            tenant_scope: scope.to_vec(),
            checkpoint: &cp.note,
            tree_size: size,
            root,
            truncated,
            events: &events,
            paths: &paths,
        };
        let (manifest, bytes) =
            bundle::build(&contents, &keys.current).map_err(|e| internal(e.to_string()))?;
        if bytes.len() as u64 <= max_bytes {
            return Ok(Exported {
                sha256: bundle::sha256_hex(&bytes),
                manifest,
                bytes,
                checkpoint: cp.note,
            });
        }
        // The estimate was short (the fixed files count too): drop a quarter and build again.
        if events.is_empty() {
            return Err(OpsError::invalid(
                "--audit-export-max-bytes is too small for even an empty bundle",
            ));
        }
        let keep = events.len() * 3 / 4;
        events.truncate(keep);
        paths.truncate(keep);
        truncated = true;
    }
}

/// What `audit_export` answers: where the bundle is, and what it holds; never the trail itself.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ExportResult {
    /// The bundle's server-chosen file name.
    pub name: String,
    /// GET this path with the same bearer credential to download the bundle (only you can).
    pub download: String,
    #[schemars(with = "i64")]
    pub bytes: u64,
    /// SHA-256 of the .tar.gz, hex.
    pub sha256: String,
    #[schemars(with = "i64")]
    pub events: u64,
    #[schemars(with = "Option<i64>")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_seq: Option<u64>,
    #[schemars(with = "Option<i64>")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<u64>,
    /// The size of the tree every event is proven in.
    #[schemars(with = "i64")]
    pub tree_size: u64,
    /// True when the size cap cut the export short after last_seq: narrow the window.
    pub truncated: bool,
    /// The signed checkpoint the proofs are against (C2SP signed note).
    pub checkpoint: String,
    /// The key that verifies the bundle offline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// When the server deletes the bundle (RFC 3339).
    pub expires_at: String,
    /// How to check it offline.
    pub verify_with: String,
}

/// `audit_export`: needs `audit:export`; only events within the caller's tenants.
pub async fn export_as(
    app: &App,
    p: &Principal,
    filters: &Filters,
) -> Result<ExportResult, OpsError> {
    policy::require(p, Permission::AuditExport)?;
    // The arguments first: a malformed filter says so wherever the server may write.
    filters::resolve(filters, app.now())?;
    let settings = &app.exports;
    let dir = files::export_dir(app).ok_or_else(|| {
        OpsError::invalid(
            "audit_export is not available on this server: start it with --audit-export-dir (KEYWARD_AUDIT_EXPORT_DIR)",
        )
    })?;
    let made = bundle(app, p.tenants().clone(), filters, settings.max_bytes).await?;
    let now = app.now();
    let name = files::save(
        &dir,
        settings,
        &files::owner(p),
        &made.bytes,
        now,
        &app.store.seal,
    )
    .await
    .map_err(|e| internal(format!("cannot write the export: {e}")))?;
    let m = &made.manifest;
    Ok(ExportResult {
        download: format!("/audit/exports/{name}"),
        name,
        bytes: made.bytes.len() as u64,
        sha256: made.sha256,
        events: m.events,
        first_seq: m.first_seq,
        last_seq: m.last_seq,
        tree_size: m.tree_size,
        truncated: m.truncated,
        checkpoint: made.checkpoint,
        public_key: app.audit_log.public_key(),
        expires_at: (now + settings.max_age).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        verify_with: "keyward audit verify-bundle FILE --public-key <public_key>".into(),
    })
}

/// `GET /audit/exports/{name}`: the caller's own bundle, if it still exists. Audited either
/// way (as `audit_export_fetch`, the name as target).
pub async fn fetch(
    app: &App,
    p: &Principal,
    meta: CallMeta,
    name: &str,
) -> Result<Vec<u8>, OpsError> {
    let call = Call::new(p.clone(), Action::AuditExportFetch, meta, None);
    let result = fetch_unaudited(app, p, name).await;
    let status = match &result {
        Ok(_) => Status::Success,
        Err(e) => call.fail(e).status(),
    };
    let target = files::valid_name(name).then(|| Target::new("audit_export", name, Some(name)));
    let outcome = Outcome {
        status,
        reason: result.as_ref().err().map(|e| e.public_message()),
        ..Outcome::success(target)
    };
    app.audit.record(call.event(app.now(), outcome)).await?;
    result
}

async fn fetch_unaudited(app: &App, p: &Principal, name: &str) -> Result<Vec<u8>, OpsError> {
    policy::require(p, Permission::AuditExport)?;
    if !files::valid_name(name) {
        return Err(OpsError::invalid("not an export name"));
    }
    let dir = files::export_dir(app).ok_or_else(|| OpsError::NotFound("no such export".into()))?;
    files::read(
        &dir,
        &app.exports,
        &files::owner(p),
        name,
        app.now(),
        &app.store.seal,
    )
    .await
    .map_err(|e| internal(format!("cannot read the export: {e}")))?
    .ok_or_else(|| OpsError::NotFound("no such export (or not yours, or expired)".into()))
}
