//! Lifecycle throughput: N small promotions (default 1,000; set `PROMO_BENCH_LIFECYCLES`) run to
//! COMPLETED on an isolated dev server by one `promo-worker` process (a release binary, a
//! separate OS process), with scripted approvers. Reports lifecycles/s, the rate closes kept up,
//! p50/p95 of start → awaiting approval, of final approval → launch and of window opening →
//! launch, history events and bytes per lifecycle, and the CPU time of the worker and of the dev
//! server over the same run.
//!
//! - **Two workers, back to back**: with `PROMO_BASELINE_WORKER_BIN` set to another build's
//!   `promo-worker`, the bench runs it first and this build's second, each on a fresh dev server
//!   and fresh reference systems with the same promotions and pace, and prints them side by side.
//! - **Pace**: all N started at once (the default), or `PROMO_BENCH_RATE` per second, evenly
//!   spaced (open loop: the starts do not wait for the system). All at once measures how fast a
//!   burst drains; at a steady rate, whether the worker and server keep up — launches inside
//!   their windows, start → approval steady instead of growing — and the closes per second
//!   between the first and the last close are the rate they kept.
//! - **Promotions**: 2 SKUs × 2 stores of R1 (the small dataset's clean region), 20% off, POS and
//!   store comms, a 12-business-hour (1 s) window opening `PROMO_BENCH_LEAD_DAYS` business days
//!   after the start (default 180, 6 minutes of wall time at the test policy's 43,200×, when all
//!   start at once: the dev server takes minutes to bring 1,000 to approval; 30, one minute, at
//!   a steady rate). A promotion whose gate opens after its window never launches. Intake
//!   reserves each footprint in the ERP's calendar (older builds: checks collisions through
//!   visibility), so the promotions are made disjoint instead of being refused: 40 (store pair,
//!   SKU pair) combinations, and promotions sharing one get consecutive windows.
//! - **Policy**: the test policy (one business day = 2 s), with the approval reminder and
//!   escalation moved out of reach (at 43,200× a 4-hour reminder is 0.3 s, and would fire on every
//!   promotion while its approver's update is in flight) and approvals due 2 business hours
//!   before launch.
//! - **Approvers**: one task lists `PromotionStage = 'APPROVAL'` once a second and sends the
//!   `approve` update for each role in a listed promotion's `PendingApprovals`, as that role's
//!   approver (once each). The bench's own visibility calls (this listing, and counting closed
//!   promotions every 2 s) are kept few: the dev server allows a namespace 10 visibility calls
//!   per second.
//! - **Timings** come from each promotion's history, fetched after the CPU figures are taken: the
//!   server's event times of the start, of the search-attribute upsert that moved
//!   `PromotionStage` to `APPROVAL` and to `ACTIVE`, and of the last accepted `approve` update. The
//!   status query's stage timeline has the same transitions but in whole seconds of workflow time,
//!   too coarse for sub-second latencies; client-side polling would add its interval.
//! - **CPU**: user + system time from `/proc` of the worker, of the dev server and of this process
//!   (the client, the approvers and the reference systems, which run in here), from just before
//!   the first start until the last promotion closed.
//!
//! Build the worker first (the bench runs `target/release/promo-worker`, or `$PROMO_WORKER_BIN`):
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
    /// The first workflow task's start: the business clock counts from its whole second.
    first_task: Option<f64>,
    /// When the window opened on the workflow's business clock, for the launch delay.
    launch_due: f64,
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
            Some(Attributes::WorkflowTaskStartedEventAttributes(_)) if t.first_task.is_none() => {
                t.first_task = Some(secs(e));
            }
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

/// What every compared worker runs: the same promotions, lead, pace and cache.
#[derive(Debug, Clone)]
struct Settings {
    n: usize,
    lead_days: f64,
    /// Promotions started per second, evenly spaced (open loop); all at once when `None`.
    rate: Option<f64>,
    max_cached: Option<usize>,
    limit: Duration,
}

impl Settings {
    fn from_env() -> anyhow::Result<Self> {
        let rate = match std::env::var("PROMO_BENCH_RATE") {
            Ok(v) if !v.is_empty() => {
                let r: f64 = v.parse().with_context(|| format!("PROMO_BENCH_RATE: {v:?} is not a number"))?;
                anyhow::ensure!(r > 0.0, "PROMO_BENCH_RATE: {r} must be above 0 promotions per second");
                Some(r)
            }
            _ => None,
        };
        Ok(Self {
            n: env_or("PROMO_BENCH_LIFECYCLES", 1000),
            lead_days: env_or("PROMO_BENCH_LEAD_DAYS", if rate.is_some() { 30.0 } else { 180.0 }),
            rate,
            max_cached: std::env::var("PROMO_MAX_CACHED_WORKFLOWS").ok().and_then(|v| v.parse().ok()),
            limit: Duration::from_secs(env_or("PROMO_BENCH_LIMIT_SECS", 3600)),
        })
    }

