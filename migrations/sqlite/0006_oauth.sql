-- The built-in OAuth 2.1 authorization server. Kept in step with ../postgres/0006_oauth.sql.
-- Every secret (client secret, code, access and refresh token, the browser's binding to a
-- pending request, its CSRF token) is stored only as a SHA-256 digest.

-- Clients registered through dynamic client registration (RFC 7591). Clients identified by a
-- metadata document URL (CIMD) have no row: their document is fetched and cached in memory.
CREATE TABLE oauth_clients (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT,                 -- self-asserted
    redirect_uris TEXT NOT NULL,        -- JSON array
    grant_types   TEXT NOT NULL,        -- space-separated
    auth_method   TEXT NOT NULL,        -- none | client_secret_post | client_secret_basic
    secret_digest TEXT,
    -- A public client's normalised metadata, hashed: an identical registration returns this row.
    fingerprint   TEXT,
    metadata      TEXT NOT NULL,        -- the registration response's other fields, JSON
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT
);
CREATE INDEX oauth_clients_fingerprint ON oauth_clients(fingerprint);
CREATE INDEX oauth_clients_idle ON oauth_clients(last_used_at, created_at);

-- An authorization request waiting for a person in a browser (sign-in, then consent).
CREATE TABLE oauth_requests (
    id             TEXT PRIMARY KEY NOT NULL,
    client_id      TEXT NOT NULL,
    client_name    TEXT,
    redirect_uri   TEXT NOT NULL,
    state          TEXT,
    code_challenge TEXT NOT NULL,
    resource       TEXT NOT NULL,
    scopes         TEXT NOT NULL,       -- the known permissions requested, space-separated
    browser_digest TEXT NOT NULL,       -- the request cookie, binding it to one browser
    csrf_digest    TEXT NOT NULL,
    signer_kind    TEXT,                -- set by sign-in: key | operator
    signer_id      TEXT,
    signer_digest  TEXT,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL
);
CREATE INDEX oauth_requests_expiry ON oauth_requests(expires_at);

-- One consent: a client acting for a signer within a ceiling (a snapshot: later role changes
-- never widen it). Every token belongs to exactly one grant.
CREATE TABLE oauth_grants (
    id           TEXT PRIMARY KEY NOT NULL,
    client_id    TEXT NOT NULL,
    client_name  TEXT,
    signer_kind  TEXT NOT NULL,         -- key | operator
    signer_id    TEXT NOT NULL,         -- key id or operator id
    -- A key signer: the digest of the secret pasted, so the grant ends with that secret.
    signer_digest TEXT,
    role_name    TEXT NOT NULL,         -- the role picked as ceiling, for display
    permissions  TEXT NOT NULL,
    tenants      TEXT NOT NULL,         -- '*' or names, space-separated
    resource     TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,       -- absolute cap, never past the signer key's expiry
    last_used_at BIGINT,
    revoked_at   BIGINT,
    revoked_why  TEXT
);
CREATE INDEX oauth_grants_signer ON oauth_grants(signer_id, client_id);

-- Authorization codes: single use, short-lived, bound to everything the request carried.
CREATE TABLE oauth_codes (
    digest         TEXT PRIMARY KEY NOT NULL,
    grant_id       TEXT NOT NULL REFERENCES oauth_grants(id) ON DELETE CASCADE,
    client_id      TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    expires_at     BIGINT NOT NULL,
    used_at        BIGINT
);
CREATE INDEX oauth_codes_grant ON oauth_codes(grant_id);

CREATE TABLE oauth_access_tokens (
    digest     TEXT PRIMARY KEY NOT NULL,
    grant_id   TEXT NOT NULL REFERENCES oauth_grants(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX oauth_access_tokens_grant ON oauth_access_tokens(grant_id);

-- One refresh chain per grant. A rotated token keeps its successor pair sealed under a key
-- derived from its own plaintext until the grace window ends, so racing refreshes converge.
CREATE TABLE oauth_refresh_tokens (
    digest           TEXT PRIMARY KEY NOT NULL,
    grant_id         TEXT NOT NULL REFERENCES oauth_grants(id) ON DELETE CASCADE,
    generation       BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    rotated_at       BIGINT,
    successor_sealed TEXT
);
CREATE INDEX oauth_refresh_tokens_grant ON oauth_refresh_tokens(grant_id);

-- The OAuth channel a tool call came through: 'grant <id> client <client_id>'.
ALTER TABLE audit_events ADD COLUMN channel TEXT;
