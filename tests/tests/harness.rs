//! Proves the Temporal harness against real servers: the dev server from the project venv runs a
//! workflow through a worker and shows its search attribute in visibility, and the time-skipping
//! server runs a two-week timer in seconds.

use std::{
    collections::HashMap,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use futures::StreamExt as _;
use promo_tests::temporal::{
    SEARCH_ATTRIBUTES, indexed_value_type, run_worker_until, start_dev_server, start_time_skipping_server,
};
use serde::{Deserialize, Serialize};
use temporalio_client::{
    Client, WorkflowGetResultOptions, WorkflowListOptions, WorkflowStartOptions, tonic::IntoRequest,
};
use temporalio_common::{
    protos::temporal::api::operatorservice::v1::ListSearchAttributesRequest,
    search_attributes::{SearchAttributeKey, Timestamp},
};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, WorkerOptions, WorkflowContext, WorkflowResult,
    activities::{ActivityContext, ActivityError},
};

const PROMOTION_STAGE: SearchAttributeKey<String> = SearchAttributeKey::keyword("PromotionStage");
const PROMOTION_REGIONS: SearchAttributeKey<Vec<String>> =
    SearchAttributeKey::keyword_list("PromotionRegions");
const OPEN_EXCEPTIONS: SearchAttributeKey<i64> = SearchAttributeKey::int("OpenExceptions");
const LAUNCH_AT: SearchAttributeKey<Timestamp> = SearchAttributeKey::datetime("LaunchAt");
const ACTIVITY_TIMEOUT: Duration = Duration::from_secs(10);

struct HarnessActivities;

#[activities]
impl HarnessActivities {
    #[activity(name = "harness.echo")]
    async fn echo(_ctx: ActivityContext, text: String) -> Result<String, ActivityError> {
        Ok(format!("echo: {text}"))
    }
}

#[derive(Serialize, Deserialize, Debug, Clone)]
struct HarnessCheckInput {
    stage: String,
    text: String,
}

/// Upserts `PromotionStage`, runs `harness.echo`, returns its output.
#[workflow]
#[derive(Default)]
struct HarnessCheck;

#[workflow_methods]
impl HarnessCheck {
    #[run]
    async fn run(ctx: &mut WorkflowContext<Self>, input: HarnessCheckInput) -> WorkflowResult<String> {
        ctx.upsert_search_attributes([PROMOTION_STAGE.value_set(input.stage)]);
        let echoed = ctx
            .execute_activity(
                HarnessActivities::echo,
                input.text,
                ActivityOptions::start_to_close_timeout(ACTIVITY_TIMEOUT),
            )
            .await?;
        Ok(echoed)
    }
}

#[derive(Serialize, Deserialize, Debug, Clone)]
struct LongTimerOutput {
    started_ms: u64,
    finished_ms: u64,
    echoed: String,
}

/// Upserts search attributes of the other types (which fails the workflow task if the server
/// lacks them), sleeps on a durable timer for the given number of days, then runs `harness.echo`.
#[workflow]
#[derive(Default)]
struct LongTimer;

