//! The activities the promotion workflow calls: their names (clean, so that other SDKs and the
//! `temporal` CLI see `promo.assess`, not a Rust path), their inputs and outputs, and their
//! definitions (implemented in `promo-activities`).

use crate::plan::{Plan, Problem};
use promo_contracts::promo::v1 as pb;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use temporalio_macros::activity_definitions;
use temporalio_sdk::activities::ActivityError;

/// Input of `promo.key_status`: one signing key to look up in the key directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyStatusInput {
    /// The employee who signed.
    pub employee_id: String,
    /// The public key (base64) the signature verified against.
    pub public_key: String,
}

/// Output of `promo.key_status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyStatus {
    /// Whether the key is revoked.
    pub revoked: bool,
    /// Since when.
    pub revoked_at: Option<pbjson_types::Timestamp>,
    /// Why.
    pub reason: String,
}

/// Changes applied to the plan by remediation, per region.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Adjustments {
    /// Region → launch instant (Unix seconds) later than the window start.
    pub delays: BTreeMap<String, i64>,
    /// Region → SKUs dropped there.
    pub dropped: BTreeMap<String, BTreeSet<String>>,
    /// Region → (SKU → substitute SKU).
    pub substitutes: BTreeMap<String, BTreeMap<String, String>>,
}

/// Input of `promo.validate_spec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntakeInput {
    /// The spec.
    pub spec: pb::PromotionSpec,
    /// Business time, Unix seconds.
    pub now: i64,
    /// Approvals must be complete this long before launch (the policy's
    /// `durations.approval_deadline_before_launch`, in seconds of business time, like `now`):
    /// intake refuses a launch sooner than `now` plus this; 0 skips the check.
    #[serde(default)]
    pub approval_lead_secs: i64,
    /// How collisions with other promotions are found in the ERP's promotion calendar
    /// (`retail.v1.CalendarService`): checking only, or reserving.
    pub calendar: CalendarCheck,
}

/// How intake finds collisions with other promotions, in the promotion calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CalendarCheck {
    /// Asks the calendar which reservations the footprint would overlap, reserving nothing
    /// (`promo start`'s early check).
    DryRun,
    /// Reserves the footprint for this revision in the calendar, atomically: a collision is a
    /// reservation refused, so two promotions cannot both pass however close their starts.
    Reserve {
        /// The revision the reservation is for (it replaces the promotion's earlier one).
        revision: u32,
    },
}

/// A region of the promotion with what the workflow needs to know about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionInfo {
    /// Region id.
    pub region_id: String,
    /// Serving DC.
    pub dc_id: String,
    /// Stores of the promotion in the region.
    pub stores: u32,
}

/// Output of `promo.validate_spec`. The plan itself is the workflow's: intake's shape
/// validation is pure code over the spec and the business time ([`crate::plan::validate_spec`]),
/// so the activity only checks what needs the systems, and the plan stays out of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntakeOutput {
    /// Every problem found (empty when valid), including the shape problems.
    pub problems: Vec<Problem>,
    /// Regions touched (whole regions and the regions of individual stores).
    pub regions: Vec<RegionInfo>,
}

/// Input of the assessment activities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssessInput {
    /// Revision assessed.
    pub revision: u32,
    /// The plan.
    pub plan: Plan,
    /// Remediation applied so far.
    pub adjustments: Adjustments,
    /// Policy fill-rate floor (decimal string).
    pub min_fill_rate: String,
    /// Policy margin floor (decimal string).
    pub min_margin_rate: String,
    /// Policy threshold of margin anomalies, in scaled MADs below the peer median (decimal
    /// string; "0" or empty disables).
    #[serde(default)]
    pub margin_anomaly_mads: String,
    /// Policy threshold of the uplift model's tracking signal (decimal string; "0" or empty
    /// disables).
    #[serde(default)]
    pub model_drift_signal: String,
    /// Policy ceiling on a region's expected share of store × SKU cells running out of stock
    /// (decimal string; "0" or empty disables).
    #[serde(default)]
    pub max_stockout_share: String,
    /// Regions to assess (empty: all of the plan's).
    pub only_regions: Vec<String>,
}

/// The inventory alignment of an assessment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InventoryAssessment {
    /// Per region.
    pub regions: Vec<pb::RegionAlignment>,
    /// Remediation options for failing regions.
    pub options: Vec<pb::RemediationOption>,
    /// Positions read.
    pub positions_read: u64,
}

