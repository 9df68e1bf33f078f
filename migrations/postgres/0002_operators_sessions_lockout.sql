-- Operators (people with passwords), server-side sessions, and failed-auth counters per client
-- IP. Kept in step with ../sqlite/0002_operators_sessions_lockout.sql.

CREATE TABLE operators (
    id            TEXT PRIMARY KEY NOT NULL,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,          -- argon2id PHC string
    role_name     TEXT NOT NULL REFERENCES roles(name) ON DELETE RESTRICT,
    tenants       TEXT NOT NULL,          -- display copy of operator_tenants: names or '*'
    created_by    TEXT,
    created_at    BIGINT NOT NULL,
    disabled_at   BIGINT,
    last_login_at BIGINT
);
CREATE INDEX operators_role ON operators(role_name);

CREATE TABLE operator_tenants (
    operator_id TEXT NOT NULL REFERENCES operators(id) ON DELETE CASCADE,
    tenant      TEXT NOT NULL,
    PRIMARY KEY (operator_id, tenant)
);

-- Sessions are looked up by the SHA-256 digest of the cookie value; the value itself is never
-- stored. A key session holds the digest of the key that signed in, so rotating or revoking
-- that key ends the session too.
CREATE TABLE sessions (
    digest       TEXT PRIMARY KEY NOT NULL,
    subject_kind TEXT NOT NULL,           -- 'operator' or 'key'
    subject_id   TEXT NOT NULL,           -- operator id, or key digest
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);
CREATE INDEX sessions_subject ON sessions(subject_id);

-- Failed authentications per client IP in the current window, and the lock they caused.
-- Shared by every replica on the same database.
CREATE TABLE auth_failures (
    client_ip    TEXT PRIMARY KEY NOT NULL,
    window_start BIGINT NOT NULL,
    failures     BIGINT NOT NULL,
    locked_until BIGINT
);
