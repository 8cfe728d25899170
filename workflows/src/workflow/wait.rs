//! The one wait primitive of the lifecycle, and the clock and options every stage shares.
//!
//! Every place a promotion waits — an approval, a remediation choice, the launch timer, an
//! acknowledgment round, a late-acknowledgment poll, the monitoring cadence, the retries of a
//! compensation, an ordinary activity — goes through [`wait`], which races what the stage waits
//! for against the operator: a cancel always ends the wait (cancelling a running activity, whose
//! heartbeat sees it), and the nudges a stage names (pause, resume, override) wake it so that it
//! can look again. So no stage can forget them.

use super::{stages::Stop, state::PromotionWorkflow};
use crate::policy::Policy;
use futures::{FutureExt, future::FusedFuture};
use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use temporalio_common::{
    ActivityCloseTimeouts, ActivityDefinition, RetryPolicy, data_converters::TemporalDeserializable,
};
use temporalio_sdk::{
    ActivityCancellationType, ActivityExecutionError, ActivityOptions, CancellableFuture,
    LocalActivityOptions, TimerOptions, WorkflowContext, WorkflowTermination,
};

/// The context every stage takes.
pub type Ctx = WorkflowContext<PromotionWorkflow>;

pub(crate) fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Workflow time, Unix seconds.
pub(crate) fn now(ctx: &Ctx) -> i64 {
    ctx.workflow_time().map_or(0, unix)
}

/// Business time: runs `time_scale` times faster than the workflow clock, from the start.
pub(crate) fn business_now(ctx: &Ctx, policy: &Policy) -> i64 {
    let t0 = ctx.state(|s| s.started_at);
    t0 + (now(ctx) - t0) * i64::from(policy.time_scale)
}

/// Wall-clock time on the workflow's timers until business instant `at`. The business clock
/// moves with whole seconds of workflow time ([`business_now`]), so a quiet run
/// ([`super::QUIET_HISTORY`]) waits until the first second at which it reads `at` or later:
/// a wait measured from the whole second instead could end a fraction of a second early, find
/// the instant not reached, and wait again (a timer, or a late-acknowledgment wait, of a few
/// milliseconds at a time until the second turned).
pub(crate) fn until(ctx: &Ctx, policy: &Policy, at: i64) -> Duration {
    if ctx.state(|s| s.quiet) {
        let t0 = ctx.state(|s| s.started_at);
        let ahead = ((at - t0).max(0) as u64).div_ceil(u64::from(policy.time_scale.max(1)));
        let second = t0 + ahead as i64;
        let wall = UNIX_EPOCH + Duration::from_secs(second.max(0) as u64);
        let now = ctx.workflow_time().unwrap_or(UNIX_EPOCH);
        return wall.duration_since(now).unwrap_or_default();
    }
    let ahead = (at - business_now(ctx, policy)).max(0) as u64;
    policy.scaled(Duration::from_secs(ahead))
}

pub(crate) fn retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .initial_interval(Duration::from_millis(500))
        .backoff_coefficient(2.0)
        .maximum_interval(Duration::from_secs(30))
        .maximum_attempts(max_attempts)
        .non_retryable_error_types(["InvalidSpec", "BusinessRule"])
        .build()
}

/// Options of a check that must not hold the lifecycle up (the price read-back): three
/// attempts, then the caller records that it could not check and goes on.
pub(crate) fn check_opts(timeout_secs: u64, summary: String) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(timeout_secs))
        .heartbeat_timeout(Duration::from_secs(HEARTBEAT_TIMEOUT_SECS))
        .retry_policy(retry(3))
        .summary(summary)
        .build()
}

/// Start-to-close timeout of one publish call: a single idempotent write with a few quick
/// in-place retries, so an attempt stuck on a hung connection is abandoned and retried soon.
pub(crate) const PUBLISH_TIMEOUT_SECS: u64 = 20;

/// Heartbeat timeout of every activity: activities heartbeat every 2 s while they run
/// (`promo_activities::PULSE`), so one on a worker that died is retried on another within this,
/// whatever its start-to-close timeout — and a cancellation reaches it within a pulse.
const HEARTBEAT_TIMEOUT_SECS: u64 = 10;

