//! Publishing: every channel target gets the activation (POS and store communications per
//! region, eCommerce and loyalty once), then acknowledgment rounds: what is still missing after
//! a round raises a channel-sync exception, and after the policy's retries the late regions are
//! delayed or the whole launch held (`late_ack_action`). An override ends the wait for the
//! regions it opens; a cancel ends it at once, cancelling the running wait.

use super::{Stop, check_cancel, enter_once, past};
use crate::{
    api::{AwaitAcksInput, PromotionActivities as A, PublicationRef, PublishInput, Target},
    decisions,
    plan::Plan,
    policy::Policy,
    workflow::{
        carry, events,
        options::{PUBLISH_TIMEOUT_SECS, long_attempts_opts, long_opts, opts},
        persist::{Shows, until_answered},
        publish::publish,
        state::{Ctx, PromotionWorkflow, region_of_target},
        time::now,
        wait,
    },
};
use promo_contracts::{
    promo::v1::*,
    retail::v1::{Channel, PublicationKind},
};
use std::time::Duration;

/// Publishes the activation everywhere and waits for the acknowledgments. A run continued as new
/// meanwhile resumes the rounds where they were.
pub async fn run(ctx: &Ctx, plan: &Plan, policy: &Policy) -> Result<(), Stop> {
    if past(ctx, Stage::Publishing) {
        return Ok(());
    }
    enter_once(ctx, Stage::Publishing);
    let region_ids = ctx.state(|s| s.regions.iter().map(|r| r.region_id.clone()).collect::<Vec<_>>());
    let issue = Issue::of(ctx);
    let targets = channel_targets(plan, &region_ids);
    // The run publishes in its first acknowledgment wait — unless an operator opened a region
    // already, whose acknowledgments that wait would otherwise await too.
    let published = ctx.state(|s| !s.publications.is_empty());
    let mut unpublished = ctx
        .state(|s| !published && s.overrides.is_empty())
        .then(|| publications(plan, &issue, &targets, PublicationKind::Activate));
    if !published && unpublished.is_none() {
        let published = publish_all(ctx, plan, &issue, &targets, PublicationKind::Activate).await?;
        ctx.state_mut(|s| s.publications = published);
        check_cancel(ctx)?;
    }

    let ack_deadline = policy.scaled(policy.durations.ack_deadline.0);
    loop {
        let pending = waiting_for(ctx);
        if pending.is_empty() && unpublished.is_none() {
            break;
        }
        let round = ctx.state(|s| s.progress.ack_rounds);
        if round > policy.ack_retries {
            break;
        }
        carry::checkpoint(ctx).await?;
        let overrides = ctx.state(|s| s.overrides.len());
        let nudged = carry::or_due(ctx, move |s: &PromotionWorkflow| s.overrides.len() != overrides);
        let acked = if let Some(inputs) = unpublished.take() {
            let summary = format!(
                "publish to {} channel targets and wait for their acknowledgments (round 1)",
                inputs.len()
            );
            let mut input = acks_input(ctx, Vec::new(), ack_deadline, false);
            input.publish = inputs;
            let work = wait::remote(ctx, A::publish_and_await, input, long_opts(ack_deadline, summary));
            let acked = wait::activity(ctx, work, nudged).await?;
            // An override woke the wait: publish on their own (idempotent), then look again.
            let published = match &acked {
                Some(acked) => acked.clone(),
                None => publish_all(ctx, plan, &issue, &targets, PublicationKind::Activate).await?,
            };
            let t = now(ctx);
            ctx.state_mut(|s| {
                s.publications = published
                    .iter()
                    .map(|p| PublicationRef { acknowledged_at_ms: None, ..p.clone() })
                    .collect();
                if acked.is_none() {
                    s.merge_acks(t, &published);
                }
            });
            acked
        } else {
            let input = acks_input(ctx, pending.clone(), ack_deadline, false);
            let summary = format!("wait for {} acknowledgments (round {})", pending.len(), round + 1);
            let work = wait::remote(ctx, A::await_acknowledgments, input, long_opts(ack_deadline, summary));
            wait::activity(ctx, work, nudged).await?
        };
        let Some(acked) = acked else {
            // An override opened a gate (or the history is due to continue as new): look again
            // at what is still awaited.
            continue;
        };
        let t = now(ctx);
        let first_round = round == 0;
        ctx.state_mut(|s| {
            s.merge_acks(t, &acked);
            if first_round {
                let on_time = s.publications.iter().filter(|p| p.acknowledged_at_ms.is_some()).count() as u32;
                s.on_time_acks = (on_time, s.publications.len() as u32);
            }
            for p in s.publications.clone().iter().filter(|p| p.acknowledged_at_ms.is_none()) {
                let revenue_at_risk = revenue_at_risk(s, &p.target.region_id);
                s.raise(t, decisions::channel_sync_exception(p, s.revision, revenue_at_risk));
            }
            s.refresh_ack_readiness();
            s.progress.ack_rounds += 1;
        });
        publish(ctx);
    }
    // After the retries, the policy decides: delay the late regions or hold the launch.
    let t = now(ctx);
    ctx.state_mut(|s| {
        let late: Vec<String> = s.readiness.keys().filter(|r| !s.acknowledged(r)).cloned().collect();
        let note = decisions::late_ack_note(policy.late_ack_action);
        for r in &late {
            if let Some(x) = s.readiness.get_mut(r) {
                x.state = RegionState::Delayed as i32;
                x.note = format!("awaiting acknowledgment: {note}");
            }
            s.record(t, "policy", "late-acknowledgment", format!("{r}: {note}"));
        }
    });
    Ok(())
}

