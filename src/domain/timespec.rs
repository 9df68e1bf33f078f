//! Reading times the way people and models write them: RFC 3339, relative (`15m`, `24h`, `7d`),
//! `today` / `yesterday` / `now`, or a calendar date, in an optional IANA time zone.

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;

use super::error::DomainError;
use super::policy::ExpiryRequest;

/// Longest duration accepted anywhere; keeps date arithmetic far from overflow.
const MAX_DURATION_DAYS: i64 = 3660;

/// Which end of a window a bound is: `today` starts at midnight, but ends at the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    Start,
    End,
}

pub fn parse_duration(text: &str) -> Result<Duration, DomainError> {
    let std = humantime::parse_duration(text.trim()).map_err(|_| {
        DomainError::Invalid(format!(
            "invalid duration '{}': use a number and a unit, like 30s, 15m, 24h, 7d",
            clip(text)
        ))
    })?;
    let d = Duration::from_std(std).unwrap_or(Duration::MAX);
    if d > Duration::days(MAX_DURATION_DAYS) {
        return Err(DomainError::Invalid(format!(
            "duration '{}' is too long (at most {MAX_DURATION_DAYS} days)",
            clip(text)
        )));
    }
    Ok(d)
}

pub fn parse_time_zone(name: &str) -> Result<Tz, DomainError> {
    name.parse::<Tz>().map_err(|_| {
        DomainError::Invalid(format!(
            "unknown time zone '{}': use an IANA name like Europe/Paris or UTC",
            clip(name)
        ))
    })
}

/// Resolves one end of a time window to an absolute instant, within the years keyward can
/// show (refused outside them, never silently moved).
pub fn parse_time_bound(
    text: &str,
    tz: Tz,
    now: DateTime<Utc>,
    edge: Edge,
) -> Result<DateTime<Utc>, DomainError> {
    in_range("time", resolve_bound(text, tz, now, edge)?)
}

fn resolve_bound(
    text: &str,
    tz: Tz,
    now: DateTime<Utc>,
    edge: Edge,
) -> Result<DateTime<Utc>, DomainError> {
    let text = text.trim();
    let today = now.with_timezone(&tz).date_naive();
    let day = |d: NaiveDate| match edge {
        Edge::Start => start_of_day(tz, d),
        Edge::End => d.succ_opt().map_or(Ok(now), |next| start_of_day(tz, next)),
    };
    match text {
        "now" => return Ok(now),
        "today" => return day(today),
        "yesterday" => return day(today.pred_opt().unwrap_or(today)),
        _ => {}
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return day(d);
    }
    if let Ok(d) = parse_duration(text) {
        return Ok(now - d);
    }
    Err(DomainError::Invalid(format!(
        "invalid time '{}': use RFC 3339 (2026-01-31T09:00:00Z), a date (2026-01-31), \
         a relative time (15m, 24h, 7d), or today / yesterday / now",
        clip(text)
    )))
}

/// Midnight local time; where a DST jump skips midnight, the first instant of that day.
fn start_of_day(tz: Tz, d: NaiveDate) -> Result<DateTime<Utc>, DomainError> {
    (0..=3)
        .find_map(|h| {
            tz.from_local_datetime(&d.and_time(NaiveTime::from_hms_opt(h, 0, 0)?))
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| DomainError::Invalid(format!("no midnight on {d} in {tz}")))
}

/// A key's requested lifetime: `never`, a duration from now (`30d`), or an RFC 3339 instant.
pub fn parse_expiry(text: Option<&str>, now: DateTime<Utc>) -> Result<ExpiryRequest, DomainError> {
    let Some(text) = text.map(str::trim) else {
        return Ok(ExpiryRequest::Default);
    };
    if text == "never" {
        return Ok(ExpiryRequest::Never);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return in_range("expiry", t.with_timezone(&Utc)).map(ExpiryRequest::At);
    }
    parse_duration(text)
        .map(|d| ExpiryRequest::At(now + d))
        .map_err(|_| {
            DomainError::Invalid(format!(
                "invalid expiry '{}': use a duration (30d, 12h), an RFC 3339 time, or \"never\"",
                clip(text)
            ))
        })
}

/// RFC 3339 with microseconds and an explicit offset, in `tz`.
pub fn format_in(t: DateTime<Utc>, tz: Tz) -> String {
    showable(t)
        .with_timezone(&tz)
        .to_rfc3339_opts(SecondsFormat::Micros, false)
}

/// RFC 3339 in UTC, with an explicit `+00:00` offset.
pub fn format_utc(t: DateTime<Utc>) -> String {
    showable(t).to_rfc3339_opts(SecondsFormat::Micros, false)
}

/// The instants keyward accepts and shows: 0001-01-02 to 9999-12-30 (UTC). chrono panics when
/// it shifts an instant at the very edge of its range into a time zone, and no real event lies
/// outside these years.
fn range() -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let edge = |y, m, d| {
        NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|n| n.and_utc())
    };
    Some((edge(1, 1, 2)?, edge(9999, 12, 30)?))
}

