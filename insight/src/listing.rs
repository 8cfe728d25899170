//! A promotion as Temporal visibility lists it: a row read back from the execution's search
//! attributes (the keys of `promo_workflows::api`). `promo list` prints these rows; the
//! snapshot holds one per promotion.

use promo_workflows::api::{
    LAUNCH_AT, OPEN_EXCEPTIONS, PENDING_APPROVALS, PROMOTION_ID, PROMOTION_REGIONS, PROMOTION_RISK,
    PROMOTION_STAGE,
};
use serde::Serialize;
use temporalio_client::WorkflowExecutionStatus;
use temporalio_common::search_attributes::SearchAttributes;

/// One promotion as visibility lists it, read from its search attributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListRow {
    /// Promotion id.
    pub promotion_id: String,
    /// Workflow id.
    pub workflow_id: String,
    /// Temporal execution status, e.g. `running`, `completed`.
    pub execution_status: String,
    /// `PromotionStage`.
    pub stage: Option<String>,
    /// `PromotionRisk`.
    pub risk: Option<String>,
    /// `OpenExceptions`.
    pub open_exceptions: Option<i64>,
    /// `LaunchAt`, Unix seconds.
    pub launch_at: Option<i64>,
    /// `PendingApprovals`.
    pub pending_approvals: Vec<String>,
    /// `PromotionRegions`.
    pub regions: Vec<String>,
}

/// A Temporal execution status in lower case (`running`, `completed`, `timed-out`).
pub fn execution_status(s: WorkflowExecutionStatus) -> &'static str {
    match s {
        WorkflowExecutionStatus::Running => "running",
        WorkflowExecutionStatus::Completed => "completed",
        WorkflowExecutionStatus::Failed => "failed",
        WorkflowExecutionStatus::Canceled => "canceled",
        WorkflowExecutionStatus::Terminated => "terminated",
        WorkflowExecutionStatus::ContinuedAsNew => "continued-as-new",
        WorkflowExecutionStatus::TimedOut => "timed-out",
        WorkflowExecutionStatus::Paused => "paused",
        _ => "unknown",
    }
}

/// The row of an execution, from its workflow id, status and search attributes.
pub fn list_row(workflow_id: &str, status: WorkflowExecutionStatus, sa: &SearchAttributes) -> ListRow {
    // A promotion that failed before its first upsert has no attributes: its id is in the
    // workflow id.
    let promotion_id = sa
        .get(&PROMOTION_ID)
        .unwrap_or_else(|| workflow_id.strip_prefix("promotion-").unwrap_or(workflow_id).to_owned());
    ListRow {
        promotion_id,
        workflow_id: workflow_id.to_owned(),
        execution_status: execution_status(status).to_owned(),
        stage: sa.get(&PROMOTION_STAGE),
        risk: sa.get(&PROMOTION_RISK),
        open_exceptions: sa.get(&OPEN_EXCEPTIONS),
        launch_at: sa.get(&LAUNCH_AT).map(|t| t.seconds()),
        pending_approvals: sa.get(&PENDING_APPROVALS).unwrap_or_default(),
        regions: sa.get(&PROMOTION_REGIONS).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use temporalio_common::search_attributes::Timestamp;

    #[test]
    fn rows_read_the_search_attributes() {
        let sa = SearchAttributes::new([
            PROMOTION_ID.value_set("SPRING-26".to_owned()),
            PROMOTION_STAGE.value_set("APPROVAL".to_owned()),
            PROMOTION_RISK.value_set("high".to_owned()),
            OPEN_EXCEPTIONS.value_set(2),
            PENDING_APPROVALS.value_set(vec!["FINANCE".to_owned()]),
            PROMOTION_REGIONS.value_set(vec!["R1".to_owned(), "R3".to_owned()]),
            LAUNCH_AT.value_set(Timestamp::new(1_900_000_000, 0)),
        ]);
        let r = list_row("promotion-SPRING-26", WorkflowExecutionStatus::Running, &sa);
        assert_eq!(
            r,
            ListRow {
                promotion_id: "SPRING-26".into(),
                workflow_id: "promotion-SPRING-26".into(),
                execution_status: "running".into(),
                stage: Some("APPROVAL".into()),
                risk: Some("high".into()),
                open_exceptions: Some(2),
                launch_at: Some(1_900_000_000),
                pending_approvals: vec!["FINANCE".into()],
                regions: vec!["R1".into(), "R3".into()],
            }
        );
        // A promotion that failed before its first upsert still lists, by workflow id.
        let bare = list_row("promotion-X", WorkflowExecutionStatus::Failed, &SearchAttributes::default());
        assert_eq!((bare.promotion_id.as_str(), bare.stage), ("X", None));
    }
}
