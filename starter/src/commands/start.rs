//! `promo start`: the spec file checked locally (size, JSON, the workflow's own validation), then
//! against the retail systems' master data and running promotions when they answer, then the
//! workflow started with the contract's options.

use super::{Output, connect, handle, rpc_error, unix_now};
use crate::{cli::StartArgs, error::CliError, render::table::fields, spec};
use promo_activities::{Systems, SystemsTls, intake};
use promo_contracts::retail::v1::ListLocationsRequest;
use promo_insight::execution_status;
use promo_workflows::{
    PromotionWorkflow,
    api::{CalendarCheck, IntakeInput, RegionInfo, TASK_QUEUE, workflow_id},
    decisions::plural,
    plan::Problem,
};
use serde_json::json;
use std::time::Duration;
use temporalio_client::{WorkflowDescribeOptions, WorkflowExecutionStatus, errors::WorkflowStartError};
use temporalio_common::ActivityError;

/// How long the reachability probe of the retail systems may take.
const SYSTEMS_PROBE: Duration = Duration::from_secs(5);
/// How long the master-data and collision checks may take.
const SYSTEMS_CHECK: Duration = Duration::from_secs(60);

/// How the master-data and collision checks went.
#[derive(Debug, Clone, PartialEq)]
pub enum SystemsCheck {
    /// Passed; the regions the promotion touches.
    Passed(Vec<RegionInfo>),
    /// Problems found.
    Problems(Vec<Problem>),
    /// Not run: the systems were unreachable (or the check failed) for this reason.
    Skipped(String),
}

/// Master data + collisions (the promotion calendar, asked without reserving) through the intake
/// activity's own code, when the systems answer.
pub async fn systems_check(
    url: &str,
    spec: &promo_contracts::promo::v1::PromotionSpec,
    now: i64,
) -> Result<SystemsCheck, CliError> {
    let tls = SystemsTls::from_env().map_err(|e| CliError::Usage(e.to_string()))?;
    let systems =
        Systems::with_tls(url, tls.as_ref()).map_err(|e| CliError::Usage(format!("--systems: {e}")))?;
    let mut locations = systems.locations();
    match tokio::time::timeout(SYSTEMS_PROBE, locations.list_locations(ListLocationsRequest {})).await {
        Err(_) => return Ok(SystemsCheck::Skipped(format!("no answer within {}s", SYSTEMS_PROBE.as_secs()))),
        Ok(Err(s)) => return Ok(SystemsCheck::Skipped(format!("{} ({:?})", s.message(), s.code()))),
        Ok(Ok(_)) => {}
    }
    // The CLI does not know the worker's policy, so it leaves the approval lead time to the
    // workflow's own intake.
    // An early look at the calendar; the promotion's own intake reserves (atomically).
    let input =
        IntakeInput { spec: spec.clone(), now, approval_lead_secs: 0, calendar: CalendarCheck::DryRun };
    match tokio::time::timeout(SYSTEMS_CHECK, intake::validate(&systems, &input)).await {
        Err(_) => Ok(SystemsCheck::Skipped(format!("the check took over {}s", SYSTEMS_CHECK.as_secs()))),
        Ok(Err(e)) => Ok(SystemsCheck::Skipped(activity_error(&e))),
        Ok(Ok(out)) if !out.problems.is_empty() => Ok(SystemsCheck::Problems(out.problems)),
        Ok(Ok(out)) => Ok(SystemsCheck::Passed(out.regions)),
    }
}

fn activity_error(e: &ActivityError) -> String {
    match e {
        ActivityError::Application(a) => a.to_string(),
        other => format!("{other:?}"),
    }
}

/// Maps a start error; `existing` is the status of the execution holding the id, if known.
pub fn start_error(
    promotion_id: &str,
    e: WorkflowStartError,
    existing: Option<WorkflowExecutionStatus>,
) -> CliError {
    match e {
        WorkflowStartError::AlreadyStarted { .. } => CliError::AlreadyExists {
            promotion_id: promotion_id.to_owned(),
            workflow_id: workflow_id(promotion_id),
            state: match existing {
                Some(WorkflowExecutionStatus::Running) | None => "is running".to_owned(),
                Some(s) => format!("has ended: {}", execution_status(s)),
            },
        },
        WorkflowStartError::Rpc(s) => rpc_error("start", &s),
        other => CliError::Temporal(format!("starting {}: {other}", workflow_id(promotion_id))),
    }
}

