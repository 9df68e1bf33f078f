-- keyward schema, SQLite flavour. Kept in step with ../postgres/0001_init.sql: same tables,
-- columns and indexes. Times are microseconds since the Unix epoch (UTC) in BIGINT on both
-- backends, so ordering and arithmetic behave identically.

CREATE TABLE roles (
    name        TEXT PRIMARY KEY NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    permissions TEXT NOT NULL,            -- space-separated entity:action values
    builtin     BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    -- Deleted roles stay as rows so revoked keys keep a valid reference; they grant nothing.
    deleted_at  BIGINT
);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY NOT NULL,
    name         TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    role_name    TEXT NOT NULL REFERENCES roles(name) ON DELETE RESTRICT,
    tenants      TEXT NOT NULL,           -- display copy of key_tenants: names or '*'
    preview      TEXT NOT NULL,           -- preview of the current secret
    created_by   TEXT,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    disabled_at  BIGINT,
    revoked_at   BIGINT,
    rotated_at   BIGINT,
    last_used_at BIGINT
);
CREATE INDEX api_keys_role ON api_keys(role_name);

-- Tenant scope of each key, one row per tenant ('*' = all), for visibility checks in SQL.
CREATE TABLE key_tenants (
    key_id TEXT NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,
    tenant TEXT NOT NULL,
    PRIMARY KEY (key_id, tenant)
);

-- A key's secrets, by SHA-256 digest. Rotation adds one and gives the old one a grace end.
CREATE TABLE key_secrets (
    digest      TEXT PRIMARY KEY NOT NULL,
    key_id      TEXT NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,
    preview     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    valid_until BIGINT
);
CREATE INDEX key_secrets_key ON key_secrets(key_id);

CREATE TABLE audit_events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    at             BIGINT NOT NULL,
    actor_kind     TEXT NOT NULL,
    actor_id       TEXT,
    actor_preview  TEXT,
    role           TEXT,
    tenants        TEXT NOT NULL,         -- display copy of audit_tenants
    action         TEXT NOT NULL,
    target_type    TEXT,
    target_id      TEXT,
    status         TEXT NOT NULL,
    reason         TEXT,
    source         TEXT NOT NULL,
    request_source TEXT,
    client_name    TEXT,
    client_version TEXT,
    request_id     TEXT,
    client_ip      TEXT,
    user_agent     TEXT,
    args           TEXT,
    before_state   TEXT,
    after_state    TEXT
);
CREATE INDEX audit_events_at ON audit_events(at);
CREATE INDEX audit_events_actor ON audit_events(actor_id, at);
CREATE INDEX audit_events_preview ON audit_events(actor_preview, at);
CREATE INDEX audit_events_target ON audit_events(target_id, at);

CREATE TABLE audit_tenants (
    event_id BIGINT NOT NULL REFERENCES audit_events(id) ON DELETE CASCADE,
    tenant   TEXT NOT NULL,
    PRIMARY KEY (event_id, tenant)
);
CREATE INDEX audit_tenants_tenant ON audit_tenants(tenant, event_id);
