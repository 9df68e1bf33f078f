//! Authentication at the HTTP edge, never authorization: a bearer key (or, in `legacy` mode,
//! the shared key), else the session cookie, resolves the principal of each request and
//! hands it to the guard in the request's extensions. Failures answer 401 with a challenge that
//! points at the protected-resource metadata, are logged (client IP, reason, never the secret),
//! audited, and counted toward the client IP's lockout.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use tracing::instrument;

use super::HttpState;
use super::edge::{ClientIp, PublicBase};
use super::error::HttpError;
use crate::domain::audit::Source;
use crate::domain::principal::Principal;
use crate::ops::auth::{AuthFailure, Rejected};
use crate::ops::{self, CallMeta};

pub const SESSION_COOKIE: &str = "keyward_session";
/// The cookie's name on https: with the `__Host-` prefix a browser accepts it only from this
/// very host, over a secure channel, for the whole path, so a sibling subdomain cannot toss in
/// a cookie of its own that would be sent first.
pub const HOST_SESSION_COOKIE: &str = "__Host-keyward_session";

/// The sign-in cookie's name for requests that reached us under `base`.
pub fn cookie_name(base: &PublicBase) -> &'static str {
    if base.scheme == "https" {
        HOST_SESSION_COOKIE
    } else {
        SESSION_COOKIE
    }
}

/// How the server authenticates HTTP callers.
pub enum HttpAuth {
    /// Keys (and operator sessions) in the database.
    Managed,
    /// One shared key, compared in constant time.
    Legacy(ops::auth::LegacyKey),
    /// No authentication (local development only).
    Disabled,
}

/// What a request presented.
enum Credential<'a> {
    Bearer(&'a str),
    Cookie(String),
    None,
}

fn credential<'a>(headers: &'a HeaderMap, base: &PublicBase) -> Credential<'a> {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let mut parts = value.splitn(2, ' ');
        let scheme = parts.next().unwrap_or_default();
        let token = parts.next().unwrap_or_default().trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            return Credential::Bearer(token);
        }
        // Any other scheme is a presented-but-unusable credential.
        return Credential::Bearer("");
    }
    match session_cookie(headers, base) {
        Some(c) => Credential::Cookie(c),
        None => Credential::None,
    }
}

pub fn session_cookie(headers: &HeaderMap, base: &PublicBase) -> Option<String> {
    cookie_value(headers, cookie_name(base))
}

/// The value of the cookie called `name`, if the request carries one.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// Client IP (established by the server), and User-Agent and `x-request-source` (asserted by
/// the client, kept as claims: scrubbed, visible, bounded), for the audit trail.
pub fn call_meta(req_headers: &HeaderMap, ip: ClientIp) -> CallMeta {
    let text = |name: &str| {
        req_headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| crate::domain::audit::claim(v, 256))
            .filter(|v| !v.is_empty())
    };
    let mut meta = CallMeta::new(Source::Http);
    meta.client_ip = Some(ip.0.to_string());
    meta.user_agent = text("user-agent");
    meta.request_source = text("x-request-source");
    meta
}

/// 401 with `WWW-Authenticate: Bearer resource_metadata="…"` (and `error="invalid_token"` when
/// a credential was presented). The body never says which part was wrong.
pub fn challenge(base: &PublicBase, presented: bool) -> HttpError {
    let mut value = format!("Bearer resource_metadata=\"{}\"", base.metadata_url());
    if presented {
        value.push_str(", error=\"invalid_token\"");
    }
    let mut err = HttpError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        if presented {
            "invalid or expired credentials"
        } else {
            "authentication required"
        },
    );
    if let Ok(v) = HeaderValue::from_str(&value) {
        err = err.with_header(header::WWW_AUTHENTICATE, v);
    }
    err
}

fn locked_out(until: DateTime<Utc>, now: DateTime<Utc>) -> HttpError {
    too_many(
        until,
        now,
        "locked_out",
        "too many failed authentications from this address",
    )
}

/// 429 for a sign-in whose username has failed repeatedly of late (the same for every name,
/// existing or not).
fn name_delayed(until: DateTime<Utc>, now: DateTime<Utc>) -> HttpError {
    too_many(
        until,
        now,
        "slow_down",
        "too many failed sign-ins for this username",
    )
}

fn too_many(until: DateTime<Utc>, now: DateTime<Utc>, code: &'static str, why: &str) -> HttpError {
    // Rounded up: a client that waits this long is no longer held back.
    let secs = ((until - now).num_milliseconds() + 999)
        .div_euclid(1000)
        .max(1);
    HttpError::new(
        StatusCode::TOO_MANY_REQUESTS,
        code,
        format!("{why}; try again in {secs} s"),
    )
    .with_header(header::RETRY_AFTER, HeaderValue::from(secs))
}

