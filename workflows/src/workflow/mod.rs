//! `PromotionWorkflow`: one durable execution per promotion, from intake to post-event analysis.
//!
//! [`PromotionWorkflow::run`] reads like DESIGN.md §3, one call per stage, each stage in its own
//! module under [`stages`]:
//!
//! intake → assessment → remediation → approval → scheduling → publishing → launch gate →
//! active → close → analysis,
//!
//! and every way out of it — REJECTED, EXPIRED, CANCELLED, FAILED, and COMPLETED too — goes
//! through [`stages::ending`], which compensates whatever is still live and resolves every open
//! exception. The layout:
//!
//! - [`state`]: the workflow's state and what the outside sees of it (status query, search
//!   attributes, Web UI details: one publisher, [`state::publish`]);
//! - [`messages`]: the eight messages, each accepted as a signal and as an update through one
//!   parse → check → apply path that never panics and audits every refusal;
//! - [`wait`]: the one wait primitive every stage uses (timers, activities, conditions), which
//!   always wakes on cancel and on the nudges a stage asks for (pause, resume, override);
//! - [`stages`]: one module per stage, the rules they apply are pure functions in
//!   [`crate::decisions`].
//!
//! Versioning: [`LIFECYCLE_V2`] is a patch taken at the very start of a run. Runs started before
//! it (and their committed histories, `tests/histories/before-lifecycle-v2/`) replay with the
//! command sequence they were recorded with; everything this version adds to the command
//! sequence (compensation at every ending, cancellable activity waits, the footprint memo per
//! revision, the clean-up at close) happens only when it is set.

pub mod events;
pub mod messages;
pub mod stages;
pub mod state;
pub mod wait;

use crate::api::StartInput;
use messages::Kind;
use promo_contracts::promo::v1::*;
use stages::{Stop, ending};
use state::PromotionWorkflow as State;
use temporalio_macros::workflow_methods;
use temporalio_sdk::{SyncWorkflowContext, WorkflowContext, WorkflowContextView, WorkflowResult};

pub use state::PromotionWorkflow;

/// Patch id of lifecycle v2 (this module): consulted once, first thing in `run`.
pub const LIFECYCLE_V2: &str = "lifecycle-v2";

/// Patch id of the change that makes the launch gate's final re-check hold regions it finds
/// unready since approval (before it, the re-check only wrote an audit line). Consulted at the
/// re-check, in v2 runs only.
pub const LAUNCH_GATE_HOLDS: &str = "launch-gate-holds";

/// Patch id of the change that makes the launch gate's final re-check re-read the channels'
/// acknowledgments: a target that took its acknowledgment back since is republished and holds
/// the regions depending on it until it acknowledges again. Consulted at the re-check, in v2
/// runs only.
pub const LAUNCH_GATE_CHANNELS: &str = "launch-gate-channels";

/// Patch id of the change that records process events (stage changes, approvals, exceptions,
/// acknowledgments, the report) through a local activity before every wait and at the end
/// ([`events`]). Consulted once, right after [`LIFECYCLE_V2`], in v2 runs only.
pub const PROCESS_EVENTS: &str = "process-events";
/// Intake reserves the footprint in the ERP's promotion calendar (atomic, idempotent) instead of
/// searching visibility for colliding promotions, and every ending releases it.
pub const CALENDAR_RESERVATIONS: &str = "calendar-reservations";

/// Patch id of the change that reads live prices back from the channels after activation, at
/// every monitoring round and after the revert, and republishes where they differ from the
/// approved ones. Consulted when the active window begins, in v2 runs only.
pub const PRICE_RECONCILIATION: &str = "price-reconciliation";

/// Patch id of the change that reconciles supplier funding per agreement from actual sales at
/// the end (validity, cap) and submits the claims. Consulted in the analysis, in v2 runs only.
pub const FUNDING_CLAIMS: &str = "funding-claims";

/// Patch id of the change that keeps reading the revert back at close (5 s, doubling to 5 min
/// apart) until every channel target charges its regular prices again; before it, a target
/// still unconfirmed after the second read was left to the final compensation sweep.
/// Consulted only when that happens.
pub const REVERT_READ_BACK_UNTIL_REGULAR: &str = "revert-read-back-until-regular";

