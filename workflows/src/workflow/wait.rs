//! The one wait primitive of the lifecycle.
//!
//! Every place a promotion waits — an approval, a remediation choice, the launch timer, an
//! acknowledgment round, a late-acknowledgment wait, the monitoring cadence, the retries of a
//! compensation, an ordinary activity — goes through [`wait`], which races what the stage waits
//! for against the operator: a cancel always ends the wait (cancelling a running activity, whose
//! heartbeat sees it), and the nudges a stage names (pause, resume, override) wake it so that it
//! can look again. So no stage can forget them. Before the run waits on the server, what it has
//! to say goes out: its process events ([`super::events`]) and its search attributes.

pub use super::state::Ctx;
use super::{options::local, state::PromotionWorkflow};
use futures::{FutureExt, future::FusedFuture};
use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};
use temporalio_common::{ActivityDefinition, data_converters::TemporalDeserializable};
use temporalio_sdk::{
    ActivityExecutionError, ActivityOptions, CancellableFuture, TimerOptions, WorkflowTermination,
};

pub use super::stop::Stop;

/// `Err(Stop::Cancelled)` once an operator has cancelled: the check after work too short to
/// interrupt (an assessment, a round of publish calls).
pub(crate) fn check_cancel(ctx: &Ctx) -> Result<(), Stop> {
    if ctx.state(|s: &PromotionWorkflow| s.cancel.is_some()) { Err(Stop::Cancelled) } else { Ok(()) }
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

/// Runs a short activity (a read, an idempotent write, a computation over streamed data) as a
/// local activity on this worker: one marker holding its result, no activity events, no workflow
/// task to resume, and its input (often the plan) out of the history. Activities that wait by
/// design (acknowledgments, the monitoring window) run as ordinary activities ([`remote`]): they
/// hold no workflow task open and cost no events while they wait.
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
    Call(Box::pin(ctx.execute_local_activity(activity, input, local(opts))), true)
}

/// Runs an activity as an ordinary activity: one that waits by design.
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
    /// An alarm rang.
    Rang,
    /// The stage's condition came true (a nudge, or what the stage waits for).
    Nudged,
}

/// Waits for `work` (an activity, or [`Nothing`]), one of `alarms`, or `nudge` to hold —
/// whichever comes first — and always for a cancel: then the work is cancelled (and, for a
/// long activity, its cancellation awaited), every alarm stopped, and `Err(Stop::Cancelled)`
/// returned. Alarms are otherwise left running for the caller to wait on again or stop.
///
/// The condition is polled first, then the alarms in order, then the work.
pub(crate) async fn wait<W: Work>(
    ctx: &Ctx,
    work: W,
    alarms: &mut [Alarm<'_>],
    nudge: impl Fn(&PromotionWorkflow) -> bool,
) -> Result<Woke<W::Output>, Stop> {
    // What happened up to this wait goes to the process-event record first, when the run waits
    // on the server: a local activity runs inside the workflow task, which the next wait on the
    // server (or the end) flushes.
    let on_server = !work.in_task() || !alarms.is_empty();
    // An ordinary activity took the events with it (`events::carry`).
    let carried =
        !work.in_task() && !work.is_terminated() && alarms.is_empty() && ctx.state(super::events::carried);
    if on_server && !carried {
        super::events::flush(ctx).await;
    }
    if on_server {
        super::publish::publish_pending(ctx);
    }
    // Handlers leave their search attributes to the run ([`super::state::publish`]): while it
    // waits on the server, this wait upserts them when they do not wake it, and the run does
    // with its own when they do.
    let defers = on_server;
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
            for a in alarms.iter_mut() {
                if !a.rang && a.timer.as_mut().poll(cx).is_ready() {
                    a.rang = true;
                    return Poll::Ready(Some(Ok(Woke::Rang)));
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
            None => super::publish::publish_pending(ctx),
        }
    };
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
        Woke::Rang => Ok(true),
        _ => {
            alarm[0].stop();
            Ok(false)
        }
    }
}

/// A timer kept across the waits for one instant: a run that a message wakes before the instant
/// it waits for, and that finds the instant unchanged, waits on the same timer again instead of
/// cancelling it and starting another (two history events fewer per wake-up). A wait for another instant or [`Kept::stop`] cancels the timer if it has
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
            Ok(Woke::Rang) => {
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

/// Runs an activity to its end; a cancel (or `nudge`) interrupts it — `Ok(None)` when nudged.
pub(crate) async fn activity<T, E>(
    ctx: &Ctx,
    work: impl Work<Output = Result<T, E>>,
    nudge: impl Fn(&PromotionWorkflow) -> bool,
) -> Result<Option<T>, Stop>
where
    Stop: From<E>,
{
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
