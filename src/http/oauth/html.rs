//! How the pages look: the sign-in and consent pages, the error page, and the headers every
//! page carries (CSP with `frame-ancestors 'none'` and a `form-action` that lets the final
//! redirect through, no caching, `Referrer-Policy: same-origin`). Rendered with maud, which
//! escapes everything it is given.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::domain::oauth::{redirect, scope};
use crate::domain::permission::PermissionSet;
use crate::domain::principal::{Actor, Principal};
use crate::store::oauth::RequestRow;

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:34rem;margin:2rem auto;padding:0 1rem;color:#222}\
h1{font-size:1.4rem}fieldset{border:1px solid #ccc;border-radius:6px;margin:1rem 0;padding:1rem}\
label{display:block;margin:.5rem 0 .2rem}input[type=text],input[type=password],select{width:100%;padding:.4rem;box-sizing:border-box}\
button{margin:.8rem .5rem 0 0;padding:.5rem 1.2rem}.note{color:#555;font-size:.9rem}.warn{color:#a00}\
dt{font-weight:600;margin-top:.5rem}dd{margin-left:0}";

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
pub(super) fn page(status: StatusCode, redirect_uri: Option<&str>, body: Markup) -> Response {
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

pub(super) fn shell(title: &str, content: Markup) -> Markup {
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

pub(super) fn error_page(message: &str) -> Response {
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

pub(super) fn see_other(location: &str) -> Response {
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

pub(super) fn sign_in_page(
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
        Actor::Key { id, preview, .. } => format!("API key {id} ({preview}…)"),
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

pub(super) fn consent_page(
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
