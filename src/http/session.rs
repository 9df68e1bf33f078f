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
use super::auth;
use super::edge::{ClientIp, PublicBase};
use super::error::{AppJson, HttpError};
use crate::domain::audit::{Action, Status};
use crate::ops::auth::{AuthFailure, Rejected};
use crate::ops::sessions::Credentials;
use crate::ops::{self, ErrorKind, OpsError};

/// Its `Debug` shows nothing: a typed username may be a password typed into the wrong field.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    username: Option<String>,
    password: Option<String>,
    api_key: Option<String>,
}

impl std::fmt::Debug for LoginBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginBody").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for BootstrapBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapBody").finish_non_exhaustive()
    }
}

/// Sign-in, sessions and bootstrap exist only in managed mode (legacy has one shared key,
/// disabled has none).
fn managed_only(state: &HttpState) -> Option<Response> {
    (!matches!(state.settings.auth, auth::HttpAuth::Managed)).then(|| {
        HttpError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "sign-in and bootstrap are available only in managed auth mode",
        )
        .into_response()
    })
}

fn session_cookie(
    value: String,
    max_age: cookie::time::Duration,
    base: &PublicBase,
) -> HeaderValue {
    let c = Cookie::build((auth::cookie_name(base), value))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(base.scheme == "https" || !base.is_localhost())
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
    if let Some(off) = managed_only(&state) {
        return off;
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
    match ops::sessions::login(&state.app, creds, max_age, &meta, ip.0).await {
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
        Err(refused) => auth::answer_refusal(&state, refused, &base),
    }
}

pub async fn logout(
    State(state): State<HttpState>,
    Extension(ip): Extension<ClientIp>,
    Extension(base): Extension<PublicBase>,
    headers: HeaderMap,
) -> Response {
    if let Some(off) = managed_only(&state) {
        return off;
    }
    let Some(cookie) = auth::session_cookie(&headers, &base) else {
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

/// Its `Debug` shows nothing (see `LoginBody`).
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
    headers: HeaderMap,
    AppJson(body): AppJson<BootstrapBody>,
) -> Response {
    if let Some(off) = managed_only(&state) {
        return off;
    }
    if let Err(locked) = auth::check_lockout(&state, ip).await {
        return locked;
    }
    let meta = auth::call_meta(&headers, ip);
    // Every attempt counts toward the lockout, so neither the token nor the audit trail can be
    // hammered; a successful one is taken back.
    let reservation = match auth::reserve(&state, ip).await {
        Ok(r) => r,
        Err(refused) => return refused,
    };
    let app = &state.app;
    let now = app.now();
    let expected = {
        let mut slot = state.setup_token.lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_ref() {
            Some(t) if t.expires_at <= now => {
                *slot = None;
                Err((
                    "bootstrap attempted with an expired setup token",
                    "the setup token has expired; restart keyward for a new one",
                ))
            }
            Some(t) => Ok(t.value.clone()),
            None => Err((
                "bootstrap attempted after it closed",
                "bootstrap is closed: it already ran on this database",
            )),
        }
    };
    let expected = match expected {
        Ok(t) => t,
        Err((reason, message)) => {
            let event = crate::domain::audit::AuditEvent {
                reason: Some(reason.to_owned()),
                ..meta.event(now, Action::Bootstrap, Status::Failed, "anonymous")
            };
            if let Err(e) = app.audit.record(event).await {
                return HttpError::from(OpsError::from(e)).into_response();
            }
            return settled(&state, ip, reservation, &meta, gone(message)).await;
        }
    };
    if !bool::from(
        expected
            .as_bytes()
            .ct_eq(body.setup_token.trim().as_bytes()),
    ) {
        let rejected = Rejected::new(AuthFailure::BadSetupToken);
        if let Some(error) = auth::refuse_reserved(&state, ip, reservation, &rejected, &meta).await
        {
            return error;
        }
        return HttpError::forbidden("wrong setup token").into_response();
    }
    let first = ops::bootstrap::FirstAdmin {
        key_name: "bootstrap-admin",
        expires_at: None,
        operator: Some((&body.username, &body.password)),
    };
    // Refusals past this point (closed elsewhere, weak password, bad name) are audited by the
    // use case; the attempt stays counted.
    match ops::bootstrap::bootstrap(app, first, &meta).await {
        Ok(done) => {
            clear(&state);
            if let Err(e) = ops::lockout::forgive(app, &ip.lockout_key(), reservation).await {
                tracing::warn!(error = %e, "could not take back the bootstrap attempt");
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
        Err(e) => {
            if e.kind() == ErrorKind::Gone {
                // Bootstrapped elsewhere (the CLI, another replica): this token dies too.
                clear(&state);
            }
            settled(
                &state,
                ip,
                reservation,
                &meta,
                HttpError::from(e).into_response(),
            )
            .await
        }
    }
}

fn clear(state: &HttpState) {
    *state.setup_token.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

fn gone(message: &str) -> Response {
    HttpError::new(StatusCode::GONE, "gone", message.to_owned()).into_response()
}

/// The counted attempt stays counted (announcing the lockout if it set one); answers `res`.
async fn settled(
    state: &HttpState,
    ip: ClientIp,
    r: ops::lockout::Reservation,
    meta: &crate::ops::CallMeta,
    res: Response,
) -> Response {
    match ops::lockout::settle(&state.app, &ip.lockout_key(), r, meta).await {
        Ok(()) => res,
        Err(e) => HttpError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Request bodies that carry a password, key or setup token print none of them.
    #[test]
    fn secrets_never_reach_debug() {
        let login: LoginBody = serde_json::from_value(json!({
            "username": "alice", "password": "pw-SECRET-1", "api_key": "kw_SECRET-2"
        }))
        .unwrap();
        let boot: BootstrapBody = serde_json::from_value(json!({
            "setup_token": "kws_SECRET-3", "username": "alice", "password": "pw-SECRET-4"
        }))
        .unwrap();
        let creds = [
            Credentials::Password {
                username: "alice".into(),
                password: "pw-SECRET-5".into(),
            },
            Credentials::ApiKey("kw_SECRET-6".into()),
        ];
        let op = ops::operators::CreateOperator {
            username: "alice".into(),
            password: "pw-SECRET-7".into(),
            role: "reader".into(),
            tenants: vec!["*".into()],
        };
        let printed = format!("{login:?} {boot:?} {creds:?}");
        assert!(
            !printed.contains("SECRET") && !printed.contains("alice"),
            "{printed}"
        );
        // A new operator's name is an admin's choice, not a sign-in attempt: it may show.
        let printed = format!("{op:?}");
        assert!(
            !printed.contains("SECRET") && printed.contains("alice"),
            "{printed}"
        );
    }
}
