-- Numbered in step with ../postgres/0019_audit_head_epoch.sql, which gives the tree head an
-- epoch that rekeys move, for PostgreSQL writers that place batches after the head they
-- remember. Nothing to change on SQLite: one process writes at a time, under the database's
-- write lock, and reads the head in that transaction.
SELECT 1;
