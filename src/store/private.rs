//! Files that hold credentials or the trail are readable by their owner only: directories are
//! created 0700 and files 0600, whatever the umask (other local users must not read the
//! password hashes, key digests or audit records).

use std::fs::OpenOptions;
use std::path::Path;

/// Creates `dir` (and missing parents) with mode 0700. An existing directory is left as it is.
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

/// Open options that create a file with mode 0600.
pub fn file_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o
}

/// Creates `path` empty with mode 0600 if it does not exist yet (SQLite then gives its WAL and
/// shared-memory files the same mode).
pub fn touch(path: &Path) -> std::io::Result<()> {
    match file_options().write(true).create_new(true).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The permission bits of `path` when other users may read or write it (`None`: owner only).
pub fn shared_mode(path: &Path) -> std::io::Result<Option<u32>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Ok(Some(mode));
        }
    }
    #[cfg(not(unix))]
    std::fs::metadata(path)?;
    Ok(None)
}

/// Warns when `path` (made before keyward created files owner-only, or by hand) can be read
/// or written by other users. Existing files are left as their owner set them.
pub fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{mode:o}"),
                    "other local users can read or write this keyward file; run chmod go-rwx on it"
                );
            }
        }
    }
}
