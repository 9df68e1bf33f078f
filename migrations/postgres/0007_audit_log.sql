-- The audit trail as an RFC 6962 Merkle log (src/store/audit/log.rs, src/domain/merkle.rs).
-- Kept in step with ../sqlite/0007_audit_log.sql.

-- Each event's gapless place in the log and its leaf hash, over the canonical form of its
-- stored columns (src/domain/audit_leaf.rs). Events written before the log existed have
-- neither: the genesis checkpoint counts them as unproven.
ALTER TABLE audit_events ADD COLUMN seq BIGINT;
ALTER TABLE audit_events ADD COLUMN leaf_hash BYTEA;
-- Names as they were at the time of the event (a key's name, an operator's username).
ALTER TABLE audit_events ADD COLUMN actor_name TEXT;
ALTER TABLE audit_events ADD COLUMN target_name TEXT;
CREATE UNIQUE INDEX audit_events_seq ON audit_events(seq) WHERE seq IS NOT NULL;
-- Verification reads these few rows on every check: events from before the log, and the
-- records of retention's removals.
CREATE INDEX audit_events_unproven ON audit_events(id) WHERE seq IS NULL;
CREATE INDEX audit_events_prunes ON audit_events(seq) WHERE action = 'audit_prune';

-- The tree head: its size and right edge (one hash per set bit of size, largest first),
-- advanced once per written batch under the sequencer lock. pruned_below: events below this
-- seq had their bodies removed by retention (their chunk hashes remain).
CREATE TABLE audit_head (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    size         BIGINT NOT NULL,
    frontier     BYTEA NOT NULL,
    updated_at   BIGINT NOT NULL,
    unproven     BIGINT NOT NULL,
    unproven_ids BIGINT NOT NULL,
    pruned_below BIGINT NOT NULL DEFAULT 0,
    -- The newest event time among the pruned (micros): windows reaching before it are partial.
    pruned_until BIGINT NOT NULL DEFAULT 0
);
INSERT INTO audit_head (id, size, frontier, updated_at, unproven, unproven_ids)
    SELECT 1, 0, ''::bytea, 0, COUNT(*), COALESCE(MAX(id), 0) FROM audit_events;

-- The hash of every completed run of 256 leaves (chunk idx covers seq idx*256 .. idx*256+255):
-- roots and proofs read these instead of every leaf.
CREATE TABLE audit_chunks (
    idx  BIGINT PRIMARY KEY NOT NULL,
    hash BYTEA NOT NULL
);

-- Every signed checkpoint (C2SP signed note), newest last. Also appended to a log file
-- outside the database and to any --audit-anchor.
CREATE TABLE audit_checkpoints (
    id    BIGSERIAL PRIMARY KEY,
    size  BIGINT NOT NULL,
    at    BIGINT NOT NULL,
    kind  TEXT NOT NULL,
    note  TEXT NOT NULL
);
CREATE INDEX audit_checkpoints_size ON audit_checkpoints(size, id);
