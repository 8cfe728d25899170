//! Replay of committed histories (`tests/histories/*.json`, recorded from the lifecycle tests with
//! `PROMO_RECORD_HISTORIES=1`) against the current workflow code: a change to the command
//! sequence of a released workflow that is not behind a patch fails here.

use promo_tests::env::histories_dir;
use promo_workflows::PromotionWorkflow;
use temporalio_client::WorkflowHistory;
use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_histories_replay_with_the_current_workflow() {
    let replayer = WorkflowReplayer::new(
        WorkflowReplayerOptions::new().register_workflow::<PromotionWorkflow>().expect("register").build(),
    )
    .expect("replayer");
    let mut files: Vec<_> = std::fs::read_dir(histories_dir())
        .expect("tests/histories exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "expected the main scenarios' histories, found {files:?}");
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let history = WorkflowHistory::from_json(&bytes).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        replayer
            .replay_workflow(history)
            .await
            .unwrap_or_else(|e| panic!("{} does not replay: {e}", f.display()));
        println!("replayed {}", f.file_name().unwrap().to_string_lossy());
    }
}