/// `t`, or a clear refusal when it lies outside `range`.
fn in_range(what: &str, t: DateTime<Utc>) -> Result<DateTime<Utc>, DomainError> {
    match range() {
        Some((lo, hi)) if t < lo || t > hi => Err(DomainError::Invalid(format!(
            "{what} {} is outside the range keyward accepts (0001-01-02 to 9999-12-30 UTC)",
            t.to_rfc3339()
        ))),
        _ => Ok(t),
    }
}

/// Clamps into `range` for display (stored instants are within it already).
fn showable(t: DateTime<Utc>) -> DateTime<Utc> {
    match range() {
        Some((lo, hi)) => t.clamp(lo, hi),
        None => t,
    }
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        // 2026-03-10 10:30 UTC = 11:30 in Paris (CET, +01:00).
        Utc.with_ymd_and_hms(2026, 3, 10, 10, 30, 0).unwrap()
    }

    #[test]
    fn relative_times_count_back_from_now() {
        let paris = parse_time_zone("Europe/Paris").unwrap();
        for (text, mins) in [
            ("15m", 15),
            ("24h", 24 * 60),
            ("7d", 7 * 24 * 60),
            ("1h 30m", 90),
        ] {
            let t = parse_time_bound(text, paris, now(), Edge::Start).unwrap();
            assert_eq!(now() - t, Duration::minutes(mins), "{text}");
        }
        assert_eq!(
            parse_time_bound("now", paris, now(), Edge::End).unwrap(),
            now()
        );
    }

    #[test]
    fn today_and_yesterday_follow_the_time_zone() {
        let paris = parse_time_zone("Europe/Paris").unwrap();
        let start = parse_time_bound("today", paris, now(), Edge::Start).unwrap();
        assert_eq!(format_in(start, paris), "2026-03-10T00:00:00.000000+01:00");
        let end = parse_time_bound("yesterday", paris, now(), Edge::End).unwrap();
        assert_eq!(end, start);
        let y = parse_time_bound("yesterday", paris, now(), Edge::Start).unwrap();
        assert_eq!(format_utc(y), "2026-03-08T23:00:00.000000+00:00");
        let tokyo = parse_time_zone("Asia/Tokyo").unwrap();
        let tk = parse_time_bound("today", tokyo, now(), Edge::Start).unwrap();
        assert_eq!(format_in(tk, tokyo), "2026-03-10T00:00:00.000000+09:00");
    }

    #[test]
    fn dates_and_rfc3339_are_read_exactly() {
        let utc = parse_time_zone("UTC").unwrap();
        let t = parse_time_bound("2026-01-31T09:00:00+02:00", utc, now(), Edge::Start).unwrap();
        assert_eq!(format_utc(t), "2026-01-31T07:00:00.000000+00:00");
        let d = parse_time_bound("2026-01-31", utc, now(), Edge::End).unwrap();
        assert_eq!(format_utc(d), "2026-02-01T00:00:00.000000+00:00");
    }

    #[test]
    fn nonsense_is_refused_clearly() {
        let utc = parse_time_zone("UTC").unwrap();
        for bad in ["", "soon", "-5m", "' OR 1=1 --", "99999999d", "2026-13-45"] {
            let e = parse_time_bound(bad, utc, now(), Edge::Start).unwrap_err();
            assert!(
                e.to_string().starts_with("invalid time") || e.to_string().contains("too long"),
                "{bad}: {e}"
            );
        }
        assert!(parse_time_zone("Mars/Olympus").is_err());
        assert!(parse_duration("100000d").is_err());
    }

    #[test]
    fn extreme_instants_format_without_panicking() {
        let tz = parse_time_zone("Etc/GMT+5").unwrap();
        assert_eq!(
            format_in(DateTime::<Utc>::MIN_UTC, tz),
            "0001-01-01T19:00:00.000000-05:00"
        );
        assert!(format_utc(DateTime::<Utc>::MAX_UTC).starts_with("9999-12-30"));
    }

    #[test]
    fn expiry_forms() {
        assert_eq!(parse_expiry(None, now()).unwrap(), ExpiryRequest::Default);
        assert_eq!(
            parse_expiry(Some("never"), now()).unwrap(),
            ExpiryRequest::Never
        );
        assert_eq!(
            parse_expiry(Some("30d"), now()).unwrap(),
            ExpiryRequest::At(now() + Duration::days(30))
        );
        assert!(parse_expiry(Some("forever"), now()).is_err());
    }
}
