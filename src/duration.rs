//! LiteLLM's budget durations and when a budget with one next resets. A leaf: validation
//! reads it, the stores write `budget_reset_at` with it.
//!
//! What LiteLLM 1.110.2 accepts: its `validate_budget_duration` refuses a duration unless
//! `duration_in_seconds` gives more than zero and `get_budget_reset_time` does not raise.
//! That admits `<N>s`, `<N>m`, `<N>h`, `<N>d`, `<N>w` (N ≥ 1) and the words `hourly`,
//! `daily`, `weekly`, `monthly` (`normalize_duration`), and `1mo` only: its monthly reset
//! (`_handle_month_reset`) raises on any other number of months, so `2mo` is refused. The
//! operator accepts exactly those spellings, up to six digits (five for weeks: a reset past
//! the year 9999 overflows LiteLLM's date arithmetic). LiteLLM also reads text after the
//! unit as if it were absent (`30days`, `2months`), but its two parsers then disagree
//! (`2months` is two months for `duration_in_seconds` and a next-midnight reset for
//! `get_next_standardized_reset_time`), so those are refused here.
//!
//! When a budget resets: `get_budget_reset_time` → `compute_budget_reset_at` →
//! `get_next_standardized_reset_time`, aligned in the proxy's `timezone` to its
//! `budget_reset_time` of day, ported in [`budget_reset_at`]; the two settings are the
//! operator's `--budget-reset-timezone` and `--budget-reset-time` ([`ResetSettings`]).

use std::sync::OnceLock;

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Timelike};

/// The unit of a LiteLLM budget duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
}

/// A LiteLLM budget duration: a count and a unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Duration {
    pub value: i64,
    pub unit: Unit,
}

/// Parse a duration LiteLLM accepts (see the module doc); `None` for anything else.
pub fn parse_duration(value: &str) -> Option<Duration> {
    let value = match value {
        "hourly" => "1h",
        "daily" => "24h",
        "weekly" => "7d",
        "monthly" => "30d",
        other => other,
    };
    let digits: String = value.chars().take_while(|c| c.is_ascii_digit()).collect();
    let unit = match &value[digits.len()..] {
        "s" => Unit::Second,
        "m" => Unit::Minute,
        "h" => Unit::Hour,
        "d" => Unit::Day,
        "w" => Unit::Week,
        "mo" => Unit::Month,
        _ => return None,
    };
    let max_digits = if unit == Unit::Week { 5 } else { 6 };
    if digits.is_empty() || digits.len() > max_digits || digits.starts_with('0') {
        return None;
    }
    let value: i64 = digits.parse().ok()?;
    (unit != Unit::Month || value == 1).then_some(Duration { value, unit })
}

/// The CRD's pattern for a duration: the same set as [`parse_duration`].
pub const DURATION_PATTERN: &str =
    r"^([1-9][0-9]{0,5}(s|m|h|d)|[1-9][0-9]{0,4}w|1mo|hourly|daily|weekly|monthly)$";

/// The proxy's reset settings (`litellm_settings.timezone` and `budget_reset_time`), which
/// LiteLLM's `BudgetResetSettings` reads: the reset of a day, week or month lands on this
/// time of day in this time zone.
#[derive(Clone, Debug)]
pub struct ResetSettings {
    pub timezone: jiff::tz::TimeZone,
    pub time_of_day: NaiveTime,
}

impl Default for ResetSettings {
    fn default() -> Self {
        Self {
            timezone: jiff::tz::TimeZone::UTC,
            time_of_day: NaiveTime::MIN,
        }
    }
}

impl ResetSettings {
    /// From the proxy's spelling: an IANA time zone name and `HH:MM` or `HH:MM:SS`.
    pub fn parse(timezone: &str, time_of_day: &str) -> Result<Self, String> {
        let timezone = load_timezone(timezone)?;
        let time_of_day = NaiveTime::parse_from_str(time_of_day, "%H:%M")
            .or_else(|_| NaiveTime::parse_from_str(time_of_day, "%H:%M:%S"))
            .map_err(|_| {
                format!("{time_of_day:?} is not a time of day (use HH:MM, such as 00:00)")
            })?;
        Ok(Self {
            timezone,
            time_of_day,
        })
    }

    fn to_local(&self, utc: NaiveDateTime) -> Option<NaiveDateTime> {
        let ts = jiff::Timestamp::from_second(utc.and_utc().timestamp()).ok()?;
        let dt = ts.to_zoned(self.timezone.clone()).datetime();
        NaiveDate::from_ymd_opt(dt.year().into(), dt.month() as u32, dt.day() as u32)?.and_hms_opt(
            dt.hour() as u32,
            dt.minute() as u32,
            dt.second() as u32,
        )
    }

