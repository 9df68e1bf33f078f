-- How far each audit journal has been moved into audit_events. Only SQLite journals audit
-- records (on PostgreSQL the writer commits them to the database directly), so this table
-- stays empty here; it exists so both schemas stay the same.
-- Kept in step with ../sqlite/0003_audit_journals.sql.
CREATE TABLE audit_journals (
    name  TEXT PRIMARY KEY NOT NULL,
    moved BIGINT NOT NULL
);
