-- Two narrower roll-ups beside audit_rollup (src/store/audit/rollup.rs, `Shape`), folded and
-- compacted with it in the same transactions, so all three always cover the same events:
-- - audit_rollup_core drops the actor and the client address: time, action, status, source and
--   role questions (under a tenant filter too) read a few rows per hour instead of one per
--   actor and address;
-- - audit_rollup_target keeps the target instead: "what was done to which key" reads these.
-- Derived data only, like audit_rollup. Kept in step with ../postgres/0011_audit_rollup_shapes.sql.

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

-- The new tables start empty, so every roll-up is folded again from the events (a catch-up of
-- seconds per million events); a reader whose plan predates this sees the generation move.
DELETE FROM audit_rollup;
UPDATE audit_rollup_state SET folded_seq = 0, compacted_until = 0, generation = generation + 1;
