//! Where exports go, and how many and how large (from `--audit-export-*`).

use std::path::PathBuf;

/// Where exports go and how many stay (`--audit-export-dir`, `--audit-export-max-bytes`,
/// `--audit-export-keep`).
#[derive(Debug, Clone)]
pub struct ExportSettings {
    /// `None`: beside the SQLite database (`<database file>.exports/`); on PostgreSQL the tool
    /// is then refused.
    pub dir: Option<PathBuf>,
    pub max_bytes: u64,
    pub keep: usize,
    pub max_age: chrono::Duration,
}

impl Default for ExportSettings {
    fn default() -> Self {
        ExportSettings {
            dir: None,
            max_bytes: 64 << 20,
            keep: 20,
            max_age: chrono::Duration::days(7),
        }
    }
}
