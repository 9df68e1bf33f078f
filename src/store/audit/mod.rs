//! The audit trail's storage: writing events (`write`), reading them (`read`; for exports `export`), and the
//! per-quarter counts that answer unfiltered summaries without reading every event (`counts`).

pub mod checkpoints;
pub(crate) mod counts;
mod exec;
pub mod export;
mod grouping;
pub mod log;
pub mod novel;
pub mod prune;
mod read;
pub mod rollup;
pub mod tree;
mod write;

pub use counts::{CountDim, CountGroup, CountQuery, QUARTER, count_groups};
pub use novel::{NovelColumn, novel};
pub use read::{
    AuditFilter, AuditRow, BriefRow, Dim, Group, PageEnd, Statement, Summary, briefs, explain, get,
    page, summarise, with_named_keys,
};
pub(crate) use write::SEALED;
pub use write::{
    BatchError, MAX_ROWS_PER_STATEMENT, PgWriter, append, insert_sqlite, write_batch,
    write_batch_sqlite,
};
