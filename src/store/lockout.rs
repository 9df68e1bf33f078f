//! Failed-authentication counters per client address, the per-username sign-in throttle and
//! the addresses each username signed in from, shared by every replica on the database.

use chrono::{DateTime, Utc};

use super::{StoreError, db, from_micros, micros, on_pool};
use crate::domain::at_rest::Place;
use crate::domain::lockout::LockoutPolicy;

/// The state after recording one failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureCount {
    pub failures: i64,
    pub locked_until: Option<DateTime<Utc>>,
}

/// Counts one failure from `ip` and locks it once the threshold is reached, in one atomic
/// statement: concurrent failures (from any replica) each see a distinct count.
pub async fn record_failure(
    store: &super::Store,
    ip: &str,
    now: DateTime<Utc>,
    policy: &LockoutPolicy,
) -> Result<FailureCount, StoreError> {
    let sealed = store.seal.eq(Place::FailureIp, ip);
    let ip: &str = &sealed;
    // A window that started at or before `stale` is over: the count starts again at 1.
    let sql = "INSERT INTO auth_failures (client_ip, window_start, failures, locked_until) \
        VALUES ($1, $2, 1, CASE WHEN 1 >= $4 THEN $5 ELSE NULL END) \
        ON CONFLICT (client_ip) DO UPDATE SET \
          failures = CASE WHEN auth_failures.window_start <= $3 THEN 1 ELSE auth_failures.failures + 1 END, \
          window_start = CASE WHEN auth_failures.window_start <= $3 THEN $2 ELSE auth_failures.window_start END, \
          locked_until = CASE \
            WHEN auth_failures.locked_until IS NOT NULL AND auth_failures.locked_until > $2 THEN auth_failures.locked_until \
            WHEN (CASE WHEN auth_failures.window_start <= $3 THEN 1 ELSE auth_failures.failures + 1 END) >= $4 THEN $5 \
            ELSE NULL END \
        RETURNING failures, locked_until";
    let (failures, locked_until): (i64, Option<i64>) = on_pool!(store, p => sqlx::query_as(sql)
        .bind(ip)
        .bind(micros(now))
        .bind(micros(now - policy.window))
        .bind(policy.threshold)
        .bind(micros(now + policy.duration))
        .fetch_one(p)
        .await
        .map_err(db))?;
    Ok(FailureCount {
        failures,
        locked_until: locked_until.map(from_micros).filter(|t| *t > now),
    })
}

/// When `ip` is locked out, until when.
pub async fn locked_until(
    store: &super::Store,
    ip: &str,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let sealed = store.seal.eq(Place::FailureIp, ip);
    let ip: &str = &sealed;
    let until: Option<Option<i64>> = on_pool!(store, p => sqlx::query_scalar(
        "SELECT locked_until FROM auth_failures WHERE client_ip = $1",
    )
    .bind(ip)
    .fetch_optional(p)
    .await
    .map_err(db))?;
    Ok(until.flatten().map(from_micros).filter(|t| *t > now))
}

/// Takes back one counted attempt that turned out to succeed; clears the lock it set, if any.
pub async fn forgive(
    store: &super::Store,
    ip: &str,
    set_lock: Option<DateTime<Utc>>,
) -> Result<(), StoreError> {
    let sealed = store.seal.eq(Place::FailureIp, ip);
    let ip: &str = &sealed;
    on_pool!(store, p => sqlx::query(
        "UPDATE auth_failures SET failures = failures - 1, \
         locked_until = CASE WHEN locked_until = $2 THEN NULL ELSE locked_until END \
         WHERE client_ip = $1 AND failures > 0",
    )
    .bind(ip)
    .bind(set_lock.map(micros))
    .execute(p)
    .await
    .map(|_| ())
    .map_err(db))
}

/// Counts a sign-in attempt for `name_hash` before its password is checked, in one statement
/// (so parallel attempts cannot all pass a check made before any of them counted): refused,
/// with the time it may be tried again, while an earlier attempt's delay runs; otherwise
/// counted (the count restarts once the last attempt is older than the policy's reset) with
/// the next attempt's delay set. A successful sign-in then clears the count.
pub async fn reserve_name_attempt(
    store: &super::Store,
    name_hash: &str,
    now: DateTime<Utc>,
    policy: &LockoutPolicy,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let t = &policy.names;
    let n = "(CASE WHEN signin_throttle.last_failure <= $3 THEN 1 ELSE signin_throttle.failures + 1 END)";
    let sql = format!(
        "INSERT INTO signin_throttle (name_hash, failures, last_failure, next_allowed) \
         VALUES ($1, 1, $2, $2 + {first}) \
         ON CONFLICT (name_hash) DO UPDATE SET failures = {n}, last_failure = $2, \
           next_allowed = $2 + {delay} \
         WHERE signin_throttle.next_allowed <= $2 \
         RETURNING failures",
        first = t.delay_after(1).num_microseconds().unwrap_or(0),
        delay = delay_sql(t, n),
    );
    let counted: Option<i64> = on_pool!(store, p => sqlx::query_scalar(&sql)
        .bind(name_hash)
        .bind(micros(now))
        .bind(micros(now - t.reset_after))
        .fetch_optional(p)
        .await
        .map_err(db))?;
    if counted.is_some() {
        return Ok(None);
    }
    let next: Option<i64> = on_pool!(store, p => sqlx::query_scalar(
        "SELECT next_allowed FROM signin_throttle WHERE name_hash = $1",
    )
    .bind(name_hash)
    .fetch_optional(p)
    .await
    .map_err(db))?;
    Ok(Some(next.map_or(now, from_micros)))
}