/// Patch id of the change that publishes the revert to every channel at close.
pub const CLOSE_REVERTS_CHANNELS: &str = "close-reverts-channels";

/// Patch id of the change that keeps a region from launching once the window has ended (before
/// it, such a region went live with a sales window ending before it began, and the sales
/// contract refused the post-event analysis). Consulted on the launch loop's last pass, once the
/// window has ended, so new runs that reach the gate carry its marker.
pub const NO_LAUNCH_AFTER_WINDOW: &str = "no-launch-after-window";

/// Patch id of in-flight replenishment: monitoring rounds propose transfers (when the policy
/// enables it) and the window releases, or asks supply chain about, each. Consulted at the
/// first monitoring round of a run whose policy enables replenishment.
pub const IN_FLIGHT_REPLENISHMENT: &str = "in-flight-replenishment";

/// Patch id of the lean history, consulted first thing in `run`. Runs that record it take every
/// patch above as applied without consulting it (one marker instead of nine, each with the
/// `TemporalChangeVersion` upsert core adds), run the short activities as local activities (a
/// marker each, no activity events, no workflow task to resume, and their inputs — the plan —
/// stay out of the history), and upsert a search attribute only when its value changes. Runs
/// started before it replay on the paths their markers name
/// (`tests/histories/before-lean-history/`).
pub const LEAN_HISTORY: &str = "lean-history";

/// Patch id of the batched history, consulted first thing in `run` (before [`LEAN_HISTORY`],
/// which its runs take as applied without a marker). Its runs write the search attributes and
/// the process-event record only when the workflow is about to wait on the server (a timer, a
/// message, an ordinary activity) or ends — not before each local activity, which runs inside
/// the same workflow task, so nobody could see the values in between — and assess margin,
/// inventory and funding in one local activity (`promo.assess`, one marker instead of three).
/// Runs started before it replay on the paths they recorded
/// (`tests/histories/before-batched-history/`).
pub const BATCHED_HISTORY: &str = "batched-history";

/// Patch id of the plan derived in the workflow, consulted first thing in `run` (before
/// [`BATCHED_HISTORY`], which its runs take as applied). Intake's shape validation is pure code
/// over the spec and the business time, so its runs derive the plan themselves and
/// `promo.validate_spec` checks only what needs the systems (master data, lead time, the
/// calendar), returning its problems and regions without the plan: on the national launch that
/// takes the plan (125 KB) out of the history's largest event. Runs started before it replay
/// on the plan their marker holds (`tests/histories/before-plan-in-workflow/`).
pub const PLAN_IN_WORKFLOW: &str = "plan-in-workflow";

/// Patch id of the watched window, consulted first thing in `run` (before [`PLAN_IN_WORKFLOW`],
/// which its runs take as applied). Its runs monitor the active window with one activity per
/// stretch (`promo.watch_window`) instead of a timer and a local activity per round: the
/// activity's retry policy keeps the cadence (a round with nothing to decide ends its attempt,
/// and retries are not history events), each round reads its inputs from the workflow's
/// `monitor_input` query (the plan stays out of the history), and the activity returns to the
/// workflow only when a round finds something to decide — a new stockout, transfers, prices
/// that differ — or the stretch ends. A window costs a bounded number of events whatever its
/// number of rounds. Runs started before it replay on their timers
/// (`tests/histories/before-monitor-window/`).
pub const MONITOR_WINDOW: &str = "monitor-window";

/// Patch id of the quiet history, consulted first thing in `run` (before [`MONITOR_WINDOW`],
/// which its runs take as applied). Its runs keep a wait's timer when a message wakes the wait
/// and the instant it waits for has not moved (a supply-chain decision, a pause and resume),
/// instead of cancelling it and starting the same timer again; re-check the launch gate's stock,
/// funding and channel acknowledgments in one local activity (`promo.recheck_gate`); and free
/// the calendar reservation in the compensation's own activity when it runs. Runs started before
/// it replay on the paths they recorded (`tests/histories/before-quiet-history/`).
pub const QUIET_HISTORY: &str = "quiet-history";

