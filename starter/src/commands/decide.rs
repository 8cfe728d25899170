//! The messages: approvals, rejections, change requests, remediation choices, operator actions
//! and compensation decisions — each signed with the sender's key when one is given (the signed
//! text names the promotion's run chain, the message, its subject and revision, read from the
//! promotion's `status`) — sent as an update (answered at once: accepted, or the workflow's
//! reason for refusing) or, with `--signal`, as a signal; and `promo keygen`, which makes a key
//! pair.

use super::{
    Output, Run, bounded, connect, explain_missing, handle, query_error, rpc_error, to_json, unix_now,
};
use crate::{
    cli::{
        ChangeArgs, CompensationArgs, DecisionArgs, KeygenArgs, OperatorArgs, OverrideArgs, RemediationArgs,
        RevokeKeyArgs,
    },
    error::CliError,
    messages, render, spec,
};
use promo_activities::{Systems, SystemsTls};
use promo_contracts::{
    promo::v1::{ActionResult, PromotionStatus, Role},
    retail::v1::RevokeKeyRequest,
};
use promo_workflows::{
    PromotionWorkflow,
    api::{MessageKind, workflow_id},
    signing::{self, Subject},
};
use serde_json::json;
use std::time::Duration;
use temporalio_client::{
    Client, WorkflowExecuteUpdateOptions, WorkflowQueryOptions, WorkflowSignalOptions,
    errors::{WorkflowInteractionError, WorkflowUpdateError},
    tonic::Code,
};
use temporalio_common::{SignalDefinition, UpdateDefinition};

/// Sends `message` (as its proto3 JSON: the workflow's updates take raw JSON and validate it)
/// and renders the workflow's answer; a refusal is an error with its reason.
pub(super) async fn update<U>(
    client: &Client,
    id: &str,
    action: &str,
    def: impl Fn() -> U,
    message: impl serde::Serialize,
    timeout: Duration,
) -> Result<Output, CliError>
where
    U: UpdateDefinition<Workflow = Run, Input = serde_json::Value, Output = ActionResult>,
{
    let input = serde_json::to_value(message)
        .map_err(|e| CliError::Temporal(format!("{action} update: cannot encode the message: {e}")))?;
    let h = handle(client, id);
    // One update id for every try: the server applies an update once however often it is sent.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let update_id = format!("promo-{action}-{}", nanos.as_nanos());
    let r = bounded(id, &format!("{action} update"), timeout, async {
        let mut tries = 0;
        loop {
            let o = WorkflowExecuteUpdateOptions::builder().update_id(update_id.clone()).build();
            match h.execute_update(def(), input.clone(), o).await {
                Ok(r) => return Ok(r),
                // A server under load can lose an update it had not yet handed to the workflow
                // (NotFound, "fixed by retries"): sent again under the same id.
                Err(WorkflowUpdateError::NotFound(_)) if tries < 3 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(update_error(client, id, action, e).await),
            }
        }
    })
    .await?;
    let mut json = to_json(&r);
    json["promotionId"] = json!(id);
    json["action"] = json!(action);
    Ok(Output { human: render::action_result(action, id, &r), json })
}

/// Maps an update error: the workflow's refusal carries its reason.
pub fn update_refusal(action: &str, e: &WorkflowUpdateError) -> Option<CliError> {
    match e {
        WorkflowUpdateError::Failed(f) => {
            Some(CliError::Refused { action: action.to_owned(), reason: f.message.clone() })
        }
        _ => None,
    }
}

async fn update_error(client: &Client, id: &str, action: &str, e: WorkflowUpdateError) -> CliError {
    if let Some(refused) = update_refusal(action, &e) {
        return refused;
    }
    match e {
        WorkflowUpdateError::NotFound(_) => explain_missing(client, id).await,
        WorkflowUpdateError::Rpc(s) if s.code() == Code::NotFound => explain_missing(client, id).await,
        WorkflowUpdateError::Rpc(s) => rpc_error(&format!("{action} update"), &s),
        other => CliError::Temporal(format!("{action} update of workflow {}: {other}", workflow_id(id))),
    }
}

