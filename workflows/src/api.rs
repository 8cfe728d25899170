//! The contract of the promotion workflow: task queue, workflow id, message names, search
//! attributes, and the activities it calls (declared here, implemented in `promo-activities`).
//!
//! Other Temporal clients (the `temporal` CLI, any SDK) can drive a promotion with these names
//! and the proto3-JSON messages of `promo.v1`.

use crate::plan::{Plan, Problem};
use promo_contracts::promo::v1 as pb;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use temporalio_common::search_attributes::SearchAttributeKey;
use temporalio_macros::activity_definitions;
use temporalio_sdk::activities::ActivityError;

/// Task queue the worker polls.
pub const TASK_QUEUE: &str = "promotions";
/// Workflow type name.
pub const WORKFLOW_TYPE: &str = "PromotionWorkflow";

/// Workflow id of a promotion: the business key makes starts idempotent.
pub fn workflow_id(promotion_id: &str) -> String {
    format!("promotion-{promotion_id}")
}

/// Start options for a promotion: its business-key workflow id, refused while that promotion runs
/// or after it ran to an outcome (a failed start, e.g. an invalid spec, may be resubmitted), with
/// a readable summary and details for the Web UI.
pub fn start_options(task_queue: &str, spec: &pb::PromotionSpec) -> temporalio_client::WorkflowStartOptions {
    use temporalio_client::WorkflowIdReusePolicy;
    let footprint = crate::plan::validate_spec(spec, i64::MIN).ok().map(|p| {
        let mut memo = temporalio_common::MemoValues::new();
        memo.insert(FOOTPRINT_MEMO, crate::plan::Footprint::of(&p));
        memo
    });
    temporalio_client::WorkflowStartOptions::new(task_queue, workflow_id(&spec.promotion_id))
        .id_reuse_policy(WorkflowIdReusePolicy::AllowDuplicateFailedOnly)
        .static_summary(crate::summary::summary(spec))
        .static_details(crate::summary::details(spec))
        .maybe_memo(footprint)
        .build()
}

/// Signal and update names (each message is accepted as both).
pub mod names {
    /// Approve (`ApprovalDecision`).
    pub const APPROVE: &str = "approve";
    /// Reject (`ApprovalDecision`).
    pub const REJECT: &str = "reject";
    /// Request changes with an amended spec (`ChangeRequest`).
    pub const REQUEST_CHANGES: &str = "request_changes";
    /// Choose a remediation option (`RemediationChoice`).
    pub const CHOOSE_REMEDIATION: &str = "choose_remediation";
    /// Cancel (`OperatorAction`).
    pub const CANCEL: &str = "cancel";
    /// Pause (`OperatorAction`).
    pub const PAUSE: &str = "pause";
    /// Resume (`OperatorAction`).
    pub const RESUME: &str = "resume";
    /// Override a stuck gate (`GateOverride`).
    pub const OVERRIDE: &str = "override";
    /// Query: `PromotionStatus`.
    pub const STATUS: &str = "status";
    /// Query: `AssessmentSummary`.
    pub const ASSESSMENT: &str = "assessment";
    /// Query: `AuditTrail`.
    pub const AUDIT: &str = "audit";
    /// Query: the footprint (for collision checks).
    pub const FOOTPRINT: &str = "footprint";
}

/// `PromotionId` (Keyword).
pub const PROMOTION_ID: SearchAttributeKey<String> = SearchAttributeKey::keyword("PromotionId");
/// `PromotionStage` (Keyword): the stage name without the `STAGE_` prefix, e.g. `APPROVAL`.
pub const PROMOTION_STAGE: SearchAttributeKey<String> = SearchAttributeKey::keyword("PromotionStage");
/// `PromotionRegions` (KeywordList).
pub const PROMOTION_REGIONS: SearchAttributeKey<Vec<String>> =
    SearchAttributeKey::keyword_list("PromotionRegions");
/// `PromotionRisk` (Keyword): `low`, `medium`, `high`.
pub const PROMOTION_RISK: SearchAttributeKey<String> = SearchAttributeKey::keyword("PromotionRisk");
/// `PendingApprovals` (KeywordList): roles still to approve, e.g. `FINANCE`.
pub const PENDING_APPROVALS: SearchAttributeKey<Vec<String>> =
    SearchAttributeKey::keyword_list("PendingApprovals");
