//! The protocol endpoints a client calls directly: metadata, registration (RFC 7591), token
//! (RFC 6749 §3.2 with PKCE and RFC 8707), revocation (RFC 7009).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use super::FormData;
use crate::domain::permission::Permission;
use crate::http::HttpState;
use crate::http::auth::call_meta;
use crate::http::edge::{ClientIp, PublicBase};
use crate::ops::oauth::clients::{self, AUTH_BASIC, AUTH_NONE, AUTH_POST};
use crate::ops::oauth::tokens::{self, CodeExchange};
use crate::ops::oauth::{OAuth, OAuthError};

fn no_store() -> [(header::HeaderName, HeaderValue); 2] {
    [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::PRAGMA, HeaderValue::from_static("no-cache")),
    ]
}

/// An OAuth error answer: `{"error", "error_description"}`, never a secret.
fn error(status: StatusCode, e: &OAuthError) -> Response {
    let status = match e.code {
        "invalid_client" => StatusCode::UNAUTHORIZED,
        "server_error" => StatusCode::INTERNAL_SERVER_ERROR,
        "temporarily_unavailable" => StatusCode::SERVICE_UNAVAILABLE,
        "slow_down" => StatusCode::TOO_MANY_REQUESTS,
        _ => status,
    };
    let mut res = (
        status,
        no_store(),
        Json(json!({"error": e.code, "error_description": e.description})),
    )
        .into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
    }
    res
}

fn oauth(state: &HttpState) -> Option<&OAuth> {
    state.app.oauth.as_deref()
}

/// RFC 8414 metadata. `issuer` is the public base URL exactly (the same rules as the
/// protected-resource metadata), and every endpoint sits at the root.
pub async fn metadata(
    State(state): State<HttpState>,
    Extension(base): Extension<PublicBase>,
) -> Response {
    if oauth(&state).is_none() {
        return crate::http::error::HttpError::not_found().into_response();
    }
    let issuer = base.url();
    let methods = [AUTH_NONE, AUTH_POST, AUTH_BASIC];
    (
        [
            (header::CACHE_CONTROL, "no-cache"),
            (header::VARY, "Host, X-Forwarded-Proto, X-Forwarded-Host"),
        ],
        Json(json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "registration_endpoint": format!("{issuer}/register"),
            "revocation_endpoint": format!("{issuer}/revoke"),
            "revocation_endpoint_auth_methods_supported": methods,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": methods,
            "client_id_metadata_document_supported": true,
            "authorization_response_iss_parameter_supported": true,
            "scopes_supported": Permission::ALL.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        })),
    )
        .into_response()
}

pub async fn register(
    State(state): State<HttpState>,
    Extension(ip): Extension<ClientIp>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(o) = oauth(&state) else {
        return crate::http::error::HttpError::not_found().into_response();
    };
    let meta = call_meta(&headers, ip);
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            &OAuthError::new("invalid_client_metadata", "the body must be a JSON object"),
        );
    };
    match crate::ops::oauth::registration::register(&state.app, o, &value, &meta, &ip.lockout_key())
        .await
    {
        Ok(r) => (StatusCode::CREATED, no_store(), Json(r.body)).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, &e),
    }
}

/// The client's credentials: HTTP Basic (RFC 6749 §2.3.1, each part form-encoded) or the body.
fn client_credentials(
    headers: &HeaderMap,
    form: &FormData,
) -> Result<(String, Option<String>), OAuthError> {
    let bad = |d: &str| OAuthError::invalid_request(d.to_owned());
    let body_id = form.one("client_id").map_err(|e| bad(&e))?;
    let body_secret = form.one("client_secret").map_err(|e| bad(&e))?;
    if let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        && let Some(b64) = auth
            .strip_prefix("Basic ")
            .or_else(|| auth.strip_prefix("basic "))
    {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials"))?;
        let (id, secret) = decoded
            .split_once(':')
            .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials"))?;
        let dec = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| OAuthError::invalid_client("malformed Basic credentials"))
        };
        let id = dec(id)?;
        if body_id.is_some_and(|b| b != id) {
            return Err(bad(
                "client_id in the body differs from the Basic credentials",
            ));
        }
        return Ok((id, Some(dec(secret)?)));
    }
    let id = body_id.ok_or_else(|| OAuthError::invalid_client("client_id is required"))?;
    Ok((id.to_owned(), body_secret.map(str::to_owned)))
}

