//! The learned uplift model as the margin assessment uses it, over gRPC against the reference
//! systems: fitted on the streamed outcomes with its held-out accuracy and provenance, and,
//! when the outcomes cannot be read, a fallback to each SKU's own past promotions that says why.

mod common;

use common::{ANCHOR, activity_env, assess_input, serve, spec};
use promo_activities::PromotionActivities;
use promo_contracts::{
    pbjson_types::Timestamp,
    retail::v1::{
        ClearFaultsRequest, Fault, InjectFaultRequest, ProcessEvent, ProcessEventKind, RecordEventsRequest,
        admin_service_client::AdminServiceClient, process_event_service_client::ProcessEventServiceClient,
    },
};
use promo_workflows::api::AssessInput;

fn input(planned: Option<&str>) -> AssessInput {
    let mut s = spec();
    if let Some(u) = planned {
        s.lines[0].planned_uplift = u.into();
    }
    assess_input(&s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_margin_assessment_forecasts_with_the_learned_model_or_says_why_not() {
    let s = serve("forecast").await;
    let env = activity_env(&s);
    let version = s.systems.master().history_version.clone();

    // The outcomes stream fails for good: the forecast falls back and the record says why.
    let mut admin = AdminServiceClient::connect(s.url()).await.unwrap();
    let fault = Fault {
        service: "demand".into(),
        method: "StreamPromotionOutcomes".into(),
        error_rate: "1".into(),
        ..Default::default()
    };
    admin.inject_fault(InjectFaultRequest { fault: Some(fault) }).await.unwrap();
    let m = env.run(PromotionActivities::assess, input(None)).await.unwrap().margin;
    let fm = m.forecast_model.clone().expect("a record of the forecast");
    assert!(fm.version.is_empty() && fm.fallback_reason.contains("Unavailable"), "{fm:?}");
    assert_eq!(fm.lines_by_source.get("history"), Some(&10));
    assert!(fm.explanations[0].contains("per-SKU slope through"), "{:?}", fm.explanations);
    let fallback_units = m.forecast_units;
    admin.clear_faults(ClearFaultsRequest {}).await.unwrap();

    // Fitted on the streamed history, with its accuracy on the latest promotions and the
    // coefficients that, with each line's inputs, give its uplift.
    let m = env.run(PromotionActivities::assess, input(Some("1.5"))).await.unwrap().margin;
    let fm = m.forecast_model.clone().unwrap();
    assert_eq!(fm.version, format!("uplift-glm/1@{}", &version[..12]));
    assert!(fm.fallback_reason.is_empty());
    assert_eq!(fm.promotions, 320);
    assert!(fm.holdout_promotions >= 60, "{fm:?}");
    let wape: f64 = fm.holdout_wape.parse().unwrap();
    let bias: f64 = fm.holdout_bias.parse().unwrap();
    println!(
        "held out: {} promotions, WAPE {wape}, bias {bias}, pseudo-R² {}",
        fm.holdout_promotions, fm.pseudo_r2
    );
    assert!(wape > 0.0 && wape < 0.5 && bias.abs() < 0.2, "{fm:?}");
    assert!(fm.training_from < fm.training_to);
    for k in ["intercept", "depth", "depth^2", "mechanic:feature", "region:R1"] {
        assert!(fm.coefficients.contains_key(k), "{k} in {:?}", fm.coefficients.keys());
    }
    assert_eq!((fm.lines_by_source.get("planner"), fm.lines_by_source.get("model")), (Some(&1), Some(&9)));
    assert!(
        fm.explanations[0].starts_with("SKU-00002: exp(")
            && fm.explanations[0].contains("R1 ")
            && fm.explanations[0].ends_with(&format!("[{}]", fm.version)),
        "{:?}",
        fm.explanations
    );
    assert!(!fm.explanations[0].contains("all regions"), "{:?}", fm.explanations);
    // No completed promotion of this model yet: tracked, not flagged.
    let d = fm.drift.clone().expect("drift is tracked");
    assert_eq!((d.tracked, d.drifting), (0, false), "{d:?}");

    // Six completed promotions sold a quarter under this model's forecast (and one under another
    // model's, which does not count): the model is drifting.
    let report = |i: usize, model: &str, forecast: i64, sold: i64| ProcessEvent {
        event_id: format!("report-{model}-{i}"),
        promotion_id: format!("DONE-{i}"),
        run_id: "run".into(),
        revision: 1,
        kind: ProcessEventKind::Report as i32,
        at: Some(Timestamp { seconds: ANCHOR + i as i64, nanos: 0 }),
        kpis: [
            ("forecast_model".to_owned(), model.to_owned()),
            ("forecast_units".to_owned(), forecast.to_string()),
            ("units_sold".to_owned(), sold.to_string()),
        ]
        .into(),
        ..Default::default()
    };
    let mut events: Vec<ProcessEvent> =
        (0..6).map(|i| report(i, &fm.version, 10_000, 7_400 + 50 * (i as i64 % 3))).collect();
    events.push(report(9, "uplift-glm/1@another", 10_000, 100));
    let mut record = ProcessEventServiceClient::connect(s.url()).await.unwrap();
    record.record_events(RecordEventsRequest { events }).await.unwrap();
    let m = env.run(PromotionActivities::assess, input(None)).await.unwrap().margin;
    let d = m.forecast_model.unwrap().drift.unwrap();
    assert!(d.drifting && d.tracked == 6 && d.signal.parse::<f64>().unwrap() < -4.0, "{d:?}");
    assert!(
        d.explanation.contains("over the last 6 promotions (threshold 4): sold 26% below forecast"),
        "{d:?}"
    );

    // The model forecasts differently from the per-SKU slope (a different method, not a copy).
    assert_ne!(m.forecast_units, fallback_units);
    s.stop().await;
}
