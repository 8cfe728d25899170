//! The process-event record (analytics): what the run hands over at its flushes
//! (`promo.record_events`, idempotent by event id) and, best effort, with the ordinary activities
//! it waits on.

use crate::{Systems, status_error};
use promo_contracts::retail::v1::*;
use std::time::Duration;
use temporalio_sdk::activities::ActivityError;

/// Records process events (one call, idempotent by id); returns how many were new.
pub(crate) async fn record(systems: &Systems, events: &[ProcessEvent]) -> Result<u32, ActivityError> {
    let req = RecordEventsRequest { events: events.to_vec() };
    let done = rpc!(systems.events(), record_events, req.clone())
        .await
        .map_err(|s| status_error("process events", s))?;
    Ok(done.into_inner().recorded)
}

/// Writes the process events the run handed to an ordinary activity, best effort: the run sends
/// them again with its next `promo.record_events`, so a failure here is only logged.
pub(crate) async fn record_carried(systems: &Systems, events: &[ProcessEvent]) {
    if events.is_empty() {
        return;
    }
    let req = RecordEventsRequest { events: events.to_vec() };
    match tokio::time::timeout(Duration::from_secs(5), rpc!(systems.events(), record_events, req.clone()))
        .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(s)) => tracing::warn!("process events left to the workflow's next flush: {}", s.message()),
        Err(_) => {
            tracing::warn!("process events left to the workflow's next flush: no answer within 5 s")
        }
    }
}
