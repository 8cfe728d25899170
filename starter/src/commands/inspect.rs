//! Reading promotions: `status` and `audit` (queries, bounded by `--timeout`; `audit --verify`
//! re-verifies the signed decisions), `list` (a visibility query) and `report` (the workflow's
//! result, waited for unless `--no-wait`).

use super::{Output, bounded, handle, not_found, query_error, to_json};
use crate::{
    cli::{AuditArgs, ListArgs, ReportArgs},
    error::CliError,
    query, render,
};
use futures::StreamExt;
use promo_contracts::promo::v1::{AuditTrail, Outcome, PromotionResult};
use promo_insight::list_row;
use promo_workflows::{
    PromotionWorkflow,
    api::{self, workflow_id},
    signing,
};
use serde_json::json;
use std::time::Duration;
use temporalio_client::{
    Client, WorkflowDescribeOptions, WorkflowExecutionStatus, WorkflowGetResultOptions, WorkflowListOptions,
    WorkflowQueryOptions,
    errors::{WorkflowGetResultError, WorkflowInteractionError},
};

pub(super) async fn status(client: &Client, id: &str, timeout: Duration) -> Result<Output, CliError> {
    let h = handle(client, id);
    let s = bounded(id, "status query", timeout, async {
        match h.query(PromotionWorkflow::status, (), WorkflowQueryOptions::default()).await {
            Ok(s) => Ok(s),
            Err(e) => Err(query_error(id, "status query", timeout, e)),
        }
    })
    .await?;
    Ok(Output { human: render::status(&s), json: to_json(&s) })
}

pub(super) async fn audit(client: &Client, a: &AuditArgs, timeout: Duration) -> Result<Output, CliError> {
    let id = a.id.as_str();
    let h = handle(client, id);
    let t = bounded(id, "audit query", timeout, async {
        match h.query(PromotionWorkflow::audit, (), WorkflowQueryOptions::default()).await {
            Ok(t) => Ok(t),
            Err(e) => Err(query_error(id, "audit query", timeout, e)),
        }
    })
    .await?;
    if a.verify {
        return verify_audit(id, &t, &a.policy);
    }
    Ok(Output { human: render::audit(id, &t), json: to_json(&t) })
}

/// `promo audit --verify`: every signed decision re-verified against the policy's public keys;
/// an error naming each one that does not verify.
fn verify_audit(id: &str, t: &AuditTrail, policy_file: &std::path::Path) -> Result<Output, CliError> {
    let text = std::fs::read_to_string(policy_file)
        .map_err(|e| CliError::Usage(format!("--policy {}: {e}", policy_file.display())))?;
    let policy =
        promo_workflows::policy::Policy::from_toml(&text).map_err(|e| CliError::Usage(e.to_string()))?;
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for (i, e) in t.entries.iter().enumerate().filter(|(_, e)| !e.signature.is_empty()) {
        let verdict = match policy.approver_keys.get(&e.actor) {
            None => Err(format!("no key for {} in {}", e.actor, policy_file.display())),
            Some(key) => signing::verify(key, &e.signed_payload, &e.signature).map_err(|e| e.to_string()),
        };
        match verdict {
            Ok(()) => good.push(format!("entry {i}: {} {} by {}", e.action, e.revision, e.actor)),
            Err(why) => bad.push(format!("entry {i}: {} by {}: {why}", e.action, e.actor)),
        }
    }
    if !bad.is_empty() {
        return Err(CliError::Usage(format!(
            "{id}: {} signed decisions do not verify:\n{}",
            bad.len(),
            bad.join("\n")
        )));
    }
    let unsigned = t.entries.iter().filter(|e| {
        e.signature.is_empty() && matches!(e.action.as_str(), "approve" | "reject" | "request-changes")
    });
    let unsigned = unsigned.count();
    Ok(Output {
        human: format!(
            "{id}: {} signed decisions verify against {}{}\n{}\n",
            good.len(),
            policy_file.display(),
            if unsigned > 0 { format!("; {unsigned} decisions were unsigned") } else { String::new() },
            good.join("\n")
        ),
        json: json!({ "verified": good, "unsigned": unsigned }),
    })
}