/// Output of `promo.assess`: the three assessments of one revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assessment {
    /// Margin and compliance of every line.
    pub margin: pb::MarginSummary,
    /// Inventory alignment per region, with remediation options for failing regions.
    pub inventory: InventoryAssessment,
    /// Supplier funding of every funded line.
    pub funding: pb::FundingSummary,
}

/// Input of `promo.stage_prices`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StagePricesInput {
    /// Revision.
    pub revision: u32,
    /// The promotion's run chain (its first run id): part of every idempotency key, so that a
    /// promotion started again under the same id never takes the earlier chain's records.
    pub chain: String,
    /// The plan.
    pub plan: Plan,
    /// Regions to stage in.
    pub regions: Vec<String>,
    /// Remediation (dropped SKUs are excluded in their region — staged nationally here, the
    /// publication per region carries the exclusion).
    pub adjustments: Adjustments,
}

/// Input of `promo.create_transfer_orders`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrdersInput {
    /// Promotion.
    pub promotion_id: String,
    /// Revision.
    pub revision: u32,
    /// The promotion's run chain (its first run id): part of every idempotency key, so that a
    /// promotion started again under the same id never takes the earlier chain's records.
    pub chain: String,
    /// Region → (DC, [(SKU, units)]).
    pub orders: BTreeMap<String, (String, Vec<(String, i64)>)>,
}

/// A channel target.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Target {
    /// `retail.v1.Channel` number.
    pub channel: i32,
    /// Region for regional channels, empty for national ones.
    pub region_id: String,
}

/// One publication to one channel target (`promo.publish_many` takes a list of them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishInput {
    /// Promotion.
    pub promotion_id: String,
    /// Revision.
    pub revision: u32,
    /// The promotion's run chain (its first run id): part of every idempotency key, so that a
    /// promotion started again under the same id never takes the earlier chain's records.
    pub chain: String,
    /// Target.
    pub target: Target,
    /// Activate or revert (`retail.v1.PublicationKind` number).
    pub kind: i32,
    /// ERP price change carried.
    pub price_change_id: String,
    /// Effective window, Unix seconds.
    pub effective: (i64, i64),
    /// Lines carried.
    pub line_count: u32,
    /// 0 for the publication itself; n > 0 for the n-th republication that corrects a channel
    /// found charging other prices (its own idempotency key, so retries of it never duplicate).
    #[serde(default)]
    pub correction: u32,
}

/// Input of `promo.reconcile_prices`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReconcileInput {
    /// Promotion.
    pub promotion_id: String,
    /// The ERP price change whose prices were approved.
    pub price_change_id: String,
    /// Channel targets to read back.
    pub targets: Vec<Target>,
    /// Whether the targets should charge the promotional prices (live) or the regular ones
    /// (after the revert).
    pub expect_promo: bool,
    /// Forecast promo units per region over the window (the assessment's demand), for the
    /// revenue at risk of a mismatch.
    pub demand_units: BTreeMap<String, i64>,
    /// Share of the window still to come, in thousandths.
    pub remaining_permille: u32,
}

/// One channel target charging other prices than approved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceMismatch {
    /// The target.
    pub target: Target,
    /// SKUs that do not match (the first 20).
    pub skus: Vec<String>,
    /// How many do not match.
    pub count: u32,
    /// The first few, as `SKU-00001 charges 19.99, should be 15.99`.
    pub detail: String,
    /// Price difference × the target's forecast units of those SKUs for the rest of the window,
    /// decimal string.
    pub revenue_at_risk: String,
}

/// Output of `promo.reconcile_prices`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReconcileOutput {
    /// Prices read back (SKU × target).
    pub checked: u64,
    /// Of those, matching the approved price.
    pub matching: u64,
    /// Targets with mismatches.
    pub mismatches: Vec<PriceMismatch>,
}

/// Input of `promo.monitor_round`: a monitoring round's sales, and the read-back of the live
/// prices that follows it (none when nothing is to be read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorRoundInput {
    /// The sales to read (and, with replenishment, the transfers to propose).
    pub sales: SalesInput,
    /// What `promo.reconcile_prices` takes.
    pub prices: Option<ReconcileInput>,
    /// With replenishment: the policy's limit up to which the round releases its transfers'
    /// orders itself (at `release_at`), as the workflow would right after it. `None`: it
    /// releases none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_apply_max_cost: Option<String>,
    /// Business instant (Unix seconds) the orders released by the round are released at.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub release_at: i64,
}

