//! Sign-in, sign-out and first-admin bootstrap over HTTP.
//!
//! `POST /v1/auth/login` exchanges `{"username","password"}` or `{"api_key"}` for a session
//! cookie (HttpOnly, SameSite=Strict, Secure unless the host is localhost, Path=/); the session
//! lives server-side as a digest and can be revoked. `POST /v1/auth/logout` revokes it and
//! clears the cookie. `POST /auth/bootstrap` creates the first admin operator and key, once,
//! with the setup token `keyward serve` printed at start.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cookie::{Cookie, SameSite};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::HttpState;
use super::auth::{self, SESSION_COOKIE};
use super::edge::{ClientIp, PublicBase};
use super::error::{AppJson, HttpError};
use crate::domain::audit::{Action, Status};
use crate::domain::password::Password;
use crate::ops::auth::{AuthError, AuthFailure, Rejected};
use crate::ops::sessions::Credentials;
use crate::ops::{self, ErrorKind, OpsError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    username: Option<String>,
    password: Option<String>,
    api_key: Option<String>,
}

fn session_cookie(
    value: String,
    max_age: cookie::time::Duration,
    base: &PublicBase,
) -> HeaderValue {
    let c = Cookie::build((SESSION_COOKIE, value))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(!base.is_localhost())
        .path("/")
        .max_age(max_age)
        .build();
    HeaderValue::from_str(&c.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub async fn login(
    State(state): State<HttpState>,
    Extension(ip): Extension<ClientIp>,
    Extension(base): Extension<PublicBase>,
    headers: HeaderMap,
    AppJson(body): AppJson<LoginBody>,
) -> Response {
    if let Err(locked) = auth::check_lockout(&state, ip).await {
        return locked;
    }
    let creds = match body {
        LoginBody {
            api_key: Some(k),
            username: None,
            password: None,
        } => Credentials::ApiKey(k),
        LoginBody {
            api_key: None,
            username: Some(username),
            password: Some(password),
        } => Credentials::Password { username, password },
        _ => {
            return HttpError::bad_request(
                "send either {\"username\", \"password\"} or {\"api_key\"}",
            )
            .into_response();
        }
    };
    let meta = auth::call_meta(&headers, ip);
    let max_age = state.settings.session_max_age;
    match ops::sessions::login(&state.app, creds, max_age, &meta).await {
        Ok(session) => {
            let cookie_age = cookie::time::Duration::seconds(max_age.num_seconds());
            let who = ops::auth::whoami(&session.principal);
            let mut res = (
                StatusCode::OK,
                Json(json!({
                    "principal": who,
                    "expires_at": crate::domain::timespec::format_utc(session.expires_at),
                })),
            )
                .into_response();
            res.headers_mut().insert(
                header::SET_COOKIE,
                session_cookie(session.token.expose().to_owned(), cookie_age, &base),
            );
            res.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Err(AuthError::Rejected(r)) => auth::refuse(&state, ip, &r, &meta, &base).await,
        Err(AuthError::Store(e)) => HttpError::from(OpsError::from(e)).into_response(),
        Err(AuthError::Audit(e)) => HttpError::from(OpsError::from(e)).into_response(),
    }
}

pub async fn logout(
    State(state): State<HttpState>,
    Extension(ip): Extension<ClientIp>,
    Extension(base): Extension<PublicBase>,
    headers: HeaderMap,
) -> Response {
    let Some(cookie) = auth::session_cookie(&headers) else {
        return HttpError::bad_request("no session cookie").into_response();
    };
    // Signing out changes state on the strength of a cookie: the Origin must be present (and
    // the origin layer has already checked it is allowed).
    if !headers.contains_key(header::ORIGIN) {
        return HttpError::forbidden("a cookie-authenticated request must carry an Origin header")
            .into_response();
    }
    let meta = auth::call_meta(&headers, ip);
    match ops::sessions::logout(&state.app, &cookie, &meta).await {
        Ok(ended) => {
            let mut res = Json(json!({ "logged_out": ended })).into_response();
            res.headers_mut().insert(
                header::SET_COOKIE,
                session_cookie(String::new(), cookie::time::Duration::ZERO, &base),
            );
            res
        }
        Err(e) => HttpError::from(e).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapBody {
    setup_token: String,
    username: String,
    password: String,
}

pub async fn bootstrap(
    State(state): State<HttpState>,
    Extension(ip): Extension<ClientIp>,
    Extension(base): Extension<PublicBase>,
    headers: HeaderMap,
    AppJson(body): AppJson<BootstrapBody>,
) -> Response {
    if let Err(locked) = auth::check_lockout(&state, ip).await {
        return locked;
    }
    let meta = auth::call_meta(&headers, ip);
    let closed = |app: &crate::app::App, reason: &str| {
        let app = app.clone();
        let meta = meta.clone();
        let reason = reason.to_owned();
        async move {
            let event = crate::domain::audit::AuditEvent {
                reason: Some(reason),
                ..meta.event(app.now(), Action::Bootstrap, Status::Failed, "anonymous")
            };
            if let Err(e) = app.audit.record(event).await {
                return HttpError::from(OpsError::from(e)).into_response();
            }
            HttpError::new(
                StatusCode::GONE,
                "gone",
                "bootstrap is closed: an admin already exists",
            )
            .into_response()
        }
    };
    let expected = state.setup_token.lock().map(|t| t.clone()).unwrap_or(None);
    let Some(expected) = expected else {
        return closed(&state.app, "bootstrap attempted after it closed").await;
    };
    if !bool::from(
        expected
            .as_bytes()
            .ct_eq(body.setup_token.trim().as_bytes()),
    ) {
        let rejected = Rejected::new(AuthFailure::BadSetupToken);
        let res = auth::refuse(&state, ip, &rejected, &meta, &base).await;
        if res.status() == StatusCode::UNAUTHORIZED {
            return HttpError::forbidden("wrong setup token").into_response();
        }
        return res;
    }
    let password = match Password::new(&body.password) {
        Ok(p) => p,
        Err(e) => return HttpError::from(OpsError::from(e)).into_response(),
    };
    let first = ops::auth::FirstAdmin {
        key_name: "bootstrap-admin",
        expires_at: None,
        operator: Some((&body.username, &password)),
    };
    match ops::auth::bootstrap(&state.app, first, &meta).await {
        Ok(done) => {
            if let Ok(mut t) = state.setup_token.lock() {
                *t = None;
            }
            tracing::info!(key_id = %done.key.key.id, "first admin created over HTTP; bootstrap is now closed");
            let mut res = (
                StatusCode::CREATED,
                Json(json!({
                    "api_key": done.key.api_key,
                    "key": done.key.key,
                    "operator": done.operator,
                })),
            )
                .into_response();
            res.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Err(e) if e.kind() == ErrorKind::Gone => {
            if let Ok(mut t) = state.setup_token.lock() {
                *t = None;
            }
            closed(&state.app, "bootstrap attempted after an admin was created").await
        }
        Err(e) => HttpError::from(e).into_response(),
    }
}
