//! Command-line interface: flags, each with an environment fallback (flags win over the
//! environment, which wins over defaults).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "keyward",
    version,
    about = "MCP server for administering API keys, roles and the audit log, with least privilege on every call"
)]
pub struct Cli {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub audit_log: AuditLogArgs,
    #[command(flatten)]
    pub encryption: EncryptionArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Encryption at rest. The key itself may also come from `KEYWARD_ENCRYPTION_KEY` (never a
/// flag: a command line is visible to other local users).
#[derive(Debug, Args, Clone)]
pub struct EncryptionArgs {
    /// A file holding the 32-byte encryption key (64 hex digits or base64), readable by its
    /// owner only. With a key, arguments, states, descriptions, client IPs and user agents are
    /// stored sealed (AES-256-GCM). Without one, a database that was encrypted is refused.
    #[arg(long, env = "KEYWARD_ENCRYPTION_KEY_FILE", global = true)]
    pub encryption_key_file: Option<PathBuf>,
}

/// Its `Debug` shows the URL without its password.
#[derive(Args, Clone)]
pub struct DbArgs {
    /// Database URL: sqlite:<path> (embedded, the default) or postgres://user@host/db.
    /// Default: keyward.db in the user's data directory (e.g. ~/.local/share/keyward/).
    #[arg(
        long,
        env = "KEYWARD_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    pub database_url: Option<String>,
}

impl std::fmt::Debug for DbArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbArgs")
            .field(
                "database_url",
                &self.database_url.as_deref().map(crate::config::redact_url),
            )
            .finish()
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the MCP server.
    Serve(Box<ServeArgs>),
    /// Create the first admin key and print it once. Works once per database, ever.
    Bootstrap(BootstrapArgs),
    /// Break-glass: print a new admin key when every admin is lost. Offline (it needs the
    /// database and this machine); audited.
    Recover(RecoverArgs),
    /// Write the JSON Schema of every tool's input and output.
    Schemas(SchemasArgs),
    /// Create or upgrade the database schema, then exit (serve does this too).
    Migrate,
    /// The provable audit log: verify it, print its public key, rotate the signing key,
    /// re-anchor after a restore.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Encrypt an unencrypted database (--encrypt), rotate its encryption key (--new-key-file),
    /// or decrypt it (--decrypt), in one transaction. Stop every keyward process on the
    /// database first.
    Rekey(RekeyArgs),
}

#[derive(Debug, Args)]
pub struct RekeyArgs {
    /// Seal an unencrypted database with the configured key (KEYWARD_ENCRYPTION_KEY or
    /// --encryption-key-file).
    #[arg(long, conflicts_with_all = ["decrypt", "new_key_file"])]
    pub encrypt: bool,
    /// Rotate: re-seal everything from the configured key to the key in this file.
    #[arg(long, conflicts_with = "decrypt")]
    pub new_key_file: Option<PathBuf>,
    /// Store everything in plaintext again (the configured key opens it).
    #[arg(long)]
    pub decrypt: bool,
}

/// The provable audit log's settings (every command reads them: `audit verify` needs the key).
#[derive(Debug, Args, Clone)]
pub struct AuditLogArgs {
    /// The checkpoint signing key: a file (created 0600 with a fresh key when missing) or the
    /// key text itself. Default on SQLite: `<database file>.audit-key` beside the database.
    /// Required on PostgreSQL (give every replica the same file; only one signs at a time).
    #[arg(
        long,
        env = "KEYWARD_AUDIT_SIGNING_KEY",
        global = true,
        hide_env_values = true
    )]
    pub audit_signing_key: Option<SecretArg>,
    /// File every checkpoint is appended to besides the database. Default: beside the SQLite
    /// database (`<database file>.checkpoints.log`) or beside the key file.
    #[arg(long, env = "KEYWARD_AUDIT_CHECKPOINT_LOG", global = true)]
    pub audit_checkpoint_log: Option<PathBuf>,
    /// Also send each checkpoint here, somewhere whoever holds the database cannot rewrite:
    /// file:PATH (e.g. owned by another OS user, append-only), syslog, or webhook:http://….
    /// Repeatable.
    #[arg(
        long = "audit-anchor",
        env = "KEYWARD_AUDIT_ANCHORS",
        value_delimiter = ',',
        global = true
    )]
    pub audit_anchors: Vec<String>,
    /// At most one checkpoint per this much time while events arrive.
    #[arg(long, env = "KEYWARD_AUDIT_CHECKPOINT_EVERY", default_value = "10s", value_parser = humantime::parse_duration, global = true)]
    pub audit_checkpoint_every: std::time::Duration,
    /// At least one checkpoint per this much time, even when idle (older reads as stale).
    #[arg(long, env = "KEYWARD_AUDIT_HEARTBEAT", default_value = "15m", value_parser = humantime::parse_duration, global = true)]
    pub audit_heartbeat: std::time::Duration,
    /// What a failed integrity check at start does: warn (log it, audit it, show it on
    /// readiness detail and metrics, keep serving) or refuse (also not ready, every call refused).
    #[arg(long, env = "KEYWARD_AUDIT_ON_VIOLATION", value_enum, default_value_t = OnViolation::Warn, global = true)]
    pub audit_on_violation: OnViolation,
    /// Remove event bodies older than this (e.g. 365d), in small batches, keeping their hashes
    /// so every proof still verifies; each removal is an audited `audit_prune` event. Off by
    /// default: nothing is ever removed.
    #[arg(long, env = "KEYWARD_AUDIT_RETENTION", value_parser = humantime::parse_duration, global = true)]
    pub audit_retention: Option<std::time::Duration>,
    /// Where `audit_export` writes bundles (created 0700; files 0600, named by the server).
    /// Default on SQLite: `<database file>.exports/` beside the database. On PostgreSQL the
    /// tool is refused without it.
    #[arg(long, env = "KEYWARD_AUDIT_EXPORT_DIR", global = true)]
    pub audit_export_dir: Option<PathBuf>,
    /// The largest bundle `audit_export` writes; a larger export stops early, marked truncated.
    #[arg(long, env = "KEYWARD_AUDIT_EXPORT_MAX_BYTES", default_value_t = 64 << 20, global = true)]
    pub audit_export_max_bytes: u64,
    /// How many bundles the export directory keeps (the oldest go first; none stays past 7 days).
    #[arg(
        long,
        env = "KEYWARD_AUDIT_EXPORT_KEEP",
        default_value_t = 20,
        global = true
    )]
    pub audit_export_keep: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnViolation {
    Warn,
    Refuse,
}

