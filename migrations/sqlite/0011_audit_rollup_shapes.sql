-- Roll-ups in three shapes (src/store/audit/rollup.rs, `Shape`), folded and compacted in the
-- same transactions, so all three always cover the same events:
-- - audit_rollup_wide: what audit_rollup held (actor, role, tenants, action, status, source,
--   client address);
-- - audit_rollup_core drops the actor and the client address: time, action, status, source and
--   role questions (under a tenant filter too) read far fewer rows per hour;
-- - audit_rollup_target keeps the target instead: "what was done to which key" reads these.
-- Derived data only, like audit_rollup. Kept in step with ../postgres/0011_audit_rollup_shapes.sql.
--
-- New tables and a new state row rather than changes to the old ones: a process of the earlier
-- build (still running during an upgrade, or a replica not upgraded yet) keeps reading
-- audit_rollup and audit_rollup_state, which stay empty and frozen at "nothing folded", so its
-- summaries count the events (still exact), and its folder, retention and rekey are refused
-- with an error naming the cause instead of moving a shared state past events the new tables
-- never received. A later migration drops the two.

CREATE TABLE audit_rollup_wide (
    id            INTEGER PRIMARY KEY,
    span          BIGINT NOT NULL,   -- the bucket's width (micros): an hour or a day
    bucket        BIGINT NOT NULL,   -- its start (micros, UTC)
    actor_kind    TEXT NOT NULL,
    actor_id      TEXT,
    actor_preview TEXT,
    role          TEXT,
    tenants       TEXT NOT NULL,
    action        TEXT NOT NULL,
    status        TEXT NOT NULL,
    source        TEXT NOT NULL,
    client_ip     TEXT,              -- as stored in audit_events (sealed for equality)
    n             BIGINT NOT NULL,
    first_at      BIGINT NOT NULL,
    last_at       BIGINT NOT NULL,
    actor_name    TEXT               -- the greatest of the folded events' names
);
CREATE INDEX audit_rollup_wide_bucket ON audit_rollup_wide(span, bucket);
-- One action, and statuses other than success ("which keys keep getting denied?"), read their
-- rows alone.
CREATE INDEX audit_rollup_wide_action ON audit_rollup_wide(span, action, bucket);
CREATE INDEX audit_rollup_wide_status ON audit_rollup_wide(span, status, bucket) WHERE status <> 'success';

CREATE TABLE audit_rollup_core (
    id         INTEGER PRIMARY KEY,
    span       BIGINT NOT NULL,
    bucket     BIGINT NOT NULL,
    role       TEXT,
    tenants    TEXT NOT NULL,
    action     TEXT NOT NULL,
    status     TEXT NOT NULL,
    source     TEXT NOT NULL,
    n          BIGINT NOT NULL,
    first_at   BIGINT NOT NULL,
    last_at    BIGINT NOT NULL
);
CREATE INDEX audit_rollup_core_bucket ON audit_rollup_core(span, bucket);

CREATE TABLE audit_rollup_target (
    id          INTEGER PRIMARY KEY,
    span        BIGINT NOT NULL,
    bucket      BIGINT NOT NULL,
    target_type TEXT,
    target_id   TEXT,
    role        TEXT,
    tenants     TEXT NOT NULL,
    action      TEXT NOT NULL,
    status      TEXT NOT NULL,
    source      TEXT NOT NULL,
    n           BIGINT NOT NULL,
    first_at    BIGINT NOT NULL,
    last_at     BIGINT NOT NULL,
    target_name TEXT              -- the greatest of the folded events' target names
);
CREATE INDEX audit_rollup_target_bucket ON audit_rollup_target(span, bucket);

-- Where folding stands, for all three tables (the same columns as audit_rollup_state).
CREATE TABLE audit_rollup_progress (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    folded_seq      BIGINT NOT NULL,
    compacted_until BIGINT NOT NULL,
    generation      BIGINT NOT NULL
);
-- The new tables start empty, so the whole trail is folded again (a catch-up of seconds per
-- million events). The old ones are emptied and frozen; a reader of the old state whose plan
-- predates this sees its generation move.
DELETE FROM audit_rollup;
UPDATE audit_rollup_state SET folded_seq = 0, compacted_until = 0, generation = generation + 1;
INSERT INTO audit_rollup_progress (id, folded_seq, compacted_until, generation)
    SELECT 1, 0, 0, generation FROM audit_rollup_state WHERE id = 1;
CREATE TRIGGER audit_rollup_state_frozen BEFORE UPDATE ON audit_rollup_state
BEGIN
    SELECT RAISE(ABORT, 'audit roll-ups are kept by a newer keyward: upgrade this process');
END;
