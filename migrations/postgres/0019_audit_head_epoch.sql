-- The number of times the database's encryption key changed. A rekey moves it in the
-- transaction that changes the key; a PostgreSQL writer that places a batch after the head it
-- remembers (one round trip, no sequencer lock) writes only where the head's size and epoch
-- are still the ones it remembers, so a batch sealed under a replaced key never lands.
ALTER TABLE audit_head ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;