/// `OpenExceptions` (Int).
pub const OPEN_EXCEPTIONS: SearchAttributeKey<i64> = SearchAttributeKey::int("OpenExceptions");
/// `LaunchAt` (Datetime).
pub const LAUNCH_AT: SearchAttributeKey<temporalio_common::search_attributes::Timestamp> =
    SearchAttributeKey::datetime("LaunchAt");

/// `PromotionRevision` (Int): the revision in progress, set with the workflow's search attributes
/// at every stage; absent (meaning 1) only before its first workflow task has run.
/// Collision checks trust the footprint memo only while this is 1.
pub const PROMOTION_REVISION: SearchAttributeKey<i64> = SearchAttributeKey::int("PromotionRevision");

/// Memo key of revision 1's footprint ([`crate::plan::Footprint`]), set at start by
/// [`start_options`] so that collision checks read it from the visibility listing instead of
/// querying every running promotion.
pub const FOOTPRINT_MEMO: &str = "footprint";

/// Memo key of the revision whose footprint [`FOOTPRINT_MEMO`] holds. Set with the footprint at
/// every revision's intake (lifecycle v2); absent on promotions started before, whose memo is
/// revision 1's.
pub const FOOTPRINT_REVISION_MEMO: &str = "footprintRevision";

/// The start input of a promotion: a `PromotionSpec`, or — when what was sent is not one — the
/// reason, naming the field. Deserializes from any JSON so that a start input of the wrong
/// shape ends the run with a clear `InvalidSpec` failure instead of failing every workflow task;
/// serializes as the spec.
#[derive(Debug, Clone, PartialEq)]
pub struct StartInput(pub Result<pb::PromotionSpec, String>);

impl From<pb::PromotionSpec> for StartInput {
    fn from(spec: pb::PromotionSpec) -> Self {
        Self(Ok(spec))
    }
}

impl Serialize for StartInput {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Ok(spec) => spec.serialize(s),
            Err(why) => s.serialize_str(why),
        }
    }
}

impl<'de> Deserialize<'de> for StartInput {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = serde_json::Value::deserialize(d)?;
        Ok(Self::parse(&raw))
    }
}

impl StartInput {
    /// Reads a spec from any JSON value; the error names the field that does not fit.
    pub fn parse(raw: &serde_json::Value) -> Self {
        if !raw.is_object() {
            let kind = match raw {
                serde_json::Value::Null => "null",
                serde_json::Value::Bool(_) => "a boolean",
                serde_json::Value::Number(_) => "a number",
                serde_json::Value::String(_) => "a string",
                serde_json::Value::Array(_) => "an array",
                serde_json::Value::Object(_) => "an object",
            };
            return Self(Err(format!(
                "the start input must be a promo.v1.PromotionSpec JSON object, not {kind}"
            )));
        }
        Self(serde_path_to_error::deserialize(raw).map_err(|e| {
            format!("the start input is not a promo.v1.PromotionSpec: {}: {}", e.path(), e.inner())
        }))
    }
}

/// Every custom search attribute with its type name, for server registration.
pub const SEARCH_ATTRIBUTES: &[(&str, &str)] = &[
    ("PromotionId", "Keyword"),
    ("PromotionStage", "Keyword"),
    ("PromotionRegions", "KeywordList"),
    ("PromotionRisk", "Keyword"),
    ("PendingApprovals", "KeywordList"),
    ("OpenExceptions", "Int"),
    ("LaunchAt", "Datetime"),
    ("PromotionRevision", "Int"),
];

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
    /// intake refuses a launch sooner than `now` plus this. 0 (the default, and what histories
    /// recorded before the field existed carry) skips the check.
    #[serde(default)]
    pub approval_lead_secs: i64,
    /// How collisions with other promotions are found: through Temporal visibility (the
    /// default, and what histories recorded before the field existed carry), or in the ERP's
    /// promotion calendar (`retail.v1.CalendarService`), checking only or reserving.
    #[serde(default)]
    pub calendar: CalendarCheck,
    /// Leave the plan out of the output (the workflow derives it from the spec itself; see
    /// patch `plan-in-workflow`). False by default: the output carries the plan.
    #[serde(default)]
    pub without_plan: bool,
}

/// How intake finds collisions with other promotions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CalendarCheck {
    /// Lists running promotions in Temporal visibility and reads their footprints (runs from
    /// before patch `calendar-reservations`).
    #[default]
    Visibility,
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

