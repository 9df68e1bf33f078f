//! The authorization server's HTTP surface: RFC 8414 metadata, registration, the token and
//! revocation endpoints (public: CORS `*`, no cookies), and the browser's authorization and
//! sign-in pages (same origin only). Routes exist only while the server is on.

mod endpoints;
mod html;
mod pages;

use std::collections::HashMap;

use axum::Router;
use axum::routing::{get, post};

use super::HttpState;

/// The public protocol routes (CORS `*` is added by the caller) and the browser's pages.
pub fn routes() -> (Router<HttpState>, Router<HttpState>) {
    let public = Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get(endpoints::metadata),
        )
        .route("/register", post(endpoints::register))
        .route("/token", post(endpoints::token))
        .route("/revoke", post(endpoints::revoke));
    let pages = Router::new()
        .route("/authorize", get(pages::authorize))
        .route("/authorize/sign-in", post(pages::sign_in))
        .route("/authorize/decision", post(pages::decision));
    (public, pages)
}

/// A form body (`application/x-www-form-urlencoded`) or query string: every value of each
/// name, so a repeated parameter can be refused (RFC 6749 §3.1) or collected (`tenants`).
pub(crate) struct FormData(HashMap<String, Vec<String>>);

impl FormData {
    pub fn parse(bytes: &[u8]) -> Self {
        let mut m: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(bytes) {
            m.entry(k.into_owned()).or_default().push(v.into_owned());
        }
        FormData(m)
    }

    /// The one value of `name`; `Err` when it was sent more than once.
    pub fn one(&self, name: &str) -> Result<Option<&str>, String> {
        match self.0.get(name).map(Vec::as_slice) {
            None | Some([]) => Ok(None),
            Some([v]) => Ok(Some(v.as_str())),
            Some(_) => Err(format!("parameter {name} was sent more than once")),
        }
    }

    pub fn all(&self, name: &str) -> &[String] {
        self.0.get(name).map_or(&[], Vec::as_slice)
    }
}
