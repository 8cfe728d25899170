//! What a system's refusal or outage does to a promotion that has written to the systems: a
//! withdrawal refused for good blocks the compensation (COMPENSATION_BLOCKED, the rest undone)
//! until an operator decides; a revert the channel lost is republished by the close read-back;
//! three business days without the systems in the window and at close cost time, never the
//! promotion; the end is recorded once the record is back; and a FAILED promotion started again
//! under the same id writes records of its own.

use promo_contracts::{
    promo::v1::*,
    retail::v1::{
        Channel, Drift, DriftPricesRequest, Fault, GetLivePricesRequest, ListEventsRequest,
        ListPublicationsRequest, PriceChangeState, ProcessEventKind, PublicationKind, PublicationState,
    },
};
use promo_tests::{
    env::{PromoEnv, spec, test_policy},
    promises,
};
use promo_workflows::PromotionWorkflow;
use std::time::{Duration, Instant};
use temporalio_client::{WorkflowDescribeOptions, WorkflowExecutionStatus};

const LIMIT: Duration = Duration::from_secs(90);

fn open(s: &PromotionStatus, kind: ExceptionKind) -> Option<&PromotionException> {
    s.open_exceptions.iter().find(|e| e.kind() == kind)
}

fn fault(service: &str, method: &str) -> Fault {
    Fault { service: service.into(), method: method.into(), error_rate: "1".into(), ..Default::default() }
}

