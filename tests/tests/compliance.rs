//! Execution compliance on a real Temporal dev server and the reference systems (small dataset,
//! one business day in two seconds): the launch gate's final re-check gates. Stock drained,
//! funding revoked and a channel acknowledgment taken back after approval (through the reference
//! systems' admin contract) hold the regions they affect back from launching, with an exception
//! naming owner and revenue at risk, until the owner acts.
//!
//! Small dataset facts used here: R1 is well stocked and acknowledges at once; R3 is stocked and
//! its POS acknowledges in 5 s; agreement FA-001 (supplier SUP-001, SKU-00001 and SKU-00007) is
//! active.

use promo_contracts::{
    promo::v1::*,
    retail::v1::{AgreementStatus, DrainStockRequest, SetAgreementStatusRequest},
};
use promo_tests::env::{PromoEnv, decision, spec, test_policy, update_message};
use promo_workflows::PromotionWorkflow;
use std::time::{Duration, Instant};
use temporalio_client::WorkflowExecuteUpdateOptions;

const LIMIT: Duration = Duration::from_secs(120);

fn region(s: &PromotionStatus, r: &str) -> RegionReadiness {
    s.regions.iter().find(|x| x.region_id == r).cloned().unwrap_or_else(|| panic!("no {r} in {s:?}"))
}

fn gate_exception(s: &PromotionStatus, kind: ExceptionKind) -> Option<PromotionException> {
    s.open_exceptions.iter().find(|e| e.kind() == kind && e.exception_id.starts_with("gate-")).cloned()
}

async fn update(env: &PromoEnv, id: &str, name: &str, input: serde_json::Value) -> Result<String, String> {
    let h = env.handle(id);
    let o = WorkflowExecuteUpdateOptions::default();
    update_message(match name {
        "approve" => h.execute_update(PromotionWorkflow::approve, input, o).await,
        "override" => h.execute_update(PromotionWorkflow::override_gate, input, o).await,
        "choose_remediation" => h.execute_update(PromotionWorkflow::choose_remediation, input, o).await,
        _ => unreachable!("{name}"),
    })
}

