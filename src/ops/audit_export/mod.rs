//! Exporting the audit trail as an offline-verifiable bundle (`domain::bundle`): the filters
//! of `audit_query`, the caller's tenants, the newest signed checkpoint, every event's
//! inclusion proof, and the manifest signed with the log's key. The tool's bundles go to the
//! export directory only (`files`), fetched over HTTP by their exporter alone; the CLI writes
//! where it is told.

mod export;
pub mod files;
pub mod filters;
mod settings;

pub use export::{ExportResult, Exported, bundle, export_as, fetch};
pub use files::export_dir;
pub use settings::ExportSettings;
