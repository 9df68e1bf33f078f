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
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct DbArgs {
    /// Database URL: sqlite:<path> (embedded, the default) or postgres://user@host/db.
    /// Default: keyward.db in the user's data directory (e.g. ~/.local/share/keyward/).
    #[arg(long, env = "KEYWARD_DATABASE_URL", global = true)]
    pub database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the MCP server.
    Serve(ServeArgs),
    /// Create the first admin key and print it once. Refused once an active admin key exists.
    Bootstrap(BootstrapArgs),
    /// Write the JSON Schema of every tool's input and output.
    Schemas(SchemasArgs),
    /// Create or upgrade the database schema, then exit (serve does this too).
    Migrate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// Keys and roles in the database (default).
    Managed,
    /// No authentication: every caller is an all-powerful development principal. Local
    /// development only.
    Disabled,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Speak MCP over stdin/stdout (for clients that spawn the server: Claude Desktop, Claude
    /// Code, Cursor, VS Code). The caller is the key in KEYWARD_API_KEY.
    #[arg(long)]
    pub stdio: bool,
    /// API key of the stdio caller. Prefer the environment variable: command lines are visible
    /// to other local users.
    #[arg(long, env = "KEYWARD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// How callers are authenticated.
    #[arg(long, env = "KEYWARD_AUTH_MODE", value_enum, default_value_t = AuthMode::Managed)]
    pub auth_mode: AuthMode,
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
pub struct SchemasArgs {
    /// Directory to write into.
    #[arg(long, default_value = "schemas")]
    pub dir: PathBuf,
    /// Compare instead of writing; exit non-zero if any file is missing or stale.
    #[arg(long)]
    pub check: bool,
}