    fn to_utc(&self, local: NaiveDateTime) -> Option<NaiveDateTime> {
        let dt = jiff::civil::date(
            i16::try_from(local.year()).ok()?,
            i8::try_from(local.month()).ok()?,
            i8::try_from(local.day()).ok()?,
        )
        .at(
            local.hour() as i8,
            local.minute() as i8,
            local.second() as i8,
            0,
        );
        let ts = dt.to_zoned(self.timezone.clone()).ok()?.timestamp();
        chrono::DateTime::from_timestamp(ts.as_second(), 0).map(|d| d.naive_utc())
    }
}

/// An IANA time zone from the system's database (`$TZDIR`, else `/usr/share/zoneinfo`);
/// `UTC` needs none.
fn load_timezone(name: &str) -> Result<jiff::tz::TimeZone, String> {
    if name == "UTC" {
        return Ok(jiff::tz::TimeZone::UTC);
    }
    let valid = !name.is_empty()
        && !name.starts_with('/')
        && name
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_-+".contains(c));
    let dir = std::env::var_os("TZDIR").unwrap_or_else(|| "/usr/share/zoneinfo".into());
    let unknown = || {
        format!(
            "{name:?} is not a time zone of this system's database (use an IANA name such as UTC or Europe/Berlin)"
        )
    };
    if !valid {
        return Err(unknown());
    }
    let data = std::fs::read(std::path::Path::new(&dir).join(name)).map_err(|_| unknown())?;
    jiff::tz::TimeZone::tzif(name, &data).map_err(|_| unknown())
}

static SETTINGS: OnceLock<ResetSettings> = OnceLock::new();

/// Set the reset settings once, at start (the CLI's and the operator's flags).
pub fn configure(settings: ResetSettings) {
    let _ = SETTINGS.set(settings);
}

fn settings() -> ResetSettings {
    SETTINGS.get().cloned().unwrap_or_default()
}

/// When a budget with this duration first resets, counted from `now` (UTC), as LiteLLM's
/// `get_budget_reset_time` computes it with the configured settings.
pub fn budget_reset_at(duration: &str, now: NaiveDateTime) -> Option<NaiveDateTime> {
    next_reset(parse_duration(duration)?, now, &settings())
}

/// LiteLLM's `get_next_standardized_reset_time`, in the settings' time zone.
pub fn next_reset(d: Duration, now_utc: NaiveDateTime, s: &ResetSettings) -> Option<NaiveDateTime> {
    let now = s.to_local(now_utc)?;
    let midnight = now.date().and_time(NaiveTime::MIN);
    let local = match d.unit {
        Unit::Day => day_reset(now, midnight, d.value, s.time_of_day)?,
        Unit::Week => day_reset(now, midnight, d.value.checked_mul(7)?, s.time_of_day)?,
        Unit::Month => month_reset(now, midnight, s.time_of_day)?,
        Unit::Hour => aligned(now, midnight, d.value, 3600)?,
        Unit::Minute => aligned(now, midnight, d.value, 60)?,
        Unit::Second => aligned(now, midnight, d.value, 1)?,
    };
    s.to_utc(local)
}

/// `_next_occurrence`: `time` on the boundary day, one period later if that has passed.
fn next_occurrence(
    boundary: NaiveDateTime,
    time: NaiveTime,
    now: NaiveDateTime,
    period: i64,
) -> Option<NaiveDateTime> {
    let candidate = boundary.date().and_time(time);
    if candidate <= now {
        candidate.checked_add_signed(TimeDelta::try_days(period)?)
    } else {
        Some(candidate)
    }
}

/// `_handle_day_reset`: daily at the time of day, weekly on Monday, `30d` on the 1st of the
/// month, any other count of days from the start of today.
fn day_reset(
    now: NaiveDateTime,
    midnight: NaiveDateTime,
    days: i64,
    time: NaiveTime,
) -> Option<NaiveDateTime> {
    match days {
        1 => next_occurrence(midnight, time, now, 1),
        7 => {
            let until_monday = (7 - i64::from(now.weekday().num_days_from_monday())) % 7;
            next_occurrence(
                midnight.checked_add_signed(TimeDelta::try_days(until_monday)?)?,
                time,
                now,
                7,
            )
        }
        30 => month_reset(now, midnight, time),
        n => Some(
            midnight
                .checked_add_signed(TimeDelta::try_days(n)?)?
                .date()
                .and_time(time),
        ),
    }
}

