-- With encryption at rest, each event's leaf also covers a random salt, stored sealed, so the
-- leaf hash (kept in the clear for proofs) cannot be used to guess the sealed values of its
-- event (a client IP, a short argument) by hashing candidates. NULL without encryption.
-- Kept in step with the other backend's 0008_audit_salt.sql.
ALTER TABLE audit_events ADD COLUMN salt TEXT;
