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
        WorkflowReplayerOptions::new()
            .register_workflow::<PromotionWorkflow>()
            .expect("register")
            .data_converter(promo_workflows::codec::data_converter())
            .build(),
    )
    .expect("replayer");
    let files = history_files(&histories_dir());
    assert!(
        files.len() >= 164,
        "expected the main scenarios' histories on each side of each patch, found {files:?}"
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

/// Each versioned change is covered on both sides: histories recorded before it carry no marker
/// for it (and replay on the old path above), new runs record the marker and take the new path.
#[test]
fn each_patched_change_is_covered_on_both_paths() {
    use promo_workflows::workflow::{
        ACTIVITIES_CARRY, BATCHED_HISTORY, CALENDAR_RESERVATIONS, CLOSE_REVERTS_CHANNELS, FUNDING_CLAIMS,
        IN_FLIGHT_REPLENISHMENT, LAUNCH_GATE_CHANNELS, LAUNCH_GATE_HOLDS, LEAN_HISTORY, LIFECYCLE_V2,
        MONITOR_WINDOW, PLAN_IN_WORKFLOW, PRICE_RECONCILIATION, PROCESS_EVENTS, QUIET_HISTORY,
        REVERT_READ_BACK_UNTIL_REGULAR,
    };
    let root = histories_dir();
    // New runs record the activities-carry marker and no other: every earlier change, the quiet
    // history, the watched window, the plan in the workflow, the batched and lean histories
    // included, is taken without consulting its patch. The histories from before it record the
    // quiet-history marker alone, those from before that the monitor-window marker, then the
    // plan-in-workflow marker, then the batched history's, then the lean history's, then the
    // earlier markers.
    assert_eq!(ACTIVITIES_CARRY, "activities-carry", "a released patch id never changes");
    assert_eq!(QUIET_HISTORY, "quiet-history", "a released patch id never changes");
    assert_eq!(MONITOR_WINDOW, "monitor-window", "a released patch id never changes");
    assert_eq!(PLAN_IN_WORKFLOW, "plan-in-workflow", "a released patch id never changes");
    assert_eq!(BATCHED_HISTORY, "batched-history", "a released patch id never changes");
    assert_eq!(LEAN_HISTORY, "lean-history", "a released patch id never changes");
    for name in ["happy_path", "replenished", "gate_hold_stock", "funding_claimed", "rejected"] {
        let ids = patch_ids(&root.join(format!("{name}.json")));
        assert_eq!(ids, vec![ACTIVITIES_CARRY.to_owned()], "{name}.json");
        let quiet = patch_ids(&root.join("before-activities-carry").join(format!("{name}.json")));
        assert_eq!(quiet, vec![QUIET_HISTORY.to_owned()], "{name}.json before the carrying activities");
        let watched = patch_ids(&root.join("before-quiet-history").join(format!("{name}.json")));
        assert_eq!(watched, vec![MONITOR_WINDOW.to_owned()], "{name}.json before the quiet history");
        let planned = patch_ids(&root.join("before-monitor-window").join(format!("{name}.json")));
        assert_eq!(planned, vec![PLAN_IN_WORKFLOW.to_owned()], "{name}.json before the watched window");
        let batched = patch_ids(&root.join("before-plan-in-workflow").join(format!("{name}.json")));
        assert_eq!(batched, vec![BATCHED_HISTORY.to_owned()], "{name}.json before the plan in the workflow");
        let lean = patch_ids(&root.join("before-batched-history").join(format!("{name}.json")));
        assert_eq!(lean, vec![LEAN_HISTORY.to_owned()], "{name}.json before the batched history");
        let old = patch_ids(&root.join("before-lean-history").join(format!("{name}.json")));
        assert!(!old.is_empty() && !old.iter().any(|p| p == LEAN_HISTORY), "{name}.json before: {old:?}");
    }
    // The checks of each earlier patch, on the histories recorded just before the lean one
    // (`before-lean-history/`: the newest with their markers) and on the older directories.
    let dir = root.join("before-lean-history");
    for (before, patch) in [
        ("before-close-reverts-channels", CLOSE_REVERTS_CHANNELS),
        ("before-lifecycle-v2", LIFECYCLE_V2),
        ("before-launch-gate-holds", LAUNCH_GATE_HOLDS),
        ("before-price-reconciliation", PRICE_RECONCILIATION),
        ("before-funding-claims", FUNDING_CLAIMS),
        ("before-revert-read-back-until-regular", REVERT_READ_BACK_UNTIL_REGULAR),
        ("before-launch-gate-channels", LAUNCH_GATE_CHANNELS),
        ("before-process-events", PROCESS_EVENTS),
        ("before-calendar-reservations", CALENDAR_RESERVATIONS),
    ] {
        let old = patch_ids(&root.join(before).join("happy_path.json"));
        assert!(!old.iter().any(|p| p == patch), "{before}/happy_path.json predates {patch}: {old:?}");
    }
    let now = patch_ids(&dir.join("happy_path.json"));
    for patch in [
        CLOSE_REVERTS_CHANNELS,
        LIFECYCLE_V2,
        LAUNCH_GATE_HOLDS,
        PRICE_RECONCILIATION,
        FUNDING_CLAIMS,
        LAUNCH_GATE_CHANNELS,
        PROCESS_EVENTS,
        CALENDAR_RESERVATIONS,
    ] {
        assert!(now.iter().any(|p| p == patch), "new runs record {patch}: {now:?}");
    }
    // The v1 histories recorded after close-reverts-channels carry its marker, not v2's.
    let v1 = patch_ids(&root.join("before-lifecycle-v2/happy_path.json"));
    assert!(v1.iter().any(|p| p == CLOSE_REVERTS_CHANNELS), "{v1:?}");
    assert_eq!(LIFECYCLE_V2, "lifecycle-v2", "a released patch id never changes");
    assert_eq!(CLOSE_REVERTS_CHANNELS, "close-reverts-channels", "a released patch id never changes");
    assert_eq!(LAUNCH_GATE_HOLDS, "launch-gate-holds", "a released patch id never changes");
    assert_eq!(PRICE_RECONCILIATION, "price-reconciliation", "a released patch id never changes");
    assert_eq!(FUNDING_CLAIMS, "funding-claims", "a released patch id never changes");
    assert_eq!(LAUNCH_GATE_CHANNELS, "launch-gate-channels", "a released patch id never changes");
    assert_eq!(PROCESS_EVENTS, "process-events", "a released patch id never changes");
    assert_eq!(CALENDAR_RESERVATIONS, "calendar-reservations", "a released patch id never changes");
    // Consulted only when a revert is still unconfirmed after its second read: R3's POS
    // acknowledges in 5 s, longer than the test policy's acknowledgment deadline. The history
    // from before it reached that point too (its replay fails without the patch).
    assert_eq!(
        REVERT_READ_BACK_UNTIL_REGULAR, "revert-read-back-until-regular",
        "a released patch id never changes"
    );
    let late = patch_ids(&dir.join("gate_hold_stock.json"));
    assert!(late.iter().any(|p| p == REVERT_READ_BACK_UNTIL_REGULAR), "{late:?}");
    let before = patch_ids(&root.join("before-revert-read-back-until-regular/gate_hold_stock.json"));
    assert!(!before.iter().any(|p| p == REVERT_READ_BACK_UNTIL_REGULAR), "{before:?}");
    // Replenishment is consulted only where the policy enables it: the happy path (policy off)
    // replays without its marker, the replenished run records it.
    assert_eq!(IN_FLIGHT_REPLENISHMENT, "in-flight-replenishment", "a released patch id never changes");
    assert!(!now.iter().any(|p| p == IN_FLIGHT_REPLENISHMENT), "{now:?}");
    let replenished = patch_ids(&dir.join("replenished.json"));
    assert!(replenished.iter().any(|p| p == IN_FLIGHT_REPLENISHMENT), "{replenished:?}");
    let claimed = patch_ids(&dir.join("funding_claimed.json"));
    assert!(claimed.iter().any(|p| p == FUNDING_CLAIMS), "{claimed:?}");
    let drift = patch_ids(&dir.join("price_drift_corrected.json"));
    assert!(drift.iter().any(|p| p == PRICE_RECONCILIATION), "{drift:?}");
    // The v2 histories recorded before the gate held anything carry v2's marker, not the gate's.
    let v2 = patch_ids(&root.join("before-launch-gate-holds/happy_path.json"));
    assert!(v2.iter().any(|p| p == LIFECYCLE_V2), "{v2:?}");
    // A hold placed and released at the gate is recorded on the new path.
    let held = patch_ids(&dir.join("gate_hold_stock.json"));
    assert!(held.iter().any(|p| p == LAUNCH_GATE_HOLDS), "{held:?}");
    // A withdrawn acknowledgment republished and re-acknowledged at the gate is recorded on the
    // new path; the gate's stock hold from before the channel re-read replays without it.
    let channel = patch_ids(&dir.join("gate_hold_channel.json"));
    assert!(channel.iter().any(|p| p == LAUNCH_GATE_CHANNELS), "{channel:?}");
    let before = patch_ids(&root.join("before-launch-gate-channels/gate_hold_stock.json"));
    assert!(!before.iter().any(|p| p == LAUNCH_GATE_CHANNELS), "{before:?}");
}
