//! The worker's start-up check of the lifecycle versions in the namespace: a worker refuses to
//! poll while an open promotion run took a version older than the oldest this build supports
//! (`promo_workflows::version`), naming those runs — such a run would fail every workflow task
//! on this build. Runs whose first workflow task has not completed yet took no version and take
//! the current one, so they do not count.

use futures::StreamExt;
use promo_workflows::{PromotionWorkflow, api, version};
use temporalio_client::{Client, WorkflowFetchHistoryOptions, WorkflowListOptions};
use temporalio_common::protos::temporal::api::enums::v1::EventType;

/// The most runs named in the refusal (the rest are counted).
const NAMED: usize = 10;

/// One open run this build cannot replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldRun {
    /// Its workflow id (`promotion-<id>`).
    pub workflow_id: String,
    /// Its run id.
    pub run_id: String,
    /// The patch markers it recorded (`TemporalChangeVersion`), empty when none.
    pub markers: Vec<String>,
}

/// Why the worker does not start.
#[derive(Debug, thiserror::Error)]
pub enum VersionCheckError {
    /// Open runs took a version this build no longer supports.
    #[error(
        "{} open promotion run(s) started before lifecycle version {oldest} (marker {marker:?}), the \
         oldest this worker supports: {}{}. Run them to their end on a worker of the build that \
         started them (or terminate them), then start this one",
        runs.len(),
        runs.iter().take(NAMED).map(describe).collect::<Vec<_>>().join("; "),
        if runs.len() > NAMED { format!("; and {} more", runs.len() - NAMED) } else { String::new() },
        oldest = version::Version::OLDEST.number(),
        marker = version::Version::OLDEST.marker(),
    )]
    Unsupported {
        /// The runs.
        runs: Vec<OldRun>,
    },
    /// Visibility could not be asked.
    #[error("checking the open promotion runs' versions ({query}): {detail}")]
    Visibility {
        /// The query sent.
        query: String,
        /// What the server said.
        detail: String,
    },
}

fn describe(r: &OldRun) -> String {
    let markers = if r.markers.is_empty() { "no version marker".to_owned() } else { r.markers.join(", ") };
    format!("{} (run {}, {markers})", r.workflow_id, r.run_id)
}

/// Lists the open promotion runs older than this build's oldest supported version; `Err` naming
/// them when there is any.
pub async fn check(client: &Client) -> Result<usize, VersionCheckError> {
    let query = version::open_runs_query(api::WORKFLOW_TYPE);
    let visibility = |detail: String| VersionCheckError::Visibility { query: query.clone(), detail };
    let mut listed = client.list_workflows(query.clone(), WorkflowListOptions::default());
    let mut old = Vec::new();
    let mut candidates = 0;
    while let Some(w) = listed.next().await {
        let w = w.map_err(|e| visibility(e.to_string()))?;
        candidates += 1;
        if !took_a_version(client, w.id()).await.map_err(visibility)? {
            continue;
        }
        let markers = w
            .search_attributes()
            .get(&temporalio_common::search_attributes::SearchAttributeKey::<Vec<String>>::keyword_list(
                "TemporalChangeVersion",
            ))
            .unwrap_or_default();
        old.push(OldRun { workflow_id: w.id().to_owned(), run_id: w.run_id().to_owned(), markers });
    }
    if old.is_empty() { Ok(candidates) } else { Err(VersionCheckError::Unsupported { runs: old }) }
}

/// Whether the open run of `workflow_id` has completed a workflow task (and so took its version).
async fn took_a_version(client: &Client, workflow_id: &str) -> Result<bool, String> {
    let mut history = client
        .get_workflow_handle::<PromotionWorkflow>(workflow_id.to_owned())
        .fetch_history(WorkflowFetchHistoryOptions::default());
    while let Some(e) = history.next().await {
        let e = e.map_err(|e| format!("the history of {workflow_id}: {e}"))?;
        if e.event_type() == EventType::WorkflowTaskCompleted {
            return Ok(true);
        }
    }
    Ok(false)
}
