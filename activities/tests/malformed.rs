//! Contract tests of the activities' side of the integration boundary: each malformed answer
//! the reference systems can be told to give (`Fault.malformed`) fails the activity that reads
//! it, non-retryably, with a message naming the service and the field; without the fault the
//! same activity succeeds. The activities run as the worker runs them (the SDK's
//! `ActivityEnvironment`), over gRPC against the reference server on a free port.

mod common;

use common::{ANCHOR, activity_env, serve, spec};
use promo_activities::PromotionActivities;
use promo_contracts::{
    promo::v1 as pb,
    retail::v1::{ClearFaultsRequest, Fault, InjectFaultRequest, admin_service_client::AdminServiceClient},
};
use promo_workflows::{
    api::{Adjustments, AssessInput, CalendarCheck, ClaimsInput, IntakeInput, MonitorRoundInput, SalesInput},
    plan::{self, Plan},
};
use temporalio_sdk::{
    activities::ActivityError,
    testing::{ActivityEnvironment, ActivityEnvironmentError},
};

fn plan() -> Plan {
    plan::validate_spec(&spec(), ANCHOR).unwrap()
}

fn assess_input() -> AssessInput {
    common::assess_input(&spec())
}

fn sales_input() -> SalesInput {
    let p = plan();
    SalesInput {
        windows: p.regions.iter().map(|r| (r.clone(), (p.starts_at, p.starts_at + 3 * 86_400))).collect(),
        plan: p,
        adjustments: Adjustments::default(),
        assessment: pb::AssessmentSummary::default(),
        replenish: None,
    }
}

/// An activity of the promotion workflow, run once; `Err` holds the failure's message and
/// whether it may be retried.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Activity {
    Assess,
    MonitorRound,
    AnalyseAndClaim,
    ValidateSpec,
}

async fn run(env: &ActivityEnvironment, a: Activity) -> Result<(), (String, bool)> {
    let out = match a {
        Activity::Assess => env.run(PromotionActivities::assess, assess_input()).await.map(|o| {
            assert!(o.inventory.positions_read > 0, "positions were read");
        }),
        Activity::MonitorRound => {
            let input = MonitorRoundInput {
                sales: sales_input(),
                prices: None,
                auto_apply_max_cost: None,
                release_at: 0,
            };
            env.run(PromotionActivities::monitor_round, input).await.map(|r| {
                assert!(r.report.units_sold > 0, "sales were read");
            })
        }
        Activity::AnalyseAndClaim => {
            let input = ClaimsInput { revision: 1, chain: "chain-1".into(), sales: sales_input() };
            env.run(PromotionActivities::analyse_and_claim, input).await.map(drop)
        }
        Activity::ValidateSpec => env
            .run(
                PromotionActivities::validate_spec,
                IntakeInput {
                    spec: spec(),
                    now: ANCHOR,
                    approval_lead_secs: 0,
                    calendar: CalendarCheck::DryRun,
                },
            )
            .await
            .map(|o| assert!(o.problems.is_empty(), "{:?}", o.problems)),
    };
    match out {
        Ok(()) => Ok(()),
        Err(ActivityEnvironmentError::Activity(ActivityError::Application(f))) => {
            Err((f.source_error().to_string(), !f.is_non_retryable()))
        }
        Err(e) => panic!("{a:?}: not an application failure: {e}"),
    }
}

