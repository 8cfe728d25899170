//! The commands against Temporal (and, for `start`, the retail systems), one module per family:
//! - [`start`]: `start` (local checks, master data and collisions, the workflow start);
//! - [`decide`]: the messages — approvals, change requests, remediation choices and operator
//!   actions as updates or signals, signed decisions, `keygen`, `revoke-key`;
//! - [`inspect`]: one promotion or the list — `status`, `audit`, `list`, `report`;
//! - [`portfolio`]: the read model's commands — `dashboard`, `exceptions`, `ask`.
//!
//! Each returns an [`Output`] — text for people and JSON for machines — or a [`CliError`] that
//! says what to do next. Every wait on the workflow is bounded by `--timeout`, except `report`,
//! whose point is to wait for the end. The helpers below (connection, handles, bounded waits and
//! the errors they map to) are shared by all of them.

mod decide;
mod inspect;
mod portfolio;
mod start;

pub use decide::update_refusal;
pub use inspect::result_from_error;
pub use start::{SystemsCheck, start_error, systems_check};

use crate::{
    cli::{Cli, Command},
    error::CliError,
};
use promo_insight::execution_status;
use promo_workflows::{
    PromotionWorkflow,
    api::{self, MessageKind, TASK_QUEUE, workflow_id},
};
use serde_json::Value;
use std::{
    future::Future,
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use temporalio_client::{
    Client, WorkflowDescribeOptions, WorkflowExecutionStatus, WorkflowHandle, errors::WorkflowQueryError,
    tonic::Code,
};
use temporalio_common::HasWorkflowDefinition;

/// The workflow definition the messages and queries belong to.
type Run = <PromotionWorkflow as HasWorkflowDefinition>::Run;

/// Identity of this client in the Web UI and in Temporal's history.
pub const IDENTITY: &str = "promo-cli";

/// What a command produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// For people (tables), printed without `--json`.
    pub human: String,
    /// For machines, printed with `--json`.
    pub json: Value,
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<Output, CliError> {
    let timeout = Duration::from_secs(cli.timeout.max(1));
    match cli.command {
        Command::Start(a) => start::start(&a).await,
        Command::Status(a) => inspect::status(&connect().await?, &a.id, timeout).await,
        Command::Approve(a) => decide::decide(&a, true, timeout).await,
        Command::Reject(a) => decide::decide(&a, false, timeout).await,
        Command::RequestChanges(a) => decide::request_changes(&a, timeout).await,
        Command::ChooseRemediation(a) => decide::choose(&a, timeout).await,
        Command::Cancel(a) => decide::operate(&a, MessageKind::Cancel, timeout).await,
        Command::Pause(a) => decide::operate(&a, MessageKind::Pause, timeout).await,
        Command::Resume(a) => decide::operate(&a, MessageKind::Resume, timeout).await,
        Command::Override(a) => decide::override_gate(&a, timeout).await,
        Command::ResolveCompensation(a) => decide::resolve_compensation(&a, timeout).await,
        Command::List(a) => inspect::list(&connect().await?, &a).await,
        Command::Report(a) => inspect::report(&connect().await?, &a).await,
        Command::Audit(a) => inspect::audit(&connect().await?, &a, timeout).await,
        Command::Keygen(a) => decide::keygen(&a),
        Command::RevokeKey(a) => decide::revoke_key(&a, timeout).await,
        Command::Dashboard(a) => portfolio::dashboard(&a).await,
        Command::Ask(a) => portfolio::ask(&a, timeout).await,
        Command::Exceptions(a) => portfolio::exceptions(&a, timeout).await,
    }
}

/// Connects to Temporal from its environment configuration.
pub async fn connect() -> Result<Client, CliError> {
    api::connect(IDENTITY).await.map_err(|e| CliError::Temporal(e.to_string()))
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn handle(client: &Client, id: &str) -> WorkflowHandle<Client, PromotionWorkflow> {
    client.get_workflow_handle::<PromotionWorkflow>(workflow_id(id))
}

/// Proto3 JSON of a workflow message.
fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Waits at most `timeout` for the workflow to answer.
async fn bounded<T>(
    id: &str,
    what: &str,
    timeout: Duration,
    fut: impl Future<Output = Result<T, CliError>>,
) -> Result<T, CliError> {
    tokio::time::timeout(timeout, fut).await.map_err(|_| no_answer(id, what, timeout))?
}

/// The error when the workflow does not answer in time.
pub fn no_answer(id: &str, what: &str, timeout: Duration) -> CliError {
    let mut m = format!(
        "no answer to the {what} from workflow {} within {}s: is a promo-worker polling task queue \
         {TASK_QUEUE:?} in this namespace? Start one (cargo run -p promo-worker) or raise --timeout.",
        workflow_id(id),
        timeout.as_secs()
    );
    if what.ends_with("update") {
        m.push_str(&format!(
            " The update may still be applied when a worker picks it up: check `promo audit {id}` \
             before sending it again."
        ));
    }
    CliError::Timeout(m)
}

/// Why there is no (running) workflow for `id`: it never existed, or it has ended.
async fn explain_missing(client: &Client, id: &str) -> CliError {
    let wid = workflow_id(id);
    match handle(client, id).describe(WorkflowDescribeOptions::default()).await {
        Ok(d) if d.status() != WorkflowExecutionStatus::Running => CliError::NotFound(format!(
            "promotion {id} has ended (workflow {wid} is {}) and accepts no more messages; see \
             `promo report {id}` and `promo audit {id}`",
            execution_status(d.status())
        )),
        Ok(_) => CliError::NotFound(format!("workflow {wid} is running but was not reachable; try again")),
        Err(_) => not_found(id),
    }
}

/// The error for a promotion that has no workflow.
pub fn not_found(id: &str) -> CliError {
    CliError::NotFound(format!(
        "no promotion {id}: workflow {} does not exist in this namespace. `promo list` shows the \
         promotions (check TEMPORAL_NAMESPACE / TEMPORAL_ADDRESS if it should be there)",
        workflow_id(id)
    ))
}

fn rpc_error(what: &str, s: &temporalio_client::tonic::Status) -> CliError {
    CliError::Temporal(format!("Temporal refused the {what}: {} ({:?})", s.message(), s.code()))
}

fn query_error(id: &str, what: &str, timeout: Duration, e: WorkflowQueryError) -> CliError {
    match e {
        // Queries answer for ended workflows too: NotFound means there is none.
        WorkflowQueryError::NotFound(_) => not_found(id),
        WorkflowQueryError::Rpc(s) if s.code() == Code::DeadlineExceeded => no_answer(id, what, timeout),
        WorkflowQueryError::Rpc(s) => rpc_error(what, &s),
        other => CliError::Temporal(format!("{what} of workflow {}: {other}", workflow_id(id))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_answer_says_a_worker_is_needed() {
        let e = no_answer("X", "status query", Duration::from_secs(30)).to_string();
        assert!(
            e.starts_with(
                "no answer to the status query from workflow promotion-X within 30s: is a promo-worker"
            ),
            "{e}"
        );
    }
}