/// Options of an ordinary activity: `timeout_secs` per attempt, 20 attempts.
pub(crate) fn opts(timeout_secs: u64, summary: String) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(timeout_secs))
        .heartbeat_timeout(Duration::from_secs(HEARTBEAT_TIMEOUT_SECS))
        .retry_policy(retry(20))
        .summary(summary)
        .build()
}

/// Options of an activity that runs for up to `timeout` by design (a wait, a long read). Its
/// cancellation is waited for, so the history shows the activity saw it.
pub(crate) fn long_opts(timeout: Duration, summary: String) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(timeout + Duration::from_secs(60))
        .heartbeat_timeout(Duration::from_secs(HEARTBEAT_TIMEOUT_SECS))
        .retry_policy(retry(20))
        .cancellation_type(ActivityCancellationType::WaitCancellationCompleted)
        .summary(summary)
        .build()
}

/// Options of `promo.watch_window`: its retry policy is the monitoring cadence — every attempt
/// `cadence` after the last, however many (a round with nothing to decide fails its attempt on
/// purpose, as the next round is the next attempt) — within the stretch (`stretch`, wall
/// clock) and a round's worth of slack. A round that fails outright is retried at the next
/// round, like any other; the stretch ends at its deadline at the latest.
pub(crate) fn watch_opts(cadence: Duration, stretch: Duration, summary: String) -> ActivityOptions {
    let cadence = cadence.max(Duration::from_secs(1));
    let policy = RetryPolicy::builder()
        .initial_interval(cadence)
        .backoff_coefficient(1.0)
        .maximum_interval(cadence)
        .maximum_attempts(0)
        .non_retryable_error_types(["InvalidSpec", "BusinessRule"])
        .build();
    ActivityOptions::with_close_timeouts(ActivityCloseTimeouts::ScheduleAndStartToClose {
        schedule_to_close: stretch + cadence + Duration::from_secs(120),
        start_to_close: Duration::from_secs(120),
    })
    .heartbeat_timeout(Duration::from_secs(HEARTBEAT_TIMEOUT_SECS))
    .retry_policy(policy)
    .cancellation_type(ActivityCancellationType::WaitCancellationCompleted)
    .summary(summary)
    .build()
}

/// Options of one compensation attempt: `attempts` tries, then the caller raises
/// COMPENSATION_PENDING and tries again later. Detached from Temporal's own cancellation, so a
/// promotion cancelled through Temporal still compensates.
pub(crate) fn compensation_opts(attempts: u32, summary: String) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(120))
        .heartbeat_timeout(Duration::from_secs(HEARTBEAT_TIMEOUT_SECS))
        .retry_policy(retry(attempts.max(1)))
        .cancellation_token(temporalio_sdk::WorkflowCancellationToken::new())
        .summary(summary)
        .build()
}

/// What a [`wait`] can wait on.
pub(crate) trait Work: CancellableFuture {
    /// Whether it runs inside the current workflow task (a local activity), so that nothing the
    /// run has done meanwhile is visible outside before it ends.
    fn in_task(&self) -> bool;
}

/// An activity's future, whichever way it runs ([`call`], [`remote`]); `.1`: it runs as a local
/// activity.
pub(crate) struct Call<'a, T>(
    Pin<Box<dyn CancellableFuture<Output = Result<T, ActivityExecutionError>> + 'a>>,
    bool,
);

impl<T> Work for Call<'_, T> {
    fn in_task(&self) -> bool {
        self.1
    }
}

impl<T> Future for Call<'_, T> {
    type Output = Result<T, ActivityExecutionError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl<T> FusedFuture for Call<'_, T> {
    fn is_terminated(&self) -> bool {
        self.0.is_terminated()
    }
}

impl<T> CancellableFuture for Call<'_, T> {
    fn cancel(&self) {
        self.0.cancel();
    }
}

