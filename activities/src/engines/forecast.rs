//! Uplift and forecast: how much a discount lifts demand, from the planner or from history.

use rust_decimal::{Decimal, prelude::ToPrimitive};

/// Uplift for a discount depth (0–1) fitted on past promotions of the SKU: the least-squares
/// slope k of (uplift − 1) = k × depth through the origin. Falls back to `1 + 2 × depth` without
/// history. Never below 1.
pub fn uplift_from_history(history: &[(Decimal, Decimal)], depth: f64) -> f64 {
    let (mut num, mut den) = (0f64, 0f64);
    for (d, u) in history {
        let d = d.to_f64().unwrap_or(0.0);
        let u = u.to_f64().unwrap_or(1.0);
        num += d * (u - 1.0);
        den += d * d;
    }
    let k = if den > 0.0 { num / den } else { 2.0 };
    (1.0 + k.max(0.0) * depth.max(0.0)).max(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_the_history_slope() {
        let h = [(Decimal::new(2, 1), Decimal::new(16, 1)), (Decimal::new(4, 1), Decimal::new(22, 1))];
        // points (0.2, 0.6), (0.4, 1.2): slope 3
        assert!((uplift_from_history(&h, 0.3) - 1.9).abs() < 1e-9);
        assert_eq!(uplift_from_history(&[], 0.25), 1.5);
        assert_eq!(uplift_from_history(&h, 0.0), 1.0);
    }
}
