//! The pages a person sees: sign-in (operator password, or an API key they paste) and consent.
//! Plain HTML forms that work without JavaScript, rendered with auto-escaping (maud). Each
//! parked request is bound to the browser that opened it (a `__Host-` cookie on https) and
//! carries a CSRF token; the POSTs must come from the issuer's own Origin.

use axum::body::Bytes;
use axum::extract::{Extension, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::html;

use super::FormData;
use super::html::{consent_page, error_page, page, see_other, shell, sign_in_page};
use crate::domain::oauth::scope;
use crate::http::HttpState;
use crate::http::auth::call_meta;
use crate::http::edge::{ClientIp, PublicBase};
use crate::ops::auth::Refused;
use crate::ops::oauth::OAuth;
use crate::ops::oauth::authorize::{self, Params, SignIn, Stop};
use crate::ops::oauth::consent::{self, Decision};
use crate::store::oauth::RequestRow;

const COOKIE: &str = "keyward_authz";
const HOST_COOKIE: &str = "__Host-keyward_authz";

fn cookie_name(base: &PublicBase) -> &'static str {
    if base.scheme == "https" {
        HOST_COOKIE
    } else {
        COOKIE
    }
}

fn browser_cookie(headers: &HeaderMap, base: &PublicBase) -> Option<String> {
    crate::http::auth::cookie_value(headers, cookie_name(base))
}

fn stop(s: Stop) -> Response {
    match s {
        Stop::Page(m) => error_page(&m),
        Stop::Redirect(to) => see_other(&to),
    }
}

fn oauth(state: &HttpState) -> Option<&OAuth> {
    state.app.oauth.as_deref()
}

/// The POSTs must come from the issuer's own pages (`Origin: null` and absence refused).
fn same_origin(headers: &HeaderMap, base: &PublicBase) -> bool {
    headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|o| o.eq_ignore_ascii_case(&base.url()))
}

pub async fn authorize(
    State(state): State<HttpState>,
    Extension(base): Extension<PublicBase>,
    Extension(ip): Extension<ClientIp>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(o) = oauth(&state) else {
        return crate::http::error::HttpError::not_found().into_response();
    };
    if !o.admit_authorization(&ip.lockout_key(), state.app.now()) {
        tracing::warn!(client_ip = %ip.0, "oauth authorize: rate limited");
        let mut res =
            error_page("too many authorization requests from this address; try again in a minute");
        *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        return res;
    }
    let form = FormData::parse(query.unwrap_or_default().as_bytes());
    let take = |n: &str| form.one(n).map(|v| v.map(str::to_owned));
    let params = (|| {
        Ok::<_, String>(Params {
            response_type: take("response_type")?,
            client_id: take("client_id")?,
            redirect_uri: take("redirect_uri")?,
            code_challenge: take("code_challenge")?,
            code_challenge_method: take("code_challenge_method")?,
            state: take("state")?,
            scope: take("scope")?,
            resource: take("resource")?,
        })
    })();
    let params = match params {
        Ok(p) => p,
        Err(e) => return error_page(&e),
    };
    let parked = match authorize::start(&state.app, o, params, &base.url(), &base.mcp_url()).await {
        Ok(p) => p,
        Err(s) => return stop(s),
    };
    let row = RequestRow {
        id: parked.request_id.clone(),
        client_id: parked.client.id.clone(),
        client_name: parked.client.name.clone(),
        redirect_uri: parked.redirect_uri.clone(),
        state: None,
        code_challenge: String::new(),
        resource: parked.resource.clone(),
        scopes: scope::format(parked.scopes),
        browser_digest: String::new(),
        csrf_digest: String::new(),
        signer_kind: None,
        signer_id: None,
        signer_digest: None,
        created_at: 0,
        expires_at: 0,
    };
    let mut res = sign_in_page(
        &row,
        parked.csrf.expose(),
        o.settings.key_sign_in,
        None,
        StatusCode::OK,
    );
    let mut c = cookie::Cookie::build((cookie_name(&base), parked.browser.expose().to_owned()))
        .path("/")
        .http_only(true)
        .same_site(cookie::SameSite::Lax)
        .max_age(cookie::time::Duration::seconds(
            o.settings.request_ttl.num_seconds(),
        ));
    if base.scheme == "https" {
        c = c.secure(true);
    }
    if let Ok(v) = HeaderValue::from_str(&c.build().to_string()) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

/// What both POSTs check first: the server is on, the form came from the issuer's own page
/// (its Origin), and it names a parked request of this browser with its CSRF token.
async fn posted<'a>(
    state: &'a HttpState,
    base: &PublicBase,
    headers: &HeaderMap,
    form: &FormData,
) -> Result<(&'a OAuth, RequestRow), Response> {
    let Some(o) = oauth(state) else {
        return Err(crate::http::error::HttpError::not_found().into_response());
    };
    if !same_origin(headers, base) {
        tracing::warn!("oauth: refused a form from another origin");
        return Err(page(
            StatusCode::FORBIDDEN,
            None,
            shell(
                "Refused",
                html! { h1 { "Refused" } p { "This form must be sent from keyward's own page." } },
            ),
        ));
    }
    let field = |n: &str| form.one(n).ok().flatten();
    let row = authorize::load(
        &state.app,
        field("request_id").unwrap_or_default(),
        browser_cookie(headers, base).as_deref(),
        field("csrf_token"),
    )
    .await
    .map_err(stop)?;
    Ok((o, row))
}

