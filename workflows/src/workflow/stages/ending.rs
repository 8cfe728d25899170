//! Every way a run ends — COMPLETED, REJECTED, EXPIRED, CANCELLED, FAILED — goes through
//! [`finish`]:
//!
//! 1. whatever of the promotion is still live in the systems is undone, item by item, by a sweep
//!    over everything the systems hold for it — retried for as long as the systems fail
//!    (COMPENSATION_PENDING meanwhile); an item a system refuses for good keeps a
//!    COMPENSATION_BLOCKED exception open, and the run waits for an operator's signed decision
//!    (retry, or accept once it was undone by hand — which the run checks). So a run never ends
//!    with nothing open while something it wrote is still live;
//! 2. the calendar footprint is freed (by the sweep, once nothing is live);
//! 3. every open exception is resolved with the reason, and the outcome is set;
//! 4. the report and the end go to the process-event record, retried until it takes them.
//!
//! The ending is kept in the state ([`Ending`]) so that a run that continues as new meanwhile
//! (a long outage, a long wait for an operator) resumes it.

use super::enter;
use crate::{
    api::{CompensateInput, CompensateOutput, PromotionActivities as A},
    decisions,
    workflow::{
        carry, events,
        options::compensation_opts,
        persist::{Shows, until_answered},
        publish::{publish, publish_pending},
        state::{Ctx, Ending, PromotionWorkflow},
        time::now,
        wait::{self, Stop},
    },
};
use promo_contracts::{promo::v1::*, retail::v1::ProcessEventKind};
use temporalio_sdk::{ApplicationFailure, WorkflowResult, WorkflowTermination};

/// Ends the run: compensation, closed exceptions, the outcome, the record, and the result.
pub async fn finish(ctx: &Ctx, end: Result<PostEventReport, Stop>) -> WorkflowResult<PromotionResult> {
    let ending = match ctx.state(|s| s.ending.clone()) {
        // A run continued as new while it was ending: it goes on ending the same way.
        Some(e) => e,
        None => match classify(ctx, end) {
            Ok(e) => e,
            // Evicted, or continuing as new: the run stops as it is.
            Err(t) => return Err(t),
        },
    };
    ctx.state_mut(|s| s.ending = Some(ending.clone()));
    match close(ctx, &ending).await {
        Ok(()) => {}
        Err(Stop::Exit(t)) => return Err(t),
        // Nothing else stops an ending: compensation waits out a cancel (it is what a cancel asks for).
        Err(other) => {
            return Err(WorkflowTermination::from(ApplicationFailure::non_retryable(format!(
                "the ending was interrupted: {other:?}"
            ))));
        }
    }
    result(ctx, &ending)
}

/// What ended the lifecycle, as the state keeps it; `Err` for a run that stops without ending
/// (evicted from the cache, or continuing as new).
fn classify(ctx: &Ctx, end: Result<PostEventReport, Stop>) -> Result<Ending, WorkflowTermination> {
    Ok(match end {
        Ok(report) => Ending::Completed(Box::new(report)),
        Err(Stop::Rejected(why)) => Ending::Rejected(why),
        Err(Stop::Expired(why)) => Ending::Expired(why),
        Err(Stop::Cancelled) => Ending::Cancelled,
        // Cancelled through Temporal itself (`temporal workflow cancel`): the same as an
        // operator's cancel, compensation included.
        Err(Stop::Exit(WorkflowTermination::Cancelled { .. })) => {
            ctx.state_mut(|s| {
                s.cancel.get_or_insert(OperatorAction {
                    operator_id: "temporal".into(),
                    reason: "cancellation requested through Temporal".into(),
                    ..Default::default()
                });
            });
            Ending::Cancelled
        }
        Err(Stop::Failed(why, kind)) => Ending::Failed(why, kind),
        Err(Stop::Exit(t)) => return Err(t),
    })
}

/// Compensation, the outcome, and the record: each step once, resumable.
async fn close(ctx: &Ctx, ending: &Ending) -> Result<(), Stop> {
    let (outcome, reason, resolution) = describe(ctx, ending);
    if !ctx.state(|s| s.progress.compensated) {
        // A spec without a promotion id never got as far as the systems.
        if !ctx.state(|s| s.spec.promotion_id.is_empty()) {
            let keep_by = match ending {
                // Close reverted what went live; this undoes what never did (publications of
                // regions that did not launch, orders still on their way).
                Ending::Completed(_) => ctx.state(|s| s.plan.as_ref().map_or(0, |p| p.ends_at)),
                _ => 0,
            };
            let why = if reason.is_empty() { resolution.to_owned() } else { reason.clone() };
            compensate(ctx, &why, keep_by).await?;
        }
        ctx.state_mut(|s| s.progress.compensated = true);
    }
    if ctx.state(|s| s.stage != Stage::Done) {
        close_out(ctx, outcome, &reason, resolution);
        let t = now(ctx);
        ctx.state_mut(|s| {
            if let Ending::Completed(r) = ending {
                let kpis = events::report_kpis(r);
                s.event(t, ProcessEventKind::Report, |e| e.kpis = kpis.into_iter().collect());
            }
            let outcome = s.outcome.as_str_name().trim_start_matches("OUTCOME_").to_owned();
            let reason = s.outcome_reason.clone();
            s.event(t, ProcessEventKind::Ended, |e| {
                e.detail = if reason.is_empty() { outcome } else { format!("{outcome}: {reason}") };
            });
        });
    }
    events::flush_until_recorded(ctx).await
}

