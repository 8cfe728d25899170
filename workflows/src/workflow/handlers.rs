//! The surface Temporal sees — init, run, the eight messages as signals and updates, and the
//! queries — each a line or two over [`super::state`], [`super::messages`] and
//! [`super::lifecycle`].

use super::{
    lifecycle,
    messages::{self, Kind},
    stages::ending,
    state::{self, PromotionWorkflow},
};
use crate::{api::StartInput, version::Version};
use promo_contracts::promo::v1::*;
use temporalio_macros::workflow_methods;
use temporalio_sdk::{SyncWorkflowContext, WorkflowContext, WorkflowContextView, WorkflowResult};

type HandlerError = Box<dyn std::error::Error + Send + Sync>;

#[workflow_methods]
impl PromotionWorkflow {
    /// Starts from the planner's spec (proto3 JSON `promo.v1.PromotionSpec`). Any JSON is
    /// accepted here: a start input that is not a spec ends the run at once, FAILED with an
    /// `InvalidSpec` failure saying what is wrong, instead of failing every workflow task.
    #[init]
    pub fn new(_ctx: &WorkflowContextView, input: StartInput) -> Self {
        PromotionWorkflow::from_input(input)
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
            s.run_id = run_id;
        });
        let result = if let Some(why) = ctx.state(|s| s.input_error.clone()) {
            ending::invalid_input(ctx, &why)
        } else {
            let end = lifecycle(ctx).await;
            ending::finish(ctx, end).await
        };
        // What the run kept back for its next wait: it ends here instead.
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
        super::stages::active::watched_round_input(self, at)
    }
}
