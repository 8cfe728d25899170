//! Taking a [`Snapshot`]: visibility, then the `status` query of each running promotion, then
//! the process-event record. A source that fails is named in the snapshot's `problems` and the
//! others still fill it, so a page or an answer shows what could be read.

use crate::listing::{ListRow, list_row};
use futures::StreamExt;
use promo_activities::Systems;
use promo_contracts::{
    promo::v1::PromotionStatus,
    retail::v1::{ListEventsRequest, ProcessEvent},
};
use promo_workflows::{
    PromotionWorkflow,
    api::{self, workflow_id},
};
use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use temporalio_client::{Client, WorkflowListOptions, WorkflowQueryOptions};

/// Where each part of a snapshot came from: shown under answers and on the page.
pub const SOURCE_VISIBILITY: &str =
    "Temporal visibility: WorkflowType = 'PromotionWorkflow' AND ExecutionStatus != 'ContinuedAsNew'";
/// The query run against each running promotion.
pub const SOURCE_STATUS: &str = "`status` query of each running promotion";
/// The process-event record.
pub const SOURCE_EVENTS: &str = "process-event record: retail.v1.ProcessEventService/ListEvents";

/// Everything the views are computed from.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// When it was taken, Unix seconds.
    pub now: i64,
    /// Every promotion visibility lists (most recent first, up to the limit).
    pub promotions: Vec<ListRow>,
    /// The status of each running promotion that answered, by promotion id.
    pub statuses: BTreeMap<String, PromotionStatus>,
    /// The process-event record, oldest first.
    pub events: Vec<ProcessEvent>,
    /// Sources that could not be read, with why.
    pub problems: Vec<String>,
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Takes a snapshot of up to `limit` promotions: visibility, then the running promotions'
/// status (concurrently, each bounded by `timeout`), then the event record from `systems` (left
/// empty without it). A source that fails is named in `problems`; the others still fill the
/// snapshot.
pub async fn snapshot(
    client: &Client,
    systems: Option<&Systems>,
    limit: usize,
    timeout: Duration,
) -> Snapshot {
    let mut snap = Snapshot { now: unix_now(), ..Default::default() };
    let q = api::PROMOTIONS_QUERY;
    let mut stream = client.list_workflows(q, WorkflowListOptions::builder().limit(limit).build());
    while let Some(w) = stream.next().await {
        match w {
            Ok(w) => snap.promotions.push(list_row(w.id(), w.status(), &w.search_attributes())),
            Err(e) => {
                snap.problems.push(format!("visibility: {e}"));
                break;
            }
        }
    }
    let running: Vec<String> = snap
        .promotions
        .iter()
        .filter(|p| p.execution_status == "running")
        .map(|p| p.promotion_id.clone())
        .collect();
    let asks = running.iter().map(|id| async move {
        let h = client.get_workflow_handle::<PromotionWorkflow>(workflow_id(id));
        let q = h.query(PromotionWorkflow::status, (), WorkflowQueryOptions::default());
        (id.clone(), tokio::time::timeout(timeout, q).await)
    });
    for (id, got) in futures::future::join_all(asks).await {
        match got {
            Ok(Ok(s)) => {
                snap.statuses.insert(id, s);
            }
            Ok(Err(e)) => snap.problems.push(format!("status of {id}: {e}")),
            Err(_) => snap
                .problems
                .push(format!("status of {id}: no answer in {}s (is a worker running?)", timeout.as_secs())),
        }
    }
    if let Some(systems) = systems {
        let req = ListEventsRequest { limit: 50_000, ..Default::default() };
        match tokio::time::timeout(timeout, systems.events().list_events(req)).await {
            Ok(Ok(r)) => snap.events = r.into_inner().events,
            Ok(Err(e)) => snap.problems.push(format!("process events: {}", e.message())),
            Err(_) => snap.problems.push("process events: no answer".into()),
        }
    }
    snap
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_visibility_source_names_the_query_it_runs() {
        assert_eq!(SOURCE_VISIBILITY, format!("Temporal visibility: {}", api::PROMOTIONS_QUERY));
    }
}