/// Sends `message` as the signal `def`. The workflow's signals take raw JSON (so a malformed
/// signal is audited and ignored rather than failing the workflow task); this sends the
/// message's proto3 JSON.
pub(super) async fn signal<S>(
    client: &Client,
    id: &str,
    action: &str,
    def: S,
    message: impl serde::Serialize,
) -> Result<Output, CliError>
where
    S: SignalDefinition<Workflow = Run, Input = serde_json::Value>,
{
    let input = serde_json::to_value(message)
        .map_err(|e| CliError::Temporal(format!("{action} signal: cannot encode the message: {e}")))?;
    match handle(client, id).signal(def, input, WorkflowSignalOptions::default()).await {
        Ok(()) => Ok(Output {
            human: render::signal_sent(action, id),
            json: json!({ "promotionId": id, "action": action, "signal": true, "sent": true }),
        }),
        Err(WorkflowInteractionError::NotFound(_)) => Err(explain_missing(client, id).await),
        Err(WorkflowInteractionError::Rpc(s)) => Err(rpc_error(&format!("{action} signal"), &s)),
        Err(other) => Err(CliError::Temporal(format!("{action} signal to {}: {other}", workflow_id(id)))),
    }
}

pub(super) async fn decide(a: &DecisionArgs, approve: bool, timeout: Duration) -> Result<Output, CliError> {
    let mut d = messages::decision(a)?;
    let c = connect().await?;
    if let Some(key) = &a.delivery.key {
        let kind = if approve { MessageKind::Approve } else { MessageKind::Reject };
        let s = status(&c, &a.id, timeout).await?;
        d.revision = a.revision.unwrap_or(s.revision);
        // What the promotion would apply the decision to now (the approval, transfers awaiting
        // supply chain, a funding hold), as it says in its status.
        let subject =
            s.decision_subjects.get(d.role().as_str_name()).cloned().unwrap_or_else(|| "approval".into());
        let role = d.role();
        (d.signature, d.signed_at) =
            sign(key, &s, kind, &subject, d.revision, &d.approver_id, Some(role), &d.comment)?;
    }
    match (approve, a.delivery.signal) {
        (true, false) => update(&c, &a.id, "approve", || PromotionWorkflow::approve, d, timeout).await,
        (true, true) => signal(&c, &a.id, "approve", PromotionWorkflow::approve_signal, d).await,
        (false, false) => update(&c, &a.id, "reject", || PromotionWorkflow::reject, d, timeout).await,
        (false, true) => signal(&c, &a.id, "reject", PromotionWorkflow::reject_signal, d).await,
    }
}

pub(super) async fn request_changes(a: &ChangeArgs, timeout: Duration) -> Result<Output, CliError> {
    let file = a.spec.display().to_string();
    let amended = spec::read_spec_file(&a.spec)?;
    let mut m = messages::change_request(a, amended)?;
    if let Some(s) = &m.amended_spec {
        spec::check_locally(&file, s, unix_now(), &format!("fix {file} and send the change request again"))?;
    }
    let c = connect().await?;
    if let Some(key) = &a.delivery.key {
        let s = status(&c, &a.id, timeout).await?;
        m.revision = a.revision.unwrap_or(s.revision);
        let subject = signing::subject(&Subject::Approval);
        let role = m.role();
        (m.signature, m.signed_at) = sign(
            key,
            &s,
            MessageKind::RequestChanges,
            &subject,
            m.revision,
            &m.approver_id,
            Some(role),
            &m.comment,
        )?;
    }
    if a.delivery.signal {
        signal(&c, &a.id, "request-changes", PromotionWorkflow::request_changes_signal, m).await
    } else {
        update(&c, &a.id, "request-changes", || PromotionWorkflow::request_changes, m, timeout).await
    }
}

/// The promotion's status: what a signed message names (its run chain, revision, subjects).
async fn status(c: &Client, id: &str, timeout: Duration) -> Result<PromotionStatus, CliError> {
    let h = handle(c, id);
    bounded(id, "status query", timeout, async {
        h.query(PromotionWorkflow::status, (), WorkflowQueryOptions::default())
            .await
            .map_err(|e| query_error(id, "status query", timeout, e))
    })
    .await
}

