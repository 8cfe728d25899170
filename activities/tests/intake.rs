//! Intake against the reference systems: problems with the spec's shape, with master data and
//! with the approval lead time come back together in one list, sorted by line. The activity
//! runs as the worker runs it (the SDK's `ActivityEnvironment`).

mod common;

use common::{ANCHOR, activity_env, local, serve, spec};
use promo_activities::PromotionActivities;
use promo_contracts::promo::v1::promotion_line::Offer;
use promo_workflows::{
    api::{CalendarCheck, IntakeInput},
    policy::Policy,
};

/// Intake reports problems with the spec's shape, with master data and with the approval lead
/// time together, sorted by line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_reports_shape_and_master_data_problems_together() {
    let s = serve("intake").await;
    let env = activity_env(&s);
    let mut spec = spec();
    spec.lines[2].sku = "SKU-99999".into();
    spec.lines[6].offer = Some(Offer::PromoPrice("-4.00".into()));
    let lead = Policy::default().durations.approval_deadline_before_launch.0.as_secs() as i64;
    let now = ANCHOR + 86_400 + 3_600; // 23 hours before launch
    let out = env
        .run(
            PromotionActivities::validate_spec,
            IntakeInput {
                spec: spec.clone(),
                now,
                approval_lead_secs: lead,
                calendar: CalendarCheck::DryRun,
            },
        )
        .await
        .unwrap();
    let text: Vec<String> = out.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        [
            format!(
                "window.starts_at: launches {} (Etc/UTC), sooner than the approval lead time of 1d; the earliest \
                 possible launch is {}",
                local(ANCHOR + 2 * 86_400),
                local(now + lead)
            ),
            "line 3: lines[2].sku: unknown SKU \"SKU-99999\"".to_owned(),
            "line 7: lines[6].promo_price: \"-4.00\" must be above zero".to_owned(),
        ]
    );
    assert_eq!(out.regions.len(), 3, "regions are reported even with problems");

    // No lead time asked for (the CLI's early check), and a launch far enough out: the lead time
    // is not checked.
    let out = env
        .run(
            PromotionActivities::validate_spec,
            IntakeInput { spec, now: ANCHOR, approval_lead_secs: 0, calendar: CalendarCheck::DryRun },
        )
        .await
        .unwrap();
    assert_eq!(out.problems.len(), 2, "{:?}", out.problems);
    s.stop().await;
}
