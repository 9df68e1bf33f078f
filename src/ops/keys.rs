//! Key use cases: create, list, get, rotate, disable, enable, revoke.
//!
//! A caller sees only keys whose tenants all lie within its own, and manages only keys whose
//! role and tenants it could have created itself; anything else is "not found" or refused with
//! the missing permission or tenant named.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};

use super::OpsError;
use super::call::{Call, Target, changed, ensure_reach};
use super::views::{KeyPage, KeyStatus, KeyView, KeyWithSecret};
use crate::domain::key::PlainKey;
use crate::domain::permission::Permission;
use crate::domain::policy::{self, Reach};
use crate::domain::principal::Principal;
use crate::domain::role::validate_role_name;
use crate::domain::tenant::TenantScope;
use crate::domain::{ids, timespec};
use crate::ops::app::App;
use crate::store::{self, Hold, Tx, from_micros, keys::KeyRow};

/// Longest a rotated-out secret may keep working.
pub const MAX_GRACE: Duration = Duration::hours(24);
pub const DEFAULT_PAGE: i64 = 20;
pub const MAX_PAGE: i64 = 100;

pub struct CreateKey {
    pub name: String,
    pub description: Option<String>,
    pub role: String,
    pub tenants: Vec<String>,
    pub expires: Option<String>,
}

pub async fn create(app: &App, call: &Call, input: CreateKey) -> Result<KeyWithSecret, OpsError> {
    let p = call.principal();
    policy::require(p, Permission::KeyCreate)?;
    let now = app.now();
    let name = check_name(&input.name)?;
    let description = ids::check_label(
        "description",
        input.description.as_deref().unwrap_or(""),
        1000,
        true,
    )?;
    let role_name = validate_role_name(&input.role)?;
    let scope = TenantScope::parse(&input.tenants)?;
    let requested = timespec::parse_expiry(input.expires.as_deref(), now)?;
    let expires_at = policy::resolve_expiry(p, requested, now)?;

    let mut tx = app.store.begin().await?;
    let role = store::roles::get_in(&mut tx, &role_name, Hold::Share)
        .await?
        .ok_or_else(|| unknown_role(&role_name))?;
    policy::within(
        p,
        format!("cannot create a key with role '{role_name}'"),
        &Reach {
            permissions: role.permissions,
            tenants: Some(&scope),
            expires_at: Some(expires_at),
        },
    )?;
    let new = Mint {
        name: &name,
        description: &description,
        role_name: &role_name,
        tenants: &scope,
        created_by: p.actor().id(),
        expires_at,
    };
    let (id, secret) = mint(&mut tx, &new, now).await?;
    let after = commit_key_change(app, call, tx, now, &id, None).await?;
    Ok(KeyWithSecret {
        key: after,
        api_key: secret.expose().to_owned(),
        previous_secret_valid_until: None,
    })
}

/// A key about to be made, checked already.
pub(crate) struct Mint<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub role_name: &'a str,
    pub tenants: &'a TenantScope,
    pub created_by: Option<&'a str>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// The one place a key is made: a fresh id and secret, stored by digest in `tx`. Returns the id
/// and the secret (shown once, by the caller's answer).
pub(crate) async fn mint(
    tx: &mut Tx,
    new: &Mint<'_>,
    now: DateTime<Utc>,
) -> Result<(String, PlainKey), OpsError> {
    let secret = PlainKey::generate();
    let id = ids::new_key_id();
    let row = store::keys::NewKey {
        id: &id,
        name: new.name,
        description: new.description,
        role_name: new.role_name,
        tenants: new.tenants,
        preview: &secret.preview(),
        digest: &secret.digest(),
        created_by: new.created_by,
        expires_at: new.expires_at,
    };
    store::keys::insert(tx, &row, now).await?;
    Ok((id, secret))
}