/// The delay after `n` attempts (an SQL expression), as `NameThrottle::delay_after` computes
/// it: the policy's numbers written out, so the whole reservation is one statement.
fn delay_sql(t: &crate::domain::lockout::NameThrottle, n: &str) -> String {
    let us = |d: chrono::Duration| d.num_microseconds().unwrap_or(i64::MAX);
    let mut sql = format!("CASE WHEN {n} < {} THEN 0", t.free);
    let mut k = t.free;
    while t.delay_after(k) < t.cap && k < t.free + 40 {
        sql.push_str(&format!(" WHEN {n} = {k} THEN {}", us(t.delay_after(k))));
        k += 1;
    }
    sql.push_str(&format!(" ELSE {} END", us(t.cap)));
    sql
}

/// A successful sign-in: the name's failures are over, and `address` is one it signs in from.
pub async fn record_name_success(
    store: &super::Store,
    name_hash: &str,
    address: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let sealed = store.seal.eq(Place::KnownIp, address);
    let address: &str = &sealed;
    on_pool!(store, p => sqlx::query("DELETE FROM signin_throttle WHERE name_hash = $1")
        .bind(name_hash)
        .execute(p)
        .await
        .map(|_| ())
        .map_err(db))?;
    on_pool!(store, p => sqlx::query(
        "INSERT INTO signin_known (name_hash, client_ip, last_success) VALUES ($1, $2, $3) \
         ON CONFLICT (name_hash, client_ip) DO UPDATE SET last_success = $3",
    )
    .bind(name_hash)
    .bind(address)
    .bind(micros(now))
    .execute(p)
    .await
    .map(|_| ())
    .map_err(db))
}

/// Whether `name_hash` signed in successfully from `address` since `since`.
pub async fn name_known_at(
    store: &super::Store,
    name_hash: &str,
    address: &str,
    since: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let sealed = store.seal.eq(Place::KnownIp, address);
    let address: &str = &sealed;
    let found: Option<i64> = on_pool!(store, p => sqlx::query_scalar(
        "SELECT last_success FROM signin_known WHERE name_hash = $1 AND client_ip = $2 AND last_success > $3",
    )
    .bind(name_hash)
    .bind(address)
    .bind(micros(since))
    .fetch_optional(p)
    .await
    .map_err(db))?;
    Ok(found.is_some())
}

/// Deletes counters that no longer hold anything back: failure windows that are over with no
/// lock in force, forgotten name failures, and sign-in addresses older than the policy keeps.
/// Returns the rows deleted.
pub async fn prune(
    store: &super::Store,
    now: DateTime<Utc>,
    policy: &LockoutPolicy,
) -> Result<u64, StoreError> {
    let (now_us, window) = (micros(now), micros(now - policy.window));
    let (names, known) = (
        micros(now - policy.names.reset_after),
        micros(now - policy.names.known_for),
    );
    let mut deleted = on_pool!(store, p => sqlx::query(
        "DELETE FROM auth_failures WHERE window_start <= $1 AND (locked_until IS NULL OR locked_until <= $2)",
    )
    .bind(window)
    .bind(now_us)
    .execute(p)
    .await
    .map(|r| r.rows_affected())
    .map_err(db))?;
    deleted += on_pool!(store, p => sqlx::query(
        "DELETE FROM signin_throttle WHERE last_failure <= $1 AND next_allowed <= $2",
    )
    .bind(names)
    .bind(now_us)
    .execute(p)
    .await
    .map(|r| r.rows_affected())
    .map_err(db))?;
    deleted += on_pool!(store, p => sqlx::query("DELETE FROM signin_known WHERE last_success <= $1")
        .bind(known)
        .execute(p)
        .await
        .map(|r| r.rows_affected())
        .map_err(db))?;
    Ok(deleted)
}