fn is_zero(x: &i64) -> bool {
    *x == 0
}

/// Input of `promo.recheck_gate`: the launch gate's final re-check of stock and funding (what
/// `promo.assess` takes) and of the channels' acknowledgments, in one activity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecheckGateInput {
    /// What `promo.assess` takes.
    pub assess: AssessInput,
    /// The acknowledged activations to re-read (none: nothing is read).
    pub publications: Vec<PublicationRef>,
}

/// Output of `promo.recheck_gate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecheckGateOutput {
    /// What `promo.assess` returns.
    pub assessment: Assessment,
    /// The acknowledged activations as each channel shows them now, or why the channels could
    /// not be read (which does not hold the launch: they did acknowledge, and the read-back after
    /// activation checks the prices they charge).
    pub publications: Result<Vec<PublicationRef>, String>,
}

/// Output of `promo.monitor_round`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorRoundOutput {
    /// Sell-through so far, stockouts, and the transfers proposed.
    pub report: MonitorReport,
    /// What `promo.reconcile_prices` returns, or why the prices could not be read (a missed
    /// check, which does not fail the round).
    pub prices: Option<Result<ReconcileOutput, String>>,
    /// Orders of the round's transfers it released itself (within
    /// `MonitorRoundInput::auto_apply_max_cost`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub released: Vec<String>,
}

/// Input of `promo.watch_window`: the monitoring rounds of a stretch of the active window in one
/// activity, the cadence kept by its retry policy (each round that finds nothing for the
/// workflow ends its attempt with a `NothingToDecide` failure, and the next attempt is the next
/// round), so a window costs the history the same few events whatever its number of rounds.
/// The plan stays out of the history: each round reads what it needs from the workflow
/// (its `monitor_input` query).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchInput {
    /// Business seconds between rounds. The first attempt starts the cadence: the first round
    /// is the second attempt, `every` after the activity was scheduled.
    pub every: i64,
    /// Business instant (Unix seconds) the stretch ends at: the window's end, or a region's
    /// delayed launch. No round runs at or after it.
    pub until: i64,
    /// The run's business clock (its rounds fall on server time).
    pub clock: crate::clock::BusinessClock,
    /// Regions whose stockout is already an open exception: a round finding another ends the
    /// stretch at once.
    pub open_stockouts: Vec<String>,
    /// With replenishment and no transfer awaiting supply chain: the policy's limit up to which
    /// a transfer is released without approval. A round whose transfers are all within it
    /// releases their orders itself (at the round's business instant) and goes on; any other
    /// transfer ends the stretch. `None`: every transfer ends it.
    #[serde(default)]
    pub auto_apply_max_cost: Option<String>,
    /// Live channel targets whose price correction is not confirmed yet (republished, but the
    /// channel still charged the old price when read back): a round whose prices read back
    /// ends the stretch, so that the workflow confirms the correction then and not at the
    /// stretch's end.
    #[serde(default)]
    pub open_corrections: Vec<Target>,
    /// Process events the run recorded since its last wait: the first attempt writes them, best
    /// effort — the run keeps them and sends them again with its next `promo.record_events`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<promo_contracts::retail::v1::ProcessEvent>,
}

/// One round of `promo.watch_window`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchedRound {
    /// Business instant of the round, Unix seconds.
    pub at: i64,
    /// What `promo.monitor_round` would have returned.
    pub round: MonitorRoundOutput,
    /// Orders of the round's transfers released by the activity (all within the limit).
    #[serde(default)]
    pub released: Vec<String>,
}

/// Output of `promo.watch_window`: its rounds, oldest first. The last one found something for
/// the workflow to decide (a new stockout, transfers, prices that differ), or the next round
/// would have fallen at or after `until`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WatchOutput {
    /// The rounds run.
    pub rounds: Vec<WatchedRound>,
    /// Why the next round could not run (the systems did not answer): the workflow takes over
    /// with its own calls, which wait for the systems and show that they do not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed: Option<String>,
}

/// A publication made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicationRef {
    /// Id in the channel system.
    pub publication_id: String,
    /// Target.
    pub target: Target,
    /// Kind.
    pub kind: i32,
    /// Acknowledged (Unix ms of the acknowledgment).
    pub acknowledged_at_ms: Option<i64>,
}

