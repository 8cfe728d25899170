//! Reliability: the worker killed with SIGKILL at chosen points, the Temporal server restarted
//! over its database file, and the reference systems degraded (30% of calls failing, added
//! latency, one channel down for a long stretch). Each test checks the durable outcome in the
//! workflow and in the reference store: every promotion ends where it should, nothing is
//! published or priced twice, no approval is lost, and no region goes live without its
//! acknowledgments.
//!
//! Small dataset facts used here: 3 regions of 4 stores, 40 SKUs; R1 is clean, R3's POS
//! acknowledgments arrive 5 s after publishing.

use promo_contracts::{
    promo::v1::*,
    retail::v1::{
        self as wire, ClearFaultsRequest, Fault, InjectFaultRequest, PriceChangeState, PublicationState,
    },
};
use promo_tests::{
    env::{PromoEnv, TEST_TIME_SCALE, decision, spec, test_policy, update_message},
    process::WorkerProcess,
    temporal::DevServerOptions,
};
use promo_workflows::PromotionWorkflow;
use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};
use temporalio_client::{
    WorkflowExecuteUpdateOptions, WorkflowListOptions, WorkflowQueryOptions, WorkflowSignalOptions,
};

/// Long enough for a killed worker's tasks to time out and be picked up again.
const LIMIT: Duration = Duration::from_secs(240);

/// The reference store's view of one promotion: how many publications exist per
/// (revision, channel, region, kind, correction), their states, and the price changes' states.
/// (A correction republishes a target found charging other prices than approved, under its own
/// key: `…:correction-<n>`.)
struct Store {
    publications: BTreeMap<(u32, i32, String, i32, String), usize>,
    /// (kind, state) of each publication.
    publication_states: Vec<(wire::PublicationKind, PublicationState)>,
    price_changes: Vec<(u32, PriceChangeState)>,
    /// Activations still live on their channel: neither withdrawn nor superseded by an
    /// acknowledged revert on the same (channel, region).
    live_activations: Vec<(i32, String)>,
}

async fn store(env: &PromoEnv, id: &str) -> Store {
    let pubs = env.publications_of(id).await.unwrap();
    let mut publications = BTreeMap::new();
    for p in &pubs {
        let correction =
            p.idempotency_key.split_once(":correction-").map(|(_, n)| n.to_owned()).unwrap_or_default();
        *publications.entry((p.revision, p.channel, p.region_id.clone(), p.kind, correction)).or_default() +=
            1;
    }
    let pcs = env.price_changes(id).await.unwrap();
    let reverted = |a: &wire::Publication| {
        pubs.iter().any(|r| {
            r.kind() == wire::PublicationKind::Revert
                && r.state() == PublicationState::Acknowledged
                && (r.channel, &r.region_id) == (a.channel, &a.region_id)
        })
    };
    let live_activations = pubs
        .iter()
        .filter(|p| p.kind() == wire::PublicationKind::Activate)
        .filter(|p| p.state() != PublicationState::Withdrawn && !reverted(p))
        .map(|p| (p.channel, p.region_id.clone()))
        .collect();
    Store {
        live_activations,
        publications,
        publication_states: pubs.iter().map(|p| (p.kind(), p.state())).collect(),
        price_changes: pcs.iter().map(|p| (p.revision, p.state())).collect(),
    }
}

impl Store {
    /// Exactly one publication per (revision, channel, region, kind).
    fn assert_no_duplicates(&self, id: &str) {
        let dup: Vec<_> = self.publications.iter().filter(|(_, n)| **n != 1).collect();
        assert!(dup.is_empty(), "{id}: duplicate publications {dup:?}");
        let mut revisions: Vec<u32> = self.price_changes.iter().map(|p| p.0).collect();
        revisions.dedup();
        assert_eq!(revisions.len(), self.price_changes.len(), "{id}: duplicate price changes");
    }
}

/// Longest wait for one answer from the server (a query, an update): past it the caller asks
/// again or gives up at [`LIMIT`], so a worker that died shows as a failure, not a hang.
const ANSWER: Duration = Duration::from_secs(20);

