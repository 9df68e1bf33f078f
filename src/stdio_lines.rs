//! The stdio wire between the client and rmcp: one JSON-RPC message per line. A line that is
//! not one (invalid UTF-8, not JSON, nested deeper than a parser goes, longer than the body
//! limit) is answered here with a JSON-RPC error with `id: null`, as the specification asks,
//! instead of silently dropped (the client would wait for ever). Good lines pass to rmcp
//! unchanged; its output and these errors reach stdout as whole lines, never interleaved.

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// rmcp's ends of the wire, and the task writing its output (await it before exiting, so
/// the last answers reach stdout).
pub struct Wire {
    pub rmcp: (tokio::io::DuplexStream, tokio::io::DuplexStream),
    pub writer: tokio::task::JoinHandle<()>,
}

/// Pipes `input` to rmcp and rmcp to `output`.
pub fn filter<R, W>(input: R, output: W, max_line: usize) -> Wire
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (to_rmcp, rmcp_in) = tokio::io::duplex(1 << 16);
    let (rmcp_out, from_rmcp) = tokio::io::duplex(1 << 16);
    let (errors, mut error_rx) = mpsc::channel::<String>(64);
    tokio::spawn(read_lines(input, to_rmcp, errors, max_line));
    let writer = tokio::spawn(async move {
        let mut output = output;
        let mut rmcp = BufReader::new(from_rmcp);
        let mut line = Vec::new();
        let (mut rmcp_open, mut errors_open) = (true, true);
        while rmcp_open || errors_open {
            tokio::select! {
                n = rmcp.read_until(b'\n', &mut line), if rmcp_open => match n {
                    Ok(0) | Err(_) => rmcp_open = false,
                    Ok(_) => {
                        if output.write_all(&line).await.is_err() { return; }
                        line.clear();
                        let _ = output.flush().await;
                    }
                },
                e = error_rx.recv(), if errors_open => match e {
                    Some(e) => {
                        if output.write_all(e.as_bytes()).await.is_err() { return; }
                        let _ = output.flush().await;
                    }
                    None => errors_open = false,
                },
            }
        }
    });
    Wire {
        rmcp: (rmcp_in, rmcp_out),
        writer,
    }
}

/// Reads lines of at most `max_line` bytes; good ones go to rmcp, bad ones get an error.
async fn read_lines<R: AsyncRead + Unpin>(
    input: R,
    mut to_rmcp: tokio::io::DuplexStream,
    errors: mpsc::Sender<String>,
    max_line: usize,
) {
    let mut input = BufReader::new(input);
    loop {
        let Ok(Some((line, too_long))) = read_bounded(&mut input, max_line).await else {
            return;
        };
        let trimmed = trim(&line);
        if trimmed.is_empty() && !too_long {
            continue;
        }
        let refusal = if too_long {
            Some((
                -32600,
                format!("message longer than {max_line} bytes"),
                serde_json::Value::Null,
            ))
        } else {
            check(trimmed)
        };
        match refusal {
            None => {
                if to_rmcp.write_all(trimmed).await.is_err()
                    || to_rmcp.write_all(b"\n").await.is_err()
                {
                    return;
                }
            }
            Some((code, message, id)) => {
                tracing::debug!(code, "refused a stdio line that is not a JSON-RPC message");
                let reply = serde_json::json!({"jsonrpc": "2.0", "id": id,
                    "error": {"code": code, "message": message}});
                if errors.send(format!("{reply}\n")).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn trim(line: &[u8]) -> &[u8] {
    let mut l = line;
    while let [rest @ .., b'\n' | b'\r'] = l {
        l = rest;
    }
    l
}

/// Why a line is not a message rmcp can take, if it is not: `-32700` when it is not JSON (or
/// nests deeper than 128 levels), `-32600` when it is JSON but no JSON-RPC message.
/// The reply's id is the message's own when it can be read (a string or an integer), else null.
fn check(line: &[u8]) -> Option<(i64, String, serde_json::Value)> {
    use serde_json::Value;
    if std::str::from_utf8(line).is_err() {
        return Some((
            -32700,
            "parse error: the line is not UTF-8".into(),
            Value::Null,
        ));
    }
    let value = match serde_json::from_slice::<Value>(line) {
        Ok(v) => v,
        Err(e) => {
            return Some((
                -32700,
                format!(
                    "parse error: the line is not one valid JSON value (column {})",
                    e.column()
                ),
                Value::Null,
            ));
        }
    };
    match serde_json::from_slice::<rmcp::model::ClientJsonRpcMessage>(line) {
        Ok(_) => None,
        Err(_) => {
            let id = match value.get("id") {
                Some(Value::String(s)) if s.len() <= 128 => Value::String(s.clone()),
                Some(Value::Number(n)) if n.is_i64() => Value::Number(n.clone()),
                _ => Value::Null,
            };
            Some((
                -32600,
                "invalid request: not a valid JSON-RPC 2.0 message (one message per line, \
                 \"jsonrpc\": \"2.0\", a method, and an id that is a string or an integer)"
                    .into(),
                id,
            ))
        }
    }
}

/// One line (with its newline), or `None` at the end of input; a line over `max` bytes is
/// read to its end and returned empty, flagged.
async fn read_bounded<R: AsyncBufReadExt + Unpin>(
    input: &mut R,
    max: usize,
) -> std::io::Result<Option<(Vec<u8>, bool)>> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let buf = input.fill_buf().await?;
        if buf.is_empty() {
            return Ok((!line.is_empty() || too_long).then_some((line, too_long)));
        }
        let (chunk, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        let n = chunk.len();
        if !too_long && line.len() + n > max + 1 {
            too_long = true;
            line.clear();
        }
        if !too_long {
            line.extend_from_slice(chunk);
        }
        input.consume(n);
        if done {
            return Ok(Some((line, too_long)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_checked() {
        assert!(check(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).is_none());
        assert_eq!(check(b"not json").unwrap().0, -32700);
        assert_eq!(check(&[0xff, 0xfe]).unwrap().0, -32700);
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert_eq!(check(deep.as_bytes()).unwrap().0, -32700);
        assert_eq!(check(b"{}").unwrap().0, -32600);
        assert_eq!(
            check(br#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#)
                .unwrap()
                .0,
            -32600
        );
        assert_eq!(trim(b"{}\r\n"), b"{}");
    }
}
