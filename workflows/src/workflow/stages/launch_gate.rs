//! The launch gate: a durable timer to the final readiness re-check shortly before launch, then
//! the re-check itself (stock with remediation, and funding). What it finds unready since the
//! approval holds the region back ([`decisions::gate_holds`]) until the exception's owner acts:
//! a delay chosen or an operator override for stock, finance's approval for funding. Activation
//! happens in [`super::active`], region by region, when each region's gate opens.

use super::{Stop, enter};
use crate::{
    decisions::{self, Hold},
    plan::Plan,
    policy::Policy,
    workflow::{
        LAUNCH_GATE_HOLDS,
        state::{PromotionWorkflow, publish},
        wait::{self, Ctx, business_now, now, until},
    },
};
use promo_contracts::promo::v1::{AssessmentSummary, Stage};

/// Waits for the re-check instant and re-checks readiness.
pub async fn run(ctx: &Ctx, plan: &Plan, policy: &Policy) -> Result<(), Stop> {
    enter(ctx, Stage::LaunchGate);
    let recheck_at = plan.starts_at - policy.durations.final_recheck_before_launch.0.as_secs() as i64;
    loop {
        let (paused, overrides) = ctx.state(|s| (s.paused, s.overrides.len()));
        let nudged = move |s: &PromotionWorkflow| s.paused != paused || s.overrides.len() != overrides;
        let summary = "wait for the final readiness re-check".to_owned();
        let elapsed = wait::sleep(ctx, until(ctx, policy, recheck_at), summary, nudged).await?;
        // A pause or an override wakes the gate; runs before v2 went straight to the re-check,
        // v2 waits out the rest of the time.
        if elapsed || !ctx.state(|s| s.v2) || business_now(ctx, policy) >= recheck_at {
            break;
        }
    }
    let revision = ctx.state(|s| s.revision);
    let recheck = super::assessment::assess(ctx, plan, revision, policy).await?;
    let t = now(ctx);
    // Versioned change: the re-check gates. Runs before it only wrote the audit line below.
    if ctx.state(|s| s.v2) && ctx.patched(LAUNCH_GATE_HOLDS) {
        hold(ctx, &recheck, revision);
    }
    ctx.state_mut(|s| {
        let failing: Vec<String> =
            recheck.regions.iter().filter(|r| !r.passes).map(|r| r.region_id.clone()).collect();
        let detail = if failing.is_empty() {
            "stock and funding confirmed".into()
        } else {
            format!("still short: {}", failing.join(", "))
        };
        s.record(t, "system", "readiness-recheck", detail);
    });
    Ok(())
}

/// Holds the regions the re-check found unready since approval ([`decisions::gate_holds`]):
/// each raises its exception with owner and revenue at risk; a region held for stock gets the
/// re-check's delay option, if inbound stock would make it pass.
fn hold(ctx: &Ctx, recheck: &AssessmentSummary, revision: u32) {
    let t = now(ctx);
    let placed = ctx.state_mut(|s| {
        let approved = s.assessment.clone().unwrap_or_default();
        let holds = decisions::gate_holds(&approved, recheck, &format!("r{revision}"));
        for h in &holds {
            s.place_hold(t, h);
            if h.hold == Hold::Stock {
                let delays = recheck
                    .remediation_options
                    .iter()
                    .filter(|o| o.kind == "delay" && h.regions.contains(&o.region_id));
                s.remediation_options.retain(|o| !h.regions.contains(&o.region_id));
                s.remediation_options.extend(delays.cloned());
            }
        }
        !holds.is_empty()
    });
    if placed {
        publish(ctx);
    }
}
