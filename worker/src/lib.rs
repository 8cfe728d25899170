//! The promotion worker: one process polling the `promotions` task queue with the workflow and
//! its activities. Any number of these may run against the same Temporal namespace; nothing here
//! assumes it is the only one.

pub mod business;
pub mod versions;

use anyhow::Context;
use promo_activities::{PromotionActivities, Systems};
use promo_workflows::{PromotionWorkflow, api, policy::Policy};
use std::{net::SocketAddr, sync::Arc};
use temporalio_common::telemetry::{
    PrometheusExporterOptions, TelemetryOptions, metrics::CoreMeter, start_prometheus_metric_exporter,
};
use temporalio_sdk::{
    Runtime, Worker, WorkerOptions,
    runtime::{
        RuntimeOptions,
        worker_tuner::{FixedSizeSlotSupplier, TunerHolder},
    },
};

/// What a worker needs besides the Temporal connection (which comes from Temporal's env config).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address of the retail integration services.
    pub systems: String,
    /// TLS toward them (an https address), when configured.
    pub systems_tls: Option<promo_activities::SystemsTls>,
    /// The policy handed to new promotions.
    pub policy: Policy,
    /// Task queue to poll.
    pub task_queue: String,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics: Option<SocketAddr>,
    /// How often to refresh the business gauges ([`business`]) on that endpoint; `None` leaves
    /// them out (e.g. on all but one of several workers).
    pub business_metrics_every: Option<std::time::Duration>,
    /// Age (wall time) at which an open exception counts as overdue in the business gauges.
    pub exception_sla: std::time::Duration,
    /// Most workflows kept in the sticky cache.
    pub max_cached_workflows: usize,
    /// Most local activities running at once in this worker.
    pub max_local_activities: usize,
    /// Before polling, replay the histories of this many recent promotions from the server
    /// against this build's workflow code, and refuse to start on any nondeterminism.
    pub verify: usize,
}

/// Replays the histories of the `limit` most recent promotions on the server against this
/// build's workflow code; returns how many replayed, or the first that does not.
pub async fn verify_recent(client: &temporalio_client::Client, limit: usize) -> anyhow::Result<usize> {
    use futures::StreamExt;
    use temporalio_client::{WorkflowFetchHistoryOptions, WorkflowListOptions};
    use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};
    let replayer = WorkflowReplayer::new(
        WorkflowReplayerOptions::new()
            .register_workflow::<PromotionWorkflow>()
            .map_err(|e| anyhow::anyhow!("registering PromotionWorkflow: {e}"))?
            .data_converter(promo_workflows::codec::data_converter())
            .build(),
    )?;
    // Each promotion's current run (the runs it continued from are replayed by the tests'
    // recorded histories, not here).
    let listed: Vec<_> = client
        .list_workflows(api::PROMOTIONS_QUERY, WorkflowListOptions::default())
        .take(limit)
        .collect()
        .await;
    let mut n = 0;
    for w in listed {
        let w = w.context("listing promotions to verify")?;
        let history = client
            .get_workflow_handle::<PromotionWorkflow>(w.id().to_owned())
            .fetch_history(WorkflowFetchHistoryOptions::default());
        let events =
            history.into_events().await.with_context(|| format!("fetching the history of {}", w.id()))?;
        let history = temporalio_client::WorkflowHistory::from(
            temporalio_common::protos::temporal::api::history::v1::History { events },
        );
        replayer
            .replay_workflow(history)
            .await
            .with_context(|| format!("{} does not replay with this build: a change to the command sequence needs a new version (workflows/src/version.rs)", w.id()))?;
        n += 1;
    }
    Ok(n)
}

/// Loads a policy file, or the built-in defaults when `path` is `None`.
pub fn load_policy(path: Option<&std::path::Path>) -> anyhow::Result<Policy> {
    match path {
        None => Ok(Policy::default()),
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading policy file {}", p.display()))?;
            Policy::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
        }
    }
}

/// Promotions kept in the worker's sticky cache by default. Each cached promotion costs a few
/// hundred KiB; an evicted one is replayed from its history on its next task (CPU for memory).
pub const DEFAULT_MAX_CACHED_WORKFLOWS: usize = 250;

/// Default for [`Settings::max_local_activities`].
pub const DEFAULT_MAX_LOCAL_ACTIVITIES: usize = 8;

