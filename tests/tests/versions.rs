//! The version rule at a worker's start: `promo-worker` refuses to poll while the namespace holds
//! an open promotion run that took a version older than its oldest supported one, naming the
//! run; runs that have not started yet do not count (they take the current version); once the old
//! run is gone the worker starts, and a new run records the current version's marker, which
//! visibility shows in `TemporalChangeVersion`.

use promo_tests::{
    env::{PromoEnv, spec, test_policy},
    process::WorkerProcess,
    temporal::run_worker_until,
};
use promo_workflows::{api, version::Version};
use std::time::{Duration, Instant};
use temporalio_client::{
    WorkflowDescribeOptions, WorkflowFetchHistoryOptions, WorkflowStartOptions, WorkflowTerminateOptions,
};
use temporalio_common::{protos::temporal::api::enums::v1::EventType, search_attributes::SearchAttributeKey};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{WorkerOptions, WorkflowContext, WorkflowResult};

/// A promotion run as a build from before 1.0 ran it: the same workflow type, its own patch
/// marker, then a long wait.
#[workflow]
#[derive(Default)]
struct PreOneZero;

#[workflow_methods]
impl PreOneZero {
    #[run(name = "PromotionWorkflow")]
    async fn run(ctx: &mut WorkflowContext<Self>, _input: serde_json::Value) -> WorkflowResult<()> {
        let _ = ctx.patched("activities-carry");
        ctx.wait_condition(|_: &Self| false).await?;
        Ok(())
    }
}

/// Whether the run of `workflow_id` has completed a workflow task.
async fn started(env: &PromoEnv, workflow_id: &str) -> bool {
    let events = env
        .client
        .get_workflow_handle::<PreOneZero>(workflow_id.to_owned())
        .fetch_history(WorkflowFetchHistoryOptions::default())
        .into_events()
        .await
        .unwrap_or_default();
    events.iter().any(|e| e.event_type() == EventType::WorkflowTaskCompleted)
}

/// Waits for `pred` (at most `limit`), polling every 100 ms.
async fn until(what: &str, limit: Duration, mut pred: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !pred().await {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_refuses_to_start_while_a_run_of_a_retired_version_is_open() {
    let env = PromoEnv::start(test_policy()).await.unwrap();
    let old = api::workflow_id("OLD-1");
    // The old run takes its first workflow task on a worker of the old build.
    env.client
        .start_workflow(
            PreOneZero::run,
            serde_json::json!({"promotionId": "OLD-1"}),
            WorkflowStartOptions::new(&env.task_queue, &old).build(),
        )
        .await
        .unwrap();
    let old_build = WorkerOptions::new(&env.task_queue).register_workflow::<PreOneZero>().unwrap().build();
    run_worker_until(
        &env.client,
        old_build,
        until("the old run's first task", Duration::from_secs(30), async || started(&env, &old).await),
    )
    .await
    .unwrap();
    // A promotion started while no worker runs has taken no version yet: it does not count.
    env.start_promotion(spec("NEW-1", &["R1"], 0..3, 3.0, 2.0)).await.unwrap();

    let mut worker = WorkerProcess::spawn(env.worker_config()).unwrap();
    until("the worker to refuse", Duration::from_secs(60), async || worker.check_alive().is_err()).await;
    let refusal = worker.log();
    assert!(refusal.contains(&old), "names the run: {refusal}");
    assert!(refusal.contains("activities-carry"), "names its marker: {refusal}");
    assert!(refusal.contains("started before lifecycle version 1"), "{refusal}");
    assert!(!refusal.contains("promotion-NEW-1"), "an unstarted run does not count: {refusal}");

    // The old run ended, the worker starts and the new promotion takes the current version.
    env.client
        .get_workflow_handle::<PreOneZero>(old.clone())
        .terminate(WorkflowTerminateOptions::builder().reason("retired with its build").build())
        .await
        .unwrap();
    worker.restart().unwrap();
    env.wait_status("NEW-1", "intake to pass", Duration::from_secs(60), |s| {
        s.revision == 1 && !s.timeline.is_empty()
    })
    .await
    .unwrap();
    worker.check_alive().unwrap();
    let markers = SearchAttributeKey::<Vec<String>>::keyword_list("TemporalChangeVersion");
    until("visibility to show the version", Duration::from_secs(30), async || {
        let d = env.handle("NEW-1").describe(WorkflowDescribeOptions::default()).await.unwrap();
        d.search_attributes().get(&markers) == Some(vec![Version::CURRENT.marker().to_owned()])
    })
    .await;
}