fn form_of(headers: &HeaderMap, body: &Bytes) -> Result<FormData, OAuthError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !ct.starts_with("application/x-www-form-urlencoded") {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    Ok(FormData::parse(body))
}

/// A metadata-document `client_id` not in the cache makes the server fetch: such requests are
/// counted per address, as at the authorization endpoint (cached ones, the everyday refreshes
/// of a connector behind a shared address, are not).
fn admit_fetch(
    o: &OAuth,
    client_id: &str,
    ip: ClientIp,
    state: &HttpState,
) -> Result<(), OAuthError> {
    if client_id.starts_with("https://")
        && !o.documents.is_fresh(client_id, state.app.now())
        && !o.admit_authorization(&ip.lockout_key(), state.app.now())
    {
        return Err(OAuthError::new(
            "slow_down",
            "too many requests from this address; try again in a minute",
        ));
    }
    Ok(())
}

/// The form of a token or revocation request, and its client, authenticated.
async fn authenticated_client(
    state: &HttpState,
    o: &OAuth,
    headers: &HeaderMap,
    body: &Bytes,
    ip: ClientIp,
) -> Result<(FormData, clients::Client), OAuthError> {
    let form = form_of(headers, body)?;
    let (client_id, secret) = client_credentials(headers, &form)?;
    admit_fetch(o, &client_id, ip, state)?;
    let client = clients::resolve(&state.app, o, &client_id)
        .await
        .map_err(|_| OAuthError::invalid_client("unknown client"))?;
    client.authenticate(secret.as_deref())?;
    Ok((form, client))
}

pub async fn token(
    State(state): State<HttpState>,
    Extension(ip): Extension<ClientIp>,
    Extension(base): Extension<PublicBase>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(o) = oauth(&state) else {
        return crate::http::error::HttpError::not_found().into_response();
    };
    let meta = call_meta(&headers, ip);
    let result = async {
        let (form, client) = authenticated_client(&state, o, &headers, &body, ip).await?;
        let one = |n: &str| form.one(n).map_err(OAuthError::invalid_request);
        let canonical = base.mcp_url();
        match one("grant_type")? {
            Some("authorization_code") => {
                let code =
                    one("code")?.ok_or_else(|| OAuthError::invalid_request("code is required"))?;
                tokens::exchange_code(
                    &state.app,
                    o,
                    &client,
                    CodeExchange {
                        code,
                        redirect_uri: one("redirect_uri")?,
                        code_verifier: one("code_verifier")?,
                        resource: one("resource")?,
                    },
                    &canonical,
                    &meta,
                )
                .await
            }
            Some("refresh_token") => {
                let rt = one("refresh_token")?
                    .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
                crate::ops::oauth::refresh::refresh(
                    &state.app,
                    o,
                    &client,
                    rt,
                    one("resource")?,
                    &canonical,
                    &meta,
                )
                .await
            }
            Some(_) => Err(OAuthError::new(
                "unsupported_grant_type",
                "grant_type must be authorization_code or refresh_token",
            )),
            None => Err(OAuthError::invalid_request("grant_type is required")),
        }
    }
    .await;
    match result {
        Ok(issued) => {
            let mut body = json!({
                "access_token": issued.access_token,
                "token_type": "Bearer",
                "expires_in": issued.expires_in,
                "scope": issued.scope,
            });
            if let (Some(rt), Value::Object(m)) = (issued.refresh_token, &mut body) {
                m.insert("refresh_token".into(), Value::String(rt));
            }
            (StatusCode::OK, no_store(), Json(body)).into_response()
        }
        Err(e) => {
            tracing::info!(error = e.code, "oauth token: refused");
            error(StatusCode::BAD_REQUEST, &e)
        }
    }
}

pub async fn revoke(
    State(state): State<HttpState>,
    Extension(ip): Extension<ClientIp>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(o) = oauth(&state) else {
        return crate::http::error::HttpError::not_found().into_response();
    };
    let meta = call_meta(&headers, ip);
    let result = async {
        let (form, client) = authenticated_client(&state, o, &headers, &body, ip).await?;
        let t = form
            .one("token")
            .map_err(OAuthError::invalid_request)?
            .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
        tokens::revoke(&state.app, &client, t, &meta).await
    }
    .await;
    match result {
        Ok(()) => (StatusCode::OK, no_store()).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, &e),
    }
}
