//! Price-accuracy reconciliation, run by the active window after each activation and at every
//! monitoring round, and by close after the revert: the live price of every SKU on every live
//! channel target is read back (in an activity) and compared with the approved one. A target
//! that differs raises a CHANNEL_SYNC exception naming channel, region and SKUs with the revenue
//! at risk, and is republished (its own idempotency key per correction) and read again once the
//! channel acknowledges; what still differs stays open for the next round. Each mismatch and
//! how long it took to correct goes into the post-event report with the price accuracy.

use super::{Stop, publishing};
use crate::{
    api::{PromotionActivities as A, ReconcileInput, ReconcileOutput, Target},
    decisions,
    plan::Plan,
    policy::Policy,
    summary::channel_name,
    workflow::{
        carry,
        options::check_opts,
        publish::publish,
        state::{Ctx, PromotionWorkflow, pb_ts, region_of_target},
        time::{business_now, now},
        wait,
    },
};
use promo_contracts::{promo::v1::*, retail::v1::PublicationKind};
use std::time::Duration;

/// One reconciliation round: read back, republish what differs, read back once more.
/// `live`: the targets should charge the promotional prices (else the regular ones, after the
/// revert at close: then, as with compensation, it keeps reading back — 5 s, doubling to the
/// policy's `outage_retry_max` apart — until every target charges its regular prices again, for nothing of the promotion
/// may stay live).
pub async fn round(ctx: &Ctx, plan: &Plan, policy: &Policy, live: bool) -> Result<(), Stop> {
    round_from(ctx, plan, policy, live, None).await
}

/// [`round`], its first read already made by `first` (a monitoring round's, which reads the
/// prices alongside the sales: [`read_input`]) — `Err` with why it could not read.
pub async fn round_from(
    ctx: &Ctx,
    plan: &Plan,
    policy: &Policy,
    live: bool,
    mut first: Option<Result<ReconcileOutput, String>>,
) -> Result<(), Stop> {
    let mut pauses = policy.outage_pauses();
    let mut read = 0;
    loop {
        read += 1;
        if !live {
            // Reading the revert back lasts as long as a channel keeps the promotional prices.
            carry::checkpoint(ctx).await?;
        }
        if read > 2 {
            let open = |s: &PromotionWorkflow| {
                s.price_corrections.iter().any(|c| c.after_revert && c.corrected_at.is_none())
            };
            if live || !ctx.state(open) {
                return Ok(());
            }
            let summary = "wait before reading the revert back again".to_owned();
            let pause = pauses.next().unwrap_or(Duration::from_secs(5));
            wait::sleep(ctx, pause, summary, |_| false).await?;
        }
        // A read-back that cannot run (the ERP or a channel down) is a check missed, not a
        // reason to stop the promotion: it is recorded, and the next round tries again.
        let found = match first.take() {
            Some(read) => read,
            None => {
                let Some(input) = read_input(ctx, plan, policy, live) else {
                    return Ok(());
                };
                let summary = format!("read back live prices on {} channel targets", input.targets.len());
                let work = wait::call(ctx, A::reconcile_prices, input, check_opts(120, summary));
                match wait::run(ctx, work).await {
                    Ok(found) => Ok(found),
                    Err(Stop::Failed(why, _)) => Err(why),
                    Err(stop) => return Err(stop),
                }
            }
        };
        let found = match found {
            Ok(found) => found,
            Err(why) => {
                let t = now(ctx);
                ctx.state_mut(|s| s.record(t, "system", "price-read-back-failed", why));
                return Ok(());
            }
        };
        let t = now(ctx);
        // A live target is republished once per round; a revert a channel keeps losing is
        // republished at every read after the pause, until the channel charges regular prices.
        let republish_now = read == 1 || (!live && read > 2);
        let republish = ctx.state_mut(|s| record(s, t, &found, live, read == 1, republish_now));
        publish(ctx);
        if found.mismatches.is_empty() || (live && read >= 2) {
            return Ok(());
        }
        if republish.is_empty() {
            continue;
        }
        let kind = if live { PublicationKind::Activate } else { PublicationKind::Revert };
        let deadline = policy.scaled(policy.durations.ack_deadline.0);
        let targets = publishing::Publish::Again(&republish);
        let sent = publishing::publish_and_await(
            ctx,
            plan,
            policy,
            kind,
            targets,
            deadline,
            "corrected channel targets",
        )
        .await?;
        if let Err(why) = sent {
            let t = now(ctx);
            ctx.state_mut(|s| s.record(t, "system", "republish-refused", why));
        }
    }
}

/// What a read-back of the targets now takes, or `None` when there is nothing to read.
pub fn read_input(ctx: &Ctx, plan: &Plan, policy: &Policy, live: bool) -> Option<ReconcileInput> {
    let bnow = business_now(ctx, policy);
    ctx.state(|s| read_input_at(s, plan, bnow, live))
}