/// Patch id of the carrying activities, consulted first thing in `run` (before
/// [`QUIET_HISTORY`], which its runs take as applied). When its run is about to wait on an
/// ordinary activity, that activity carries what the run used to send just before it in local
/// activities of its own: the process events recorded since the last wait (written first, best
/// effort; the run keeps them until its next `promo.record_events`, so that none is lost) and,
/// when the wait is for acknowledgments right after publishing, the publications themselves
/// (`promo.publish_and_await` instead of `promo.publish_many` then
/// `promo.await_acknowledgments`). A marker fewer per such wait. Runs started before it replay
/// on the paths they recorded (`tests/histories/before-activities-carry/`).
pub const ACTIVITIES_CARRY: &str = "activities-carry";

/// Whether this run takes the change behind `patch`: always in a lean run (which records no
/// marker for it), otherwise as its marker says.
pub(crate) fn patched(ctx: &wait::Ctx, patch: &str) -> bool {
    ctx.state(|s| s.lean) || ctx.patched(patch)
}

type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// The surface Temporal sees (init, run, signals, updates, queries), each a line or two; the
/// state is [`state::PromotionWorkflow`].
#[workflow_methods]
impl PromotionWorkflow {
    /// Starts from the planner's spec (proto3 JSON `promo.v1.PromotionSpec`). Any JSON is
    /// accepted here: a start input that is not a spec ends the run at once, FAILED with an
    /// `InvalidSpec` failure saying what is wrong, instead of failing every workflow task.
    #[init]
    pub fn new(_ctx: &WorkflowContextView, input: StartInput) -> Self {
        State::from_input(input)
    }

