//! The messages: approvals, rejections and change requests (signed with the approver's key when
//! one is given), remediation choices and operator actions, each sent as an update (answered at
//! once: accepted, or the workflow's reason for refusing) or, with `--signal`, as a signal; and
//! `promo keygen`, which makes an approver's key pair.

use super::{
    Output, Run, bounded, connect, explain_missing, handle, query_error, rpc_error, to_json, unix_now,
};
use crate::{
    cli::{ChangeArgs, DecisionArgs, KeygenArgs},
    error::CliError,
    messages, render, spec,
};
use promo_contracts::promo::v1::ActionResult;
use promo_workflows::{PromotionWorkflow, api::workflow_id, signing};
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
    def: U,
    message: impl serde::Serialize,
    timeout: Duration,
) -> Result<Output, CliError>
where
    U: UpdateDefinition<Workflow = Run, Input = serde_json::Value, Output = ActionResult>,
{
    let input = serde_json::to_value(message)
        .map_err(|e| CliError::Temporal(format!("{action} update: cannot encode the message: {e}")))?;
    let h = handle(client, id);
    let r = bounded(id, &format!("{action} update"), timeout, async {
        match h.execute_update(def, input, WorkflowExecuteUpdateOptions::default()).await {
            Ok(r) => Ok(r),
            Err(e) => Err(update_error(client, id, action, e).await),
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
    if let Some(key) = &a.key {
        d.revision = revision_to_sign(&c, &a.id, a.revision, timeout).await?;
        let what = if approve { "approve" } else { "reject" };
        (d.signature, d.signed_at) =
            messages::sign(key, &a.id, d.revision, d.role(), what, &d.comment, unix_now())?;
    }
    match (approve, a.delivery.signal) {
        (true, false) => update(&c, &a.id, "approve", PromotionWorkflow::approve, d, timeout).await,
        (true, true) => signal(&c, &a.id, "approve", PromotionWorkflow::approve_signal, d).await,
        (false, false) => update(&c, &a.id, "reject", PromotionWorkflow::reject, d, timeout).await,
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
    if let Some(key) = &a.key {
        m.revision = revision_to_sign(&c, &a.id, a.revision, timeout).await?;
        (m.signature, m.signed_at) =
            messages::sign(key, &a.id, m.revision, m.role(), "request_changes", &m.comment, unix_now())?;
    }
    if a.delivery.signal {
        signal(&c, &a.id, "request-changes", PromotionWorkflow::request_changes_signal, m).await
    } else {
        update(&c, &a.id, "request-changes", PromotionWorkflow::request_changes, m, timeout).await
    }
}

/// The revision a signed decision names: the one given, or the promotion's current one.
async fn revision_to_sign(
    c: &Client,
    id: &str,
    given: Option<u32>,
    timeout: Duration,
) -> Result<u32, CliError> {
    if let Some(r) = given {
        return Ok(r);
    }
    let h = handle(c, id);
    let s = bounded(id, "status query", timeout, async {
        h.query(PromotionWorkflow::status, (), WorkflowQueryOptions::default())
            .await
            .map_err(|e| query_error(id, "status query", timeout, e))
    })
    .await?;
    Ok(s.revision)
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