/// [`read_input`] at business instant `bnow`, from the state alone (for the `monitor_input`
/// query as well).
pub(crate) fn read_input_at(
    s: &PromotionWorkflow,
    plan: &Plan,
    bnow: i64,
    live: bool,
) -> Option<ReconcileInput> {
    let targets = targets(s, live);
    if targets.is_empty() {
        return None;
    }
    Some(ReconcileInput {
        promotion_id: plan.promotion_id.clone(),
        price_change_id: s.price_change_id.clone().unwrap_or_default(),
        targets,
        expect_promo: live,
        demand_units: s
            .assessment
            .as_ref()
            .map(|a| a.regions.iter().map(|r| (r.region_id.clone(), r.demand_units)).collect())
            .unwrap_or_default(),
        remaining_permille: remaining_permille(plan, bnow, live),
    })
}

/// The targets to read: while live, every target of an activation that went live (national
/// ones once a region is live); after close, every target the revert was published to.
fn targets(s: &PromotionWorkflow, live: bool) -> Vec<Target> {
    let any_live = s.readiness.values().any(|r| r.activated_at.is_some());
    let kind = if live { PublicationKind::Activate } else { PublicationKind::Revert };
    let mut out: Vec<Target> = s
        .publications
        .iter()
        .filter(|p| p.kind == kind as i32)
        .filter(|p| {
            !live
                || region_of_target(&p.target).map_or(any_live, |r| {
                    s.readiness.get(r).is_some_and(|x| x.state() == RegionState::Active)
                })
        })
        .map(|p| p.target.clone())
        .collect();
    out.sort_by(|a, b| (a.channel, &a.region_id).cmp(&(b.channel, &b.region_id)));
    out.dedup();
    out
}

/// Share of the window still to come, in thousandths: what a mismatch found now puts at risk.
/// After close, one day's share (what a channel charging the wrong price loses until fixed).
fn remaining_permille(plan: &Plan, bnow: i64, live: bool) -> u32 {
    let len = (plan.ends_at - plan.starts_at).max(1);
    let left = if live { (plan.ends_at - bnow).clamp(0, len) } else { 86_400.min(len) };
    (left * 1000 / len) as u32
}

/// Records a read: the accuracy counts (first read of a round only), new mismatches (exception,
/// audit, an entry in the report), corrections confirmed. Returns the targets to republish,
/// each with its correction number.
fn record(
    s: &mut PromotionWorkflow,
    t: i64,
    found: &ReconcileOutput,
    live: bool,
    first: bool,
    republish_now: bool,
) -> Vec<(Target, u32)> {
    if first {
        s.price_checks.0 += found.matching;
        s.price_checks.1 += found.checked;
    }
    let after_revert = !live;
    let same = |c: &PriceCorrection, target: &Target| {
        c.channel == target.channel && c.region_id == target.region_id && c.after_revert == after_revert
    };
    let mut republish = Vec::new();
    for m in &found.mismatches {
        let sent_before = s.corrections_sent(&m.target);
        let open = s.price_corrections.iter().position(|c| same(c, &m.target) && c.corrected_at.is_none());
        let i = match open {
            Some(i) => i,
            None => {
                let e = decisions::price_mismatch_exception(m, after_revert);
                s.record(
                    t,
                    "system",
                    "price-mismatch",
                    format!("{} (revenue at risk {})", e.detail, e.revenue_at_risk),
                );
                s.raise(t, e);
                s.price_corrections.push(PriceCorrection {
                    channel: m.target.channel,
                    region_id: m.target.region_id.clone(),
                    skus: m.skus.clone(),
                    detected_at: pb_ts(t),
                    after_revert,
                    ..Default::default()
                });
                s.price_corrections.len() - 1
            }
        };
        if republish_now {
            s.price_corrections[i].republished += 1;
            republish.push((m.target.clone(), sent_before + 1));
        }
    }
    let checked: Vec<Target> = targets(s, live);
    for i in 0..s.price_corrections.len() {
        let c = &s.price_corrections[i];
        let target = Target { channel: c.channel, region_id: c.region_id.clone() };
        let still = found.mismatches.iter().any(|m| m.target == target);
        if c.corrected_at.is_some() || c.after_revert != after_revert || still || !checked.contains(&target) {
            continue;
        }
        let detected = c.detected_at.as_ref().map_or(t, |d| d.seconds);
        let c = &mut s.price_corrections[i];
        c.corrected_at = pb_ts(t);
        c.seconds_to_correct = (t - detected).max(0) as u64;
        let (id, secs) = (decisions::price_exception_id(&target, after_revert), c.seconds_to_correct);
        let place =
            if target.region_id.is_empty() { "national".to_owned() } else { target.region_id.clone() };
        s.resolve(t, |e| e.exception_id == id, &format!("republished; prices match again after {secs} s"));
        s.record(
            t,
            "system",
            "price-corrected",
            format!("{} {place}: prices match again after {secs} s", channel_name(target.channel)),
        );
    }
    republish
}