/// The `status` query, or `None` while no worker can answer it.
async fn status(env: &PromoEnv, id: &str) -> Option<PromotionStatus> {
    let h = env.handle(id);
    let q = h.query(PromotionWorkflow::status, (), WorkflowQueryOptions::default());
    tokio::time::timeout(ANSWER, q).await.ok()?.ok()
}

/// Sends the `approve`, `reject` or `cancel` signal: the server stores it whether or not a
/// worker runs.
async fn signal(env: &PromoEnv, id: &str, name: &str, input: serde_json::Value) {
    let (h, o) = (env.handle(id), WorkflowSignalOptions::default());
    let sent = match name {
        "approve" => h.signal(PromotionWorkflow::approve_signal, input, o).await,
        "reject" => h.signal(PromotionWorkflow::reject_signal, input, o).await,
        "cancel" => h.signal(PromotionWorkflow::cancel_signal, input, o).await,
        _ => unreachable!("no such signal in these tests: {name}"),
    };
    sent.unwrap_or_else(|e| panic!("{name} signal to {id}: {e}"));
}

/// Polls the statuses of `ids` until `pred` holds for the map of those answered.
async fn wait_all(
    env: &PromoEnv,
    ids: &[&str],
    what: &str,
    pred: impl Fn(&BTreeMap<String, PromotionStatus>) -> bool,
) -> BTreeMap<String, PromotionStatus> {
    let t = Instant::now();
    loop {
        let mut seen = BTreeMap::new();
        for id in ids {
            if let Some(s) = status(env, id).await {
                seen.insert((*id).to_owned(), s);
            }
        }
        if pred(&seen) {
            return seen;
        }
        let stages: Vec<_> = seen
            .iter()
            .map(|(k, s)| match s.stage() {
                Stage::Done => format!("{k}: {:?} {}", s.outcome(), s.outcome_reason),
                stage => format!("{k}: {stage:?}"),
            })
            .collect();
        let ended: Vec<_> = seen
            .iter()
            .filter(|(_, s)| s.stage() == Stage::Done && s.outcome() == Outcome::Failed)
            .map(|(k, s)| format!("{k}: {:?} {}", s.outcome(), s.outcome_reason))
            .collect();
        assert!(ended.is_empty(), "waiting for {what}, but failed: {ended:?}");
        assert!(t.elapsed() < LIMIT, "timed out waiting for {what}; last seen {stages:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Approves `id` as merchandising, asking again while the update gets no answer from the
/// workflow (server or worker not reachable yet); panics on a refusal.
async fn approve_when_reachable(env: &PromoEnv, id: &str) {
    let t = Instant::now();
    // One update id for every attempt: an approval applied whose answer the restart cut off is
    // answered again by the server from that update's outcome, not refused as a second approval.
    let opts = WorkflowExecuteUpdateOptions::builder().update_id(format!("approve-{id}")).build();
    let input = serde_json::to_value(decision("E1001", Role::Merchandising, "ok")).unwrap();
    let h = env.handle(id);
    loop {
        let sent = h.execute_update(PromotionWorkflow::approve, input.clone(), opts.clone());
        let answer = match tokio::time::timeout(ANSWER, sent).await {
            Ok(r) => update_message(r),
            Err(_) => Err(format!("update error: no answer within {ANSWER:?}")),
        };
        match answer {
            Ok(_) => return,
            Err(e) if e.starts_with("update error") && t.elapsed() < LIMIT => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("{id}: approval refused: {e}"),
        }
    }
}

fn in_stage(seen: &BTreeMap<String, PromotionStatus>, id: &str, stages: &[Stage]) -> bool {
    seen.get(id).is_some_and(|s| stages.contains(&s.stage()))
}

/// Kills the worker with SIGKILL, runs `while_dead` (messages the server stores for the
/// workflow; no worker is there to see them), and starts a fresh worker process.
async fn crash(
    worker: &mut WorkerProcess,
    why: &str,
    log: &mut Vec<String>,
    while_dead: impl Future<Output = ()>,
) {
    worker.kill9().unwrap();
    log.push(why.to_owned());
    while_dead.await;
    worker.restart().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_mid_assessment_publishing_and_timers_loses_and_duplicates_nothing() {
    let env = PromoEnv::start(test_policy()).await.unwrap();
    let mut worker = WorkerProcess::spawn(env.worker_config()).unwrap();
    // Assessment reads take 1.5 s, so the kill lands inside one.
    let slow_reads = env
        .admin()
        .await
        .unwrap()
        .inject_fault(InjectFaultRequest {
            fault: Some(Fault {
                service: "inventory".into(),
                latency_ms: 1500,
                max_hits: 8,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .fault_id;
    // Launch 40 business days (80 s) ahead: room for the kills before the approval deadline.
    // KILL-1 stays live 6 days (12 s), long enough to be seen live after the fourth restart.
    let promos = [
        ("KILL-1", spec("KILL-1", &["R1"], 0..4, 40.0, 6.0)),
        ("KILL-2", spec("KILL-2", &["R3"], 4..8, 40.0, 2.0)),
        ("KILL-3", spec("KILL-3", &["R1"], 8..12, 40.0, 2.0)),
        ("KILL-4", spec("KILL-4", &["R1", "R3"], 12..16, 40.0, 2.0)),
    ];
    let ids: Vec<&str> = promos.iter().map(|p| p.0).collect();
    for (_, s) in &promos {
        env.start_promotion(s.clone()).await.unwrap();
    }
    let mut kills = Vec::new();

    // 1. Mid-assessment: an inventory read has begun (the assessment runs as a local activity
    // inside a workflow task, so the status query answers only after it; the systems see it).
    let t = Instant::now();
    while env.calls(slow_reads).await.unwrap() == 0 {
        assert!(t.elapsed() < LIMIT, "no assessment read began");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    crash(&mut worker, "mid-assessment", &mut kills, async {}).await;

    // 2. Every promotion waits for approval: the decisions arrive while no worker runs.
    wait_all(&env, &ids, "every promotion awaiting approval", |seen| {
        ids.iter().all(|id| in_stage(seen, id, &[Stage::Approval]))
    })
    .await;
    crash(&mut worker, "awaiting approval; decisions sent while down", &mut kills, async {
        let approve = serde_json::to_value(decision("E1001", Role::Merchandising, "go")).unwrap();
        for id in ["KILL-1", "KILL-2", "KILL-4"] {
            signal(&env, id, "approve", approve.clone()).await;
        }
        let no = serde_json::to_value(decision("E1001", Role::Merchandising, "wrong season")).unwrap();
        signal(&env, "KILL-3", "reject", no).await;
    })
    .await;

    // 3. Mid-publishing: R3's acknowledgments are 5 s late, so KILL-2 waits in publishing.
    wait_all(&env, &ids, "KILL-2 publishing", |seen| in_stage(seen, "KILL-2", &[Stage::Publishing])).await;
    crash(&mut worker, "mid-publishing", &mut kills, async {}).await;

    // 4. Waiting on launch timers; then cancel KILL-4 while the worker is down again.
    let gate = [Stage::LaunchGate];
    wait_all(&env, &ids, "the approved promotions at the launch gate", |seen| {
        ["KILL-1", "KILL-2", "KILL-4"].iter().all(|id| in_stage(seen, id, &gate))
    })
    .await;
    crash(&mut worker, "waiting on launch timers; cancel sent while down", &mut kills, async {
        let why = OperatorAction {
            operator_id: "E4001".into(),
            reason: "supplier recall".into(),
            ..Default::default()
        };
        signal(&env, "KILL-4", "cancel", serde_json::to_value(why).unwrap()).await;
    })
    .await;

    // 5. Live: mid-window, while monitoring.
    wait_all(&env, &ids, "KILL-1 live", |seen| in_stage(seen, "KILL-1", &[Stage::Active])).await;
    crash(&mut worker, "active window", &mut kills, async {}).await;

    let mut outcomes = BTreeMap::new();
    for id in &ids {
        let r = tokio::time::timeout(LIMIT, env.result(id)).await.expect("result in time").unwrap();
        outcomes.insert(*id, (r.outcome(), r.reason.clone()));
    }
    worker.check_alive().unwrap();
    assert_eq!(kills.len(), 5, "{kills:?}");
    assert_eq!(outcomes["KILL-1"].0, Outcome::Completed, "{outcomes:?}");
    assert_eq!(outcomes["KILL-2"].0, Outcome::Completed, "{outcomes:?}");
    assert_eq!(outcomes["KILL-3"].0, Outcome::Rejected, "{outcomes:?}");
    assert_eq!(outcomes["KILL-4"].0, Outcome::Cancelled, "{outcomes:?}");

    // Zero lost approvals: each decision sent while the worker was dead was applied, once.
    for (id, action) in
        [("KILL-1", "approve"), ("KILL-2", "approve"), ("KILL-4", "approve"), ("KILL-3", "reject")]
    {
        let audit = env.audit(id).await.unwrap();
        let n = audit.entries.iter().filter(|e| e.action == action && e.actor == "E1001").count();
        assert_eq!(n, 1, "{id}: {action} applied {n} times: {audit:?}");
    }

    // Zero duplicates, and the right end state in the reference store.
    for id in &ids {
        store(&env, id).await.assert_no_duplicates(id);
    }
    let done = store(&env, "KILL-1").await;
    assert_eq!(done.price_changes, vec![(1, PriceChangeState::Reverted)]);
    assert_eq!(done.publications.len(), 4, "activate + revert on POS and store comms");
    assert!(
        done.publication_states.iter().all(|(_, s)| *s == PublicationState::Acknowledged),
        "R1 acknowledges in 0.1 s"
    );
    let rejected = store(&env, "KILL-3").await;
    assert!(rejected.publications.is_empty() && rejected.price_changes.is_empty());
    let cancelled = store(&env, "KILL-4").await;
    assert_eq!(cancelled.price_changes, vec![(1, PriceChangeState::Reverted)]);
    assert_eq!(cancelled.publications.len(), 4, "POS and store comms in R1 and R3");
    assert!(cancelled.publication_states.iter().all(|(_, s)| *s == PublicationState::Withdrawn));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restarted_over_its_database_mid_run_every_promotion_completes() {
    let dir = std::env::temp_dir().join(format!("promo-restart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db_file = dir.join("temporal.db");
    let _ = std::fs::remove_file(&db_file);
    let mut env = PromoEnv::start_with(
        test_policy(),
        DevServerOptions { db_file: Some(db_file), ..Default::default() },
    )
    .await
    .unwrap();
    let mut worker = WorkerProcess::spawn(env.worker_config()).unwrap();
    let promos = [
        ("RST-1", spec("RST-1", &["R1"], 0..4, 12.0, 2.0)),
        ("RST-2", spec("RST-2", &["R3"], 4..8, 12.0, 2.0)),
        ("RST-3", spec("RST-3", &["R1"], 8..12, 12.0, 2.0)),
    ];
    let ids: Vec<&str> = promos.iter().map(|p| p.0).collect();
    for (_, s) in &promos {
        env.start_promotion(s.clone()).await.unwrap();
    }
    // 1. While they wait for approval.
    wait_all(&env, &ids, "every promotion awaiting approval", |seen| {
        ids.iter().all(|id| in_stage(seen, id, &[Stage::Approval]))
    })
    .await;
    env.dev.restart().await.unwrap();
    for id in &ids {
        // The update needs the server back and the worker reconnected; both happen by themselves.
        approve_when_reachable(&env, id).await;
    }
    // 2. While they wait on launch timers.
    wait_all(&env, &ids, "every promotion at the launch gate", |seen| {
        ids.iter().all(|id| in_stage(seen, id, &[Stage::LaunchGate]))
    })
    .await;
    env.dev.restart().await.unwrap();
    for id in &ids {
        let r = tokio::time::timeout(LIMIT, async {
            loop {
                match env.result(id).await {
                    Ok(r) => return r,
                    // The long poll for the result is cut by the restart; ask again.
                    Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
                }
            }
        })
        .await
        .expect("result in time");
        assert_eq!(r.outcome(), Outcome::Completed, "{id}: {}", r.reason);
        store(&env, id).await.assert_no_duplicates(id);
    }
    worker.check_alive().unwrap();
    drop(worker);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn degraded_systems_and_a_channel_down_delay_the_region_until_it_returns() {
    let env = PromoEnv::start(test_policy()).await.unwrap();
    let mut admin = env.admin().await.unwrap();
    let degraded = [
        // 30% of all calls fail, every call is 20 ms slower, and streams spike to 400 ms.
        Fault { error_rate: "0.3".into(), latency_ms: 20, ..Default::default() },
        Fault { service: "inventory".into(), latency_ms: 400, ..Default::default() },
        Fault { service: "demand".into(), latency_ms: 400, ..Default::default() },
    ];
    for f in &degraded {
        admin.inject_fault(InjectFaultRequest { fault: Some(f.clone()) }).await.unwrap();
    }
    // Ambiguous commits: the next two publish calls commit and lose their responses (unless
    // the 30% rule fails them first).
    let lost = Fault {
        service: "publication".into(),
        method: "Publish".into(),
        lose_response: true,
        max_hits: 2,
        ..Default::default()
    };
    admin.inject_fault(InjectFaultRequest { fault: Some(lost) }).await.unwrap();
    // R1's POS is down: publishing is accepted, acknowledgments wait.
    let down = Fault {
        channel: wire::Channel::Pos as i32,
        region_id: "R1".into(),
        channel_down: true,
        ..Default::default()
    };
    admin.inject_fault(InjectFaultRequest { fault: Some(down) }).await.unwrap();

    let mut worker = WorkerProcess::spawn(env.worker_config()).unwrap();
    env.start_promotion(spec("DEG-1", &["R1", "R3"], 0..6, 8.0, 8.0)).await.unwrap();
    let seen = wait_all(&env, &["DEG-1"], "approval", |s| in_stage(s, "DEG-1", &[Stage::Approval])).await;
    assert!(seen["DEG-1"].regions.iter().all(|r| r.state() == RegionState::Ready), "{seen:?}");
    approve_when_reachable(&env, "DEG-1").await;

    // R3 launches; R1 is held with a channel-sync exception, visible in status and search attributes.
    let channel_sync = |s: &PromotionStatus| {
        s.open_exceptions.iter().any(|e| e.kind() == ExceptionKind::ChannelSync && e.region_id == "R1")
    };
    let region = |s: &PromotionStatus, r: &str| s.regions.iter().find(|x| x.region_id == r).cloned().unwrap();
    let seen = wait_all(&env, &["DEG-1"], "R3 live, R1 delayed by its POS", |seen| {
        seen.get("DEG-1").is_some_and(|s| {
            channel_sync(s)
                && region(s, "R1").state() == RegionState::Delayed
                && region(s, "R3").state() == RegionState::Active
        })
    })
    .await;
    let s = &seen["DEG-1"];
    assert!(region(s, "R1").activated_at.is_none(), "R1 must not activate without its POS acknowledgment");
    assert!(region(s, "R1").awaiting_ack.contains(&(wire::Channel::Pos as i32)), "{s:?}");
    let query = "PromotionId = 'DEG-1' AND OpenExceptions > 0";
    let t = Instant::now();
    loop {
        use futures::StreamExt;
        let listed: Vec<_> = env.client.list_workflows(query, WorkflowListOptions::default()).collect().await;
        if listed.iter().any(|w| w.as_ref().is_ok_and(|w| w.id() == "promotion-DEG-1")) {
            break;
        }
        assert!(t.elapsed() < LIMIT, "visibility never listed DEG-1 for {query:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The outage lasts: for 6 s more (3 business days, past the on-time slack) R1 stays dark
    // while R3 sells.
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(6) {
        if let Some(s) = status(&env, "DEG-1").await {
            assert_ne!(region(&s, "R1").state(), RegionState::Active, "R1 went live with its POS down");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let faults = admin.list_faults(wire::ListFaultsRequest {}).await.unwrap().into_inner().faults;
    let lost_hits = faults.iter().find(|f| f.fault.as_ref().is_some_and(|f| f.lose_response)).map(|f| f.hits);
    assert_eq!(lost_hits, Some(2), "the lost-response rule was consumed while publishing: {faults:?}");

    // The channel returns (the rest stays degraded): R1 launches late and the exception resolves.
    admin.clear_faults(ClearFaultsRequest {}).await.unwrap();
    for f in &degraded[..1] {
        admin.inject_fault(InjectFaultRequest { fault: Some(f.clone()) }).await.unwrap();
    }
    let seen = wait_all(&env, &["DEG-1"], "R1 live after the channel returned", |seen| {
        seen.get("DEG-1").is_some_and(|s| region(s, "R1").state() == RegionState::Active)
    })
    .await;
    assert!(!channel_sync(&seen["DEG-1"]), "the exception resolves when R1 launches: {seen:?}");
    let r = tokio::time::timeout(LIMIT, env.result("DEG-1")).await.expect("result in time").unwrap();
    assert_eq!(r.outcome(), Outcome::Completed, "{}", r.reason);
    let report = r.report.unwrap();
    let r1 = report.regions.iter().find(|x| x.region_id == "R1").unwrap();
    assert!(!r1.launched_on_time, "R1 launched late, after its channel returned: {r1:?}");
    worker.check_alive().unwrap();
    admin.clear_faults(ClearFaultsRequest {}).await.unwrap();
    let st = store(&env, "DEG-1").await;
    st.assert_no_duplicates("DEG-1");
    // Four activations went live; at close each was reverted on its channel (an acknowledged
    // revert) or, where the degraded channel had not confirmed the revert in time, withdrawn by
    // the ending's compensation sweep: none is left live.
    let activations = st.publication_states.iter().filter(|(k, _)| *k == wire::PublicationKind::Activate);
    assert_eq!(activations.count(), 4, "{:?}", st.publication_states);
    assert!(st.live_activations.is_empty(), "left live: {:?}", st.live_activations);
    assert_eq!(st.price_changes, vec![(1, PriceChangeState::Reverted)]);
}

/// The patched `no-launch-after-window` path, forced: the worker is down from before the launch
/// until after the window has ended, so the workflow handles its launch timer late, with R1's
/// acknowledgments long in. The region must not go live with an inverted sales window; the
/// promotion completes with the miss recorded, nothing sold, prices reverted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_whose_gate_opens_after_the_window_never_goes_live() {
    let env = PromoEnv::start(test_policy()).await.unwrap();
    let mut worker = WorkerProcess::spawn(env.worker_config()).unwrap();
    // Launch 12 business days ahead for 1 day: the window ends 26 s of wall time from now.
    let day = Duration::from_secs(86_400 / u64::from(TEST_TIME_SCALE));
    let window_end = tokio::time::Instant::now() + day * 13;
    env.start_promotion(spec("LATE-1", &["R1"], 0..4, 12.0, 1.0)).await.unwrap();
    wait_all(&env, &["LATE-1"], "LATE-1 awaiting approval", |seen| {
        in_stage(seen, "LATE-1", &[Stage::Approval])
    })
    .await;
    approve_when_reachable(&env, "LATE-1").await;
    wait_all(&env, &["LATE-1"], "LATE-1 at the launch gate", |seen| {
        in_stage(seen, "LATE-1", &[Stage::LaunchGate])
    })
    .await;
    worker.kill9().unwrap();
    // The condition waited for is the clock itself: the window must be over while no worker runs.
    tokio::time::sleep_until(window_end + day).await;
    worker.restart().unwrap();

    let r = tokio::time::timeout(LIMIT, env.result("LATE-1")).await.expect("result in time").unwrap();
    assert_eq!(r.outcome(), Outcome::Completed, "{r:?}");
    let report = r.report.expect("a completed promotion has a report");
    assert_eq!(report.units_sold, 0, "nothing sells in a region that never went live");
    let s = status(&env, "LATE-1").await.expect("status of a closed workflow");
    let r1 = s.regions.iter().find(|x| x.region_id == "R1").expect("R1 readiness");
    assert!(r1.activated_at.is_none(), "R1 went live after its window: {r1:?}");
    assert!(r1.note.contains("the window ended before the region could launch"), "{r1:?}");
    let audit = env.audit("LATE-1").await.unwrap();
    assert!(
        audit.entries.iter().any(|e| e.action == "region-missed-window" && e.detail == "R1"),
        "{audit:?}"
    );
    assert!(!audit.entries.iter().any(|e| e.action == "region-activated"), "{audit:?}");
    let store = store(&env, "LATE-1").await;
    store.assert_no_duplicates("LATE-1");
    assert_eq!(store.price_changes, vec![(1, PriceChangeState::Reverted)]);
    worker.check_alive().unwrap();
}

/// The identities that ran workflow tasks and activities of promotion `id` (from its history).
async fn identities(env: &PromoEnv, id: &str) -> std::collections::BTreeSet<String> {
    use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
    let events = env
        .handle(id)
        .fetch_history(temporalio_client::WorkflowFetchHistoryOptions::default())
        .into_events()
        .await
        .unwrap();
    events
        .into_iter()
        .filter_map(|e| match e.attributes {
            Some(Attributes::WorkflowTaskCompletedEventAttributes(a)) => Some(a.identity),
            Some(Attributes::ActivityTaskStartedEventAttributes(a)) => Some(a.identity),
            _ => None,
        })
        .filter(|i| !i.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_the_queue_and_one_killed_for_good_loses_and_duplicates_nothing() {
    let env = PromoEnv::start(test_policy()).await.unwrap();
    let mut first = WorkerProcess::spawn(env.worker_config()).unwrap();
    // Six promotions on distinct SKUs, launching 20 business days (40 s) ahead — time for six
    // assessments and approvals one after another before the approval deadline — lasting 2.
    let ids: Vec<String> = (0..6).map(|i| format!("TWO-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let region = if i % 2 == 0 { "R1" } else { "R3" };
        env.start_promotion(spec(id, &[region], i * 4..i * 4 + 4, 20.0, 2.0)).await.unwrap();
    }
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    wait_all(&env, &refs, "every promotion awaiting approval", |seen| {
        refs.iter().all(|id| in_stage(seen, id, &[Stage::Approval]))
    })
    .await;
    // The first worker alone has taken every promotion through intake, so the one about to be
    // killed has certainly done work (two workers from the start may leave it none on a busy
    // machine); the second joins the queue now and shares what follows.
    first.check_alive().unwrap();
    let mut second_config = env.worker_config();
    second_config.dir = env.dir().join("worker-b");
    let mut second = WorkerProcess::spawn(second_config).unwrap();
    for id in &refs {
        approve_when_reachable(&env, id).await;
    }
    // One worker dies for good while promotions publish and wait at the launch gate.
    wait_all(&env, &refs, "a promotion past approval", |seen| {
        seen.values().any(|s| matches!(s.stage(), Stage::Publishing | Stage::LaunchGate))
    })
    .await;
    let killed = format!(":{}", first.pid());
    first.kill9().unwrap();
    let mut outcomes = BTreeMap::new();
    for id in &refs {
        let r = tokio::time::timeout(LIMIT, env.result(id)).await.expect("result in time").unwrap();
        outcomes.insert(*id, r.outcome());
    }
    second.check_alive().unwrap();
    assert!(outcomes.values().all(|o| *o == Outcome::Completed), "{outcomes:?}");
    let mut seen = std::collections::BTreeSet::new();
    for id in &refs {
        // Exactly once: one run per promotion, one approval applied, nothing published twice.
        let runs: Vec<_> = futures::StreamExt::collect::<Vec<_>>(
            env.client
                .list_workflows(format!("WorkflowId = 'promotion-{id}'"), WorkflowListOptions::default()),
        )
        .await;
        assert_eq!(runs.len(), 1, "{id}: {runs:?}");
        let audit = env.audit(id).await.unwrap();
        assert_eq!(audit.entries.iter().filter(|e| e.action == "approve").count(), 1, "{id}");
        store(&env, id).await.assert_no_duplicates(id);
        seen.extend(identities(&env, id).await);
    }
    // Both workers did work (the killed one before it died), and the survivor finished it.
    assert!(seen.iter().any(|i| i.ends_with(&killed)), "{seen:?} (killed {killed})");
    assert!(seen.iter().any(|i| i.ends_with(&format!(":{}", second.pid()))), "{seen:?}");
}
