//! The activity options every stage shares: how long an attempt may take, how often it is
//! retried, how soon a dead worker's attempt is noticed (heartbeats), and how a cancellation
//! reaches it. One place, so that no stage invents its own.

use std::time::Duration;
use temporalio_common::{ActivityCloseTimeouts, RetryPolicy};
use temporalio_sdk::{ActivityCancellationType, ActivityOptions, LocalActivityOptions};

/// Failure types never retried: a business rule refused the call, or the spec is invalid.
pub(crate) const NON_RETRYABLE: [&str; 2] = ["InvalidSpec", "BusinessRule"];

/// `max_attempts` attempts, 0.5 s doubling to 30 s apart.
pub(crate) fn retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .initial_interval(Duration::from_millis(500))
        .backoff_coefficient(2.0)
        .maximum_interval(Duration::from_secs(30))
        .maximum_attempts(max_attempts)
        .non_retryable_error_types(NON_RETRYABLE)
        .build()
}

/// Start-to-close timeout of one publish call: a single idempotent write with a few quick
/// in-place retries, so an attempt stuck on a hung connection is abandoned and retried soon.
pub(crate) const PUBLISH_TIMEOUT_SECS: u64 = 20;

/// Heartbeat timeout of every activity: activities heartbeat every 2 s while they run
/// (`promo_activities::PULSE`), so one on a worker that died is retried on another within this,
/// whatever its start-to-close timeout — and a cancellation reaches it within a pulse.
const HEARTBEAT_TIMEOUT_SECS: u64 = 10;

/// Options of a check that must not hold the lifecycle up (the price read-back): three
/// attempts, then the caller records that it could not check and goes on.
pub(crate) fn check_opts(timeout_secs: u64, summary: String) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(timeout_secs))
        .heartbeat_timeout(Duration::from_secs(HEARTBEAT_TIMEOUT_SECS))
        .retry_policy(retry(3))
        .summary(summary)
        .build()
}

/// Options of an ordinary activity: `timeout_secs` per attempt, 20 attempts.
pub(crate) fn opts(timeout_secs: u64, summary: String) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(timeout_secs))
        .heartbeat_timeout(Duration::from_secs(HEARTBEAT_TIMEOUT_SECS))
        .retry_policy(retry(20))
        .summary(summary)
        .build()
}

/// Options of a call a live or finished promotion makes: `attempts` tries of `timeout_secs`,
/// then the caller shows SYSTEMS_UNAVAILABLE and calls again later ([`super::persist`]).
pub(crate) fn systems_opts(attempts: u32, timeout_secs: u64, summary: String) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(timeout_secs))
        .heartbeat_timeout(Duration::from_secs(HEARTBEAT_TIMEOUT_SECS))
        .retry_policy(retry(attempts.max(1)))
        .summary(summary)
        .build()
}

/// Options of an activity that runs for up to `timeout` by design (a wait, a long read). Its
/// cancellation is waited for, so the history shows the activity saw it.
pub(crate) fn long_opts(timeout: Duration, summary: String) -> ActivityOptions {
    long_attempts_opts(timeout, 20, summary)
}

/// [`long_opts`] with `attempts` tries.
pub(crate) fn long_attempts_opts(timeout: Duration, attempts: u32, summary: String) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(timeout + Duration::from_secs(60))
        .heartbeat_timeout(Duration::from_secs(HEARTBEAT_TIMEOUT_SECS))
        .retry_policy(retry(attempts.max(1)))
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
        .non_retryable_error_types(NON_RETRYABLE)
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

/// Longest backoff a local activity's retry waits inside its workflow task ([`local`]): below
/// the first backoff (0.5 s), so every retry waits on a durable timer.
const LOCAL_RETRY_THRESHOLD: Duration = Duration::from_millis(400);

/// The local-activity equivalent of `opts`: same timeouts, retries, cancellation and summary
/// (heartbeats are not needed: the worker running the workflow runs the activity, and a worker
/// that dies takes both with it, so the next worker replays and runs it again; it is idempotent).
pub(crate) fn local(opts: ActivityOptions) -> LocalActivityOptions {
    let mut l = LocalActivityOptions::default();
    l.start_to_close_timeout = opts.close_timeouts.start_to_close();
    l.schedule_to_close_timeout = opts.close_timeouts.schedule_to_close();
    l.retry_policy = opts.retry_policy.unwrap_or_default();
    // While a local activity runs, its workflow task stays open, and the run accepts no update
    // and applies no message (the task's heartbeats do not deliver them): retried in the task,
    // a call to a system that is down (six quick tries per attempt, then the next attempt) held
    // an operator's message for up to 20 s. Every retry waits on a durable timer instead, so a
    // message waits for one attempt at most.
    l.timer_backoff_threshold = Some(LOCAL_RETRY_THRESHOLD);
    l.cancel_type = opts.cancellation_type;
    l.cancellation_token = opts.cancellation_token;
    l.summary = opts.summary;
    l
}