/// Asserts for `d` of wall time that `region` does not go live.
async fn stays_dark(env: &PromoEnv, id: &str, r: &str, d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        let s = env.wait_status(id, "status", LIMIT, |_| true).await.unwrap();
        assert_ne!(region(&s, r).state(), RegionState::Active, "{r} went live while held: {s:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_drained_after_approval_is_held_at_the_gate_until_an_operator_overrides() {
    let env = PromoEnv::start(test_policy()).await.unwrap();
    let id = "GATE-S";
    let (result, trail) = env
        .with_worker(async {
            // Launch 8 business days (16 s) ahead, 4 days long.
            env.start_promotion(spec(id, &["R1", "R3"], 0..4, 8.0, 4.0)).await.unwrap();
            env.wait_status(id, "approval", LIMIT, |s| s.stage() == Stage::Approval).await.unwrap();
            let s = env.wait_status(id, "status", LIMIT, |_| true).await.unwrap();
            assert!(s.regions.iter().all(|r| r.state() == RegionState::Ready), "{s:?}");
            env.approve(id, "E1001", Role::Merchandising).await.unwrap();
            // After approval, R1's stores lose their stock (a recall): the re-check finds it.
            let mut admin = env.admin().await.unwrap();
            let drained = admin
                .drain_stock(DrainStockRequest { region_id: "R1".into(), skus: vec![] })
                .await
                .unwrap()
                .into_inner();
            assert!(drained.positions > 0);

            let s = env
                .wait_status(id, "R3 live, R1 held at the gate", LIMIT, |s| {
                    region(s, "R3").state() == RegionState::Active
                        && gate_exception(s, ExceptionKind::StockRisk).is_some()
                })
                .await
                .unwrap();
            let r1 = region(&s, "R1");
            assert_eq!(r1.state(), RegionState::AtRisk, "{r1:?}");
            assert!(r1.activated_at.is_none() && r1.note.contains("held at the launch gate"), "{r1:?}");
            let e = gate_exception(&s, ExceptionKind::StockRisk).unwrap();
            assert_eq!((e.region_id.as_str(), e.owner_role()), ("R1", Role::SupplyChain), "{e:?}");
            let at_risk: f64 = e.revenue_at_risk.parse().unwrap();
            assert!(at_risk > 0.0, "revenue at risk is computed: {e:?}");
            stays_dark(&env, id, "R1", Duration::from_secs(2)).await;

            // The same paths as at assessment: a remediation the gate cannot apply is refused with
            // the reason; an operator's override releases the hold.
            let choice =
                serde_json::json!({"regionId": "R1", "optionId": "R1:drop-short", "chosenBy": "E0042"});
            let refused = update(&env, id, "choose_remediation", choice).await.unwrap_err();
            assert!(refused.contains("only a delay"), "{refused}");
            let not_ops = serde_json::json!({"operatorId": "E1001", "regionId": "R1", "reason": "x"});
            assert!(update(&env, id, "override", not_ops).await.is_err());
            let ops =
                serde_json::json!({"operatorId": "E4001", "regionId": "R1", "reason": "stock recounted"});
            assert_eq!(update(&env, id, "override", ops).await, Ok("gate opened for R1".into()));
            let s = env
                .wait_status(id, "R1 live after the override", LIMIT, |s| {
                    region(s, "R1").state() == RegionState::Active
                })
                .await
                .unwrap();
            // It went live at least the 2 s (one business day) it was held after R3.
            let at = |r: &str| region(&s, r).activated_at.map(|t| t.seconds).unwrap();
            assert!(at("R1") - at("R3") >= 86_400, "R1 at {}, R3 at {}", at("R1"), at("R3"));
            let (r, trail) = env.finish(id, "gate_hold_stock").await;
            (r, trail)
        })
        .await
        .unwrap();
    assert_eq!(result.outcome(), Outcome::Completed, "{}", result.reason);
    promo_tests::promises::with_actions(
        &trail,
        &["gate-hold", "choose-remediation-refused", "override", "gate-hold-released"],
    );
    let released = trail.entries.iter().find(|e| e.action == "gate-hold-released").unwrap();
    assert_eq!(released.actor, "E4001");
    // R3's POS takes 5 s to load the revert, longer than the acknowledgment deadline: close
    // read it back until it charged regular prices again, and reported how long that took.
    let report = result.report.unwrap();
    let late: Vec<_> = report.price_corrections.iter().filter(|c| c.after_revert).collect();
    assert!(late.iter().any(|c| c.region_id == "R3"), "{:?}", report.price_corrections);
    assert!(late.iter().all(|c| c.corrected_at.is_some()), "a revert left unconfirmed: {late:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agreement_revoked_after_approval_holds_the_launch_until_finance_approves() {
    let env = PromoEnv::start(test_policy()).await.unwrap();
    let id = "GATE-F";
    let result = env
        .with_worker(async {
            let mut s = spec(id, &["R1"], 0..4, 8.0, 4.0);
            s.lines[0].funding_agreement_id = "FA-001".into();
            env.start_promotion(s).await.unwrap();
            let s = env.wait_status(id, "approval", LIMIT, |s| s.stage() == Stage::Approval).await.unwrap();
            assert!(!s.approvals.iter().any(|a| a.role() == Role::Finance), "funding is valid: {s:?}");
            env.approve(id, "E1001", Role::Merchandising).await.unwrap();
            // After approval the supplier terminates the agreement.
            let mut admin = env.admin().await.unwrap();
            let req = SetAgreementStatusRequest {
                agreement_id: "FA-001".into(),
                status: AgreementStatus::Expired as i32,
                ..Default::default()
            };
            let previous = admin.set_agreement_status(req).await.unwrap().into_inner().previous();
            assert_eq!(previous, AgreementStatus::Active);

            let s = env
                .wait_status(id, "the launch held for funding", LIMIT, |s| {
                    gate_exception(s, ExceptionKind::FundingMissing).is_some()
                })
                .await
                .unwrap();
            let e = gate_exception(&s, ExceptionKind::FundingMissing).unwrap();
            assert_eq!(e.owner_role(), Role::Finance, "{e:?}");
            assert!(e.detail.contains("FA-001"), "{e:?}");
            assert!(e.revenue_at_risk.parse::<f64>().unwrap() > 0.0, "{e:?}");
            assert_eq!(region(&s, "R1").state(), RegionState::AtRisk);
            // Finance's queue in visibility lists it.
            let query =
                format!("PromotionId = '{id}' AND PendingApprovals = 'FINANCE' AND OpenExceptions > 0");
            let t = Instant::now();
            loop {
                use futures::StreamExt;
                let opts = temporalio_client::WorkflowListOptions::default();
                let listed: Vec<_> = env.client.list_workflows(&query, opts).collect().await;
                if !listed.is_empty() {
                    break;
                }
                assert!(t.elapsed() < LIMIT, "not listed by {query}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            // The launch instant passes (16 s after start) and R1 stays dark.
            stays_dark(&env, id, "R1", Duration::from_secs(4)).await;

            // Only finance can release it.
            let merch = serde_json::to_value(decision("E1001", Role::Merchandising, "go")).unwrap();
            assert!(update(&env, id, "approve", merch).await.is_err());
            let finance = serde_json::to_value(decision("E2001", Role::Finance, "absorb it")).unwrap();
            let ok = update(&env, id, "approve", finance).await.unwrap();
            assert!(ok.contains("without the withdrawn funding"), "{ok}");
            env.wait_status(id, "R1 live after finance approved", LIMIT, |s| {
                region(s, "R1").state() == RegionState::Active
            })
            .await
            .unwrap();
            env.result(id).await.unwrap()
        })
        .await
        .unwrap();
    assert_eq!(result.outcome(), Outcome::Completed, "{}", result.reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_that_takes_its_acknowledgment_back_holds_its_region_until_it_acknowledges_again() {
    use promo_contracts::retail::v1::{
        Channel, ClearFaultsRequest, Fault, InjectFaultRequest, ListPublicationsRequest, PublicationKind,
        PublicationState, WithdrawAcknowledgmentRequest,
    };
    let env = PromoEnv::start(test_policy()).await.unwrap();
    let id = "GATE-C";
    let (result, trail) = env
        .with_worker(async {
            // Launch 10 business days (20 s) ahead, 4 days long.
            env.start_promotion(spec(id, &["R1", "R3"], 0..4, 10.0, 4.0)).await.unwrap();
            env.wait_status(id, "approval", LIMIT, |s| s.stage() == Stage::Approval).await.unwrap();
            env.approve(id, "E1001", Role::Merchandising).await.unwrap();
            // R1's channels acknowledge at once (R3's POS takes 5 s, past the deadline).
            env.wait_status(id, "R1's channels acknowledged", LIMIT, |s| {
                s.stage() == Stage::LaunchGate && region(s, "R1").awaiting_ack.is_empty()
            })
            .await
            .unwrap();
            // Before the final re-check, R1's POS takes its acknowledgment back (its price file
            // failed at the stores) and goes down, so the republication is not acknowledged yet.
            let mut admin = env.admin().await.unwrap();
            let down = Fault {
                channel: Channel::Pos as i32,
                region_id: "R1".into(),
                channel_down: true,
                ..Default::default()
            };
            admin.inject_fault(InjectFaultRequest { fault: Some(down) }).await.unwrap();
            let req = WithdrawAcknowledgmentRequest {
                channel: Channel::Pos as i32,
                region_id: "R1".into(),
                promotion_id: id.into(),
            };
            let taken = admin.withdraw_acknowledgment(req).await.unwrap().into_inner().publication_ids;
            assert_eq!(taken.len(), 1, "{taken:?}");

            let held = |s: &PromotionStatus| {
                s.open_exceptions.iter().find(|e| e.exception_id.starts_with("gate-channel-POS-R1")).cloned()
            };
            let s = env
                .wait_status(id, "R3 live, R1 held for its POS", LIMIT, |s| {
                    region(s, "R3").state() == RegionState::Active && held(s).is_some()
                })
                .await
                .unwrap();
            let e = held(&s).unwrap();
            assert_eq!(
                (e.kind(), e.owner_role(), e.region_id.as_str()),
                (ExceptionKind::ChannelSync, Role::Operations, "R1")
            );
            assert!(e.detail.contains(&taken[0]) && e.detail.contains("took back"), "{e:?}");
            assert!(e.revenue_at_risk.parse::<f64>().unwrap() > 0.0, "revenue at risk is computed: {e:?}");
            let r1 = region(&s, "R1");
            assert!(r1.activated_at.is_none() && r1.awaiting_ack.contains(&(Channel::Pos as i32)), "{r1:?}");
            stays_dark(&env, id, "R1", Duration::from_secs(2)).await;

            // The channel comes back and acknowledges the republished prices: R1 launches (late)
            // and the exception is resolved.
            admin.clear_faults(ClearFaultsRequest {}).await.unwrap();
            let s = env
                .wait_status(id, "R1 live once its POS acknowledged", LIMIT, |s| {
                    region(s, "R1").state() == RegionState::Active
                })
                .await
                .unwrap();
            assert!(held(&s).is_none(), "{:?}", s.open_exceptions);
            let at = |r: &str| region(&s, r).activated_at.map(|t| t.seconds).unwrap();
            assert!(at("R1") > at("R3"), "R1 at {}, R3 at {}", at("R1"), at("R3"));
            // In the channel's records: the activation whose acknowledgment was taken back, and
            // its republication, acknowledged.
            let mut publ = env.publications().await.unwrap();
            let pubs = publ
                .list_publications(ListPublicationsRequest { promotion_id: id.into() })
                .await
                .unwrap()
                .into_inner()
                .publications;
            let states: Vec<PublicationState> = pubs
                .iter()
                .filter(|p| p.channel() == Channel::Pos && p.region_id == "R1")
                .filter(|p| p.kind() == PublicationKind::Activate)
                .map(|p| p.state())
                .collect();
            assert_eq!(states, [PublicationState::AckWithdrawn, PublicationState::Acknowledged]);
            let (r, trail) = env.finish(id, "gate_hold_channel").await;
            (r, trail)
        })
        .await
        .unwrap();
    assert_eq!(result.outcome(), Outcome::Completed, "{}", result.reason);
    let actions = promo_tests::promises::with_actions(
        &trail,
        &["acknowledgment-withdrawn", "acknowledgment-restored", "region-activated"],
    );
    let withdrawn = actions.iter().position(|a| *a == "acknowledgment-withdrawn").unwrap();
    let restored = actions.iter().position(|a| *a == "acknowledgment-restored").unwrap();
    assert!(withdrawn < restored, "{actions:?}");
    // R1 went live after the channel acknowledged again, not before.
    let r1_live = trail
        .entries
        .iter()
        .position(|e| e.action == "region-activated" && e.detail == "R1")
        .expect("R1 activated");
    assert!(restored < r1_live, "{actions:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_that_drifts_mid_window_is_caught_corrected_and_reported() {
    use promo_contracts::retail::v1::{
        Channel, Drift, DriftPricesRequest, Fault, GetLivePricesRequest, InjectFaultRequest,
    };
    let env = PromoEnv::start(test_policy()).await.unwrap();
    let id = "DRIFT-1";
    let live = |skus: Vec<String>| GetLivePricesRequest {
        channel: Channel::Pos as i32,
        region_id: "R1".into(),
        skus,
    };
    let (result, trail, drifted, during, after) = env
        .with_worker(async {
            // Launch in 3 business days (6 s), 6 days long (12 s, a monitoring round every 2 s).
            env.launch(spec(id, &["R1"], 0..4, 3.0, 6.0), "R1").await;
            // Mid-window R1's POS silently goes back to the regular price for two SKUs, and the
            // POS takes 2 s to load any file sent to it from now on.
            let mut admin = env.admin().await.unwrap();
            let drifted = admin
                .drift_prices(DriftPricesRequest {
                    channel: Channel::Pos as i32,
                    region_id: "R1".into(),
                    promotion_id: id.into(),
                    drift: Drift::Stale as i32,
                    sku_count: 2,
                })
                .await
                .unwrap()
                .into_inner()
                .skus;
            assert_eq!(drifted.len(), 2);
            let slow = Fault {
                service: "publication".into(),
                channel: Channel::Pos as i32,
                region_id: "R1".into(),
                ack_delay_ms: 2_000,
                ..Default::default()
            };
            admin.inject_fault(InjectFaultRequest { fault: Some(slow) }).await.unwrap();
            let mut hub = env.publications().await.unwrap();
            let during = hub.get_live_prices(live(drifted.clone())).await.unwrap().into_inner().prices;

            // The next monitoring round reads it back: a CHANNEL_SYNC exception names channel,
            // region and SKUs with the revenue at risk, while the correction loads.
            let s = env
                .wait_status(id, "the price mismatch raised", LIMIT, |s| {
                    s.open_exceptions.iter().any(|e| e.exception_id == "price-POS-R1")
                })
                .await
                .unwrap();
            let e = s.open_exceptions.iter().find(|e| e.exception_id == "price-POS-R1").unwrap();
            assert_eq!((e.kind(), e.region_id.as_str()), (ExceptionKind::ChannelSync, "R1"));
            assert!(drifted.iter().all(|sku| e.detail.contains(sku.as_str())), "{e:?}");
            assert!(e.revenue_at_risk.parse::<f64>().unwrap() > 0.0, "{e:?}");
            env.wait_status(id, "the mismatch corrected", LIMIT, |s| {
                !s.open_exceptions.iter().any(|e| e.exception_id == "price-POS-R1")
            })
            .await
            .unwrap();
            let after = hub.get_live_prices(live(drifted.clone())).await.unwrap().into_inner().prices;
            // The POS loads files at its usual speed again, so the revert at close is confirmed.
            admin.clear_faults(promo_contracts::retail::v1::ClearFaultsRequest {}).await.unwrap();
            let (r, trail) = env.finish(id, "price_drift_corrected").await;
            (r, trail, drifted, during, after)
        })
        .await
        .unwrap();
    assert_eq!(result.outcome(), Outcome::Completed, "{}", result.reason);
    // What the channel charged: regular prices while drifted, promo prices once corrected.
    assert!(during.iter().zip(&after).all(|(d, a)| d.price != a.price), "{during:?} {after:?}");
    let actions: Vec<&str> = trail.entries.iter().map(|e| e.action.as_str()).collect();
    assert!(actions.contains(&"price-mismatch") && actions.contains(&"price-corrected"), "{actions:?}");

    let report = result.report.unwrap();
    assert_eq!(report.price_corrections.len(), 1, "{:?}", report.price_corrections);
    let c = &report.price_corrections[0];
    assert_eq!((c.channel, c.region_id.as_str(), c.after_revert), (Channel::Pos as i32, "R1", false));
    assert_eq!(c.skus, drifted);
    assert!(c.corrected_at.is_some() && c.republished >= 1, "{c:?}");
    assert!(c.seconds_to_correct >= 1, "the correction took the POS's 2 s to load: {c:?}");
    // Price accuracy: most reads matched, not all.
    let accuracy: f64 = report.price_accuracy.parse().unwrap();
    assert!(report.prices_checked >= 8, "{report:?}");
    assert!(accuracy < 1.0 && accuracy > 0.5, "accuracy {accuracy} of {} reads", report.prices_checked);

    // At close the revert was read back too: R1's POS charges regular prices again.
    let mut hub = env.publications().await.unwrap();
    let closed = hub.get_live_prices(live(drifted.clone())).await.unwrap().into_inner().prices;
    assert_eq!(
        closed.iter().map(|p| &p.price).collect::<Vec<_>>(),
        during.iter().map(|p| &p.price).collect::<Vec<_>>(),
        "regular prices after the revert"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn funding_is_claimed_per_agreement_within_its_validity_and_cap() {
    use promo_contracts::{pbjson_types::Timestamp, retail::v1::ListClaimsRequest};
    let env = PromoEnv::start(test_policy()).await.unwrap();
    let id = "CLAIM-1";
    let mut s = spec(id, &["R1"], 0..4, 3.0, 4.0);
    // SKU-00001 is funded by FA-001, SKU-00003 by FA-003; both valid at approval.
    s.lines[0].funding_agreement_id = "FA-001".into();
    s.lines[2].funding_agreement_id = "FA-003".into();
    let starts_at =
        chrono::NaiveDateTime::parse_from_str(&s.window.as_ref().unwrap().starts_at, "%Y-%m-%dT%H:%M:%S")
            .unwrap()
            .and_utc()
            .timestamp();
    let result = env
        .with_worker(async {
            env.launch(s, "R1").await;
            // Mid-window the suppliers renegotiate: FA-001's cap drops to 1.00, FA-003 ends
            // halfway through the window.
            let mut admin = env.admin().await.unwrap();
            let change = |agreement: &str| SetAgreementStatusRequest {
                agreement_id: agreement.into(),
                status: AgreementStatus::Unspecified as i32,
                ..Default::default()
            };
            let cap = SetAgreementStatusRequest { cap_amount: "1.00".into(), ..change("FA-001") };
            admin.set_agreement_status(cap).await.unwrap();
            let ends = Timestamp { seconds: starts_at + 2 * 86_400, nanos: 0 };
            let end = SetAgreementStatusRequest { valid_to: Some(ends), ..change("FA-003") };
            admin.set_agreement_status(end).await.unwrap();
            let r = env.result(id).await.unwrap();
            env.record_history(id, "funding_claimed").await.unwrap();
            r
        })
        .await
        .unwrap();
    assert_eq!(result.outcome(), Outcome::Completed, "{}", result.reason);
    let report = result.report.unwrap();
    let claims = &report.funding_claims;
    assert_eq!(claims.iter().map(|c| c.agreement_id.as_str()).collect::<Vec<_>>(), ["FA-001", "FA-003"]);
    let num = |s: &str| s.parse::<f64>().unwrap_or_else(|_| panic!("{s:?} is not a number"));
    for c in claims {
        assert!(c.units_sold > 0 && num(&c.earned) > 0.0 && num(&c.forecast) > 0.0, "{c:?}");
    }
    let (fa1, fa3) = (&claims[0], &claims[1]);
    assert_eq!(num(&fa1.claimed), 1.0, "capped at 1.00: {fa1:?}");
    assert!((num(&fa1.over_cap) - (num(&fa1.earned) - 1.0)).abs() < 0.011, "{fa1:?}");
    assert!(fa1.note.contains("cap"), "{fa1:?}");
    let share = num(&fa3.out_of_window) / num(&fa3.earned);
    assert!((0.3..0.7).contains(&share), "about half the window fell after FA-003 ended: {fa3:?}");
    assert!((num(&fa3.claimed) - (num(&fa3.earned) - num(&fa3.out_of_window))).abs() < 0.011, "{fa3:?}");
    assert!((num(&report.funding_claim) - num(&fa1.claimed) - num(&fa3.claimed)).abs() < 0.001, "{report:?}");

    // The trade-terms system holds exactly those claims.
    let held = env
        .funding()
        .await
        .unwrap()
        .list_claims(ListClaimsRequest { promotion_id: id.into() })
        .await
        .unwrap()
        .into_inner()
        .claims;
    let mut got: Vec<(String, String)> =
        held.iter().map(|c| (c.agreement_id.clone(), c.amount.clone())).collect();
    got.sort();
    assert_eq!(got, [("FA-001".into(), fa1.claimed.clone()), ("FA-003".into(), fa3.claimed.clone())]);
}

/// The `promo` CLI against this environment, signing with no key unless told.
fn promo_cli(env: &PromoEnv) -> std::process::Command {
    let mut c = std::process::Command::new(promo_tests::process::promo_bin().unwrap());
    c.env("TEMPORAL_ADDRESS", env.dev.address()).env_remove("PROMO_APPROVER_KEY");
    c
}

use promo_tests::process::run_to_end as run;

/// `temporal workflow update execute` with `input`: the workflow's answer, or its refusal.
async fn raw_update(
    env: &PromoEnv,
    id: &str,
    name: &str,
    input: &serde_json::Value,
) -> Result<String, String> {
    let mut c = std::process::Command::new(promo_tests::temporal::temporal_bin());
    c.args(["workflow", "update", "execute", "--workflow-id", &format!("promotion-{id}"), "--name", name])
        .args(["--input", &input.to_string(), "--address", &env.dev.address()]);
    match run(c).await {
        (true, text) => Ok(text),
        (false, text) => Err(text),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_are_signed_verified_and_refused_when_forged_replayed_or_unsigned() {
    use promo_tests::env::{signed_decision, test_keys};
    let (e1001, e1001_pub) = test_keys(1);
    let (e2001, e2001_pub) = test_keys(2);
    let mut policy = test_policy();
    policy.require_signatures = true;
    policy.approver_keys.insert("E1001".into(), e1001_pub.clone());
    policy.approver_keys.insert("E2001".into(), e2001_pub.clone());
    let env = PromoEnv::start(policy).await.unwrap();
    let dir = std::env::temp_dir().join(format!("promo-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("e1001.key");
    std::fs::write(&key_file, format!("{e1001}\n")).unwrap();
    let policy_file = dir.join("policy.toml");
    let toml = format!(
        "[approvers]\nE1001 = [\"merchandising\"]\nE2001 = [\"finance\"]\n\
         [approver_keys]\nE1001 = \"{e1001_pub}\"\nE2001 = \"{e2001_pub}\"\n"
    );
    std::fs::write(&policy_file, toml).unwrap();
    let id = "SIG-1";
    let (result, verified) = env
        .with_worker(async {
            env.start_promotion(spec(id, &["R1"], 0..4, 8.0, 2.0)).await.unwrap();
            env.wait_status(id, "approval", LIMIT, |s| s.stage() == Stage::Approval).await.unwrap();
            let json = |d: &ApprovalDecision| serde_json::to_value(d).unwrap();
            let status = env.wait_status(id, "status", LIMIT, |_| true).await.unwrap();
            let merch = |secret: &str, revision: u32| {
                let status = PromotionStatus { revision, ..status.clone() };
                signed_decision(&status, "E1001", Role::Merchandising, "go", secret)
            };

            // Unsigned, from a client we did not write.
            let unsigned =
                serde_json::json!({"approverId": "E1001", "role": "ROLE_MERCHANDISING", "comment": "go"});
            let e = raw_update(&env, id, "approve", &unsigned).await.unwrap_err();
            assert!(e.contains("unsigned"), "{e}");
            // Forged: signed, then the comment changed.
            let forged =
                ApprovalDecision { comment: "go, and drop the margin floor".into(), ..merch(&e1001, 1) };
            let e = raw_update(&env, id, "approve", &json(&forged)).await.unwrap_err();
            assert!(e.contains("does not verify"), "{e}");
            // Signed with another approver's key.
            let e = raw_update(&env, id, "approve", &json(&merch(&e2001, 1))).await.unwrap_err();
            assert!(e.contains("does not verify"), "{e}");
            // Signed for another revision.
            let e = raw_update(&env, id, "approve", &json(&merch(&e1001, 2))).await.unwrap_err();
            assert!(e.contains("current revision is 1"), "{e}");
            let s = env.wait_status(id, "still waiting", LIMIT, |_| true).await.unwrap();
            assert!(s.approvals.iter().all(|a| a.approved_by.is_empty()), "nothing was applied: {s:?}");

            // The CLI signs with the approver's key file, for the current revision.
            let mut c = promo_cli(&env);
            c.args(["approve", id, "--as", "E1001", "--role", "merchandising", "--comment", "go", "--key"]);
            c.arg(&key_file);
            let (ok, text) = run(c).await;
            assert!(ok, "{text}");
            // The audit trail keeps the signature and what was signed; the same signed decision
            // sent again (a replay) is refused although its signature is valid.
            let trail = env.audit(id).await.unwrap();
            let approved = trail.entries.iter().find(|e| e.action == "approve").unwrap();
            let head = format!(
                "promo-message/v1\npromotion-SIG-1\n{}\napprove\napproval\nr1\nE1001\nROLE_MERCHANDISING\n",
                status.first_run_id
            );
            assert!(approved.signed_payload.starts_with(&head), "{approved:?}");
            let signed_at: i64 = approved.signed_payload.rsplit('\n').next().unwrap().parse().unwrap();
            let replay = ApprovalDecision {
                revision: 1,
                signature: approved.signature.clone(),
                signed_at,
                ..decision("E1001", Role::Merchandising, "go")
            };
            let e = raw_update(&env, id, "approve", &json(&replay)).await.unwrap_err();
            assert!(e.contains("already used"), "{e}");
            let r = env.result(id).await.unwrap();
            let mut c = promo_cli(&env);
            c.args(["audit", id, "--verify", "--policy"]).arg(&policy_file);
            let (ok, verified) = run(c).await;
            assert!(ok, "{verified}");
            (r, verified)
        })
        .await
        .unwrap();
    assert_eq!(result.outcome(), Outcome::Completed, "{}", result.reason);
    assert!(verified.contains(": 1 signed messages of "), "{verified}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_mid_run_is_refused_at_the_next_message() {
    use promo_tests::env::{signed_decision, test_keys};
    let (e1001, e1001_pub) = test_keys(1);
    let (e1002, e1002_pub) = test_keys(5);
    let mut policy = test_policy();
    policy.require_signatures = true;
    policy.approver_keys.insert("E1001".into(), e1001_pub.clone());
    policy.approver_keys.insert("E1002".into(), e1002_pub);
    let env = PromoEnv::start(policy).await.unwrap();
    let id = "REVOKED-1";
    let (refused, accepted, revoked) = env
        .with_worker(async {
            env.start_promotion(spec(id, &["R1"], 0..4, 8.0, 2.0)).await.unwrap();
            let s = env.wait_status(id, "approval", LIMIT, |s| s.stage() == Stage::Approval).await.unwrap();
            // E1001 leaves while the promotion waits: the retailer revokes the key.
            let mut c = promo_cli(&env);
            c.args([
                "revoke-key",
                "--for",
                "E1001",
                "--public-key",
                &e1001_pub,
                "--reason",
                "left the company",
            ])
            .args(["--systems", &env.systems.url()]);
            let (ok, revoked) = run(c).await;
            assert!(ok, "{revoked}");
            // A decision E1001 signed (with a key the policy still lists) is refused...
            let json = |d: &ApprovalDecision| serde_json::to_value(d).unwrap();
            let d = signed_decision(&s, "E1001", Role::Merchandising, "go", &e1001);
            let refused = raw_update(&env, id, "approve", &json(&d)).await.unwrap_err();
            // ... and E1002's is applied.
            let d = signed_decision(&s, "E1002", Role::Merchandising, "go", &e1002);
            let accepted = raw_update(&env, id, "approve", &json(&d)).await;
            (refused, accepted, revoked)
        })
        .await
        .unwrap();
    assert!(revoked.contains("running promotions refuse messages signed with it"), "{revoked}");
    assert!(
        refused.contains("\"E1001\"'s signing key was revoked") && refused.contains("left the company"),
        "{refused}"
    );
    assert!(accepted.is_ok(), "{accepted:?}");
}
