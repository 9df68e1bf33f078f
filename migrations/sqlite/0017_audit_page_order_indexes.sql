-- Numbered in step with ../postgres/0017_audit_page_order_indexes.sql, which makes the event's
-- id a key column after the time in PostgreSQL's indexes by one value, so that they yield a
-- page (newest first, by time and then id) in order. Nothing to change on SQLite: its indexes
-- end with the rowid, the event's id, and its pages for the same questions took about 1 ms or
-- less on a million events.
SELECT 1;
