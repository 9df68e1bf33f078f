//! Storage errors. Raw driver messages stay in the log (via `source`), never in responses.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique or foreign-key constraint refused the change; the text says what clashed.
    #[error("{0}")]
    Conflict(String),
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error")]
    Database(#[source] sqlx::Error),
    #[error("invalid database URL")]
    Config(#[source] sqlx::Error),
    #[error("unsupported database URL: use sqlite:<path> or postgres://…")]
    UnsupportedUrl,
    #[error("cannot create the database file: {0}")]
    Create(#[source] std::io::Error),
    #[error("cannot start the audit writer: {0}")]
    Writer(#[source] std::io::Error),
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// The encryption key does not fit the database.
    #[error(transparent)]
    KeyRefused(#[from] super::seal::KeyRefused),
    /// From the SQLite audit writer's own connection.
    #[error("database error")]
    Native(#[from] rusqlite::Error),
}

impl StoreError {
    pub(crate) fn from_sqlx(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                StoreError::Unavailable(e)
            }
            _ => StoreError::Database(e),
        }
    }

    /// Maps a unique violation to `Conflict(what)` and a foreign-key violation to
    /// `Conflict(in_use)`, leaving other errors as they are.
    pub(crate) fn on_constraint(e: sqlx::Error, what: &str, in_use: &str) -> Self {
        if let sqlx::Error::Database(d) = &e {
            match d.kind() {
                sqlx::error::ErrorKind::UniqueViolation => {
                    return StoreError::Conflict(what.into());
                }
                sqlx::error::ErrorKind::ForeignKeyViolation => {
                    return StoreError::Conflict(in_use.into());
                }
                _ => {}
            }
        }
        StoreError::from_sqlx(e)
    }
}

/// Why an event could not be recorded. Callers turn this into a failed call: nothing runs or
/// is reported as done without its record.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditUnavailable {
    #[error("the audit trail is unavailable, so the call was not completed")]
    Unavailable,
    #[error("the server is shutting down")]
    Closed,
}
