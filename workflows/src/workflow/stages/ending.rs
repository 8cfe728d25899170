//! Every way a run ends — COMPLETED, REJECTED, EXPIRED, CANCELLED, FAILED — goes through
//! [`finish`]: whatever of the promotion is still live in the systems is undone (by a sweep over
//! everything the systems hold for the promotion, retried until it succeeds, with a
//! COMPENSATION_PENDING exception while it cannot), every open exception is resolved with the
//! reason, and the outcome is set.

use super::{Stop, enter};
use crate::{
    api::{CompensateInput, CompensateOutput, PromotionActivities as A},
    decisions,
    workflow::{
        events,
        options::compensation_opts,
        state::{Ctx, PromotionWorkflow, publish, publish_pending},
        time::now,
        wait,
    },
};
use promo_contracts::{promo::v1::*, retail::v1::ProcessEventKind};
use std::{future::Future, time::Duration};
use temporalio_common::protos::temporal::api::failure::v1::{Failure, failure::FailureInfo};
use temporalio_sdk::{
    ActivityExecutionError, ApplicationFailure, TimerOptions, WorkflowCancellationToken, WorkflowResult,
    WorkflowTermination,
};

/// Ends the run: compensation, closed exceptions, the outcome, and the result — then the report
/// and the end go to the process-event record with whatever else is still in the outbox.
pub async fn finish(ctx: &Ctx, end: Result<PostEventReport, Stop>) -> WorkflowResult<PromotionResult> {
    let out = settle(ctx, end).await;
    release_calendar(ctx).await;
    let t = now(ctx);
    ctx.state_mut(|s| {
        if let Ok(PromotionResult { report: Some(r), .. }) = &out {
            let kpis = events::report_kpis(r);
            s.event(t, ProcessEventKind::Report, |e| e.kpis = kpis.into_iter().collect());
        }
        let outcome = s.outcome.as_str_name().trim_start_matches("OUTCOME_").to_owned();
        let reason = s.outcome_reason.clone();
        s.event(t, ProcessEventKind::Ended, |e| {
            e.detail = if reason.is_empty() { outcome } else { format!("{outcome}: {reason}") };
        });
    });
    events::flush(ctx).await;
    out
}

/// Frees the promotion's footprint in the promotion calendar once it is over (after the
/// compensation, so nothing of it is live when another promotion may take the footprint),
/// retried until it succeeds like any compensation. Every run that may have reserved releases,
/// not only those whose intake passed: a reservation made by an intake whose answer never
/// reached the run (cancelled while in flight) is released too; releasing nothing is harmless.
async fn release_calendar(ctx: &Ctx) {
    let (id, attempts) = ctx
        .state(|s| (s.spec.promotion_id.clone(), s.policy.as_ref().map_or(5, |p| p.compensation_attempts)));
    // A spec without a promotion id never got as far as the calendar.
    if id.is_empty() {
        return;
    }
    // The compensation freed it already, when it ran.
    let freed = ctx.state(|s| s.calendar_released);
    let released = if freed.is_some() {
        freed
    } else {
        until_done(ctx, "calendar release", || {
            wait::call(
                ctx,
                A::release_calendar,
                id.clone(),
                compensation_opts(attempts, "release the promotion calendar reservation".into()),
            )
        })
        .await
    };
    let t = now(ctx);
    ctx.state_mut(|s| {
        let detail = match released {
            Some(true) => "the promotion calendar no longer holds the footprint",
            Some(false) => "the promotion calendar held no reservation",
            None => "the promotion calendar refused the release",
        };
        s.record(t, "system", "calendar-released", detail.to_owned());
    });
}

