//! How a stage ends the lifecycle early ([`Stop`]), and how the SDK's own terminations and
//! failures become one.

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
    /// Something unrecoverable: the reason, and the failure's type name when it has one
    /// (`InvalidSpec`); the run ends FAILED with them, after its compensation.
    Failed(String, Option<String>),
    /// The run must stop as it is: evicted from the cache, or cancelled through Temporal itself.
    Exit(WorkflowTermination),
}

impl From<WorkflowTermination> for Stop {
    fn from(t: WorkflowTermination) -> Self {
        match t {
            WorkflowTermination::Failed(e) => Stop::Failed(e.to_string(), None),
            other => Stop::Exit(other),
        }
    }
}

impl From<temporalio_sdk::WorkflowCancellationError> for Stop {
    fn from(_: temporalio_sdk::WorkflowCancellationError) -> Self {
        // Only Temporal's own cancellation cancels the run's waits.
        Stop::Exit(WorkflowTermination::cancelled())
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