/// Input of `promo.await_acknowledgments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AwaitAcksInput {
    /// Publications to watch.
    pub publications: Vec<PublicationRef>,
    /// Give up after this many milliseconds (wall clock).
    pub timeout_ms: u64,
    /// Return as soon as any publication's acknowledgment changes, with what is known then,
    /// instead of waiting for all of them (the active window's late-acknowledgment wait, which
    /// otherwise lasts until the window's next wake-up).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub return_on_change: bool,
    /// `promo.publish_and_await` only: publications to make first (idempotent writes, as
    /// `promo.publish_many` makes them), whose acknowledgments are then awaited together with
    /// `publications`; the output lists `publications` first, then these, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<PublishInput>,
    /// Process events the run recorded since its last wait: written first, best effort — the
    /// run keeps them and sends them again with its next `promo.record_events`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<promo_contracts::retail::v1::ProcessEvent>,
}

/// Input of `promo.compensate`: a sweep that reads everything of the promotion from the systems
/// and undoes what is still live, whatever the workflow knew of (so a write whose answer was
/// lost, or an activity cancelled mid-call, is undone too): staged price changes are reverted,
/// activation publications not superseded by an acknowledged revert are withdrawn, released
/// orders are cancelled (see `keep_orders_arriving_by`). Item by item: a refusal of one item does
/// not stop the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompensateInput {
    /// The promotion.
    pub promotion_id: String,
    /// Why (kept with every undo in the systems).
    pub reason: String,
    /// Released orders arriving by this instant (Unix seconds) have done their job and are
    /// kept; 0 cancels every released order.
    #[serde(default)]
    pub keep_orders_arriving_by: i64,
    /// Then, when nothing is left live, free the promotion's footprint in the promotion calendar
    /// (after the undo, so that nothing of it is live when another promotion may take it).
    #[serde(default)]
    pub release_calendar: bool,
    /// Only list what is still live (`CompensateOutput::still_live`), undoing nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// An item of the promotion a system refused to undo for good.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RefusedUndo {
    /// What is still live, for people (`publication P-12 (POS R1)`).
    pub item: String,
    /// The system's refusal.
    pub reason: String,
}

/// What compensation undid, and what it could not.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompensateOutput {
    /// Publications withdrawn.
    pub withdrawn: u32,
    /// Whether a price change was reverted.
    pub reverted: bool,
    /// Orders cancelled.
    pub cancelled: u32,
    /// With [`CompensateInput::release_calendar`]: whether the calendar held a reservation the
    /// activity then released (`None`: not released, something is still live).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar_released: Option<bool>,
    /// Items refused for good: still live.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<RefusedUndo>,
    /// With [`CompensateInput::dry_run`]: what is still live.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub still_live: Vec<String>,
}

impl CompensateOutput {
    /// Whether anything was undone.
    pub fn any(&self) -> bool {
        self.withdrawn > 0 || self.reverted || self.cancelled > 0
    }
}

/// The sales a monitoring round or the post-event analysis reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SalesInput {
    /// The plan.
    pub plan: Plan,
    /// Remediation.
    pub adjustments: Adjustments,
    /// Region → live window (Unix seconds) so far / in total.
    pub windows: BTreeMap<String, (i64, i64)>,
    /// The assessment, for forecast and planned margin.
    pub assessment: pb::AssessmentSummary,
    /// In-flight replenishment asked of a monitoring round (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replenish: Option<ReplenishInput>,
}

/// What a monitoring round's replenishment needs besides the sales.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplenishInput {
    /// The revision that runs (part of each proposed order's idempotency key).
    pub revision: u32,
    /// The promotion's run chain (its first run id): part of every idempotency key, so that a
    /// promotion started again under the same id never takes the earlier chain's records.
    pub chain: String,
    /// The monitoring round (part of the key and of each transfer's id).
    pub round: u32,
    /// Cost of moving a unit from a DC to a store, decimal string.
    pub dc_unit_cost: String,
    /// Cost of moving a unit between stores, decimal string.
    pub store_unit_cost: String,
    /// Each region's serving DC.
    pub region_dcs: BTreeMap<String, String>,
}

/// Input of `promo.settle_transfers`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SettleTransfersInput {
    /// Proposed orders to release.
    pub release: Vec<String>,
    /// When they are released, business seconds.
    pub release_at: i64,
    /// Proposed orders to cancel.
    pub cancel: Vec<String>,
    /// Why they are cancelled.
    pub reason: String,
}

