//! Assessment: margin & compliance, inventory alignment and supplier funding (one activity,
//! `promo.assess`, whose reads run concurrently), and the exceptions they raise. When a region
//! fails, the lifecycle remediates once and assesses again.

use super::{Stop, enter, past};
use crate::{
    api::{
        AssessInput, Assessment, InventoryAssessment, PromotionActivities as A, PublicationRef,
        RecheckGateInput,
    },
    decisions,
    plan::Plan,
    policy::Policy,
    workflow::{
        options::long_opts,
        state::{Ctx, pb_ts},
        time::now,
        wait,
    },
};
use promo_contracts::promo::v1::*;
use std::time::Duration;

/// Assesses the current revision and records what it found (exceptions, readiness); a run past
/// the assessment (continued as new later) has it already.
pub async fn run(ctx: &Ctx, plan: &Plan, policy: &Policy) -> Result<AssessmentSummary, Stop> {
    if past(ctx, Stage::Assessment)
        && let Some(a) = ctx.state(|s| s.assessment.clone())
    {
        return Ok(a);
    }
    rerun(ctx, plan, policy).await
}

/// Assesses the current revision again (after remediation).
pub async fn rerun(ctx: &Ctx, plan: &Plan, policy: &Policy) -> Result<AssessmentSummary, Stop> {
    let revision = ctx.state(|s| s.revision);
    enter(ctx, Stage::Assessment);
    let assessment = assess(ctx, plan, revision, policy).await?;
    record(ctx, &assessment, revision);
    Ok(assessment)
}

/// Whether every region passed.
pub fn passes(assessment: &AssessmentSummary) -> bool {
    assessment.regions.iter().all(|r| r.passes)
}

/// The launch gate's final re-check in one activity (`promo.recheck_gate`): the assessment, and
/// the acknowledged activations re-read — or why they could not be.
pub async fn recheck_gate(
    ctx: &Ctx,
    plan: &Plan,
    revision: u32,
    policy: &Policy,
    publications: Vec<PublicationRef>,
) -> Result<(AssessmentSummary, Result<Vec<PublicationRef>, String>), Stop> {
    let summary = format!(
        "re-check stock and funding of {} lines and {} channel acknowledgments",
        plan.lines.len(),
        publications.len()
    );
    let input = RecheckGateInput { assess: assess_input(ctx, plan, revision, policy), publications };
    let opts = long_opts(Duration::from_secs(300), summary);
    let out = wait::run(ctx, wait::call(ctx, A::recheck_gate, input, opts)).await?;
    Ok((summary_of(out.assessment, revision), out.publications))
}

/// What the assessment engines take for `revision`.
fn assess_input(ctx: &Ctx, plan: &Plan, revision: u32, policy: &Policy) -> AssessInput {
    AssessInput {
        revision,
        plan: plan.clone(),
        adjustments: ctx.state(|s| s.adjustments.clone()),
        min_fill_rate: policy.min_fill_rate.clone(),
        min_margin_rate: policy.min_margin_rate.clone(),
        margin_anomaly_mads: policy.margin_anomaly_mads.clone(),
        model_drift_signal: policy.model_drift_signal.clone(),
        max_stockout_share: policy.max_stockout_share.clone(),
        only_regions: vec![],
    }
}

/// The summary of one activity's assessment.
fn summary_of(a: Assessment, revision: u32) -> AssessmentSummary {
    let InventoryAssessment { regions, options, positions_read } = a.inventory;
    AssessmentSummary {
        revision,
        margin: Some(a.margin),
        regions,
        funding: Some(a.funding),
        remediation_options: options,
        positions_read,
    }
}

/// Assesses margin, inventory and funding of `revision` in one activity.
async fn assess(ctx: &Ctx, plan: &Plan, revision: u32, policy: &Policy) -> Result<AssessmentSummary, Stop> {
    let input = assess_input(ctx, plan, revision, policy);
    let n = plan.lines.len();
    let summary = format!("margin & compliance, inventory alignment and funding of {n} lines");
    let a = wait::run(ctx, wait::call(ctx, A::assess, input, long_opts(Duration::from_secs(300), summary)))
        .await?;
    Ok(summary_of(a, revision))
}

/// Keeps an assessment: its exceptions (replacing the revision's earlier ones) and each
/// region's readiness.
fn record(ctx: &Ctx, assessment: &AssessmentSummary, revision: u32) {
    let t = now(ctx);
    ctx.state_mut(|s| {
        s.resolve(
            t,
            |e| e.exception_id.ends_with(&format!("-r{revision}")) && e.kind() != ExceptionKind::ChannelSync,
            "re-assessed",
        );
        for e in decisions::exceptions_from_assessment(assessment, &format!("r{revision}")) {
            s.raise(t, e);
        }
        for r in &assessment.regions {
            let delayed = s.adjustments.delays.get(&r.region_id).copied();
            if let Some(x) = s.readiness.get_mut(&r.region_id) {
                x.fill_rate = r.fill_rate.clone();
                x.stockout_probability = r.stockout_probability.clone();
                x.state = match (r.passes, delayed) {
                    (_, Some(_)) => RegionState::Delayed,
                    (true, None) => RegionState::Ready,
                    (false, None) => RegionState::AtRisk,
                } as i32;
                if let Some(d) = delayed {
                    x.launch_at = pb_ts(d);
                } else if r.passes {
                    x.note.clear();
                } else {
                    x.note = decisions::region_risk_note(r);
                }
            }
        }
        if let Some(detail) = decisions::forecast_model_audit(assessment) {
            s.record(t, "system", "forecast-model", detail);
        }
        if let Some(detail) = decisions::stockout_audit(assessment) {
            s.record(t, "system", "stockout-risk", detail);
        }
        s.assessment = Some(assessment.clone());
    });
}
