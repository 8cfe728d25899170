//! Post-event analysis: the report from sales actuals against the plan (in an activity), with
//! what only the workflow knows — cycle time per stage, on-time acknowledgments and launches.

use super::{
    Stop,
    active::{Windows, sales_input},
    enter_once,
};
use crate::{
    api::{ClaimsInput, PromotionActivities as A},
    decisions,
    plan::Plan,
    policy::Policy,
    workflow::{
        options::systems_opts,
        persist::{Shows, until_answered},
        state::Ctx,
        time::now,
        wait,
    },
};
use promo_contracts::promo::v1::*;
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// The post-event report.
pub async fn run(ctx: &Ctx, plan: &Plan, policy: &Policy, windows: Windows) -> Result<PostEventReport, Stop> {
    enter_once(ctx, Stage::Analysis);
    let input = sales_input(ctx, plan, windows);
    let revision = ctx.state(|s| s.revision);
    // The report and the funding claims in one activity, over one read of the sales; the
    // promotion is over, so an outage only delays them.
    let summary = "post-event analysis, then reconcile and claim supplier funding".to_owned();
    let chain = ctx.state(|s| s.first_run_id.clone());
    let both = ClaimsInput { revision, chain, sales: input };
    let attempts = policy.systems_attempts;
    let out = until_answered(ctx, "the post-event analysis", Shows::Systems, || {
        wait::call(ctx, A::analyse_and_claim, both.clone(), systems_opts(attempts, 300, summary.clone()))
    })
    .await?
    .map_err(|why| Stop::Failed(format!("the post-event analysis was refused: {why}"), None))?;
    let (mut report, claims) = (out.report, out.claims);
    let t = now(ctx);
    ctx.state_mut(|s| {
        for c in &claims {
            let note = if c.note.is_empty() { String::new() } else { format!(" ({})", c.note) };
            s.record(
                t,
                "system",
                "funding-claimed",
                format!(
                    "{}: claimed {} of {} earned, forecast {}{note}",
                    c.agreement_id, c.claimed, c.earned, c.forecast
                ),
            );
        }
    });
    let claimed: Decimal =
        claims.iter().filter_map(|c| promo_contracts::money::parse_decimal("", &c.claimed, 2).ok()).sum();
    report.funding_claim = promo_contracts::money::format_money(claimed);
    report.funding_claims = claims;
    ctx.state(|s| {
        let mut cycle: BTreeMap<i32, u64> = BTreeMap::new();
        for w in s.timeline.windows(2) {
            let secs = (w[1].entered_at.as_ref().map_or(0, |t| t.seconds)
                - w[0].entered_at.as_ref().map_or(0, |t| t.seconds))
            .max(0) as u64;
            *cycle.entry(w[0].stage).or_default() += secs;
        }
        report.cycle_times =
            cycle.into_iter().map(|(stage, seconds)| StageCycleTime { stage, seconds }).collect();
        let (on_time, total) = s.on_time_acks;
        report.on_time_ack_rate = ratio(i64::from(on_time), i64::from(total));
        let on_time_launches = s.on_time.values().filter(|t| **t).count();
        report.on_time_launch_rate = ratio(on_time_launches as i64, s.readiness.len() as i64);
        report.exceptions_raised = s.exceptions.len() as u32 + s.exceptions_forgotten;
        report.price_accuracy = decisions::price_accuracy(s.price_checks.0, s.price_checks.1);
        report.prices_checked = s.price_checks.1;
        report.price_corrections = s.price_corrections.clone();
        for rr in report.regions.iter_mut() {
            rr.launched_on_time = s.on_time.get(&rr.region_id).copied().unwrap_or(false);
            if let Some(x) = s.readiness.get(&rr.region_id) {
                rr.state = x.state;
            }
        }
    });
    Ok(report)
}

fn ratio(a: i64, b: i64) -> String {
    if b == 0 {
        return "0".into();
    }
    promo_contracts::money::format_ratio(Decimal::from(a) / Decimal::from(b))
}