/// Input of `promo.analyse_and_claim`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimsInput {
    /// The revision that ran (part of each claim's idempotency key).
    pub revision: u32,
    /// The promotion's run chain (its first run id): part of every idempotency key, so that a
    /// promotion started again under the same id never takes the earlier chain's records.
    pub chain: String,
    /// What the sales are read over.
    pub sales: SalesInput,
}

/// Output of `promo.analyse_and_claim`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisAndClaims {
    /// The post-event report.
    pub report: pb::PostEventReport,
    /// The supplier funding claims, reconciled per agreement and submitted.
    pub claims: Vec<pb::FundingClaimResult>,
}

/// What a monitoring round found in the sales.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MonitorReport {
    /// Units sold so far.
    pub units_sold: i64,
    /// Sell-through so far (decimal string).
    pub sell_through: String,
    /// Regions with stockouts so far and their store-days.
    pub stockouts: BTreeMap<String, u64>,
    /// Transfers recommended this round, each a proposed order (`order_id`), no state yet.
    #[serde(default)]
    pub transfers: Vec<pb::Transfer>,
}

/// Activity type names (clean names for the Web UI and other SDKs).
pub mod activity_names {
    /// `promo.load_policy`.
    pub const LOAD_POLICY: &str = "promo.load_policy";
    /// `promo.validate_spec`.
    pub const VALIDATE_SPEC: &str = "promo.validate_spec";
    /// `promo.assess`: margin & compliance, inventory alignment and supplier funding.
    pub const ASSESS: &str = "promo.assess";
    /// `promo.recheck_gate`: `promo.assess` and a re-read of the channels' acknowledgments.
    pub const RECHECK_GATE: &str = "promo.recheck_gate";
    /// `promo.stage_prices`.
    pub const STAGE_PRICES: &str = "promo.stage_prices";
    /// `promo.create_transfer_orders`.
    pub const CREATE_TRANSFER_ORDERS: &str = "promo.create_transfer_orders";
    /// `promo.settle_transfers`.
    pub const SETTLE_TRANSFERS: &str = "promo.settle_transfers";
    /// `promo.await_acknowledgments`.
    pub const AWAIT_ACKNOWLEDGMENTS: &str = "promo.await_acknowledgments";
    /// `promo.publish_and_await`: `promo.publish_many`, then the wait of
    /// `promo.await_acknowledgments` for what it published, in one ordinary activity.
    pub const PUBLISH_AND_AWAIT: &str = "promo.publish_and_await";
    /// `promo.record_events` (a local activity).
    pub const RECORD_EVENTS: &str = "promo.record_events";
    /// `promo.key_status`: whether a signing key was revoked (a local activity, run by the
    /// message handlers before they apply a signed message).
    pub const KEY_STATUS: &str = "promo.key_status";
    /// `promo.compensate`.
    pub const COMPENSATE: &str = "promo.compensate";
    /// `promo.revert_prices`.
    pub const REVERT_PRICES: &str = "promo.revert_prices";
    /// `promo.monitor_round`: a monitoring round's sell-through, stockouts and transfers, and
    /// the live prices read back, in one activity.
    pub const MONITOR_ROUND: &str = "promo.monitor_round";
    /// `promo.publish_many`: publications to several channel targets in one activity.
    pub const PUBLISH_MANY: &str = "promo.publish_many";
    /// `promo.watch_window`: monitoring rounds at the policy's cadence until one finds
    /// something for the workflow to decide.
    pub const WATCH_WINDOW: &str = "promo.watch_window";
    /// `promo.analyse_and_claim`: the post-event report and the supplier funding claims, over
    /// one read of the sales.
    pub const ANALYSE_AND_CLAIM: &str = "promo.analyse_and_claim";
    /// `promo.reconcile_prices`.
    pub const RECONCILE_PRICES: &str = "promo.reconcile_prices";
}

/// The activities of the promotion workflow. Implemented by `promo_activities::PromotionActivities`.
pub struct PromotionActivities;

#[activity_definitions]
impl PromotionActivities {
    /// Returns the worker's policy.
    #[activity(name = activity_names::LOAD_POLICY)]
    pub fn load_policy(_: ()) -> Result<crate::policy::Policy, ActivityError> {
        unimplemented!()
    }

    /// Validates a spec against master data and other promotions.
    #[activity(name = activity_names::VALIDATE_SPEC)]
    pub fn validate_spec(_: IntakeInput) -> Result<IntakeOutput, ActivityError> {
        unimplemented!()
    }

