//! Where the database is, decided once at start: plain values, no I/O beyond a throwaway
//! directory, no dependency on the rest of keyward.

use std::path::PathBuf;

/// The database a command runs on.
pub struct Database {
    pub url: String,
    /// Set for `--auth-mode disabled`: a throwaway database of its own, in a fresh private
    /// directory that is deleted when this is dropped. It is marked as such, and no other mode
    /// ever serves it.
    pub throwaway: Option<tempfile::TempDir>,
    /// The default database's directory, to be created owner-only before it is opened.
    pub create_dir: Option<PathBuf>,
}

/// The database URL: the one given, or `keyward.db` in the user's data directory (the caller
/// creates it owner-only), so `keyward serve` works on a fresh machine wherever it is started
/// from. With authentication disabled, never a named database: any web page the developer
/// opens could otherwise mint keys into the database managed mode serves.
pub fn database(given: Option<&str>, disabled: bool) -> anyhow::Result<Database> {
    let given = given.map(str::trim).filter(|u| !u.is_empty());
    if disabled {
        anyhow::ensure!(
            given.is_none(),
            "--auth-mode disabled runs only on a throwaway database of its own, never a named one: \
             unset --database-url / KEYWARD_DATABASE_URL (anything created with authentication \
             disabled must not survive into a real deployment)"
        );
        let dir = tempfile::Builder::new()
            .prefix("keyward-dev-")
            .tempdir()
            .map_err(|e| anyhow::anyhow!("cannot create a throwaway database directory: {e}"))?;
        return Ok(Database {
            url: format!("sqlite://{}", dir.path().join("keyward.db").display()),
            throwaway: Some(dir),
            create_dir: None,
        });
    }
    if let Some(url) = given {
        return Ok(Database {
            url: url.to_owned(),
            throwaway: None,
            create_dir: None,
        });
    }
    let dir = directories::ProjectDirs::from("", "", "keyward")
        .map(|d| d.data_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from("."));
    Ok(Database {
        url: format!("sqlite://{}", dir.join("keyward.db").display()),
        throwaway: None,
        create_dir: Some(dir),
    })
}

/// The URL with any password removed, for log lines.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or_default();
                format!("{scheme}://{user}:***@{host}")
            }
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}
