//! The pages a person sees: sign-in (operator password, or an API key they paste) and consent.
//! Plain HTML forms that work without JavaScript, rendered with auto-escaping (maud). Each
//! parked request is bound to the browser that opened it (a `__Host-` cookie on https) and
//! carries a CSRF token; the POSTs must come from the issuer's own Origin.

use axum::body::Bytes;
use axum::extract::{Extension, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::FormData;
use crate::domain::oauth::{redirect, scope};
use crate::domain::permission::PermissionSet;
use crate::domain::principal::{Actor, Principal};
use crate::http::HttpState;
use crate::http::auth::call_meta;
use crate::http::edge::{ClientIp, PublicBase};
use crate::ops::auth::Refused;
use crate::ops::oauth::OAuth;
use crate::ops::oauth::authorize::{self, Decision, Params, SignIn, Stop};
use crate::store::oauth::RequestRow;

const COOKIE: &str = "keyward_authz";
const HOST_COOKIE: &str = "__Host-keyward_authz";

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:34rem;margin:2rem auto;padding:0 1rem;color:#222}\
h1{font-size:1.4rem}fieldset{border:1px solid #ccc;border-radius:6px;margin:1rem 0;padding:1rem}\
label{display:block;margin:.5rem 0 .2rem}input[type=text],input[type=password],select{width:100%;padding:.4rem;box-sizing:border-box}\
button{margin:.8rem .5rem 0 0;padding:.5rem 1.2rem}.note{color:#555;font-size:.9rem}.warn{color:#a00}\
dt{font-weight:600;margin-top:.5rem}dd{margin-left:0}";

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

/// `form-action` must also let the final redirect to the client through (browsers apply it
/// to a form's redirects).
fn form_action(redirect_uri: Option<&str>) -> String {
    let target = redirect_uri
        .and_then(|r| url::Url::parse(r).ok())
        .map(|u| match u.scheme() {
            "https" => u.origin().ascii_serialization(),
            // Loopback: the port is the client's choice at each sign-in.
            "http" => format!("http://{}:*", u.host_str().unwrap_or("localhost")),
            other => format!("{other}:"),
        });
    match target {
        Some(t) => format!("'self' {t}"),
        None => "'self'".to_owned(),
    }
}

/// A page with the headers every one of them carries.
fn page(status: StatusCode, redirect_uri: Option<&str>, body: Markup) -> Response {
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; base-uri 'none'; \
         frame-ancestors 'none'; form-action {}",
        form_action(redirect_uri)
    );
    let mut res = (status, body.into_string()).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Never no-referrer: under it browsers send `Origin: null` on a form POST.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    res
}

fn shell(title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · keyward" }
                style { (PreEscaped(STYLE)) }
            }
            body { (PreEscaped(content.into_string())) }
        }
    }
}

fn error_page(message: &str) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        None,
        shell(
            "Cannot continue",
            html! {
                h1 { "This request cannot continue" }
                p { (message) }
                p.note { "Nothing was shared with the application. Close this page and start again from the application." }
            },
        ),
    )
}

fn see_other(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) if !location.is_empty() => {
            let mut res = StatusCode::SEE_OTHER.into_response();
            res.headers_mut().insert(header::LOCATION, v);
            res.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        _ => error_page("the application's redirect address is not usable"),
    }
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

/// Who the application is, as far as keyward can tell: the client's own name (self-asserted),
/// the host that vouches for it, where it will be sent, and what it will reach.
fn about_client(row: &RequestRow) -> Markup {
    let verified = if row.client_id.starts_with("https://") {
        redirect::host(&row.client_id).unwrap_or_default()
    } else {
        format!("registered with this server ({})", row.client_id)
    };
    let redirect_host = redirect::host(&row.redirect_uri).unwrap_or_default();
    // Loopback, or a private-use scheme (cursor://…): an application on this computer.
    let loopback =
        redirect::is_loopback(&row.redirect_uri) || !row.redirect_uri.starts_with("https://");
    html! {
        dl {
            dt { "Application" }
            dd { (row.client_name.as_deref().unwrap_or("(unnamed)")) " " span.note { "(name chosen by the application itself, unverified)" } }
            dt { "Identified by" }
            dd { (verified) }
            dt { "Will be sent back to" }
            dd { (redirect_host) @if loopback { " " span.warn { "(an application on this computer)" } } }
            dt { "Will act on" }
            dd { (row.resource) }
        }
    }
}

