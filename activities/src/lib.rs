//! Activities of the promotion workflow: every piece of I/O and heavy computation.
//!
//! [`PromotionActivities`] implements the activity definitions of
//! `promo_workflows::api::PromotionActivities` over the gRPC integration contracts: each activity
//! below is a line or two that hands its input to the module of its stage.
//!
//! - [`client`]: the connection to the systems ([`Systems`]) and how a call fails or is retried;
//! - [`pulse`]: heartbeats with progress;
//! - [`intake`], [`assess`], [`schedule`], [`publish`], [`monitor`], [`analysis`]: one module
//!   per stage of the lifecycle, [`compensate`], the sweep that undoes a promotion, and
//!   [`directory`], the key directory that signed messages are checked against;
//! - [`context`] loads what an assessment or a report needs (master data, streamed positions and
//!   demand); [`summaries`] computes what they say; [`engines`] holds the pure engines
//!   (alignment, forecast, stockout risk, funding, replenishment);
//! - [`checks`] checks every response where it is decoded: a malformed one (columns of unequal
//!   length, ids nobody asked for, negative stock) fails the activity without retries, naming
//!   the service and the field.
//!
//! Every write carries an idempotency key derived from promotion id + revision + target, so a
//! retried activity or a restarted worker never writes twice. Business refusals from the systems
//! (unknown SKU, invalid request) are non-retryable; transport failures retry with backoff:
//! first in place, a few times per call ([`retry_transient`]), so one flaky call does not throw
//! away an activity's other calls; then as a whole, by the workflow's activity retry policy.

/// One systems call, retried in place on transient failures ([`retry_transient`]):
/// `rpc!(client_expr, method, request_expr)` builds a fresh client and request for each attempt
/// (clients are cheap handles on one channel), so the request expression must not move.
macro_rules! rpc {
    ($client:expr, $method:ident, $req:expr) => {
        $crate::retry_transient(|| {
            let mut client = $client;
            let req = $req;
            async move { client.$method(req).await }
        })
    };
}

pub mod analysis;
pub mod assess;
pub mod checks;
pub mod claims;
pub mod client;
pub mod compensate;
pub mod context;
pub mod directory;
pub mod engines;
pub mod events;
pub mod intake;
pub mod learned;
pub mod monitor;
pub mod publish;
pub mod pulse;
pub mod reconcile;
pub mod replenish;
pub mod schedule;
pub mod substitutes;
pub mod summaries;

pub use client::{
    CALL_ATTEMPTS, Systems, SystemsError, SystemsTls, business, is_transient, retry_transient, status_error,
};
pub use pulse::PULSE;

use promo_contracts::{pbjson_types::Timestamp, retail::v1::ProcessEvent};
use promo_workflows::{
    api::{
        AnalysisAndClaims, AssessInput, Assessment, AwaitAcksInput, ClaimsInput, CompensateInput,
        CompensateOutput, IntakeInput, IntakeOutput, KeyStatus, KeyStatusInput, MonitorRoundInput,
        MonitorRoundOutput, OrdersInput, PublicationRef, PublishInput, RecheckGateInput, RecheckGateOutput,
        ReconcileInput, ReconcileOutput, SettleTransfersInput, StagePricesInput, WatchInput, WatchOutput,
        activity_names,
    },
    policy::Policy,
};
use pulse::{Progress, alive};
use rust_decimal::{Decimal, prelude::FromPrimitive};
use std::sync::Arc;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

/// The implementation of every activity of the promotion workflow.
pub struct PromotionActivities {
    systems: Systems,
    policy: Policy,
}

impl PromotionActivities {
    /// Activities over `systems` handing out `policy` to new promotions.
    pub fn new(systems: Systems, policy: Policy) -> Self {
        Self { systems, policy }
    }
}