/// The outcome, its reason and the resolution of the exceptions still open.
fn describe(ctx: &Ctx, ending: &Ending) -> (Outcome, String, &'static str) {
    match ending {
        Ending::Completed(_) => (Outcome::Completed, String::new(), "promotion ended"),
        Ending::Rejected(why) => (Outcome::Rejected, why.clone(), "promotion rejected"),
        Ending::Expired(why) => (Outcome::Expired, why.clone(), "promotion expired"),
        Ending::Cancelled => {
            let who = ctx.state(|s| s.cancel.clone().unwrap_or_default());
            (
                Outcome::Cancelled,
                format!("cancelled by {}: {}", who.operator_id, who.reason),
                "promotion cancelled",
            )
        }
        Ending::Failed(why, _) => (Outcome::Failed, why.clone(), "promotion failed"),
    }
}

/// The run's result: the outcome (and report), or the failure it ends with.
fn result(ctx: &Ctx, ending: &Ending) -> WorkflowResult<PromotionResult> {
    if let Ending::Failed(why, kind) = ending {
        let failure =
            ApplicationFailure::builder(why.clone()).maybe_type_name(kind.clone()).non_retryable(true);
        return Err(WorkflowTermination::from(failure.build()));
    }
    let report = match ending {
        Ending::Completed(r) => Some((**r).clone()),
        _ => None,
    };
    Ok(ctx.state(|s| PromotionResult {
        promotion_id: s.spec.promotion_id.clone(),
        outcome: s.outcome as i32,
        reason: s.outcome_reason.clone(),
        revision: s.revision,
        report,
    }))
}

/// A start input that is not a spec: FAILED at once, naming what is wrong.
pub fn invalid_input(ctx: &Ctx, why: &str) -> WorkflowResult<PromotionResult> {
    let text = format!("invalid start input: {why}");
    close_out(ctx, Outcome::Failed, &text, "promotion failed");
    let failure =
        ApplicationFailure::builder(text).type_name("InvalidSpec".to_owned()).non_retryable(true).build();
    Err(WorkflowTermination::from(failure))
}

/// Resolves every open exception, sets the outcome and enters DONE.
fn close_out(ctx: &Ctx, outcome: Outcome, reason: &str, resolution: &str) {
    let t = now(ctx);
    ctx.state_mut(|s| {
        for e in s.open_exceptions() {
            let region = if e.region_id.is_empty() { String::new() } else { format!(" ({})", e.region_id) };
            let detail =
                format!("{}{region} closed with the promotion: {}", e.kind().as_str_name(), e.detail);
            s.record(t, "system", "exception-closed", detail);
        }
        s.resolve(t, |_| true, resolution);
        // Nothing waits for supply chain once the promotion is over (the sweep cancelled the
        // transfers' orders).
        for x in s.transfers.iter_mut().filter(|x| x.state() == TransferState::AwaitingApproval) {
            x.state = TransferState::Superseded as i32;
        }
        s.outcome = outcome;
        s.outcome_reason = reason.to_owned();
        s.record(t, "system", "finished", format!("{} {reason}", outcome.as_str_name()));
    });
    enter(ctx, Stage::Done);
}

/// The sweep, until nothing the promotion wrote is live: transient failures are retried for as
/// long as they last; an item refused for good waits for an operator's decision.
async fn compensate(ctx: &Ctx, reason: &str, keep_orders_arriving_by: i64) -> Result<(), Stop> {
    loop {
        let out = sweep(ctx, reason, keep_orders_arriving_by, false).await?;
        let still_live = match out {
            Ok(out) if out.refused.is_empty() => {
                record_undone(ctx, &out);
                let t = now(ctx);
                ctx.state_mut(|s| {
                    s.calendar_released = out.calendar_released;
                    let detail = match out.calendar_released {
                        Some(true) => "the promotion calendar no longer holds the footprint",
                        _ => "the promotion calendar held no reservation",
                    };
                    s.record(t, "system", "calendar-released", detail.to_owned());
                    s.resolve(
                        t,
                        |e| e.kind() == ExceptionKind::CompensationBlocked,
                        "nothing of the promotion is live",
                    );
                });
                return Ok(());
            }
            Ok(out) => {
                record_undone(ctx, &out);
                out.refused.iter().map(|r| format!("{} ({})", r.item, r.reason)).collect()
            }
            // The sweep itself was refused (a listing the systems would not answer).
            Err(why) => vec![format!("the sweep ({why})")],
        };
        // Retried, or accepted as undone by hand: the next sweep finds what is left (nothing,
        // after an acceptance that held) and frees the calendar footprint.
        wait_for_operator(ctx, reason, keep_orders_arriving_by, &still_live).await?;
    }
}

