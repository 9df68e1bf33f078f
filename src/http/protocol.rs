//! The `/mcp` request as JSON-RPC expects it, before rmcp parses it: an unsupported
//! `Content-Encoding` is refused (415), a body over the limit gets a JSON 413, the Base64
//! sentinel of the standard `Mcp-*` headers is read case-insensitively (SEP-2243), and a body
//! that rmcp cannot take as one JSON-RPC message gets 400 with `-32700` (not JSON) or
//! `-32600` (JSON, but no valid message: a batch, `[]`, a bad id or version) instead of rmcp's
//! plain-text 415.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::HttpState;
use super::error::HttpError;

const SENTINEL: &str = "=?base64?";

pub async fn normalize(State(state): State<HttpState>, mut req: Request, next: Next) -> Response {
    let mut encodings = req
        .headers()
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .peekable();
    if encodings.peek().is_some() {
        // Every value, of every header line, must be identity.
        let identity = encodings.all(|v| {
            v.to_str().is_ok_and(|e| {
                e.split(',')
                    .all(|p| p.trim().eq_ignore_ascii_case("identity"))
            })
        });
        if !identity {
            return HttpError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "request bodies must not be encoded (no Content-Encoding, or identity)",
            )
            .into_response();
        }
    }
    lowercase_sentinels(req.headers_mut());
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let limit = state.settings.max_body_bytes;
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(e) if is_too_large(&e) => {
            return HttpError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("request body exceeds {limit} bytes"),
            )
            .into_response();
        }
        Err(_) => {
            return HttpError::bad_request("the request body could not be read").into_response();
        }
    };
    let json_body = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.split(';')
                .next()
                .is_some_and(|e| e.trim().eq_ignore_ascii_case("application/json"))
        });
    let res = next
        .run(Request::from_parts(parts, Body::from(bytes.clone())))
        .await;
    if json_body && res.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE {
        return invalid_message(&bytes);
    }
    as_json(res).await
}

/// rmcp answers some refusals (406, 400 "session id required", 404) in plain text: the same
/// status with keyward's JSON error body.
async fn as_json(res: Response) -> Response {
    let status = res.status();
    let plain = !res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("json") || ct.contains("event-stream"));
    if !(status.is_client_error() || status.is_server_error()) || !plain {
        return res;
    }
    let text = axum::body::to_bytes(res.into_body(), 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::NOT_ACCEPTABLE => "not_acceptable",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    HttpError::new(status, code, crate::domain::audit::redact_text(&text)).into_response()
}

/// Whether reading the body failed on the size limit (rather than a broken connection).
fn is_too_large(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// 400 with the JSON-RPC error that fits a body rmcp could not take.
fn invalid_message(bytes: &Bytes) -> Response {
    let (code, message, id) = match serde_json::from_slice::<Value>(bytes) {
        Err(e) => (
            -32700,
            format!(
                "parse error: the body is not one valid JSON value (line {}, column {})",
                e.line(),
                e.column()
            ),
            Value::Null,
        ),
        Ok(v) => {
            let id = match v.get("id") {
                Some(Value::String(s)) if s.len() <= 128 => Value::String(s.clone()),
                Some(Value::Number(n)) if n.is_i64() => Value::Number(n.clone()),
                _ => Value::Null,
            };
            let why = if v.is_array() {
                "batches are not accepted: send one JSON-RPC message per request"
            } else {
                "not a valid JSON-RPC 2.0 message (\"jsonrpc\": \"2.0\", a method, and an id that \
                 is a string or an integer)"
            };
            (-32600, format!("invalid request: {why}"), id)
        }
    };
    let body = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

/// `=?BASE64?…?=` and other spellings of the sentinel in `Mcp-*` headers, as rmcp expects it.
fn lowercase_sentinels(headers: &mut axum::http::HeaderMap) {
    for (name, value) in headers.iter_mut() {
        if !name.as_str().starts_with("mcp-") {
            continue;
        }
        let Ok(text) = value.to_str() else { continue };
        let fix = text
            .get(..SENTINEL.len())
            .is_some_and(|p| p != SENTINEL && p.eq_ignore_ascii_case(SENTINEL));
        if fix
            && let Ok(v) = HeaderValue::from_str(&format!("{SENTINEL}{}", &text[SENTINEL.len()..]))
        {
            *value = v;
        }
    }
}