pub(super) async fn start(a: &StartArgs) -> Result<Output, CliError> {
    let file = a.spec.display().to_string();
    let spec = spec::read_spec_file(&a.spec)?;
    let now = unix_now();
    let hint = format!("fix {file} and run `promo start {file}` again");
    let plan = spec::check_locally(&file, &spec, now, &hint)?;
    let id = spec.promotion_id.clone();
    let mut scope = vec![plural(plan.lines.len(), "line")];
    if !plan.regions.is_empty() {
        scope.push(plural(plan.regions.len(), "region"));
    }
    if !plan.stores.is_empty() {
        scope.push(plural(plan.stores.len(), "individual store"));
    }
    let mut human = format!("{file}: promotion {id}, {}: checked locally, OK\n", scope.join(", "));

    // Starting needs Temporal; a dry run validates without it.
    let client = match connect().await {
        Ok(c) => Some(c),
        Err(e) if a.dry_run => {
            human.push_str(&format!("Temporal not reachable ({e}); a dry run starts nothing anyway\n"));
            None
        }
        Err(e) => return Err(e),
    };
    let check = systems_check(&a.systems, &spec, now).await?;
    let systems_json = match &check {
        SystemsCheck::Passed(regions) => {
            let list: Vec<String> =
                regions.iter().map(|r| format!("{} ({} stores)", r.region_id, r.stores)).collect();
            human.push_str(&format!(
                "retail systems at {}: master data and collisions OK: {}\n",
                a.systems,
                list.join(", ")
            ));
            json!({
                "status": "passed",
                "collisionsChecked": true,
                "regions": regions.iter().map(|r| json!({"regionId": r.region_id, "dcId": r.dc_id, "stores": r.stores})).collect::<Vec<_>>(),
            })
        }
        SystemsCheck::Problems(problems) => {
            return Err(CliError::Invalid {
                what: format!("{file} (checked against the retail systems at {})", a.systems),
                problems: problems.clone(),
                hint,
            });
        }
        SystemsCheck::Skipped(why) => {
            human.push_str(&format!(
                "retail systems at {} not reachable ({why}): master-data and collision checks skipped; \
                 the workflow runs them at intake\n",
                a.systems
            ));
            json!({ "status": "skipped", "reason": why })
        }
    };
    let summary = spec::summary(&spec);
    let wid = workflow_id(&id);
    let Some(client) = client.filter(|_| !a.dry_run) else {
        human.push_str(&format!("dry run: {wid} not started\n"));
        return Ok(Output {
            human,
            json: json!({ "promotionId": id, "workflowId": wid, "started": false, "summary": summary, "systemsCheck": systems_json }),
        });
    };
    // The workflow contract's start options: business-key id, no restart of an ended promotion
    // (its ERP and channel idempotency keys derive from the id), summary and details for the UI.
    let options = promo_workflows::api::start_options(TASK_QUEUE, &spec);
    let started = match client.start_workflow(PromotionWorkflow::run, spec.into(), options).await {
        Ok(h) => h,
        Err(e) => {
            let existing = match &e {
                WorkflowStartError::AlreadyStarted { .. } => handle(&client, &id)
                    .describe(WorkflowDescribeOptions::default())
                    .await
                    .ok()
                    .map(|d| d.status()),
                _ => None,
            };
            return Err(start_error(&id, e, existing));
        }
    };
    let run_id = started.info().run_id.clone().unwrap_or_default();
    human.push_str(&format!(
        "started promotion {id}\n{}next: promo status {id}\n",
        fields(&[("workflow", wid.clone()), ("run", run_id.clone()), ("summary", summary.clone())])
    ));
    Ok(Output {
        human,
        json: json!({
            "promotionId": id, "workflowId": wid, "runId": run_id, "started": true,
            "summary": summary, "systemsCheck": systems_json,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use temporalio_client::tonic::Status;

    #[test]
    fn an_already_started_workflow_is_refused_with_the_next_step() {
        let e = WorkflowStartError::AlreadyStarted {
            run_id: Some("r1".into()),
            source: Status::already_exists("x"),
        };
        assert_eq!(
            start_error("SPRING-26", e, Some(WorkflowExecutionStatus::Running)).to_string(),
            "promotion SPRING-26 already exists (workflow promotion-SPRING-26 is running); use `promo status SPRING-26`"
        );
        let e = WorkflowStartError::AlreadyStarted { run_id: None, source: Status::already_exists("x") };
        assert_eq!(
            start_error("SPRING-26", e, Some(WorkflowExecutionStatus::Completed)).to_string(),
            "promotion SPRING-26 already exists (workflow promotion-SPRING-26 has ended: completed); use `promo status SPRING-26`"
        );
    }

    #[test]
    fn other_start_errors_name_the_server_reason() {
        let e = WorkflowStartError::Rpc(Status::permission_denied("no access to namespace"));
        assert_eq!(
            start_error("X", e, None).to_string(),
            "Temporal refused the start: no access to namespace (PermissionDenied)"
        );
    }
}