/// One sweep (or, `dry_run`, a listing of what is still live), called until the systems answer.
async fn sweep(
    ctx: &Ctx,
    reason: &str,
    keep_orders_arriving_by: i64,
    dry_run: bool,
) -> Result<Result<CompensateOutput, String>, Stop> {
    let (input, attempts) = ctx.state(|s| {
        let input = CompensateInput {
            promotion_id: s.spec.promotion_id.clone(),
            reason: reason.to_owned(),
            keep_orders_arriving_by,
            release_calendar: !dry_run,
            dry_run,
        };
        (input, s.policy.as_ref().map_or(5, |p| p.compensation_attempts))
    });
    let summary = if dry_run {
        "list what of the promotion is still live".to_owned()
    } else {
        "compensate: undo whatever of the promotion is still live, then free its calendar footprint"
            .to_owned()
    };
    until_answered(ctx, "compensation", Shows::Compensation, || {
        wait::call(ctx, A::compensate, input.clone(), compensation_opts(attempts, summary.clone()))
    })
    .await
}

/// Audits what a sweep undid.
fn record_undone(ctx: &Ctx, out: &CompensateOutput) {
    if !out.any() {
        return;
    }
    let t = now(ctx);
    ctx.state_mut(|s| {
        let detail = format!(
            "withdrew {} publications, reverted prices: {}, cancelled {} orders",
            out.withdrawn, out.reverted, out.cancelled
        );
        s.record(t, "system", "compensated", detail);
    });
    publish(ctx);
}

/// Keeps a COMPENSATION_BLOCKED exception open for what is `still_live` and waits for an
/// operator's signed decision: retry (the caller sweeps again), or accept — which holds only when
/// the systems no longer show anything live (undone by hand); else the exception stays open and
/// the wait goes on.
async fn wait_for_operator(
    ctx: &Ctx,
    reason: &str,
    keep_orders_arriving_by: i64,
    still_live: &[String],
) -> Result<(), Stop> {
    let t = now(ctx);
    ctx.state_mut(|s| {
        let at_risk = s.forecast_revenue();
        // The blocked exception names what is live now: a new one replaces the last.
        s.resolve(t, |e| e.kind() == ExceptionKind::CompensationBlocked, "superseded by the latest sweep");
        s.raise(t, decisions::compensation_blocked_exception(still_live, at_risk));
        s.record(t, "system", "compensation-blocked", still_live.join("; "));
    });
    publish(ctx);
    loop {
        carry::checkpoint(ctx).await?;
        // Not `wait::wait`, which wakes for a cancel: an ending is often a cancel's, and waits
        // for the operator all the same.
        events::flush(ctx).await;
        publish_pending(ctx);
        let decided = |s: &PromotionWorkflow| s.compensation_decision.is_some();
        if ctx.wait_condition(carry::or_due(ctx, decided)).await.is_err() {
            return Err(Stop::Exit(WorkflowTermination::cancelled()));
        }
        let Some(decision) = ctx.state_mut(|s| s.compensation_decision.take()) else { continue };
        if decision.resolution() != CompensationResolution::Accept {
            // Retry: the caller sweeps again.
            return Ok(());
        }
        let listed = sweep(ctx, reason, keep_orders_arriving_by, true).await?;
        let t = now(ctx);
        match listed {
            Ok(out) if out.still_live.is_empty() => {
                ctx.state_mut(|s| {
                    s.resolve(
                        t,
                        |e| e.kind() == ExceptionKind::CompensationBlocked,
                        &format!(
                            "accepted by {}: undone by hand, and the systems show nothing live",
                            decision.operator_id
                        ),
                    );
                });
                publish(ctx);
                return Ok(());
            }
            Ok(out) => ctx.state_mut(|s| {
                let detail = format!(
                    "{}'s acceptance does not hold: the systems still show live {}",
                    decision.operator_id,
                    out.still_live.join("; ")
                );
                s.record(t, "system", "compensation-accept-refused", detail);
            }),
            Err(why) => ctx.state_mut(|s| {
                s.record(
                    t,
                    "system",
                    "compensation-accept-refused",
                    format!("the systems could not be listed: {why}"),
                );
            }),
        }
        publish(ctx);
    }
}
