//! Settings derived from the command line and environment, validated once at start.

use std::path::PathBuf;

/// The database URL: the one given, or `keyward.db` in the user's data directory (created if
/// needed), so `keyward serve` works on a fresh machine wherever it is started from.
pub fn database_url(given: Option<&str>) -> anyhow::Result<String> {
    if let Some(url) = given.filter(|u| !u.trim().is_empty()) {
        return Ok(url.trim().to_owned());
    }
    let dir = directories::ProjectDirs::from("", "", "keyward")
        .map(|d| d.data_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", dir.display()))?;
    Ok(format!("sqlite://{}", dir.join("keyward.db").display()))
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
