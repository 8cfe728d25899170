//! The surface Temporal sees — init, run, the nine messages as signals and updates, and the
//! queries — each a line or two over [`super::state`], [`super::messages`] and
//! [`super::lifecycle`].

use super::input::StartInput;
use super::{
    lifecycle,
    messages::{self, Kind},
    stages::ending,
    state::PromotionWorkflow,
};
use crate::version::Version;
use promo_contracts::promo::v1::*;
use temporalio_macros::workflow_methods;
use temporalio_sdk::{WorkflowContext, WorkflowContextView, WorkflowResult};

type HandlerError = Box<dyn std::error::Error + Send + Sync>;

#[workflow_methods]
impl PromotionWorkflow {
    /// Starts from the planner's spec (proto3 JSON `promo.v1.PromotionSpec`). Any JSON is
    /// accepted here: a start input that is not a spec ends the run at once, FAILED with an
    /// `InvalidSpec` failure saying what is wrong, instead of failing every workflow task.
    #[init]
    pub fn new(_ctx: &WorkflowContextView, input: StartInput) -> Self {
        input.into_state()
    }

    /// The lifecycle. Every ending is compensated and leaves no exception open; an
    /// unrecoverable failure ends the promotion as FAILED with the reason.
    #[run(name = "PromotionWorkflow")]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<PromotionResult> {
        // The version first: a new run records the current one, a replayed run finds its own.
        // A run older than every version this build supports cannot be replayed here: its
        // workflow task fails (and is retried) until a worker that supports it takes it. The
        // worker refuses to start while such runs are open, so this is a deployment error.
        let Some(version) = Version::of_run(|marker| ctx.patched(marker)) else {
            panic!(
                "this promotion run started before lifecycle version {} (the oldest this worker \
                 supports, marker {:?}); run it to its end on a worker of the build that started it",
                Version::OLDEST.number(),
                Version::OLDEST.marker()
            );
        };
        let run_id = ctx.run_id().to_owned();
        ctx.state_mut(|s| {
            s.version = version;
            // The first run of a chain names it; a continued run keeps the chain's.
            if s.first_run_id.is_empty() {
                s.first_run_id = run_id.clone();
            }
            s.run_id = run_id;
        });
        let result = if let Some(why) = ctx.state(|s| s.input_error.clone()) {
            ending::invalid_input(ctx, &why)
        } else {
            let end = lifecycle(ctx).await;
            ending::finish(ctx, end).await
        };
        // What the run kept back for its next wait: it ends here instead.
        super::publish::publish_pending(ctx);
        result
    }

    #[signal(name = "approve")]
    pub async fn approve_signal(ctx: &mut WorkflowContext<Self>, input: serde_json::Value) {
        messages::on_signal(ctx, Kind::Approve, input).await;
    }

    #[update_validator(approve)]
    fn validate_approve(
        &self,
        _ctx: &WorkflowContextView,
        input: &serde_json::Value,
    ) -> Result<(), HandlerError> {
        self.validate(Kind::Approve, input)
    }

    /// Approve; answers at once with accepted or refused (and why). Every answer is audited.
    #[update(name = "approve")]
    pub async fn approve(
        ctx: &mut WorkflowContext<Self>,
        input: serde_json::Value,
    ) -> Result<ActionResult, HandlerError> {
        messages::on_update(ctx, Kind::Approve, input).await
    }

    #[signal(name = "reject")]
    pub async fn reject_signal(ctx: &mut WorkflowContext<Self>, input: serde_json::Value) {
        messages::on_signal(ctx, Kind::Reject, input).await;
    }

    #[update_validator(reject)]
    fn validate_reject(
        &self,
        _ctx: &WorkflowContextView,
        input: &serde_json::Value,
    ) -> Result<(), HandlerError> {
        self.validate(Kind::Reject, input)
    }

    /// Reject; ends the promotion as REJECTED.
    #[update(name = "reject")]
    pub async fn reject(
        ctx: &mut WorkflowContext<Self>,
        input: serde_json::Value,
    ) -> Result<ActionResult, HandlerError> {
        messages::on_update(ctx, Kind::Reject, input).await
    }

    #[signal(name = "request_changes")]
    pub async fn request_changes_signal(ctx: &mut WorkflowContext<Self>, input: serde_json::Value) {
        messages::on_signal(ctx, Kind::RequestChanges, input).await;
    }

    #[update_validator(request_changes)]
    fn validate_request_changes(
        &self,
        _ctx: &WorkflowContextView,
        input: &serde_json::Value,
    ) -> Result<(), HandlerError> {
        self.validate(Kind::RequestChanges, input)
    }

    /// Request changes with an amended spec: checked as intake would check it, then a new revision is assessed and approved afresh.
    #[update(name = "request_changes")]
    pub async fn request_changes(
        ctx: &mut WorkflowContext<Self>,
        input: serde_json::Value,
    ) -> Result<ActionResult, HandlerError> {
        messages::on_update(ctx, Kind::RequestChanges, input).await
    }

    #[signal(name = "choose_remediation")]
    pub async fn choose_remediation_signal(ctx: &mut WorkflowContext<Self>, input: serde_json::Value) {
        messages::on_signal(ctx, Kind::ChooseRemediation, input).await;
    }

    #[update_validator(choose_remediation)]
    fn validate_choose_remediation(
        &self,
        _ctx: &WorkflowContextView,
        input: &serde_json::Value,
    ) -> Result<(), HandlerError> {
        self.validate(Kind::ChooseRemediation, input)
    }

    /// Choose a remediation option for a failing region (or a delay for a region held at the launch gate).
    #[update(name = "choose_remediation")]
    pub async fn choose_remediation(
        ctx: &mut WorkflowContext<Self>,
        input: serde_json::Value,
    ) -> Result<ActionResult, HandlerError> {
        messages::on_update(ctx, Kind::ChooseRemediation, input).await
    }

    #[signal(name = "cancel")]
    pub async fn cancel_signal(ctx: &mut WorkflowContext<Self>, input: serde_json::Value) {
        messages::on_signal(ctx, Kind::Cancel, input).await;
    }

    #[update_validator(cancel)]
    fn validate_cancel(
        &self,
        _ctx: &WorkflowContextView,
        input: &serde_json::Value,
    ) -> Result<(), HandlerError> {
        self.validate(Kind::Cancel, input)
    }

    /// Cancel: everything done so far is compensated in reverse order.
    #[update(name = "cancel")]
    pub async fn cancel(
        ctx: &mut WorkflowContext<Self>,
        input: serde_json::Value,
    ) -> Result<ActionResult, HandlerError> {
        messages::on_update(ctx, Kind::Cancel, input).await
    }

    #[signal(name = "pause")]
    pub async fn pause_signal(ctx: &mut WorkflowContext<Self>, input: serde_json::Value) {
        messages::on_signal(ctx, Kind::Pause, input).await;
    }

    #[update_validator(pause)]
    fn validate_pause(
        &self,
        _ctx: &WorkflowContextView,
        input: &serde_json::Value,
    ) -> Result<(), HandlerError> {
        self.validate(Kind::Pause, input)
    }

    /// Pause: no region activates and monitoring stops until resumed.
    #[update(name = "pause")]
    pub async fn pause(
        ctx: &mut WorkflowContext<Self>,
        input: serde_json::Value,
    ) -> Result<ActionResult, HandlerError> {
        messages::on_update(ctx, Kind::Pause, input).await
    }

    #[signal(name = "resume")]
    pub async fn resume_signal(ctx: &mut WorkflowContext<Self>, input: serde_json::Value) {
        messages::on_signal(ctx, Kind::Resume, input).await;
    }

    #[update_validator(resume)]
    fn validate_resume(
        &self,
        _ctx: &WorkflowContextView,
        input: &serde_json::Value,
    ) -> Result<(), HandlerError> {
        self.validate(Kind::Resume, input)
    }

    /// Resume after a pause.
    #[update(name = "resume")]
    pub async fn resume(
        ctx: &mut WorkflowContext<Self>,
        input: serde_json::Value,
    ) -> Result<ActionResult, HandlerError> {
        messages::on_update(ctx, Kind::Resume, input).await
    }

    #[signal(name = "override")]
    pub async fn override_signal(ctx: &mut WorkflowContext<Self>, input: serde_json::Value) {
        messages::on_signal(ctx, Kind::Override, input).await;
    }

    #[update_validator(override_gate)]
    fn validate_override_gate(
        &self,
        _ctx: &WorkflowContextView,
        input: &serde_json::Value,
    ) -> Result<(), HandlerError> {
        self.validate(Kind::Override, input)
    }

    /// Open a stuck gate (missing acknowledgments) for a region or the whole promotion.
    #[update(name = "override")]
    pub async fn override_gate(
        ctx: &mut WorkflowContext<Self>,
        input: serde_json::Value,
    ) -> Result<ActionResult, HandlerError> {
        messages::on_update(ctx, Kind::Override, input).await
    }

    #[signal(name = "resolve_compensation")]
    pub async fn resolve_compensation_signal(ctx: &mut WorkflowContext<Self>, input: serde_json::Value) {
        messages::on_signal(ctx, Kind::ResolveCompensation, input).await;
    }

    #[update_validator(resolve_compensation)]
    fn validate_resolve_compensation(
        &self,
        _ctx: &WorkflowContextView,
        input: &serde_json::Value,
    ) -> Result<(), HandlerError> {
        self.validate(Kind::ResolveCompensation, input)
    }

    /// Decide a compensation a system refused for good: retry it, or accept what was undone by hand.
    #[update(name = "resolve_compensation")]
    pub async fn resolve_compensation(
        ctx: &mut WorkflowContext<Self>,
        input: serde_json::Value,
    ) -> Result<ActionResult, HandlerError> {
        messages::on_update(ctx, Kind::ResolveCompensation, input).await
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

    /// The audit trail's latest entries; the whole trail is in the process-event record
    /// (`promo audit` pages through it from `first_seq`).
    #[query]
    pub fn audit(&self, _ctx: &WorkflowContextView) -> AuditTrail {
        AuditTrail {
            entries: self.audit.clone(),
            total_entries: self.audit_seq,
            first_seq: self.audit.first().map_or(self.audit_seq + 1, |e| e.seq),
            first_run_id: self.first_run_id.clone(),
        }
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
        super::stages::active::watched_round_input(self, at)
    }
}