/// Runs a short activity (a read, an idempotent write, a computation over streamed data): in a
/// lean run ([`super::LEAN_HISTORY`]) as a local activity on this worker — one marker holding
/// its result, no activity events, no workflow task to resume, its input (often the plan) out of
/// the history — and otherwise as an ordinary activity, as the run was recorded. The one
/// activity that waits by design (`await_acknowledgments`, up to the acknowledgment deadline)
/// stays an ordinary activity: it holds no workflow task open and costs no events while it waits.
pub(crate) fn call<'a, AD>(
    ctx: &'a Ctx,
    activity: AD,
    input: impl Into<AD::Input> + 'a,
    opts: ActivityOptions,
) -> Call<'a, AD::Output>
where
    AD: ActivityDefinition + 'a,
    AD::Output: TemporalDeserializable + 'a,
{
    if ctx.state(|s| s.lean) {
        Call(Box::pin(ctx.execute_local_activity(activity, input, local(opts))), true)
    } else {
        remote(ctx, activity, input, opts)
    }
}

/// Runs an activity as an ordinary activity in every run: one that waits by design.
pub(crate) fn remote<'a, AD>(
    ctx: &'a Ctx,
    activity: AD,
    input: impl Into<AD::Input> + 'a,
    opts: ActivityOptions,
) -> Call<'a, AD::Output>
where
    AD: ActivityDefinition + 'a,
    AD::Output: TemporalDeserializable + 'a,
{
    Call(Box::pin(ctx.execute_activity(activity, input, opts)), false)
}

/// Longest backoff a local activity's retry waits inside its workflow task ([`local`]).
const LOCAL_RETRY_THRESHOLD: Duration = Duration::from_secs(5);

/// The local-activity equivalent of `opts`: same timeouts, retries, cancellation and summary
/// (heartbeats are not needed: the worker running the workflow runs the activity, and a worker
/// that dies takes both with it, so the next worker replays and runs it again; it is idempotent).
fn local(opts: ActivityOptions) -> LocalActivityOptions {
    let mut l = LocalActivityOptions::default();
    l.start_to_close_timeout = opts.close_timeouts.start_to_close();
    l.schedule_to_close_timeout = opts.close_timeouts.schedule_to_close();
    l.retry_policy = opts.retry_policy.unwrap_or_default();
    // A local activity retries inside the workflow task, which meanwhile answers no query and
    // applies no message until the task's next heartbeat: backoffs of 5 s and more (a system
    // down for longer than a blip) become durable timers instead, releasing the task.
    l.timer_backoff_threshold = Some(LOCAL_RETRY_THRESHOLD);
    l.cancel_type = opts.cancellation_type;
    l.cancellation_token = opts.cancellation_token;
    l.summary = opts.summary;
    l
}

/// A durable timer started now, to be waited on with [`wait`] (once or several times) and
/// stopped when no longer needed (a stopped timer is cancelled on the server).
pub(crate) struct Alarm<'a> {
    timer: Pin<Box<dyn CancellableFuture<Output = temporalio_sdk::TimerResult> + 'a>>,
    rang: bool,
}

impl<'a> Alarm<'a> {
    /// Starts a timer of `d` (at least 1 ms) with `summary` on the Web UI's timeline.
    pub(crate) fn start(ctx: &'a Ctx, d: Duration, summary: String) -> Self {
        let opts = TimerOptions::builder(d.max(Duration::from_millis(1))).summary(summary).build();
        Self { timer: Box::pin(ctx.timer(opts)), rang: false }
    }

    /// Cancels the timer if it has not fired.
    pub(crate) fn stop(&mut self) {
        if !self.rang {
            self.timer.cancel();
        }
    }
}

/// Nothing to wait for besides the alarms and the condition.
pub(crate) struct Nothing;