    /// Wall seconds from the start of promotion `i` to the opening of its window.
    fn launch_after(&self, i: usize, policy: &Policy) -> f64 {
        let days = self.lead_days + (i / COMBOS) as f64 * WINDOW_HOURS / 24.0;
        days * 86_400.0 / f64::from(policy.time_scale)
    }
}

/// One worker's run of the bench.
#[derive(Debug)]
struct Run {
    label: String,
    all: Vec<Timings>,
    worker_ms: f64,
    server_ms: f64,
    client_ms: f64,
    all_started: Duration,
    elapsed: Duration,
    approvals: usize,
    refusals: Vec<String>,
    load: String,
    log_dir: std::path::PathBuf,
}

/// The figures compared between workers.
#[derive(Debug)]
struct Summary {
    completed: usize,
    launched: usize,
    /// Completed lifecycles per second from the first start to the last close.
    per_s: f64,
    /// Closes per second between the first and the last close: the rate the system kept up with.
    close_rate: f64,
    span: f64,
    to_approval: (f64, f64, usize),
    to_launch: (f64, f64, usize),
    /// Launch (stage ACTIVE) after the window opened, of the promotions that launched.
    launch_delay: (f64, f64, usize),
    workflow_tasks: f64,
    activities: f64,
    events: f64,
    kb: f64,
    largest_kb: f64,
    worker_ms: f64,
    server_ms: f64,
    client_ms: f64,
}

impl Run {
    fn summary(&self) -> Summary {
        let all = &self.all;
        let n = all.len().max(1) as f64;
        let completed = all.iter().filter(|t| t.outcome == Some(Outcome::Completed)).count();
        let first_start = all.iter().map(|t| t.started).fold(f64::INFINITY, f64::min);
        let closes: Vec<f64> = all.iter().filter_map(|t| t.closed).collect();
        let first_close = closes.iter().copied().fold(f64::INFINITY, f64::min);
        let last_close = closes.iter().copied().fold(0.0, f64::max);
        let span = last_close - first_start;
        let avg = |f: fn(&Timings) -> usize| all.iter().map(f).sum::<usize>() as f64 / n;
        Summary {
            completed,
            launched: all.iter().filter(|t| t.active.is_some()).count(),
            per_s: completed as f64 / span,
            close_rate: closes.len().saturating_sub(1) as f64 / (last_close - first_close),
            span,
            to_approval: percentiles(
                all.iter().filter_map(|t| Some(t.approval_reached? - t.started)).collect(),
            ),
            to_launch: percentiles(all.iter().filter_map(|t| Some(t.active? - t.last_approval?)).collect()),
            launch_delay: percentiles(all.iter().filter_map(|t| Some(t.active? - t.launch_due)).collect()),
            workflow_tasks: avg(|t| t.workflow_tasks),
            activities: avg(|t| t.activities),
            events: avg(|t| t.events),
            kb: avg(|t| t.bytes) / 1024.0,
            largest_kb: avg(|t| t.largest) / 1024.0,
            worker_ms: self.worker_ms / n,
            server_ms: self.server_ms / n,
            client_ms: self.client_ms / n,
        }
    }