/// Slots for every other kind of task (the SDK's own default).
const TASK_SLOTS: usize = 100;

/// The workflow and activities registered on `task_queue`, caching at most `max_cached`
/// workflows and running at most `max_local` local activities at once.
pub fn worker_options(
    task_queue: &str,
    activities: PromotionActivities,
    max_cached: usize,
    max_local: usize,
) -> anyhow::Result<WorkerOptions> {
    anyhow::ensure!(max_local > 0, "--max-local-activities must be at least 1");
    // Local activities (the assessments, reads and short writes of a lean run) run in this
    // process: with the SDK's default of 100 at once, a burst of intakes holds 100 plans and
    // their working sets together (956 MiB peak for 1,000 intakes, against 455 MiB with 8). The
    // CPU they need is the machine's, so a few at a time finish as fast and hold less.
    let tuner = TunerHolder::builder()
        .workflow_task_slot_supplier(FixedSizeSlotSupplier::new(TASK_SLOTS))
        .activity_task_slot_supplier(FixedSizeSlotSupplier::new(TASK_SLOTS))
        .local_activity_task_slot_supplier(FixedSizeSlotSupplier::new(max_local))
        .nexus_task_slot_supplier(FixedSizeSlotSupplier::new(TASK_SLOTS))
        .build();
    Ok(WorkerOptions::new(task_queue)
        .max_cached_workflows(max_cached)
        .tuner(tuner)
        .register_workflow::<PromotionWorkflow>()
        .map_err(|e| anyhow::anyhow!("registering PromotionWorkflow: {e}"))?
        .register_activities(activities)
        .build())
}

/// Connects, builds the worker and polls until ctrl-c, then drains in-flight tasks.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let mut telemetry = TelemetryOptions::builder().build();
    let mut meter = None;
    if let Some(addr) = settings.metrics {
        let prom =
            start_prometheus_metric_exporter(PrometheusExporterOptions::builder().socket_addr(addr).build())
                .with_context(|| format!("--metrics: cannot serve Prometheus metrics on {addr}"))?;
        tracing::info!(addr = %prom.bound_addr, "serving Prometheus metrics at /metrics");
        meter = Some(prom.meter.clone() as Arc<dyn CoreMeter>);
        telemetry = TelemetryOptions::builder().metrics(prom.meter as Arc<dyn CoreMeter>).build();
    }
    let runtime = Runtime::from_current_tokio(
        RuntimeOptions::builder().telemetry_options(telemetry).build().map_err(anyhow::Error::msg)?,
    )?;
    let client = api::connect(&format!("promo-worker@{}", hostname())).await?;
    let checked = versions::check(&client).await?;
    tracing::info!(
        version = promo_workflows::version::Version::CURRENT.number(),
        unstarted_runs = checked,
        "no open promotion run predates this worker's oldest supported lifecycle version"
    );
    if settings.verify > 0 {
        let n = verify_recent(&client, settings.verify).await?;
        tracing::info!(replayed = n, "verified: recent promotion histories replay with this build");
    }
    let systems = Systems::with_tls(&settings.systems, settings.systems_tls.as_ref())?;
    if let (Some(meter), Some(every)) = (meter, settings.business_metrics_every) {
        let sla = promo_insight::Sla::from_policy(&settings.policy, settings.exception_sla);
        tokio::spawn(business::collect(meter, client.clone(), systems.clone(), sla, every));
        tracing::info!(every_s = every.as_secs(), "business metrics: promo_* gauges on /metrics");
    }
    let activities = PromotionActivities::new(systems, settings.policy.clone());
    let mut worker = Worker::new(
        &runtime,
        client,
        worker_options(
            &settings.task_queue,
            activities,
            settings.max_cached_workflows,
            settings.max_local_activities,
        )?,
    )?;
    let shutdown = worker.shutdown_handle();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("ctrl-c: draining in-flight tasks, then stopping");
            shutdown();
        }
    });
    tracing::info!(task_queue = %settings.task_queue, systems = %settings.systems, "worker polling");
    worker.run().await?;
    tracing::info!("worker stopped");
    Ok(())
}

/// `<host>:<pid>`: unique per worker process, so histories and the Web UI tell apart two
/// workers on one host (or two containers sharing a hostname).
fn hostname() -> String {
    let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", std::process::id())
}