    /// The lifecycle. Every ending is compensated and leaves no exception open; an
    /// unrecoverable failure ends the promotion as FAILED with the reason.
    #[run(name = "PromotionWorkflow")]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<PromotionResult> {
        let carries = ctx.patched(ACTIVITIES_CARRY);
        let quiet = carries || ctx.patched(QUIET_HISTORY);
        let watches = quiet || ctx.patched(MONITOR_WINDOW);
        let plan_in_workflow = watches || ctx.patched(PLAN_IN_WORKFLOW);
        let batched = plan_in_workflow || ctx.patched(BATCHED_HISTORY);
        let lean = batched || ctx.patched(LEAN_HISTORY);
        let v2 = lean || ctx.patched(LIFECYCLE_V2);
        let records_events = v2 && (lean || ctx.patched(PROCESS_EVENTS));
        let calendar = records_events && (lean || ctx.patched(CALENDAR_RESERVATIONS));
        let run_id = ctx.run_id().to_owned();
        ctx.state_mut(|s| {
            s.lean = lean;
            s.batched = batched;
            s.plan_in_workflow = plan_in_workflow;
            s.watches = watches;
            s.quiet = quiet;
            s.carries = carries;
            s.v2 = v2;
            s.records_events = records_events;
            s.calendar = calendar;
            s.run_id = run_id;
        });
        let result = if let Some(why) = ctx.state(|s| s.input_error.clone()) {
            ending::invalid_input(ctx, &why)
        } else {
            let end = lifecycle(ctx).await;
            ending::finish(ctx, end).await
        };
        // What a batched run kept back for its next wait: the run ends here instead.
        state::publish_pending(ctx);
        result
    }

    #[signal(name = "approve")]
    pub fn approve_signal(&mut self, ctx: &mut SyncWorkflowContext<Self>, input: serde_json::Value) {
        self.on_signal(ctx, Kind::Approve, input);
    }

    #[signal(name = "reject")]
    pub fn reject_signal(&mut self, ctx: &mut SyncWorkflowContext<Self>, input: serde_json::Value) {
        self.on_signal(ctx, Kind::Reject, input);
    }

    #[signal(name = "request_changes")]
    pub fn request_changes_signal(&mut self, ctx: &mut SyncWorkflowContext<Self>, input: serde_json::Value) {
        self.on_signal(ctx, Kind::RequestChanges, input);
    }

    #[signal(name = "choose_remediation")]
    pub fn choose_remediation_signal(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        input: serde_json::Value,
    ) {
        self.on_signal(ctx, Kind::ChooseRemediation, input);
    }

    #[signal(name = "cancel")]
    pub fn cancel_signal(&mut self, ctx: &mut SyncWorkflowContext<Self>, input: serde_json::Value) {
        self.on_signal(ctx, Kind::Cancel, input);
    }

    #[signal(name = "pause")]
    pub fn pause_signal(&mut self, ctx: &mut SyncWorkflowContext<Self>, input: serde_json::Value) {
        self.on_signal(ctx, Kind::Pause, input);
    }

    #[signal(name = "resume")]
    pub fn resume_signal(&mut self, ctx: &mut SyncWorkflowContext<Self>, input: serde_json::Value) {
        self.on_signal(ctx, Kind::Resume, input);
    }

    #[signal(name = "override")]
    pub fn override_signal(&mut self, ctx: &mut SyncWorkflowContext<Self>, input: serde_json::Value) {
        self.on_signal(ctx, Kind::Override, input);
    }

    #[update_validator(approve)]
    fn validate_approve(
        &self,
        _ctx: &WorkflowContextView,
        input: &serde_json::Value,
    ) -> Result<(), HandlerError> {
        messages::validate(Kind::Approve, input)?;
        self.validate_signature(Kind::Approve, input)
    }

    /// Approve; answers at once with accepted or refused (and why). Every answer is audited.
    #[update(name = "approve")]
    pub fn approve(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        input: serde_json::Value,
    ) -> Result<ActionResult, HandlerError> {
        self.on_update(ctx, Kind::Approve, input)
    }

    #[update_validator(reject)]
    fn validate_reject(
        &self,
        _ctx: &WorkflowContextView,
        input: &serde_json::Value,
    ) -> Result<(), HandlerError> {
        messages::validate(Kind::Reject, input)?;
        self.validate_signature(Kind::Reject, input)
    }

    /// Reject; ends the promotion as REJECTED.
    #[update(name = "reject")]
    pub fn reject(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        input: serde_json::Value,
    ) -> Result<ActionResult, HandlerError> {
        self.on_update(ctx, Kind::Reject, input)
    }

    #[update_validator(request_changes)]
    fn validate_request_changes(
        &self,
        _ctx: &WorkflowContextView,
        input: &serde_json::Value,
    ) -> Result<(), HandlerError> {
        messages::validate(Kind::RequestChanges, input)?;
        self.validate_signature(Kind::RequestChanges, input)
    }

    /// Request changes with an amended spec: a new revision is assessed and approved afresh.
    #[update(name = "request_changes")]
    pub fn request_changes(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        input: serde_json::Value,
    ) -> Result<ActionResult, HandlerError> {
        self.on_update(ctx, Kind::RequestChanges, input)
    }

    #[update_validator(choose_remediation)]
    fn validate_choose_remediation(
        &self,
        _ctx: &WorkflowContextView,
        input: &serde_json::Value,
    ) -> Result<(), HandlerError> {
        messages::validate(Kind::ChooseRemediation, input)
    }

    /// Choose a remediation option for a failing region.
    #[update(name = "choose_remediation")]
    pub fn choose_remediation(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        input: serde_json::Value,
    ) -> Result<ActionResult, HandlerError> {
        self.on_update(ctx, Kind::ChooseRemediation, input)
    }

    #[update_validator(cancel)]
    fn validate_cancel(
        &self,
        _ctx: &WorkflowContextView,
        input: &serde_json::Value,
    ) -> Result<(), HandlerError> {
        messages::validate(Kind::Cancel, input)
    }

    /// Cancel: everything done so far is compensated in reverse order.
    #[update(name = "cancel")]
    pub fn cancel(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        input: serde_json::Value,
    ) -> Result<ActionResult, HandlerError> {
        self.on_update(ctx, Kind::Cancel, input)
    }

    #[update_validator(pause)]
    fn validate_pause(
        &self,
        _ctx: &WorkflowContextView,
        input: &serde_json::Value,
    ) -> Result<(), HandlerError> {
        messages::validate(Kind::Pause, input)
    }

    /// Pause: no region activates and monitoring stops until resumed.
    #[update(name = "pause")]
    pub fn pause(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        input: serde_json::Value,
    ) -> Result<ActionResult, HandlerError> {
        self.on_update(ctx, Kind::Pause, input)
    }

    #[update_validator(resume)]
    fn validate_resume(
        &self,
        _ctx: &WorkflowContextView,
        input: &serde_json::Value,
    ) -> Result<(), HandlerError> {
        messages::validate(Kind::Resume, input)
    }

    /// Resume after a pause.
    #[update(name = "resume")]
    pub fn resume(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        input: serde_json::Value,
    ) -> Result<ActionResult, HandlerError> {
        self.on_update(ctx, Kind::Resume, input)
    }

    #[update_validator(override_gate)]
    fn validate_override_gate(
        &self,
        _ctx: &WorkflowContextView,
        input: &serde_json::Value,
    ) -> Result<(), HandlerError> {
        messages::validate(Kind::Override, input)
    }

    /// Open a stuck gate (missing acknowledgments) for a region or the whole promotion.
    #[update(name = "override")]
    pub fn override_gate(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        input: serde_json::Value,
    ) -> Result<ActionResult, HandlerError> {
        self.on_update(ctx, Kind::Override, input)
    }

    /// Stage, revision, timeline, approvals, exceptions, per-region readiness.
    #[query]
    pub fn status(&self, _ctx: &WorkflowContextView) -> PromotionStatus {
        self.snapshot()
    }

    /// The latest assessment summary.
    #[query]
    pub fn assessment(&self, _ctx: &WorkflowContextView) -> AssessmentSummary {
        self.assessment.clone().unwrap_or_default()
    }

    /// The audit trail.
    #[query]
    pub fn audit(&self, _ctx: &WorkflowContextView) -> AuditTrail {
        AuditTrail { entries: self.audit.clone() }
    }

    /// What a monitoring round at business instant `at` (Unix seconds) takes: asked by
    /// `promo.watch_window` at each of its rounds, so that the plan need not travel in its input.
    /// `None` before the window is live.
    #[query]
    pub fn monitor_input(
        &self,
        _ctx: &WorkflowContextView,
        at: i64,
    ) -> Option<crate::api::MonitorRoundInput> {
        stages::active::watched_round_input(self, at)
    }

    /// What this promotion occupies (SKU × location × dates), for other promotions' collision
    /// checks. Before intake has produced a plan, the spec itself answers (if its shape is
    /// valid), so two promotions starting at the same moment still see each other.
    #[query]
    pub fn footprint(&self, _ctx: &WorkflowContextView) -> Option<crate::plan::Footprint> {
        self.current_footprint()
    }
}

