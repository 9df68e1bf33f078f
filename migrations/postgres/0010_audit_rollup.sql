-- Roll-ups of the audit trail (src/store/audit/rollup.rs): counts of events per hour and per
-- day (UTC) for each combination of actor, role, tenants, action, status, source and client
-- address, with first and last time and the actor's name. Summaries over long windows read
-- these plus the few events not folded yet, instead of every event in the window.
-- Derived data only: never part of the log's proofs, rebuilt from the events when lost.
-- Kept in step with ../sqlite/0010_audit_rollup.sql.

-- A multiset of partial counts: a bucket may hold several rows for one combination (one per
-- fold, and a late event's own), which readers add up; compaction merges them.
CREATE TABLE audit_rollup (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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
CREATE INDEX audit_rollup_bucket ON audit_rollup(span, bucket);
-- One action, and statuses other than success ("which keys keep getting denied?"), read their
-- rows alone.
CREATE INDEX audit_rollup_action ON audit_rollup(span, action, bucket);
CREATE INDEX audit_rollup_status ON audit_rollup(span, status, bucket) WHERE status <> 'success';

-- folded_seq: every event with seq below it (and a time from 1970 on) is in the hour rows
-- (events from before the log, without seq, never are). compacted_until: hours below it are
-- merged, and every day that ends at or before its day has day rows. generation: how many times
-- the roll-ups were dropped (a rekey), so a reader can tell its plan went stale.
CREATE TABLE audit_rollup_state (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    folded_seq      BIGINT NOT NULL,
    compacted_until BIGINT NOT NULL,
    generation      BIGINT NOT NULL
);
INSERT INTO audit_rollup_state (id, folded_seq, compacted_until, generation) VALUES (1, 0, 0, 0);