async fn settle(ctx: &Ctx, end: Result<PostEventReport, Stop>) -> WorkflowResult<PromotionResult> {
    let end = match end {
        // Cancelled through Temporal itself (`temporal workflow cancel`): the same as an
        // operator's cancel, compensation included.
        Err(Stop::Exit(WorkflowTermination::Cancelled { .. })) => {
            ctx.state_mut(|s| {
                s.cancel.get_or_insert(OperatorAction {
                    operator_id: "temporal".into(),
                    reason: "cancellation requested through Temporal".into(),
                });
            });
            Err(Stop::Cancelled)
        }
        other => other,
    };
    match end {
        Ok(report) => {
            // Close reverted what went live; this undoes what never did (publications of regions
            // that did not launch, orders still on their way).
            let keep_by = ctx.state(|s| s.plan.as_ref().map_or(0, |p| p.ends_at));
            compensate(ctx, "promotion ended", keep_by).await;
            close_out(ctx, Outcome::Completed, "", "promotion ended");
            Ok(result(ctx, Some(report)))
        }
        Err(Stop::Rejected(why)) => {
            compensate_if_written(ctx, &why).await;
            close_out(ctx, Outcome::Rejected, &why, "promotion rejected");
            Ok(result(ctx, None))
        }
        Err(Stop::Expired(why)) => {
            compensate_if_written(ctx, &why).await;
            close_out(ctx, Outcome::Expired, &why, "promotion expired");
            Ok(result(ctx, None))
        }
        Err(Stop::Cancelled) => {
            let who = ctx.state(|s| s.cancel.clone().unwrap_or_default());
            let reason = format!("cancelled by {}: {}", who.operator_id, who.reason);
            let undone = compensate(ctx, &reason, 0).await;
            if let Some(undone) = undone {
                let t = now(ctx);
                ctx.state_mut(|s| {
                    let detail = format!(
                        "withdrew {} publications, reverted prices: {}, cancelled {} orders",
                        undone.withdrawn, undone.reverted, undone.cancelled
                    );
                    s.record(t, "system", "compensated", detail);
                });
            }
            close_out(ctx, Outcome::Cancelled, &reason, "promotion cancelled");
            Ok(result(ctx, None))
        }
        Err(failed @ Stop::Failed(..)) => {
            if let Stop::Failed(why, _) = &failed {
                compensate_if_written(ctx, why).await;
            }
            fail(ctx, failed)
        }
        Err(Stop::Exit(t)) => Err(t),
    }
}

/// A start input that is not a spec: FAILED at once, naming what is wrong.
pub fn invalid_input(ctx: &Ctx, why: &str) -> WorkflowResult<PromotionResult> {
    let text = format!("invalid start input: {why}");
    fail(ctx, super::intake::invalid_spec(text))
}

fn fail(ctx: &Ctx, stop: Stop) -> WorkflowResult<PromotionResult> {
    let Stop::Failed(why, termination) = stop else {
        return Err(WorkflowTermination::from(ApplicationFailure::non_retryable("unexpected ending")));
    };
    if ctx.state(|s| s.stage != Stage::Done) {
        close_out(ctx, Outcome::Failed, &why, "promotion failed");
    }
    Err(termination)
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
        s.outcome = outcome;
        s.outcome_reason = reason.to_owned();
        s.record(t, "system", "finished", format!("{} {reason}", outcome.as_str_name()));
    });
    enter(ctx, Stage::Done);
}

fn result(ctx: &Ctx, report: Option<PostEventReport>) -> PromotionResult {
    ctx.state(|s| PromotionResult {
        promotion_id: s.spec.promotion_id.clone(),
        outcome: s.outcome as i32,
        reason: s.outcome_reason.clone(),
        revision: s.revision,
        report,
    })
}

/// Compensates when the run has written to the systems.
async fn compensate_if_written(ctx: &Ctx, reason: &str) {
    if ctx.state(|s| s.wrote) {
        compensate(ctx, reason, 0).await;
    }
}