/// Output of `promo.validate_spec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntakeOutput {
    /// Every problem found (empty when valid).
    pub problems: Vec<Problem>,
    /// The plan, when valid and asked for (not with `without_plan`).
    pub plan: Option<Plan>,
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
    /// string; "0" disables, empty in histories from before it existed).
    #[serde(default)]
    pub margin_anomaly_mads: String,
    /// Policy threshold of the uplift model's tracking signal (decimal string; "0" disables,
    /// empty in histories from before it existed).
    #[serde(default)]
    pub model_drift_signal: String,
    /// Policy ceiling on a region's expected share of store × SKU cells running out of stock
    /// (decimal string; "0" disables, empty in histories from before it existed).
    #[serde(default)]
    pub max_stockout_share: String,
    /// Regions to assess (empty: all of the plan's).
    pub only_regions: Vec<String>,
}

/// Output of `promo.assess_inventory`.
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
    /// What `promo.assess_margin` returns.
    pub margin: pb::MarginSummary,
    /// What `promo.assess_inventory` returns.
    pub inventory: InventoryAssessment,
    /// What `promo.assess_funding` returns.
    pub funding: pb::FundingSummary,
}

/// Input of `promo.stage_prices`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StagePricesInput {
    /// Revision.
    pub revision: u32,
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

/// Input of `promo.publish`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishInput {
    /// Promotion.
    pub promotion_id: String,
    /// Revision.
    pub revision: u32,
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
    /// What `promo.monitor` takes.
    pub sales: SalesInput,
    /// What `promo.reconcile_prices` takes.
    pub prices: Option<ReconcileInput>,
    /// A carrying run with replenishment (`promo_workflows::workflow::ACTIVITIES_CARRY`): the
    /// policy's limit up to which the round releases its transfers' orders itself (at
    /// `release_at`), as the workflow would right after it. `None`: it releases none.
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
/// `promo.assess` takes) and of the channels' acknowledgments (what `promo.read_publications`
/// takes), in one activity.
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
    /// What `promo.read_publications` returns, or why the channels could not be read (which
    /// does not hold the launch: they did acknowledge, and the read-back after activation
    /// checks the prices they charge).
    pub publications: Result<Vec<PublicationRef>, String>,
}

/// Output of `promo.monitor_round`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorRoundOutput {
    /// What `promo.monitor` returns.
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
    /// The business clock: business = origin + (server time − origin) × scale.
    pub clock_origin: i64,
    /// The business clock's speed.
    pub time_scale: u32,
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
    /// Process events the run recorded since its last wait (a carrying run,
    /// `promo_workflows::workflow::ACTIVITIES_CARRY`): the first attempt writes them, best
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
    /// otherwise lasts until the window's next wake-up). Absent (false) in inputs from before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub return_on_change: bool,
    /// `promo.publish_and_await` only: publications to make first (idempotent writes, as
    /// `promo.publish_many` makes them), whose acknowledgments are then awaited together with
    /// `publications`; the output lists `publications` first, then these, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<PublishInput>,
    /// Process events the run recorded since its last wait (a carrying run,
    /// `promo_workflows::workflow::ACTIVITIES_CARRY`): written first, best effort — the run
    /// keeps them and sends them again with its next `promo.record_events`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<promo_contracts::retail::v1::ProcessEvent>,
}

/// Input of `promo.compensate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompensateInput {
    /// Why.
    pub reason: String,
    /// Publications to withdraw (in this order).
    pub publications: Vec<String>,
    /// Price change to revert.
    pub price_change_id: Option<String>,
    /// Orders to cancel.
    pub orders: Vec<String>,
    /// When set (lifecycle v2), the activity also reads everything of this promotion from the
    /// systems and undoes what is still live, whatever the workflow knew of: staged price
    /// changes are reverted, activation publications not superseded by an acknowledged revert
    /// are withdrawn, released orders are cancelled (see `keep_orders_arriving_by`).
    #[serde(default)]
    pub sweep_promotion_id: String,
    /// With a sweep: released orders arriving by this instant (Unix seconds) have done their job
    /// and are kept; 0 cancels every released order.
    #[serde(default)]
    pub keep_orders_arriving_by: i64,
    /// When set (a quiet run, `promo_workflows::workflow::QUIET_HISTORY`), the activity then
    /// frees this promotion's footprint in the promotion calendar — after the undo, so that
    /// nothing of it is live when another promotion may take the footprint.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub release_calendar: String,
}

