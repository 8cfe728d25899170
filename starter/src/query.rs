//! `promo list`: the visibility query built from the filters, and a row read back from each
//! execution's search attributes (the keys of `promo_workflows::api`).

use crate::{cli::ListArgs, error::CliError, render::ListRow};
use promo_contracts::promo::v1::Role;
use promo_workflows::{
    api::{
        self, LAUNCH_AT, OPEN_EXCEPTIONS, PENDING_APPROVALS, PROMOTION_ID, PROMOTION_REGIONS, PROMOTION_RISK,
        PROMOTION_STAGE,
    },
    decisions::{role_name, stage_name},
};
use temporalio_client::WorkflowExecutionStatus;
use temporalio_common::search_attributes::SearchAttributes;

/// Values go into the query between single quotes: only id-like values are accepted, so no
/// quoting rules of the visibility SQL dialect are needed.
fn literal(flag: &str, v: &str) -> Result<String, CliError> {
    let v = v.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        return Err(CliError::Usage(format!("{flag} {v:?}: use an id of letters, digits, '-', '_' or '.'")));
    }
    Ok(format!("'{v}'"))
}

/// The visibility query for the filters: `WorkflowType = 'PromotionWorkflow'` and one clause per
/// filter given.
pub fn list_query(a: &ListArgs) -> Result<String, CliError> {
    let mut clauses = vec![format!("WorkflowType = '{}'", api::WORKFLOW_TYPE)];
    if let Some(stage) = a.stage {
        clauses.push(format!("{} = '{}'", PROMOTION_STAGE.name(), stage_name(stage)));
    }
    if let Some(region) = &a.region {
        // On a KeywordList attribute `=` means "contains".
        clauses.push(format!("{} = {}", PROMOTION_REGIONS.name(), literal("--region", region)?));
    }
    if a.open_exceptions {
        clauses.push(format!("{} > 0", OPEN_EXCEPTIONS.name()));
    }
    if let Some(role) = a.pending {
        clauses.push(format!("{} = '{}'", PENDING_APPROVALS.name(), role_name(Role::from(role))));
    }
    if a.running {
        clauses.push("ExecutionStatus = 'Running'".into());
    }
    Ok(clauses.join(" AND "))
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

/// A list row from an execution's id, status and search attributes.
pub fn row(workflow_id: &str, status: WorkflowExecutionStatus, sa: &SearchAttributes) -> ListRow {
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

/// The hint for a query the server refuses because the search attributes are not registered.
pub fn registration_hint() -> String {
    let args: Vec<String> =
        api::SEARCH_ATTRIBUTES.iter().map(|(n, t)| format!("--name {n} --type {t}")).collect();
    format!(
        "the server may lack the promotion search attributes; register them with \
         `temporal operator search-attribute create {}` (or start the dev server with \
         --search-attribute Name=Type for each)",
        args.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use temporalio_common::search_attributes::Timestamp;

    fn args(a: &[&str]) -> ListArgs {
        let mut v = vec!["promo", "list"];
        v.extend_from_slice(a);
        match Cli::try_parse_from(v).unwrap().command {
            Command::List(l) => l,
            _ => unreachable!(),
        }
    }

    #[test]
    fn no_filter_lists_every_promotion() {
        assert_eq!(list_query(&args(&[])).unwrap(), "WorkflowType = 'PromotionWorkflow'");
    }

    #[test]
    fn every_filter_becomes_a_clause() {
        let q = list_query(&args(&[
            "--stage",
            "approval",
            "--region",
            "R3",
            "--open-exceptions",
            "--pending",
            "supply-chain",
            "--running",
        ]))
        .unwrap();
        assert_eq!(
            q,
            "WorkflowType = 'PromotionWorkflow' AND PromotionStage = 'APPROVAL' AND PromotionRegions = 'R3' \
             AND OpenExceptions > 0 AND PendingApprovals = 'SUPPLY_CHAIN' AND ExecutionStatus = 'Running'"
        );
    }

    #[test]
    fn quotes_cannot_reach_the_query() {
        let e = list_query(&args(&["--region", "R1' OR 1=1"])).unwrap_err().to_string();
        assert!(e.starts_with("--region \"R1' OR 1=1\": use an id"), "{e}");
    }

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
        let r = row("promotion-SPRING-26", WorkflowExecutionStatus::Running, &sa);
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
        let bare = row("promotion-X", WorkflowExecutionStatus::Failed, &SearchAttributes::default());
        assert_eq!((bare.promotion_id.as_str(), bare.stage), ("X", None));
    }
}
