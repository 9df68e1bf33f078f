-- Numbered in step with ../postgres/0018_audit_rollup_names_by_bytes.sql, which drops the
-- roll-ups of a PostgreSQL database whose collation does not order text by its bytes (their
-- rows may name a group by another of its names), to be folded again. Nothing to change on
-- SQLite: it has always compared them by their bytes.
SELECT 1;
