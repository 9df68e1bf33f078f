//! The provable audit log: who signs checkpoints and with which key, where else they go, the
//! signer that runs beside the server (`run`), and verification (`verify`).
//!
//! The limit, stated plainly (README "Proving the audit trail"): whoever holds both the
//! database and the signing key can rewrite history and sign it, up to the newest checkpoint
//! anchored somewhere they cannot reach.

pub mod anchors;
pub mod keys;
pub mod retention;
mod run;
mod sign;
mod startup;
pub mod verify;

use std::path::PathBuf;
use std::sync::Mutex;

pub use anchors::Anchor;
pub use keys::{KeyError, KeyRing, KeySource};
pub use run::{Signer, start};
pub use sign::{Why, sign};
pub use startup::check_at_start;
pub use verify::{Mode, Verdict, VerifyReport, verify, verify_as, verify_with};

use crate::domain::checkpoint::VerifyingKey;
use crate::store::{Store, StoreError, settings};

/// How a violation found by the signer (not by the start-up check) begins.
const SIGNING: &str = "while signing: ";

/// The settings table row naming this log (`keyward/<id>`, the checkpoints' origin).
const ORIGIN: &str = "audit_log_origin";

#[derive(Debug, Clone)]
pub struct LogSettings {
    /// The signing key. `None`: on SQLite a file beside the database (created when missing);
    /// on PostgreSQL this process does not sign (`serve` requires the key there).
    pub signing_key: Option<KeySource>,
    /// Where every checkpoint is appended besides the database. `None`: beside the SQLite
    /// database, or beside the key file.
    pub checkpoint_log: Option<PathBuf>,
    pub anchors: Vec<Anchor>,
    /// At most one checkpoint per this much time while events arrive.
    pub every: chrono::Duration,
    /// At least one checkpoint per this much time, even idle.
    pub heartbeat: chrono::Duration,
    /// A failed check at start makes the server not ready and refuse calls.
    pub refuse_on_violation: bool,
    /// Event bodies older than this are removed (their hashes stay). Off when `None`.
    pub retention: Option<chrono::Duration>,
    /// Whether a missing key file may be created (a server's first start; never a command
    /// that only reads, never for a log that has signed before).
    pub create_key: bool,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            signing_key: None,
            checkpoint_log: None,
            anchors: Vec::new(),
            every: chrono::Duration::seconds(10),
            heartbeat: chrono::Duration::minutes(15),
            refuse_on_violation: false,
            retention: None,
            create_key: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("audit log integrity: {0}")]
    Integrity(String),
}

/// What this process knows about the log.
#[derive(Debug)]
pub struct AuditLog {
    pub origin: String,
    pub keys: Option<KeyRing>,
    pub checkpoint_log: Option<PathBuf>,
    pub settings: LogSettings,
    /// Set when a check failed (at start or when signing): shown on readiness and metrics.
    violation: Mutex<Option<String>>,
    /// The size of the newest checkpoint this process signed (for resource subscribers).
    pub signed: tokio::sync::watch::Sender<u64>,
}

impl AuditLog {
    /// Names the log, and loads (or, on SQLite, creates) the signing key.
    pub async fn open(store: &Store, mut settings: LogSettings) -> Result<AuditLog, LogError> {
        let id = crate::domain::encoding::random_base62(16);
        let origin = settings::get_or_insert(store, ORIGIN, &format!("keyward/{id}")).await?;
        let db_file = store.sqlite_file();
        if settings.signing_key.is_none() {
            settings.signing_key = db_file
                .as_ref()
                .map(|f| KeySource::File(sibling(f, "audit-key")));
        }
        let keys = match &settings.signing_key {
            Some(source) => {
                let missing = matches!(source, KeySource::File(p) if !p.exists());
                // A missing key file is made only for a log that has never signed: otherwise the
                // key was lost or misplaced, and a fresh one would verify nothing. A command that
                // only reads goes on without it (verify takes a public key instead).
                let signed_before = crate::store::audit::checkpoints::latest(store)
                    .await?
                    .is_some();
                match (missing, settings.create_key, signed_before) {
                    (true, false, _) => None,
                    (true, true, true) => return Err(KeyError::Missing.into()),
                    _ => Some(KeyRing::load(source, &origin)?),
                }
            }
            None => None,
        };
        // The log is named by its key (the name is inside what it signs), not by a database
        // row anyone holding the database could change.
        let origin = keys
            .as_ref()
            .map_or(origin, |k| k.current.name().to_owned());
        let checkpoint_log =
            settings
                .checkpoint_log
                .clone()
                .or_else(|| match (&db_file, &settings.signing_key) {
                    (Some(f), _) => Some(sibling(f, "checkpoints.log")),
                    (None, Some(KeySource::File(k))) => Some(sibling(k, "checkpoints.log")),
                    _ => None,
                });
        Ok(AuditLog {
            origin,
            keys,
            checkpoint_log,
            settings,
            violation: Mutex::new(None),
            signed: tokio::sync::watch::channel(0).0,
        })
    }

    /// Keys whose signatures verify checkpoints here.
    pub fn trusted(&self) -> Vec<VerifyingKey> {
        self.keys.as_ref().map(KeyRing::trusted).unwrap_or_default()
    }

    pub fn public_key(&self) -> Option<String> {
        self.keys
            .as_ref()
            .map(|k| k.current.verifying().to_string())
    }

    pub fn violation(&self) -> Option<String> {
        self.violation
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn set_violation(&self, v: Option<String>) {
        *self.violation.lock().unwrap_or_else(|e| e.into_inner()) = v;
    }

    /// A violation found while signing (prefixed so), cleared by the next good checkpoint.
    pub(crate) fn set_signing_violation(&self, detail: &str) {
        let mut v = self.violation.lock().unwrap_or_else(|e| e.into_inner());
        if v.is_none() {
            *v = Some(format!("{SIGNING}{detail}"));
        }
    }

    fn clear_signing_violation(&self) {
        let mut v = self.violation.lock().unwrap_or_else(|e| e.into_inner());
        if v.as_deref().is_some_and(|d| d.starts_with(SIGNING)) {
            *v = None;
        }
    }

    /// Files holding anchored checkpoints this process can read back.
    pub fn anchor_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self.checkpoint_log.iter().cloned().collect();
        for a in &self.settings.anchors {
            if let Anchor::File(p) = a
                && !files.contains(p)
            {
                files.push(p.clone());
            }
        }
        files
    }
}

/// `dir/keyward.db` → `dir/keyward.db.<suffix>`.
fn sibling(file: &std::path::Path, suffix: &str) -> PathBuf {
    let mut name = file
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".");
    name.push(suffix);
    file.with_file_name(name)
}