/// The lifecycle proper: one call per stage. `Err` is how a stage ends it early.
async fn lifecycle(ctx: &mut WorkflowContext<PromotionWorkflow>) -> Result<PromotionResultBody, Stop> {
    use stages::*;
    let policy = intake::start(ctx).await?;
    let plan = loop {
        let plan = intake::run(ctx, &policy).await?;
        let found = assessment::run(ctx, &plan, &policy).await?;
        let remediated = !assessment::passes(&found);
        if remediated {
            remediation::run(ctx, &plan, &policy, &found).await?;
            assessment::run(ctx, &plan, &policy).await?;
        }
        match approval::run(ctx, &policy, &plan, remediated).await? {
            approval::Verdict::Approved => break plan,
            approval::Verdict::ChangesRequested => continue,
        }
    };
    scheduling::run(ctx, &plan).await?;
    publishing::run(ctx, &plan, &policy).await?;
    launch_gate::run(ctx, &plan, &policy).await?;
    let windows = active::run(ctx, &plan, &policy).await?;
    close::run(ctx, &plan, &policy).await?;
    let report = analysis::run(ctx, &plan, windows).await?;
    Ok(PromotionResultBody { report })
}

/// What a completed lifecycle hands to [`ending::finish`].
pub struct PromotionResultBody {
    /// The post-event report.
    pub report: PostEventReport,
}