/// Signs `kind` on `subject` of `revision` for the promotion `s`: (signature, signed at).
#[allow(clippy::too_many_arguments)]
fn sign(
    key: &std::path::Path,
    s: &PromotionStatus,
    kind: MessageKind,
    subject: &str,
    revision: u32,
    actor: &str,
    role: Option<Role>,
    comment: &str,
) -> Result<(String, i64), CliError> {
    let workflow_id = workflow_id(&s.promotion_id);
    let signed_at = unix_now();
    let signed = signing::Signed {
        workflow_id: &workflow_id,
        first_run_id: &s.first_run_id,
        message: kind.name(),
        subject,
        revision,
        actor,
        role: role.map_or("-", |r| r.as_str_name()),
        comment,
        signed_at,
    };
    Ok((messages::sign(key, &signed)?, signed_at))
}

/// `promo choose-remediation`.
pub(super) async fn choose(a: &RemediationArgs, timeout: Duration) -> Result<Output, CliError> {
    let mut m = messages::remediation_choice(a)?;
    let c = connect().await?;
    if let Some(key) = &a.delivery.key {
        let s = status(&c, &a.id, timeout).await?;
        let subject = signing::subject(&Subject::Remediation { region: &m.region_id, option: &m.option_id });
        (m.signature, m.signed_at) = sign(
            key,
            &s,
            MessageKind::ChooseRemediation,
            &subject,
            s.revision,
            &m.chosen_by,
            None,
            &m.comment,
        )?;
    }
    if a.delivery.signal {
        signal(&c, &a.id, "choose-remediation", PromotionWorkflow::choose_remediation_signal, m).await
    } else {
        update(&c, &a.id, "choose-remediation", || PromotionWorkflow::choose_remediation, m, timeout).await
    }
}

/// `promo cancel`, `pause`, `resume`.
pub(super) async fn operate(
    a: &OperatorArgs,
    kind: MessageKind,
    timeout: Duration,
) -> Result<Output, CliError> {
    let mut m = messages::operator_action(a)?;
    let c = connect().await?;
    if let Some(key) = &a.delivery.key {
        let s = status(&c, &a.id, timeout).await?;
        let subject = signing::subject(&Subject::Promotion);
        (m.signature, m.signed_at) =
            sign(key, &s, kind, &subject, s.revision, &m.operator_id, None, &m.reason)?;
    }
    let action = kind.name();
    match (kind, a.delivery.signal) {
        (MessageKind::Cancel, true) => signal(&c, &a.id, action, PromotionWorkflow::cancel_signal, m).await,
        (MessageKind::Cancel, false) => {
            update(&c, &a.id, action, || PromotionWorkflow::cancel, m, timeout).await
        }
        (MessageKind::Pause, true) => signal(&c, &a.id, action, PromotionWorkflow::pause_signal, m).await,
        (MessageKind::Pause, false) => {
            update(&c, &a.id, action, || PromotionWorkflow::pause, m, timeout).await
        }
        (_, true) => signal(&c, &a.id, action, PromotionWorkflow::resume_signal, m).await,
        (_, false) => update(&c, &a.id, action, || PromotionWorkflow::resume, m, timeout).await,
    }
}

/// `promo override`.
pub(super) async fn override_gate(a: &OverrideArgs, timeout: Duration) -> Result<Output, CliError> {
    let mut m = messages::gate_override(a)?;
    let c = connect().await?;
    if let Some(key) = &a.delivery.key {
        let s = status(&c, &a.id, timeout).await?;
        let subject = signing::subject(&Subject::Override(&m.region_id));
        (m.signature, m.signed_at) =
            sign(key, &s, MessageKind::Override, &subject, s.revision, &m.operator_id, None, &m.reason)?;
    }
    if a.delivery.signal {
        signal(&c, &a.id, "override", PromotionWorkflow::override_signal, m).await
    } else {
        update(&c, &a.id, "override", || PromotionWorkflow::override_gate, m, timeout).await
    }
}

