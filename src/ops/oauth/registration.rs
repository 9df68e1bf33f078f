//! Dynamic client registration (RFC 7591): validated, identical public registrations
//! answered with the client already made, limited per address, and audited (refusals and
//! repeats once per burst per address, so the trail cannot be flooded).

use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::clients::{
    AUTH_BASIC, AUTH_NONE, AUTH_POST, GRANT_CODE, GRANT_REFRESH, MAX_NAME, check_redirects,
};
use super::{OAuth, OAuthError, Subject};
use crate::domain::audit::{Action, Status};
use crate::domain::encoding::hex;
use crate::domain::oauth::token::{self, OAuthSecret, TokenKind};
use crate::ops::app::App;
use crate::ops::call::CallMeta;
use crate::store::{self, micros};

/// A registration request (RFC 7591 §2). Unknown members are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Registration {
    pub redirect_uris: Option<Value>,
    pub client_name: Option<Value>,
    pub token_endpoint_auth_method: Option<Value>,
    pub grant_types: Option<Value>,
    pub response_types: Option<Value>,
    pub client_uri: Option<Value>,
    pub logo_uri: Option<Value>,
    pub scope: Option<Value>,
    pub software_id: Option<Value>,
    pub software_version: Option<Value>,
}

fn strings(v: &Option<Value>, field: &str) -> Result<Option<Vec<String>>, OAuthError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str().map(str::to_owned).ok_or_else(|| {
                    OAuthError::new(
                        "invalid_client_metadata",
                        format!("{field} must be an array of strings"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(OAuthError::new(
            "invalid_client_metadata",
            format!("{field} must be an array of strings"),
        )),
    }
}

fn text(v: &Option<Value>, field: &str, max: usize) -> Result<Option<String>, OAuthError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            // Controls and invisible characters (bidi overrides, zero-width) go: a name
            // shown on the consent page must read as it is.
            let s: String = s
                .chars()
                .filter(|c| !c.is_control() && !crate::domain::text::is_hidden(*c))
                .collect();
            let s = s.trim();
            if s.chars().count() > max {
                return Err(OAuthError::new(
                    "invalid_client_metadata",
                    format!("{field} is longer than {max} characters"),
                ));
            }
            Ok((!s.is_empty()).then(|| s.to_owned()))
        }
        Some(_) => Err(OAuthError::new(
            "invalid_client_metadata",
            format!("{field} must be a string"),
        )),
    }
}

fn https_uri(v: &Option<Value>, field: &str) -> Result<Option<String>, OAuthError> {
    let Some(s) = text(v, field, 2000)? else {
        return Ok(None);
    };
    match url::Url::parse(&s) {
        Ok(u) if u.scheme() == "https" && u.fragment().is_none() && u.username().is_empty() => {
            Ok(Some(s))
        }
        _ => Err(OAuthError::new(
            "invalid_client_metadata",
            format!("{field} must be an https URL"),
        )),
    }
}

/// The answer to a registration: the RFC 7591 response body (absent fields omitted).
pub struct Registered {
    pub body: Value,
    /// An identical public registration already existed: its client is returned.
    pub existing: bool,
}

/// Registers a client from `ip` (RFC 7591). Identical public registrations get the same
/// client back; registrations are limited per address; refused and repeated ones are audited
/// once per burst per address, so the trail cannot be flooded.
pub async fn register(
    app: &App,
    oauth: &OAuth,
    body: &Value,
    meta: &CallMeta,
    address: &str,
) -> Result<Registered, OAuthError> {
    let now = app.now();
    if !oauth.registrations.hit(address, now) {
        tracing::warn!(client_ip = %address, "oauth register: rate limited");
        record_refusal(
            app,
            oauth,
            meta,
            address,
            "too many registrations from this address",
        )
        .await;
        return Err(OAuthError::new(
            "slow_down",
            "too many registrations from this address; try again in a minute",
        ));
    }
    let reg: Registration = match serde_json::from_value(body.clone()) {
        Ok(r) => r,
        Err(_) => {
            return Err(OAuthError::new(
                "invalid_client_metadata",
                "the registration must be a JSON object",
            ));
        }
    };
    let checked = match validate(&reg, oauth) {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(client_ip = %address, error = e.code, "oauth register: refused");
            record_refusal(app, oauth, meta, address, &e.description).await;
            return Err(e);
        }
    };
    let public = checked.auth_method == AUTH_NONE;
    let fingerprint = public.then(|| fingerprint(&checked));
    if let Some(fp) = &fingerprint
        && let Some(row) = store::oauth::find_client_by_fingerprint(&app.store, fp).await?
    {
        tracing::info!(client_id = %row.id, "oauth register: identical public registration, existing client returned");
        if oauth.refusals.hit(&format!("dedup {address}"), now) {
            let mut ev = super::event(
                meta,
                now,
                Action::OauthRegister,
                Status::Success,
                &Subject::anonymous(),
                ("oauth_client", &row.id),
                Some("identical registration: existing client returned".to_owned()),
            );
            ev.target_name = super::client_name(row.name.as_deref());
            app.audit.record(ev).await?;
        }
        let mut body = response_body(&row.id, row.created_at, &checked, None);
        if let Value::Object(m) = &mut body {
            m.remove("client_secret");
        }
        return Ok(Registered {
            body,
            existing: true,
        });
    }
    let id = token::random_id("kwc_");
    let secret = (!public).then(|| OAuthSecret::generate(TokenKind::ClientSecret));
    let created = now.timestamp();
    let body = response_body(&id, micros(now), &checked, secret.as_ref());
    let mut metadata = body.clone();
    if let Value::Object(m) = &mut metadata {
        m.remove("client_secret");
    }
    let row = store::oauth::ClientRow {
        id: id.clone(),
        name: checked.name.clone(),
        redirect_uris: serde_json::to_string(&checked.redirect_uris).unwrap_or_default(),
        grant_types: checked.grant_types.join(" "),
        auth_method: checked.auth_method.clone(),
        secret_digest: secret.as_ref().map(OAuthSecret::digest_hex),
        fingerprint,
        metadata: metadata.to_string(),
        created_at: micros(now),
        last_used_at: None,
    };
    store::oauth::insert_client(&app.store, &row).await?;
    let mut ev = super::event(
        meta,
        now,
        Action::OauthRegister,
        Status::Success,
        &Subject::anonymous(),
        ("oauth_client", &id),
        None,
    );
    ev.target_name = super::client_name(row.name.as_deref());
    app.audit.record(ev).await?;
    tracing::info!(client_id = %id, public, issued_at = created, "oauth register: client registered");
    Ok(Registered {
        body,
        existing: false,
    })
}