impl AuditLogArgs {
    pub fn settings(&self) -> anyhow::Result<crate::ops::audit_log::LogSettings> {
        let d = |v: std::time::Duration, name: &str| {
            chrono::Duration::from_std(v).map_err(|e| anyhow::anyhow!("--{name}: {e}"))
        };
        let heartbeat = d(self.audit_heartbeat, "audit-heartbeat")?;
        anyhow::ensure!(
            heartbeat > chrono::Duration::zero(),
            "--audit-heartbeat must be more than zero"
        );
        let anchors = self
            .audit_anchors
            .iter()
            .filter(|a| !a.trim().is_empty())
            .map(|a| {
                a.trim()
                    .parse()
                    .map_err(|e| anyhow::anyhow!("--audit-anchor {a}: {e}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(crate::ops::audit_log::LogSettings {
            signing_key: self
                .audit_signing_key
                .as_ref()
                .map(|k| crate::ops::audit_log::KeySource::from_setting(k.expose())),
            checkpoint_log: self.audit_checkpoint_log.clone(),
            anchors,
            every: d(self.audit_checkpoint_every, "audit-checkpoint-every")?,
            heartbeat,
            refuse_on_violation: self.audit_on_violation == OnViolation::Refuse,
            create_key: true,
            retention: match self.audit_retention {
                None => None,
                Some(r) => {
                    let r = d(r, "audit-retention")?;
                    anyhow::ensure!(
                        r >= chrono::Duration::days(1),
                        "--audit-retention must be at least a day"
                    );
                    Some(r)
                }
            },
        })
    }
}

impl AuditLogArgs {
    pub fn export_settings(&self) -> anyhow::Result<crate::ops::audit_export::ExportSettings> {
        anyhow::ensure!(
            self.audit_export_keep >= 1 && self.audit_export_max_bytes >= 16384,
            "--audit-export-keep must be at least 1 and --audit-export-max-bytes at least 16384"
        );
        Ok(crate::ops::audit_export::ExportSettings {
            dir: self.audit_export_dir.clone(),
            max_bytes: self.audit_export_max_bytes,
            keep: self.audit_export_keep,
            ..Default::default()
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the trail against its signed checkpoints and anchors. Exits 0 only on `ok`.
    Verify(VerifyArgs),
    /// Print the public key (vkey) that verifies this log's checkpoints.
    PublicKey,
    /// Make a new signing key current (file keys only); the old one co-signs the next
    /// checkpoint and keeps verifying older ones.
    RotateKey,
    /// After restoring a backup on purpose: sign a "restored at seq N" checkpoint so the log
    /// verifies again instead of reading as truncated. Audited.
    Restored(RestoredArgs),
    /// Write a bundle of the trail (all tenants; the filters of audit_query as flags) to --out:
    /// events, inclusion proofs, the signed checkpoint and a signed manifest. Audited.
    Export(Box<ExportArgs>),
    /// Check a bundle offline (no database, no network). Exits 0 only when it verifies.
    VerifyBundle(VerifyBundleArgs),
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Where to write the .tar.gz (created 0600; an existing file is replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// Seal the file with the database's encryption key (AES-256-GCM), so a copy of it reveals
    /// nothing; `audit verify-bundle` then needs the key too. Only on an encrypted database.
    #[arg(long)]
    pub private: bool,
    /// Only events by these actors (key ids or previews). Repeatable.
    #[arg(long)]
    pub actor: Vec<String>,
    /// Only events by callers holding these roles.
    #[arg(long)]
    pub role: Vec<String>,
    /// Only events concerning these tenants (all-tenant events match too).
    #[arg(long)]
    pub tenant: Vec<String>,
    /// Only these actions (tool names, auth_failed, bootstrap…).
    #[arg(long)]
    pub action: Vec<String>,
    /// Only events acting on these targets.
    #[arg(long)]
    pub target: Vec<String>,
    /// Only these outcomes: success, denied, failed, error.
    #[arg(long)]
    pub status: Vec<String>,
    /// Only calls that came in this way: stdio, http, cli.
    #[arg(long)]
    pub source: Vec<String>,
    /// Only requests from these client IPs.
    #[arg(long)]
    pub client_ip: Vec<String>,
    /// Start of the window (RFC 3339, a date, "24h", "7d", "today"…).
    #[arg(long)]
    pub since: Option<String>,
    /// End of the window (exclusive), same forms.
    #[arg(long)]
    pub until: Option<String>,
    /// IANA time zone for since/until (default UTC).
    #[arg(long)]
    pub time_zone: Option<String>,
}

#[derive(Debug, Args)]
pub struct VerifyBundleArgs {
    /// The bundle (.tar.gz).
    pub file: PathBuf,
    /// The log's public key (vkey, from `keyward audit public-key`), or a file holding it.
    /// Repeatable (a rotated key and its predecessor).
    #[arg(long = "public-key", required = true)]
    pub public_key: Vec<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Re-hash every event (default: the newest 1000, plus every root and signature).
    #[arg(long)]
    pub full: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Check signatures with this public key (vkey, from `keyward audit public-key`) instead
    /// of the signing key file: verification needs no secret.
    #[arg(long)]
    pub public_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct RestoredArgs {
    /// Confirms the database was restored on purpose (events after the backup are gone).
    #[arg(long)]
    pub confirm: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// Keys, operators and roles in the database (default).
    Managed,
    /// One shared key (KEYWARD_LEGACY_API_KEY) with one role; no per-caller identity.
    Legacy,
    /// No authentication: every caller is an all-powerful development principal. Local
    /// development only: runs on a throwaway database of its own (deleted at exit) and refuses
    /// a non-loopback address.
    Disabled,
}

/// A secret given as a flag or in the environment (an API key). Its `Debug` prints nothing, so
/// neither the parsed command line nor an error can show it.
#[derive(Clone)]
pub struct SecretArg(secrecy::SecretString);

impl SecretArg {
    pub fn expose(&self) -> &str {
        secrecy::ExposeSecret::expose_secret(&self.0)
    }
}

impl std::str::FromStr for SecretArg {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(SecretArg(secrecy::SecretString::from(s.to_owned())))
    }
}

impl std::fmt::Debug for SecretArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretArg(..)")
    }
}

/// The default port: "kw" in hex (0x4b57), clear of common services.
pub const DEFAULT_PORT: u16 = 19287;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Speak MCP over stdin/stdout (for clients that spawn the server: Claude Desktop, Claude
    /// Code, Cursor, VS Code) instead of HTTP. The caller is the key in KEYWARD_API_KEY.
    #[arg(long)]
    pub stdio: bool,
    /// Address to listen on (HTTP).
    #[arg(long, env = "KEYWARD_LISTEN", default_value_t = std::net::SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)))]
    pub listen: std::net::SocketAddr,
    /// Serve without server-side MCP sessions, so replicas behind a load balancer can each
    /// answer any request (JSON responses).
    #[arg(long, env = "KEYWARD_STATELESS")]
    pub stateless: bool,
    /// The public URL clients use (scheme://host[:port]); overrides forwarded headers when
    /// advertising URLs, and is an allowed Host.
    #[arg(long, env = "KEYWARD_PUBLIC_URL")]
    pub public_url: Option<url::Url>,
    /// Proxies whose X-Forwarded-For/-Proto/-Host are believed (CIDR list). Default: loopback
    /// only; name your proxy's address (a whole private range would let any host in it choose
    /// the client IP that lockout and the audit trail see).
    #[arg(
        long,
        env = "KEYWARD_TRUSTED_PROXIES",
        value_delimiter = ',',
        default_value = "127.0.0.0/8,::1/128"
    )]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Browser origins allowed to call the server with credentials (scheme://host[:port], :* for
    /// any port). Empty: same-origin only, no CORS headers.
    #[arg(long, env = "KEYWARD_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// Extra Host header values to accept (host or host:port); loopback names and the public
    /// URL's host are always accepted.
    #[arg(long, env = "KEYWARD_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
    /// PEM certificate chain: serve HTTPS.
    #[arg(long, env = "KEYWARD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "KEYWARD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// TLS ends at a trusted proxy in front of keyward: allows a non-loopback address without
    /// --tls-cert.
    #[arg(long, env = "KEYWARD_BEHIND_TLS_PROXY")]
    pub behind_tls_proxy: bool,
    /// The shared key for --auth-mode legacy (at least 8 characters; under 32 it is treated
    /// as guessable).
    #[arg(long, env = "KEYWARD_LEGACY_API_KEY", hide_env_values = true)]
    pub legacy_api_key: Option<SecretArg>,
    /// Role of the legacy shared key.
    #[arg(long, env = "KEYWARD_LEGACY_ROLE", default_value = "reader")]
    pub legacy_role: String,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "KEYWARD_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Longest time to answer a request.
    #[arg(long, env = "KEYWARD_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub request_timeout: std::time::Duration,
    /// Lifetime of a sign-in session cookie.
    #[arg(long, env = "KEYWARD_SESSION_MAX_AGE", default_value = "7d", value_parser = humantime::parse_duration)]
    pub session_max_age: std::time::Duration,
    /// Failed authentications from one client IP, within --lockout-window, that lock it out.
    #[arg(long, env = "KEYWARD_LOCKOUT_THRESHOLD", default_value_t = 20)]
    pub lockout_threshold: i64,
    #[arg(long, env = "KEYWARD_LOCKOUT_WINDOW", default_value = "60s", value_parser = humantime::parse_duration)]
    pub lockout_window: std::time::Duration,
    /// How long a locked-out client IP is refused (429 with Retry-After).
    #[arg(long, env = "KEYWARD_LOCKOUT_DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub lockout_duration: std::time::Duration,
    /// How long a verified key or a client IP's lock state may be reused before it is read
    /// from the database again (HTTP only; at most 1 s; 0 disables). Changes made through this
    /// server apply at once; this bounds how long another replica's change can go unseen.
    #[arg(long, env = "KEYWARD_AUTH_CACHE_TTL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub auth_cache_ttl: std::time::Duration,
    /// OAuth authorization servers to advertise in the protected-resource metadata.
    #[arg(long, env = "KEYWARD_AUTHORIZATION_SERVERS", value_delimiter = ',')]
    pub authorization_servers: Vec<url::Url>,
    /// The built-in OAuth 2.1 authorization server (managed mode only). `off`: no OAuth
    /// endpoints, and no OAuth token is accepted.
    #[arg(long, env = "KEYWARD_OAUTH", value_enum, default_value_t = OnOff::On)]
    pub oauth: OnOff,
    /// Lifetime of an OAuth access token.
    #[arg(long, env = "KEYWARD_OAUTH_ACCESS_TTL", default_value = "10m", value_parser = humantime::parse_duration)]
    pub oauth_access_ttl: std::time::Duration,
    /// Lifetime of an OAuth refresh token (each refresh issues a new one).
    #[arg(long, env = "KEYWARD_OAUTH_REFRESH_TTL", default_value = "30d", value_parser = humantime::parse_duration)]
    pub oauth_refresh_ttl: std::time::Duration,
    /// The longest an OAuth grant lives, however often it is refreshed (never past the
    /// signing key's own expiry).
    #[arg(long, env = "KEYWARD_OAUTH_GRANT_MAX", default_value = "90d", value_parser = humantime::parse_duration)]
    pub oauth_grant_max: std::time::Duration,
    /// How long concurrent refreshes of one refresh token converge on the same new pair; a
    /// reuse after it revokes the grant.
    #[arg(long, env = "KEYWARD_OAUTH_REFRESH_GRACE", default_value = "2m", value_parser = humantime::parse_duration)]
    pub oauth_refresh_grace: std::time::Duration,
    /// Whether a person may sign in to authorize a client by pasting an API key they hold.
    #[arg(long, env = "KEYWARD_OAUTH_KEY_SIGN_IN", default_value_t = true, action = clap::ArgAction::Set)]
    pub oauth_key_sign_in: bool,
    /// Exact private-use redirect URIs clients may register (besides https and loopback).
    #[arg(
        long,
        env = "KEYWARD_OAUTH_PRIVATE_REDIRECTS",
        value_delimiter = ',',
        default_value = "cursor://anysphere.cursor-mcp/oauth/callback"
    )]
    pub oauth_private_redirects: Vec<String>,
    /// TESTS ONLY: trust this PEM CA for client metadata documents and let them be fetched
    /// from loopback addresses.
    #[arg(long, env = "KEYWARD_OAUTH_TEST_CIMD_CA", hide = true)]
    pub oauth_test_cimd_ca: Option<PathBuf>,
    /// Documentation URL to advertise in the protected-resource metadata.
    #[arg(long, env = "KEYWARD_RESOURCE_DOCUMENTATION")]
    pub resource_documentation: Option<url::Url>,
    /// API key of the stdio caller. Prefer the environment variable: command lines are visible
    /// to other local users.
    #[arg(long, env = "KEYWARD_API_KEY", hide_env_values = true)]
    pub api_key: Option<SecretArg>,
    /// How callers are authenticated.
    #[arg(long, env = "KEYWARD_AUTH_MODE", value_enum, default_value_t = AuthMode::Managed)]
    pub auth_mode: AuthMode,
    /// Addresses that may read /metrics and the readiness detail (CIDR list). Requests that
    /// came through a proxy (any X-Forwarded-* or Forwarded header) never may.
    #[arg(
        long,
        env = "KEYWARD_METRICS_ALLOW",
        value_delimiter = ',',
        default_value = "127.0.0.0/8,::1/128"
    )]
    pub metrics_allow: Vec<ipnet::IpNet>,
    /// Connections open at once, in all; one over it is closed as soon as it is accepted.
    #[arg(long, env = "KEYWARD_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Connections open at once from one client address (an IPv6 /64 counts as one; trusted
    /// proxies are exempt).
    #[arg(long, env = "KEYWARD_MAX_CONNECTIONS_PER_IP", default_value_t = 64)]
    pub max_connections_per_ip: usize,
    /// Time a connection has to send a request's headers; a keep-alive connection waiting for
    /// its next request is closed after the same time.
    #[arg(long, env = "KEYWARD_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: std::time::Duration,
    /// Live MCP sessions (streamable HTTP, stateful mode) the server holds at most; past it,
    /// new sessions are refused with 503 and Retry-After.
    #[arg(long, env = "KEYWARD_MAX_SESSIONS", default_value_t = 1000)]
    pub max_sessions: usize,
    /// Live MCP sessions one principal (key, operator, the legacy key) holds at most; a new one
    /// past it replaces that principal's least recently used idle session.
    #[arg(long, env = "KEYWARD_MAX_SESSIONS_PER_PRINCIPAL", default_value_t = 32)]
    pub max_sessions_per_principal: usize,
    /// An MCP session unused this long is closed.
    #[arg(long, env = "KEYWARD_SESSION_IDLE_TIMEOUT", default_value = "300s", value_parser = humantime::parse_duration)]
    pub session_idle_timeout: std::time::Duration,
    /// Time to answer a call to a long-running tool (in place of --request-timeout).
    #[arg(long, env = "KEYWARD_LONG_REQUEST_TIMEOUT", default_value = "10m", value_parser = humantime::parse_duration)]
    pub long_request_timeout: std::time::Duration,
    /// How long the setup token printed at start stays valid (it also dies as soon as
    /// bootstrap happens anywhere).
    #[arg(long, env = "KEYWARD_SETUP_TOKEN_LIFETIME", default_value = "15m", value_parser = humantime::parse_duration)]
    pub setup_token_lifetime: std::time::Duration,
    /// Required to combine --stdio with --auth-mode disabled: confirms that every stdio call
    /// runs as an all-powerful development principal (on a throwaway database).
    #[arg(long, env = "KEYWARD_CONFIRM_DISABLED_STDIO")]
    pub confirm_disabled_stdio: bool,
}