    fn print(&self, s: &Settings) {
        let n = s.n;
        let m = self.summary();
        println!("  worker: {}", self.label);
        println!("    load average at the end: {}", self.load.trim());
        let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
        for t in &self.all {
            *outcomes
                .entry(t.outcome.map_or("no result (failed)".into(), |o| o.as_str_name().to_owned()))
                .or_default() += 1;
        }
        println!(
            "    outcomes: {outcomes:?}; approvals given {}; refused {}",
            self.approvals,
            self.refusals.len()
        );
        for r in self.refusals.iter().take(5) {
            println!("      refused: {r}");
        }
        let failures: std::collections::BTreeSet<&str> =
            self.all.iter().filter_map(|t| t.failure.as_deref()).collect();
        for f in failures.iter().take(5) {
            println!("      failed: {f}");
        }
        let offered =
            s.rate.map_or_else(String::new, |r| format!(" (offered: {:.1} s at {r}/s)", n as f64 / r));
        println!(
            "    all {n} started in {:.1} s{offered}; all closed {:.1} s after the bench began",
            self.all_started.as_secs_f64(),
            self.elapsed.as_secs_f64()
        );
        println!(
            "    lifecycles/s: {:.2}   ({} COMPLETED, {} launched inside their windows; {:.1} s from the first start to the last close)",
            m.per_s, m.completed, m.launched, m.span
        );
        println!("    closes/s between the first and the last close: {:.2}", m.close_rate);
        let row = |name: &str, p: (f64, f64, usize)| {
            println!("    {name:<30} p50 {:>8.0} ms   p95 {:>8.0} ms   ({} promotions)", p.0, p.1, p.2);
        };
        row("start → awaiting approval", m.to_approval);
        row("final approval → launch", m.to_launch);
        row("window opens → launch", m.launch_delay);
        println!(
            "    per lifecycle: {:.1} workflow tasks, {:.1} activities, {:.1} history events, {:.1} KB of history, largest event {:.1} KB (largest of all: {:.1} KB)",
            m.workflow_tasks,
            m.activities,
            m.events,
            m.kb,
            m.largest_kb,
            self.all.iter().map(|t| t.largest).max().unwrap_or(0) as f64 / 1024.0
        );
        println!("    CPU over the run (ms)          total   per lifecycle");
        println!("      promo-worker            {:>10.0}   {:>13.1}", self.worker_ms, m.worker_ms);
        println!("      dev server              {:>10.0}   {:>13.1}", self.server_ms, m.server_ms);
        println!("      client + reference systems {:>7.0}   {:>13.1}", self.client_ms, m.client_ms);
        println!("    worker log: {}", self.log_dir.display());
    }
}

