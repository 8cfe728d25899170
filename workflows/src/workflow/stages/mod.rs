//! One module per stage of the lifecycle, each a function `run` (intake also has `start`) that
//! [`super::lifecycle`] calls in order, and [`ending`], through which every run ends.
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

pub use super::wait::Stop;
pub(crate) use super::wait::check_cancel;
use super::{
    publish::publish,
    state::{Ctx, pb_ts},
    time::now,
};
use promo_contracts::{
    promo::v1::{Stage, StageEntry},
    retail::v1::ProcessEventKind,
};

/// Whether the run is past `stage`: a run continued as new resumes at the stage it was in, and
/// the lifecycle passes the stages before it without doing them again.
pub(crate) fn past(ctx: &Ctx, stage: Stage) -> bool {
    ctx.state(|s| s.stage > stage)
}

/// Enters `stage` unless the run is in it already (resumed there after a continue-as-new).
pub(crate) fn enter_once(ctx: &Ctx, stage: Stage) {
    if ctx.state(|s| s.stage != stage) {
        enter(ctx, stage);
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