/// Activation publications still unacknowledged that a gate depends on (not those of regions
/// an operator opened).
pub(crate) fn waiting_for(ctx: &Ctx) -> Vec<PublicationRef> {
    ctx.state(|s| {
        s.publications
            .iter()
            .filter(|p| p.acknowledged_at_ms.is_none() && p.kind == PublicationKind::Activate as i32)
            .filter(|p| !s.overridden(region_of_target(&p.target).unwrap_or("")))
            .cloned()
            .collect()
    })
}

/// What a target not acknowledging puts at risk: its region's forecast promotional revenue,
/// every region's for a national target ([`decisions::channel_revenue_at_risk`]).
fn revenue_at_risk(s: &PromotionWorkflow, region: &str) -> String {
    let region = (!region.is_empty()).then_some(region);
    decisions::channel_revenue_at_risk(s.assessment.as_ref().unwrap_or(&Default::default()), region)
}

/// Publishes `kind` to every target, in parallel (idempotent writes, seconds at most).
pub(crate) async fn publish_all(
    ctx: &Ctx,
    plan: &Plan,
    issue: &Issue,
    targets: &[Target],
    kind: PublicationKind,
) -> Result<Vec<PublicationRef>, Stop> {
    let verb = if kind == PublicationKind::Revert { "revert on" } else { "publish to" };
    let inputs = publications(plan, issue, targets, kind);
    send(ctx, inputs, &format!("{verb} {} channel targets", targets.len())).await
}

/// What every publication of the current revision carries: the revision, the run chain (in
/// its idempotency key) and the ERP price change.
pub(crate) struct Issue {
    revision: u32,
    chain: String,
    price_change_id: String,
}

impl Issue {
    /// The current revision's.
    pub(crate) fn of(ctx: &Ctx) -> Self {
        ctx.state(|s| Issue {
            revision: s.revision,
            chain: s.first_run_id.clone(),
            price_change_id: s.price_change_id.clone().unwrap_or_default(),
        })
    }
}

/// What publishing `kind` to every target takes.
fn publications(plan: &Plan, issue: &Issue, targets: &[Target], kind: PublicationKind) -> Vec<PublishInput> {
    targets.iter().map(|t| publication(plan, issue, t, kind, 0)).collect()
}

/// The input of an acknowledgment wait on `publications`, carrying the process events recorded
/// since the last wait ([`crate::workflow::events::carry`]). Built right before the wait starts.
pub(crate) fn acks_input(
    ctx: &Ctx,
    publications: Vec<PublicationRef>,
    timeout: Duration,
    return_on_change: bool,
) -> AwaitAcksInput {
    AwaitAcksInput {
        publications,
        timeout_ms: timeout.as_millis() as u64,
        return_on_change,
        publish: Vec::new(),
        events: events::carry(ctx),
    }
}

