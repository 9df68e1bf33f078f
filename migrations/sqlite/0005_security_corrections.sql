-- Facts and secrets every process on this database shares, and the per-username sign-in
-- throttle. Kept in step with ../postgres/0005_security_corrections.sql.

-- name → value: 'bootstrap_closed_at' (µs; once set, bootstrap never reopens),
-- 'development_database' (a throwaway database made by --auth-mode disabled: never served
-- in any other mode), 'name_hash_key' (HMAC key for typed usernames, created on first open),
-- 'legacy_role:<role>' (a role a legacy shared key holds, over all tenants).
CREATE TABLE settings (
    name  TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
-- A database that already holds a key or an operator was bootstrapped before this flag existed.
INSERT INTO settings (name, value)
    SELECT 'bootstrap_closed_at', '0'
    WHERE EXISTS (SELECT 1 FROM api_keys) OR EXISTS (SELECT 1 FROM operators);

-- Failed sign-ins per typed username (a keyed hash of it, whether or not such an operator
-- exists): the next attempt for that name is not evaluated before next_allowed.
CREATE TABLE signin_throttle (
    name_hash    TEXT PRIMARY KEY NOT NULL,
    failures     BIGINT NOT NULL,
    last_failure BIGINT NOT NULL,
    next_allowed BIGINT NOT NULL
);
-- Where each username last signed in successfully: the per-username delay does not apply
-- from those addresses (so nobody can lock a person out of the places they work from).
CREATE TABLE signin_known (
    name_hash    TEXT NOT NULL,
    client_ip    TEXT NOT NULL,
    last_success BIGINT NOT NULL,
    PRIMARY KEY (name_hash, client_ip)
);
CREATE INDEX signin_known_age ON signin_known(last_success);
CREATE INDEX auth_failures_age ON auth_failures(window_start);

-- Key names are unique among live keys, ignoring case: of duplicates the oldest keeps its name
-- and each later one gets its id appended.
UPDATE api_keys SET name = name || '-' || id
    WHERE revoked_at IS NULL AND EXISTS (
        SELECT 1 FROM api_keys o
        WHERE o.revoked_at IS NULL AND lower(o.name) = lower(api_keys.name)
          AND (o.created_at < api_keys.created_at
               OR (o.created_at = api_keys.created_at AND o.id < api_keys.id)));
CREATE UNIQUE INDEX api_keys_live_name ON api_keys(lower(name)) WHERE revoked_at IS NULL;
