-- A fourth roll-up shape, audit_buckets_actor: the actor and the client address with role,
-- tenants, status and source, but not the action. "Which keys keep getting denied?", a week by
-- actor or by client address, and novelty's pairs of actor and address read it: per hour it
-- holds a row per actor and address (and status), where the wide shape holds one per action too.
-- Derived data only. Kept in step with ../postgres/0014_audit_buckets.sql.
--
-- The three shapes move to new names with the new one and a new progress row, and empty tables
-- keep the old names beside a progress row frozen at "nothing folded" (as 0011 did): a process
-- of the earlier build, still running during an upgrade, reads those, so its summaries count
-- the events (still exact), and its folder, retention and rekey are refused with an error
-- naming the cause instead of folding into three shapes of four. A later migration drops them.
-- The moved tables keep their rows (and their indexes, under their old names); the new shape
-- is their wide rows without the action, so nothing needs folding again.

ALTER TABLE audit_rollup_wide RENAME TO audit_buckets_wide;
ALTER TABLE audit_rollup_core RENAME TO audit_buckets_core;
ALTER TABLE audit_rollup_target RENAME TO audit_buckets_target;
-- A caller scoped to a few tenants reads its tenants' rows of the core alone: its summaries by
-- hour or by day over a long window (the whole trail, with no start) read every row otherwise.
CREATE INDEX audit_buckets_core_tenants ON audit_buckets_core(span, tenants, bucket);

CREATE TABLE audit_buckets_actor (
    id            INTEGER PRIMARY KEY,
    span          BIGINT NOT NULL,   -- the bucket's width (micros): an hour or a day
    bucket        BIGINT NOT NULL,   -- its start (micros, UTC)
    actor_kind    TEXT NOT NULL,
    actor_id      TEXT,
    role          TEXT,
    tenants       TEXT NOT NULL,
    status        TEXT NOT NULL,
    source        TEXT NOT NULL,
    client_ip     TEXT,              -- as stored in audit_events (sealed for equality)
    n             BIGINT NOT NULL,
    first_at      BIGINT NOT NULL,
    last_at       BIGINT NOT NULL,
    actor_preview TEXT,              -- the greatest of the folded events' previews
    actor_name    TEXT               -- and names: what a group by actor shows
);
CREATE INDEX audit_buckets_actor_bucket ON audit_buckets_actor(span, bucket);
CREATE INDEX audit_buckets_actor_status ON audit_buckets_actor(span, status, bucket) WHERE status <> 'success';
INSERT INTO audit_buckets_actor (span, bucket, actor_kind, actor_id, role, tenants, status,
        source, client_ip, n, first_at, last_at, actor_preview, actor_name)
    SELECT span, bucket, actor_kind, actor_id, role, tenants, status, source, client_ip,
        SUM(n), MIN(first_at), MAX(last_at), MAX(actor_preview), MAX(actor_name)
    FROM audit_buckets_wide
    GROUP BY span, bucket, actor_kind, actor_id, role, tenants, status, source, client_ip;

CREATE TABLE audit_buckets_progress (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    folded_seq      BIGINT NOT NULL,
    compacted_until BIGINT NOT NULL,
    generation      BIGINT NOT NULL
);
INSERT INTO audit_buckets_progress (id, folded_seq, compacted_until, generation)
    SELECT id, folded_seq, compacted_until, generation FROM audit_rollup_progress WHERE id = 1;

-- What the earlier build reads: empty, nothing folded, a new generation (a reader whose plan
-- predates this sees it move), and frozen.
CREATE TABLE audit_rollup_wide (
    id INTEGER PRIMARY KEY, span BIGINT NOT NULL, bucket BIGINT NOT NULL,
    actor_kind TEXT NOT NULL, actor_id TEXT, actor_preview TEXT, role TEXT,
    tenants TEXT NOT NULL, action TEXT NOT NULL, status TEXT NOT NULL, source TEXT NOT NULL,
    client_ip TEXT, n BIGINT NOT NULL, first_at BIGINT NOT NULL, last_at BIGINT NOT NULL,
    actor_name TEXT
);
CREATE TABLE audit_rollup_core (
    id INTEGER PRIMARY KEY, span BIGINT NOT NULL, bucket BIGINT NOT NULL, role TEXT,
    tenants TEXT NOT NULL, action TEXT NOT NULL, status TEXT NOT NULL, source TEXT NOT NULL,
    n BIGINT NOT NULL, first_at BIGINT NOT NULL, last_at BIGINT NOT NULL
);
CREATE TABLE audit_rollup_target (
    id INTEGER PRIMARY KEY, span BIGINT NOT NULL, bucket BIGINT NOT NULL, target_type TEXT,
    target_id TEXT, role TEXT, tenants TEXT NOT NULL, action TEXT NOT NULL,
    status TEXT NOT NULL, source TEXT NOT NULL, n BIGINT NOT NULL, first_at BIGINT NOT NULL,
    last_at BIGINT NOT NULL, target_name TEXT
);
UPDATE audit_rollup_progress SET folded_seq = 0, compacted_until = 0, generation = generation + 1;
CREATE TRIGGER audit_rollup_progress_frozen BEFORE UPDATE ON audit_rollup_progress
BEGIN
    SELECT RAISE(ABORT, 'audit roll-ups are kept by a newer keyward: upgrade this process');
END;
