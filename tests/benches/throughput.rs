//! Lifecycle throughput: N small promotions (default 1,000; set `PROMO_BENCH_LIFECYCLES`) started
//! concurrently on an isolated dev server and run to COMPLETED by one `promo-worker` process (the
//! release binary, a separate OS process), with scripted approvers. Reports lifecycles/s, p50/p95
//! of start → awaiting approval and of final approval → launch, and the CPU time of the worker and
//! of the dev server over the same run. Target: the worker uses ≤ 10% of the server's CPU.
//!
//! - **Promotions**: 2 SKUs × 2 stores of R1 (the small dataset's clean region), 20% off, POS and
//!   store comms, a 12-business-hour (1 s) window opening `PROMO_BENCH_LEAD_DAYS` business days
//!   (default 180, i.e. 6 minutes of wall time at the test policy's 43,200×) after the start: the
//!   dev server takes a few minutes to bring 1,000 promotions to approval, and a promotion
//!   approved after its deadline expires, one whose gate opens after its window never launches. The worker checks
//!   collisions through visibility, so the promotions are made disjoint instead of being refused:
//!   40 (store pair, SKU pair) combinations, and promotions sharing one get consecutive windows.
//!   The check itself still runs in full — every intake lists the running promotions of R1 and
//!   reads their footprints from the listing's memo — and its cost is part of what is measured.
//! - **Policy**: the test policy (one business day = 2 s), with the approval reminder and
//!   escalation moved out of reach (at 43,200× a 4-hour reminder is 0.3 s, and would fire on every
//!   promotion while its approver's update is in flight) and approvals due 2 business hours
//!   before launch.
//! - **Approvers**: one task lists `PromotionStage = 'APPROVAL'` once a second and sends the
//!   `approve` update for each role in a listed promotion's `PendingApprovals`, as that role's
//!   approver (once each). The bench's own visibility calls (this listing, and counting closed
//!   promotions every 2 s) are kept few: the dev server allows a namespace 10 visibility calls
//!   per second, and every intake's collision check needs one.
//! - **Timings** come from each promotion's history, fetched after the CPU figures are taken: the
//!   server's event times of the start, of the search-attribute upsert that moved
//!   `PromotionStage` to `APPROVAL` and to `ACTIVE`, and of the last accepted `approve` update. The
//!   status query's stage timeline has the same transitions but in whole seconds of workflow time,
//!   too coarse for sub-second latencies; client-side polling would add its interval.
//! - **CPU**: user + system time from `/proc` of the worker, of the dev server and of this process
//!   (the client, the approvers and the reference systems, which run in here), from just before
//!   the first start until the last promotion closed.
//!
//! Build the worker first (the bench runs `target/release/promo-worker`):
//! `cargo build --release -p promo-worker && cargo bench -p promo-tests --bench throughput`.
//! `PROMO_MAX_CACHED_WORKFLOWS` sets the worker's cache (its default when unset).

use anyhow::{Context as _, anyhow};
use futures::{StreamExt, stream};
use promo_contracts::promo::v1::{Outcome, PromotionResult, Role};
use promo_tests::{
    env::{decision, small_systems, spec, test_policy, update_message},
    process::{WorkerConfig, WorkerProcess, cpu_ms},
    temporal::{NAMESPACE, start_dev_server},
};
use promo_workflows::{PromotionWorkflow, api, policy::Policy};
use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};
use temporalio_client::{
    Client, WorkflowCountOptions, WorkflowExecuteUpdateOptions, WorkflowFetchHistoryOptions,
    WorkflowListOptions, tonic::IntoRequest,
};
use temporalio_common::protos::temporal::api::{
    enums::v1::TaskQueueType,
    history::v1::{HistoryEvent, history_event::Attributes},
    taskqueue::v1::TaskQueue,
    workflowservice::v1::DescribeTaskQueueRequest,
};