/// Publishes `kind` to `targets` (`republish`: each under its correction number) and waits up
/// to `timeout` for the acknowledgments, in one `promo.publish_and_await`; returns the
/// publications as acknowledged then. A live or finished promotion's call: while the channel
/// system does not answer it shows SYSTEMS_UNAVAILABLE and calls again ([`until_answered`]);
/// `Ok(Err(_))` is a refusal for good, for the caller to record.
pub(crate) async fn publish_and_await(
    ctx: &Ctx,
    plan: &Plan,
    policy: &Policy,
    kind: PublicationKind,
    targets: Publish<'_>,
    timeout: Duration,
    what: &str,
) -> Result<Result<Vec<PublicationRef>, String>, Stop> {
    let issue = Issue::of(ctx);
    let inputs = match targets {
        Publish::First(t) => publications(plan, &issue, t, kind),
        Publish::Again(t) => republications(plan, &issue, kind, t),
    };
    let summary = format!("publish to {n} {what} and wait for them to acknowledge", n = inputs.len());
    let attempts = policy.systems_attempts;
    until_answered(ctx, &format!("publishing to {what}"), Shows::Systems, || {
        let mut input = acks_input(ctx, Vec::new(), timeout, false);
        input.publish = inputs.clone();
        wait::remote(ctx, A::publish_and_await, input, long_attempts_opts(timeout, attempts, summary.clone()))
    })
    .await
}

/// The targets [`publish_and_await`] publishes to.
pub(crate) enum Publish<'a> {
    /// The publication itself, to each target.
    First(&'a [Target]),
    /// A republication, to each target under its correction number.
    Again(&'a [(Target, u32)]),
}

/// What publishing `kind` to `target` takes (`correction` 0 for the publication itself, n for
/// its n-th correction).
fn publication(
    plan: &Plan,
    issue: &Issue,
    target: &Target,
    kind: PublicationKind,
    correction: u32,
) -> PublishInput {
    PublishInput {
        promotion_id: plan.promotion_id.clone(),
        revision: issue.revision,
        chain: issue.chain.clone(),
        target: target.clone(),
        kind: kind as i32,
        price_change_id: issue.price_change_id.clone(),
        effective: (plan.starts_at, plan.ends_at),
        line_count: plan.lines.len() as u32,
        correction,
    }
}

/// Sends the publications as one `promo.publish_many` (one marker for the wave).
async fn send(ctx: &Ctx, inputs: Vec<PublishInput>, summary: &str) -> Result<Vec<PublicationRef>, Stop> {
    let opts = opts(PUBLISH_TIMEOUT_SECS, summary.to_owned());
    wait::run(ctx, wait::call(ctx, A::publish_many, inputs, opts)).await
}

/// Republishes `kind` to each target under its correction number (its own idempotency key), in
/// parallel: the launch gate after a withdrawn acknowledgment, reconciliation after a mismatch.
pub(crate) async fn republish(
    ctx: &Ctx,
    plan: &Plan,
    kind: PublicationKind,
    targets: &[(Target, u32)],
) -> Result<Vec<PublicationRef>, Stop> {
    let inputs = republications(plan, &Issue::of(ctx), kind, targets);
    send(ctx, inputs, &format!("republish to {} channel targets", targets.len())).await
}

/// What republishing `kind` to each target under its correction number takes.
fn republications(
    plan: &Plan,
    issue: &Issue,
    kind: PublicationKind,
    targets: &[(Target, u32)],
) -> Vec<PublishInput> {
    targets.iter().map(|(target, correction)| publication(plan, issue, target, kind, *correction)).collect()
}

/// Every channel target of the plan: regional channels per region, national ones once.
fn channel_targets(plan: &Plan, regions: &[String]) -> Vec<Target> {
    let mut out = Vec::new();
    for c in &plan.channels {
        if matches!(c, Channel::Pos | Channel::StoreComms) {
            out.extend(regions.iter().map(|r| Target { channel: *c as i32, region_id: r.clone() }));
        } else {
            out.push(Target { channel: *c as i32, region_id: String::new() });
        }
    }
    out
}