#[derive(Debug, Args)]
pub struct BootstrapArgs {
    /// Print a JSON object (api_key, id, role, tenants, preview, expires_at) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Name of the admin key.
    #[arg(long, default_value = "bootstrap-admin")]
    pub name: String,
    /// Expiry of the admin key: a duration ("365d") or an RFC 3339 time. Default: never, so
    /// the keys it creates are not capped; rotate it regularly.
    #[arg(long)]
    pub expires: Option<String>,
}

#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// Create a new admin key (all tenants); the only recovery there is.
    #[arg(long, required = true)]
    pub admin: bool,
    /// Print a JSON object (api_key, id, role, tenants, preview, expires_at) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Name of the key. Default: recovery-admin-<date>-<time>.
    #[arg(long)]
    pub name: Option<String>,
    /// Expiry of the key: a duration ("1d") or an RFC 3339 time. Default: never.
    #[arg(long)]
    pub expires: Option<String>,
}

#[derive(Debug, Args)]
pub struct SchemasArgs {
    /// Directory to write into.
    #[arg(long, default_value = "schemas")]
    pub dir: PathBuf,
    /// Compare instead of writing; exit non-zero if any file is missing or stale.
    #[arg(long)]
    pub check: bool,
}

/// A switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

impl ServeArgs {
    /// The authorization server's settings, or `None` when it is off (`--oauth off`, or an
    /// auth mode other than managed).
    pub fn oauth_settings(&self) -> anyhow::Result<Option<crate::ops::oauth::OAuthSettings>> {
        if self.oauth == OnOff::Off || self.auth_mode != AuthMode::Managed {
            return Ok(None);
        }
        let d = |v: std::time::Duration, name: &str| {
            anyhow::ensure!(!v.is_zero(), "--{name} must be more than zero");
            chrono::Duration::from_std(v).map_err(|e| anyhow::anyhow!("--{name}: {e}"))
        };
        let mut s = crate::ops::oauth::OAuthSettings {
            access_ttl: d(self.oauth_access_ttl, "oauth-access-ttl")?,
            refresh_ttl: d(self.oauth_refresh_ttl, "oauth-refresh-ttl")?,
            grant_max: d(self.oauth_grant_max, "oauth-grant-max")?,
            refresh_grace: chrono::Duration::from_std(self.oauth_refresh_grace)?,
            key_sign_in: self.oauth_key_sign_in,
            private_redirects: self.oauth_private_redirects.clone(),
            ..Default::default()
        };
        for uri in &s.private_redirects {
            let scheme = uri
                .split(':')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            anyhow::ensure!(
                !matches!(
                    scheme.as_str(),
                    "http" | "https" | "javascript" | "data" | "file"
                ) && uri.contains("://"),
                "--oauth-private-redirects takes exact private-use URIs like cursor://host/path, not '{uri}'"
            );
        }
        if let Some(ca) = &self.oauth_test_cimd_ca {
            use rustls_pki_types::pem::PemObject;
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(ca)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", ca.display()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", ca.display()))?;
            tracing::warn!(
                "--oauth-test-cimd-ca is set: client metadata documents may come from loopback (tests only)"
            );
            s.cimd.allow_loopback = true;
            s.cimd.extra_roots = certs;
        }
        Ok(Some(s))
    }

    /// The lockout rule from the command line.
    pub fn lockout_policy(&self) -> anyhow::Result<crate::domain::lockout::LockoutPolicy> {
        anyhow::ensure!(
            self.lockout_threshold >= 1,
            "--lockout-threshold must be at least 1"
        );
        let d = |v: std::time::Duration| {
            chrono::Duration::from_std(v).map_err(|e| anyhow::anyhow!("{e}"))
        };
        Ok(crate::domain::lockout::LockoutPolicy {
            threshold: self.lockout_threshold,
            window: d(self.lockout_window)?,
            duration: d(self.lockout_duration)?,
            names: crate::domain::lockout::NameThrottle::default(),
        })
    }

    /// The app's behaviour from the command line: lockout rule and cache bound (at most 1 s). A
    /// stdio server serves one local caller: no verification cache, so a key revoked anywhere stops
    /// working on its very next call.
    pub fn app_options(&self) -> anyhow::Result<crate::ops::app::AppOptions> {
        let ttl = chrono::Duration::from_std(if self.stdio {
            std::time::Duration::ZERO
        } else {
            self.auth_cache_ttl
        })?;
        anyhow::ensure!(
            ttl <= crate::CACHE_TTL,
            "--auth-cache-ttl may be at most 1s"
        );
        Ok(crate::ops::app::AppOptions {
            lockout: self.lockout_policy()?,
            cache_ttl: ttl,
            development: false,
            audit_log: Default::default(),
            exports: Default::default(),
            encryption: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_on_the_command_line_never_print() {
        let cli = Cli::try_parse_from([
            "keyward",
            "serve",
            "--legacy-api-key",
            "legacy-secret-value-123",
            "--api-key",
            "kw_stdio_secret_value",
            "--database-url",
            "postgres://keyward:db-password-1@db/keyward",
        ])
        .unwrap();
        let shown = format!("{cli:?}");
        assert!(!shown.contains("db-password-1"), "{shown}");
        assert!(!shown.contains("legacy-secret-value-123"), "{shown}");
        assert!(!shown.contains("kw_stdio_secret_value"), "{shown}");
        let Command::Serve(args) = cli.command else {
            panic!("serve")
        };
        assert_eq!(
            args.legacy_api_key.as_ref().map(SecretArg::expose),
            Some("legacy-secret-value-123")
        );
    }
}