/// Runs the bench once on a fresh dev server and reference systems with the worker `bin`
/// (this build's when `None`); its log goes to a directory named after `slug`.
async fn run_once(
    s: &Settings,
    slug: &str,
    label: String,
    bin: Option<std::path::PathBuf>,
) -> anyhow::Result<Run> {
    let n = s.n;
    let dev = start_dev_server().await?;
    let client = dev.client();
    let server_pid = dev.pid().ok_or_else(|| anyhow!("the dev server has no process id"))?;
    let systems = small_systems().await?;
    let policy = bench_policy()?;
    let log_dir = std::env::temp_dir().join(format!("promo-throughput-{}-{slug}", std::process::id()));
    let mut worker = WorkerProcess::spawn(WorkerConfig {
        temporal_address: dev.address(),
        systems_url: systems.url(),
        policy: policy.clone(),
        max_cached_workflows: s.max_cached,
        dir: log_dir.clone(),
        extra_args: vec![],
        bin,
    })?;
    wait_for_pollers(&client, &mut worker).await?;

    let me = std::process::id();
    let cpu0 = (worker.cpu_ms()?, cpu_ms(server_pid)?, cpu_ms(me)?);
    let t0 = tokio::time::Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let approved = Arc::new(AtomicUsize::new(0));
    let approving = tokio::spawn(approvers(client.clone(), stop.clone(), approved.clone()));
    let mut starting = tokio::task::JoinSet::new();
    for i in 0..n {
        if let Some(r) = s.rate {
            tokio::time::sleep_until(t0 + Duration::from_secs_f64(i as f64 / r)).await;
        }
        while starting.len() >= CONCURRENCY {
            starting.join_next().await.transpose()?.transpose().context("starting promotions")?;
        }
        let client = client.clone();
        let spec = promotion(i, s.lead_days);
        starting.spawn(async move {
            let o = api::start_options(api::TASK_QUEUE, &spec);
            client
                .start_workflow(PromotionWorkflow::run, spec.into(), o)
                .await
                .map(drop)
                .map_err(anyhow::Error::from)
        });
    }
    while let Some(r) = starting.join_next().await {
        r?.context("starting promotions")?;
    }
    let all_started = t0.elapsed();

    let closed = format!("WorkflowType = '{}' AND ExecutionStatus != 'Running'", api::WORKFLOW_TYPE);
    let mut last_report = Instant::now();
    loop {
        let c = client.count_workflows(closed.as_str(), WorkflowCountOptions::default()).await?.count();
        if c >= n {
            break;
        }
        worker.check_alive()?;
        anyhow::ensure!(t0.elapsed() < s.limit, "only {c} of {n} promotions closed after {:?}", s.limit);
        if last_report.elapsed() > Duration::from_secs(30) {
            eprintln!(
                "  … {label}, {:.0} s: {c} of {n} closed, {} approvals given",
                t0.elapsed().as_secs_f64(),
                approved.load(Ordering::Relaxed)
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let elapsed = t0.elapsed();
    let cpu1 = (worker.cpu_ms()?, cpu_ms(server_pid)?, cpu_ms(me)?);
    stop.store(true, Ordering::Relaxed);
    let refusals = approving.await?;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    // Everything below is after the CPU figures: fetching 1,000 histories costs the server too.
    let histories: Vec<anyhow::Result<Timings>> = stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            let due = s.launch_after(i, &policy);
            async move {
                let id = api::workflow_id(&format!("TP-{i:05}"));
                let events = client
                    .get_workflow_handle::<PromotionWorkflow>(id.clone())
                    .fetch_history(WorkflowFetchHistoryOptions::default())
                    .into_events()
                    .await
                    .with_context(|| format!("fetching the history of {id}"))?;
                let mut t = timings(&events);
                // The workflow's business clock starts at its first task's whole second (its
                // `started_at`), and reaches the window's start the lead's wall time later.
                t.launch_due = t.first_task.unwrap_or(t.started).floor() + due;
                Ok(t)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let all: Vec<Timings> = histories.into_iter().collect::<anyhow::Result<_>>()?;
    drop(worker);
    systems.stop().await;
    dev.shutdown().await?;
    Ok(Run {
        label,
        all,
        worker_ms: cpu1.0 - cpu0.0,
        server_ms: cpu1.1 - cpu0.1,
        client_ms: cpu1.2 - cpu0.2,
        all_started,
        elapsed,
        approvals: approved.load(Ordering::Relaxed),
        refusals,
        load,
        log_dir,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let s = Settings::from_env()?;
    let policy = bench_policy()?;
    let mut workers = Vec::new();
    if let Some(b) = std::env::var_os("PROMO_BASELINE_WORKER_BIN").filter(|b| !b.is_empty()) {
        let b = std::path::PathBuf::from(b);
        anyhow::ensure!(b.is_file(), "PROMO_BASELINE_WORKER_BIN: {} is not a file", b.display());
        workers.push(("baseline", format!("baseline {}", b.display()), Some(b)));
    }
    workers.push((
        "this-build",
        format!("this build {}", promo_tests::process::worker_bin()?.display()),
        None,
    ));
    let pace = s.rate.map_or_else(
        || "all started at once".to_owned(),
        |r| format!("started at {r} per second (open loop)"),
    );
    println!(
        "throughput: {} promotions (2 SKUs × 2 stores of R1, {WINDOW_HOURS}-business-hour windows opening \
         {} business days = {:.0} s after their start), {pace}, on one promo-worker process caching {} \
         (dev server, small dataset, 1 business day = {:.0} s)",
        s.n,
        s.lead_days,
        s.launch_after(0, &policy),
        s.max_cached.map_or_else(
            || format!("the default {}", promo_worker::DEFAULT_MAX_CACHED_WORKFLOWS),
            |c| c.to_string()
        ),
        86_400.0 / f64::from(policy.time_scale),
    );
    let mut runs = Vec::new();
    for (slug, label, bin) in workers {
        let run = run_once(&s, slug, label, bin).await?;
        run.print(&s);
        runs.push(run);
    }
    if let [base, this] = runs.as_slice() {
        let (b, t) = (base.summary(), this.summary());
        println!("  side by side                          baseline   this build   change");
        let line = |name: &str, b: f64, t: f64, digits: usize| {
            println!("    {name:<34} {b:>9.digits$} {t:>12.digits$}   {:>+6.0}%", (t / b - 1.0) * 100.0);
        };
        line("lifecycles/s (first start → last close)", b.per_s, t.per_s, 2);
        line("closes/s (first → last close)", b.close_rate, t.close_rate, 2);
        line("dev-server CPU-ms per lifecycle", b.server_ms, t.server_ms, 1);
        line("worker CPU-ms per lifecycle", b.worker_ms, t.worker_ms, 1);
        line("history events per lifecycle", b.events, t.events, 1);
        line("history KB per lifecycle", b.kb, t.kb, 1);
        line("launched inside their windows", b.launched as f64, t.launched as f64, 0);
        line("start → approval p50 (ms)", b.to_approval.0, t.to_approval.0, 0);
        line("window opens → launch p95 (ms)", b.launch_delay.1, t.launch_delay.1, 0);
    }
    Ok(())
}
