//! Heartbeats: every activity that runs longer than a moment heartbeats every [`PULSE`] with its
//! progress (the Web UI shows it as the pending activity's details), so that one on a worker that
//! died is retried elsewhere within seconds, and a cancellation reaches it within a pulse.

use std::{future::Future, time::Duration};
use temporalio_sdk::activities::ActivityContext;

/// How often a running activity heartbeats. The workflow gives every activity a 10 s heartbeat
/// timeout, several pulses long, so an activity on a worker that died is retried elsewhere
/// within seconds, not at the end of its start-to-close timeout. Core throttles what reaches the
/// server to 80% of that timeout. The pulse shares the activity's task: work that blocks the
/// thread for seconds must yield (the engines take milliseconds on the canonical promotion).
pub const PULSE: Duration = Duration::from_secs(2);

/// The latest progress of a running activity, sent with each heartbeat (shown as the pending
/// activity's heartbeat details in the Web UI).
#[derive(Debug, Default)]
pub(crate) struct Progress(std::sync::Mutex<String>);

impl Progress {
    pub(crate) fn set(&self, progress: impl Into<String>) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = progress.into();
    }

    pub(crate) fn get(&self) -> String {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// Runs `work`, heartbeating every [`PULSE`] with `progress` until it finishes.
pub(crate) async fn alive<T>(ctx: &ActivityContext, progress: &Progress, work: impl Future<Output = T>) -> T {
    beating(ctx, || progress.get(), work).await
}

/// Runs `work`, heartbeating every [`PULSE`] with what `details` returns then.
pub(crate) async fn beating<T, D>(
    ctx: &ActivityContext,
    details: impl Fn() -> D,
    work: impl Future<Output = T>,
) -> T
where
    D: temporalio_common::data_converters::TemporalSerializable + 'static,
{
    let mut work = std::pin::pin!(work);
    let mut pulse = tokio::time::interval(PULSE);
    pulse.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = pulse.tick() => {
                let _ = ctx.record_heartbeat(details()).await;
            }
        }
    }
}
