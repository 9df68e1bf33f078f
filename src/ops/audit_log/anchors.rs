//! Places outside the database that each signed checkpoint is also sent to, so that whoever
//! holds the database (even with the signing key) cannot quietly rewrite what was anchored
//! where they cannot reach: the checkpoint log file, and any `--audit-anchor`.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Where a checkpoint goes besides the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anchor {
    /// Appended to a file (give it to another OS user, or mark it append-only).
    File(PathBuf),
    /// Sent to the local syslog daemon (`/dev/log`), one line per checkpoint.
    Syslog,
    /// POSTed (text/plain) to an http:// URL.
    Webhook(url::Url),
}

impl std::str::FromStr for Anchor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "syslog" {
            return Ok(Anchor::Syslog);
        }
        if let Some(p) = s.strip_prefix("file:") {
            return Ok(Anchor::File(PathBuf::from(p)));
        }
        if let Some(u) = s.strip_prefix("webhook:") {
            let url = url::Url::parse(u).map_err(|e| format!("webhook URL: {e}"))?;
            if url.scheme() != "http" {
                return Err("a webhook anchor takes an http:// URL (put TLS in front of it with a local relay)".into());
            }
            return Ok(Anchor::Webhook(url));
        }
        Err("expected file:PATH, syslog or webhook:http://…".into())
    }
}

/// Appends one note to a checkpoint file: the note, then a blank line.
pub fn append_file(path: &Path, note: &str) -> std::io::Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path)?;
    f.write_all(format!("{note}\n").as_bytes())?;
    f.sync_data()
}

/// The notes in a checkpoint file, oldest first (a torn last record is dropped).
pub fn read_file(path: &Path) -> std::io::Result<Vec<String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(split_notes(&text))
}

/// Splits concatenated notes: each is body lines, a blank line, signature lines, a blank line.
pub fn split_notes(text: &str) -> Vec<String> {
    let mut notes = Vec::new();
    let mut current = String::new();
    let mut in_sigs = false;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches('\n');
        if !in_sigs {
            current.push_str(line);
            if bare.is_empty() {
                in_sigs = true;
            }
        } else if bare.starts_with('\u{2014}') {
            current.push_str(line);
        } else {
            if current.ends_with('\n') && !current.ends_with("\n\n") {
                notes.push(std::mem::take(&mut current));
            } else {
                current.clear();
            }
            in_sigs = false;
            if !bare.is_empty() {
                current.push_str(line);
            }
        }
    }
    if in_sigs
        && current
            .lines()
            .last()
            .is_some_and(|l| l.starts_with('\u{2014}'))
    {
        notes.push(current);
    }
    notes
}

/// Sends `note` to `anchor`. Failures are reported to the caller (who logs them); the
/// checkpoint stays valid in the database and the log file either way.
pub async fn send(anchor: &Anchor, note: &str) -> Result<(), String> {
    match anchor {
        Anchor::File(p) => {
            let (p, note) = (p.clone(), note.to_owned());
            tokio::task::spawn_blocking(move || append_file(&p, &note))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())
        }
        Anchor::Syslog => syslog(note),
        Anchor::Webhook(url) => webhook(url, note).await,
    }
}

#[cfg(unix)]
fn syslog(note: &str) -> Result<(), String> {
    // RFC 3164 over the local socket: facility auth (4), severity notice (5).
    let line = note.trim_end().replace('\n', " | ");
    let msg = format!("<37>keyward-audit: checkpoint {line}");
    let sock = std::os::unix::net::UnixDatagram::unbound().map_err(|e| e.to_string())?;
    sock.send_to(msg.as_bytes(), "/dev/log")
        .map(|_| ())
        .map_err(|e| format!("syslog: {e}"))
}

#[cfg(not(unix))]
fn syslog(_: &str) -> Result<(), String> {
    Err("syslog anchors need a Unix system".into())
}

async fn webhook(url: &url::Url, note: &str) -> Result<(), String> {
    use http_body_util::{BodyExt, Full};
    let host = url.host_str().ok_or("the webhook URL has no host")?;
    let port = url.port_or_known_default().unwrap_or(80);
    let stream = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::net::TcpStream::connect((host, port)),
    )
    .await
    .map_err(|_| "webhook: connect timed out".to_string())?
    .map_err(|e| format!("webhook: {e}"))?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("webhook: {e}"))?;
    tokio::spawn(conn);
    let req = http::Request::post(url.as_str())
        .header(http::header::HOST, host)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(bytes_of(note)))
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(std::time::Duration::from_secs(5), send.send_request(req))
        .await
        .map_err(|_| "webhook: no answer in 5 s".to_string())?
        .map_err(|e| format!("webhook: {e}"))?;
    let status = resp.status();
    let _ = resp.into_body().collect().await;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("webhook answered {status}"))
    }
}

fn bytes_of(s: &str) -> hyper::body::Bytes {
    hyper::body::Bytes::from(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_split_back_out_of_a_file_and_a_torn_tail_is_dropped() {
        let a = "o\n1\nAAA=\ntime 1\nkind commit\n\n\u{2014} k x\n";
        let b = "o\n2\nBBB=\ntime 2\nkind commit\n\n\u{2014} k y\n\u{2014} k2 z\n";
        let text = format!("{a}\n{b}\n");
        assert_eq!(split_notes(&text), vec![a.to_owned(), b.to_owned()]);
        let torn = format!("{a}\n{b}\no\n3\n");
        assert_eq!(split_notes(&torn), vec![a.to_owned(), b.to_owned()]);
        assert!(split_notes("").is_empty());
    }

    #[test]
    fn anchors_parse_and_https_webhooks_are_refused_clearly() {
        assert_eq!("syslog".parse::<Anchor>(), Ok(Anchor::Syslog));
        assert_eq!(
            "file:/var/log/kw.log".parse::<Anchor>(),
            Ok(Anchor::File("/var/log/kw.log".into()))
        );
        assert!("webhook:http://127.0.0.1:9/x".parse::<Anchor>().is_ok());
        assert!("webhook:https://x".parse::<Anchor>().is_err());
        assert!("ftp:x".parse::<Anchor>().is_err());
    }
}
