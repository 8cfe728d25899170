//! The commands against Temporal (and, for `start`, the retail systems). Each returns an
//! [`Output`] — text for people and JSON for machines — or a [`CliError`] that says what to do
//! next. Every wait on the workflow is bounded by `--timeout`, except `report`, whose point is
//! to wait for the end.

use crate::{
    ask,
    cli::{
        AskArgs, AuditArgs, ChangeArgs, Cli, Command, DashboardArgs, DecisionArgs, ExceptionsArgs,
        InsightArgs, KeygenArgs, ListArgs, ReportArgs, StartArgs,
    },
    dashboard::Dashboard,
    error::CliError,
    messages, query, render, spec,
};
use futures::StreamExt;
use promo_activities::{Systems, SystemsTls, intake};
use promo_contracts::{
    promo::v1::{ActionResult, AuditTrail, Outcome, PromotionResult},
    retail::v1::ListLocationsRequest,
};
use promo_insight::{self as insight, execution_status, list_row};
use promo_workflows::{
    PromotionWorkflow,
    api::{self, CalendarCheck, IntakeInput, RegionInfo, TASK_QUEUE, workflow_id},
    plan::Problem,
    policy::{Policy, Span},
    signing,
};
use serde_json::{Value, json};
use std::{
    future::Future,
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use temporalio_client::{
    Client, WorkflowDescribeOptions, WorkflowExecuteUpdateOptions, WorkflowExecutionStatus,
    WorkflowGetResultOptions, WorkflowHandle, WorkflowListOptions, WorkflowQueryOptions,
    WorkflowSignalOptions,
    errors::{
        WorkflowGetResultError, WorkflowInteractionError, WorkflowQueryError, WorkflowStartError,
        WorkflowUpdateError,
    },
    tonic::Code,
};
use temporalio_common::{ActivityError, HasWorkflowDefinition, SignalDefinition, UpdateDefinition};

/// The workflow definition the messages and queries belong to.
type Run = <PromotionWorkflow as HasWorkflowDefinition>::Run;

/// Identity of this client in the Web UI and in Temporal's history.
pub const IDENTITY: &str = "promo-cli";
/// How long the reachability probe of the retail systems may take.
const SYSTEMS_PROBE: Duration = Duration::from_secs(5);
/// How long the master-data and collision checks may take.
const SYSTEMS_CHECK: Duration = Duration::from_secs(60);

/// What a command produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// For people (tables), printed without `--json`.
    pub human: String,
    /// For machines, printed with `--json`.
    pub json: Value,
}