/// What compensation undid.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompensateOutput {
    /// Publications withdrawn.
    pub withdrawn: u32,
    /// Whether the price change was reverted.
    pub reverted: bool,
    /// Orders cancelled.
    pub cancelled: u32,
    /// With [`CompensateInput::release_calendar`]: whether the calendar held a reservation the
    /// activity then released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar_released: Option<bool>,
}

impl CompensateOutput {
    /// Whether anything was undone.
    pub fn any(&self) -> bool {
        self.withdrawn > 0 || self.reverted || self.cancelled > 0
    }
}

/// Input of `promo.monitor` and `promo.post_event_analysis`.
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
    /// In-flight replenishment asked of a monitoring round (absent: none, and in histories from
    /// before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replenish: Option<ReplenishInput>,
}

/// What a monitoring round's replenishment needs besides the sales.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplenishInput {
    /// The revision that runs (part of each proposed order's idempotency key).
    pub revision: u32,
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

/// Input of `promo.submit_funding_claims`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimsInput {
    /// The revision that ran (part of each claim's idempotency key).
    pub revision: u32,
    /// What the sales are read over.
    pub sales: SalesInput,
}

/// Output of `promo.analyse_and_claim`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisAndClaims {
    /// What `promo.post_event_analysis` returns.
    pub report: pb::PostEventReport,
    /// What `promo.submit_funding_claims` returns.
    pub claims: Vec<pb::FundingClaimResult>,
}