/// The answer to a refused credential (logged, counted and audited already by
/// `ops::auth`): 401 with a challenge, or 429 for a locked-out address, past the lockout
/// threshold, or for a username that failed repeatedly of late.
pub fn answer_refusal(
    state: &HttpState,
    refused: ops::auth::Refused,
    base: &PublicBase,
) -> Response {
    use ops::auth::{Lock, Refused};
    let now = state.app.now();
    let (rejected, lock) = match refused {
        Refused::Credential { rejected, lock } => (rejected, lock),
        Refused::LockedOut(until) => return locked_out(until, now).into_response(),
        Refused::Failed(e) => return HttpError::from(e).into_response(),
        // A genuine token past its time: 401 invalid_token, so the client refreshes.
        Refused::Stale(_) => return challenge(base, true).into_response(),
    };
    match lock {
        Lock::Already(until) => locked_out(until, now).into_response(),
        // Failures past the threshold (concurrent with the one that set the lock) are
        // answered as locked out: no more than `threshold` ever get an ordinary answer.
        Lock::Over(until) => match until {
            Some(until) => locked_out(until, now).into_response(),
            None => challenge(base, true).into_response(),
        },
        Lock::Open => {
            match rejected.until {
                // A username that failed repeatedly of late waits (sign-in only).
                Some(until) => name_delayed(until, now).into_response(),
                None => challenge(base, rejected.failure != AuthFailure::Missing).into_response(),
            }
        }
    }
}

/// Counts a sign-in or bootstrap attempt before its credential is checked; `Err` holds the
/// response when the attempt must be refused outright.
pub async fn reserve(
    state: &HttpState,
    ip: ClientIp,
) -> Result<ops::lockout::Reservation, Response> {
    let app = &state.app;
    let r = ops::lockout::reserve(app, &ip.lockout_key())
        .await
        .map_err(|e| HttpError::from(e).into_response())?;
    match r.refused_until(app) {
        Some(until) => Err(locked_out(until, app.now()).into_response()),
        None => Ok(r),
    }
}

/// A reserved attempt whose credential was refused: log line, metric, audit (and lockout).
pub async fn refuse_reserved(
    state: &HttpState,
    ip: ClientIp,
    r: ops::lockout::Reservation,
    rejected: &Rejected,
    meta: &CallMeta,
) -> Option<Response> {
    ops::auth::note(&state.app, rejected, meta);
    ops::lockout::confirm(&state.app, &ip.lockout_key(), r, rejected, meta)
        .await
        .err()
        .map(|e| HttpError::from(e).into_response())
}

/// Refuses requests from a locked-out address with 429 and `Retry-After` (for guessable
/// secrets: passwords, the setup token, a short legacy key).
pub async fn check_lockout(state: &HttpState, ip: ClientIp) -> Result<(), Response> {
    match ops::lockout::locked_until(&state.app, &ip.lockout_key()).await {
        Ok(None) => Ok(()),
        Ok(Some(until)) => Err(locked_out(until, state.app.now()).into_response()),
        Err(e) => Err(HttpError::from(e).into_response()),
    }
}

/// The middleware in front of `/mcp`.
#[instrument(level = "debug", skip_all)]
pub async fn authenticate(State(state): State<HttpState>, req: Request, next: Next) -> Response {
    let ip = req
        .extensions()
        .get::<ClientIp>()
        .copied()
        .unwrap_or(ClientIp([127, 0, 0, 1].into()));
    let Some(base) = req.extensions().get::<PublicBase>().cloned() else {
        return HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "request not resolved",
        )
        .into_response();
    };
    let meta = call_meta(req.headers(), ip);
    let presented = credential(req.headers(), &base);
    let resource;
    let credential = match (&state.settings.auth, &presented) {
        (HttpAuth::Disabled, _) => ops::auth::Credential::Development,
        (_, Credential::None) => return challenge(&base, false).into_response(),
        (HttpAuth::Legacy(shared), Credential::Bearer(token)) => ops::auth::Credential::Legacy {
            shared,
            presented: token,
        },
        (HttpAuth::Managed, Credential::Bearer(token))
            if state.app.oauth.is_some()
                && crate::domain::oauth::token::kind_of(token)
                    == Some(crate::domain::oauth::token::TokenKind::Access) =>
        {
            resource = base.mcp_url();
            ops::auth::Credential::AccessToken {
                token,
                resource: Some(&resource),
            }
        }
        (HttpAuth::Managed, Credential::Bearer(token)) => ops::auth::Credential::ApiKey(token),
        (HttpAuth::Managed, Credential::Cookie(cookie)) => {
            // A state-changing request riding on a cookie must come from an allowed Origin
            // (the origin layer already refused disallowed ones; here it must be present).
            if req.method() != Method::GET
                && req.method() != Method::HEAD
                && !req.headers().contains_key(header::ORIGIN)
            {
                return HttpError::forbidden(
                    "a cookie-authenticated request must carry an Origin header",
                )
                .into_response();
            }
            ops::auth::Credential::Session(cookie)
        }
        // Sign-in sessions exist only in managed mode: elsewhere a cookie is no credential.
        (HttpAuth::Legacy(_), Credential::Cookie(_)) => {
            return challenge(&base, false).into_response();
        }
    };
    let origin = ops::auth::Origin::Address(ip.0);
    match ops::auth::authenticate(&state.app, credential, &meta, origin).await {
        Ok(principal) => admit(&state, req, principal, meta, next).await,
        Err(refused) => answer_refusal(&state, refused, &base),
    }
}

/// An authenticated request goes on to `/mcp`, if session admission lets it, carrying its
/// principal and where it came from.
async fn admit(
    state: &HttpState,
    req: Request,
    principal: Principal,
    meta: CallMeta,
    next: Next,
) -> Response {
    let mut req = match super::admission::check(state, req, &principal, &meta).await {
        Ok(req) => req,
        Err(refused) => return refused,
    };
    req.extensions_mut().insert(principal);
    req.extensions_mut().insert(meta);
    next.run(req).await
}
