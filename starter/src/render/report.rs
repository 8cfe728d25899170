//! The post-event report: what a promotion sold, earned and claimed, and how it ran; or, for any
//! other ending, the outcome and its reason.

use super::{
    duration, or_dash, outcome_name, percent, region_state_name,
    table::{Table, fields},
    thousands,
};
use promo_contracts::promo::v1::{Outcome, PromotionResult};
use promo_workflows::decisions::stage_name;
use rust_decimal::Decimal;
use std::str::FromStr;

/// The `report` screen: the post-event report of a completed promotion, or the outcome and
/// reason of any other ending.
pub fn report(r: &PromotionResult) -> String {
    let id = &r.promotion_id;
    let revision = if r.revision > 0 { format!(" (revision {})", r.revision) } else { String::new() };
    let mut out = format!("Promotion {id}: {}{revision}\n", outcome_name(r.outcome()));
    let Some(p) = r.report.as_ref().filter(|_| r.outcome() == Outcome::Completed) else {
        out.push_str(&fields(&[("reason", or_dash(&r.reason))]));
        out.push_str(&format!("\n`promo audit {id}` shows how it got there.\n"));
        return out;
    };
    out.push_str("\nSales\n");
    out.push_str(&fields(&[
        ("units sold", thousands(p.units_sold)),
        ("forecast units", thousands(p.forecast_units)),
        ("forecast variance", percent(&p.forecast_variance, true)),
        ("forecast model", or_dash(&p.forecast_model)),
        ("units available", thousands(p.available_units)),
        ("sell-through", percent(&p.sell_through, false)),
        ("stockout store-days", thousands(p.stockout_store_days as i64)),
        ("markdown exposure", or_dash(&p.markdown_exposure)),
    ]));
    if p.transfers_released > 0 {
        out.push_str("\nReplenishment in the window\n");
        out.push_str(&fields(&[
            ("transfer orders released", p.transfers_released.to_string()),
            ("units moved", thousands(p.units_transferred)),
            (
                "stockout store-days",
                format!(
                    "{} (without the transfers: {})",
                    thousands(p.stockout_store_days as i64),
                    thousands(p.stockout_store_days_without_transfers as i64)
                ),
            ),
            (
                "units sold",
                format!(
                    "{} (without the transfers: {})",
                    thousands(p.units_sold),
                    thousands(p.units_sold_without_transfers)
                ),
            ),
        ]));
    }
    out.push_str("\nMoney\n");
    let margin_gap = match (Decimal::from_str(&p.realised_margin), Decimal::from_str(&p.planned_margin)) {
        (Ok(a), Ok(b)) => {
            let d = a - b;
            format!("{}{d}", if d > Decimal::ZERO { "+" } else { "" })
        }
        _ => "—".into(),
    };
    out.push_str(&fields(&[
        ("revenue", or_dash(&p.revenue)),
        ("realised margin", or_dash(&p.realised_margin)),
        ("planned margin", or_dash(&p.planned_margin)),
        ("realised - planned", margin_gap),
        ("supplier funding claim", or_dash(&p.funding_claim)),
    ]));
    out.push_str("\nExecution\n");
    out.push_str(&fields(&[
        ("on-time acknowledgments", percent(&p.on_time_ack_rate, false)),
        ("on-time launches", percent(&p.on_time_launch_rate, false)),
        ("exceptions raised", p.exceptions_raised.to_string()),
        (
            "price accuracy",
            if p.price_accuracy.is_empty() {
                "—".into()
            } else {
                format!(
                    "{} of {} read back",
                    percent(&p.price_accuracy, false),
                    thousands(p.prices_checked as i64)
                )
            },
        ),
    ]));
    if !p.funding_claims.is_empty() {
        out.push_str("\nSupplier funding claims\n");
        let mut t = Table::new([
            "AGREEMENT",
            "FORECAST",
            "EARNED",
            "OUT OF WINDOW",
            "OVER CAP",
            "CLAIMED",
            "CLAIM",
            "NOTE",
        ])
        .right(1)
        .right(2)
        .right(3)
        .right(4)
        .right(5);
        for c in &p.funding_claims {
            t.row([
                c.agreement_id.clone(),
                or_dash(&c.forecast),
                or_dash(&c.earned),
                or_dash(&c.out_of_window),
                or_dash(&c.over_cap),
                or_dash(&c.claimed),
                or_dash(&c.claim_id),
                or_dash(&c.note),
            ]);
        }
        out.push_str(&t.render());
    }
    if !p.price_corrections.is_empty() {
        out.push_str("\nPrice mismatches found on the channels\n");
        let mut t = Table::new(["CHANNEL", "REGION", "WHEN", "SKUS", "REPUBLISHED", "CORRECTED IN"])
            .right(4)
            .right(5);
        for c in &p.price_corrections {
            let channel = promo_contracts::retail::v1::Channel::try_from(c.channel).map_or_else(
                |_| c.channel.to_string(),
                |x| x.as_str_name().trim_start_matches("CHANNEL_").to_owned(),
            );
            t.row([
                channel,
                if c.region_id.is_empty() { "national".into() } else { c.region_id.clone() },
                if c.after_revert { "after revert".into() } else { "live".into() },
                c.skus.join(" "),
                c.republished.to_string(),
                if c.corrected_at.is_some() {
                    duration(c.seconds_to_correct)
                } else {
                    "not corrected".into()
                },
            ]);
        }
        out.push_str(&t.render());
    }
    if !p.cycle_times.is_empty() {
        out.push_str("\nCycle time per stage\n");
        let mut t = Table::new(["STAGE", "TIME", "SECONDS"]).right(1).right(2);
        for c in &p.cycle_times {
            t.row([stage_name(c.stage()).to_owned(), duration(c.seconds), c.seconds.to_string()]);
        }
        out.push_str(&t.render());
    }
    if !p.regions.is_empty() {
        out.push_str("\nRegions\n");
        let mut t = Table::new([
            "REGION",
            "STATE",
            "UNITS SOLD",
            "REVENUE",
            "SELL-THROUGH",
            "STOCKOUT DAYS",
            "ON TIME",
        ])
        .right(2)
        .right(3)
        .right(4)
        .right(5);
        for x in &p.regions {
            t.row([
                x.region_id.clone(),
                region_state_name(x.state()).to_owned(),
                thousands(x.units_sold),
                or_dash(&x.revenue),
                percent(&x.sell_through, false),
                thousands(x.stockout_store_days as i64),
                if x.launched_on_time { "yes".into() } else { "no".into() },
            ]);
        }
        out.push_str(&t.render());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use promo_contracts::{pbjson_types::Timestamp, promo::v1::*};

    fn ts(seconds: i64) -> Option<Timestamp> {
        Some(Timestamp { seconds, nanos: 0 })
    }

    const T0: i64 = 1_900_000_000; // 2030-03-17 17:46 UTC

    #[test]
    fn report_of_a_completed_promotion() {
        let r = PromotionResult {
            promotion_id: "SPRING-26".into(),
            outcome: Outcome::Completed as i32,
            reason: String::new(),
            revision: 1,
            report: Some(PostEventReport {
                units_sold: 12_345,
                forecast_units: 11_000,
                available_units: 15_000,
                sell_through: "0.823".into(),
                forecast_variance: "0.1223".into(),
                stockout_store_days: 4,
                markdown_exposure: "321.00".into(),
                revenue: "98765.43".into(),
                realised_margin: "20000.00".into(),
                planned_margin: "21000.50".into(),
                funding_claim: "1500.00".into(),
                on_time_ack_rate: "1".into(),
                on_time_launch_rate: "0.5".into(),
                cycle_times: vec![StageCycleTime { stage: Stage::Approval as i32, seconds: 93_780 }],
                regions: vec![RegionResult {
                    region_id: "R1".into(),
                    units_sold: 6_000,
                    revenue: "48000.00".into(),
                    stockout_store_days: 0,
                    sell_through: "0.9".into(),
                    launched_on_time: true,
                    state: RegionState::Closed as i32,
                }],
                exceptions_raised: 2,
                price_accuracy: "0.9875".into(),
                prices_checked: 800,
                price_corrections: vec![PriceCorrection {
                    channel: 1,
                    region_id: "R1".into(),
                    skus: vec!["SKU-00001".into(), "SKU-00002".into()],
                    seconds_to_correct: 7200,
                    corrected_at: ts(T0),
                    republished: 1,
                    ..Default::default()
                }],
                funding_claims: vec![FundingClaimResult {
                    agreement_id: "FA-001".into(),
                    forecast: "120.00".into(),
                    units_sold: 100,
                    earned: "100.00".into(),
                    out_of_window: "0".into(),
                    over_cap: "40.00".into(),
                    claimed: "60.00".into(),
                    claim_id: "CL-000001".into(),
                    note: "the cap of 60.00 has 60.00 left".into(),
                }],
                forecast_model: "uplift-glm/1@c82a1f8dcaca".into(),
                transfers_released: 3,
                units_transferred: 181,
                stockout_store_days_without_transfers: 38,
                units_sold_without_transfers: 12_001,
            }),
        };
        let text = report(&r);
        assert!(text.contains("  transfer orders released  3\n"), "{text}");
        assert!(text.contains("  stockout store-days       4 (without the transfers: 38)\n"), "{text}");
        assert!(
            text.contains("  units sold                12,345 (without the transfers: 12,001)\n"),
            "{text}"
        );
        assert!(text.contains("  forecast model       uplift-glm/1@c82a1f8dcaca\n"), "{text}");
        assert!(
            text.contains("FA-001       120.00  100.00              0     40.00    60.00  CL-000001"),
            "{text}"
        );
        assert!(text.contains("  price accuracy           98.8% of 800 read back\n"), "{text}");
        assert!(
            text.contains("POS      R1      live  SKU-00001 SKU-00002            1            2h\n"),
            "{text}"
        );
        assert!(text.starts_with("Promotion SPRING-26: COMPLETED (revision 1)\n"), "{text}");
        assert!(text.contains("  units sold           12,345\n"), "{text}");
        assert!(text.contains("  forecast variance    +12.2%\n"), "{text}");
        assert!(text.contains("  sell-through         82.3%\n"), "{text}");
        assert!(text.contains("  realised - planned      -1000.50\n"), "{text}");
        assert!(text.contains("  on-time launches         50.0%\n"), "{text}");
        assert!(text.contains("APPROVAL  1d 2h 3m    93780\n"), "{text}");
        assert!(
            text.contains("R1      CLOSED       6,000  48000.00         90.0%              0  yes\n"),
            "{text}"
        );
    }

    #[test]
    fn report_of_a_rejected_promotion_gives_the_reason() {
        let r = PromotionResult {
            promotion_id: "X".into(),
            outcome: Outcome::Rejected as i32,
            reason: "rejected by E2001 (FINANCE): margin too thin".into(),
            revision: 2,
            report: None,
        };
        assert_eq!(
            report(&r),
            "Promotion X: REJECTED (revision 2)\n  reason  rejected by E2001 (FINANCE): margin too thin\n\n\
             `promo audit X` shows how it got there.\n"
        );
    }
}