/// The sweep: undoes everything of the promotion still live in the systems (see
/// [`CompensateInput`]) and frees its calendar footprint, until it succeeds. `None` when the
/// systems refused it for good (the COMPENSATION_PENDING exception then stays open for an
/// operator).
async fn compensate(ctx: &Ctx, reason: &str, keep_orders_arriving_by: i64) -> Option<CompensateOutput> {
    let (input, attempts) = ctx.state(|s| {
        (
            CompensateInput {
                promotion_id: s.spec.promotion_id.clone(),
                reason: reason.to_owned(),
                keep_orders_arriving_by,
                release_calendar: true,
            },
            s.policy.as_ref().map_or(5, |p| p.compensation_attempts),
        )
    });
    let summary =
        "compensate: undo whatever of the promotion is still live, then free its calendar footprint"
            .to_owned();
    let out = until_done(ctx, "compensation", || {
        wait::call(ctx, A::compensate, input.clone(), compensation_opts(attempts, summary.clone()))
    })
    .await;
    if let Some(released) = out.as_ref().and_then(|o| o.calendar_released) {
        ctx.state_mut(|s| s.calendar_released = Some(released));
    }
    if let Some(out) = &out
        && out.any()
    {
        publish(ctx);
    }
    out
}

/// Runs `attempt` until it succeeds: after each failed attempt (its own retries spent) the
/// promotion shows a COMPENSATION_PENDING exception, waits (5 s, doubling to 5 min) and tries
/// again; the exception resolves when it succeeds. A business refusal (non-retryable) is not
/// retried: the exception stays open for an operator and `None` is returned.
pub(crate) async fn until_done<T, F, Fut>(ctx: &Ctx, what: &str, attempt: F) -> Option<T>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, ActivityExecutionError>>,
{
    let mut pause = Duration::from_secs(5);
    loop {
        let error = match attempt().await {
            Ok(t) => {
                let t0 = now(ctx);
                let was_open = ctx.state_mut(|s| {
                    let open =
                        s.open_exceptions().iter().any(|e| e.kind() == ExceptionKind::CompensationPending);
                    s.resolve(
                        t0,
                        |e| e.kind() == ExceptionKind::CompensationPending,
                        &format!("{what} succeeded"),
                    );
                    open
                });
                if was_open {
                    publish(ctx);
                }
                return Some(t);
            }
            Err(e) => e,
        };
        let message = error.failure().map_or_else(|| error.to_string(), innermost_message);
        let for_good = error.failure().is_some_and(non_retryable);
        let t = now(ctx);
        ctx.state_mut(|s: &mut PromotionWorkflow| {
            let at_risk = s
                .assessment
                .as_ref()
                .and_then(|a| a.margin.as_ref())
                .map(|m| m.forecast_revenue.clone())
                .unwrap_or_else(|| "0".into());
            s.raise(t, decisions::compensation_pending_exception(what, &message, at_risk));
            let action = if for_good { "compensation-refused" } else { "compensation-retry" };
            s.record(t, "system", action, format!("{what}: {message}"));
        });
        publish(ctx);
        if for_good {
            return None;
        }
        // The pending compensation shows in the listing while the run waits to retry.
        publish_pending(ctx);
        let opts = TimerOptions::builder(pause)
            .summary(format!("retry {what}"))
            .cancellation_token(WorkflowCancellationToken::new())
            .build();
        let _ = ctx.timer(opts).await;
        pause = (pause * 2).min(Duration::from_secs(300));
    }
}

/// The message of the deepest cause (the activity's own error, not "activity task failed").
fn innermost_message(f: &Failure) -> String {
    let mut f = f;
    while let Some(c) = f.cause.as_deref() {
        f = c;
    }
    f.message.clone()
}

/// Whether any failure in the chain is a non-retryable application failure.
fn non_retryable(f: &Failure) -> bool {
    let mut next = Some(f);
    while let Some(f) = next {
        if let Some(FailureInfo::ApplicationFailureInfo(info)) = &f.failure_info
            && info.non_retryable
        {
            return true;
        }
        next = f.cause.as_deref();
    }
    false
}