/// Sends `$msg` as an update (default) or, with `--signal`, as a signal.
macro_rules! send {
    ($a:ident, $msg:expr, $action:literal, $update:expr, $signal:expr, $timeout:expr) => {{
        let m = $msg;
        let c = connect().await?;
        if $a.delivery.signal {
            signal(&c, &$a.id, $action, $signal, m).await
        } else {
            update(&c, &$a.id, $action, $update, m, $timeout).await
        }
    }};
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<Output, CliError> {
    let timeout = Duration::from_secs(cli.timeout.max(1));
    match cli.command {
        Command::Start(a) => start(&a).await,
        Command::Status(a) => status(&connect().await?, &a.id, timeout).await,
        Command::Approve(a) => decide(&a, true, timeout).await,
        Command::Reject(a) => decide(&a, false, timeout).await,
        Command::RequestChanges(a) => request_changes(&a, timeout).await,
        Command::ChooseRemediation(a) => send!(
            a,
            messages::remediation_choice(&a)?,
            "choose-remediation",
            PromotionWorkflow::choose_remediation,
            PromotionWorkflow::choose_remediation_signal,
            timeout
        ),
        Command::Cancel(a) => send!(
            a,
            messages::operator_action(&a)?,
            "cancel",
            PromotionWorkflow::cancel,
            PromotionWorkflow::cancel_signal,
            timeout
        ),
        Command::Pause(a) => send!(
            a,
            messages::operator_action(&a)?,
            "pause",
            PromotionWorkflow::pause,
            PromotionWorkflow::pause_signal,
            timeout
        ),
        Command::Resume(a) => send!(
            a,
            messages::operator_action(&a)?,
            "resume",
            PromotionWorkflow::resume,
            PromotionWorkflow::resume_signal,
            timeout
        ),
        Command::Override(a) => send!(
            a,
            messages::gate_override(&a)?,
            "override",
            PromotionWorkflow::override_gate,
            PromotionWorkflow::override_signal,
            timeout
        ),
        Command::List(a) => list(&connect().await?, &a).await,
        Command::Report(a) => report(&connect().await?, &a).await,
        Command::Audit(a) => audit(&connect().await?, &a, timeout).await,
        Command::Keygen(a) => keygen(&a),
        Command::Dashboard(a) => dashboard(&a).await,
        Command::Ask(a) => ask(&a, timeout).await,
        Command::Exceptions(a) => exceptions(&a, timeout).await,
    }
}

/// The SLA thresholds and the analytics client of `dashboard` and `ask`.
fn insight_sources(a: &InsightArgs) -> Result<(insight::Sla, Option<Systems>), CliError> {
    let policy = match std::fs::read_to_string(&a.policy) {
        Ok(text) => Policy::from_toml(&text)
            .map_err(|e| CliError::Usage(format!("--policy {}: {e}", a.policy.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Policy::default(),
        Err(e) => return Err(CliError::Usage(format!("--policy {}: {e}", a.policy.display()))),
    };
    let age: Span = a
        .exception_sla
        .parse()
        .map_err(|e| CliError::Usage(format!("--exception-sla {:?}: {e}", a.exception_sla)))?;
    let tls = SystemsTls::from_env().map_err(|e| CliError::Usage(e.to_string()))?;
    let systems = Systems::with_tls(&a.systems, tls.as_ref())
        .map_err(|e| CliError::Usage(format!("--systems: {e}")))?;
    Ok((insight::Sla::from_policy(&policy, age.0), Some(systems)))
}

/// `promo dashboard`: serves until interrupted.
async fn dashboard(a: &DashboardArgs) -> Result<Output, CliError> {
    let (sla, systems) = insight_sources(&a.insight)?;
    let addr: std::net::SocketAddr =
        a.listen.parse().map_err(|e| CliError::Usage(format!("--listen {:?}: {e}", a.listen)))?;
    let namespace = std::env::var("TEMPORAL_NAMESPACE").unwrap_or_else(|_| "default".into());
    let mut d = Dashboard::new(connect().await?, systems, sla, a.web_ui.clone(), namespace);
    d.refresh = a.refresh.max(1);
    d.serve(addr, |bound| {
        println!("dashboard: http://{bound}/");
    })
    .await
    .map_err(|e| CliError::Usage(format!("--listen {addr}: {e}")))?;
    Ok(Output { human: String::new(), json: json!({}) })
}

/// `promo exceptions`: the exception queue of the dashboard, as a table.
async fn exceptions(a: &ExceptionsArgs, timeout: Duration) -> Result<Output, CliError> {
    let (sla, _) = insight_sources(&a.insight)?;
    // The queue comes from the running promotions' status; the event record is not needed.
    let snap = insight::snapshot(&connect().await?, None, 1000, timeout.min(Duration::from_secs(10))).await;
    let owner = a.owner.as_deref().map(|o| o.trim().to_uppercase().replace('-', "_"));
    let queue: Vec<_> = insight::exception_queue(&snap, &sla)
        .into_iter()
        .filter(|q| owner.as_deref().is_none_or(|o| q.owner == o))
        .take(a.limit)
        .collect();
    let mut human = String::new();
    if queue.is_empty() {
        human.push_str("No open exception.\n");
    } else {
        let mut t = crate::table::Table::new([
            "#",
            "PROMOTION",
            "KIND",
            "REGION",
            "OWNER",
            "REVENUE AT RISK",
            "AGE",
            "DETAIL",
        ])
        .right(0)
        .right(5)
        .right(6)
        .max_width(7, 80);
        for (i, q) in queue.iter().enumerate() {
            let overdue = if q.overdue { " overdue" } else { "" };
            t.row([
                (i + 1).to_string(),
                q.promotion_id.clone(),
                q.kind.clone(),
                if q.region_id.is_empty() { "national".to_owned() } else { q.region_id.clone() },
                q.owner.clone(),
                format!("{:.2}", q.revenue_at_risk),
                format!("{}{overdue}", crate::dashboard::age(q.age)),
                q.detail.clone(),
            ]);
        }
        human.push_str(&t.render());
        let total: rust_decimal::Decimal = queue.iter().map(|q| q.revenue_at_risk).sum();
        human.push_str(&format!("\n{} open, {total:.2} revenue at risk\n", queue.len()));
    }
    if !snap.problems.is_empty() {
        human.push_str(&format!("not read: {}\n", snap.problems.join("; ")));
    }
    Ok(Output { human, json: json!({ "exceptions": queue, "notRead": snap.problems }) })
}

/// `promo ask`.
async fn ask(a: &AskArgs, timeout: Duration) -> Result<Output, CliError> {
    let question = a.question.join(" ");
    let (sla, systems) = insight_sources(&a.insight)?;
    let snap =
        insight::snapshot(&connect().await?, systems.as_ref(), 1000, timeout.min(Duration::from_secs(10)))
            .await;
    match ask::answer(&question, &snap, &sla) {
        Ok(ans) => {
            let mut human = format!("{}\n\nsource: {}\n", ans.text, ans.source);
            if !snap.problems.is_empty() {
                human.push_str(&format!("not read: {}\n", snap.problems.join("; ")));
            }
            Ok(Output {
                human,
                json: json!({ "question": question, "answer": ans.text, "source": ans.source, "notRead": snap.problems }),
            })
        }
        Err(forms) => Err(CliError::Usage(forms)),
    }
}

/// `promo keygen`.
fn keygen(a: &KeygenArgs) -> Result<Output, CliError> {
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

// ---------------------------------------------------------------------------------------------
// start

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

async fn start(a: &StartArgs) -> Result<Output, CliError> {
    let file = a.spec.display().to_string();
    let spec = spec::read_spec_file(&a.spec)?;
    let now = unix_now();
    let hint = format!("fix {file} and run `promo start {file}` again");
    let plan = spec::check_locally(&file, &spec, now, &hint)?;
    let id = spec.promotion_id.clone();
    let count = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let mut scope = vec![count(plan.lines.len(), "line")];
    if !plan.regions.is_empty() {
        scope.push(count(plan.regions.len(), "region"));
    }
    if !plan.stores.is_empty() {
        scope.push(count(plan.stores.len(), "individual store"));
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
        crate::table::fields(&[
            ("workflow", wid.clone()),
            ("run", run_id.clone()),
            ("summary", summary.clone())
        ])
    ));
    Ok(Output {
        human,
        json: json!({
            "promotionId": id, "workflowId": wid, "runId": run_id, "started": true,
            "summary": summary, "systemsCheck": systems_json,
        }),
    })
}

// ---------------------------------------------------------------------------------------------
// queries

async fn status(client: &Client, id: &str, timeout: Duration) -> Result<Output, CliError> {
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

async fn audit(client: &Client, a: &AuditArgs, timeout: Duration) -> Result<Output, CliError> {
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

// ---------------------------------------------------------------------------------------------
// messages

/// Sends `message` (as its proto3 JSON: the workflow's updates take raw JSON and validate it)
/// and renders the workflow's answer; a refusal is an error with its reason.
async fn update<U>(
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
async fn signal<S>(
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

async fn decide(a: &DecisionArgs, approve: bool, timeout: Duration) -> Result<Output, CliError> {
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

async fn request_changes(a: &ChangeArgs, timeout: Duration) -> Result<Output, CliError> {
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

// ---------------------------------------------------------------------------------------------
// list and report

async fn list(client: &Client, a: &ListArgs) -> Result<Output, CliError> {
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

async fn report(client: &Client, a: &ReportArgs) -> Result<Output, CliError> {
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

    #[test]
    fn a_workflow_that_failed_reports_outcome_failed_with_the_reason() {
        let e = WorkflowGetResultError::TimedOut;
        let r = result_from_error("X", &e).unwrap();
        assert_eq!((r.outcome(), r.reason.as_str()), (Outcome::Failed, "the workflow timed out"));
        assert!(result_from_error("X", &WorkflowGetResultError::ContinuedAsNew).is_none());
    }
}
