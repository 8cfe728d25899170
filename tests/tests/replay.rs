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
    let files = history_files(&histories_dir());
    assert!(
        files.len() >= 14,
        "expected the main scenarios' histories on both sides of the patch, found {files:?}"
    );
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let history = WorkflowHistory::from_json(&bytes).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        replayer
            .replay_workflow(history)
            .await
            .unwrap_or_else(|e| panic!("{} does not replay: {e}", f.display()));
        println!("replayed {}", f.strip_prefix(histories_dir()).unwrap().display());
    }
}

/// Every `.json` under `dir`, recursively, sorted.
fn history_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("tests/histories exists").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(history_files(&p));
        } else if p.extension().is_some_and(|x| x == "json") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The close-reverts-channels change is versioned: histories recorded before it carry no patch
/// marker (and replay on the old path above), new runs record the marker and take the new path.
#[test]
fn the_patched_change_is_covered_on_both_paths() {
    let marker = "\"marker_name\":\"core_patch\"";
    let before =
        std::fs::read_to_string(histories_dir().join("before-close-reverts-channels/happy_path.json"))
            .unwrap();
    let after = std::fs::read_to_string(histories_dir().join("happy_path.json")).unwrap();
    assert!(!before.contains(marker), "the old history predates the patch");
    assert!(after.contains(marker), "new runs record the patch marker");
    assert_eq!(promo_workflows::workflow::CLOSE_REVERTS_CHANNELS, "close-reverts-channels");
}