/// `_handle_month_reset`: the 1st of this month at the time of day, else of the next.
fn month_reset(
    now: NaiveDateTime,
    midnight: NaiveDateTime,
    time: NaiveTime,
) -> Option<NaiveDateTime> {
    let first = midnight.date().with_day(1)?;
    let candidate = first.and_time(time);
    if candidate <= now {
        Some(
            first
                .checked_add_months(chrono::Months::new(1))?
                .and_time(time),
        )
    } else {
        Some(candidate)
    }
}

/// `_handle_hour_reset`, `_handle_minute_reset`, `_handle_second_reset`: the next multiple
/// of the duration within its hour, minute or second field, carried into the larger fields
/// as LiteLLM carries it (past midnight: the next day, hour modulo 24).
fn aligned(
    now: NaiveDateTime,
    midnight: NaiveDateTime,
    value: i64,
    unit_seconds: i64,
) -> Option<NaiveDateTime> {
    let (h, m, s) = (
        i64::from(now.hour()),
        i64::from(now.minute()),
        i64::from(now.second()),
    );
    let field = match unit_seconds {
        3600 => h,
        60 => m,
        _ => s,
    };
    let next = field + value - field % value;
    let (hour, minute, second) = match unit_seconds {
        3600 => (next, 0, 0),
        60 => (h + next / 60, next % 60, 0),
        _ => {
            let total_minutes = m + next / 60;
            (h + total_minutes / 60, total_minutes % 60, next % 60)
        }
    };
    let day = if hour >= 24 {
        midnight.checked_add_signed(TimeDelta::try_days(1)?)?.date()
    } else {
        now.date()
    };
    day.and_hms_opt((hour % 24) as u32, minute as u32, second as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").expect("time")
    }

    #[test]
    fn durations_litellm_accepts() {
        for ok in [
            "30s", "30m", "24h", "30d", "2w", "1mo", "999999d", "99999w", "hourly", "daily",
            "weekly", "monthly",
        ] {
            assert!(parse_duration(ok).is_some(), "{ok}");
            assert!(regex_lite_match(ok), "{ok} matches the CRD pattern");
        }
        for bad in [
            "", "d", "0d", "01d", "30", "30x", "1000000d", "999999w", "-1d", "1.5d", "30 d", "2mo",
            "12mo", "30days", "2months", "Monthly",
        ] {
            assert!(parse_duration(bad).is_none(), "{bad}");
            assert!(
                !regex_lite_match(bad),
                "{bad} is refused by the CRD pattern"
            );
        }
    }

    /// The CRD pattern, checked without a regex engine: it is the set `parse_duration`
    /// accepts, spelled as alternatives.
    fn regex_lite_match(text: &str) -> bool {
        let alternatives = ["hourly", "daily", "weekly", "monthly", "1mo"];
        if alternatives.contains(&text) {
            return DURATION_PATTERN.contains(text);
        }
        let digits: String = text.chars().take_while(|c| c.is_ascii_digit()).collect();
        let unit = &text[digits.len()..];
        let max = if unit == "w" { 5 } else { 6 };
        !digits.is_empty()
            && !digits.starts_with('0')
            && digits.len() <= max
            && ["s", "m", "h", "d", "w"].contains(&unit)
    }

    #[test]
    fn resets_as_litellm_computes_them() {
        let utc = ResetSettings::default();
        let now = at("2026-03-18 10:17:42");
        let next = |d: &str, s: &ResetSettings| {
            next_reset(parse_duration(d).expect("duration"), now, s).map(|t| t.to_string())
        };
        assert_eq!(next("1mo", &utc).as_deref(), Some("2026-04-01 00:00:00"));
        assert_eq!(
            next("30d", &utc).as_deref(),
            Some("2026-04-01 00:00:00"),
            "30d resets on the 1st"
        );
        assert_eq!(next("1d", &utc).as_deref(), Some("2026-03-19 00:00:00"));
        assert_eq!(
            next("7d", &utc).as_deref(),
            Some("2026-03-23 00:00:00"),
            "weekly on Monday"
        );
        assert_eq!(next("3d", &utc).as_deref(), Some("2026-03-21 00:00:00"));
        assert_eq!(next("6h", &utc).as_deref(), Some("2026-03-18 12:00:00"));
        assert_eq!(next("15m", &utc).as_deref(), Some("2026-03-18 10:30:00"));
        assert_eq!(next("30s", &utc).as_deref(), Some("2026-03-18 10:18:00"));
        let berlin = ResetSettings::parse("Europe/Berlin", "12:00").expect("settings");
        // 12:00 in Berlin (UTC+1 until the end of March) is 11:00 UTC.
        assert_eq!(next("1d", &berlin).as_deref(), Some("2026-03-18 11:00:00"));
        assert_eq!(
            next("1mo", &berlin).as_deref(),
            Some("2026-04-01 10:00:00"),
            "UTC+2 in April"
        );
    }
}
