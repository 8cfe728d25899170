//! Intake: the policy the run keeps, then each revision's spec validated — its shape here (pure
//! code over the spec and the business time), master data, the approval lead time and the
//! promotion calendar (where the revision's footprint is reserved) in `promo.validate_spec`. An
//! invalid revision ends the promotion FAILED with an `InvalidSpec` failure listing every
//! problem with its line and field.

use super::{Stop, check_cancel, enter, past};
use crate::{
    api::{self, IntakeInput, PromotionActivities as A},
    plan::{self, Plan},
    policy::Policy,
    workflow::{
        options::opts,
        publish::publish,
        state::{Ctx, pb_ts},
        time::{business_now, now},
        wait,
    },
};
use promo_contracts::promo::v1::{RegionReadiness, Stage};

/// The start of every run: the policy, and the messages that came before it. A run continued as
/// new has them already.
pub async fn start(ctx: &Ctx) -> Result<Policy, Stop> {
    if let Some(policy) = ctx.state(|s| s.policy.clone()) {
        return Ok(policy);
    }
    let t0 = now(ctx);
    ctx.state_mut(|s| s.started_at = t0);
    enter(ctx, Stage::Intake);
    let policy =
        wait::run(ctx, wait::call(ctx, A::load_policy, (), opts(30, "load the promotion policy".into())))
            .await?;
    ctx.state_mut(|s| s.policy = Some(policy.clone()));
    if let Err(why) = policy.thresholds() {
        return Err(Stop::Failed(why.to_string(), None));
    }
    crate::workflow::messages::apply_early(ctx).await;
    check_cancel(ctx)?;
    Ok(policy)
}

/// Validates the current revision (the stage was entered by [`start`], or by the approval that
/// asked for a new revision); returns its plan.
pub async fn run(ctx: &Ctx, policy: &Policy) -> Result<Plan, Stop> {
    if past(ctx, Stage::Intake)
        && let Some(plan) = ctx.state(|s| s.plan.clone())
    {
        return Ok(plan);
    }
    let (spec, revision, promotion_id) =
        ctx.state(|s| (s.spec.clone(), s.revision, s.spec.promotion_id.clone()));
    let now = business_now(ctx, policy);
    let input = IntakeInput {
        spec: spec.clone(),
        now,
        approval_lead_secs: policy.durations.approval_deadline_before_launch.0.as_secs() as i64,
        // The ERP's calendar holds each revision's footprint.
        calendar: api::CalendarCheck::Reserve { revision },
    };
    let intake = wait::run(
        ctx,
        wait::call(
            ctx,
            A::validate_spec,
            input,
            opts(120, format!("validate revision {revision}: master data, collisions, lead time")),
        ),
    )
    .await?;
    // The shape validation is pure code over the spec and the business time (the same `now`
    // replays), and the activity's problems include its problems: with none of them, it passes.
    let mut problems = intake.problems;
    let plan = if problems.is_empty() {
        plan::validate_spec(&spec, now).map_err(|found| problems = found).ok()
    } else {
        None
    };
    let Some(plan) = plan else {
        let text = format!(
            "promotion {promotion_id} revision {revision} is invalid ({} problems):\n{}",
            problems.len(),
            plan::describe(&problems)
        );
        return Err(invalid_spec(text));
    };
    let launch = plan.starts_at;
    ctx.state_mut(|s| {
        s.plan = Some(plan.clone());
        s.regions = intake.regions.clone();
        s.adjustments = api::Adjustments::default();
        s.remediation_choices.clear();
        s.readiness = intake
            .regions
            .iter()
            .map(|r| {
                let readiness = RegionReadiness {
                    region_id: r.region_id.clone(),
                    launch_at: pb_ts(launch),
                    ..Default::default()
                };
                (r.region_id.clone(), readiness)
            })
            .collect();
    });
    // The regions and launch now known go out with the run's other attributes.
    publish(ctx);
    Ok(plan)
}

/// The failure of an invalid spec: non-retryable, type `InvalidSpec`, the text as its message.
pub(crate) fn invalid_spec(text: String) -> Stop {
    Stop::Failed(text, Some("InvalidSpec".to_owned()))
}