async fn record_refusal(app: &App, oauth: &OAuth, meta: &CallMeta, address: &str, why: &str) {
    if !oauth.refusals.hit(&format!("refused {address}"), app.now()) {
        return;
    }
    let ev = super::event(
        meta,
        app.now(),
        Action::OauthRegister,
        Status::Denied,
        &Subject::anonymous(),
        ("oauth_client", "-"),
        Some(crate::domain::audit::claim(why, 200)),
    );
    if let Err(e) = app.audit.record(ev).await {
        tracing::warn!(error = %e, "could not audit a refused registration");
    }
}

struct Checked {
    redirect_uris: Vec<String>,
    name: Option<String>,
    auth_method: String,
    grant_types: Vec<String>,
    client_uri: Option<String>,
    logo_uri: Option<String>,
    software_id: Option<String>,
    software_version: Option<String>,
}

fn validate(reg: &Registration, oauth: &OAuth) -> Result<Checked, OAuthError> {
    let redirect_uris = strings(&reg.redirect_uris, "redirect_uris")?.unwrap_or_default();
    check_redirects(&redirect_uris, oauth)?;
    let auth_method = text(
        &reg.token_endpoint_auth_method,
        "token_endpoint_auth_method",
        64,
    )?
    // RFC 7591 §2: the default is client_secret_basic.
    .unwrap_or_else(|| AUTH_BASIC.to_owned());
    if ![AUTH_NONE, AUTH_POST, AUTH_BASIC].contains(&auth_method.as_str()) {
        return Err(OAuthError::new(
            "invalid_client_metadata",
            "token_endpoint_auth_method must be none, client_secret_post or client_secret_basic",
        ));
    }
    let grant_types =
        strings(&reg.grant_types, "grant_types")?.unwrap_or_else(|| vec![GRANT_CODE.to_owned()]);
    if grant_types.is_empty()
        || grant_types
            .iter()
            .any(|g| g != GRANT_CODE && g != GRANT_REFRESH)
    {
        return Err(OAuthError::new(
            "invalid_client_metadata",
            "grant_types may hold only authorization_code and refresh_token",
        ));
    }
    if !grant_types.iter().any(|g| g == GRANT_CODE) {
        return Err(OAuthError::new(
            "invalid_client_metadata",
            "grant_types must include authorization_code",
        ));
    }
    let response_types =
        strings(&reg.response_types, "response_types")?.unwrap_or_else(|| vec!["code".to_owned()]);
    if response_types.iter().any(|r| r != "code") {
        return Err(OAuthError::new(
            "invalid_client_metadata",
            "response_types may hold only code",
        ));
    }
    let mut grant_types = grant_types;
    grant_types.sort();
    grant_types.dedup();
    Ok(Checked {
        redirect_uris,
        name: text(&reg.client_name, "client_name", MAX_NAME)?,
        auth_method,
        grant_types,
        client_uri: https_uri(&reg.client_uri, "client_uri")?,
        logo_uri: https_uri(&reg.logo_uri, "logo_uri")?,
        software_id: text(&reg.software_id, "software_id", 200)?,
        software_version: text(&reg.software_version, "software_version", 100)?,
    })
}

fn fingerprint(c: &Checked) -> String {
    let canonical = json!([
        c.redirect_uris,
        c.name,
        c.auth_method,
        c.grant_types,
        c.client_uri,
        c.logo_uri,
        c.software_id,
        c.software_version
    ]);
    hex(&Sha256::digest(canonical.to_string().as_bytes()))
}

fn response_body(id: &str, created_us: i64, c: &Checked, secret: Option<&OAuthSecret>) -> Value {
    let mut m = Map::new();
    m.insert("client_id".into(), json!(id));
    m.insert("client_id_issued_at".into(), json!(created_us / 1_000_000));
    if let Some(s) = secret {
        m.insert("client_secret".into(), json!(s.expose()));
        // Never expires.
        m.insert("client_secret_expires_at".into(), json!(0));
    }
    m.insert("redirect_uris".into(), json!(c.redirect_uris));
    m.insert("token_endpoint_auth_method".into(), json!(c.auth_method));
    m.insert("grant_types".into(), json!(c.grant_types));
    m.insert("response_types".into(), json!(["code"]));
    for (k, v) in [
        ("client_name", &c.name),
        ("client_uri", &c.client_uri),
        ("logo_uri", &c.logo_uri),
        ("software_id", &c.software_id),
        ("software_version", &c.software_version),
    ] {
        if let Some(v) = v {
            m.insert(k.into(), json!(v));
        }
    }
    Value::Object(m)
}