/// One malformed answer and what the activity reading it must say.
struct Case {
    service: &'static str,
    method: &'static str,
    mode: &'static str,
    activity: Activity,
    /// Substrings of the failure's message, in order: the service and call, then the field.
    says: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        service: "inventory",
        method: "",
        mode: "length-mismatch",
        activity: Activity::Assess,
        says: &[
            "inventory: StreamPositions batch 1 location S0001: ",
            "column on_hand has 9 values, sku_index has 10",
        ],
    },
    Case {
        service: "inventory",
        method: "",
        mode: "unknown-id",
        activity: Activity::Assess,
        says: &[
            "inventory: StreamPositions batch 1: ",
            "location_id \"UNKNOWN-S0001\" is not a store that was asked for",
        ],
    },
    Case {
        service: "inventory",
        method: "",
        mode: "negative-stock",
        activity: Activity::Assess,
        says: &[
            "inventory: StreamPositions batch 1 location S0001: ",
            "on_hand[0] (SKU-00001) is -",
            "cannot be negative",
        ],
    },
    Case {
        service: "demand",
        method: "StreamBaselineDemand",
        mode: "length-mismatch",
        activity: Activity::Assess,
        says: &[
            "demand: StreamBaselineDemand batch 1 store S0001: ",
            "column daily_units has 9 values, sku_index has 10",
        ],
    },
    Case {
        service: "demand",
        method: "StreamBaselineDemand",
        mode: "length-mismatch",
        activity: Activity::Assess,
        says: &["demand: StreamBaselineDemand batch 1 store S0001: ", "column daily_units has 9 values"],
    },
    Case {
        service: "demand",
        method: "StreamBaselineDemand",
        mode: "unknown-id",
        activity: Activity::Assess,
        says: &[
            "demand: StreamBaselineDemand batch 1: ",
            "store_id \"UNKNOWN-S0001\" is not a store that was asked for",
        ],
    },
    Case {
        service: "demand",
        method: "StreamBaselineDemand",
        mode: "negative-stock",
        activity: Activity::Assess,
        says: &[
            "demand: StreamBaselineDemand batch 1 store S0001: ",
            "daily_units[0] (SKU-00001) is -",
            "cannot be negative",
        ],
    },
    Case {
        service: "demand",
        method: "GetPromotionHistory",
        mode: "unknown-id",
        activity: Activity::Assess,
        says: &[
            "demand history: GetPromotionHistory history[0]: ",
            "sku \"UNKNOWN-SKU-00001\" is not a SKU that was asked for",
        ],
    },
    Case {
        service: "product",
        method: "GetProducts",
        mode: "unknown-id",
        activity: Activity::Assess,
        says: &[
            "product master: GetProducts products[0]: ",
            "sku \"UNKNOWN-SKU-00001\" is not a SKU that was asked for",
        ],
    },
    Case {
        service: "product",
        method: "GetProducts",
        mode: "unknown-id",
        activity: Activity::ValidateSpec,
        says: &["product master: GetProducts products[0]: ", "sku \"UNKNOWN-SKU-00001\""],
    },
    Case {
        service: "funding",
        method: "",
        mode: "unknown-id",
        activity: Activity::Assess,
        says: &[
            "funding: GetAgreements agreements[0]: ",
            "agreement_id \"UNKNOWN-FA-001\" is not an agreement that was asked for",
        ],
    },
    Case {
        service: "location",
        method: "",
        mode: "unknown-id",
        activity: Activity::Assess,
        says: &[
            "locations: ListLocations stores[0] (S0001): ",
            "region_id \"UNKNOWN-R1\" is not a region of the response",
        ],
    },
    Case {
        service: "location",
        method: "",
        mode: "unknown-id",
        activity: Activity::ValidateSpec,
        says: &["locations: ListLocations stores[0] (S0001): ", "region_id \"UNKNOWN-R1\""],
    },
    Case {
        service: "sales",
        method: "",
        mode: "unknown-id",
        activity: Activity::AnalyseAndClaim,
        says: &[
            "sales: GetSalesActuals actuals[0] (UNKNOWN-SKU-",
            "sku \"UNKNOWN-SKU-",
            "is not a SKU that was asked for",
        ],
    },
    Case {
        service: "sales",
        method: "",
        mode: "negative-stock",
        activity: Activity::MonitorRound,
        says: &["sales: GetSalesActuals actuals[0] (SKU-", "ending_units is -", "cannot be negative"],
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_answers_fail_the_activity_for_good_naming_service_and_field() {
    let s = serve("malformed").await;
    let env = activity_env(&s);
    let mut admin = AdminServiceClient::connect(s.url()).await.unwrap();

    for a in [Activity::Assess, Activity::MonitorRound, Activity::AnalyseAndClaim, Activity::ValidateSpec] {
        run(&env, a).await.unwrap_or_else(|e| panic!("{a:?} without faults: {e:?}"));
    }

    for c in CASES {
        let fault = Fault {
            service: c.service.into(),
            method: c.method.into(),
            malformed: c.mode.into(),
            ..Default::default()
        };
        admin.inject_fault(InjectFaultRequest { fault: Some(fault) }).await.unwrap();
        let what = format!("{} {} {} → {:?}", c.service, c.method, c.mode, c.activity);
        let (message, retryable) = run(&env, c.activity).await.expect_err(&what);
        assert!(!retryable, "{what}: retryable: {message}");
        let mut rest = message.as_str();
        for part in c.says {
            let at = rest.find(part).unwrap_or_else(|| panic!("{what}: {part:?} not in {message:?}"));
            rest = &rest[at + part.len()..];
        }
        admin.clear_faults(ClearFaultsRequest {}).await.unwrap();
        run(&env, c.activity).await.unwrap_or_else(|e| panic!("{what}, fault cleared: {e:?}"));
    }
    s.stop().await;
}
