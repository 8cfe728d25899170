//! Intake: the policy the run keeps, then each revision's spec validated against master data,
//! other promotions and the approval lead time (in the `promo.validate_spec` activity). An
//! invalid revision ends the promotion FAILED with an `InvalidSpec` failure listing every
//! problem with its line and field.

use super::{Stop, check_cancel, enter};
use crate::{
    api::{self, IntakeInput, PromotionActivities as A},
    plan::{self, Plan},
    policy::Policy,
    workflow::{
        state::{pb_ts, publish},
        wait::{self, Ctx, business_now, now, opts},
    },
};
use promo_contracts::promo::v1::{RegionReadiness, Stage};
use temporalio_common::search_attributes::Timestamp as SaTimestamp;
use temporalio_sdk::ApplicationFailure;

/// The start of every run: visibility, the policy, and the messages that came before it.
pub async fn start(ctx: &Ctx) -> Result<Policy, Stop> {
    let (promotion_id, regions) = ctx.state(|s| (s.spec.promotion_id.clone(), s.spec.regions.clone()));
    // Regions are visible from the first task so that collision checks of promotions starting at
    // the same time find this one; intake refines them (regions of individual stores). Since
    // plan-in-workflow they go with the run's other attributes ([`publish`]): its collision
    // checks are the calendar's.
    if !ctx.state(|s| s.plan_in_workflow) {
        ctx.upsert_search_attributes([
            api::PROMOTION_ID.value_set(promotion_id),
            api::PROMOTION_REGIONS.value_set(regions),
        ]);
    }
    let t0 = now(ctx);
    ctx.state_mut(|s| s.started_at = t0);
    enter(ctx, Stage::Intake);
    let policy =
        wait::run(ctx, wait::call(ctx, A::load_policy, (), opts(30, "load the promotion policy".into())))
            .await?;
    ctx.state_mut(|s| s.policy = Some(policy.clone()));
    if let Err(why) = policy.thresholds() {
        return Err(Stop::from(temporalio_sdk::WorkflowTermination::from(
            ApplicationFailure::non_retryable(why),
        )));
    }
    let t = now(ctx);
    if ctx.state_mut(|s| s.apply_early(t)) > 0 {
        publish(ctx);
    }
    check_cancel(ctx)?;
    Ok(policy)
}

/// Validates the current revision; returns its plan.
pub async fn run(ctx: &Ctx, policy: &Policy) -> Result<Plan, Stop> {
    let (spec, revision, promotion_id) =
        ctx.state(|s| (s.spec.clone(), s.revision, s.spec.promotion_id.clone()));
    if revision > 1 {
        enter(ctx, Stage::Intake);
    }
    let plan_in_workflow = ctx.state(|s| s.plan_in_workflow);
    let now = business_now(ctx, policy);
    let input = IntakeInput {
        spec: spec.clone(),
        now,
        // Runs started before lifecycle v2 keep their behaviour: no lead-time check.
        approval_lead_secs: if ctx.state(|s| s.v2) {
            policy.durations.approval_deadline_before_launch.0.as_secs() as i64
        } else {
            0
        },
        // Since calendar-reservations the ERP's calendar holds each revision's footprint.
        calendar: if ctx.state(|s| s.calendar) {
            api::CalendarCheck::Reserve { revision }
        } else {
            api::CalendarCheck::Visibility
        },
        without_plan: plan_in_workflow,
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
    let plan = match intake.plan {
        _ if !problems.is_empty() => None,
        Some(plan) => Some(plan),
        None if plan_in_workflow => plan::validate_spec(&spec, now).map_err(|found| problems = found).ok(),
        None => None,
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
    if !plan_in_workflow {
        ctx.upsert_search_attributes([
            api::PROMOTION_REGIONS.value_set(intake.regions.iter().map(|r| r.region_id.clone()).collect()),
            api::LAUNCH_AT.value_set(SaTimestamp::new(launch, 0)),
        ]);
    }
    // The footprint memo is for the collision checks of runs without the calendar.
    if ctx.state(|s| s.v2) && !plan_in_workflow {
        // Other promotions' collision checks read the footprint from the listing: it follows
        // each revision (the revision it belongs to is beside it).
        let _ = ctx.upsert_memo([
            (api::FOOTPRINT_MEMO, Some(temporalio_common::MemoValue::new(plan::Footprint::of(&plan)))),
            (api::FOOTPRINT_REVISION_MEMO, Some(temporalio_common::MemoValue::new(i64::from(revision)))),
        ]);
    }
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
    if plan_in_workflow {
        // The regions and launch now known go out with the run's other attributes.
        publish(ctx);
    }
    Ok(plan)
}

/// The failure of an invalid spec: non-retryable, type `InvalidSpec`, the text as its message.
pub(crate) fn invalid_spec(text: String) -> Stop {
    let failure = ApplicationFailure::builder(text.clone())
        .type_name("InvalidSpec".to_owned())
        .non_retryable(true)
        .build();
    Stop::Failed(text, failure.into())
}
