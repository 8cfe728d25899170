//! The lifecycle's promises, tried as a client we did not write would try them (the `temporal`
//! CLI, messages before the worker runs, inputs of the wrong shape) and as an outage would: every
//! message is answered, every input ends or runs, every ending leaves nothing live in the
//! reference systems and no exception open, and every wait gives way to cancel, pause, resume and
//! override within seconds — with the production policy's acknowledgment deadline.

use promo_contracts::{
    promo::v1::*,
    retail::v1::{
        self as wire, ClearFaultsRequest, Fault, InjectFaultRequest, ListOrdersRequest,
        ListPriceChangesRequest, OrderState,
    },
};
use promo_tests::{
    env::{PromoEnv, decision, spec, test_policy, update_message},
    promises,
};
use promo_workflows::{PromotionWorkflow, api, policy::Policy};
use std::time::{Duration, Instant};
use temporalio_client::{
    WorkflowDescribeOptions, WorkflowExecuteUpdateOptions, errors::WorkflowGetResultError,
};
use temporalio_common::protos::temporal::api::{
    enums::v1::PendingActivityState,
    history::v1::{HistoryEvent, history_event::Attributes},
};

const LIMIT: Duration = Duration::from_secs(60);

/// The nine messages, each as its signal/update name with a well-formed input from someone the
/// default directory authorises (merchandising E1001, supply chain E3001, operations E4001).
fn messages(promotion_id: &str) -> Vec<(&'static str, serde_json::Value)> {
    let json = |v: serde_json::Result<serde_json::Value>| v.expect("messages serialise");
    let operator = |reason: &str| OperatorAction {
        operator_id: "E4001".into(),
        reason: reason.into(),
        ..Default::default()
    };
    vec![
        ("approve", json(serde_json::to_value(decision("E1001", Role::Merchandising, "fine")))),
        ("reject", json(serde_json::to_value(decision("E1001", Role::Merchandising, "no")))),
        (
            "request_changes",
            json(serde_json::to_value(ChangeRequest {
                approver_id: "E1001".into(),
                role: Role::Merchandising as i32,
                revision: 0,
                comment: "fewer SKUs".into(),
                amended_spec: Some(spec(promotion_id, &["R1"], 0..3, 3.0, 2.0)),
                ..Default::default()
            })),
        ),
        (
            "choose_remediation",
            json(serde_json::to_value(RemediationChoice {
                region_id: "R1".into(),
                option_id: "delay".into(),
                chosen_by: "E3001".into(),
                comment: String::new(),
                ..Default::default()
            })),
        ),
        ("pause", json(serde_json::to_value(operator("hold on")))),
        ("resume", json(serde_json::to_value(operator("go on")))),
        (
            "override",
            json(serde_json::to_value(GateOverride {
                operator_id: "E4001".into(),
                region_id: "R1".into(),
                reason: "the store manager confirmed".into(),
                ..Default::default()
            })),
        ),
        (
            "resolve_compensation",
            json(serde_json::to_value(CompensationDecision {
                operator_id: "E4001".into(),
                resolution: CompensationResolution::Retry as i32,
                reason: "the channel is back".into(),
                ..Default::default()
            })),
        ),
        ("cancel", json(serde_json::to_value(operator("test over")))),
    ]
}

/// The audit action of a message once applied.
fn applied_action(name: &str) -> String {
    match name {
        "choose_remediation" => "remediation-chosen".into(),
        other => other.replace('_', "-"),
    }
}

/// Whether the trail shows `name` applied or refused (with a reason).
fn answered(trail: &AuditTrail, name: &str) -> bool {
    let refused = format!("{}-refused", name.replace('_', "-"));
    trail
        .entries
        .iter()
        .any(|e| e.action == applied_action(name) || (e.action == refused && !e.detail.trim().is_empty()))
}

/// Runs the `temporal` CLI from the project venv against the environment's dev server.
fn temporal_cli(env: &PromoEnv, args: &[&str]) -> std::process::Output {
    cli_command(env, args).output().expect("run the temporal CLI")
}

fn cli_command(env: &PromoEnv, args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(promo_tests::temporal::temporal_bin());
    c.args(args).args(["--address", &env.dev.address()]);
    c
}

