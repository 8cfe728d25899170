//! One module per stage of DESIGN.md §3, each a function `run` (intake also has `start`) that
//! the lifecycle calls in order, and [`ending`], through which every run ends.
//!
//! A stage returns `Err(Stop)` to end the lifecycle early; [`ending::finish`] turns every
//! ending — including a completed one — into compensation, closed exceptions and the result.

pub mod active;
pub mod analysis;
pub mod approval;
pub mod assessment;
pub mod close;
pub mod ending;
pub mod intake;
pub mod launch_gate;
pub mod publishing;
pub mod reconcile;
pub mod remediation;
pub mod scheduling;

use super::{
    state::{PromotionWorkflow, pb_ts, publish},
    wait::{Ctx, now},
};
use promo_contracts::{
    promo::v1::{Stage, StageEntry},
    retail::v1::ProcessEventKind,
};
use temporalio_sdk::{ActivityExecutionError, WorkflowTermination};

/// How a stage ends the lifecycle before it completes.
#[derive(Debug)]
pub enum Stop {
    /// An approver rejected it (the reason).
    Rejected(String),
    /// Approvals or choices did not come in time (the reason).
    Expired(String),
    /// An operator cancelled it (who and why are in the state).
    Cancelled,
    /// Something unrecoverable: the reason, and the failure the run ends with.
    Failed(String, WorkflowTermination),
    /// The run must stop as it is: evicted from the cache, or cancelled through Temporal itself.
    Exit(WorkflowTermination),
}

impl From<WorkflowTermination> for Stop {
    fn from(t: WorkflowTermination) -> Self {
        match t {
            WorkflowTermination::Failed(e) => Stop::Failed(e.to_string(), WorkflowTermination::Failed(e)),
            other => Stop::Exit(other),
        }
    }
}

impl From<ActivityExecutionError> for Stop {
    fn from(e: ActivityExecutionError) -> Self {
        if matches!(e, ActivityExecutionError::Cancelled(_)) {
            // Only Temporal's own cancellation cancels an activity without this workflow asking.
            return Stop::Exit(WorkflowTermination::cancelled());
        }
        Stop::from(WorkflowTermination::from(e))
    }
}

/// Enters `stage`: the timeline, and what the outside sees.
pub(crate) fn enter(ctx: &Ctx, stage: Stage) {
    let t = now(ctx);
    ctx.state_mut(|s| {
        s.stage = stage;
        s.timeline.push(StageEntry { stage: stage as i32, entered_at: pb_ts(t), revision: s.revision });
        s.event(t, ProcessEventKind::StageEntered, |_| {});
    });
    publish(ctx);
}

/// `Err(Stop::Cancelled)` once an operator has cancelled.
pub(crate) fn check_cancel(ctx: &Ctx) -> Result<(), Stop> {
    if ctx.state(|s: &PromotionWorkflow| s.cancel.is_some()) { Err(Stop::Cancelled) } else { Ok(()) }
}

/// In lifecycle v2, `Err(Stop::Cancelled)` once an operator has cancelled: the check after work
/// too short to interrupt (an assessment, a round of publish calls). Runs started before v2 went
/// on to their next wait, which is where they noticed.
pub(crate) fn checkpoint(ctx: &Ctx) -> Result<(), Stop> {
    if ctx.state(|s: &PromotionWorkflow| s.v2) { check_cancel(ctx) } else { Ok(()) }
}
