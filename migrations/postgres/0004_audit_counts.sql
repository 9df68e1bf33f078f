-- Events per quarter hour (at / 900 s, UTC) for one dimension at a time, written with the
-- events in the same transaction (src/store/audit/counts.rs): unfiltered summaries over long
-- windows read these instead of every event. Filled here from the events already stored.
-- Kept in step with ../sqlite/0004_audit_counts.sql.
CREATE TABLE audit_counts (
    quarter  BIGINT NOT NULL,
    dim      TEXT NOT NULL,          -- 'action', 'status', 'source' or 'role'
    value    TEXT NOT NULL,          -- '' when the event has none (a role can be missing)
    n        BIGINT NOT NULL,
    first_at BIGINT NOT NULL,
    last_at  BIGINT NOT NULL,
    PRIMARY KEY (dim, quarter, value)
);
INSERT INTO audit_counts (quarter, dim, value, n, first_at, last_at)
    SELECT at / 900000000, 'action', action, COUNT(*), MIN(at), MAX(at) FROM audit_events GROUP BY 1, 3;
INSERT INTO audit_counts (quarter, dim, value, n, first_at, last_at)
    SELECT at / 900000000, 'status', status, COUNT(*), MIN(at), MAX(at) FROM audit_events GROUP BY 1, 3;
INSERT INTO audit_counts (quarter, dim, value, n, first_at, last_at)
    SELECT at / 900000000, 'source', source, COUNT(*), MIN(at), MAX(at) FROM audit_events GROUP BY 1, 3;
INSERT INTO audit_counts (quarter, dim, value, n, first_at, last_at)
    SELECT at / 900000000, 'role', COALESCE(role, ''), COUNT(*), MIN(at), MAX(at) FROM audit_events GROUP BY 1, 3;

-- Most events (reads) have no target: index only those that do.
DROP INDEX audit_events_target;
CREATE INDEX audit_events_target ON audit_events(target_id, at) WHERE target_id IS NOT NULL;
