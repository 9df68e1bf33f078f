//! Failed-authentication counters per client IP, shared by every replica on the database.

use chrono::{DateTime, Utc};

use super::{StoreError, db, from_micros, micros, on_pool};
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
