//! Bounded history, forever — on the time-skipping server, with the production clock: a
//! promotion monitored daily for two years, one that receives 10,000 refused signals, and one
//! whose compensation retries for 30 business days. Each continues as new whenever its history
//! passes the policy's budget, keeps every run under it (plus the last stage step's events),
//! loses no entry of its audit trail (the record holds entries 1 ..= total, each once), and ends
//! as it should with nothing of it live.

use futures::StreamExt;
use promo_contracts::{
    promo::v1::*,
    retail::v1::{ClearFaultsRequest, Fault, InjectFaultRequest, admin_service_client::AdminServiceClient},
};
use promo_tests::{
    env::{decision, small_systems, spec, worker_options},
    promises,
    temporal::{TimeSkippingServer, run_worker_until, start_time_skipping_server},
};
use promo_workflows::{PromotionWorkflow, api, policy::Policy};
use std::time::{Duration, Instant, UNIX_EPOCH};
use temporalio_client::{
    Client, WorkflowExecuteUpdateOptions, WorkflowGetResultOptions, WorkflowHandle, WorkflowQueryOptions,
    WorkflowSignalOptions,
};

const DAY: i64 = 86_400;

/// The production policy with a small history budget, unsigned messages (signing is tested
/// elsewhere) and the default directory.
fn policy(max_events: u32) -> Policy {
    let mut p = Policy { require_signatures: false, ..Policy::default() };
    p.history.max_events = max_events;
    p
}

/// How far past the budget a run may go: the events of the stage step that crossed it, up to
/// its checkpoint.
const SLACK: usize = 150;

async fn status(h: &WorkflowHandle<Client, PromotionWorkflow>) -> PromotionStatus {
    h.query(PromotionWorkflow::status, (), WorkflowQueryOptions::default()).await.expect("status")
}

/// Polls (time locked) until the promotion awaits approval.
async fn at_approval(h: &WorkflowHandle<Client, PromotionWorkflow>) -> PromotionStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = h.query(PromotionWorkflow::status, (), WorkflowQueryOptions::default()).await;
        if let Ok(s) = &s
            && s.stage() == Stage::Approval
        {
            return s.clone();
        }
        assert!(Instant::now() < deadline, "never reached approval: {s:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn approve(h: &WorkflowHandle<Client, PromotionWorkflow>) {
    let d = decision("E1001", Role::Merchandising, "go");
    h.execute_update(
        PromotionWorkflow::approve,
        serde_json::to_value(d).unwrap(),
        WorkflowExecuteUpdateOptions::default(),
    )
    .await
    .expect("approved");
}

/// Approves, lets the clock run to the end; the result and the audit trail's tail.
async fn approve_and_finish(
    server: &TimeSkippingServer,
    h: &WorkflowHandle<Client, PromotionWorkflow>,
) -> (PromotionResult, AuditTrail) {
    approve(h).await;
    server.unlock().await.unwrap();
    let result = h.get_result(WorkflowGetResultOptions::default()).await;
    server.lock().await.unwrap();
    (result.unwrap(), h.query(PromotionWorkflow::audit, (), WorkflowQueryOptions::default()).await.unwrap())
}

/// Every run of the chain under the budget, none failed; returns the runs' lengths.
async fn runs_under_budget(client: &Client, id: &str, budget: u32) -> Vec<usize> {
    let runs = promises::no_failed_task(client, id).await.unwrap_or_else(|e| panic!("{e}"));
    for (i, n) in runs.iter().enumerate() {
        assert!(
            *n <= budget as usize + SLACK,
            "{id}: run {} of {} has {n} events: {runs:?}",
            i + 1,
            runs.len()
        );
    }
    runs
}

async fn start(client: &Client, s: &PromotionSpec) -> WorkflowHandle<Client, PromotionWorkflow> {
    client
        .start_workflow(PromotionWorkflow::run, s.clone().into(), api::start_options(api::TASK_QUEUE, s))
        .await
        .expect("started");
    client.get_workflow_handle::<PromotionWorkflow>(api::workflow_id(&s.promotion_id))
}

