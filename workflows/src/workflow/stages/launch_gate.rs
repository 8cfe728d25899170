//! The launch gate: a durable timer to the final readiness re-check shortly before launch, then
//! the re-check itself (stock with remediation, funding, and the channels' acknowledgments).
//! What it finds unready since the approval holds the region back ([`decisions::gate_holds`])
//! until the exception's owner acts: a delay chosen or an operator override for stock, finance's
//! approval for funding. A channel target that took its acknowledgment back is republished and
//! holds the regions depending on it until it acknowledges again (or an operator overrides).
//! Activation happens in [`super::active`], region by region, when each region's gate opens.

use super::{Stop, enter_once, past, publishing};
use crate::{
    api::{PromotionActivities as A, PublicationRef},
    decisions::{self, Hold},
    plan::Plan,
    policy::Policy,
    summary::channel_name,
    workflow::{
        carry,
        options::long_opts,
        publish::publish,
        state::{Ctx, PromotionWorkflow, region_of_target},
        time::{business_now, now, until},
        wait,
    },
};
use promo_contracts::{
    promo::v1::{AssessmentSummary, Stage},
    retail::v1::PublicationKind,
};
use std::time::Duration;

/// Waits for the re-check instant and re-checks readiness.
pub async fn run(ctx: &Ctx, plan: &Plan, policy: &Policy) -> Result<(), Stop> {
    // A run continued as new after the re-check resumes in the active window.
    if past(ctx, Stage::LaunchGate) || ctx.state(|s| s.progress.rechecked) {
        return Ok(());
    }
    enter_once(ctx, Stage::LaunchGate);
    let recheck_at = plan.starts_at - policy.durations.final_recheck_before_launch.0.as_secs() as i64;
    // A pause or an override wakes the gate, which then waits out the rest of the time on the
    // same timer (see `wait::Kept`).
    let mut kept = wait::Kept::default();
    loop {
        if business_now(ctx, policy) < recheck_at {
            carry::checkpoint(ctx).await?;
        }
        let (paused, overrides) = ctx.state(|s| (s.paused, s.overrides.len()));
        let nudged = carry::or_due(ctx, move |s: &PromotionWorkflow| {
            s.paused != paused || s.overrides.len() != overrides
        });
        let summary = "wait for the final readiness re-check".to_owned();
        let d = until(ctx, policy, recheck_at);
        let elapsed = kept.sleep(ctx, recheck_at, d, summary, nudged).await?;
        if elapsed || business_now(ctx, policy) >= recheck_at {
            break;
        }
    }
    kept.stop();
    let revision = ctx.state(|s| s.revision);
    // The channels are read back in the assessment's activity.
    let acked = acknowledged(ctx);
    let (recheck, read) = super::assessment::recheck_gate(ctx, plan, revision, policy, acked.clone()).await?;
    let t = now(ctx);
    ctx.state_mut(|s| s.progress.rechecked = true);
    hold(ctx, &recheck, revision);
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
    channels_read(ctx, plan, policy, acked, read).await
}

/// The acknowledged activations, which the re-check re-reads.
fn acknowledged(ctx: &Ctx) -> Vec<PublicationRef> {
    ctx.state(|s| {
        s.publications
            .iter()
            .filter(|p| p.kind == PublicationKind::Activate as i32 && p.acknowledged_at_ms.is_some())
            .cloned()
            .collect()
    })
}

