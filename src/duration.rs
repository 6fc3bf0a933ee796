//! LiteLLM's budget durations (`30s`, `30m`, `24h`, `30d`, `2w`, `1mo`) and when a budget with
//! one next resets. A leaf: validation reads it, the stores write `budget_reset_at` with it.

/// A LiteLLM budget duration: 1 to 6 digits (no leading zero) and a unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Duration {
    Seconds(i64),
    Months(u32),
}

/// Parse `30s`, `30m`, `24h`, `30d`, `2w` or `1mo`.
pub fn parse_duration(value: &str) -> Option<Duration> {
    let digits: String = value.chars().take_while(|c| c.is_ascii_digit()).collect();
    let unit = &value[digits.len()..];
    if digits.is_empty() || digits.len() > 6 || digits.starts_with('0') {
        return None;
    }
    let n: i64 = digits.parse().ok()?;
    match unit {
        "s" => Some(Duration::Seconds(n)),
        "m" => Some(Duration::Seconds(n * 60)),
        "h" => Some(Duration::Seconds(n * 3600)),
        "d" => Some(Duration::Seconds(n * 86_400)),
        "w" => Some(Duration::Seconds(n * 7 * 86_400)),
        "mo" => u32::try_from(n).ok().map(Duration::Months),
        _ => None,
    }
}

/// When a budget with this duration next resets, counted from `now` (as LiteLLM does on create).
pub fn budget_reset_at(
    duration: &str,
    now: chrono::NaiveDateTime,
) -> Option<chrono::NaiveDateTime> {
    match parse_duration(duration)? {
        Duration::Seconds(s) => now.checked_add_signed(chrono::TimeDelta::try_seconds(s)?),
        Duration::Months(m) => now.checked_add_months(chrono::Months::new(m)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for ok in ["30s", "30m", "24h", "30d", "2w", "1mo", "999999d"] {
            assert!(parse_duration(ok).is_some(), "{ok}");
        }
        for bad in [
            "", "d", "0d", "01d", "30", "30x", "1000000d", "-1d", "1.5d", "30 d",
        ] {
            assert!(parse_duration(bad).is_none(), "{bad}");
        }
        let now = chrono::DateTime::from_timestamp(0, 0).map(|d| d.naive_utc());
        let now = now.expect("epoch");
        assert_eq!(
            budget_reset_at("1mo", now).map(|t| t.to_string()),
            Some("1970-02-01 00:00:00".into())
        );
        assert_eq!(
            budget_reset_at("2h", now).map(|t| t.to_string()),
            Some("1970-01-01 02:00:00".into())
        );
    }
}