fn sign_in_page(
    row: &RequestRow,
    csrf: &str,
    key_sign_in: bool,
    failure: Option<&str>,
    status: StatusCode,
) -> Response {
    let body = shell(
        "Sign in",
        html! {
            h1 { "Sign in to keyward" }
            p { "An application asks to act for you. Sign in first; you choose how much it may do next." }
            (about_client(row))
            @if let Some(f) = failure { p.warn role="alert" { (f) } }
            form method="post" action="/authorize/sign-in" {
                input type="hidden" name="request_id" value=(row.id);
                input type="hidden" name="csrf_token" value=(csrf);
                fieldset {
                    legend { "Operator" }
                    label for="username" { "Username" }
                    input type="text" id="username" name="username" autocomplete="username";
                    label for="password" { "Password" }
                    input type="password" id="password" name="password" autocomplete="current-password";
                    button type="submit" name="method" value="password" { "Sign in" }
                }
                @if key_sign_in {
                    fieldset {
                        legend { "Or an API key you hold" }
                        label for="api_key" { "API key" }
                        input type="password" id="api_key" name="api_key" autocomplete="off";
                        p.note { "The key is checked and forgotten: it is never stored, logged or given to the application." }
                        button type="submit" name="method" value="api_key" { "Sign in with the key" }
                    }
                }
            }
        },
    );
    page(status, None, body)
}

fn who(p: &Principal) -> String {
    match p.actor() {
        Actor::Operator { username, .. } => format!("operator {username}"),
        Actor::Key { id, preview } => format!("API key {id} ({preview}…)"),
        Actor::Legacy => "the shared key".to_owned(),
        Actor::Development => "development".to_owned(),
    }
}

fn perms(set: PermissionSet) -> String {
    let s = scope::format(set);
    if s.is_empty() {
        "(nothing)".to_owned()
    } else {
        s
    }
}

fn consent_page(
    row: &RequestRow,
    csrf: &str,
    signer: &Principal,
    ceilings: &[(String, PermissionSet)],
) -> Response {
    let requested = scope::parse(Some(&row.scopes));
    let default = crate::domain::oauth::ceiling::default_for(requested, signer.permissions());
    let all_tenants = signer.tenants().is_all();
    let body = shell(
        "Allow access",
        html! {
            h1 { "Allow this application to act for you?" }
            p { "Signed in as " strong { (who(signer)) } " (role " (signer.role()) ")." }
            (about_client(row))
            form method="post" action="/authorize/decision" {
                input type="hidden" name="request_id" value=(row.id);
                input type="hidden" name="csrf_token" value=(csrf);
                fieldset {
                    legend { "How much it may do (never more than you)" }
                    label for="role" { "Ceiling" }
                    select id="role" name="role" {
                        option value="" selected { "What it asked for, within your role: " (perms(default)) }
                        @for (name, set) in ceilings {
                            option value=(name) { "Role " (name) ": " (perms(*set)) }
                        }
                    }
                    label { "Tenants" }
                    input type="hidden" name="tenants_shown" value="1";
                    @if all_tenants {
                        input type="text" name="tenants" value="*" aria-label="tenants";
                        p.note { "* means every tenant; or name one tenant here." }
                    } @else {
                        @for t in signer.tenants().to_vec() {
                            label { input type="checkbox" name="tenants" value=(t) checked; " " (t) }
                        }
                    }
                    p.note { "Its access lasts until you revoke it (grant_revoke), and ends at once if your own access is narrowed or revoked." }
                }
                button type="submit" name="decision" value="approve" { "Allow" }
                button type="submit" name="decision" value="deny" { "Deny" }
            }
        },
    );
    page(StatusCode::OK, Some(&row.redirect_uri), body)
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
        Ok(signer) => match authorize::ceilings_for(&state.app, &signer).await {
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
    match authorize::decide(&state.app, o, row, decision, &meta, &base.url()).await {
        Ok(to) => see_other(&to),
        Err(s) => stop(s),
    }
}
