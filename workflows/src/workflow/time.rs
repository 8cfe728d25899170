//! The run's clocks: workflow time (the server's, deterministic on replay) and the business
//! clock that the spec's window and the policy's durations are written in
//! ([`crate::clock::BusinessClock`], from the run's start at the policy's time scale).

use super::state::Ctx;
use crate::{clock::BusinessClock, policy::Policy};
use std::time::{Duration, UNIX_EPOCH};

/// Workflow time, Unix seconds.
pub(crate) fn now(ctx: &Ctx) -> i64 {
    ctx.workflow_time().map_or(0, crate::clock::unix)
}

/// The run's business clock under `policy`.
pub(crate) fn clock(ctx: &Ctx, policy: &Policy) -> BusinessClock {
    BusinessClock::new(ctx.state(|s| s.started_at), policy.time_scale)
}

/// Business time now.
pub(crate) fn business_now(ctx: &Ctx, policy: &Policy) -> i64 {
    clock(ctx, policy).business_at(now(ctx))
}

/// Workflow time on the run's timers until business instant `at`: until the first whole second
/// at which the business clock reads `at` ([`BusinessClock::server_second_of`]).
pub(crate) fn until(ctx: &Ctx, policy: &Policy, at: i64) -> Duration {
    clock(ctx, policy).until(ctx.workflow_time().unwrap_or(UNIX_EPOCH), at)
}