pub(super) async fn list(client: &Client, a: &ListArgs) -> Result<Output, CliError> {
    let q = query::list_query(a)?;
    let opts = WorkflowListOptions::builder().limit(a.limit).build();
    let mut stream = client.list_workflows(q.clone(), opts);
    let mut rows = Vec::new();
    while let Some(w) = stream.next().await {
        let w = w.map_err(|e| {
            let text = e.to_string();
            let hint =
                if text.contains("not defined") || text.contains("invalid query") || text.contains("unknown")
                {
                    format!("; {}", query::registration_hint())
                } else {
                    String::new()
                };
            CliError::Temporal(format!("listing promotions with `{q}` failed: {text}{hint}"))
        })?;
        rows.push(list_row(w.id(), w.status(), &w.search_attributes()));
    }
    // Soonest launch first; then by id.
    rows.sort_by(|x, y| {
        (x.launch_at.unwrap_or(i64::MAX), &x.promotion_id)
            .cmp(&(y.launch_at.unwrap_or(i64::MAX), &y.promotion_id))
    });
    Ok(Output { human: render::list(&q, &rows, a.limit), json: json!({ "query": q, "promotions": rows }) })
}

/// The report of a workflow that ended without a `PromotionResult` (failed, terminated, …).
pub fn result_from_error(id: &str, e: &WorkflowGetResultError) -> Option<PromotionResult> {
    let reason = match e {
        WorkflowGetResultError::Failed(f) => f.failure().message.clone(),
        WorkflowGetResultError::Cancelled { .. } => {
            "the workflow was cancelled through Temporal (not `promo cancel`)".to_owned()
        }
        WorkflowGetResultError::Terminated { .. } => {
            "the workflow was terminated through Temporal".to_owned()
        }
        WorkflowGetResultError::TimedOut => "the workflow timed out".to_owned(),
        _ => return None,
    };
    let outcome = match e {
        WorkflowGetResultError::Cancelled { .. } => Outcome::Cancelled,
        _ => Outcome::Failed,
    };
    Some(PromotionResult {
        promotion_id: id.to_owned(),
        outcome: outcome as i32,
        reason,
        revision: 0,
        report: None,
    })
}

pub(super) async fn report(client: &Client, a: &ReportArgs) -> Result<Output, CliError> {
    let id = &a.id;
    let h = handle(client, id);
    let d = match h.describe(WorkflowDescribeOptions::default()).await {
        Ok(d) => d,
        Err(WorkflowInteractionError::NotFound(_)) => return Err(not_found(id)),
        Err(e) => return Err(CliError::Temporal(format!("describing {}: {e}", workflow_id(id)))),
    };
    if d.status() == WorkflowExecutionStatus::Running {
        let stage = d.search_attributes().get(&api::PROMOTION_STAGE).unwrap_or_else(|| "INTAKE".into());
        if a.no_wait {
            return Err(CliError::NotFound(format!(
                "promotion {id} is still running (stage {stage}); its report comes when it ends: run \
                 `promo report {id}` without --no-wait to wait, or `promo status {id}`"
            )));
        }
        eprintln!("promotion {id} is still running (stage {stage}); waiting for it to end (ctrl-c to stop)…");
    }
    let result = match h.get_result(WorkflowGetResultOptions::default()).await {
        Ok(r) => r,
        Err(WorkflowGetResultError::NotFound(_)) => return Err(not_found(id)),
        Err(e) => match result_from_error(id, &e) {
            Some(r) => r,
            None => return Err(CliError::Temporal(format!("result of {}: {e}", workflow_id(id)))),
        },
    };
    Ok(Output { human: render::report(&result), json: to_json(&result) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workflow_that_failed_reports_outcome_failed_with_the_reason() {
        let e = WorkflowGetResultError::TimedOut;
        let r = result_from_error("X", &e).unwrap();
        assert_eq!((r.outcome(), r.reason.as_str()), (Outcome::Failed, "the workflow timed out"));
        assert!(result_from_error("X", &WorkflowGetResultError::ContinuedAsNew).is_none());
    }
}