/// `promo resolve-compensation`.
pub(super) async fn resolve_compensation(
    a: &CompensationArgs,
    timeout: Duration,
) -> Result<Output, CliError> {
    let mut m = messages::compensation_decision(a)?;
    let c = connect().await?;
    if let Some(key) = &a.delivery.key {
        let s = status(&c, &a.id, timeout).await?;
        let subject = signing::subject(&Subject::Compensation(if a.accept { "accept" } else { "retry" }));
        (m.signature, m.signed_at) = sign(
            key,
            &s,
            MessageKind::ResolveCompensation,
            &subject,
            s.revision,
            &m.operator_id,
            None,
            &m.reason,
        )?;
    }
    if a.delivery.signal {
        signal(&c, &a.id, "resolve-compensation", PromotionWorkflow::resolve_compensation_signal, m).await
    } else {
        update(&c, &a.id, "resolve-compensation", || PromotionWorkflow::resolve_compensation, m, timeout)
            .await
    }
}

/// `promo keygen`.
pub(super) fn keygen(a: &KeygenArgs) -> Result<Output, CliError> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| CliError::Usage(format!("no randomness for a key: {e}")))?;
    let (secret, public) = signing::keypair_from_seed(seed);
    let mut f = std::fs::OpenOptions::new();
    f.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut f, 0o600);
    let mut file = f.open(&a.out).map_err(|e| CliError::Usage(format!("--out {}: {e}", a.out.display())))?;
    std::io::Write::write_all(&mut file, format!("{secret}\n").as_bytes())
        .map_err(|e| CliError::Usage(format!("--out {}: {e}", a.out.display())))?;
    let line = format!("{} = \"{public}\"", a.approver);
    Ok(Output {
        human: format!(
            "secret key written to {} (keep it to yourself)\nadd to the policy's [approver_keys]:\n{line}\n",
            a.out.display()
        ),
        json: json!({ "approver": a.approver, "public_key": public, "secret_key_file": a.out }),
    })
}

/// `promo revoke-key`: the directory's answer is the revocation's time (the first one, for a key
/// already revoked).
pub(super) async fn revoke_key(a: &RevokeKeyArgs, timeout: Duration) -> Result<Output, CliError> {
    let employee = messages::required("--for", &a.employee)?;
    let reason = messages::required("--reason", &a.reason)?;
    let public_key = match &a.public_key {
        Some(k) => {
            signing::public_key(k).map_err(|e| CliError::Usage(format!("--public-key: {e}")))?;
            k.trim().to_owned()
        }
        None => String::new(),
    };
    let tls = SystemsTls::from_env().map_err(|e| CliError::Usage(e.to_string()))?;
    let systems = Systems::with_tls(&a.systems, tls.as_ref())
        .map_err(|e| CliError::Usage(format!("--systems: {e}")))?;
    let req = RevokeKeyRequest { employee_id: employee.clone(), public_key: public_key.clone(), reason };
    let r = match tokio::time::timeout(timeout, systems.directory().revoke_key(req)).await {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(e)) => {
            return Err(CliError::Temporal(format!(
                "revoking at the key directory {}: {}",
                a.systems,
                e.message()
            )));
        }
        Err(_) => {
            return Err(CliError::Temporal(format!(
                "revoking at the key directory {}: no answer in {}s",
                a.systems,
                timeout.as_secs()
            )));
        }
    };
    let since = r.revoked_at.map_or(0, |t| t.seconds);
    let which = if public_key.is_empty() { "every key".to_owned() } else { format!("key {public_key}") };
    Ok(Output {
        human: format!(
            "{which} of {employee} revoked from {}: running promotions refuse messages signed with it\n\
             remove its line from the policy's [approver_keys] too, so that new promotions do not trust it\n",
            render::unix_time(since)
        ),
        json: json!({ "employee": employee, "publicKey": public_key, "revokedAt": since }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use temporalio_client::tonic::Status;

    #[test]
    fn a_refused_update_carries_the_workflow_reason() {
        use temporalio_common::protos::temporal::api::failure::v1::Failure;
        let f = Failure {
            message: "approver \"E9\" is not in the approver directory".into(),
            ..Default::default()
        };
        let e = update_refusal("approve", &WorkflowUpdateError::Failed(Box::new(f))).unwrap();
        assert_eq!(e.to_string(), "approve refused: approver \"E9\" is not in the approver directory");
        assert_eq!(e.to_json()["error"]["reason"], "approver \"E9\" is not in the approver directory");
        assert!(update_refusal("approve", &WorkflowUpdateError::Rpc(Status::unavailable("down"))).is_none());
    }
}