async fn server_now(server: &TimeSkippingServer) -> i64 {
    server.now().await.unwrap().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_monitored_daily_for_two_years_keeps_every_run_under_its_budget() {
    let wall = Instant::now();
    let server = start_time_skipping_server().await.unwrap();
    let client = server.client();
    let systems = small_systems().await.unwrap();
    let budget = 400;
    // No store holds two years of promotional demand: the fill-rate floor is off, as it would be
    // for an everyday-low-price line that is replenished as it sells.
    let p = Policy { min_fill_rate: "0".into(), ..policy(budget) };
    let s = spec("TWO-YEARS", &["R1"], 0..3, 3.0, 730.0);
    let (result, trail) = run_worker_until(&client, worker_options(&systems.url(), &p).unwrap(), async {
        let h = start(&client, &s).await;
        at_approval(&h).await;
        approve_and_finish(&server, &h).await
    })
    .await
    .unwrap();
    assert_eq!(result.outcome(), Outcome::Completed, "{result:?}");
    let runs = runs_under_budget(&client, "TWO-YEARS", budget).await;
    let actions =
        promises::audit_recorded(&systems.url(), "TWO-YEARS", &trail).await.unwrap_or_else(|e| panic!("{e}"));
    let rounds = actions.get("monitor").copied().unwrap_or(0);
    println!(
        "two years monitored daily: {rounds} rounds, {} runs of {runs:?} events, {} audit entries, in {:?}",
        runs.len(),
        trail.total_entries,
        wall.elapsed()
    );
    assert!(rounds >= 720, "a round a day for 730 days: {rounds} ({actions:?})");
    assert!(runs.len() >= 2, "the chain continued as new: {runs:?}");
    promises::nothing_live(&systems.url(), "TWO-YEARS", true).await.unwrap_or_else(|e| panic!("{e}"));
    systems.stop().await;
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_refused_signals_keep_every_run_under_its_budget_and_each_refusal_in_the_record() {
    let server = start_time_skipping_server().await.unwrap();
    let client = server.client();
    let systems = small_systems().await.unwrap();
    let budget = 2_000;
    let p = policy(budget);
    let s = spec("FLOOD", &["R1"], 0..3, 3.0, 2.0);
    // PROMO_FLOOD_SIGNALS sets another number (to measure); the guarantee is for 10,000.
    let signals: usize =
        std::env::var("PROMO_FLOOD_SIGNALS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    // Sent in bursts (32 at a time within one): Temporal refuses a run's hand-over while
    // messages keep arriving (the task that would continue it as new is failed with
    // UNHANDLED_COMMAND and retried with them), so a run hands over at the first pause after
    // its budget, and an unbroken burst can carry it that many events past it.
    const BURST: usize = 500;
    let (result, trail) = run_worker_until(&client, worker_options(&systems.url(), &p).unwrap(), async {
        let h = start(&client, &s).await;
        at_approval(&h).await;
        // Someone outside the directory, ten thousand times (time stays locked: the approval
        // waits).
        for burst in (0..signals).collect::<Vec<_>>().chunks(BURST) {
            let sent = futures::stream::iter(burst.iter().copied())
                .map(|i| {
                    let h = h.clone();
                    async move {
                        let d = decision("E9999", Role::Merchandising, &format!("attempt {i}"));
                        let input = serde_json::to_value(d).unwrap();
                        h.signal(PromotionWorkflow::approve_signal, input, WorkflowSignalOptions::default())
                            .await
                            .is_ok()
                    }
                })
                .buffer_unordered(32)
                .filter(|ok| futures::future::ready(*ok))
                .count()
                .await;
            assert_eq!(sent, burst.len());
            quiet(&client, "FLOOD").await;
        }
        approve_and_finish(&server, &h).await
    })
    .await
    .unwrap();
    assert_eq!(result.outcome(), Outcome::Completed, "{result:?}");
    let runs = promises::no_failed_task(&client, "FLOOD").await.unwrap_or_else(|e| panic!("{e}"));
    for (i, n) in runs.iter().enumerate() {
        assert!(
            *n <= budget as usize + BURST + SLACK,
            "run {} of {} has {n} events: {runs:?}",
            i + 1,
            runs.len()
        );
    }
    assert!(runs.len() >= signals / budget as usize, "the signals took several runs: {runs:?}");
    let actions =
        promises::audit_recorded(&systems.url(), "FLOOD", &trail).await.unwrap_or_else(|e| panic!("{e}"));
    let refused = actions.get("approve-refused").copied().unwrap_or(0);
    println!(
        "{signals} refused signals: {refused} in the record on {} entries, {} runs of {runs:?} events",
        trail.total_entries,
        runs.len()
    );
    assert_eq!(refused, signals as u64, "every refusal is in the record: {actions:?}");
    systems.stop().await;
    server.shutdown().await.unwrap();
}

/// Waits until the promotion's current run has taken every message sent: its history stops
/// growing and no workflow task is pending.
async fn quiet(client: &Client, id: &str) {
    let h = client.get_workflow_handle::<PromotionWorkflow>(api::workflow_id(id));
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = (String::new(), 0);
    loop {
        let d = h.describe(temporalio_client::WorkflowDescribeOptions::default()).await.unwrap();
        let now = (d.run_id().to_owned(), d.history_length());
        if now == last && d.raw_description.pending_workflow_task.is_none() {
            return;
        }
        assert!(Instant::now() < deadline, "{id} never settled: {now:?}");
        last = now;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compensation_retried_for_thirty_business_days_keeps_every_run_under_its_budget() {
    let server = start_time_skipping_server().await.unwrap();
    let client = server.client();
    let systems = small_systems().await.unwrap();
    let budget = 150;
    let mut p = policy(budget);
    // Three days between tries once the pauses have grown: 30 days are some 25 tries, each a
    // few seconds of wall clock (the calls' own quick retries).
    p.durations.outage_retry_max = "3d".parse().unwrap();
    p.compensation_attempts = 1;
    let s = spec("LONG-UNDO", &["R1"], 0..3, 3.0, 10.0);
    let mut admin = AdminServiceClient::connect(systems.url()).await.unwrap();
    let (result, trail, pending_days) =
        run_worker_until(&client, worker_options(&systems.url(), &p).unwrap(), async {
            let h = start(&client, &s).await;
            at_approval(&h).await;
            approve(&h).await;
            // Published and waiting for launch (the clock held, so the wait cannot skip past the
            // window), then the channels stop taking withdrawals, and an operator cancels.
            let deadline = Instant::now() + Duration::from_secs(120);
            while status(&h).await.stage() != Stage::LaunchGate {
                assert!(Instant::now() < deadline, "never reached the launch gate");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // UNAVAILABLE: an outage, which the sweep retries until the channel is back.
            let fault = Fault {
                service: "publication".into(),
                method: "Withdraw".into(),
                error_rate: "1".into(),
                error_code: "UNAVAILABLE".into(),
                ..Default::default()
            };
            admin.inject_fault(InjectFaultRequest { fault: Some(fault) }).await.unwrap();
            let cancel = OperatorAction {
                operator_id: "E4001".into(),
                reason: "supplier recall".into(),
                ..Default::default()
            };
            h.execute_update(
                PromotionWorkflow::cancel,
                serde_json::to_value(cancel).unwrap(),
                WorkflowExecuteUpdateOptions::default(),
            )
            .await
            .unwrap();
            // Thirty business days of a compensation that cannot finish.
            let from = server_now(&server).await;
            println!("cancelled at {from}; the channels refuse withdrawals for 30 days");
            server.unlock().await.unwrap();
            let deadline = Instant::now() + Duration::from_secs(600);
            let pending_days = loop {
                let st = status(&h).await;
                let pending =
                    st.open_exceptions.iter().any(|e| e.kind() == ExceptionKind::CompensationPending);
                let days = (server_now(&server).await - from) / DAY;
                if pending && days >= 30 {
                    break days;
                }
                if Instant::now() > deadline || days > 60 {
                    let tail = promises::history_tail(&client, "LONG-UNDO", 40).await;
                    panic!(
                        "30 days did not pass with the compensation pending: day {days}, {st:#?}; {tail:#?}"
                    );
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            server.lock().await.unwrap();
            admin.clear_faults(ClearFaultsRequest {}).await.unwrap();
            server.unlock().await.unwrap();
            let result = h.get_result(WorkflowGetResultOptions::default()).await;
            server.lock().await.unwrap();
            let trail = h.query(PromotionWorkflow::audit, (), WorkflowQueryOptions::default()).await.unwrap();
            (result.unwrap(), trail, pending_days)
        })
        .await
        .unwrap();
    assert_eq!(result.outcome(), Outcome::Cancelled, "{result:?}");
    let runs = runs_under_budget(&client, "LONG-UNDO", budget).await;
    let actions =
        promises::audit_recorded(&systems.url(), "LONG-UNDO", &trail).await.unwrap_or_else(|e| panic!("{e}"));
    println!(
        "compensation pending {pending_days} days: {} runs of {runs:?} events; audit {actions:?}",
        runs.len()
    );
    assert!(runs.len() >= 2, "the chain continued as new while it retried: {runs:?}");
    promises::nothing_live(&systems.url(), "LONG-UNDO", false).await.unwrap_or_else(|e| panic!("{e}"));
    systems.stop().await;
    server.shutdown().await.unwrap();
}