/// Length of each promotion's window, in business hours.
const WINDOW_HOURS: f64 = 12.0;
/// Disjoint (store pair, SKU pair) combinations: 2 pairs of R1's stores × 20 pairs of SKUs.
const COMBOS: usize = 40;
/// Client calls in flight at once (starts, updates, history fetches).
const CONCURRENCY: usize = 64;
/// Who approves for each role that can be pending (the test policy's directory).
const APPROVERS: [(&str, &str, Role); 3] = [
    ("MERCHANDISING", "E1001", Role::Merchandising),
    ("FINANCE", "E2001", Role::Finance),
    ("SUPPLY_CHAIN", "E3001", Role::SupplyChain),
];

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The `i`-th promotion: its own (store pair, SKU pair), and a window after those of the
/// promotions sharing them, so no two collide.
fn promotion(i: usize, lead_days: f64) -> promo_contracts::promo::v1::PromotionSpec {
    let (combo, slot) = (i % COMBOS, i / COMBOS);
    let skus = 2 * (combo / 2)..2 * (combo / 2) + 2;
    let day = WINDOW_HOURS / 24.0;
    let mut s = spec(&format!("TP-{i:05}"), &[], skus, lead_days + slot as f64 * day, day);
    s.stores = if combo % 2 == 0 {
        vec!["S0001".into(), "S0002".into()]
    } else {
        vec!["S0003".into(), "S0004".into()]
    };
    s
}

fn bench_policy() -> anyhow::Result<Policy> {
    let mut p = test_policy();
    let span = |s: &str| s.parse().map_err(anyhow::Error::msg);
    p.durations.approval_reminder = span("400d")?;
    p.durations.approval_escalation = span("400d")?;
    p.durations.approval_deadline_before_launch = span("2h")?;
    Ok(p)
}