impl Future for Nothing {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

impl FusedFuture for Nothing {
    /// Always terminated, so that [`wait`] never polls, cancels or awaits it.
    fn is_terminated(&self) -> bool {
        true
    }
}

impl CancellableFuture for Nothing {
    fn cancel(&self) {}
}

impl Work for Nothing {
    fn in_task(&self) -> bool {
        false
    }
}

/// What ended a [`wait`].
#[derive(Debug)]
pub(crate) enum Woke<T> {
    /// The work finished with this output.
    Done(T),
    /// The alarm at this index rang.
    Rang(usize),
    /// The stage's condition came true (a nudge, or what the stage waits for).
    Nudged,
}

/// Waits for `work` (an activity, or [`Nothing`]), one of `alarms`, or `nudge` to hold —
/// whichever comes first — and always for a cancel: then the work is cancelled (and, for a
/// long activity, its cancellation awaited), every alarm stopped, and `Err(Stop::Cancelled)`
/// returned. Alarms are otherwise left running for the caller to wait on again or stop.
///
/// The condition is polled first, then the alarms in order, then the work, which is the order
/// the released lifecycle (before [`super::LIFECYCLE_V2`]) gave its selects.
pub(crate) async fn wait<W: Work>(
    ctx: &Ctx,
    work: W,
    alarms: &mut [Alarm<'_>],
    nudge: impl Fn(&PromotionWorkflow) -> bool,
) -> Result<Woke<W::Output>, Stop> {
    // What happened up to this wait goes to the process-event record first — in a batched run
    // only when the run waits on the server: a local activity runs inside the workflow task,
    // which the next wait on the server (or the end) flushes.
    let on_server = !work.in_task() || !alarms.is_empty();
    // A carrying run's ordinary activity took the events with it (`events::carry`).
    let carried =
        !work.in_task() && !work.is_terminated() && alarms.is_empty() && ctx.state(super::events::carried);
    if (!ctx.state(|s| s.batched) || on_server) && !carried {
        super::events::flush(ctx).await;
    }
    if on_server {
        super::state::publish_pending(ctx);
    }
    // A quiet run's handlers leave their search attributes to this wait meanwhile: it upserts
    // them when they do not wake it, and the run does with its own when they do.
    let defers = on_server && ctx.state(|s| s.quiet);
    ctx.state_mut(|s| s.handlers_defer = defers);
    let mut work = std::pin::pin!(work);
    let mut condition =
        std::pin::pin!(ctx.wait_condition(|s: &PromotionWorkflow| s.cancel.is_some() || nudge(s)).fuse());
    let woke = loop {
        let mut attributes =
            std::pin::pin!(ctx.wait_condition(|s: &PromotionWorkflow| s.attributes_pending).fuse());
        let polled = futures::future::poll_fn(|cx| {
            if let Poll::Ready(r) = condition.as_mut().poll(cx) {
                return Poll::Ready(Some(r.map(|()| Woke::Nudged)));
            }
            for (i, a) in alarms.iter_mut().enumerate() {
                if !a.rang && a.timer.as_mut().poll(cx).is_ready() {
                    a.rang = true;
                    return Poll::Ready(Some(Ok(Woke::Rang(i))));
                }
            }
            if !work.is_terminated()
                && let Poll::Ready(out) = work.as_mut().poll(cx)
            {
                return Poll::Ready(Some(Ok(Woke::Done(out))));
            }
            if defers && attributes.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await;
        match polled {
            Some(woke) => break woke,
            None => super::state::publish_pending(ctx),
        }
    };
    ctx.state_mut(|s| s.handlers_defer = false);
    let cancelled = match &woke {
        Err(_) => true,
        Ok(Woke::Nudged) => ctx.state(|s| s.cancel.is_some()),
        Ok(_) => false,
    };
    if !cancelled {
        if matches!(woke, Ok(Woke::Nudged)) && !work.is_terminated() {
            work.cancel();
            let _ = work.await;
        }
        return woke.map_err(|_| Stop::Exit(WorkflowTermination::cancelled()));
    }
    for a in alarms.iter_mut() {
        a.stop();
    }
    if !work.is_terminated() {
        work.cancel();
        let _ = work.await;
    }
    match woke {
        Err(_) => Err(Stop::Exit(WorkflowTermination::cancelled())),
        Ok(_) => Err(Stop::Cancelled),
    }
}

/// Waits `d` on one timer (none when `d` is zero), waking early on cancel or `nudge`.
/// `Ok(true)` when the time is up, `Ok(false)` when nudged (the timer is then cancelled).
pub(crate) async fn sleep(
    ctx: &Ctx,
    d: Duration,
    summary: String,
    nudge: impl Fn(&PromotionWorkflow) -> bool,
) -> Result<bool, Stop> {
    if d.is_zero() {
        return if ctx.state(|s| s.cancel.is_some()) { Err(Stop::Cancelled) } else { Ok(true) };
    }
    let mut alarm = [Alarm::start(ctx, d, summary)];
    match wait(ctx, Nothing, &mut alarm, nudge).await? {
        Woke::Rang(_) => Ok(true),
        _ => {
            alarm[0].stop();
            Ok(false)
        }
    }
}

/// A timer kept across the waits for one instant: a quiet run ([`super::QUIET_HISTORY`]) that
/// a message wakes before the instant it waits for, and that finds the instant unchanged, waits
/// on the same timer again instead of cancelling it and starting another (two history events
/// fewer per wake-up). A wait for another instant or [`Kept::stop`] cancels the timer if it has
/// not fired; the caller stops it when it goes on without waiting for it (a timer left behind
/// fires unheeded, which costs its event and a workflow task).
#[derive(Default)]
pub(crate) struct Kept<'a> {
    held: Option<(i64, Alarm<'a>)>,
}

impl<'a> Kept<'a> {
    /// [`sleep`] until business instant `at`, `d` from now: on the timer kept for `at` when
    /// there is one. `Ok(true)` when the time is up, `Ok(false)` when nudged (the timer is then
    /// kept for the next wait).
    pub(crate) async fn sleep(
        &mut self,
        ctx: &'a Ctx,
        at: i64,
        d: Duration,
        summary: String,
        nudge: impl Fn(&PromotionWorkflow) -> bool,
    ) -> Result<bool, Stop> {
        if !matches!(&self.held, Some((k, _)) if *k == at) {
            self.stop();
            if d.is_zero() {
                return if ctx.state(|s| s.cancel.is_some()) { Err(Stop::Cancelled) } else { Ok(true) };
            }
            self.held = Some((at, Alarm::start(ctx, d, summary)));
        }
        let Some((_, alarm)) = self.held.as_mut() else { return Ok(true) };
        match wait(ctx, Nothing, std::slice::from_mut(alarm), nudge).await {
            Ok(Woke::Rang(_)) => {
                self.held = None;
                Ok(true)
            }
            Ok(_) => Ok(false),
            Err(stop) => {
                // A cancel stopped the timer already.
                self.held = None;
                Err(stop)
            }
        }
    }

    /// Cancels the kept timer, if any and it has not fired.
    pub(crate) fn stop(&mut self) {
        if let Some((_, mut alarm)) = self.held.take() {
            alarm.stop();
        }
    }
}

/// Runs an activity to its end; in lifecycle v2 a cancel (or `nudge`) interrupts it —
/// `Ok(None)` when nudged — and runs started before v2 await it as they always did.
pub(crate) async fn activity<T, E>(
    ctx: &Ctx,
    work: impl Work<Output = Result<T, E>>,
    nudge: impl Fn(&PromotionWorkflow) -> bool,
) -> Result<Option<T>, Stop>
where
    Stop: From<E>,
{
    if !ctx.state(|s| s.v2) {
        return Ok(Some(work.await?));
    }
    match wait(ctx, work, &mut [], nudge).await? {
        Woke::Done(r) => Ok(Some(r?)),
        _ => Ok(None),
    }
}

/// [`activity`] with no nudge: only a cancel interrupts it.
pub(crate) async fn run<T, E>(ctx: &Ctx, work: impl Work<Output = Result<T, E>>) -> Result<T, Stop>
where
    Stop: From<E>,
{
    match activity(ctx, work, |_| false).await? {
        Some(t) => Ok(t),
        // Unreachable: without a nudge, only a cancel ends the wait early, and that is an `Err`.
        None => Err(Stop::Cancelled),
    }
}
