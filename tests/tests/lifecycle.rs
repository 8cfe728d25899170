//! The promotion lifecycle against a real Temporal dev server and the reference systems,
//! with business time compressed (one business day = two seconds).

use promo_contracts::promo::v1::*;
use promo_tests::env::{PromoEnv, spec, test_policy};
use promo_workflows::PromotionWorkflow;
use std::time::Duration;
use temporalio_client::{WorkflowExecuteUpdateOptions, WorkflowQueryOptions};

fn decision(approver: &str, role: Role, comment: &str) -> ApprovalDecision {
    ApprovalDecision { approver_id: approver.into(), role: role as i32, revision: 0, comment: comment.into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_completes_with_a_post_event_report() {
    let env = PromoEnv::start(test_policy()).await.unwrap();
    let out = env
        .with_worker(async {
            env.start_promotion(spec("HAPPY-1", &["R1"], 0..10, 2.0, 3.0)).await.unwrap();
            env.wait_status("HAPPY-1", "approval stage", Duration::from_secs(30), |s| {
                s.stage() == Stage::Approval
            })
            .await
            .unwrap();
            let r = env
                .handle("HAPPY-1")
                .execute_update(
                    PromotionWorkflow::approve,
                    decision("E1001", Role::Merchandising, "looks good"),
                    WorkflowExecuteUpdateOptions::default(),
                )
                .await
                .unwrap();
            assert!(r.accepted, "{r:?}");
            let result = env.result("HAPPY-1").await.unwrap();
            let audit = env
                .handle("HAPPY-1")
                .query(PromotionWorkflow::audit, (), WorkflowQueryOptions::default())
                .await
                .unwrap();
            (result, audit)
        })
        .await
        .unwrap();
    let (result, audit) = out;
    println!("{}", serde_json::to_string_pretty(&result).unwrap());
    assert_eq!(result.outcome(), Outcome::Completed);
    let report = result.report.expect("a completed promotion has a report");
    assert!(report.units_sold > 0, "{report:?}");
    assert!(!report.cycle_times.is_empty());
    assert!(audit.entries.iter().any(|e| e.action == "approve" && e.actor == "E1001"));
    assert!(audit.entries.iter().any(|e| e.action == "region-activated"));
}
