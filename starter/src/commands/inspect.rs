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
use promo_activities::{Systems, SystemsTls};
use promo_contracts::{
    promo::v1::{AuditEntry, AuditTrail, Outcome, PromotionResult},
    retail::v1::{ListEventsRequest, ProcessEvent, ProcessEventKind},
};
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
    let tail = bounded(id, "audit query", timeout, async {
        match h.query(PromotionWorkflow::audit, (), WorkflowQueryOptions::default()).await {
            Ok(t) => Ok(t),
            Err(e) => Err(query_error(id, "audit query", timeout, e)),
        }
    })
    .await?;
    let t = if a.all || a.verify { whole_trail(a, tail, timeout).await? } else { tail };
    if a.verify {
        return verify_audit(id, &t, &a.policy);
    }
    let mut json = to_json(&t);
    json["missing"] = json!(missing(&t));
    Ok(Output { human: render::audit(id, &t), json })
}

/// Entries of the trail the record holds per page.
const PAGE: u32 = 1_000;

/// The whole trail: the workflow's tail, and the older entries paged backwards from the
/// process-event record (the chain's AUDIT events, by `seq`).
async fn whole_trail(a: &AuditArgs, mut tail: AuditTrail, timeout: Duration) -> Result<AuditTrail, CliError> {
    if tail.first_seq <= 1 {
        return Ok(tail);
    }
    let tls = SystemsTls::from_env().map_err(|e| CliError::Usage(e.to_string()))?;
    let systems = Systems::with_tls(&a.systems, tls.as_ref())
        .map_err(|e| CliError::Usage(format!("--systems: {e}")))?;
    let mut older: Vec<AuditEntry> = Vec::new();
    let mut before = tail.first_seq;
    while before > 1 {
        let req = ListEventsRequest {
            promotion_id: a.id.clone(),
            kinds: vec![ProcessEventKind::Audit as i32],
            limit: PAGE,
            before_seq: before,
            first_run_id: tail.first_run_id.clone(),
            ..Default::default()
        };
        let page = match tokio::time::timeout(timeout, systems.events().list_events(req)).await {
            Ok(Ok(r)) => r.into_inner().events,
            Ok(Err(e)) => {
                return Err(CliError::Temporal(format!(
                    "reading {}'s audit trail from the record at {}: {}",
                    a.id,
                    a.systems,
                    e.message()
                )));
            }
            Err(_) => {
                return Err(CliError::Temporal(format!(
                    "reading {}'s audit trail from the record at {}: no answer in {}s",
                    a.id,
                    a.systems,
                    timeout.as_secs()
                )));
            }
        };
        let Some(first) = page.first() else { break };
        before = first.seq;
        older.splice(0..0, page.into_iter().map(entry));
    }
    older.append(&mut tail.entries);
    tail.entries = older;
    tail.first_seq = tail.entries.first().map_or(tail.total_entries + 1, |e| e.seq);
    Ok(tail)
}

/// A process event of kind AUDIT as the entry it records.
fn entry(e: ProcessEvent) -> AuditEntry {
    AuditEntry {
        at: e.at,
        actor: e.actor,
        action: e.action,
        detail: e.detail,
        revision: e.revision,
        signature: e.signature,
        signed_payload: e.signed_payload,
        seq: e.seq,
        repeated: e.repeated,
    }
}

/// Ranges of entry numbers the listing lacks (not yet recorded: the record was down).
fn missing(t: &AuditTrail) -> Vec<(u64, u64)> {
    let mut gaps = Vec::new();
    let mut next = 1;
    for e in &t.entries {
        if e.seq > next {
            gaps.push((next, e.seq - 1));
        }
        next = next.max(e.seq + 1);
    }
    if t.entries.is_empty() && t.total_entries > 0 {
        gaps.push((1, t.total_entries));
    }
    gaps
}

/// `promo audit --verify`: every signed message of the whole trail re-verified against the
/// policy's public keys; an error naming each one that does not verify, or when entries of the
/// trail could not be read.
fn verify_audit(id: &str, t: &AuditTrail, policy_file: &std::path::Path) -> Result<Output, CliError> {
    let text = std::fs::read_to_string(policy_file)
        .map_err(|e| CliError::Usage(format!("--policy {}: {e}", policy_file.display())))?;
    let policy =
        promo_workflows::policy::Policy::from_toml(&text).map_err(|e| CliError::Usage(e.to_string()))?;
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for e in t.entries.iter().filter(|e| !e.signature.is_empty()) {
        let verdict = match policy.approver_keys.get(&e.actor) {
            None => Err(format!("no key for {} in {}", e.actor, policy_file.display())),
            Some(key) => match signing::verifies(key, &e.signed_payload, &e.signature) {
                Ok(true) => Ok(()),
                Ok(false) => Err("the signature does not verify against the key in the policy".to_owned()),
                Err(e) => Err(e.to_string()),
            },
        };
        match verdict {
            Ok(()) => good.push(format!("entry {}: {} r{} by {}", e.seq, e.action, e.revision, e.actor)),
            Err(why) => bad.push(format!("entry {}: {} by {}: {why}", e.seq, e.action, e.actor)),
        }
    }
    let gaps = missing(t);
    if !gaps.is_empty() {
        let list: Vec<String> =
            gaps.iter().map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect();
        bad.push(format!(
            "entries {} of {} are not in the record yet (it was unavailable): they cannot be verified",
            list.join(", "),
            t.total_entries
        ));
    }
    if !bad.is_empty() {
        return Err(CliError::Usage(format!(
            "{id}: {} signed messages do not verify:\n{}",
            bad.len(),
            bad.join("\n")
        )));
    }
    let unsigned = t
        .entries
        .iter()
        .filter(|e| e.signature.is_empty() && api::MessageKind::applied_action(&e.action))
        .count();
    Ok(Output {
        human: format!(
            "{id}: {} signed messages of {} audit entries verify against {}{}\n{}\n",
            good.len(),
            t.entries.len(),
            policy_file.display(),
            if unsigned > 0 { format!("; {unsigned} messages were applied unsigned") } else { String::new() },
            good.join("\n")
        ),
        json: json!({ "verified": good, "unsigned": unsigned, "entries": t.entries.len() }),
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
