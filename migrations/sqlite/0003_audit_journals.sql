-- How far each audit journal (src/store/audit_journal.rs) has been moved into audit_events:
-- updated in the same transaction as the records moved, so each is moved exactly once.
-- Kept in step with ../postgres/0003_audit_journals.sql.
CREATE TABLE audit_journals (
    name  TEXT PRIMARY KEY NOT NULL,   -- file name in <database>-audit/
    moved BIGINT NOT NULL              -- byte offset up to which records are in audit_events
);