/// Waits until the worker polls both the workflow and the activity task queue, so its start-up
/// CPU is not counted in the run.
async fn wait_for_pollers(client: &Client, worker: &mut WorkerProcess) -> anyhow::Result<()> {
    let t = Instant::now();
    for kind in [TaskQueueType::Workflow, TaskQueueType::Activity] {
        loop {
            let r = client
                .connection()
                .workflow_service()
                .describe_task_queue(
                    DescribeTaskQueueRequest {
                        namespace: NAMESPACE.to_owned(),
                        task_queue: Some(TaskQueue {
                            name: api::TASK_QUEUE.to_owned(),
                            ..Default::default()
                        }),
                        task_queue_type: kind as i32,
                        ..Default::default()
                    }
                    .into_request(),
                )
                .await
                .context("describing the task queue")?;
            if !r.into_inner().pollers.is_empty() {
                break;
            }
            worker.check_alive()?;
            anyhow::ensure!(
                t.elapsed() < Duration::from_secs(60),
                "the worker did not poll {kind:?} within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// Scripted approvers: until `stop`, approve every promotion that visibility lists as waiting,
/// for each role its `PendingApprovals` names, as that role's approver, once per (role,
/// promotion). One listing per second: the dev server allows a namespace 10 visibility calls per
/// second (`frontend.namespaceRPS.visibility`), which every intake's collision check also uses.
/// Returns refusals seen.
async fn approvers(client: Client, stop: Arc<AtomicBool>, sent: Arc<AtomicUsize>) -> Vec<String> {
    let done: Arc<Mutex<HashSet<(usize, String)>>> = Arc::default();
    let refusals: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut in_flight = tokio::task::JoinSet::new();
    let query = format!("WorkflowType = '{}' AND PromotionStage = 'APPROVAL'", api::WORKFLOW_TYPE);
    while !stop.load(Ordering::Relaxed) {
        let mut listed = client.list_workflows(query.as_str(), WorkflowListOptions::default());
        while let Some(w) = listed.next().await {
            let Ok(w) = w else { break };
            let id = w.id().to_owned();
            let pending = w.search_attributes().get(&api::PENDING_APPROVALS).unwrap_or_default();
            for (k, (role, approver, r)) in APPROVERS.iter().enumerate() {
                if !pending.iter().any(|p| p == role) || !done.lock().expect("lock").insert((k, id.clone())) {
                    continue;
                }
                while in_flight.len() >= CONCURRENCY {
                    in_flight.join_next().await;
                }
                let (client, done, refusals, sent, id) =
                    (client.clone(), done.clone(), refusals.clone(), sent.clone(), id.clone());
                let (approver, r) = (*approver, *r);
                in_flight.spawn(async move {
                    let answer = client
                        .get_workflow_handle::<PromotionWorkflow>(id.clone())
                        .execute_update(
                            PromotionWorkflow::approve,
                            serde_json::to_value(decision(approver, r, "bench")).expect("serialisable"),
                            WorkflowExecuteUpdateOptions::default(),
                        )
                        .await;
                    match update_message(answer) {
                        Ok(_) => {
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                        // Not an answer from the workflow: try again on the next listing.
                        Err(e) if e.starts_with("update error") => {
                            done.lock().expect("lock").remove(&(k, id));
                        }
                        Err(e) => refusals.lock().expect("lock").push(format!("{id}: {e}")),
                    }
                });
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    while in_flight.join_next().await.is_some() {}
    std::mem::take(&mut *refusals.lock().expect("lock"))
}

/// What one promotion's history says, times in Unix seconds (server event times).
#[derive(Debug, Default)]
struct Timings {
    started: f64,
    approval_reached: Option<f64>,
    last_approval: Option<f64>,
    active: Option<f64>,
    closed: Option<f64>,
    outcome: Option<Outcome>,
    failure: Option<String>,
    workflow_tasks: usize,
    activities: usize,
    events: usize,
    /// The history's size and its largest event, encoded bytes.
    bytes: usize,
    largest: usize,
}

fn secs(e: &HistoryEvent) -> f64 {
    e.event_time.as_ref().map_or(0.0, |t| t.seconds as f64 + f64::from(t.nanos) / 1e9)
}

fn timings(events: &[HistoryEvent]) -> Timings {
    let sizes = events.iter().map(prost::Message::encoded_len);
    let mut t = Timings {
        events: events.len(),
        bytes: sizes.clone().sum(),
        largest: sizes.max().unwrap_or(0),
        ..Default::default()
    };
    for e in events {
        match &e.attributes {
            Some(Attributes::WorkflowExecutionStartedEventAttributes(_)) => t.started = secs(e),
            Some(Attributes::WorkflowTaskCompletedEventAttributes(_)) => t.workflow_tasks += 1,
            Some(Attributes::ActivityTaskScheduledEventAttributes(_)) => t.activities += 1,
            Some(Attributes::UpsertWorkflowSearchAttributesEventAttributes(a)) => {
                let stage = a
                    .search_attributes
                    .as_ref()
                    .and_then(|s| s.indexed_fields.get("PromotionStage"))
                    .and_then(|p| serde_json::from_slice::<String>(&p.data).ok());
                match stage.as_deref() {
                    Some("APPROVAL") if t.approval_reached.is_none() => t.approval_reached = Some(secs(e)),
                    Some("ACTIVE") if t.active.is_none() => t.active = Some(secs(e)),
                    _ => {}
                }
            }
            Some(Attributes::WorkflowExecutionUpdateAcceptedEventAttributes(a))
                if a.accepted_request.as_ref().and_then(|r| r.input.as_ref()).map(|i| i.name.as_str())
                    == Some(api::names::APPROVE) =>
            {
                t.last_approval = Some(secs(e));
            }
            Some(Attributes::WorkflowExecutionCompletedEventAttributes(a)) => {
                t.closed = Some(secs(e));
                t.outcome = a
                    .result
                    .as_ref()
                    .and_then(|p| p.payloads.first())
                    .and_then(|p| serde_json::from_slice::<PromotionResult>(&p.data).ok())
                    .map(|r| r.outcome());
            }
            Some(Attributes::WorkflowExecutionFailedEventAttributes(a)) => {
                t.closed = Some(secs(e));
                let mut chain = Vec::new();
                let mut f = a.failure.as_ref();
                while let Some(x) = f {
                    chain.push(x.message.clone());
                    f = x.cause.as_deref();
                }
                t.failure = Some(chain.join(": "));
            }
            Some(
                Attributes::WorkflowExecutionTimedOutEventAttributes(_)
                | Attributes::WorkflowExecutionTerminatedEventAttributes(_),
            ) => t.closed = Some(secs(e)),
            _ => {}
        }
    }
    t
}

/// p50 and p95 (nearest rank) of `v`, in milliseconds.
fn percentiles(mut v: Vec<f64>) -> (f64, f64, usize) {
    v.sort_by(f64::total_cmp);
    let at =
        |q: f64| v.get(((q * v.len() as f64).ceil() as usize).saturating_sub(1)).copied().unwrap_or(f64::NAN);
    (at(0.50) * 1e3, at(0.95) * 1e3, v.len())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let n: usize = env_or("PROMO_BENCH_LIFECYCLES", 1000);
    let lead_days: f64 = env_or("PROMO_BENCH_LEAD_DAYS", 180.0);
    let max_cached: Option<usize> =
        std::env::var("PROMO_MAX_CACHED_WORKFLOWS").ok().and_then(|v| v.parse().ok());
    let dev = start_dev_server().await?;
    let client = dev.client();
    let server_pid = dev.pid().ok_or_else(|| anyhow!("the dev server has no process id"))?;
    let systems = small_systems().await?;
    let policy = bench_policy()?;
    let dir = std::env::temp_dir().join(format!("promo-throughput-{}", std::process::id()));
    let mut worker = WorkerProcess::spawn(WorkerConfig {
        temporal_address: dev.address(),
        systems_url: systems.url(),
        policy: policy.clone(),
        max_cached_workflows: max_cached,
        dir: dir.clone(),
        extra_args: vec![],
    })?;
    wait_for_pollers(&client, &mut worker).await?;

    let me = std::process::id();
    let cpu0 = (worker.cpu_ms()?, cpu_ms(server_pid)?, cpu_ms(me)?);
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let approved = Arc::new(AtomicUsize::new(0));
    let approving = tokio::spawn(approvers(client.clone(), stop.clone(), approved.clone()));
    let started: Vec<anyhow::Result<()>> = stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            async move {
                let s = promotion(i, lead_days);
                let o = api::start_options(api::TASK_QUEUE, &s);
                client
                    .start_workflow(PromotionWorkflow::run, s.into(), o)
                    .await
                    .map(drop)
                    .map_err(anyhow::Error::from)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    started.into_iter().collect::<anyhow::Result<Vec<()>>>().context("starting promotions")?;
    let all_started = t0.elapsed();

    let closed = format!("WorkflowType = '{}' AND ExecutionStatus != 'Running'", api::WORKFLOW_TYPE);
    let limit = Duration::from_secs(env_or("PROMO_BENCH_LIMIT_SECS", 3600));
    let mut last_report = Instant::now();
    loop {
        let c = client.count_workflows(closed.as_str(), WorkflowCountOptions::default()).await?.count();
        if c >= n {
            break;
        }
        worker.check_alive()?;
        anyhow::ensure!(t0.elapsed() < limit, "only {c} of {n} promotions closed after {limit:?}");
        if last_report.elapsed() > Duration::from_secs(30) {
            eprintln!(
                "  … {:.0} s: {c} of {n} closed, {} approvals given",
                t0.elapsed().as_secs_f64(),
                approved.load(Ordering::Relaxed)
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let run = t0.elapsed();
    let cpu1 = (worker.cpu_ms()?, cpu_ms(server_pid)?, cpu_ms(me)?);
    stop.store(true, Ordering::Relaxed);
    let refusals = approving.await?;

    // Everything below is after the CPU figures: fetching 1,000 histories costs the server too.
    let histories: Vec<anyhow::Result<Timings>> = stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            async move {
                let id = api::workflow_id(&format!("TP-{i:05}"));
                let events = client
                    .get_workflow_handle::<PromotionWorkflow>(id.clone())
                    .fetch_history(WorkflowFetchHistoryOptions::default())
                    .into_events()
                    .await
                    .with_context(|| format!("fetching the history of {id}"))?;
                Ok(timings(&events))
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let all: Vec<Timings> = histories.into_iter().collect::<anyhow::Result<_>>()?;

    let completed = all.iter().filter(|t| t.outcome == Some(Outcome::Completed)).count();
    let launched = all.iter().filter(|t| t.active.is_some()).count();
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for t in &all {
        *outcomes
            .entry(t.outcome.map_or("no result (failed)".into(), |o| o.as_str_name().to_owned()))
            .or_default() += 1;
    }
    let first_start = all.iter().map(|t| t.started).fold(f64::INFINITY, f64::min);
    let last_close = all.iter().filter_map(|t| t.closed).fold(0.0, f64::max);
    let span = last_close - first_start;
    let to_approval = percentiles(all.iter().filter_map(|t| Some(t.approval_reached? - t.started)).collect());
    let to_launch = percentiles(all.iter().filter_map(|t| Some(t.active? - t.last_approval?)).collect());
    let per = |total: f64| total / n as f64;
    let (worker_ms, server_ms, me_ms) = (cpu1.0 - cpu0.0, cpu1.1 - cpu0.1, cpu1.2 - cpu0.2);
    let avg = |f: fn(&Timings) -> usize| all.iter().map(f).sum::<usize>() as f64 / n as f64;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    println!(
        "throughput: {n} promotions (2 SKUs × 2 stores of R1, {WINDOW_HOURS}-business-hour windows opening \
         {lead_days} business days = {:.0} s after start) on one promo-worker process caching {} \
         (dev server, small dataset, 1 business day = {:.0} s)",
        lead_days * 86_400.0 / f64::from(policy.time_scale),
        max_cached.map_or_else(
            || format!("the default {}", promo_worker::DEFAULT_MAX_CACHED_WORKFLOWS),
            |c| c.to_string()
        ),
        86_400.0 / f64::from(policy.time_scale),
    );
    println!("  load average at the end: {}", load.trim());
    println!(
        "  outcomes: {outcomes:?}; approvals given {}; refused {}",
        approved.load(Ordering::Relaxed),
        refusals.len()
    );
    for r in refusals.iter().take(5) {
        println!("    refused: {r}");
    }
    let failures: std::collections::BTreeSet<&str> =
        all.iter().filter_map(|t| t.failure.as_deref()).collect();
    for f in failures.iter().take(5) {
        println!("    failed: {f}");
    }
    println!(
        "  all {n} started in {:.1} s; all closed {:.1} s after the bench began",
        all_started.as_secs_f64(),
        run.as_secs_f64()
    );
    println!(
        "  lifecycles/s: {:.2}   ({completed} COMPLETED, {launched} of them launched; {span:.1} s from the first start to the last close)",
        completed as f64 / span
    );
    println!(
        "  start → awaiting approval      p50 {:>8.0} ms   p95 {:>8.0} ms   ({} promotions)",
        to_approval.0, to_approval.1, to_approval.2
    );
    println!(
        "  final approval → launch        p50 {:>8.0} ms   p95 {:>8.0} ms   ({} promotions)",
        to_launch.0, to_launch.1, to_launch.2
    );
    println!(
        "  per lifecycle: {:.1} workflow tasks, {:.1} activities, {:.1} history events",
        avg(|t| t.workflow_tasks),
        avg(|t| t.activities),
        avg(|t| t.events)
    );
    println!(
        "  history per lifecycle: {:.1} KB on average; largest event {:.1} KB (largest of all: {:.1} KB)",
        avg(|t| t.bytes) / 1024.0,
        avg(|t| t.largest) / 1024.0,
        all.iter().map(|t| t.largest).max().unwrap_or(0) as f64 / 1024.0
    );
    println!("  CPU over the run (ms)          total   per lifecycle");
    println!("    promo-worker            {worker_ms:>10.0}   {:>13.1}", per(worker_ms));
    println!("    dev server              {server_ms:>10.0}   {:>13.1}", per(server_ms));
    println!("    client + reference systems {me_ms:>7.0}   {:>13.1}", per(me_ms));
    let ratio = worker_ms / server_ms;
    println!(
        "  worker / server CPU: {:.1}%   (target: ≤ 10%: {})",
        ratio * 100.0,
        if ratio <= 0.10 {
            "met".to_owned()
        } else {
            format!("missed by {:.1} points, {:.1}× the budget", ratio * 100.0 - 10.0, ratio / 0.10)
        }
    );
    println!("  worker log: {}", dir.display());
    drop(worker);
    systems.stop().await;
    dev.shutdown().await?;
    Ok(())
}
