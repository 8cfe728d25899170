//! Money and other decimal quantities: a decimal string on the wire, [`Decimal`] in code.
//!
//! The wire format is deliberately narrow so that every system reads the same value: an optional
//! `-`, digits, and optionally `.` followed by digits. No exponent, no `+`, no thousands or `_`
//! separators, no surrounding spaces. Money carries at most [`MAX_MONEY_SCALE`] fractional digits.

use rust_decimal::Decimal;
use std::fmt;

/// Most fractional digits a money amount may carry on the wire.
pub const MAX_MONEY_SCALE: u32 = 4;
/// Most fractional digits a shelf price may carry.
pub const MAX_PRICE_SCALE: u32 = 2;

/// A value that failed conversion, naming the field it came from and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    /// Path of the offending field, e.g. `lines[3].promo_price` or `product SKU-1 cost`.
    pub field: String,
    /// What is wrong with it, quoting the value.
    pub reason: String,
}

impl FieldError {
    /// Builds an error for `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { field: field.into(), reason: reason.into() }
    }
}

/// Parses a plain decimal string with at most `max_scale` fractional digits.
pub fn parse_decimal(field: &str, value: &str, max_scale: u32) -> Result<Decimal, FieldError> {
    let bad = |why: &str| FieldError::new(field, format!("{value:?} {why}"));
    if value.is_empty() {
        return Err(FieldError::new(field, "is empty; expected a decimal string such as \"12.50\""));
    }
    let digits = value.strip_prefix('-').unwrap_or(value);
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int) || frac.is_some_and(|f| !all_digits(f)) {
        return Err(bad(
            "is not a decimal number (expected digits with an optional \".\" and fraction, e.g. \"12.50\")",
        ));
    }
    let scale = frac.map_or(0, str::len) as u32;
    if scale > max_scale {
        return Err(bad(&format!("has {scale} decimal places; at most {max_scale} are allowed")));
    }
    if int.len() > 18 {
        return Err(bad("is too large"));
    }
    value.parse::<Decimal>().map_err(|e| bad(&format!("is not a decimal number ({e})")))
}

/// Parses a money amount (any sign, at most [`MAX_MONEY_SCALE`] decimals).
pub fn parse_money(field: &str, value: &str) -> Result<Decimal, FieldError> {
    parse_decimal(field, value, MAX_MONEY_SCALE)
}

/// Parses a money amount that must be zero or more.
pub fn parse_non_negative_money(field: &str, value: &str) -> Result<Decimal, FieldError> {
    let d = parse_money(field, value)?;
    if d.is_sign_negative() && !d.is_zero() {
        return Err(FieldError::new(field, format!("{value:?} is negative; it must be zero or more")));
    }
    Ok(d)
}

/// Parses a shelf price: above zero, at most [`MAX_PRICE_SCALE`] decimals.
pub fn parse_price(field: &str, value: &str) -> Result<Decimal, FieldError> {
    let d = parse_decimal(field, value, MAX_PRICE_SCALE)?;
    if d <= Decimal::ZERO {
        return Err(FieldError::new(field, format!("{value:?} must be above zero")));
    }
    Ok(d)
}

/// Formats an amount for the wire: rounded to cents (banker's rounding is avoided: half away
/// from zero, as tills do).
pub fn format_money(d: Decimal) -> String {
    let mut d = d.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    d.rescale(2);
    d.to_string()
}

/// Formats a ratio (fill rate, margin rate) with 4 decimals.
pub fn format_ratio(d: Decimal) -> String {
    d.round_dp_with_strategy(4, rust_decimal::RoundingStrategy::MidpointAwayFromZero).normalize().to_string()
}

/// A money amount in display form, for tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Money(pub Decimal);

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_money(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_decimals() {
        assert_eq!(parse_money("x", "12.5").unwrap(), Decimal::new(125, 1));
        assert_eq!(parse_money("x", "-0.0001").unwrap(), Decimal::new(-1, 4));
        assert_eq!(parse_price("x", "9.99").unwrap(), Decimal::new(999, 2));
    }

    #[test]
    fn refuses_malformed_values_naming_the_field() {
        for bad in ["", "1e3", "+1", "1_000", "1,5", " 1", "1.", ".5", "abc", "1.2.3", "--1"] {
            let e = parse_money("lines[2].promo_price", bad).unwrap_err();
            assert_eq!(e.field, "lines[2].promo_price", "{bad}");
            assert!(e.to_string().starts_with("lines[2].promo_price: "), "{e}");
        }
    }

    #[test]
    fn refuses_too_many_decimals_and_non_positive_prices() {
        let e = parse_money("cost", "1.00001").unwrap_err();
        assert!(e.reason.contains("5 decimal places; at most 4"), "{e}");
        let e = parse_price("promo_price", "9.999").unwrap_err();
        assert!(e.reason.contains("at most 2"), "{e}");
        assert!(parse_price("promo_price", "0").unwrap_err().reason.contains("above zero"));
        assert!(parse_price("promo_price", "-1").unwrap_err().reason.contains("above zero"));
        assert!(parse_non_negative_money("cap", "-3").unwrap_err().reason.contains("negative"));
    }

    #[test]
    fn formats_to_cents() {
        assert_eq!(format_money(Decimal::new(12345, 3)), "12.35");
        assert_eq!(format_money(Decimal::new(-5, 1)), "-0.50");
        assert_eq!(format_ratio(Decimal::new(5, 1)), "0.5");
    }
}