#[workflow_methods]
impl LongTimer {
    #[run]
    async fn run(ctx: &mut WorkflowContext<Self>, days: u64) -> WorkflowResult<LongTimerOutput> {
        let started = ctx.workflow_time().unwrap_or(UNIX_EPOCH);
        let launch_at = started + Duration::from_secs(days * 24 * 3600);
        ctx.upsert_search_attributes([
            PROMOTION_REGIONS.value_set(vec!["north".to_owned(), "south".to_owned()]),
            OPEN_EXCEPTIONS.value_set(0),
            LAUNCH_AT.value_set(Timestamp::from(launch_at)),
        ]);
        let started_ms = unix_ms(started);
        ctx.timer(Duration::from_secs(days * 24 * 3600)).await;
        let echoed = ctx
            .execute_activity(
                HarnessActivities::echo,
                "after the timer".to_owned(),
                ActivityOptions::start_to_close_timeout(ACTIVITY_TIMEOUT),
            )
            .await?;
        let finished_ms = unix_ms(ctx.workflow_time().unwrap_or(UNIX_EPOCH));
        Ok(LongTimerOutput { started_ms, finished_ms, echoed })
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn worker_options(task_queue: &str) -> WorkerOptions {
    WorkerOptions::new(task_queue)
        .register_workflow::<HarnessCheck>()
        .expect("register HarnessCheck")
        .register_workflow::<LongTimer>()
        .expect("register LongTimer")
        .register_activities(HarnessActivities)
        .build()
}

/// Asserts that every project search attribute is registered on the server with its type.
async fn assert_search_attributes_registered(client: &Client) {
    let response = client
        .connection()
        .operator_service()
        .list_search_attributes(
            ListSearchAttributesRequest { namespace: "default".to_owned() }.into_request(),
        )
        .await
        .expect("list search attributes")
        .into_inner();
    let custom: HashMap<String, i32> = response.custom_attributes.into_iter().collect();
    for (name, ty) in SEARCH_ATTRIBUTES {
        let expected = indexed_value_type(ty).expect("known type") as i32;
        assert_eq!(
            custom.get(*name),
            Some(&expected),
            "search attribute {name} should be registered as {ty}; server has {custom:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_server_runs_a_workflow_and_indexes_its_search_attribute() {
    let wall = Instant::now();
    let server = start_dev_server().await.expect("start dev server");
    let client = server.client();
    println!("dev server at {} up in {:?}", server.address(), wall.elapsed());
    assert!(server.address().starts_with("127.0.0.1:"));
    assert_search_attributes_registered(&client).await;

    let task_queue = "harness-dev";
    let workflow_id = "harness-check-1";
    let stage = "harness-launch-ready";
    let result = run_worker_until(&client, worker_options(task_queue), async {
        client
            .start_workflow(
                HarnessCheck::run,
                HarnessCheckInput { stage: stage.to_owned(), text: "hello".to_owned() },
                WorkflowStartOptions::new(task_queue, workflow_id).build(),
            )
            .await
            .expect("start HarnessCheck")
            .get_result(WorkflowGetResultOptions::default())
            .await
            .expect("HarnessCheck result")
    })
    .await
    .expect("worker");
    assert_eq!(result, "echo: hello");

    // Visibility is eventually consistent: poll the list query until the workflow shows up.
    let query = format!("PromotionStage = \"{stage}\"");
    let deadline = Instant::now() + Duration::from_secs(10);
    let found = loop {
        let listed: Vec<_> =
            client.list_workflows(query.as_str(), WorkflowListOptions::default()).collect().await;
        let listed: Vec<_> = listed.into_iter().collect::<Result<_, _>>().expect("list workflows");
        if let Some(execution) = listed.into_iter().find(|w| w.id() == workflow_id) {
            break execution;
        }
        assert!(Instant::now() < deadline, "{workflow_id} not listed by `{query}` within 10 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(found.search_attributes().get(&PROMOTION_STAGE).as_deref(), Some(stage));
    let other = client
        .list_workflows("PromotionStage = \"some-other-stage\"", WorkflowListOptions::default())
        .collect::<Vec<_>>()
        .await;
    assert!(other.is_empty(), "a different stage matches nothing");
    println!(
        "dev server: workflow returned {result:?}, listed by `{query}`; total {:?} wall",
        wall.elapsed()
    );
    server.shutdown().await.expect("stop dev server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_skipping_server_runs_a_fourteen_day_timer_in_seconds() {
    let wall = Instant::now();
    let server = start_time_skipping_server().await.expect("start time-skipping server");
    let client = server.client();
    println!("time-skipping server at {} up in {:?}", server.address(), wall.elapsed());
    // The test server does not implement ListSearchAttributes; LongTimer's upserts check the
    // registration instead (an unregistered attribute fails the workflow task forever).

    // `sleep` moves the server's clock by a day at once.
    let clock_before = server.now().await.expect("server time");
    server.sleep(Duration::from_secs(24 * 3600)).await.expect("sleep a day");
    let clock_after = server.now().await.expect("server time");
    let slept = clock_after.duration_since(clock_before).expect("server clock moves forward");
    assert!(slept >= Duration::from_secs(24 * 3600), "sleep(1 day) advanced the clock {slept:?}");

    let task_queue = "harness-time-skipping";
    let output = run_worker_until(&client, worker_options(task_queue), async {
        let handle = client
            .start_workflow(
                LongTimer::run,
                14u64,
                WorkflowStartOptions::new(task_queue, "harness-long-timer").build(),
            )
            .await
            .expect("start LongTimer");
        server.unlock().await.expect("unlock time skipping");
        let output = tokio::time::timeout(
            Duration::from_secs(60),
            handle.get_result(WorkflowGetResultOptions::default()),
        )
        .await
        .expect("LongTimer finishes within 60 s of wall time")
        .expect("LongTimer result");
        server.lock().await.expect("lock time skipping");
        output
    })
    .await
    .expect("worker");

    let day_ms = 24 * 3600 * 1000;
    let workflow_days = (output.finished_ms - output.started_ms) as f64 / day_ms as f64;
    let slept_days = slept.as_secs_f64() / 86_400.0;
    let elapsed = wall.elapsed();
    println!(
        "time-skipping: slept {slept_days:.3} days; \
         workflow-time elapsed {workflow_days:.3} days in {elapsed:?} wall"
    );
    assert!(
        output.started_ms >= unix_ms(clock_after),
        "the workflow started on the server's clock, after the sleep"
    );
    assert_eq!(output.echoed, "echo: after the timer");
    assert!(
        output.finished_ms - output.started_ms >= 14 * day_ms,
        "the timer held the workflow for 14 days of workflow time, got {workflow_days:.3}"
    );
    assert!(elapsed < Duration::from_secs(60), "14 days should take seconds of wall time, took {elapsed:?}");
    server.shutdown().await.expect("stop time-skipping server");
}
