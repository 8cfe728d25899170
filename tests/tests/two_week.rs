//! A realistic two-week promotion on the time-skipping test server: approval SLA in hours, launch
//! three days ahead, fourteen days live with daily monitoring — completed in seconds of wall time
//! with the production clock (time_scale 1).

use promo_contracts::promo::v1::*;
use promo_tests::{
    env::{signed_decision, small_systems, spec, test_keys, update_message, worker_options},
    temporal::{run_worker_until, start_time_skipping_server},
};
use promo_workflows::{PromotionWorkflow, api, policy::Policy};
use std::time::{Duration, Instant};
use temporalio_client::{WorkflowExecuteUpdateOptions, WorkflowGetResultOptions, WorkflowQueryOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_week_promotion_completes_in_seconds() {
    let wall = Instant::now();
    let server = start_time_skipping_server().await.unwrap();
    let client = server.client();
    let systems = small_systems().await.unwrap();
    // The production policy: signed decisions, with the approver's public key in the directory.
    let (secret, public) = test_keys(1);
    let mut policy = Policy::default();
    policy.approver_keys.insert("E1001".into(), public);
    assert_eq!(policy.time_scale, 1);
    assert!(policy.require_signatures);
    let opts = worker_options(&systems.url(), &policy).unwrap();
    let s = spec("TWO-WEEK", &["R1"], 0..12, 3.0, 14.0);
    let (result, (status, audit)) = run_worker_until(&client, opts, async {
        client
            .start_workflow(PromotionWorkflow::run, s.clone().into(), api::start_options(api::TASK_QUEUE, &s))
            .await
            .unwrap();
        let h = client.get_workflow_handle::<PromotionWorkflow>(api::workflow_id("TWO-WEEK"));
        // Time skipping is locked until we unlock it, so the approval wait holds while we look.
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            let st = h.query(PromotionWorkflow::status, (), WorkflowQueryOptions::default()).await;
            if let Ok(s) = st.as_ref()
                && s.stage() == Stage::Approval
            {
                break st.unwrap();
            }
            assert!(Instant::now() < deadline, "never reached approval: {st:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let r = h
            .execute_update(
                PromotionWorkflow::approve,
                serde_json::to_value(signed_decision(
                    &status,
                    "E1001",
                    Role::Merchandising,
                    "two weeks, go",
                    &secret,
                ))
                .unwrap(),
                WorkflowExecuteUpdateOptions::default(),
            )
            .await;
        assert!(update_message(r).is_ok());
        server.unlock().await.unwrap();
        let result = h.get_result(WorkflowGetResultOptions::default()).await;
        server.lock().await.unwrap();
        let status = h.query(PromotionWorkflow::status, (), WorkflowQueryOptions::default()).await.unwrap();
        let audit = h.query(PromotionWorkflow::audit, (), WorkflowQueryOptions::default()).await.unwrap();
        (result.unwrap(), (status, audit))
    })
    .await
    .unwrap();
    let elapsed = wall.elapsed();
    let first = status.timeline.first().unwrap().entered_at.unwrap().seconds;
    let last = status.timeline.last().unwrap().entered_at.unwrap().seconds;
    let days = (last - first) as f64 / 86_400.0;
    println!(
        "two-week promotion: {days:.2} days of workflow time in {elapsed:?} wall; outcome {:?}",
        result.outcome()
    );
    assert_eq!(result.outcome(), Outcome::Completed, "{result:?}");
    assert!(days >= 17.0, "3 days to launch + 14 days live, got {days:.2}");
    let report = result.report.unwrap();
    assert!(report.units_sold > 0);
    let active = report.cycle_times.iter().find(|c| c.stage() == Stage::Active).unwrap();
    assert!(active.seconds >= 13 * 86_400, "{active:?}");
    // Daily monitoring kept its cadence on the skipped clock: the rounds run as retries of one
    // activity (`promo.watch_window`), whose backoff the test server skips like a timer. Each
    // round's audit line carries its own day.
    let rounds: Vec<i64> =
        audit.entries.iter().filter(|e| e.action == "monitor").map(|e| e.at.unwrap().seconds).collect();
    assert!(rounds.len() >= 13, "daily rounds over 14 live days: {}", rounds.len());
    let trail: Vec<String> = audit
        .entries
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                e.at.map_or(0, |t| t.seconds),
                e.action,
                e.detail.chars().take(100).collect::<String>()
            )
        })
        .collect();
    assert!(
        rounds.windows(2).all(|w| w[1] - w[0] >= 86_400 - 3_600),
        "a round a day: {rounds:?}\n{trail:#?}"
    );
    systems.stop().await;
    server.shutdown().await.unwrap();
}