/// Waits until the server knows the update `update_id` (admitted, whether or not a worker has
/// seen it yet): `update describe` fails with "not found" until then.
async fn wait_admitted(env: &PromoEnv, wid: &str, update_id: &str) {
    let t = Instant::now();
    loop {
        let args = ["workflow", "update", "describe", "--workflow-id", wid, "--update-id", update_id];
        let out = cli_command(env, &args).output().expect("run the temporal CLI");
        if out.status.success() {
            return;
        }
        assert!(
            t.elapsed() < LIMIT,
            "update {update_id} never reached the server: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn assert_ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "temporal CLI failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Polls the audit trail until `pred` holds.
async fn wait_audit(env: &PromoEnv, id: &str, what: &str, pred: impl Fn(&AuditTrail) -> bool) -> AuditTrail {
    let deadline = Instant::now() + LIMIT;
    loop {
        let last = env.audit(id).await;
        if let Ok(t) = &last
            && pred(t)
        {
            return t.clone();
        }
        assert!(Instant::now() < deadline, "{id}: timed out waiting for {what}; last audit: {last:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn history(env: &PromoEnv, id: &str) -> Vec<HistoryEvent> {
    env.history(id).await.expect("history")
}

/// No workflow task of any run of the promotion failed: no handler or stage panicked, nothing
/// retried.
async fn assert_no_failed_task(env: &PromoEnv, id: &str) {
    promises::no_failed_task(&env.client, id).await.unwrap_or_else(|e| panic!("{e}"));
}

/// The activity id of a running acknowledgment wait (`promo.await_acknowledgments`, or
/// `promo.publish_and_await` publishing and then waiting) other than those in `seen`.
async fn running_ack_wait(env: &PromoEnv, id: &str, seen: &[String]) -> String {
    let deadline = Instant::now() + LIMIT;
    loop {
        let d = env.handle(id).describe(WorkflowDescribeOptions::default()).await.expect("describe");
        let running = d.raw_description.pending_activities.iter().find(|a| {
            a.activity_type.as_ref().is_some_and(|t| {
                t.name.ends_with("await_acknowledgments") || t.name.ends_with("publish_and_await")
            }) && a.state() == PendingActivityState::Started
                && !seen.contains(&a.activity_id)
        });
        if let Some(a) = running {
            return a.activity_id.clone();
        }
        assert!(Instant::now() < deadline, "{id}: no acknowledgment wait started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the activity `activity_id` was cancelled: the cancellation requested by the
/// workflow and confirmed by the activity itself (it saw it through its heartbeat).
async fn wait_cancelled(env: &PromoEnv, id: &str, activity_id: &str) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let events = history(env, id).await;
        let scheduled = events.iter().find_map(|e| match &e.attributes {
            Some(Attributes::ActivityTaskScheduledEventAttributes(a)) if a.activity_id == activity_id => {
                Some(e.event_id)
            }
            _ => None,
        });
        let (mut requested, mut canceled) = (false, false);
        for e in &events {
            match &e.attributes {
                Some(Attributes::ActivityTaskCancelRequestedEventAttributes(a))
                    if Some(a.scheduled_event_id) == scheduled =>
                {
                    requested = true
                }
                Some(Attributes::ActivityTaskCanceledEventAttributes(a))
                    if Some(a.scheduled_event_id) == scheduled =>
                {
                    canceled = true
                }
                _ => {}
            }
        }
        if requested && canceled {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{id}: activity {activity_id} was not cancelled (requested {requested}, canceled {canceled})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The promotion's end is clean in the status and in visibility: DONE with no open exception and
/// no pending approval.
async fn assert_ended_clean(env: &PromoEnv, id: &str) {
    promises::ended_clean(env, id, LIMIT).await.unwrap_or_else(|e| panic!("{e}"));
}

/// Reads the reference systems: nothing of the promotion is live (no staged price, no
/// activation on its channel, no released transfer order unless `orders_may_stay`, no calendar
/// reservation) — and it had written something to check.
async fn assert_nothing_live(env: &PromoEnv, id: &str, orders_may_stay: bool) {
    let wrote = promises::nothing_live(&env.systems.url(), id, orders_may_stay)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(wrote.price_changes > 0, "{id} staged no price: nothing to check");
    assert!(wrote.activations > 0, "{id} published nothing");
}

async fn orders(env: &PromoEnv, id: &str) -> Vec<wire::TransferOrder> {
    wire::replenishment_service_client::ReplenishmentServiceClient::connect(env.systems.url())
        .await
        .unwrap()
        .list_orders(ListOrdersRequest { promotion_id: id.into() })
        .await
        .unwrap()
        .into_inner()
        .orders
}

async fn inject(env: &PromoEnv, fault: Fault) {
    env.admin().await.unwrap().inject_fault(InjectFaultRequest { fault: Some(fault) }).await.unwrap();
}

async fn operator_update(env: &PromoEnv, id: &str, name: &str) -> Result<String, String> {
    let h = env.handle(id);
    let o = WorkflowExecuteUpdateOptions::default;
    let action = serde_json::to_value(OperatorAction {
        operator_id: "E4001".into(),
        reason: name.into(),
        ..Default::default()
    })
    .unwrap();
    update_message(match name {
        "cancel" => h.execute_update(PromotionWorkflow::cancel, action, o()).await,
        "pause" => h.execute_update(PromotionWorkflow::pause, action, o()).await,
        "resume" => h.execute_update(PromotionWorkflow::resume, action, o()).await,
        _ => unreachable!("not an operator action: {name}"),
    })
}

async fn override_region(env: &PromoEnv, id: &str, region: &str) -> Result<String, String> {
    let o = GateOverride {
        operator_id: "E4001".into(),
        region_id: region.into(),
        reason: "confirmed by phone".into(),
        ..Default::default()
    };
    update_message(
        env.handle(id)
            .execute_update(
                PromotionWorkflow::override_gate,
                serde_json::to_value(o).unwrap(),
                WorkflowExecuteUpdateOptions::default(),
            )
            .await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_sent_with_signal_with_start_is_applied_or_refused() {
    let env = PromoEnv::start(test_policy()).await.unwrap();
    let mut ids = Vec::new();
    for (i, (name, input)) in messages("SWS-0").into_iter().enumerate() {
        let id = format!("SWS-{i}");
        // Distinct SKUs: the nine promotions must not collide with each other.
        // Launch far enough ahead that the last one is still awaiting approval when the test
        // reaches it (nine are handled one after another; 40 business days are 80 s here).
        let spec = serde_json::to_string(&spec(&id, &["R1"], i * 4..i * 4 + 4, 40.0, 2.0)).unwrap();
        let wid = api::workflow_id(&id);
        let signal_input = input.to_string().replace("SWS-0", &id);
        let out = temporal_cli(
            &env,
            &[
                "workflow",
                "signal-with-start",
                "--workflow-id",
                &wid,
                "--type",
                api::WORKFLOW_TYPE,
                "--task-queue",
                &env.task_queue,
                "--input",
                &spec,
                "--signal-name",
                name,
                "--signal-input",
                &signal_input,
            ],
        );
        assert_ok(&out);
        ids.push((id, name));
    }
    env.with_worker(async {
        for (id, name) in &ids {
            let trail = wait_audit(&env, id, &format!("{name} answered"), |t| answered(t, name)).await;
            let queued = format!("{}-queued", name.replace('_', "-"));
            assert!(trail.entries.iter().any(|e| e.action == queued), "{id}: {trail:#?}");
            if *name == "cancel" {
                assert_eq!(env.result(id).await.unwrap().outcome(), Outcome::Cancelled);
            } else {
                // Not wedged: it carries on to the approval stage, then a cancel ends it.
                env.wait_status(id, "approval", LIMIT, |s| s.stage() == Stage::Approval).await.unwrap();
                operator_update(&env, id, "cancel").await.unwrap();
                assert_eq!(env.result(id).await.unwrap().outcome(), Outcome::Cancelled);
            }
            // What was refused says why.
            let refused: Vec<_> = trail.entries.iter().filter(|e| e.action.ends_with("-refused")).collect();
            assert!(refused.iter().all(|e| !e.detail.is_empty()), "{refused:#?}");
            assert_no_failed_task(&env, id).await;
            assert_ended_clean(&env, id).await;
        }
        // The approval sent with the start came before there was anything to approve: refused,
        // with the stage it found.
        let t = env.audit("SWS-0").await.unwrap();
        let refusal = t.entries.iter().find(|e| e.action == "approve-refused").expect("approve refused");
        assert!(refusal.detail.contains("not awaiting approval"), "{refusal:?}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_sent_while_no_worker_runs_is_applied_or_refused_in_order() {
    let env = PromoEnv::start(test_policy()).await.unwrap();
    env.start_promotion_bare(spec("OFF-1", &["R1"], 0..4, 3.0, 2.0)).await.unwrap();
    let wid = api::workflow_id("OFF-1");
    for (name, input) in messages("OFF-1") {
        let out = temporal_cli(
            &env,
            &["workflow", "signal", "--workflow-id", &wid, "--name", name, "--input", &input.to_string()],
        );
        assert_ok(&out);
    }
    let trail = env
        .with_worker(async {
            // Cancel came last: the others were applied or refused first, in the order sent.
            assert_eq!(env.result("OFF-1").await.unwrap().outcome(), Outcome::Cancelled);
            assert_no_failed_task(&env, "OFF-1").await;
            assert_ended_clean(&env, "OFF-1").await;
            env.audit("OFF-1").await.unwrap()
        })
        .await
        .unwrap();
    let queued = trail.entries.iter().filter(|e| e.action.ends_with("-queued")).count();
    assert_eq!(queued, messages("OFF-1").len(), "{trail:#?}");
    for (name, _) in messages("OFF-1") {
        assert!(answered(&trail, name), "{name} not answered: {trail:#?}");
    }
    // Pause, then resume, were applied (the operator holds the role); the approval decisions
    // and the remediation choice were refused for the stage.
    let order: Vec<&str> = trail
        .entries
        .iter()
        .map(|e| e.action.as_str())
        .filter(|a| ["pause", "resume", "cancel"].contains(a))
        .collect();
    assert_eq!(order, ["pause", "resume", "cancel"], "{trail:#?}");
    for refused in
        ["approve-refused", "reject-refused", "request-changes-refused", "choose-remediation-refused"]
    {
        assert!(trail.entries.iter().any(|e| e.action == refused), "{refused}: {trail:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_update_sent_right_after_start_gets_an_answer() {
    let env = PromoEnv::start(test_policy()).await.unwrap();
    // Launching in eight business days (16 s): the approval deadline must not end the run before
    // the last update below on a loaded machine (three days left it 5 s, which CI once missed).
    env.start_promotion_bare(spec("UPD-1", &["R1"], 0..4, 8.0, 2.0)).await.unwrap();
    let wid = api::workflow_id("UPD-1");
    // Sent before any worker runs: each waits in the server and reaches the workflow at its
    // first task, before its policy has loaded, or soon after.
    let pending: Vec<_> = messages("UPD-1")
        .into_iter()
        .filter(|(name, _)| *name != "cancel")
        .map(|(name, input)| {
            let child = cli_command(
                &env,
                &[
                    "workflow",
                    "update",
                    "execute",
                    "--workflow-id",
                    &wid,
                    "--update-id",
                    &format!("early-{name}"),
                    "--name",
                    name,
                    "--input",
                    &input.to_string(),
                ],
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run the temporal CLI");
            (name, child)
        })
        .collect();
    // Every update is in the server before the worker starts: a CLI process slower to start
    // than the worker's intake would otherwise reach a promotion already awaiting approval,
    // where `reject` is accepted and ends the run before the cancel below.
    for (name, _) in &pending {
        wait_admitted(&env, &wid, &format!("early-{name}")).await;
    }
    let trail = env
        .with_worker(async {
            for (name, child) in pending {
                let out =
                    tokio::task::spawn_blocking(move || child.wait_with_output()).await.unwrap().unwrap();
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                // Accepted with a message, or refused with a reason: never a timeout.
                assert!(!text.contains("deadline") && !text.contains("timed out"), "{name}: {text}");
                assert!(text.trim().len() > 10, "{name} got no answer: {text}");
            }
            assert_eq!(operator_update(&env, "UPD-1", "cancel").await, Ok("cancel accepted".into()));
            assert_eq!(env.result("UPD-1").await.unwrap().outcome(), Outcome::Cancelled);
            assert_no_failed_task(&env, "UPD-1").await;
            assert_ended_clean(&env, "UPD-1").await;
            env.audit("UPD-1").await.unwrap()
        })
        .await
        .unwrap();
    for (name, _) in messages("UPD-1") {
        assert!(answered(&trail, name), "{name} not answered: {trail:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_inputs_that_are_not_a_spec_fail_at_once_naming_what_is_wrong() {
    let env = PromoEnv::start(test_policy()).await.unwrap();
    let cases = [
        ("BADIN-ARRAY", r#"["garbage"]"#, "not an array"),
        ("BADIN-NUMBER", "42", "not a number"),
        ("BADIN-TYPES", r#"{"promotionId": "BADIN-TYPES", "lines": "x"}"#, "lines"),
        ("BADIN-EMPTY", "{}", "promotion_id"),
    ];
    for (id, input, _) in &cases {
        let wid = api::workflow_id(id);
        let out = temporal_cli(
            &env,
            &[
                "workflow",
                "start",
                "--workflow-id",
                &wid,
                "--type",
                api::WORKFLOW_TYPE,
                "--task-queue",
                &env.task_queue,
                "--input",
                input,
            ],
        );
        assert_ok(&out);
    }
    env.with_worker(async {
        for (id, _, names) in &cases {
            let e = env.result(id).await.expect_err("an input that is not a spec fails the promotion");
            let Ok(WorkflowGetResultError::Failed(failure)) = e.downcast::<WorkflowGetResultError>() else {
                panic!("{id} must fail")
            };
            let text = format!("{failure:?}");
            assert!(text.contains("InvalidSpec"), "{id}: {text}");
            assert!(text.contains(names), "{id}: the failure must name {names:?}: {text}");
            assert_no_failed_task(&env, id).await;
            // A non-object or ill-typed input never reaches an activity.
            if *id != "BADIN-EMPTY" {
                let scheduled = history(&env, id)
                    .await
                    .into_iter()
                    .filter(|e| {
                        matches!(e.attributes, Some(Attributes::ActivityTaskScheduledEventAttributes(_)))
                    })
                    .count();
                assert_eq!(scheduled, 0, "{id}");
            }
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erp_outage_at_close_shows_compensation_pending_until_the_prices_are_reverted() {
    let mut policy = test_policy();
    policy.compensation_attempts = 2;
    let env = PromoEnv::start(policy).await.unwrap();
    let wid = api::workflow_id("ERP-1");
    let result = env
        .with_worker(async {
            env.start_promotion(spec("ERP-1", &["R1"], 0..4, 3.0, 2.0)).await.unwrap();
            env.wait_status("ERP-1", "approval", LIMIT, |s| s.stage() == Stage::Approval).await.unwrap();
            env.approve("ERP-1", "E1001", Role::Merchandising).await.unwrap();
            env.wait_status("ERP-1", "active", LIMIT, |s| s.stage() == Stage::Active).await.unwrap();
            // The ERP goes down while the promotion is live, and stays down through the close.
            inject(&env, Fault { service: "price".into(), error_rate: "1".into(), ..Default::default() })
                .await;
            let s = env
                .wait_status("ERP-1", "compensation pending", LIMIT, |s| {
                    s.open_exceptions.iter().any(|e| e.kind() == ExceptionKind::CompensationPending)
                })
                .await
                .unwrap();
            assert_eq!(s.stage(), Stage::Closing, "{s:?}");
            let stuck = format!("WorkflowId = '{wid}' AND OpenExceptions > 0");
            let deadline = Instant::now() + LIMIT;
            while !promises::listed(&env, &stuck).await.contains(&wid) {
                assert!(Instant::now() < deadline, "not listed by {stuck}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            // Longer than a whole retry budget: the revert keeps being retried, nothing gives up.
            wait_audit(&env, "ERP-1", "two failed compensation rounds", |t| {
                t.entries.iter().filter(|e| e.action == "call-retry").count() >= 2
            })
            .await;
            let prices = env
                .prices()
                .await
                .unwrap()
                .list_price_changes(ListPriceChangesRequest {
                    promotion_id: "ERP-1".into(),
                    ..Default::default()
                })
                .await;
            assert!(prices.is_err(), "the ERP is down");
            env.admin().await.unwrap().clear_faults(ClearFaultsRequest {}).await.unwrap();
            let r = env.result("ERP-1").await.unwrap();
            assert_ended_clean(&env, "ERP-1").await;
            let s = env.wait_status("ERP-1", "done", LIMIT, |s| s.stage() == Stage::Done).await.unwrap();
            assert!(s.exceptions_raised >= 1);
            r
        })
        .await
        .unwrap();
    assert_eq!(result.outcome(), Outcome::Completed);
    assert_nothing_live(&env, "ERP-1", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_while_live_is_compensated() {
    let env = PromoEnv::start(test_policy()).await.unwrap();
    let result = env
        .with_worker(async {
            // R2 is short (inbound 4–6 days after the anchor): delayed, with stock ordered for it.
            env.start_promotion(spec("FAIL-1", &["R1", "R2"], 0..12, 3.0, 7.0)).await.unwrap();
            env.wait_status("FAIL-1", "remediation", LIMIT, |s| s.stage() == Stage::Remediation)
                .await
                .unwrap();
            let choice = RemediationChoice {
                region_id: "R2".into(),
                option_id: "R2:delay".into(),
                chosen_by: "E3001".into(),
                comment: "wait for inbound".into(),
                ..Default::default()
            };
            let chosen = env.choose_remediation("FAIL-1", choice).await;
            assert_eq!(chosen, Ok("R2:delay chosen for R2".into()));
            env.wait_status("FAIL-1", "approval", LIMIT, |s| s.stage() == Stage::Approval).await.unwrap();
            env.approve("FAIL-1", "E1001", Role::Merchandising).await.unwrap();
            env.approve("FAIL-1", "E3001", Role::SupplyChain).await.unwrap();
            let live =
                env.wait_status("FAIL-1", "active", LIMIT, |s| s.stage() == Stage::Active).await.unwrap();
            // Stock is ordered for R2 when the delayed launch still leaves SKUs short; whether it
            // does moves with the time of day the test runs (R2's fill after the delay is 0.9–1).
            // Every order placed must be cancelled by the ending (`assert_nothing_live`).
            let r2 = live.regions.iter().find(|r| r.region_id == "R2").expect("R2");
            if r2.fill_rate != "1" {
                let placed = orders(&env, "FAIL-1").await;
                assert!(placed.iter().any(|o| o.state() == OrderState::Released), "{placed:?} {r2:?}");
            }
            // Sales answers break their contract while the promotion is live: monitoring fails
            // for good and the promotion ends FAILED, with everything it put live undone.
            inject(
                &env,
                Fault { service: "sales".into(), malformed: "negative-stock".into(), ..Default::default() },
            )
            .await;
            let e = env.result("FAIL-1").await.expect_err("monitoring fails");
            assert_ended_clean(&env, "FAIL-1").await;
            e
        })
        .await
        .unwrap();
    let text = format!("{result:?}");
    assert!(text.contains("sales"), "the failure names the service: {text}");
    assert_nothing_live(&env, "FAIL-1", false).await;
}

/// The production policy's acknowledgment deadline (2 h) on a clock running 60 times faster: an
/// acknowledgment round lasts two minutes of wall time, far longer than any wait below.
fn slow_ack_policy() -> Policy {
    let mut p = Policy { time_scale: 60, require_signatures: false, ..Policy::default() };
    p.durations.approval_deadline_before_launch = "10m".parse().unwrap();
    p.durations.final_recheck_before_launch = "5m".parse().unwrap();
    p.durations.approval_reminder = "1h".parse().unwrap();
    p.durations.approval_escalation = "2h".parse().unwrap();
    p.ack_retries = 0;
    p
}

/// R1's POS never acknowledges.
async fn pos_silent_in_r1(env: &PromoEnv) {
    env.never_acknowledges(wire::Channel::Pos, "R1").await.unwrap();
}

/// A spec launching 25 business minutes from now (25 s of wall time at scale 60).
fn soon(id: &str) -> PromotionSpec {
    spec(id, &["R1", "R3"], 0..4, 25.0 / 1440.0, 2.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_during_an_acknowledgment_round_cancels_the_wait_and_undoes_the_publications() {
    let env = PromoEnv::start(slow_ack_policy()).await.unwrap();
    pos_silent_in_r1(&env).await;
    let (result, started) = env
        .with_worker(async {
            env.start_promotion(soon("ACKC-1")).await.unwrap();
            env.wait_status("ACKC-1", "approval", LIMIT, |s| s.stage() == Stage::Approval).await.unwrap();
            env.approve("ACKC-1", "E1001", Role::Merchandising).await.unwrap();
            let round = running_ack_wait(&env, "ACKC-1", &[]).await;
            let started = Instant::now();
            assert_eq!(operator_update(&env, "ACKC-1", "cancel").await, Ok("cancel accepted".into()));
            let r = env.result("ACKC-1").await.unwrap();
            let started = started.elapsed();
            wait_cancelled(&env, "ACKC-1", &round).await;
            assert_ended_clean(&env, "ACKC-1").await;
            (r, started)
        })
        .await
        .unwrap();
    assert_eq!(result.outcome(), Outcome::Cancelled);
    assert!(started < Duration::from_secs(120), "the round was not waited out: {started:?}");
    assert_nothing_live(&env, "ACKC-1", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn override_during_an_acknowledgment_round_ends_the_round_at_once() {
    let env = PromoEnv::start(slow_ack_policy()).await.unwrap();
    pos_silent_in_r1(&env).await;
    let id = "ACKO-1";
    let result = env
        .with_worker(async {
            env.start_promotion(soon(id)).await.unwrap();
            env.wait_status(id, "approval", LIMIT, |s| s.stage() == Stage::Approval).await.unwrap();
            env.approve(id, "E1001", Role::Merchandising).await.unwrap();
            // The publishing round waits for R1's POS: an override of R1 ends it.
            let round = running_ack_wait(&env, id, &[]).await;
            assert_eq!(override_region(&env, id, "R1").await, Ok("gate opened for R1".into()));
            wait_cancelled(&env, id, &round).await;
            env.wait_status(id, "past publishing", LIMIT, |s| {
                matches!(s.stage(), Stage::LaunchGate | Stage::Active)
            })
            .await
            .unwrap();
            assert_eq!(operator_update(&env, id, "cancel").await, Ok("cancel accepted".into()));
            let r = env.result(id).await.unwrap();
            assert_no_failed_task(&env, id).await;
            assert_ended_clean(&env, id).await;
            r
        })
        .await
        .unwrap();
    assert_eq!(result.outcome(), Outcome::Cancelled);
    assert_nothing_live(&env, id, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_override_and_cancel_interrupt_the_late_acknowledgment_poll() {
    // A 20-minute acknowledgment deadline (20 s of wall time): the publishing round runs out,
    // R1 is delayed, and the active window polls for its late acknowledgment 20 s at a time.
    let mut policy = slow_ack_policy();
    policy.durations.ack_deadline = "20m".parse().unwrap();
    let env = PromoEnv::start(policy).await.unwrap();
    pos_silent_in_r1(&env).await;
    let id = "ACKP-1";
    let (result, trail) = env
        .with_worker(async {
            env.start_promotion(spec(id, &["R1", "R3"], 0..4, 30.0 / 1440.0, 2.0)).await.unwrap();
            env.wait_status(id, "approval", LIMIT, |s| s.stage() == Stage::Approval).await.unwrap();
            env.approve(id, "E1001", Role::Merchandising).await.unwrap();
            env.wait_status(id, "R3 live, R1 delayed", LIMIT, |s| {
                s.stage() == Stage::Active
                    && s.regions.iter().any(|r| r.region_id == "R1" && r.state() == RegionState::Delayed)
            })
            .await
            .unwrap();
            let mut seen = Vec::new();
            for action in ["pause", "resume", "override"] {
                let poll = running_ack_wait(&env, id, &seen).await;
                let answer = if action == "override" {
                    override_region(&env, id, "R1").await
                } else {
                    operator_update(&env, id, action).await
                };
                assert!(answer.is_ok(), "{action}: {answer:?}");
                wait_cancelled(&env, id, &poll).await;
                seen.push(poll);
            }
            // Resumed and overridden: R1 launches without its POS acknowledgment.
            env.wait_status(id, "R1 live", LIMIT, |s| {
                s.regions.iter().any(|r| r.region_id == "R1" && r.state() == RegionState::Active)
            })
            .await
            .unwrap();
            // The read-back after R1 went live finds its POS never loaded the prices.
            wait_audit(&env, id, "the price read-back on R1", |t| {
                t.entries.iter().any(|e| e.action == "price-mismatch" && e.detail.starts_with("POS R1"))
            })
            .await;
            assert_eq!(operator_update(&env, id, "cancel").await, Ok("cancel accepted".into()));
            let r = env.result(id).await.unwrap();
            assert_no_failed_task(&env, id).await;
            assert_ended_clean(&env, id).await;
            (r, env.audit(id).await.unwrap())
        })
        .await
        .unwrap();
    assert_eq!(result.outcome(), Outcome::Cancelled);
    // R1's missing-acknowledgment exception was resolved by the override, not left for the end
    // to close; and the read-back after R1 went live found what the override could not know:
    // its POS never loaded the promotional prices.
    assert!(trail.entries.iter().any(|e| e.action == "override"), "{trail:#?}");
    assert!(
        !trail
            .entries
            .iter()
            .any(|e| e.action == "exception-closed" && e.detail.contains("not acknowledged")),
        "{trail:#?}"
    );
    assert!(
        trail.entries.iter().any(|e| e.action == "price-mismatch" && e.detail.starts_with("POS R1")),
        "{trail:#?}"
    );
    assert_nothing_live(&env, id, false).await;
}

/// The failure text of a promotion that must have failed.
async fn failure_text(env: &PromoEnv, id: &str) -> String {
    let e = env.result(id).await.expect_err("the promotion must fail");
    let Ok(WorkflowGetResultError::Failed(failure)) = e.downcast::<WorkflowGetResultError>() else {
        panic!("{id} must fail")
    };
    format!("{failure:?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collision_checks_follow_each_revision_of_the_other_promotion() {
    let env = PromoEnv::start(test_policy()).await.unwrap();
    env.with_worker(async {
        env.start_promotion(spec("REV-A", &["R1"], 0..4, 3.0, 3.0)).await.unwrap();
        env.wait_status("REV-A", "approval", LIMIT, |s| s.stage() == Stage::Approval).await.unwrap();
        // REV-A moves off SKUs 0..4 onto 20..24.
        let change = ChangeRequest {
            approver_id: "E1001".into(),
            role: Role::Merchandising as i32,
            revision: 1,
            comment: "other SKUs".into(),
            amended_spec: Some(spec("REV-A", &["R1"], 20..24, 3.0, 3.0)),
            ..Default::default()
        };
        let asked = env.request_changes("REV-A", change).await;
        assert!(asked.is_ok());
        env.wait_status("REV-A", "revision 2 awaiting approval", LIMIT, |s| {
            s.revision == 2 && s.stage() == Stage::Approval
        })
        .await
        .unwrap();
        // The new footprint collides; the old one is free again.
        env.start_promotion(spec("REV-B", &["R1"], 22..26, 4.0, 3.0)).await.unwrap();
        let text = failure_text(&env, "REV-B").await;
        // Indexes 22..26 are SKU-00023..26; REV-A now holds SKU-00021..24.
        assert!(text.contains("SKU-00023 collides with promotion REV-A in R1"), "{text}");
        assert!(text.contains("SKU-00024 collides with promotion REV-A in R1"), "{text}");
        assert!(!text.contains("SKU-00025"), "{text}");
        env.start_promotion(spec("REV-C", &["R1"], 0..4, 4.0, 3.0)).await.unwrap();
        env.wait_status("REV-C", "approval", LIMIT, |s| s.stage() == Stage::Approval).await.unwrap();
        for id in ["REV-A", "REV-C"] {
            operator_update(&env, id, "cancel").await.unwrap();
            assert_eq!(env.result(id).await.unwrap().outcome(), Outcome::Cancelled);
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_sooner_than_the_approval_lead_time_is_refused_at_intake() {
    // The test policy's approval lead is 12 business hours; this launch is 6 hours away. On a
    // clock 3,600 times faster (not the tests' 43,200), so the launch is still 6 s ahead when a
    // loaded machine gets to the intake.
    let env = PromoEnv::start(Policy { time_scale: 3_600, ..test_policy() }).await.unwrap();
    let text = env
        .with_worker(async {
            env.start_promotion(spec("LEAD-1", &["R1"], 0..4, 0.25, 2.0)).await.unwrap();
            let text = failure_text(&env, "LEAD-1").await;
            let s = env.wait_status("LEAD-1", "done", LIMIT, |s| s.stage() == Stage::Done).await.unwrap();
            // Refused at intake: it never waited for an approval it could not get in time.
            assert!(s.timeline.iter().all(|t| t.stage() != Stage::Approval), "{s:?}");
            text
        })
        .await
        .unwrap();
    assert!(text.contains("InvalidSpec"), "{text}");
    assert!(text.contains("window.starts_at"), "{text}");
    assert!(text.contains("sooner than the approval lead time of 12h"), "{text}");
    assert!(text.contains("the earliest possible launch is "), "{text}");
}

/// A pause and a resume while the launch gate waits for its re-check wake the wait, and the
/// gate waits out the rest on the timer it started (patch `quiet-history`): the history holds
/// one re-check timer, which fires — none cancelled and started again for the same instant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_and_resume_at_the_launch_gate_keep_its_timer() {
    const GATE: &str = "wait for the final readiness re-check";
    let env = PromoEnv::start(test_policy()).await.unwrap();
    let id = "GATE-KEPT-1";
    let result = env
        .with_worker(async {
            // Launch 5 business days ahead (10 s of wall time): the gate waits a few seconds.
            env.start_promotion(spec(id, &["R1"], 0..4, 5.0, 1.0)).await.unwrap();
            env.wait_status(id, "approval", LIMIT, |s| s.stage() == Stage::Approval).await.unwrap();
            env.approve(id, "E1001", Role::Merchandising).await.unwrap();
            env.wait_status(id, "launch gate", LIMIT, |s| s.stage() == Stage::LaunchGate).await.unwrap();
            for action in ["pause", "resume"] {
                let answer = operator_update(&env, id, action).await;
                assert!(answer.is_ok(), "{action}: {answer:?}");
            }
            let r = env.result(id).await.unwrap();
            assert_no_failed_task(&env, id).await;
            (r, env.audit(id).await.unwrap())
        })
        .await
        .unwrap();
    let (result, trail) = result;
    assert_eq!(result.outcome(), Outcome::Completed);
    let order: Vec<&str> = trail
        .entries
        .iter()
        .map(|e| e.action.as_str())
        .filter(|a| ["pause", "resume", "readiness-recheck"].contains(a))
        .collect();
    assert_eq!(order, ["pause", "resume", "readiness-recheck"], "{trail:#?}");
    let events = history(&env, id).await;
    let summary = |e: &HistoryEvent| {
        e.user_metadata
            .as_ref()
            .and_then(|m| m.summary.as_ref())
            .and_then(|p| serde_json::from_slice::<String>(&p.data).ok())
            .unwrap_or_default()
    };
    let started: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.attributes {
            Some(Attributes::TimerStartedEventAttributes(a)) if summary(e) == GATE => {
                Some(a.timer_id.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(started.len(), 1, "one re-check timer: {started:?}");
    let (fired, cancelled) = events.iter().fold((0, 0), |(f, c), e| match &e.attributes {
        Some(Attributes::TimerFiredEventAttributes(a)) if a.timer_id == started[0] => (f + 1, c),
        Some(Attributes::TimerCanceledEventAttributes(a)) if a.timer_id == started[0] => (f, c + 1),
        _ => (f, c),
    });
    assert_eq!((fired, cancelled), (1, 0), "the re-check timer fires and is never cancelled");
}