/// What the re-check does with the acknowledged activations `acked` once re-read (`read`, or
/// why they could not be). A target whose channel took its acknowledgment back raises an
/// exception (operations, with the revenue of the regions it holds), loses its acknowledgment
/// here — so the regions depending on it stay dark ([`decisions::activation`]) — and is
/// republished under its own key; the gate then waits for the acknowledgments until the launch
/// instant (at most the acknowledgment deadline); after that the active window keeps waiting for
/// them as for any late acknowledgment. A re-read that cannot run is audited and does not hold
/// the launch: the channels did acknowledge, and the read-back after activation checks the
/// prices they charge.
async fn channels_read(
    ctx: &Ctx,
    plan: &Plan,
    policy: &Policy,
    acked: Vec<PublicationRef>,
    read: Result<Vec<PublicationRef>, String>,
) -> Result<(), Stop> {
    if acked.is_empty() {
        return Ok(());
    }
    let read = match read {
        Ok(read) => read,
        Err(why) => {
            let t = now(ctx);
            ctx.state_mut(|s| s.record(t, "system", "channel-recheck-failed", why));
            return Ok(());
        }
    };
    let withdrawn: Vec<PublicationRef> =
        read.into_iter().filter(|p| p.acknowledged_at_ms.is_none()).collect();
    let t = now(ctx);
    if withdrawn.is_empty() {
        let detail = format!("{} channel acknowledgments still hold", acked.len());
        ctx.state_mut(|s| s.record(t, "system", "channel-recheck", detail));
        return Ok(());
    }
    let numbered = ctx.state_mut(|s| withdraw(s, t, &withdrawn));
    publish(ctx);

    let targets: Vec<_> = numbered.iter().map(|(p, n)| (p.target.clone(), *n)).collect();
    let sent = publishing::republish(ctx, plan, PublicationKind::Activate, &targets).await?;
    let t = now(ctx);
    ctx.state_mut(|s| {
        for (new, (old, _)) in sent.iter().zip(&numbered) {
            if let Some(p) = s.publications.iter_mut().find(|p| p.publication_id == old.publication_id) {
                *p = new.clone();
            }
        }
        s.refresh_ack_readiness();
        s.resolve_reacknowledged(t);
    });
    publish(ctx);

    let deadline = policy.scaled(policy.durations.ack_deadline.0);
    let timeout = until(ctx, policy, plan.starts_at).min(deadline);
    let waiting = publishing::waiting_for(ctx);
    if waiting.is_empty() || timeout < Duration::from_millis(1) {
        return Ok(());
    }
    let overrides = ctx.state(|s| s.overrides.len());
    let summary = format!("wait for {} republished channel targets to acknowledge", waiting.len());
    let input = publishing::acks_input(ctx, waiting, timeout, false);
    let work = wait::remote(ctx, A::await_acknowledgments, input, long_opts(timeout, summary));
    if let Some(acked) =
        wait::activity(ctx, work, move |s: &PromotionWorkflow| s.overrides.len() != overrides).await?
    {
        let t = now(ctx);
        ctx.state_mut(|s| {
            s.merge_acks(t, &acked);
            s.refresh_ack_readiness();
            s.resolve_reacknowledged(t);
        });
        publish(ctx);
    }
    Ok(())
}

/// Records each withdrawn acknowledgment: audit line, exception, the publication no longer
/// counted as acknowledged, the held regions' notes. Returns each target with the correction
/// number its republication carries.
fn withdraw(s: &mut PromotionWorkflow, t: i64, withdrawn: &[PublicationRef]) -> Vec<(PublicationRef, u32)> {
    let mut out = Vec::with_capacity(withdrawn.len());
    let all: Vec<String> = s.readiness.keys().cloned().collect();
    for p in withdrawn {
        let region = region_of_target(&p.target).map(str::to_owned);
        let held = region.clone().map_or_else(|| all.clone(), |r| vec![r]);
        let revenue =
            decisions::channel_revenue_at_risk(&s.assessment.clone().unwrap_or_default(), region.as_deref());
        let e = decisions::ack_withdrawn_exception(p, s.revision, &held, revenue);
        s.record(
            t,
            "channel",
            "acknowledgment-withdrawn",
            format!("{} (revenue at risk {})", e.detail, e.revenue_at_risk),
        );
        s.raise(t, e);
        if let Some(mine) = s.publications.iter_mut().find(|x| x.publication_id == p.publication_id) {
            mine.acknowledged_at_ms = None;
        }
        for r in &held {
            if let Some(x) = s.readiness.get_mut(r) {
                x.note = format!(
                    "held at the launch gate: {} took back its acknowledgment; republished",
                    channel_name(p.target.channel)
                );
            }
        }
        let n = s.corrections_sent(&p.target) + 1;
        *s.gate_republished.entry(crate::workflow::state::target_key(&p.target)).or_default() += 1;
        out.push((p.clone(), n));
    }
    s.refresh_ack_readiness();
    out
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