    /// Margin, inventory and funding in one activity.
    #[activity(name = activity_names::ASSESS)]
    pub fn assess(_: AssessInput) -> Result<Assessment, ActivityError> {
        unimplemented!()
    }

    /// Stages the price change in the ERP; returns its id.
    #[activity(name = activity_names::STAGE_PRICES)]
    pub fn stage_prices(_: StagePricesInput) -> Result<String, ActivityError> {
        unimplemented!()
    }

    /// Creates transfer orders; returns their ids.
    #[activity(name = activity_names::CREATE_TRANSFER_ORDERS)]
    pub fn create_transfer_orders(_: OrdersInput) -> Result<Vec<String>, ActivityError> {
        unimplemented!()
    }

    /// Releases and cancels proposed transfer orders; returns the ids released.
    #[activity(name = activity_names::SETTLE_TRANSFERS)]
    pub fn settle_transfers(_: SettleTransfersInput) -> Result<Vec<String>, ActivityError> {
        unimplemented!()
    }

    /// Publishes to several channel targets at once; returns their publications in order.
    #[activity(name = activity_names::PUBLISH_MANY)]
    pub fn publish_many(_: Vec<PublishInput>) -> Result<Vec<PublicationRef>, ActivityError> {
        unimplemented!()
    }

    /// Waits (heartbeating) until the publications are acknowledged or the timeout passes.
    #[activity(name = activity_names::AWAIT_ACKNOWLEDGMENTS)]
    pub fn await_acknowledgments(_: AwaitAcksInput) -> Result<Vec<PublicationRef>, ActivityError> {
        unimplemented!()
    }

    /// Publishes `publish` (as `promo.publish_many`), then waits (heartbeating) until those and
    /// `publications` are acknowledged or the timeout passes: a publication and the wait that
    /// follows it in one ordinary activity.
    #[activity(name = activity_names::PUBLISH_AND_AWAIT)]
    pub fn publish_and_await(_: AwaitAcksInput) -> Result<Vec<PublicationRef>, ActivityError> {
        unimplemented!()
    }

    /// The launch gate's final re-check: stock and funding, and the channels' acknowledgments.
    #[activity(name = activity_names::RECHECK_GATE)]
    pub fn recheck_gate(_: RecheckGateInput) -> Result<RecheckGateOutput, ActivityError> {
        unimplemented!()
    }

    /// Records process events in the analytics store, idempotently (run as a local activity);
    /// returns how many were new.
    #[activity(name = activity_names::RECORD_EVENTS)]
    pub fn record_events(_: Vec<promo_contracts::retail::v1::ProcessEvent>) -> Result<u32, ActivityError> {
        unimplemented!()
    }

    /// Whether a signing key was revoked in the key directory.
    #[activity(name = activity_names::KEY_STATUS)]
    pub fn key_status(_: KeyStatusInput) -> Result<KeyStatus, ActivityError> {
        unimplemented!()
    }

    /// Withdraws publications, reverts the price change, cancels orders (reverse order).
    #[activity(name = activity_names::COMPENSATE)]
    pub fn compensate(_: CompensateInput) -> Result<CompensateOutput, ActivityError> {
        unimplemented!()
    }

    /// Reverts the staged price change at the end of the window.
    #[activity(name = activity_names::REVERT_PRICES)]
    pub fn revert_prices(_: String) -> Result<(), ActivityError> {
        unimplemented!()
    }

    /// A monitoring round's sales and the live prices read back, in one activity.
    #[activity(name = activity_names::MONITOR_ROUND)]
    pub fn monitor_round(_: MonitorRoundInput) -> Result<MonitorRoundOutput, ActivityError> {
        unimplemented!()
    }

    /// Monitoring rounds at the cadence until one finds something to decide or the stretch ends.
    #[activity(name = activity_names::WATCH_WINDOW)]
    pub fn watch_window(_: WatchInput) -> Result<WatchOutput, ActivityError> {
        unimplemented!()
    }

    /// Reads back what each channel target charges and compares it with the approved prices.
    #[activity(name = activity_names::RECONCILE_PRICES)]
    pub fn reconcile_prices(_: ReconcileInput) -> Result<ReconcileOutput, ActivityError> {
        unimplemented!()
    }

    /// The post-event report and the funding claims, over one read of the sales.
    #[activity(name = activity_names::ANALYSE_AND_CLAIM)]
    pub fn analyse_and_claim(_: ClaimsInput) -> Result<AnalysisAndClaims, ActivityError> {
        unimplemented!()
    }
}