/// Output of `promo.monitor`.
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
    /// `promo.assess_margin`.
    pub const ASSESS_MARGIN: &str = "promo.assess_margin";
    /// `promo.assess_inventory`.
    pub const ASSESS_INVENTORY: &str = "promo.assess_inventory";
    /// `promo.assess_funding`.
    pub const ASSESS_FUNDING: &str = "promo.assess_funding";
    /// `promo.assess`: the three above in one activity.
    pub const ASSESS: &str = "promo.assess";
    /// `promo.recheck_gate`: `promo.assess` and `promo.read_publications` in one activity.
    pub const RECHECK_GATE: &str = "promo.recheck_gate";
    /// `promo.stage_prices`.
    pub const STAGE_PRICES: &str = "promo.stage_prices";
    /// `promo.create_transfer_orders`.
    pub const CREATE_TRANSFER_ORDERS: &str = "promo.create_transfer_orders";
    /// `promo.settle_transfers`.
    pub const SETTLE_TRANSFERS: &str = "promo.settle_transfers";
    /// `promo.publish`.
    pub const PUBLISH: &str = "promo.publish";
    /// `promo.await_acknowledgments`.
    pub const AWAIT_ACKNOWLEDGMENTS: &str = "promo.await_acknowledgments";
    /// `promo.publish_and_await`: `promo.publish_many`, then `promo.await_acknowledgments` of
    /// what it published, in one ordinary activity.
    pub const PUBLISH_AND_AWAIT: &str = "promo.publish_and_await";
    /// `promo.read_publications`.
    pub const READ_PUBLICATIONS: &str = "promo.read_publications";
    /// `promo.record_events` (a local activity).
    pub const RECORD_EVENTS: &str = "promo.record_events";
    /// `promo.release_calendar`.
    pub const RELEASE_CALENDAR: &str = "promo.release_calendar";
    /// `promo.compensate`.
    pub const COMPENSATE: &str = "promo.compensate";
    /// `promo.revert_prices`.
    pub const REVERT_PRICES: &str = "promo.revert_prices";
    /// `promo.monitor`.
    pub const MONITOR: &str = "promo.monitor";
    /// `promo.monitor_round`: `promo.monitor` and `promo.reconcile_prices` in one activity.
    pub const MONITOR_ROUND: &str = "promo.monitor_round";
    /// `promo.publish_many`: `promo.publish` to several targets in one activity.
    pub const PUBLISH_MANY: &str = "promo.publish_many";
    /// `promo.watch_window`: monitoring rounds at the policy's cadence until one finds
    /// something for the workflow to decide.
    pub const WATCH_WINDOW: &str = "promo.watch_window";
    /// `promo.post_event_analysis`.
    pub const POST_EVENT_ANALYSIS: &str = "promo.post_event_analysis";
    /// `promo.analyse_and_claim`: `promo.post_event_analysis` and `promo.submit_funding_claims`
    /// over one read of the sales.
    pub const ANALYSE_AND_CLAIM: &str = "promo.analyse_and_claim";
    /// `promo.reconcile_prices`.
    pub const RECONCILE_PRICES: &str = "promo.reconcile_prices";
    /// `promo.submit_funding_claims`.
    pub const SUBMIT_FUNDING_CLAIMS: &str = "promo.submit_funding_claims";
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

    /// Margin and compliance.
    #[activity(name = activity_names::ASSESS_MARGIN)]
    pub fn assess_margin(_: AssessInput) -> Result<pb::MarginSummary, ActivityError> {
        unimplemented!()
    }

    /// Inventory alignment per region and store, with remediation options.
    #[activity(name = activity_names::ASSESS_INVENTORY)]
    pub fn assess_inventory(_: AssessInput) -> Result<InventoryAssessment, ActivityError> {
        unimplemented!()
    }

    /// Supplier funding.
    #[activity(name = activity_names::ASSESS_FUNDING)]
    pub fn assess_funding(_: AssessInput) -> Result<pb::FundingSummary, ActivityError> {
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

    /// Publishes to one channel target.
    #[activity(name = activity_names::PUBLISH)]
    pub fn publish(_: PublishInput) -> Result<PublicationRef, ActivityError> {
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
    /// `publications` are acknowledged or the timeout passes: the wait a carrying run
    /// (`promo_workflows::workflow::ACTIVITIES_CARRY`) starts right after publishing, with the
    /// publishing in it.
    #[activity(name = activity_names::PUBLISH_AND_AWAIT)]
    pub fn publish_and_await(_: AwaitAcksInput) -> Result<Vec<PublicationRef>, ActivityError> {
        unimplemented!()
    }

    /// Reads each publication's state now, once: `acknowledged_at_ms` is set only for those the
    /// channel still acknowledges (not for one whose acknowledgment it took back).
    #[activity(name = activity_names::READ_PUBLICATIONS)]
    pub fn read_publications(_: Vec<PublicationRef>) -> Result<Vec<PublicationRef>, ActivityError> {
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

    /// Releases the promotion's reservation in the promotion calendar (idempotent); returns
    /// whether one was held.
    #[activity(name = activity_names::RELEASE_CALENDAR)]
    pub fn release_calendar(_: String) -> Result<bool, ActivityError> {
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

    /// Sell-through so far.
    #[activity(name = activity_names::MONITOR)]
    pub fn monitor(_: SalesInput) -> Result<MonitorReport, ActivityError> {
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

    /// The post-event report.
    #[activity(name = activity_names::POST_EVENT_ANALYSIS)]
    pub fn post_event_analysis(_: SalesInput) -> Result<pb::PostEventReport, ActivityError> {
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

    /// Reconciles the supplier funding earned by actual sales per agreement (validity, cap) and
    /// submits the claims.
    #[activity(name = activity_names::SUBMIT_FUNDING_CLAIMS)]
    pub fn submit_funding_claims(_: ClaimsInput) -> Result<Vec<pb::FundingClaimResult>, ActivityError> {
        unimplemented!()
    }
}

/// Connects to Temporal the way the `temporal` CLI does: `TEMPORAL_ADDRESS`,
/// `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`, `TEMPORAL_TLS*`, `TEMPORAL_PROFILE` and the
/// `temporal.toml` config file (`TEMPORAL_CONFIG_FILE`); defaults to `localhost:7233`, namespace
/// `default`. `identity` names this process in the Web UI. Payloads go through
/// [`crate::codec::data_converter`].
pub async fn connect(identity: &str) -> Result<temporalio_client::Client, String> {
    use temporalio_client::{Client, ClientOptions, envconfig::LoadClientConfigProfileOptions};
    let (mut conn, opts) = ClientOptions::load_from_config(LoadClientConfigProfileOptions::default())
        .map_err(|e| format!("Temporal connection config: {e}"))?;
    conn.identity = identity.to_owned();
    let mut opts = opts;
    opts.data_converter = crate::codec::data_converter();
    let target = conn.target.to_string();
    Client::connect(conn, opts).await.map_err(|e| {
        format!("cannot reach Temporal at {target}: {e} (set TEMPORAL_ADDRESS or start a server: make demo starts one)")
    })
}
