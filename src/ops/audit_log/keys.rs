//! The checkpoint signing keys, kept outside the database: a file of `PRIVATE+KEY+…` lines,
//! the current key first and retired ones after it (they still verify older checkpoints, and
//! the newest retired key co-signs the first checkpoint of its successor).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::domain::checkpoint::{SigningKey, VerifyingKey};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("audit signing key file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("audit signing key: {0}")]
    Invalid(String),
    #[error(
        "the audit signing key file is missing, and this log has signed checkpoints with it: \
         restore the key file from the backup, or point --audit-signing-key at it"
    )]
    Missing,
}

/// Where the key comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A file, created (0600) with a fresh key when missing.
    File(PathBuf),
    /// The key text itself (an environment setting); never written anywhere.
    Text(secrecy::SecretString),
}

impl KeySource {
    /// A setting's value: key text when it looks like one, else a path.
    pub fn from_setting(v: &str) -> KeySource {
        if v.trim_start().starts_with("PRIVATE+KEY+") {
            KeySource::Text(secrecy::SecretString::from(v.to_owned()))
        } else {
            KeySource::File(PathBuf::from(v))
        }
    }
}

#[derive(Debug)]
pub struct KeyRing {
    pub current: SigningKey,
    pub retired: Vec<SigningKey>,
}

impl KeyRing {
    /// Every key whose signatures this process trusts.
    pub fn trusted(&self) -> Vec<VerifyingKey> {
        std::iter::once(&self.current)
            .chain(&self.retired)
            .map(SigningKey::verifying)
            .collect()
    }

    fn parse(text: &str) -> Result<KeyRing, KeyError> {
        let mut keys = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| SigningKey::parse(l).map_err(|e| KeyError::Invalid(e.to_string())));
        let current = keys
            .next()
            .ok_or_else(|| KeyError::Invalid("no key in it".into()))??;
        let retired = keys.collect::<Result<Vec<_>, _>>()?;
        Ok(KeyRing { current, retired })
    }

    fn text(&self) -> String {
        let mut s = String::from(
            "# keyward audit checkpoint signing keys: current first, retired after. Secret.\n",
        );
        for k in std::iter::once(&self.current).chain(&self.retired) {
            s.push_str(&k.to_secret_text());
            s.push('\n');
        }
        s
    }

    /// Loads the ring, creating a file with a fresh key (named `name`) when it is missing.
    pub fn load(source: &KeySource, name: &str) -> Result<KeyRing, KeyError> {
        match source {
            KeySource::Text(t) => {
                use secrecy::ExposeSecret;
                KeyRing::parse(t.expose_secret())
            }
            KeySource::File(path) => match std::fs::read_to_string(path) {
                Ok(text) => {
                    refuse_if_shared(path)?;
                    KeyRing::parse(&text).map_err(|e| file_error(path, e.to_string()))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let ring = KeyRing {
                        current: SigningKey::generate(name)
                            .map_err(|e| KeyError::Invalid(e.to_string()))?,
                        retired: Vec::new(),
                    };
                    if !publish_new(path, &ring.text())? {
                        // Another process on this database created it first: use theirs.
                        return Self::load(source, name);
                    }
                    tracing::info!(path = %path.display(), vkey = %ring.current.verifying(), "created the audit checkpoint signing key");
                    Ok(ring)
                }
                Err(e) => Err(file_error(path, e.to_string())),
            },
        }
    }

    /// Reads the public keys only (for `keyward audit verify`): never creates a file.
    pub fn read(source: &KeySource) -> Result<KeyRing, KeyError> {
        match source {
            KeySource::File(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|e| file_error(path, e.to_string()))?;
                KeyRing::parse(&text).map_err(|e| file_error(path, e.to_string()))
            }
            KeySource::Text(_) => Self::load(source, "unused"),
        }
    }

    /// Rotation: a fresh current key; the old ones are kept as retired. Written atomically.
    pub fn rotate(path: &Path, name: &str) -> Result<KeyRing, KeyError> {
        let old = Self::read(&KeySource::File(path.to_owned()))?;
        let mut retired = vec![old.current];
        retired.extend(old.retired);
        let ring = KeyRing {
            current: SigningKey::generate(name).map_err(|e| KeyError::Invalid(e.to_string()))?,
            retired,
        };
        let tmp = path.with_extension("rotating");
        let _ = std::fs::remove_file(&tmp);
        write_new(&tmp, &ring.text())?;
        std::fs::rename(&tmp, path).map_err(|e| file_error(path, e.to_string()))?;
        Ok(ring)
    }
}

fn file_error(path: &Path, message: String) -> KeyError {
    KeyError::File {
        path: path.to_owned(),
        message,
    }
}

/// Creates `path` with `text` whole or not at all: written to a private temporary file, then
/// linked into place, which fails if the path exists. False when another process won the race.
fn publish_new(path: &Path, text: &str) -> Result<bool, KeyError> {
    let tmp = path.with_extension(format!("new-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    write_new(&tmp, text)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(file_error(path, e.to_string())),
    }
}

/// Creates `path` owner-only and writes `text` to it (never over an existing file).
fn write_new(path: &Path, text: &str) -> Result<(), KeyError> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path).map_err(|e| file_error(path, e.to_string()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| file_error(path, e.to_string()))
}

/// A signing key others on the machine can read is no secret: refuse it, saying how to fix it.
fn refuse_if_shared(path: &Path) -> Result<(), KeyError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| file_error(path, e.to_string()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(file_error(
                path,
                format!(
                    "is readable by others (mode {:o}); run chmod 600 on it",
                    mode & 0o777
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_created_owner_only_and_read_back_the_same() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("audit.key");
        let source = KeySource::File(path.clone());
        let a = KeyRing::load(&source, "keyward/x").expect("created");
        let b = KeyRing::load(&source, "keyward/x").expect("read");
        assert_eq!(a.current.verifying(), b.current.verifying());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            let refused = KeyRing::load(&source, "keyward/x").expect_err("shared key refused");
            assert!(refused.to_string().contains("chmod 600"));
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        let rotated = KeyRing::rotate(&path, "keyward/x").expect("rotated");
        assert_eq!(rotated.retired[0].verifying(), a.current.verifying());
        assert_ne!(rotated.current.verifying(), a.current.verifying());
        let again = KeyRing::load(&source, "keyward/x").expect("read");
        assert_eq!(again.trusted().len(), 2);
    }
}
