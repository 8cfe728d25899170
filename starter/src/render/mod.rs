//! Human output: the workflow's answers and the portfolio's views rendered as text and tables.
//! Pure functions of the `promo.v1` messages and the read model, so every screen is
//! unit-tested without a server. One module per family of screens:
//! - [`promotion`]: one promotion as it runs (`status`, `audit`, the answers to messages);
//! - [`report`]: the post-event report;
//! - [`portfolio`]: many promotions (`list`, `exceptions`);
//! - [`table`]: the table style they share.
//!
//! The formatting helpers below are shared by all of them and by the dashboard and `promo ask`.

mod portfolio;
mod promotion;
mod report;
pub mod table;

pub use portfolio::{exceptions, list};
pub use promotion::{action_result, audit, next_steps, signal_sent, status};
pub use report::report;

use chrono::DateTime;
use promo_contracts::{
    pbjson_types::Timestamp,
    promo::v1::{Outcome, RegionState, Role},
};
use promo_workflows::decisions::role_name;
use rust_decimal::Decimal;
use std::str::FromStr;

/// A timestamp as `2030-04-01 04:00 UTC`; `—` when unset.
pub fn time(t: Option<&Timestamp>) -> String {
    t.and_then(|t| DateTime::from_timestamp(t.seconds, 0))
        .map_or_else(|| "—".into(), |d| unix_time(d.timestamp()))
}

/// Unix seconds as `2030-04-01 04:00 UTC`.
pub fn unix_time(seconds: i64) -> String {
    DateTime::from_timestamp(seconds, 0)
        .map_or_else(|| seconds.to_string(), |d| d.format("%Y-%m-%d %H:%M UTC").to_string())
}

/// A ratio (decimal string in [0, 1] or beyond) as a percentage with one decimal, e.g. `81.2%`;
/// signed with `signed`. Unparseable values are shown as they are; empty as `—`.
pub fn percent(ratio: &str, signed: bool) -> String {
    if ratio.trim().is_empty() {
        return "—".into();
    }
    match Decimal::from_str(ratio.trim()) {
        Ok(d) => {
            let p = (d * Decimal::ONE_HUNDRED).round_dp(1);
            if signed && p > Decimal::ZERO { format!("+{p:.1}%") } else { format!("{p:.1}%") }
        }
        Err(_) => ratio.to_owned(),
    }
}

/// Seconds as `3d 4h 5m` (`12s` under a minute, `0s` for nothing).
pub fn duration(seconds: u64) -> String {
    if seconds < 60 {
        return format!("{seconds}s");
    }
    let (d, h, m) = (seconds / 86_400, seconds % 86_400 / 3600, seconds % 3600 / 60);
    let mut parts = Vec::new();
    if d > 0 {
        parts.push(format!("{d}d"));
    }
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 {
        parts.push(format!("{m}m"));
    }
    parts.join(" ")
}

/// A wait for people, coarser than [`duration`] (two units at most): `45s`, `12m`, `3h 20m`,
/// `2d 4h`. The dashboard, `promo ask` and `promo exceptions` show ages this way.
pub fn age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// An integer with thousands separators: `1,234,567`.
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// The text, or `—` when it is blank.
fn or_dash(s: &str) -> String {
    if s.trim().is_empty() { "—".into() } else { s.to_owned() }
}

/// `COMPLETED` for `OUTCOME_COMPLETED`.
fn outcome_name(o: Outcome) -> &'static str {
    o.as_str_name().trim_start_matches("OUTCOME_")
}

/// `ACTIVE` for `REGION_STATE_ACTIVE`.
fn region_state_name(s: RegionState) -> &'static str {
    s.as_str_name().trim_start_matches("REGION_STATE_")
}

/// The `--role` value for a role (`supply-chain`).
pub fn role_arg(r: Role) -> String {
    role_name(r).to_ascii_lowercase().replace('_', "-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_helpers() {
        assert_eq!(percent("0.8", false), "80.0%");
        assert_eq!(percent("-0.05", true), "-5.0%");
        assert_eq!(percent("", false), "—");
        assert_eq!(percent("n/a", false), "n/a");
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(3600), "1h");
        assert_eq!(thousands(-1_234_567), "-1,234,567");
        assert_eq!(thousands(999), "999");
        assert_eq!(role_arg(Role::SupplyChain), "supply-chain");
    }

    #[test]
    fn ages_read_like_people_write_them() {
        assert_eq!(
            [age(5), age(125), age(3 * 3600 + 1200), age(2 * 86_400 + 4 * 3600)],
            ["5s", "2m", "3h 20m", "2d 4h"]
        );
    }
}
