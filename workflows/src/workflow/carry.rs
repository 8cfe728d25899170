//! Bounded history: a run continues as new — the same workflow id, the state handed on — when
//! its history reaches the policy's budget (`history.max_events`) or the server suggests it (past
//! its own limits, in bytes too). Queries, updates, signals and search attributes follow the
//! workflow id, so clients see one promotion throughout; the audit trail lives in the
//! process-event record, so nothing of it is lost with the old run's history.
//!
//! A run hands over only at a checkpoint — the top of a stage's wait loop, before it starts a
//! timer or an activity — when every message handler has finished. What the stage had done is in
//! the state ([`super::state::Progress`], [`super::state::Ending`]), and each stage resumes from
//! there when the lifecycle reaches it again.

use super::{
    input::StartInput,
    state::{Ctx, PromotionWorkflow},
    stop::Stop,
    time::now,
};
use crate::policy::History;
use temporalio_sdk::ContinueAsNewOptions;

/// Continues as new if the run's history is due to (a checkpoint), else `Ok`.
pub(crate) async fn checkpoint(ctx: &Ctx) -> Result<(), Stop> {
    if !due(ctx) {
        return Ok(());
    }
    // A message being checked (its key's revocation read) finishes before the state moves on.
    // The run's own count of messages in flight, not the SDK's handler count: the last thing a
    // handler does is a change to the state, which wakes this wait; the SDK's count drops only
    // after it, when nothing wakes the wait again (and a flood of messages would put the
    // hand-over off for as long as it lasts).
    ctx.wait_condition(|s: &PromotionWorkflow| s.tickets.in_flight() == 0).await?;
    let (t, events) = (now(ctx), ctx.history_length());
    let state = ctx.state_mut(|s| {
        let detail = format!(
            "run {} of this promotion continues as new after {events} history events (run {} of its chain)",
            s.run_id, s.runs
        );
        s.record(t, "system", "continued-as-new", detail);
        s.clone()
    });
    let to = ctx.continue_as_new(StartInput::Continued(Box::new(state)), ContinueAsNewOptions::default());
    match to {
        Err(termination) => Err(Stop::Exit(termination)),
        Ok(never) => match never {},
    }
}

/// Whether the history is due to be handed on.
fn due(ctx: &Ctx) -> bool {
    let max =
        ctx.state(|s| s.policy.as_ref().map_or(History::default().max_events, |p| p.history.max_events));
    ctx.continue_as_new_suggested() || ctx.history_length() >= max
}

/// `nudge`, or the history due to be handed on: a wait that can resume from the state wakes for
/// either, and its loop reaches its checkpoint (a flood of messages during a long wait grows the
/// history too).
pub(crate) fn or_due<'a>(
    ctx: &Ctx,
    nudge: impl Fn(&PromotionWorkflow) -> bool + 'a,
) -> impl Fn(&PromotionWorkflow) -> bool + 'a {
    let history = ctx.clone();
    move |s: &PromotionWorkflow| nudge(s) || due(&history)
}
