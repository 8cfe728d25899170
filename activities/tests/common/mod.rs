//! What the activities' tests against the reference systems share: a small dataset served on a
//! free port, and a promotion over it.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use promo_activities::{PromotionActivities, Systems};
use promo_contracts::{
    promo::v1::{PromotionLine, PromotionSpec, PromotionWindow, promotion_line::Offer},
    retail::v1::Channel,
};
use promo_systems::{RunningSystems, Systems as Store, dataset::DatasetSpec};
use promo_workflows::{
    api::{Adjustments, AssessInput},
    plan,
    policy::Policy,
};
use temporalio_sdk::testing::ActivityEnvironment;

/// Dataset anchor (Unix seconds); the promotion launches two days later.
pub(crate) const ANCHOR: i64 = 1_800_000_000;

/// The small dataset, anchored at [`ANCHOR`], in a fresh file named after `name`, served on
/// 127.0.0.1 at a free port.
pub(crate) async fn serve(name: &str) -> RunningSystems {
    let dir = std::env::temp_dir().join(format!("promo-activities-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::open(&dir.join("systems.db"), &DatasetSpec::small(), true, Some(ANCHOR)).unwrap();
    RunningSystems::start(store).await.unwrap()
}

/// The activities as the worker registers them (default policy), against `systems`.
pub(crate) fn activity_env(systems: &RunningSystems) -> ActivityEnvironment {
    ActivityEnvironment::builder()
        .register_activities(PromotionActivities::new(
            Systems::new(&systems.url()).unwrap(),
            Policy::default(),
        ))
        .build()
}

/// An assessment of `spec` as the workflow asks for it, with the default policy's thresholds
/// (fill-rate floor 0.95, stockout ceiling off).
pub(crate) fn assess_input(spec: &PromotionSpec) -> AssessInput {
    AssessInput {
        revision: 1,
        plan: plan::validate_spec(spec, ANCHOR).unwrap(),
        adjustments: Adjustments::default(),
        min_fill_rate: "0.95".into(),
        min_margin_rate: "0.10".into(),
        margin_anomaly_mads: "3.5".into(),
        model_drift_signal: "4".into(),
        max_stockout_share: "0".into(),
        only_regions: vec![],
    }
}

/// `t` (Unix seconds) as a UTC local time of a spec, e.g. "2027-01-17T08:00".
pub(crate) fn local(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0).unwrap().format("%Y-%m-%dT%H:%M").to_string()
}

/// Ten SKUs at 25% off in every region of the small dataset; the first is funded by its
/// supplier's agreement and every uplift comes from history, so each service is read.
pub(crate) fn spec() -> PromotionSpec {
    PromotionSpec {
        promotion_id: "BOUNDARY".into(),
        name: "integration boundary".into(),
        window: Some(PromotionWindow {
            starts_at: local(ANCHOR + 2 * 86_400),
            ends_at: local(ANCHOR + 16 * 86_400),
            time_zone: "Etc/UTC".into(),
        }),
        regions: (0..3).map(DatasetSpec::region_id).collect(),
        stores: vec![],
        channels: vec![Channel::Pos as i32],
        lines: (0..10)
            .map(|i| PromotionLine {
                sku: DatasetSpec::sku(i),
                offer: Some(Offer::DiscountPercent("25".into())),
                funding_agreement_id: if i == 0 { DatasetSpec::agreement_id(0) } else { String::new() },
                planned_uplift: String::new(),
            })
            .collect(),
        planner_id: "E0042".into(),
        description: String::new(),
    }
}
