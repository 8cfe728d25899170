//! Close, at the window's end: the ERP price change reverted (retried until it succeeds, with a
//! COMPENSATION_PENDING exception while it cannot), the revert published to every channel
//! target that went live and acknowledged again, and every region closed.

use super::{
    Stop, enter_once, past,
    publishing::{self, Publish},
};
use crate::{
    api::{PromotionActivities as A, Target},
    plan::Plan,
    policy::Policy,
    summary::channel_name,
    workflow::{
        options::compensation_opts,
        persist::{Shows, until_answered},
        state::{Ctx, region_of_target},
        time::now,
        wait,
    },
};
use promo_contracts::{promo::v1::*, retail::v1::PublicationKind};

/// Reverts prices in the ERP and the channels, and closes the regions.
pub async fn run(ctx: &Ctx, plan: &Plan, policy: &Policy) -> Result<(), Stop> {
    if past(ctx, Stage::Closing) {
        return Ok(());
    }
    enter_once(ctx, Stage::Closing);
    if let Some(pc) =
        ctx.state(|s| s.price_change_id.clone()).filter(|_| !ctx.state(|s| s.progress.erp_reverted))
    {
        let summary = "revert promo prices in the ERP".to_owned();
        let attempts = policy.compensation_attempts;
        let what = "the revert of the ERP price change";
        let reverted = until_answered(ctx, what, Shows::Compensation, || {
            wait::call(ctx, A::revert_prices, pc.clone(), compensation_opts(attempts, summary.clone()))
        })
        .await?;
        if let Err(why) = reverted {
            // Refused for good: the ending's sweep finds the staged change and blocks on it.
            let t = now(ctx);
            ctx.state_mut(|s| s.record(t, "system", "revert-refused", why));
        }
        ctx.state_mut(|s| s.progress.erp_reverted = true);
    }
    // The channels get the revert too, and it must be acknowledged again.
    if !ctx.state(|s| s.progress.channels_reverted) {
        revert_channels(ctx, plan, policy).await?;
        ctx.state_mut(|s| s.progress.channels_reverted = true);
    }
    super::reconcile::round(ctx, plan, policy, false).await?;
    let t = now(ctx);
    ctx.state_mut(|s| {
        for r in s.readiness.values_mut() {
            if r.state() == RegionState::Active {
                r.state = RegionState::Closed as i32;
            } else {
                r.note = format!("never launched: {}", r.note);
            }
        }
        s.record(t, "system", "closed", "prices reverted".into());
    });
    Ok(())
}

/// Publishes the revert to every target that went live (national channels, and regional ones of
/// activated regions) and waits, within the acknowledgment deadline, for the channels to confirm.
async fn revert_channels(ctx: &Ctx, plan: &Plan, policy: &Policy) -> Result<(), Stop> {
    let live: Vec<Target> = ctx.state(|s| {
        s.publications
            .iter()
            .filter(|p| p.kind == PublicationKind::Activate as i32)
            .filter(|p| {
                region_of_target(&p.target)
                    .is_none_or(|r| s.readiness.get(r).is_some_and(|x| x.activated_at.is_some()))
            })
            .map(|p| p.target.clone())
            .collect()
    });
    let deadline = policy.scaled(policy.durations.ack_deadline.0);
    let targets = Publish::First(&live);
    let acked = publishing::publish_and_await(
        ctx,
        plan,
        policy,
        PublicationKind::Revert,
        targets,
        deadline,
        "reverted channel targets",
    )
    .await?;
    let t = now(ctx);
    let acked = match acked {
        Ok(acked) => acked,
        // Refused for good: the read-back and the ending's sweep undo what stays live.
        Err(why) => {
            ctx.state_mut(|s| s.record(t, "system", "revert-refused", why));
            return Ok(());
        }
    };
    ctx.state_mut(|s| {
        let confirmed = acked.iter().filter(|p| p.acknowledged_at_ms.is_some()).count();
        let missing: Vec<String> = acked
            .iter()
            .filter(|p| p.acknowledged_at_ms.is_none())
            .map(|p| format!("{} {}", channel_name(p.target.channel), p.target.region_id))
            .collect();
        let detail = if missing.is_empty() {
            format!("{confirmed} channel targets acknowledged the revert")
        } else {
            format!("{confirmed} acknowledged; not yet: {}", missing.join(", "))
        };
        s.record(t, "system", "channels-reverted", detail);
        s.publications.extend(acked);
    });
    Ok(())
}
