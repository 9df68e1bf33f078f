-- A tenant-scoped caller's page walks its tenants' window of audit_events_tenants newest
-- first. With the columns its filters test in the index entry, an event the filter rejects
-- is never read from the table: a rare role or status in the tenant's week cost one table
-- read per event of that week, now one per match. An action's window and a target's
-- likewise test the caller's tenants on the entry. Each keeps the id right after the time,
-- so its entries stay in a page's order (newest first, then by id). The three indexes are
-- rebuilt, which holds writes to the trail while it runs (seconds for a million events).
-- Kept in step with ../postgres/0015_audit_scoped_indexes.sql.
DROP INDEX audit_events_tenants;
CREATE INDEX audit_events_tenants ON audit_events(tenants, at, id, role, status, source, action, target_id)
    WHERE tenants <> '*';
DROP INDEX audit_events_target;
CREATE INDEX audit_events_target ON audit_events(target_id, at, id, tenants) WHERE target_id IS NOT NULL;
DROP INDEX audit_events_action;
CREATE INDEX audit_events_action ON audit_events(action, at, id, tenants);