pub struct ListKeys {
    pub roles: Vec<String>,
    pub include_revoked: bool,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

pub async fn list(app: &App, p: &Principal, input: ListKeys) -> Result<KeyPage, OpsError> {
    policy::require(p, Permission::KeyRead)?;
    let limit = page_size(input.limit)?;
    let roles = crate::domain::limits::distinct("role", &input.roles)?
        .iter()
        .map(|r| validate_role_name(r))
        .collect::<Result<Vec<_>, _>>()?;
    let after = input.cursor.as_deref().map(decode_cursor).transpose()?;
    let filter = store::keys::ListFilter {
        visible_to: p.tenants(),
        roles: &roles,
        include_revoked: input.include_revoked,
        after,
        limit: limit + 1,
    };
    let mut rows = store::keys::list(&app.store, &filter).await?;
    let truncated = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let now = app.now();
    let next_cursor = if truncated {
        rows.last().map(|r| encode_cursor(r.created_at, &r.id))
    } else {
        None
    };
    Ok(KeyPage {
        keys: rows
            .iter()
            .map(|r| view(r, now))
            .collect::<Result<_, _>>()?,
        truncated,
        next_cursor,
    })
}

pub async fn get(app: &App, p: &Principal, key_id: &str) -> Result<KeyView, OpsError> {
    policy::require(p, Permission::KeyRead)?;
    let id = ids::check_id("key", key_id)?;
    let row = store::keys::get(&app.store, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    if !row.tenant_scope()?.is_within(p.tenants()) {
        return Err(not_found(&id));
    }
    view(&row, app.now())
}

/// Issues a new secret for a key. The key keeps its id, role, tenants and expiry; the old
/// secret stops at once, or after `grace` (at most 24 hours).
pub async fn rotate(
    app: &App,
    call: &Call,
    key_id: &str,
    grace: Option<&str>,
) -> Result<KeyWithSecret, OpsError> {
    let p = call.principal();
    policy::require(p, Permission::KeyUpdate)?;
    let grace = match grace {
        Some(g) => timespec::parse_duration(g)?,
        None => Duration::zero(),
    };
    if grace > MAX_GRACE {
        return Err(OpsError::invalid("grace_period may be at most 24h"));
    }
    let now = app.now();
    let mut tx = app.store.begin().await?;
    // Rotating hands over a secret: the key must not outlive the caller either.
    let before = load_managed(&mut tx, p, key_id, "rotate", now, true).await?;
    match before.status {
        KeyStatus::Revoked => {
            return Err(OpsError::Conflict(format!(
                "key {} is revoked and cannot be rotated",
                before.id
            )));
        }
        KeyStatus::Expired => {
            return Err(OpsError::Conflict(format!(
                "key {} has expired; create a new key instead",
                before.id
            )));
        }
        KeyStatus::Active | KeyStatus::Disabled => {}
    }
    let secret = PlainKey::generate();
    let old_until = now + grace;
    store::keys::rotate(
        &mut tx,
        &before.id,
        &secret.digest(),
        &secret.preview(),
        old_until,
        now,
    )
    .await?;
    let after = commit_key_change(app, call, tx, now, &before.id, Some(&before)).await?;
    Ok(KeyWithSecret {
        key: after,
        api_key: secret.expose().to_owned(),
        previous_secret_valid_until: (grace > Duration::zero())
            .then(|| timespec::format_utc(old_until)),
    })
}

/// Disables (`enabled = false`) or re-enables a key. Revoked keys stay revoked.
pub async fn set_enabled(
    app: &App,
    call: &Call,
    key_id: &str,
    enabled: bool,
) -> Result<KeyView, OpsError> {
    let p = call.principal();
    policy::require(p, Permission::KeyUpdate)?;
    let now = app.now();
    let mut tx = app.store.begin().await?;
    let verb = if enabled { "enable" } else { "disable" };
    // Enabling hands the key's power out again: it must not outlive the caller.
    let before = load_managed(&mut tx, p, key_id, verb, now, enabled).await?;
    if before.status == KeyStatus::Revoked {
        return Err(OpsError::Conflict(format!(
            "key {} is revoked; revocation is permanent",
            before.id
        )));
    }
    let already = if enabled {
        before.disabled_at.is_none()
    } else {
        before.disabled_at.is_some()
    };
    if !already {
        store::keys::set_disabled(&mut tx, &before.id, (!enabled).then_some(now)).await?;
    }
    if !enabled {
        // Disabling ends what the key consented to: enabling it again revives nothing.
        crate::ops::oauth::grants::end_signer(
            &mut tx,
            call,
            &before.id,
            now,
            "the signing key was disabled",
        )
        .await?;
    }
    let after = commit_key_change(app, call, tx, now, &before.id, Some(&before)).await?;
    Ok(after)
}

/// Revokes a key permanently. Revoking a revoked key changes nothing and succeeds.
pub async fn revoke(app: &App, call: &Call, key_id: &str) -> Result<KeyView, OpsError> {
    let p = call.principal();
    policy::require(p, Permission::KeyRevoke)?;
    let now = app.now();
    let mut tx = app.store.begin().await?;
    let before = load_managed(&mut tx, p, key_id, "revoke", now, false).await?;
    if before.revoked_at.is_none() {
        store::keys::set_revoked(&mut tx, &before.id, now).await?;
        crate::ops::oauth::grants::end_signer(
            &mut tx,
            call,
            &before.id,
            now,
            "the signing key was revoked",
        )
        .await?;
    }
    let after = commit_key_change(app, call, tx, now, &before.id, Some(&before)).await?;
    Ok(after)
}

/// Loads a key the caller may manage: visible to it, and with a role and tenants it holds.
async fn load_managed(
    tx: &mut Tx,
    p: &Principal,
    key_id: &str,
    verb: &str,
    now: DateTime<Utc>,
    within_lifetime: bool,
) -> Result<KeyView, OpsError> {
    let id = ids::check_id("key", key_id)?;
    let row = store::keys::get_in(tx, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    let scope = row.tenant_scope()?;
    if !scope.is_within(p.tenants()) {
        return Err(not_found(&id));
    }
    let action = format!("cannot {verb} key {id} (role '{}')", row.role_name);
    let expiry = within_lifetime.then(|| row.expires());
    ensure_reach(tx, p, &row.role_name, &scope, expiry, action).await?;
    view(&row, now)
}

/// Reads the key as changed, then commits the change together with its audit record.
async fn commit_key_change(
    app: &App,
    call: &Call,
    mut tx: Tx,
    now: DateTime<Utc>,
    id: &str,
    before: Option<&KeyView>,
) -> Result<KeyView, OpsError> {
    let row = store::keys::get_in(&mut tx, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    let after = view(&row, now)?;
    let tenants = Some(after.tenants.clone());
    call.commit_with(
        tx,
        now,
        changed(Target::key(id, &row.name), tenants, before, Some(&after)),
    )
    .await?;
    // Verifications cached on this replica must not outlive the change.
    app.forget_credentials();
    Ok(after)
}

pub fn view(row: &KeyRow, now: DateTime<Utc>) -> Result<KeyView, OpsError> {
    let fmt = |t: Option<i64>| t.map(|t| timespec::format_utc(from_micros(t)));
    let status = if row.revoked_at.is_some() {
        KeyStatus::Revoked
    } else if row.disabled_at.is_some() {
        KeyStatus::Disabled
    } else if row.expires().is_some_and(|e| e <= now) {
        KeyStatus::Expired
    } else {
        KeyStatus::Active
    };
    Ok(KeyView {
        id: row.id.clone(),
        // Names and descriptions stored before they were restricted and neutralised show the
        // same way as new ones.
        name: crate::domain::text::neutralize(&row.name, false).into_owned(),
        description: crate::domain::text::neutralize(&row.description, true).into_owned(),
        role: row.role_name.clone(),
        tenants: row.tenant_scope()?.to_vec(),
        preview: row.preview.clone(),
        status,
        created_at: timespec::format_utc(from_micros(row.created_at)),
        created_by: row.created_by.clone(),
        expires_at: fmt(row.expires_at),
        disabled_at: fmt(row.disabled_at),
        revoked_at: fmt(row.revoked_at),
        rotated_at: fmt(row.rotated_at),
        last_used_at: fmt(row.last_used_at),
    })
}

/// A key name as the rules allow it (see `ids::check_key_name`).
pub(crate) fn check_name(text: &str) -> Result<String, OpsError> {
    Ok(ids::check_key_name(text)?)
}

fn not_found(id: &str) -> OpsError {
    OpsError::NotFound(format!(
        "no key with id {id} (or it is outside your tenants)"
    ))
}

pub(crate) fn unknown_role(name: &str) -> OpsError {
    OpsError::NotFound(format!(
        "role '{name}' does not exist; role_list shows the roles"
    ))
}

pub(crate) fn page_size(limit: Option<i64>) -> Result<i64, OpsError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(OpsError::invalid(format!(
            "limit must be between 1 and {MAX_PAGE}"
        ))),
    }
}

fn encode_cursor(created_at: i64, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{created_at}:{id}"))
}

fn decode_cursor(text: &str) -> Result<(i64, String), OpsError> {
    let bad = || OpsError::invalid("invalid cursor: pass next_cursor exactly as returned");
    let raw = URL_SAFE_NO_PAD.decode(text.trim()).map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (at, id) = raw.split_once(':').ok_or_else(bad)?;
    let at = at.parse().map_err(|_| bad())?;
    let id = ids::check_id("key", id).map_err(|_| bad())?;
    Ok((at, id))
}
