//! Remediation: for each failing region, the options the assessment computed (drop the short
//! SKUs, delay the region, substitute comparable SKUs); policy applies small fixes by itself,
//! the planner chooses the rest before the approval deadline, or the promotion EXPIRES. Then the
//! revision is assessed again with the choices applied.

use super::{Stop, enter, past};
use crate::{
    api::Adjustments,
    decisions,
    plan::Plan,
    policy::Policy,
    workflow::{
        carry,
        publish::publish,
        state::{Ctx, pb_ts},
        time::{now, until},
        wait::{self, Alarm, Nothing, Woke},
    },
};
use promo_contracts::promo::v1::*;

/// Waits for a choice per failing region, applies them, and assesses the revision again. A run
/// continued as new while it waited resumes the wait.
pub async fn run(
    ctx: &Ctx,
    plan: &Plan,
    policy: &Policy,
    assessment: &AssessmentSummary,
) -> Result<AssessmentSummary, Stop> {
    if past(ctx, Stage::Remediation) {
        return super::assessment::run(ctx, plan, policy).await;
    }
    let failing: Vec<String> =
        assessment.regions.iter().filter(|r| !r.passes).map(|r| r.region_id.clone()).collect();
    if ctx.state(|s| s.stage != Stage::Remediation) {
        enter(ctx, Stage::Remediation);
        let options = assessment.remediation_options.clone();
        let forecast_revenue =
            assessment.margin.as_ref().map(|m| m.forecast_revenue.clone()).unwrap_or_default();
        let thresholds =
            policy.thresholds().unwrap_or_else(|_| unreachable!("checked when the policy loaded"));
        let auto = decisions::auto_remediation(&options, &forecast_revenue, &thresholds);
        let t = now(ctx);
        ctx.state_mut(|s| {
            s.remediation_options = options.clone();
            for (region, option) in &auto {
                s.record(t, "policy", "remediation-auto-applied", format!("{option} for {region}"));
                s.remediation_choices.insert(region.clone(), (option.clone(), "policy".into()));
            }
        });
        publish(ctx);
    }
    let all_chosen =
        |s: &crate::PromotionWorkflow| failing.iter().all(|r| s.remediation_choices.contains_key(r));
    while !ctx.state(all_chosen) {
        carry::checkpoint(ctx).await?;
        let deadline = until(ctx, policy, approval_deadline(plan, policy));
        let mut expiry = [Alarm::start(ctx, deadline, "remediation deadline".into())];
        match wait::wait(ctx, Nothing, &mut expiry, carry::or_due(ctx, all_chosen)).await? {
            Woke::Rang => {
                return Err(Stop::Expired("no remediation chosen before the approval deadline".into()));
            }
            _ => expiry[0].stop(),
        }
    }
    let t = now(ctx);
    ctx.state_mut(|s| {
        let choices = s.remediation_choices.clone();
        for (region, (option_id, who)) in &choices {
            let Some(o) = s.remediation_options.iter().find(|o| &o.option_id == option_id).cloned() else {
                continue;
            };
            apply_option(&mut s.adjustments, &o);
            if let Some(r) = s.readiness.get_mut(region) {
                r.note = o.description.clone();
                if let Some(d) = o.delay_until.as_ref() {
                    r.launch_at = pb_ts(d.seconds);
                    r.state = RegionState::Delayed as i32;
                }
            }
            s.resolve(
                t,
                |e| e.kind() == ExceptionKind::StockRisk && &e.region_id == region,
                &format!("remediated: {option_id} (by {who})"),
            );
        }
        s.progress.remediated = true;
    });
    super::assessment::rerun(ctx, plan, policy).await
}

/// The business instant approvals (and remediation choices) are due: the policy's lead time
/// before launch.
pub fn approval_deadline(plan: &Plan, policy: &Policy) -> i64 {
    plan.starts_at - policy.durations.approval_deadline_before_launch.0.as_secs() as i64
}

fn apply_option(adj: &mut Adjustments, o: &RemediationOption) {
    match o.kind.as_str() {
        "delay" => {
            if let Some(d) = &o.delay_until {
                adj.delays.insert(o.region_id.clone(), d.seconds);
            }
        }
        "drop-short" => {
            adj.dropped.entry(o.region_id.clone()).or_default().extend(o.skus.iter().cloned());
        }
        "substitute" => {
            let m = adj.substitutes.entry(o.region_id.clone()).or_default();
            for (a, b) in o.skus.iter().zip(&o.substitutes) {
                m.insert(a.clone(), b.clone());
            }
        }
        _ => {}
    }
}
