-- A tenant-scoped caller's page walks its tenants' window of audit_events_tenants newest
-- first. With the columns its filters test included in the index, an index-only scan (of
-- the pages the visibility map marks all-visible) rejects an event without reading it from
-- the table: a rare role or status in the tenant's week cost one heap read per event of
-- that week. An action's window and a target's likewise test the caller's tenants on the
-- entry. The three indexes are rebuilt; until the migration commits, the trail can be
-- neither written nor read (seconds for a million events).
-- Kept in step with ../sqlite/0015_audit_scoped_indexes.sql.
DROP INDEX audit_events_tenants;
CREATE INDEX audit_events_tenants ON audit_events(tenants, at)
    INCLUDE (id, role, status, source, action, target_id) WHERE tenants <> '*';
DROP INDEX audit_events_target;
CREATE INDEX audit_events_target ON audit_events(target_id, at) INCLUDE (id, tenants)
    WHERE target_id IS NOT NULL;
DROP INDEX audit_events_action;
CREATE INDEX audit_events_action ON audit_events(action, at) INCLUDE (id, tenants);
-- An index-only scan reads the table for any page the visibility map does not mark
-- all-visible, and autovacuum marks an insert-only table's new pages only after it grew by a
-- fifth (the server's default): the newest events, which pages and summaries read most,
-- would be the last to benefit. Vacuuming after every 1% (and 10,000 events) keeps them
-- marked; on an insert-only table each run reads only the pages written since the last.
-- (Those settings came with PostgreSQL 13; an older server keeps its own.)
DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 130000 THEN
        ALTER TABLE audit_events SET (autovacuum_vacuum_insert_threshold = 10000,
            autovacuum_vacuum_insert_scale_factor = 0.01);
    END IF;
END
$$;
