//! Replay of committed histories against the current workflow code. Each supported lifecycle
//! version keeps the histories recorded when it was made (`tests/histories/v<N>/*.json`, from
//! the lifecycle, compliance, outages and generated tests with `PROMO_RECORD_HISTORIES=1`): a change to the command
//! sequence that is not behind a new version fails here, and so does a version deleted while its
//! histories are still kept.

use promo_tests::env::{histories_dir, version_histories_dir};
use promo_workflows::{PromotionWorkflow, version::Version};
use temporalio_client::WorkflowHistory;
use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};

/// The scenarios every version's histories cover: the happy path, each way a promotion ends, and
/// each path of the stages that branch (remediation, finance, acknowledgments, gate holds, price
/// corrections, replenishment, funding claims), a compensation blocked until an operator
/// decides, an outage in the window and at close, and a run continued as new from its state.
const SCENARIOS: &[&str] = &[
    "happy_path",
    "rejected",
    "changes_requested",
    "cancelled_after_publishing",
    "remediation_delay",
    "finance_approval",
    "missing_acknowledgments",
    "gate_hold_stock",
    "gate_hold_channel",
    "price_drift_corrected",
    "replenished",
    "funding_claimed",
    "compensation_blocked",
    "systems_unavailable",
    "continued_after_pause",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_histories_replay_with_the_current_workflow() {
    let replayer = WorkflowReplayer::new(
        WorkflowReplayerOptions::new()
            .register_workflow::<PromotionWorkflow>()
            .expect("register")
            .data_converter(promo_workflows::codec::data_converter())
            .build(),
    )
    .expect("replayer");
    let mut replayed = 0;
    for v in Version::SUPPORTED {
        for f in history_files(&version_histories_dir(*v)) {
            let bytes = std::fs::read(&f).unwrap();
            let history =
                WorkflowHistory::from_json(&bytes).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            replayer
                .replay_workflow(history)
                .await
                .unwrap_or_else(|e| panic!("{} does not replay: {e}", f.display()));
            println!("replayed {}", f.strip_prefix(histories_dir()).unwrap().display());
            replayed += 1;
        }
    }
    assert!(replayed >= SCENARIOS.len(), "replayed {replayed} histories");
}

/// Every kept history belongs to a supported version and records that version's marker (and no
/// other patch), and every supported version keeps every scenario.
#[test]
fn each_version_keeps_its_scenarios_and_nothing_else_is_kept() {
    for e in std::fs::read_dir(histories_dir()).expect("tests/histories exists").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(
            Version::SUPPORTED.iter().any(|v| name == format!("v{}", v.number())),
            "tests/histories/{name}: not the folder of a supported version (a retired version's \
             histories are deleted with its path)"
        );
    }
    for v in Version::SUPPORTED {
        let dir = version_histories_dir(*v);
        for s in SCENARIOS {
            assert!(dir.join(format!("{s}.json")).exists(), "{}: {s}.json is missing", dir.display());
        }
        for f in history_files(&dir) {
            assert_eq!(patch_ids(&f), vec![v.marker().to_owned()], "{}", f.display());
        }
    }
}

/// Every `.json` in `dir`, sorted.
fn history_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    out.sort();
    out
}

/// The patch ids a history's markers record, in order.
fn patch_ids(path: &std::path::Path) -> Vec<String> {
    use temporalio_common::protos::temporal::api::history::v1::{History, history_event::Attributes};
    let history: History = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    history
        .events
        .iter()
        .filter_map(|e| match &e.attributes {
            Some(Attributes::MarkerRecordedEventAttributes(m)) if m.marker_name == "core_patch" => {
                m.details.get("patch-data").and_then(|p| p.payloads.first()).cloned()
            }
            _ => None,
        })
        .filter_map(|p| serde_json::from_slice::<serde_json::Value>(&p.data).ok())
        .filter_map(|v| v["id"].as_str().map(str::to_owned))
        .collect()
}
