//! Calls that must not give up: the compensation of an ending, and what a live or finished
//! promotion asks of the systems (a monitoring round, the revert and its read-back at close, the
//! analysis). Each call keeps its own retry policy; when that is spent on transient failures, the
//! promotion shows an exception (COMPENSATION_PENDING or SYSTEMS_UNAVAILABLE, owned by
//! operations), waits — 5 s, doubling to the policy's `outage_retry_max` (5 min by default) —
//! and calls again, for as long as it takes: an
//! outage of any length costs time, never the promotion. The exception resolves when the call
//! succeeds. A business refusal (non-retryable) is not retried: it is handed back with its
//! message, for the caller to route.

use super::{
    carry,
    outage::{self, innermost_message, non_retryable},
    publish::{publish, publish_pending},
    state::{Ctx, PromotionWorkflow},
    time::now,
    wait::{self, Stop},
};
use crate::decisions;
use promo_contracts::promo::v1::ExceptionKind;
use std::time::Duration;
use temporalio_sdk::{TimerOptions, WorkflowCancellationToken};

/// Which exception shows while a call keeps failing, and whether an operator's cancel ends the
/// wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shows {
    /// COMPENSATION_PENDING: undoing what is live (an ending, or the revert at close). A cancel
    /// does not interrupt it: it is what a cancel asks for.
    Compensation,
    /// SYSTEMS_UNAVAILABLE: a live or finished promotion's call. A cancel ends the wait.
    Systems,
}

impl Shows {
    fn kind(self) -> ExceptionKind {
        match self {
            Shows::Compensation => ExceptionKind::CompensationPending,
            Shows::Systems => ExceptionKind::SystemsUnavailable,
        }
    }
}

/// The first retries are audited each, then one in this many (the exception shows the rest).
const AUDIT_EVERY: u32 = 12;

/// Calls `attempt` until it answers: `Ok(Ok(t))` when it succeeds, `Ok(Err(message))` when the
/// systems refuse it for good (non-retryable), `Err` when the run stops (a cancel, for
/// [`Shows::Systems`]; a continue-as-new at a checkpoint between attempts).
pub(crate) async fn until_answered<'a, T, F>(
    ctx: &'a Ctx,
    what: &str,
    shows: Shows,
    attempt: F,
) -> Result<Result<T, String>, Stop>
where
    F: Fn() -> wait::Call<'a, T>,
{
    let mut pauses = outage::pauses(ctx, Some(shows.kind()));
    let mut pause = pauses.next().unwrap_or(Duration::from_secs(5));
    let mut retries = 0u32;
    loop {
        carry::checkpoint(ctx).await?;
        let answer = match shows {
            // A cancel interrupts a live promotion's call (the ending then compensates).
            Shows::Systems => match wait::wait(ctx, attempt(), &mut [], |_| false).await? {
                wait::Woke::Done(answer) => answer,
                // Only a cancel ends the wait early, and that is an `Err` above.
                _ => return Err(Stop::Cancelled),
            },
            Shows::Compensation => attempt().await,
        };
        let error = match answer {
            Ok(t) => {
                let t0 = now(ctx);
                let was_open = ctx.state_mut(|s| {
                    let open = s.open_exceptions().iter().any(|e| e.kind() == shows.kind());
                    s.resolve(t0, |e| e.kind() == shows.kind(), &format!("{what} succeeded"));
                    open
                });
                if was_open {
                    publish(ctx);
                }
                return Ok(Ok(t));
            }
            Err(e) => e,
        };
        let message = error.failure().map_or_else(|| error.to_string(), innermost_message);
        let t = now(ctx);
        if error.failure().is_some_and(non_retryable) {
            ctx.state_mut(|s| s.record(t, "system", "call-refused", format!("{what}: {message}")));
            return Ok(Err(message));
        }
        ctx.state_mut(|s: &mut PromotionWorkflow| {
            let at_risk = s.forecast_revenue();
            let e = match shows {
                Shows::Compensation => decisions::compensation_pending_exception(what, &message, at_risk),
                Shows::Systems => decisions::systems_unavailable_exception(what, &message, at_risk),
            };
            s.raise(t, e);
            retries += 1;
            if retries <= 3 || retries.is_multiple_of(AUDIT_EVERY) {
                s.record(t, "system", "call-retry", format!("{what}: {message}; again in {pause:?}"));
            }
        });
        publish(ctx);
        // The exception shows in the listing while the run waits to call again.
        publish_pending(ctx);
        match shows {
            Shows::Systems => {
                wait::sleep(ctx, pause, format!("retry {what}"), |_| false).await?;
            }
            Shows::Compensation => {
                let opts = TimerOptions::builder(pause)
                    .summary(format!("retry {what}"))
                    .cancellation_token(WorkflowCancellationToken::new())
                    .build();
                let _ = ctx.timer(opts).await;
            }
        }
        pause = pauses.next().unwrap_or(pause);
    }
}