pub async fn sign_in(
    State(state): State<HttpState>,
    Extension(base): Extension<PublicBase>,
    Extension(ip): Extension<ClientIp>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = FormData::parse(&body);
    let (o, row) = match posted(&state, &base, &headers, &form).await {
        Ok(found) => found,
        Err(res) => return res,
    };
    let field = |n: &str| form.one(n).ok().flatten().unwrap_or_default();
    let csrf = field("csrf_token");
    let key = field("api_key").trim();
    // The button pressed decides; without one (Enter in a field), a typed key does.
    let use_key = match form.one("method").ok().flatten() {
        Some("password") => false,
        Some("api_key") => true,
        _ => !key.is_empty(),
    };
    let creds = if use_key {
        if !o.settings.key_sign_in {
            return sign_in_page(
                &row,
                csrf,
                false,
                Some("Sign-in with an API key is turned off on this server."),
                StatusCode::BAD_REQUEST,
            );
        }
        SignIn::Key(key.to_owned())
    } else {
        SignIn::Password {
            username: field("username").to_owned(),
            password: field("password").to_owned(),
        }
    };
    let meta = call_meta(&headers, ip);
    match authorize::sign_in(&state.app, &row, creds, &meta, ip.0).await {
        Ok(signer) => match consent::ceilings_for(&state.app, &signer).await {
            Ok(ceilings) => consent_page(&row, csrf, &signer, &ceilings),
            Err(e) => error_page(&e.description),
        },
        Err(refused) => {
            let (status, msg) = match &refused {
                Refused::LockedOut(_)
                | Refused::Credential {
                    lock: crate::ops::auth::Lock::Already(_) | crate::ops::auth::Lock::Over(Some(_)),
                    ..
                } => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many failed sign-ins from this address; wait a while and try again.",
                ),
                Refused::Credential { rejected, .. } if rejected.until.is_some() => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many failed sign-ins for this username; wait a few seconds and try again.",
                ),
                Refused::Failed(e)
                    if matches!(
                        e.kind(),
                        crate::ops::ErrorKind::Unavailable | crate::ops::ErrorKind::Internal
                    ) =>
                {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "The server cannot check sign-ins right now; try again shortly.",
                    )
                }
                _ => (
                    StatusCode::UNAUTHORIZED,
                    "Sign-in failed: check what you typed.",
                ),
            };
            sign_in_page(&row, csrf, o.settings.key_sign_in, Some(msg), status)
        }
    }
}

pub async fn decision(
    State(state): State<HttpState>,
    Extension(base): Extension<PublicBase>,
    Extension(ip): Extension<ClientIp>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = FormData::parse(&body);
    let (o, row) = match posted(&state, &base, &headers, &form).await {
        Ok(found) => found,
        Err(res) => return res,
    };
    let decision = match form.one("decision") {
        // Unticking every tenant box sends no `tenants` at all: that is "none", not "mine".
        Ok(Some("approve"))
            if form.one("tenants_shown").ok().flatten().is_some()
                && form.all("tenants").iter().all(|t| t.trim().is_empty()) =>
        {
            return error_page("choose at least one tenant, or deny");
        }
        Ok(Some("approve")) => Decision::Approve {
            role: form.one("role").ok().flatten().map(str::to_owned),
            tenants: form.all("tenants").to_vec(),
        },
        Ok(Some("deny")) => Decision::Deny,
        _ => return error_page("choose Allow or Deny"),
    };
    let meta = call_meta(&headers, ip);
    match consent::decide(&state.app, o, row, decision, &meta, &base.url()).await {
        Ok(to) => see_other(&to),
        Err(s) => stop(s),
    }
}