async fn resolve(env: &PromoEnv, id: &str, resolution: CompensationResolution) -> Result<String, String> {
    let d = CompensationDecision {
        operator_id: "E4001".into(),
        resolution: resolution as i32,
        reason: "checked with the channel team".into(),
        ..Default::default()
    };
    env.update(id, || PromotionWorkflow::resolve_compensation, d).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawal_refused_for_good_blocks_the_compensation_until_an_operator_retries() {
    let env = PromoEnv::start(test_policy()).await.unwrap();
    let id = "BLOCKED-1";
    let (blocked, prices, trail) = env
        .with_worker(async {
            // Four business days (8 s) to launch: its approval deadline, 12 business hours before,
            // leaves room for the assessment on a busy machine.
            env.launch(spec(id, &["R1"], 0..4, 4.0, 6.0), "R1").await;
            // R1's POS no longer knows the publication it acknowledged: its withdrawal is refused
            // for good (NOT_FOUND), while everything else can be undone.
            let pos = Fault {
                channel: Channel::Pos as i32,
                region_id: "R1".into(),
                error_code: "NOT_FOUND".into(),
                ..fault("publication", "Withdraw")
            };
            env.inject(pos).await.unwrap();
            env.operate(id, "cancel", "supplier recall").await.unwrap();
            let blocked = env
                .wait_status(id, "compensation blocked", LIMIT, |s| {
                    open(s, ExceptionKind::CompensationBlocked).is_some()
                })
                .await
                .unwrap();
            // The rest was undone, item by item: the price change is reverted.
            let prices = env.price_changes(id).await.unwrap();
            // An acceptance while the systems still show the publication live does not hold.
            resolve(&env, id, CompensationResolution::Accept).await.unwrap();
            env.wait_status(id, "the acceptance checked", LIMIT, |s| {
                s.stage() != Stage::Done && open(s, ExceptionKind::CompensationBlocked).is_some()
            })
            .await
            .unwrap();
            let deadline = Instant::now() + LIMIT;
            while !env
                .audit(id)
                .await
                .unwrap()
                .entries
                .iter()
                .any(|e| e.action == "compensation-accept-refused")
            {
                assert!(Instant::now() < deadline, "the acceptance was not checked");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // The channel team restores the publication; the operator retries.
            env.clear_faults().await.unwrap();
            resolve(&env, id, CompensationResolution::Retry).await.unwrap();
            let result = env.result(id).await.unwrap();
            assert_eq!(result.outcome(), Outcome::Cancelled, "{result:?}");
            promises::ended_clean(&env, id, LIMIT).await.unwrap_or_else(|e| panic!("{e}"));
            env.record_history(id, "compensation_blocked").await.unwrap();
            (blocked, prices, env.audit(id).await.unwrap())
        })
        .await
        .unwrap();
    let e = open(&blocked, ExceptionKind::CompensationBlocked).unwrap();
    assert_eq!(e.owner_role(), Role::Operations, "{e:?}");
    assert!(e.revenue_at_risk.parse::<f64>().unwrap() > 0.0, "{e:?}");
    assert!(e.detail.contains("POS R1") && e.detail.contains("NotFound"), "{e:?}");
    assert_ne!(blocked.stage(), Stage::Done, "a run does not end while something it wrote is live");
    assert!(prices.iter().all(|p| p.state() == PriceChangeState::Reverted), "{prices:?}");
    promises::with_actions(
        &trail,
        &["compensation-blocked", "resolve-compensation", "compensation-accept-refused", "calendar-released"],
    );
    promises::nothing_live(&env.systems.url(), id, false).await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revert_the_channel_lost_is_republished_by_the_close_read_back() {
    let env = PromoEnv::start(test_policy()).await.unwrap();
    let id = "LOST-REVERT";
    let result = env
        .with_worker(async {
            env.launch(spec(id, &["R1"], 0..4, 4.0, 3.0), "R1").await;
            // At close, the read-back of R1's POS is slow (3 s), and once the channel has
            // acknowledged the revert it charges a wrong price again: the revert is lost.
            let slow = Fault {
                channel: Channel::Pos as i32,
                region_id: "R1".into(),
                latency_ms: 3_000,
                error_rate: "0".into(),
                ..fault("publication", "GetLivePrices")
            };
            let mut hub = env.publications().await.unwrap();
            let reverted = |pubs: &[promo_contracts::retail::v1::Publication]| {
                pubs.iter().any(|p| {
                    p.kind() == PublicationKind::Revert
                        && p.channel == Channel::Pos as i32
                        && p.region_id == "R1"
                        && p.state() == PublicationState::Acknowledged
                })
            };
            env.wait_status(id, "closing", Duration::from_secs(120), |s| s.stage() == Stage::Closing)
                .await
                .unwrap();
            env.inject(slow).await.unwrap();
            let deadline = Instant::now() + LIMIT;
            loop {
                let pubs = hub
                    .list_publications(ListPublicationsRequest { promotion_id: id.into() })
                    .await
                    .unwrap()
                    .into_inner()
                    .publications;
                if reverted(&pubs) {
                    break;
                }
                assert!(Instant::now() < deadline, "the revert was never acknowledged: {pubs:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let lost = DriftPricesRequest {
                channel: Channel::Pos as i32,
                region_id: "R1".into(),
                promotion_id: id.into(),
                drift: Drift::Wrong as i32,
                sku_count: 2,
            };
            env.admin().await.unwrap().drift_prices(lost).await.unwrap();
            let result = env.result(id).await.unwrap();
            env.clear_faults().await.unwrap();
            result
        })
        .await
        .unwrap();
    assert_eq!(result.outcome(), Outcome::Completed, "{result:?}");
    let report = result.report.unwrap();
    let lost: Vec<_> = report
        .price_corrections
        .iter()
        .filter(|c| c.after_revert && c.region_id == "R1" && c.channel == Channel::Pos as i32)
        .collect();
    assert!(!lost.is_empty(), "the close read-back saw the lost revert: {:?}", report.price_corrections);
    assert!(lost.iter().all(|c| c.corrected_at.is_some() && c.republished >= 1), "{lost:?}");
    // And the channel charges regular prices again.
    let prices = env
        .publications()
        .await
        .unwrap()
        .get_live_prices(GetLivePricesRequest {
            channel: Channel::Pos as i32,
            region_id: "R1".into(),
            skus: vec![],
        })
        .await;
    assert!(prices.is_ok(), "{prices:?}");
    promises::nothing_live(&env.systems.url(), id, true).await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_business_days_without_the_systems_in_the_window_and_at_close_cost_time_not_the_promotion() {
    let mut policy = test_policy();
    policy.systems_attempts = 2;
    policy.compensation_attempts = 2;
    let env = PromoEnv::start(policy).await.unwrap();
    let id = "OUTAGE-1";
    // A business day is two seconds here.
    let three_days = Duration::from_secs(6);
    let (in_window, at_close, result) = env
        .with_worker(async {
            env.launch(spec(id, &["R1"], 0..4, 4.0, 8.0), "R1").await;
            // Every service down (the record too) for three business days in the window.
            let rules =
                ["inventory", "demand", "sales", "publication", "price", "analytics", "replenishment"];
            for service in rules {
                env.inject(fault(service, "")).await.unwrap();
            }
            let in_window = env
                .wait_status(id, "systems unavailable", LIMIT, |s| {
                    open(s, ExceptionKind::SystemsUnavailable).is_some()
                })
                .await
                .unwrap();
            tokio::time::sleep(three_days).await;
            env.clear_faults().await.unwrap();
            env.wait_status(id, "back", LIMIT, |s| open(s, ExceptionKind::SystemsUnavailable).is_none())
                .await
                .unwrap();
            // Down again from the close, for three more days.
            env.wait_status(id, "closing", LIMIT, |s| s.stage() == Stage::Closing).await.unwrap();
            for service in rules {
                env.inject(fault(service, "")).await.unwrap();
            }
            let at_close = env
                .wait_status(id, "the close waits", LIMIT, |s| {
                    open(s, ExceptionKind::CompensationPending).is_some()
                        || open(s, ExceptionKind::SystemsUnavailable).is_some()
                })
                .await
                .unwrap();
            tokio::time::sleep(three_days).await;
            env.clear_faults().await.unwrap();
            let result = env.result(id).await.unwrap();
            promises::ended_clean(&env, id, LIMIT).await.unwrap_or_else(|e| panic!("{e}"));
            env.record_history(id, "systems_unavailable").await.unwrap();
            (in_window, at_close, result)
        })
        .await
        .unwrap();
    assert_eq!(in_window.stage(), Stage::Active, "{in_window:#?}");
    let e = open(&in_window, ExceptionKind::SystemsUnavailable).unwrap();
    assert_eq!(e.owner_role(), Role::Operations, "{e:?}");
    assert_ne!(at_close.stage(), Stage::Done, "{at_close:#?}");
    assert_eq!(result.outcome(), Outcome::Completed, "{result:?}");
    let report = result.report.expect("the report, produced once the systems answered");
    assert!(report.units_sold > 0, "{report:?}");
    promises::nothing_live(&env.systems.url(), id, true).await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_is_recorded_once_the_record_is_back() {
    let env = PromoEnv::start(test_policy()).await.unwrap();
    let id = "LAST-WORDS";
    let ended = env
        .with_worker(async {
            env.start_promotion(spec(id, &["R1"], 0..3, 4.0, 2.0)).await.unwrap();
            env.wait_status(id, "approval", LIMIT, |s| s.stage() == Stage::Approval).await.unwrap();
            // The record goes down before the promotion ends, and stays down past its end.
            env.inject(fault("analytics", "RecordEvents")).await.unwrap();
            env.operate(id, "cancel", "not this week").await.unwrap();
            env.wait_status(id, "done", LIMIT, |s| s.stage() == Stage::Done).await.unwrap();
            // Done in its status, and still running: its end is not recorded yet.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let d = env.handle(id).describe(WorkflowDescribeOptions::default()).await.unwrap();
            assert_eq!(d.status(), WorkflowExecutionStatus::Running, "the run waits for the record");
            env.clear_faults().await.unwrap();
            let result = env.result(id).await.unwrap();
            assert_eq!(result.outcome(), Outcome::Cancelled);
            let trail = env.audit(id).await.unwrap();
            env.events()
                .await
                .unwrap()
                .list_events(ListEventsRequest {
                    promotion_id: id.into(),
                    kinds: vec![ProcessEventKind::Ended as i32],
                    first_run_id: trail.first_run_id,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .events
        })
        .await
        .unwrap();
    assert_eq!(ended.len(), 1, "the end, recorded once: {ended:?}");
    assert!(ended[0].detail.starts_with("CANCELLED"), "{:?}", ended[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_promotion_started_again_writes_records_of_its_own() {
    let env = PromoEnv::start(test_policy()).await.unwrap();
    let id = "AGAIN-1";
    let (first, second) = env
        .with_worker(async {
            // The store-comms hub refuses R1's publication for good: FAILED, its staged prices
            // and publications undone.
            let refuse = Fault {
                channel: Channel::StoreComms as i32,
                region_id: "R1".into(),
                error_code: "FAILED_PRECONDITION".into(),
                ..fault("publication", "Publish")
            };
            env.inject(refuse).await.unwrap();
            env.start_promotion(spec(id, &["R1"], 0..4, 4.0, 2.0)).await.unwrap();
            env.wait_status(id, "approval", LIMIT, |s| s.stage() == Stage::Approval).await.unwrap();
            env.approve(id, "E1001", Role::Merchandising).await.unwrap();
            let failed = env.result(id).await;
            assert!(failed.is_err(), "the run fails: {failed:?}");
            let first = env.wait_status(id, "done", LIMIT, |s| s.stage() == Stage::Done).await.unwrap();
            assert_eq!(first.outcome(), Outcome::Failed, "{first:#?}");
            promises::nothing_live(&env.systems.url(), id, false).await.unwrap_or_else(|e| panic!("{e}"));
            let before = records(&env, id).await;
            // Fixed, and started again under the same id.
            env.clear_faults().await.unwrap();
            env.start_promotion(spec(id, &["R1"], 0..4, 4.0, 2.0)).await.unwrap();
            env.wait_status(id, "approval again", LIMIT, |s| {
                s.stage() == Stage::Approval && s.first_run_id != first.first_run_id
            })
            .await
            .unwrap();
            env.approve(id, "E1001", Role::Merchandising).await.unwrap();
            let result = env.result(id).await.unwrap();
            assert_eq!(result.outcome(), Outcome::Completed, "{result:?}");
            (before, records(&env, id).await)
        })
        .await
        .unwrap();
    // The second chain wrote a price change and publications of its own: none of the first's
    // (reverted, withdrawn) records was handed back to it.
    let (old_prices, old_pubs) = first;
    let (prices, pubs) = second;
    let new_prices: Vec<_> = prices.iter().filter(|p| !old_prices.contains(p)).collect();
    let new_pubs: Vec<_> = pubs.iter().filter(|p| !old_pubs.contains(p)).collect();
    assert_eq!(new_prices.len(), 1, "one new price change: {prices:?} after {old_prices:?}");
    assert!(new_pubs.len() >= 2, "new publications: {pubs:?} after {old_pubs:?}");
    promises::nothing_live(&env.systems.url(), id, true).await.unwrap_or_else(|e| panic!("{e}"));
}

/// The ids of the promotion's price changes and publications.
async fn records(env: &PromoEnv, id: &str) -> (Vec<String>, Vec<String>) {
    let prices = env.price_changes(id).await.unwrap().into_iter().map(|p| p.price_change_id).collect();
    let pubs = env.publications_of(id).await.unwrap().into_iter().map(|p| p.publication_id).collect();
    (prices, pubs)
}