pub(crate) fn ts(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

pub(crate) fn dec(x: f64) -> Decimal {
    Decimal::from_f64(x).unwrap_or_default()
}

/// Idempotency key of a write: promotion id + run chain (the promotion's first run id) +
/// revision + target. The chain keeps a promotion started again under the same id (after a
/// failure) from finding the earlier chain's records as its own.
pub fn idempotency_key(promotion_id: &str, chain: &str, revision: u32, target: &str) -> String {
    format!("{promotion_id}:{chain}:r{revision}:{target}")
}

#[activities]
impl PromotionActivities {
    /// Returns the worker's policy.
    #[activity(name = activity_names::LOAD_POLICY)]
    pub async fn load_policy(self: Arc<Self>, _ctx: ActivityContext, _: ()) -> Result<Policy, ActivityError> {
        Ok(self.policy.clone())
    }

    /// Validates a spec against master data, the approval lead time and the promotion calendar.
    #[activity(name = activity_names::VALIDATE_SPEC)]
    pub async fn validate_spec(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: IntakeInput,
    ) -> Result<IntakeOutput, ActivityError> {
        alive(&ctx, &Progress::default(), intake::validate(&self.systems, &input)).await
    }

    /// Margin, inventory and funding of one revision, their reads running concurrently.
    #[activity(name = activity_names::ASSESS)]
    pub async fn assess(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: AssessInput,
    ) -> Result<Assessment, ActivityError> {
        let progress = Progress::default();
        alive(&ctx, &progress, assess::assessment(&self.systems, &input, &progress)).await
    }

    /// The launch gate's final re-check: the assessment, and the acknowledged activations re-read.
    #[activity(name = activity_names::RECHECK_GATE)]
    pub async fn recheck_gate(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: RecheckGateInput,
    ) -> Result<RecheckGateOutput, ActivityError> {
        let progress = Progress::default();
        alive(&ctx, &progress, assess::recheck(&self.systems, &input, &progress)).await
    }

    /// Stages the promotional prices in the ERP (idempotent by promotion + revision).
    #[activity(name = activity_names::STAGE_PRICES)]
    pub async fn stage_prices(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: StagePricesInput,
    ) -> Result<String, ActivityError> {
        alive(&ctx, &Progress::default(), schedule::stage_prices(&self.systems, &input)).await
    }

    /// Creates transfer orders from each region's DC (idempotent by promotion + revision + region).
    #[activity(name = activity_names::CREATE_TRANSFER_ORDERS)]
    pub async fn create_transfer_orders(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: OrdersInput,
    ) -> Result<Vec<String>, ActivityError> {
        alive(&ctx, &Progress::default(), schedule::create_transfer_orders(&self.systems, &input)).await
    }

    /// Releases and cancels proposed transfer orders; returns the ids released.
    #[activity(name = activity_names::SETTLE_TRANSFERS)]
    pub async fn settle_transfers(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: SettleTransfersInput,
    ) -> Result<Vec<String>, ActivityError> {
        alive(&ctx, &Progress::default(), schedule::settle_transfers(&self.systems, &input)).await
    }

    /// Publishes to every target at once, in the order given: one local activity, so one
    /// history marker, for a whole wave.
    #[activity(name = activity_names::PUBLISH_MANY)]
    pub async fn publish_many(
        self: Arc<Self>,
        ctx: ActivityContext,
        inputs: Vec<PublishInput>,
    ) -> Result<Vec<PublicationRef>, ActivityError> {
        alive(&ctx, &Progress::default(), publish::publish_many(&self.systems, &inputs)).await
    }

    /// Waits until every publication is acknowledged (with `return_on_change`, until any
    /// acknowledgment changes) or the timeout passes, heartbeating. The acknowledgments are
    /// pushed: one `WatchPublications` stream for the whole wait.
    #[activity(name = activity_names::AWAIT_ACKNOWLEDGMENTS)]
    pub async fn await_acknowledgments(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: AwaitAcksInput,
    ) -> Result<Vec<PublicationRef>, ActivityError> {
        events::record_carried(&self.systems, &input.events).await;
        publish::acknowledgments(&self.systems, &ctx, input.publications.clone(), &input).await
    }

    /// Publishes `input.publish`, then waits for those and `input.publications` to be
    /// acknowledged: one ordinary activity for a publication and the wait that follows it.
    #[activity(name = activity_names::PUBLISH_AND_AWAIT)]
    pub async fn publish_and_await(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: AwaitAcksInput,
    ) -> Result<Vec<PublicationRef>, ActivityError> {
        events::record_carried(&self.systems, &input.events).await;
        publish::publish_and_await(&self.systems, &ctx, &input).await
    }

    /// Records process events (a local activity: no heartbeat; one call, idempotent by id).
    #[activity(name = activity_names::RECORD_EVENTS)]
    pub async fn record_events(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: Vec<ProcessEvent>,
    ) -> Result<u32, ActivityError> {
        events::record(&self.systems, &input).await
    }

    /// Whether a signing key was revoked in the key directory (a local activity of the message
    /// handlers: no heartbeat; one call).
    #[activity(name = activity_names::KEY_STATUS)]
    pub async fn key_status(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: KeyStatusInput,
    ) -> Result<KeyStatus, ActivityError> {
        directory::key_status(&self.systems, &input).await
    }

    /// Undoes whatever of the promotion is still live, then frees its calendar footprint.
    #[activity(name = activity_names::COMPENSATE)]
    pub async fn compensate(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: CompensateInput,
    ) -> Result<CompensateOutput, ActivityError> {
        alive(&ctx, &Progress::default(), compensate::compensate(&self.systems, &input)).await
    }

    /// Reverts the staged price change at the end of the window.
    #[activity(name = activity_names::REVERT_PRICES)]
    pub async fn revert_prices(
        self: Arc<Self>,
        ctx: ActivityContext,
        price_change_id: String,
    ) -> Result<(), ActivityError> {
        alive(&ctx, &Progress::default(), schedule::revert_prices(&self.systems, &price_change_id)).await
    }

    /// Reads back the live price of every SKU of the price change on each target and compares
    /// it with the approved one (the promo price while live, the regular price after the revert).
    #[activity(name = activity_names::RECONCILE_PRICES)]
    pub async fn reconcile_prices(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: ReconcileInput,
    ) -> Result<ReconcileOutput, ActivityError> {
        alive(&ctx, &Progress::default(), reconcile::run(&self.systems, &input)).await
    }

    /// A monitoring round: sell-through and the live prices read back, concurrently.
    #[activity(name = activity_names::MONITOR_ROUND)]
    pub async fn monitor_round(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: MonitorRoundInput,
    ) -> Result<MonitorRoundOutput, ActivityError> {
        alive(&ctx, &Progress::default(), monitor::monitor_round(&self.systems, &input)).await
    }

    /// Monitoring rounds at the policy's cadence until one finds something to decide.
    #[activity(name = activity_names::WATCH_WINDOW)]
    pub async fn watch_window(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: WatchInput,
    ) -> Result<WatchOutput, ActivityError> {
        monitor::watch_window(&self.systems, &ctx, &input).await
    }

    /// The post-event report and the funding claims, over one load of the context and one read
    /// of the sales.
    #[activity(name = activity_names::ANALYSE_AND_CLAIM)]
    pub async fn analyse_and_claim(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: ClaimsInput,
    ) -> Result<AnalysisAndClaims, ActivityError> {
        alive(&ctx, &Progress::default(), analysis::analyse_and_claim(&self.systems, &input)).await
    }
}
