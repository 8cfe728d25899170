//! `PromotionWorkflow`: one durable execution per promotion, from intake to post-event analysis.
//!
//! `run` reads like DESIGN.md §3: intake → assessment (three engines in parallel) → remediation
//! → approval → scheduling → publishing → launch gate → active → close → analysis. Decisions are
//! the pure functions of [`crate::decisions`]; all I/O is in activities; time comes from the SDK.

use crate::{
    api::{
        self, Adjustments, AssessInput, AwaitAcksInput, CompensateInput, IntakeInput, InventoryAssessment,
        OrdersInput, PromotionActivities as A, PublicationRef, PublishInput, RegionInfo, SalesInput,
        StagePricesInput, Target,
    },
    decisions::{self, role_name, stage_name},
    plan::{self, Plan},
    policy::{LateAckAction, Policy},
    summary::channel_name,
};
use pbjson_types::Timestamp as PbTimestamp;
use promo_contracts::{
    promo::v1::*,
    retail::v1::{Channel, PublicationKind},
};
use rust_decimal::Decimal;
use std::{
    collections::{BTreeMap, BTreeSet},
    pin::pin,
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use temporalio_common::{RetryPolicy, search_attributes::Timestamp as SaTimestamp};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, ApplicationFailure, CancellableFuture, SyncWorkflowContext, TimerOptions,
    WorkflowContext, WorkflowContextView, WorkflowResult, WorkflowTermination,
    workflows::{join, join_all, select},
};

type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// The state of one promotion. Everything here is a summary: the store × SKU matrix stays in the
/// systems of record and is streamed into activities.
#[workflow]
pub struct PromotionWorkflow {
    spec: PromotionSpec,
    revision: u32,
    stage: Stage,
    outcome: Outcome,
    outcome_reason: String,
    timeline: Vec<StageEntry>,
    policy: Option<Policy>,
    plan: Option<Plan>,
    regions: Vec<RegionInfo>,
    assessment: Option<AssessmentSummary>,
    requirements: Vec<ApprovalRequirement>,
    exceptions: Vec<PromotionException>,
    readiness: BTreeMap<String, RegionReadiness>,
    audit: Vec<AuditEntry>,
    adjustments: Adjustments,
    remediation_options: Vec<RemediationOption>,
    remediation_choices: BTreeMap<String, (String, String)>,
    change_request: Option<ChangeRequest>,
    rejection: Option<ApprovalDecision>,
    cancel: Option<OperatorAction>,
    paused: bool,
    overrides: BTreeSet<String>,
    price_change_id: Option<String>,
    orders: Vec<String>,
    publications: Vec<PublicationRef>,
    on_time_acks: (u32, u32),
    /// Workflow time at start: the origin of the (possibly compressed) business clock.
    started_at: i64,
}

/// How the approval stage ended.
enum ApprovalEnd {
    Approved,
    Rejected(String),
    ChangesRequested(Box<ChangeRequest>),
    Expired,
    Cancelled,
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn pb_ts(seconds: i64) -> Option<PbTimestamp> {
    Some(PbTimestamp { seconds, nanos: 0 })
}

fn retry(max_attempts: i32) -> RetryPolicy {
    RetryPolicy::builder()
        .initial_interval(Duration::from_millis(500))
        .backoff_coefficient(2.0)
        .maximum_interval(Duration::from_secs(30))
        .maximum_attempts(max_attempts as u32)
        .non_retryable_error_types(["InvalidSpec", "BusinessRule"])
        .build()
}

/// Start-to-close timeout of one publish call: a single idempotent write with a few quick
/// in-place retries, so an attempt stuck on a hung connection is abandoned and retried soon.
const PUBLISH_TIMEOUT_SECS: u64 = 20;

/// Heartbeat timeout of every activity: activities heartbeat every 2 s while they run
/// (`promo_activities::PULSE`), so one on a worker that died is retried on another within this,
/// whatever its start-to-close timeout.
const HEARTBEAT_TIMEOUT_SECS: u64 = 10;

fn opts(timeout_secs: u64, summary: String) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(timeout_secs))
        .heartbeat_timeout(Duration::from_secs(HEARTBEAT_TIMEOUT_SECS))
        .retry_policy(retry(20))
        .summary(summary)
        .build()
}

/// Options of an activity that runs for up to `timeout` by design (a wait, a long read).
fn heartbeat_opts(timeout: Duration, summary: String) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(timeout + Duration::from_secs(60))
        .heartbeat_timeout(Duration::from_secs(HEARTBEAT_TIMEOUT_SECS))
        .retry_policy(retry(20))
        .summary(summary)
        .build()
}

fn timer(d: Duration, summary: String) -> TimerOptions {
    TimerOptions::builder(d.max(Duration::from_millis(1))).summary(summary).build()
}

fn region_of_target(t: &Target) -> Option<&str> {
    (!t.region_id.is_empty()).then_some(t.region_id.as_str())
}

impl PromotionWorkflow {
    fn policy(&self) -> &Policy {
        self.policy.as_ref().expect("policy is loaded before any handler needs it")
    }

    fn record(&mut self, now: i64, actor: &str, action: &str, detail: String) {
        self.audit.push(AuditEntry {
            at: pb_ts(now),
            actor: actor.to_owned(),
            action: action.to_owned(),
            detail,
            revision: self.revision,
        });
    }

    fn open_exceptions(&self) -> Vec<PromotionException> {
        self.exceptions.iter().filter(|e| e.status() == ExceptionStatus::Open).cloned().collect()
    }

    fn raise(&mut self, now: i64, mut e: PromotionException) {
        if self
            .exceptions
            .iter()
            .any(|x| x.exception_id == e.exception_id && x.status() == ExceptionStatus::Open)
        {
            return;
        }
        e.raised_at = pb_ts(now);
        self.record(now, "system", "exception-raised", format!("{}: {}", e.exception_id, e.detail));
        self.exceptions.push(e);
    }

    fn resolve(&mut self, now: i64, pred: impl Fn(&PromotionException) -> bool, resolution: &str) {
        for e in self.exceptions.iter_mut().filter(|e| e.status() == ExceptionStatus::Open && pred(e)) {
            e.status = ExceptionStatus::Resolved as i32;
            e.resolved_at = pb_ts(now);
            e.resolution = resolution.to_owned();
        }
    }

    fn pending_roles(&self) -> Vec<String> {
        self.requirements
            .iter()
            .filter(|r| r.approved_by.is_empty())
            .map(|r| role_name(r.role()).to_owned())
            .collect()
    }

    fn snapshot(&self) -> PromotionStatus {
        let open = self.open_exceptions();
        PromotionStatus {
            promotion_id: self.spec.promotion_id.clone(),
            name: self.spec.name.clone(),
            revision: self.revision,
            stage: self.stage as i32,
            outcome: self.outcome as i32,
            timeline: self.timeline.clone(),
            approvals: self.requirements.clone(),
            risk: decisions::risk(&open).to_owned(),
            open_exceptions: open,
            regions: self.readiness.values().cloned().collect(),
            paused: self.paused,
            remediation_options: if self.stage == Stage::Remediation {
                self.remediation_options.clone()
            } else {
                Vec::new()
            },
            outcome_reason: self.outcome_reason.clone(),
            exceptions_raised: self.exceptions.len() as u32,
        }
    }

    fn details_markdown(&self) -> String {
        let mut md = format!(
            "**Stage** {} · revision {} · risk {}\n\n",
            stage_name(self.stage),
            self.revision,
            decisions::risk(&self.open_exceptions())
        );
        let pending = self.pending_roles();
        if self.stage == Stage::Approval && !pending.is_empty() {
            md.push_str(&format!("**Waiting for approval** from {}\n\n", pending.join(", ")));
        }
        if self.paused {
            md.push_str("**Paused** by an operator\n\n");
        }
        if !self.readiness.is_empty() {
            md.push_str("| region | state | fill rate | note |\n|---|---|---|---|\n");
            for r in self.readiness.values() {
                md.push_str(&format!(
                    "| {} | {} | {} | {} |\n",
                    r.region_id,
                    r.state().as_str_name().trim_start_matches("REGION_STATE_"),
                    r.fill_rate,
                    r.note
                ));
            }
        }
        let open = self.open_exceptions();
        if !open.is_empty() {
            md.push_str(&format!("\n**Open exceptions ({})**\n", open.len()));
            for e in &open {
                md.push_str(&format!("- {}: {}\n", e.exception_id, e.detail));
            }
        }
        md
    }

    /// Search attributes and current details, kept current after every change.
    fn publish_state(&self, ctx: &SyncWorkflowContext<Self>) {
        ctx.upsert_search_attributes([
            api::PROMOTION_STAGE.value_set(stage_name(self.stage).to_owned()),
            api::PROMOTION_RISK.value_set(decisions::risk(&self.open_exceptions()).to_owned()),
            api::PENDING_APPROVALS.value_set(if self.stage == Stage::Approval {
                self.pending_roles()
            } else {
                vec![]
            }),
            api::OPEN_EXCEPTIONS.value_set(self.open_exceptions().len() as i64),
            api::PROMOTION_REVISION.value_set(i64::from(self.revision)),
        ]);
        ctx.set_current_details(self.details_markdown());
    }

    /// Signals arrive as raw JSON and are parsed here, so a malformed or ill-typed signal (sent
    /// with the `temporal` CLI, say) is ignored with an audit entry instead of failing the
    /// workflow task — which would wedge the workflow, since the signal stays in its history.
    fn parse_signal<T: serde::de::DeserializeOwned>(
        &mut self,
        now: i64,
        name: &str,
        input: serde_json::Value,
    ) -> Option<T> {
        match serde_json::from_value::<T>(input) {
            Ok(v) => Some(v),
            Err(e) => {
                self.record(
                    now,
                    "unknown",
                    &format!("{name}-ignored"),
                    format!("malformed {name} signal: {e}"),
                );
                None
            }
        }
    }

    fn apply_decision(&mut self, now: i64, d: &ApprovalDecision, approve: bool) -> Result<String, String> {
        let action = if approve { "approve" } else { "reject" };
        let check = decisions::check_decision(
            self.policy(),
            self.stage,
            self.revision,
            &self.requirements,
            &d.approver_id,
            d.role(),
            d.revision,
        );
        if let Err(why) = check {
            self.record(now, &d.approver_id, &format!("{action}-refused"), why.clone());
            return Err(why);
        }
        let role = role_name(d.role());
        self.record(now, &d.approver_id, action, format!("as {role}: {}", d.comment));
        if approve {
            for r in self.requirements.iter_mut().filter(|r| r.role() == d.role()) {
                r.approved_by = d.approver_id.clone();
                r.approved_at = pb_ts(now);
            }
            let pending = self.pending_roles();
            Ok(if pending.is_empty() {
                format!("approved as {role}; all approvals given")
            } else {
                format!("approved as {role}; still pending: {}", pending.join(", "))
            })
        } else {
            self.rejection = Some(d.clone());
            Ok(format!("rejected as {role}"))
        }
    }

    fn apply_change_request(&mut self, now: i64, c: &ChangeRequest) -> Result<String, String> {
        let refuse = |s: &mut Self, why: String| {
            s.record(now, &c.approver_id, "request-changes-refused", why.clone());
            Err(why)
        };
        if let Err(why) = decisions::check_decision(
            self.policy(),
            self.stage,
            self.revision,
            &self.requirements,
            &c.approver_id,
            c.role(),
            c.revision,
        )
        .or_else(|e| if e.contains("already given") { Ok(()) } else { Err(e) })
        {
            return refuse(self, why);
        }
        let Some(amended) = &c.amended_spec else {
            return refuse(self, "amended_spec is required".to_owned());
        };
        if amended.promotion_id != self.spec.promotion_id {
            return refuse(
                self,
                format!(
                    "amended_spec.promotion_id {:?} must stay {:?}",
                    amended.promotion_id, self.spec.promotion_id
                ),
            );
        }
        if let Err(problems) = plan::validate_spec(amended, now) {
            return refuse(self, format!("the amended spec is invalid:\n{}", plan::describe(&problems)));
        }
        self.record(
            now,
            &c.approver_id,
            "request-changes",
            format!("as {}: {}", role_name(c.role()), c.comment),
        );
        self.change_request = Some(c.clone());
        Ok(format!(
            "changes requested on revision {}; revision {} will be assessed",
            self.revision,
            self.revision + 1
        ))
    }

    fn apply_choice(&mut self, now: i64, c: &RemediationChoice) -> Result<String, String> {
        let refuse = |s: &mut Self, why: String| {
            s.record(now, &c.chosen_by, "choose-remediation-refused", why.clone());
            Err(why)
        };
        if self.stage != Stage::Remediation {
            return refuse(
                self,
                format!("the promotion is in stage {}, not awaiting remediation", stage_name(self.stage)),
            );
        }
        if c.chosen_by.trim().is_empty() {
            return refuse(self, "chosen_by is required".to_owned());
        }
        let Some(opt) = self
            .remediation_options
            .iter()
            .find(|o| o.option_id == c.option_id && o.region_id == c.region_id)
        else {
            let ids: Vec<&str> = self
                .remediation_options
                .iter()
                .filter(|o| o.region_id == c.region_id)
                .map(|o| o.option_id.as_str())
                .collect();
            return refuse(
                self,
                format!(
                    "{:?} is not an option for region {:?}; options: {}",
                    c.option_id,
                    c.region_id,
                    ids.join(", ")
                ),
            );
        };
        let desc = opt.description.clone();
        self.record(
            now,
            &c.chosen_by,
            "remediation-chosen",
            format!("{}: {desc} ({})", c.option_id, c.comment),
        );
        self.remediation_choices.insert(c.region_id.clone(), (c.option_id.clone(), c.chosen_by.clone()));
        Ok(format!("{} chosen for {}", c.option_id, c.region_id))
    }

    fn apply_operator(&mut self, now: i64, action: &str, a: &OperatorAction) -> Result<String, String> {
        if a.operator_id.trim().is_empty() {
            self.record(now, "unknown", &format!("{action}-refused"), "operator_id is required".into());
            return Err("operator_id is required".into());
        }
        if self.stage == Stage::Done {
            let why = format!("the promotion has ended ({})", self.outcome.as_str_name());
            self.record(now, &a.operator_id, &format!("{action}-refused"), why.clone());
            return Err(why);
        }
        // Cancel: operations or merchandising (the offer's owner); pause/resume: operations.
        let allowed: &[Role] =
            if action == "cancel" { &[Role::Operations, Role::Merchandising] } else { &[Role::Operations] };
        let why = match self.policy.as_ref().map(|p| p.roles_of(&a.operator_id)) {
            None => Some("the promotion is still loading its policy; try again in a moment".to_owned()),
            Some(None) => Some(format!("operator {:?} is not in the approver directory", a.operator_id)),
            Some(Some(roles)) if !roles.iter().any(|r| allowed.contains(r)) => Some(format!(
                "operator {:?} needs the {} role to {action}",
                a.operator_id,
                allowed.iter().map(|r| role_name(*r)).collect::<Vec<_>>().join(" or ")
            )),
            Some(Some(_)) => None,
        };
        if let Some(why) = why {
            self.record(now, &a.operator_id, &format!("{action}-refused"), why.clone());
            return Err(why);
        }
        match action {
            "cancel" => self.cancel = Some(a.clone()),
            "pause" => self.paused = true,
            _ => self.paused = false,
        }
        self.record(now, &a.operator_id, action, a.reason.clone());
        Ok(format!("{action} accepted"))
    }

    fn apply_override(&mut self, now: i64, o: &GateOverride) -> Result<String, String> {
        let holds_ops = self
            .policy
            .as_ref()
            .and_then(|p| p.roles_of(&o.operator_id))
            .is_some_and(|roles| roles.contains(&Role::Operations));
        let why = if !holds_ops {
            Some(format!("operator {:?} does not hold the OPERATIONS role", o.operator_id))
        } else if o.reason.trim().is_empty() {
            Some("reason is required for an override".to_owned())
        } else if !matches!(self.stage, Stage::Publishing | Stage::LaunchGate | Stage::Active) {
            Some(format!("there is no acknowledgment gate to override in stage {}", stage_name(self.stage)))
        } else if !o.region_id.is_empty() && !self.readiness.contains_key(&o.region_id) {
            Some(format!("region {:?} is not in this promotion", o.region_id))
        } else {
            None
        };
        if let Some(why) = why {
            self.record(now, &o.operator_id, "override-refused", why.clone());
            return Err(why);
        }
        let scope = if o.region_id.is_empty() { "all regions".to_owned() } else { o.region_id.clone() };
        self.record(now, &o.operator_id, "override", format!("gate opened for {scope}: {}", o.reason));
        self.overrides.insert(o.region_id.clone());
        self.resolve(
            now,
            |e| {
                e.kind() == ExceptionKind::ChannelSync
                    && (o.region_id.is_empty() || e.region_id == o.region_id)
            },
            &format!("overridden by {}", o.operator_id),
        );
        Ok(format!("gate opened for {scope}"))
    }

    fn overridden(&self, region: &str) -> bool {
        self.overrides.contains("") || self.overrides.contains(region)
    }

    /// Whether every channel target a region depends on has acknowledged the activation (or an
    /// operator overrode the gate). No region activates otherwise.
    fn acknowledged(&self, region: &str) -> bool {
        self.overridden(region)
            || self
                .publications
                .iter()
                .filter(|p| p.kind == PublicationKind::Activate as i32)
                .filter(|p| region_of_target(&p.target).is_none_or(|r| r == region))
                .all(|p| p.acknowledged_at_ms.is_some())
    }

    fn refresh_ack_readiness(&mut self) {
        let pubs = self.publications.clone();
        for r in self.readiness.values_mut() {
            let mine = pubs
                .iter()
                .filter(|p| p.kind == PublicationKind::Activate as i32)
                .filter(|p| region_of_target(&p.target).is_none_or(|x| x == r.region_id));
            r.acknowledged.clear();
            r.awaiting_ack.clear();
            for p in mine {
                if p.acknowledged_at_ms.is_some() {
                    r.acknowledged.push(p.target.channel);
                } else {
                    r.awaiting_ack.push(p.target.channel);
                }
            }
        }
    }
}

#[workflow_methods]
impl PromotionWorkflow {
    /// Starts from the planner's spec (proto3 JSON `promo.v1.PromotionSpec`).
    #[init]
    pub fn new(_ctx: &WorkflowContextView, spec: PromotionSpec) -> Self {
        Self {
            spec,
            revision: 1,
            stage: Stage::Intake,
            outcome: Outcome::Unspecified,
            outcome_reason: String::new(),
            timeline: Vec::new(),
            policy: None,
            plan: None,
            regions: Vec::new(),
            assessment: None,
            requirements: Vec::new(),
            exceptions: Vec::new(),
            readiness: BTreeMap::new(),
            audit: Vec::new(),
            adjustments: Adjustments::default(),
            remediation_options: Vec::new(),
            remediation_choices: BTreeMap::new(),
            change_request: None,
            rejection: None,
            cancel: None,
            paused: false,
            overrides: BTreeSet::new(),
            price_change_id: None,
            orders: Vec::new(),
            publications: Vec::new(),
            on_time_acks: (0, 0),
            started_at: 0,
        }
    }

    /// The lifecycle. An unrecoverable failure (a business refusal from the systems, or an
    /// activity that exhausted its retries) ends the promotion as FAILED with the reason.
    #[run(name = "PromotionWorkflow")]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<PromotionResult> {
        let r = lifecycle(ctx).await;
        if let Err(WorkflowTermination::Failed(e)) = &r
            && ctx.state(|s| s.stage != Stage::Done)
        {
            finish(ctx, Outcome::Failed, &e.to_string());
        }
        r
    }

    #[signal(name = "approve")]
    pub fn approve_signal(&mut self, ctx: &mut SyncWorkflowContext<Self>, input: serde_json::Value) {
        if let Some(d) = self.parse_signal::<ApprovalDecision>(now_sync(ctx), "approve", input) {
            let _ = self.apply_decision(now_sync(ctx), &d, true);
        }
        self.publish_state(ctx);
    }

    #[signal(name = "reject")]
    pub fn reject_signal(&mut self, ctx: &mut SyncWorkflowContext<Self>, input: serde_json::Value) {
        if let Some(d) = self.parse_signal::<ApprovalDecision>(now_sync(ctx), "reject", input) {
            let _ = self.apply_decision(now_sync(ctx), &d, false);
        }
        self.publish_state(ctx);
    }

    #[signal(name = "request_changes")]
    pub fn request_changes_signal(&mut self, ctx: &mut SyncWorkflowContext<Self>, input: serde_json::Value) {
        if let Some(c) = self.parse_signal::<ChangeRequest>(now_sync(ctx), "request_changes", input) {
            let _ = self.apply_change_request(now_sync(ctx), &c);
        }
        self.publish_state(ctx);
    }

    #[signal(name = "choose_remediation")]
    pub fn choose_remediation_signal(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        input: serde_json::Value,
    ) {
        if let Some(c) = self.parse_signal::<RemediationChoice>(now_sync(ctx), "choose_remediation", input) {
            let _ = self.apply_choice(now_sync(ctx), &c);
        }
        self.publish_state(ctx);
    }

    #[signal(name = "cancel")]
    pub fn cancel_signal(&mut self, ctx: &mut SyncWorkflowContext<Self>, input: serde_json::Value) {
        if let Some(a) = self.parse_signal::<OperatorAction>(now_sync(ctx), "cancel", input) {
            let _ = self.apply_operator(now_sync(ctx), "cancel", &a);
        }
        self.publish_state(ctx);
    }

    #[signal(name = "pause")]
    pub fn pause_signal(&mut self, ctx: &mut SyncWorkflowContext<Self>, input: serde_json::Value) {
        if let Some(a) = self.parse_signal::<OperatorAction>(now_sync(ctx), "pause", input) {
            let _ = self.apply_operator(now_sync(ctx), "pause", &a);
        }
        self.publish_state(ctx);
    }

    #[signal(name = "resume")]
    pub fn resume_signal(&mut self, ctx: &mut SyncWorkflowContext<Self>, input: serde_json::Value) {
        if let Some(a) = self.parse_signal::<OperatorAction>(now_sync(ctx), "resume", input) {
            let _ = self.apply_operator(now_sync(ctx), "resume", &a);
        }
        self.publish_state(ctx);
    }

    #[signal(name = "override")]
    pub fn override_signal(&mut self, ctx: &mut SyncWorkflowContext<Self>, input: serde_json::Value) {
        if let Some(o) = self.parse_signal::<GateOverride>(now_sync(ctx), "override", input) {
            let _ = self.apply_override(now_sync(ctx), &o);
        }
        self.publish_state(ctx);
    }

    #[update_validator(approve)]
    fn validate_approve(
        &self,
        _ctx: &WorkflowContextView,
        input: &serde_json::Value,
    ) -> Result<(), HandlerError> {
        validate_decision_shape(&decode::<ApprovalDecision>("approve", input)?)
    }

    /// Approve; answers at once with accepted or refused (and why). Every answer is audited.
    #[update(name = "approve")]
    pub fn approve(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        input: serde_json::Value,
    ) -> Result<ActionResult, HandlerError> {
        let d: ApprovalDecision = decode("approve", &input)?;
        let r = self.apply_decision(now_sync(ctx), &d, true);
        self.publish_state(ctx);
        Ok(ActionResult { accepted: true, message: r?, revision: self.revision })
    }

    #[update_validator(reject)]
    fn validate_reject(
        &self,
        _ctx: &WorkflowContextView,
        input: &serde_json::Value,
    ) -> Result<(), HandlerError> {
        validate_decision_shape(&decode::<ApprovalDecision>("reject", input)?)
    }

    /// Reject; ends the promotion as REJECTED.
    #[update(name = "reject")]
    pub fn reject(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        input: serde_json::Value,
    ) -> Result<ActionResult, HandlerError> {
        let d: ApprovalDecision = decode("reject", &input)?;
        let r = self.apply_decision(now_sync(ctx), &d, false);
        self.publish_state(ctx);
        Ok(ActionResult { accepted: true, message: r?, revision: self.revision })
    }

    #[update_validator(request_changes)]
    fn validate_request_changes(
        &self,
        _ctx: &WorkflowContextView,
        input: &serde_json::Value,
    ) -> Result<(), HandlerError> {
        decode::<ChangeRequest>("request_changes", input).map(drop)
    }

    /// Request changes with an amended spec: a new revision is assessed and approved afresh.
    #[update(name = "request_changes")]
    pub fn request_changes(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        input: serde_json::Value,
    ) -> Result<ActionResult, HandlerError> {
        let c: ChangeRequest = decode("request_changes", &input)?;
        let r = self.apply_change_request(now_sync(ctx), &c);
        self.publish_state(ctx);
        Ok(ActionResult { accepted: true, message: r?, revision: self.revision })
    }

    #[update_validator(choose_remediation)]
    fn validate_choose_remediation(
        &self,
        _ctx: &WorkflowContextView,
        input: &serde_json::Value,
    ) -> Result<(), HandlerError> {
        decode::<RemediationChoice>("choose_remediation", input).map(drop)
    }

    /// Choose a remediation option for a failing region.
    #[update(name = "choose_remediation")]
    pub fn choose_remediation(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        input: serde_json::Value,
    ) -> Result<ActionResult, HandlerError> {
        let c: RemediationChoice = decode("choose_remediation", &input)?;
        let r = self.apply_choice(now_sync(ctx), &c);
        self.publish_state(ctx);
        Ok(ActionResult { accepted: true, message: r?, revision: self.revision })
    }

    #[update_validator(cancel)]
    fn validate_cancel(
        &self,
        _ctx: &WorkflowContextView,
        input: &serde_json::Value,
    ) -> Result<(), HandlerError> {
        decode::<OperatorAction>("cancel", input).map(drop)
    }

    /// Cancel: everything done so far is compensated in reverse order.
    #[update(name = "cancel")]
    pub fn cancel(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        input: serde_json::Value,
    ) -> Result<ActionResult, HandlerError> {
        let a: OperatorAction = decode("cancel", &input)?;
        let r = self.apply_operator(now_sync(ctx), "cancel", &a);
        self.publish_state(ctx);
        Ok(ActionResult { accepted: true, message: r?, revision: self.revision })
    }

    #[update_validator(pause)]
    fn validate_pause(
        &self,
        _ctx: &WorkflowContextView,
        input: &serde_json::Value,
    ) -> Result<(), HandlerError> {
        decode::<OperatorAction>("pause", input).map(drop)
    }

    /// Pause: no region activates and monitoring stops until resumed.
    #[update(name = "pause")]
    pub fn pause(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        input: serde_json::Value,
    ) -> Result<ActionResult, HandlerError> {
        let a: OperatorAction = decode("pause", &input)?;
        let r = self.apply_operator(now_sync(ctx), "pause", &a);
        self.publish_state(ctx);
        Ok(ActionResult { accepted: true, message: r?, revision: self.revision })
    }

    #[update_validator(resume)]
    fn validate_resume(
        &self,
        _ctx: &WorkflowContextView,
        input: &serde_json::Value,
    ) -> Result<(), HandlerError> {
        decode::<OperatorAction>("resume", input).map(drop)
    }

    /// Resume after a pause.
    #[update(name = "resume")]
    pub fn resume(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        input: serde_json::Value,
    ) -> Result<ActionResult, HandlerError> {
        let a: OperatorAction = decode("resume", &input)?;
        let r = self.apply_operator(now_sync(ctx), "resume", &a);
        self.publish_state(ctx);
        Ok(ActionResult { accepted: true, message: r?, revision: self.revision })
    }

    #[update_validator(override_gate)]
    fn validate_override_gate(
        &self,
        _ctx: &WorkflowContextView,
        input: &serde_json::Value,
    ) -> Result<(), HandlerError> {
        decode::<GateOverride>("override", input).map(drop)
    }

    /// Open a stuck gate (missing acknowledgments) for a region or the whole promotion.
    #[update(name = "override")]
    pub fn override_gate(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        input: serde_json::Value,
    ) -> Result<ActionResult, HandlerError> {
        let o: GateOverride = decode("override", &input)?;
        let r = self.apply_override(now_sync(ctx), &o);
        self.publish_state(ctx);
        Ok(ActionResult { accepted: true, message: r?, revision: self.revision })
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

    /// What this promotion occupies (SKU × location × dates), for other promotions' collision checks.
    #[query]
    /// Before intake has produced a plan, the spec itself answers (if its shape is valid), so
    /// two promotions starting at the same moment still see each other.
    pub fn footprint(&self, _ctx: &WorkflowContextView) -> Option<plan::Footprint> {
        if self.stage == Stage::Done {
            return None;
        }
        match &self.plan {
            Some(p) => Some(plan::Footprint::of(p)),
            None => plan::validate_spec(&self.spec, i64::MIN).ok().map(|p| plan::Footprint::of(&p)),
        }
    }
}

/// The lifecycle proper (see [`PromotionWorkflow::run`]).
async fn lifecycle(ctx: &mut WorkflowContext<PromotionWorkflow>) -> WorkflowResult<PromotionResult> {
    let promotion_id = ctx.state(|s| s.spec.promotion_id.clone());
    // Regions are visible from the first task so that collision checks of promotions starting at
    // the same time find this one; intake refines them (regions of individual stores).
    let regions = ctx.state(|s| s.spec.regions.clone());
    ctx.upsert_search_attributes([
        api::PROMOTION_ID.value_set(promotion_id.clone()),
        api::PROMOTION_REGIONS.value_set(regions),
    ]);
    let t0 = now(ctx);
    ctx.state_mut(|s| s.started_at = t0);
    enter(ctx, Stage::Intake);
    let policy =
        ctx.execute_activity(A::load_policy, (), opts(30, "load the promotion policy".into())).await?;
    ctx.state_mut(|s| s.policy = Some(policy.clone()));
    let thresholds = policy.thresholds().map_err(ApplicationFailure::non_retryable)?;

    // Intake → assessment → remediation → approval, once per revision.
    loop {
        let (spec, revision) = ctx.state(|s| (s.spec.clone(), s.revision));
        if revision > 1 {
            enter(ctx, Stage::Intake);
        }
        let intake = ctx
            .execute_activity(
                A::validate_spec,
                IntakeInput { spec, now: now(ctx), approval_lead_secs: 0 },
                opts(120, format!("validate revision {revision}: master data and collisions")),
            )
            .await?;
        let Some(plan) = intake.plan.filter(|_| intake.problems.is_empty()) else {
            let text = format!(
                "promotion {promotion_id} revision {revision} is invalid ({} problems):\n{}",
                intake.problems.len(),
                plan::describe(&intake.problems)
            );
            finish(ctx, Outcome::Failed, &text);
            return Err(ApplicationFailure::builder(text)
                .type_name("InvalidSpec".to_owned())
                .non_retryable(true)
                .build()
                .into());
        };
        let launch = plan.starts_at;
        ctx.upsert_search_attributes([
            api::PROMOTION_REGIONS.value_set(intake.regions.iter().map(|r| r.region_id.clone()).collect()),
            api::LAUNCH_AT.value_set(SaTimestamp::new(launch, 0)),
        ]);
        ctx.state_mut(|s| {
            s.plan = Some(plan.clone());
            s.regions = intake.regions.clone();
            s.adjustments = Adjustments::default();
            s.remediation_choices.clear();
            s.readiness = intake
                .regions
                .iter()
                .map(|r| {
                    (
                        r.region_id.clone(),
                        RegionReadiness {
                            region_id: r.region_id.clone(),
                            launch_at: pb_ts(launch),
                            ..Default::default()
                        },
                    )
                })
                .collect();
        });

        // Assessment, and remediation where a region fails (at most one round of choices).
        let mut remediated = false;
        let assessment = loop {
            enter(ctx, Stage::Assessment);
            let assessment = assess(ctx, &plan, revision, &policy, &[]).await?;
            let options = assessment.remediation_options.clone();
            let failing: Vec<String> =
                assessment.regions.iter().filter(|r| !r.passes).map(|r| r.region_id.clone()).collect();
            let t = now(ctx);
            ctx.state_mut(|s| {
                s.resolve(
                    t,
                    |e| {
                        e.exception_id.ends_with(&format!("-r{revision}"))
                            && e.kind() != ExceptionKind::ChannelSync
                    },
                    "re-assessed",
                );
                for e in decisions::exceptions_from_assessment(&assessment, &format!("r{revision}")) {
                    s.raise(t, e);
                }
                for r in &assessment.regions {
                    let delayed = s.adjustments.delays.get(&r.region_id).copied();
                    if let Some(x) = s.readiness.get_mut(&r.region_id) {
                        x.fill_rate = r.fill_rate.clone();
                        x.state = match (r.passes, delayed) {
                            (_, Some(_)) => RegionState::Delayed,
                            (true, None) => RegionState::Ready,
                            (false, None) => RegionState::AtRisk,
                        } as i32;
                        if let Some(d) = delayed {
                            x.launch_at = pb_ts(d);
                        } else if r.passes {
                            x.note.clear();
                        } else {
                            x.note = format!("{} SKUs short", r.short_sku_count);
                        }
                    }
                }
                s.assessment = Some(assessment.clone());
            });
            if failing.is_empty() || remediated {
                break assessment;
            }
            // Remediation: policy may apply small fixes; the planner chooses the rest.
            enter(ctx, Stage::Remediation);
            let forecast_revenue =
                assessment.margin.as_ref().map(|m| m.forecast_revenue.clone()).unwrap_or_default();
            let auto = decisions::auto_remediation(&options, &forecast_revenue, &thresholds);
            ctx.state_mut(|s| {
                s.remediation_options = options.clone();
                for (region, option) in &auto {
                    s.record(t, "policy", "remediation-auto-applied", format!("{option} for {region}"));
                    s.remediation_choices.insert(region.clone(), (option.clone(), "policy".into()));
                }
            });
            publish(ctx);
            let deadline = approval_deadline(ctx, &policy, launch);
            let mut expiry = pin!(ctx.timer(timer(deadline, "remediation deadline".into())));
            let all_chosen = {
                let failing = failing.clone();
                move |s: &PromotionWorkflow| {
                    s.cancel.is_some() || failing.iter().all(|r| s.remediation_choices.contains_key(r))
                }
            };
            let chosen = select! {
                _ = ctx.wait_condition(all_chosen) => true,
                _ = expiry.as_mut() => false,
            };
            if chosen {
                expiry.cancel();
            }
            if ctx.state(|s| s.cancel.is_some()) {
                return cancel(ctx).await;
            }
            if !chosen {
                return expire(ctx, "no remediation chosen before the approval deadline");
            }
            let t = now(ctx);
            ctx.state_mut(|s| {
                let choices = s.remediation_choices.clone();
                for (region, (option_id, who)) in &choices {
                    if let Some(o) = s.remediation_options.iter().find(|o| &o.option_id == option_id).cloned()
                    {
                        apply_option(&mut s.adjustments, &o);
                        if let Some(r) = s.readiness.get_mut(region) {
                            r.note = o.description.clone();
                            if let Some(d) = o.delay_until.as_ref() {
                                r.launch_at = pb_ts(d.seconds);
                                r.state = RegionState::Delayed as i32;
                            }
                        }
                        s.resolve(
                            t,
                            |e| e.kind() == ExceptionKind::StockRisk && &e.region_id == region,
                            &format!("remediated: {option_id} (by {who})"),
                        );
                    }
                }
            });
            remediated = true;
        };

        // Approval.
        enter(ctx, Stage::Approval);
        let t = now(ctx);
        ctx.state_mut(|s| {
            s.requirements = decisions::required_approvals(&assessment, remediated)
                .into_iter()
                .map(|(role, reason)| ApprovalRequirement { role: role as i32, reason, ..Default::default() })
                .collect();
            let roles = s.pending_roles().join(", ");
            s.record(t, "policy", "approvals-required", roles);
        });
        publish(ctx);
        match await_approvals(ctx, &policy, launch).await? {
            ApprovalEnd::Approved => break,
            ApprovalEnd::Rejected(why) => {
                finish(ctx, Outcome::Rejected, &why);
                return Ok(result(ctx, None));
            }
            ApprovalEnd::Expired => {
                return expire(ctx, "approvals were not complete before the approval deadline");
            }
            ApprovalEnd::Cancelled => return cancel(ctx).await,
            ApprovalEnd::ChangesRequested(c) => {
                let t = now(ctx);
                ctx.state_mut(|s| {
                    s.revision += 1;
                    s.spec = c.amended_spec.clone().unwrap_or_default();
                    s.requirements.clear();
                    s.change_request = None;
                    s.record(
                        t,
                        "system",
                        "new-revision",
                        format!("revision {} from {}'s change request", s.revision, c.approver_id),
                    );
                });
                continue;
            }
        }
    }

    // Scheduling: stage prices, order stock for regions that need positioning.
    enter(ctx, Stage::Scheduling);
    let (plan, revision, adjustments, regions) = ctx.state(|s| {
        (
            s.plan.clone().unwrap_or_else(|| unreachable!()),
            s.revision,
            s.adjustments.clone(),
            s.regions.clone(),
        )
    });
    let region_ids: Vec<String> = regions.iter().map(|r| r.region_id.clone()).collect();
    let price_change_id = ctx
        .execute_activity(
            A::stage_prices,
            StagePricesInput {
                revision,
                plan: plan.clone(),
                regions: region_ids.clone(),
                adjustments: adjustments.clone(),
            },
            opts(60, format!("stage {} promo prices in the ERP", plan.lines.len())),
        )
        .await?;
    ctx.state_mut(|s| s.price_change_id = Some(price_change_id.clone()));
    let orders = transfer_orders(ctx, &regions);
    if !orders.is_empty() {
        let n = orders.len();
        let ids = ctx
            .execute_activity(
                A::create_transfer_orders,
                OrdersInput { promotion_id: plan.promotion_id.clone(), revision, orders },
                opts(60, format!("order stock for {n} regions")),
            )
            .await?;
        ctx.state_mut(|s| s.orders = ids);
    }
    if ctx.state(|s| s.cancel.is_some()) {
        return cancel(ctx).await;
    }

    // Publishing: every channel target, then wait for acknowledgments.
    enter(ctx, Stage::Publishing);
    let targets = channel_targets(&plan, &region_ids);
    let futs: Vec<_> = targets
        .iter()
        .map(|t| {
            ctx.execute_activity(
                A::publish,
                PublishInput {
                    promotion_id: plan.promotion_id.clone(),
                    revision,
                    target: t.clone(),
                    kind: PublicationKind::Activate as i32,
                    price_change_id: price_change_id.clone(),
                    effective: (plan.starts_at, plan.ends_at),
                    line_count: plan.lines.len() as u32,
                },
                opts(PUBLISH_TIMEOUT_SECS, format!("publish to {} {}", channel_name(t.channel), t.region_id)),
            )
        })
        .collect();
    let mut published = Vec::with_capacity(futs.len());
    for r in join_all(futs).await {
        published.push(r?);
    }
    ctx.state_mut(|s| s.publications = published);
    let ack_deadline = policy.scaled(policy.durations.ack_deadline.0);
    let mut round = 0;
    loop {
        let pending: Vec<PublicationRef> = ctx
            .state(|s| s.publications.iter().filter(|p| p.acknowledged_at_ms.is_none()).cloned().collect());
        if pending.is_empty() {
            break;
        }
        let acked = ctx
            .execute_activity(
                A::await_acknowledgments,
                AwaitAcksInput { publications: pending.clone(), timeout_ms: ack_deadline.as_millis() as u64 },
                heartbeat_opts(
                    ack_deadline,
                    format!("wait for {} acknowledgments (round {})", pending.len(), round + 1),
                ),
            )
            .await?;
        let t = now(ctx);
        let first_round = round == 0;
        ctx.state_mut(|s| {
            merge_acks(&mut s.publications, &acked);
            if first_round {
                let on_time = s.publications.iter().filter(|p| p.acknowledged_at_ms.is_some()).count() as u32;
                s.on_time_acks = (on_time, s.publications.len() as u32);
            }
            for p in s.publications.clone().iter().filter(|p| p.acknowledged_at_ms.is_none()) {
                let region = p.target.region_id.clone();
                let revenue_at_risk = s
                    .assessment
                    .as_ref()
                    .and_then(|a| a.regions.iter().find(|r| r.region_id == region))
                    .map(|r| r.revenue_at_risk.clone())
                    .unwrap_or_else(|| "0".into());
                s.raise(
                    t,
                    PromotionException {
                        exception_id: format!(
                            "channel-{}-{}-r{}",
                            channel_name(p.target.channel),
                            if region.is_empty() { "national" } else { &region },
                            s.revision
                        ),
                        kind: ExceptionKind::ChannelSync as i32,
                        severity: Severity::High as i32,
                        owner_role: Role::Operations as i32,
                        revenue_at_risk,
                        status: ExceptionStatus::Open as i32,
                        region_id: region.clone(),
                        detail: format!(
                            "{} publication {} not acknowledged by the deadline",
                            channel_name(p.target.channel),
                            p.publication_id
                        ),
                        ..Default::default()
                    },
                );
            }
            s.refresh_ack_readiness();
        });
        publish(ctx);
        round += 1;
        if round > policy.ack_retries {
            break;
        }
    }
    // After the retries, the policy decides: delay the late regions or hold the launch.
    let t = now(ctx);
    ctx.state_mut(|s| {
        let late: Vec<String> = s.readiness.keys().filter(|r| !s.acknowledged(r)).cloned().collect();
        for r in &late {
            let action = match s.policy().late_ack_action {
                LateAckAction::DelayRegion => "launch delayed until its channels acknowledge",
                LateAckAction::HoldLaunch => "launch held until every channel acknowledges",
            };
            if let Some(x) = s.readiness.get_mut(r) {
                x.state = RegionState::Delayed as i32;
                x.note = format!("awaiting acknowledgment: {action}");
            }
            s.record(t, "policy", "late-acknowledgment", format!("{r}: {action}"));
        }
    });

    // Launch gate and the active window.
    let report = launch_and_run(ctx, &plan, &policy).await?;
    let Some(report) = report else {
        return cancel(ctx).await;
    };
    finish(ctx, Outcome::Completed, "");
    Ok(result(ctx, Some(report)))
}

/// Updates arrive as raw JSON: the validator parses them, so a malformed or ill-typed update is
/// refused at once (nothing is written to history) instead of failing the workflow task.
fn decode<T: serde::de::DeserializeOwned>(name: &str, input: &serde_json::Value) -> Result<T, HandlerError> {
    serde_json::from_value::<T>(input.clone()).map_err(|e| format!("malformed {name} input: {e}").into())
}

fn validate_decision_shape(d: &ApprovalDecision) -> Result<(), HandlerError> {
    if d.approver_id.trim().is_empty() {
        return Err("approver_id is required".into());
    }
    if d.role() == Role::Unspecified {
        return Err("role is required (ROLE_MERCHANDISING, ROLE_FINANCE, ROLE_SUPPLY_CHAIN)".into());
    }
    Ok(())
}

fn now(ctx: &WorkflowContext<PromotionWorkflow>) -> i64 {
    ctx.workflow_time().map_or(0, unix)
}

fn now_sync(ctx: &SyncWorkflowContext<PromotionWorkflow>) -> i64 {
    ctx.workflow_time().map_or(0, unix)
}

fn publish(ctx: &WorkflowContext<PromotionWorkflow>) {
    let (sas, details) = ctx.state(|s| {
        let open = s.open_exceptions();
        (
            [
                api::PROMOTION_STAGE.value_set(stage_name(s.stage).to_owned()),
                api::PROMOTION_RISK.value_set(decisions::risk(&open).to_owned()),
                api::PENDING_APPROVALS.value_set(if s.stage == Stage::Approval {
                    s.pending_roles()
                } else {
                    vec![]
                }),
                api::OPEN_EXCEPTIONS.value_set(open.len() as i64),
            ],
            s.details_markdown(),
        )
    });
    ctx.upsert_search_attributes(sas);
    ctx.set_current_details(details);
}

fn enter(ctx: &WorkflowContext<PromotionWorkflow>, stage: Stage) {
    let t = now(ctx);
    ctx.state_mut(|s| {
        s.stage = stage;
        s.timeline.push(StageEntry { stage: stage as i32, entered_at: pb_ts(t), revision: s.revision });
    });
    publish(ctx);
}

fn finish(ctx: &WorkflowContext<PromotionWorkflow>, outcome: Outcome, reason: &str) {
    let t = now(ctx);
    ctx.state_mut(|s| {
        s.outcome = outcome;
        s.outcome_reason = reason.to_owned();
        s.record(t, "system", "finished", format!("{} {reason}", outcome.as_str_name()));
    });
    enter(ctx, Stage::Done);
}

fn result(ctx: &WorkflowContext<PromotionWorkflow>, report: Option<PostEventReport>) -> PromotionResult {
    ctx.state(|s| PromotionResult {
        promotion_id: s.spec.promotion_id.clone(),
        outcome: s.outcome as i32,
        reason: s.outcome_reason.clone(),
        revision: s.revision,
        report,
    })
}

fn expire(ctx: &WorkflowContext<PromotionWorkflow>, why: &str) -> WorkflowResult<PromotionResult> {
    finish(ctx, Outcome::Expired, why);
    Ok(result(ctx, None))
}

/// Compensation in reverse order: withdraw publications, revert the staged price, cancel orders.
async fn cancel(ctx: &WorkflowContext<PromotionWorkflow>) -> WorkflowResult<PromotionResult> {
    let (input, who) = ctx.state(|s| {
        let a = s.cancel.clone().unwrap_or_default();
        (
            CompensateInput {
                reason: format!("cancelled by {}: {}", a.operator_id, a.reason),
                publications: s.publications.iter().rev().map(|p| p.publication_id.clone()).collect(),
                price_change_id: s.price_change_id.clone(),
                orders: s.orders.iter().rev().cloned().collect(),
            },
            a,
        )
    });
    let undone = ctx
        .execute_activity(
            A::compensate,
            input.clone(),
            opts(
                120,
                format!(
                    "compensate: withdraw {} publications, revert prices, cancel {} orders",
                    input.publications.len(),
                    input.orders.len()
                ),
            ),
        )
        .await?;
    let t = now(ctx);
    ctx.state_mut(|s| {
        s.record(
            t,
            "system",
            "compensated",
            format!(
                "withdrew {} publications, reverted prices: {}, cancelled {} orders",
                undone.withdrawn, undone.reverted, undone.cancelled
            ),
        );
        s.resolve(t, |_| true, "promotion cancelled");
    });
    finish(ctx, Outcome::Cancelled, &format!("cancelled by {}: {}", who.operator_id, who.reason));
    Ok(result(ctx, None))
}

/// Wall-clock time from now until `launch - approval_deadline_before_launch`, scaled.
fn approval_deadline(ctx: &WorkflowContext<PromotionWorkflow>, policy: &Policy, launch: i64) -> Duration {
    let deadline = launch - policy.durations.approval_deadline_before_launch.0.as_secs() as i64;
    until(ctx, policy, deadline)
}

/// Wall-clock time on the workflow's timers until business instant `at`.
fn until(ctx: &WorkflowContext<PromotionWorkflow>, policy: &Policy, at: i64) -> Duration {
    let ahead = (at - business_now(ctx, policy)).max(0) as u64;
    policy.scaled(Duration::from_secs(ahead))
}

/// Business time: runs `time_scale` times faster than the workflow clock, from the start.
fn business_now(ctx: &WorkflowContext<PromotionWorkflow>, policy: &Policy) -> i64 {
    let t0 = ctx.state(|s| s.started_at);
    t0 + (now(ctx) - t0) * i64::from(policy.time_scale)
}

/// Runs the three assessment engines in parallel and combines them.
async fn assess(
    ctx: &WorkflowContext<PromotionWorkflow>,
    plan: &Plan,
    revision: u32,
    policy: &Policy,
    only_regions: &[String],
) -> WorkflowResult<AssessmentSummary> {
    let input = AssessInput {
        revision,
        plan: plan.clone(),
        adjustments: ctx.state(|s| s.adjustments.clone()),
        min_fill_rate: policy.min_fill_rate.clone(),
        min_margin_rate: policy.min_margin_rate.clone(),
        only_regions: only_regions.to_vec(),
    };
    let n = plan.lines.len();
    let (margin, inventory, funding) = join!(
        ctx.execute_activity(
            A::assess_margin,
            input.clone(),
            heartbeat_opts(Duration::from_secs(300), format!("margin & compliance of {n} lines"))
        ),
        ctx.execute_activity(
            A::assess_inventory,
            input.clone(),
            heartbeat_opts(Duration::from_secs(300), format!("inventory alignment of {n} SKUs per store"))
        ),
        ctx.execute_activity(
            A::assess_funding,
            input.clone(),
            heartbeat_opts(Duration::from_secs(300), format!("supplier funding of {n} lines"))
        ),
    );
    let InventoryAssessment { regions, options, positions_read } = inventory?;
    Ok(AssessmentSummary {
        revision,
        margin: Some(margin?),
        regions,
        funding: Some(funding?),
        remediation_options: options,
        positions_read,
    })
}

fn apply_option(adj: &mut Adjustments, o: &RemediationOption) {
    match o.kind.as_str() {
        "delay" => {
            if let Some(d) = &o.delay_until {
                adj.delays.insert(o.region_id.clone(), d.seconds);
            }
        }
        "drop-short" => {
            adj.dropped.entry(o.region_id.clone()).or_default().extend(o.skus.iter().cloned());
        }
        "substitute" => {
            let m = adj.substitutes.entry(o.region_id.clone()).or_default();
            for (a, b) in o.skus.iter().zip(&o.substitutes) {
                m.insert(a.clone(), b.clone());
            }
        }
        _ => {}
    }
}

/// Waits for every required approval, a rejection, a change request, a cancel, or the deadline,
/// with reminder and escalation timers on the way.
async fn await_approvals(
    ctx: &WorkflowContext<PromotionWorkflow>,
    policy: &Policy,
    launch: i64,
) -> WorkflowResult<ApprovalEnd> {
    let deadline = approval_deadline(ctx, policy, launch);
    let d = &policy.durations;
    let mut expiry = pin!(ctx.timer(timer(deadline, "approval deadline".into())));
    let mut reminder = pin!(ctx.timer(timer(
        policy.scaled(d.approval_reminder.0),
        format!("approval reminder ({})", d.approval_reminder)
    )));
    let mut escalation = pin!(ctx.timer(timer(
        policy.scaled(d.approval_escalation.0),
        format!("approval escalation ({})", d.approval_escalation)
    )));
    let settled = |s: &PromotionWorkflow| {
        s.cancel.is_some()
            || s.rejection.is_some()
            || s.change_request.is_some()
            || s.pending_roles().is_empty()
    };
    let end = loop {
        select! {
            _ = ctx.wait_condition(settled) => break None,
            _ = expiry.as_mut() => break Some(ApprovalEnd::Expired),
            _ = reminder.as_mut() => {
                let t = now(ctx);
                ctx.state_mut(|s| {
                    let pending = s.pending_roles().join(", ");
                    s.record(t, "system", "approval-reminder", format!("still waiting for {pending}"));
                });
                publish(ctx);
            },
            _ = escalation.as_mut() => {
                let t = now(ctx);
                ctx.state_mut(|s| {
                    let pending = s.pending_roles().join(", ");
                    s.raise(t, PromotionException {
                        exception_id: format!("approval-sla-r{}", s.revision),
                        kind: ExceptionKind::ApprovalSla as i32,
                        severity: Severity::Medium as i32,
                        owner_role: Role::Merchandising as i32,
                        revenue_at_risk: s.assessment.as_ref().and_then(|a| a.margin.as_ref()).map(|m| m.forecast_revenue.clone()).unwrap_or_default(),
                        status: ExceptionStatus::Open as i32,
                        detail: format!("approvals overdue: waiting for {pending}"),
                        ..Default::default()
                    });
                });
                publish(ctx);
            },
        }
    };
    for t in [expiry.as_mut(), reminder.as_mut(), escalation.as_mut()] {
        t.cancel();
    }
    if let Some(end) = end {
        return Ok(end);
    }
    let t = now(ctx);
    Ok(ctx.state_mut(|s| {
        s.resolve(t, |e| e.kind() == ExceptionKind::ApprovalSla, "approvals settled");
        if s.cancel.is_some() {
            ApprovalEnd::Cancelled
        } else if let Some(r) = &s.rejection {
            ApprovalEnd::Rejected(format!(
                "rejected by {} ({}): {}",
                r.approver_id,
                role_name(r.role()),
                r.comment
            ))
        } else if let Some(c) = s.change_request.clone() {
            ApprovalEnd::ChangesRequested(Box::new(c))
        } else {
            let t2 = t;
            s.resolve(
                t2,
                |e| matches!(e.kind(), ExceptionKind::MarginErosion | ExceptionKind::FundingMissing),
                "approved by finance",
            );
            ApprovalEnd::Approved
        }
    }))
}

/// Every channel target of the plan: regional channels per region, national ones once.
fn channel_targets(plan: &Plan, regions: &[String]) -> Vec<Target> {
    let mut out = Vec::new();
    for c in &plan.channels {
        if matches!(c, Channel::Pos | Channel::StoreComms) {
            out.extend(regions.iter().map(|r| Target { channel: *c as i32, region_id: r.clone() }));
        } else {
            out.push(Target { channel: *c as i32, region_id: String::new() });
        }
    }
    out
}

fn merge_acks(into: &mut [PublicationRef], acked: &[PublicationRef]) {
    for p in into.iter_mut() {
        if let Some(a) = acked.iter().find(|a| a.publication_id == p.publication_id) {
            p.acknowledged_at_ms = p.acknowledged_at_ms.or(a.acknowledged_at_ms);
        }
    }
}

/// Transfer orders for regions whose short SKUs are not covered (from the assessment summary).
fn transfer_orders(
    ctx: &WorkflowContext<PromotionWorkflow>,
    regions: &[RegionInfo],
) -> BTreeMap<String, (String, Vec<(String, i64)>)> {
    ctx.state(|s| {
        let mut out = BTreeMap::new();
        let Some(a) = &s.assessment else { return out };
        for r in a.regions.iter().filter(|r| r.short_sku_count > 0) {
            let dropped = s.adjustments.dropped.get(&r.region_id);
            let lines: Vec<(String, i64)> = r
                .short_skus
                .iter()
                .zip(r.short_units.iter().chain(std::iter::repeat(&0)))
                .filter(|(sku, units)| **units > 0 && dropped.is_none_or(|d| !d.contains(*sku)))
                .map(|(sku, units)| (sku.clone(), *units))
                .collect();
            if let (false, Some(info)) =
                (lines.is_empty(), regions.iter().find(|x| x.region_id == r.region_id))
            {
                out.insert(r.region_id.clone(), (info.dc_id.clone(), lines));
            }
        }
        out
    })
}

/// The launch gate, the active window and close; returns the post-event report, or `None` when
/// cancelled along the way.
async fn launch_and_run(
    ctx: &WorkflowContext<PromotionWorkflow>,
    plan: &Plan,
    policy: &Policy,
) -> WorkflowResult<Option<PostEventReport>> {
    enter(ctx, Stage::LaunchGate);
    // Final readiness re-check shortly before launch: stock (with remediation) and funding.
    let recheck_at = plan.starts_at - policy.durations.final_recheck_before_launch.0.as_secs() as i64;
    if !sleep_or_cancel(ctx, until(ctx, policy, recheck_at), "wait for the final readiness re-check".into())
        .await
    {
        return Ok(None);
    }
    let revision = ctx.state(|s| s.revision);
    let recheck = assess(ctx, plan, revision, policy, &[]).await?;
    let t = now(ctx);
    ctx.state_mut(|s| {
        let failing: Vec<String> =
            recheck.regions.iter().filter(|r| !r.passes).map(|r| r.region_id.clone()).collect();
        s.record(
            t,
            "system",
            "readiness-recheck",
            if failing.is_empty() {
                "stock and funding confirmed".into()
            } else {
                format!("still short: {}", failing.join(", "))
            },
        );
    });

    let mut windows: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut next_monitor = plan.starts_at + policy.durations.monitor_every.0.as_secs().max(60) as i64;
    let ack_poll = policy.scaled(policy.durations.ack_deadline.0).max(Duration::from_secs(1));
    let mut announced = false;
    loop {
        if ctx.state(|s| s.cancel.is_some()) {
            return Ok(None);
        }
        let bnow = business_now(ctx, policy);
        // A region whose gate opens only after the window has ended does not launch: there is
        // nothing left to sell, and its sales window would end before it began.
        let window_over = bnow >= plan.ends_at && ctx.patched(NO_LAUNCH_AFTER_WINDOW);
        // Activate every region whose launch time has come and whose gate is open.
        let t = now(ctx);
        let activated = ctx.state_mut(|s| {
            let mut activated = Vec::new();
            if s.paused {
                return activated;
            }
            let ids: Vec<String> = s.readiness.keys().cloned().collect();
            for r in ids {
                let launch = s.adjustments.delays.get(&r).copied().unwrap_or(plan.starts_at);
                let state = s.readiness[&r].state();
                if matches!(state, RegionState::Active | RegionState::Closed | RegionState::Dropped)
                    || launch > bnow
                {
                    continue;
                }
                let hold = s.policy().late_ack_action == LateAckAction::HoldLaunch
                    && s.readiness.keys().any(|x| !s.acknowledged(x));
                if !s.acknowledged(&r) || (hold && !s.overridden(&r)) {
                    continue;
                }
                if window_over {
                    let x = s.readiness.get_mut(&r).expect("region exists");
                    x.note = "the window ended before the region could launch".into();
                    s.record(t, "system", "region-missed-window", r.clone());
                    continue;
                }
                // On time: at the planned instant, within a business hour — or five seconds of
                // wall time, the processing slack on a compressed clock.
                let slack = 3600.max(5 * i64::from(s.policy().time_scale));
                let x = s.readiness.get_mut(&r).expect("region exists");
                x.state = RegionState::Active as i32;
                x.activated_at = pb_ts(bnow);
                x.note = if launch == plan.starts_at && bnow - launch <= slack {
                    "launched on time".into()
                } else {
                    "launched late".into()
                };
                s.record(t, "system", "region-activated", r.clone());
                s.resolve(
                    t,
                    |e| e.kind() == ExceptionKind::ChannelSync && e.region_id == r,
                    "acknowledged; region launched",
                );
                activated.push(r);
            }
            activated
        });
        for r in &activated {
            windows.insert(r.clone(), (bnow, plan.ends_at));
        }
        if !activated.is_empty() && !announced {
            announced = true;
            enter(ctx, Stage::Active);
        } else if !activated.is_empty() {
            publish(ctx);
        }
        if bnow >= plan.ends_at {
            break;
        }
        // Wait for the next thing: a delayed launch, missing acknowledgments, monitoring, the end.
        let waiting_acks: Vec<PublicationRef> = ctx.state(|s| {
            s.publications
                .iter()
                .filter(|p| p.acknowledged_at_ms.is_none() && p.kind == PublicationKind::Activate as i32)
                .cloned()
                .collect()
        });
        let pending_launch = ctx.state(|s| {
            s.readiness
                .keys()
                .filter(|r| {
                    !matches!(
                        s.readiness[*r].state(),
                        RegionState::Active | RegionState::Closed | RegionState::Dropped
                    )
                })
                .map(|r| s.adjustments.delays.get(r).copied().unwrap_or(plan.starts_at))
                .filter(|&l| l > bnow)
                .min()
        });
        let next = [Some(plan.ends_at), pending_launch, announced.then_some(next_monitor)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(plan.ends_at);
        if !waiting_acks.is_empty() && bnow >= plan.starts_at && !ctx.state(|s| s.overrides.contains("")) {
            let timeout = until(ctx, policy, next).min(ack_poll);
            let acked = ctx
                .execute_activity(
                    A::await_acknowledgments,
                    AwaitAcksInput {
                        publications: waiting_acks.clone(),
                        timeout_ms: timeout.as_millis() as u64,
                    },
                    heartbeat_opts(timeout, format!("wait for {} late acknowledgments", waiting_acks.len())),
                )
                .await?;
            ctx.state_mut(|s| {
                merge_acks(&mut s.publications, &acked);
                s.refresh_ack_readiness();
            });
            publish(ctx);
        } else {
            let wait = until(ctx, policy, next);
            let woke = wait_or(
                ctx,
                wait,
                format!("next: {}", describe_next(next, plan, pending_launch, next_monitor)),
            )
            .await;
            if !woke {
                return Ok(None);
            }
        }
        let bnow = business_now(ctx, policy);
        if announced && bnow >= next_monitor && bnow < plan.ends_at && !ctx.state(|s| s.paused) {
            next_monitor = bnow + policy.durations.monitor_every.0.as_secs().max(60) as i64;
            let so_far: BTreeMap<String, (i64, i64)> =
                windows.iter().map(|(r, (a, _))| (r.clone(), (*a, bnow.min(plan.ends_at)))).collect();
            let input = sales_input(ctx, plan, so_far);
            let m = ctx.execute_activity(A::monitor, input, opts(120, "monitor sell-through".into())).await?;
            let t = now(ctx);
            ctx.state_mut(|s| {
                s.record(
                    t,
                    "system",
                    "monitor",
                    format!("{} units sold, sell-through {}", m.units_sold, m.sell_through),
                );
                for (r, days) in &m.stockouts {
                    s.raise(
                        t,
                        PromotionException {
                            exception_id: format!("stockout-{r}"),
                            kind: ExceptionKind::StockRisk as i32,
                            severity: Severity::Medium as i32,
                            owner_role: Role::SupplyChain as i32,
                            revenue_at_risk: "0".into(),
                            status: ExceptionStatus::Open as i32,
                            region_id: r.clone(),
                            detail: format!("{days} store-days out of stock so far"),
                            ..Default::default()
                        },
                    );
                }
            });
            publish(ctx);
        }
    }

    // Close: revert prices, mark regions closed.
    enter(ctx, Stage::Closing);
    let price_change_id = ctx.state(|s| s.price_change_id.clone());
    if let Some(pc) = price_change_id.clone() {
        ctx.execute_activity(A::revert_prices, pc, opts(60, "revert promo prices in the ERP".into())).await?;
    }
    // Versioned change (histories recorded before it have no marker and replay without it):
    // the channels get the revert too, and it must be acknowledged again (DESIGN.md §3.9).
    if ctx.patched(CLOSE_REVERTS_CHANNELS) {
        revert_channels(ctx, plan, policy, price_change_id.unwrap_or_default()).await?;
    }
    let t = now(ctx);
    ctx.state_mut(|s| {
        for r in s.readiness.values_mut() {
            if r.state() == RegionState::Active {
                r.state = RegionState::Closed as i32;
            } else {
                r.note = format!("never launched: {}", r.note);
            }
        }
        s.record(t, "system", "closed", "prices reverted".into());
    });

    enter(ctx, Stage::Analysis);
    let input = sales_input(ctx, plan, windows.clone());
    let mut report =
        ctx.execute_activity(A::post_event_analysis, input, opts(300, "post-event analysis".into())).await?;
    ctx.state(|s| {
        let mut cycle: BTreeMap<i32, u64> = BTreeMap::new();
        for w in s.timeline.windows(2) {
            let secs = (w[1].entered_at.as_ref().map_or(0, |t| t.seconds)
                - w[0].entered_at.as_ref().map_or(0, |t| t.seconds))
            .max(0) as u64;
            *cycle.entry(w[0].stage).or_default() += secs;
        }
        report.cycle_times =
            cycle.into_iter().map(|(stage, seconds)| StageCycleTime { stage, seconds }).collect();
        let (on_time, total) = s.on_time_acks;
        report.on_time_ack_rate = ratio(on_time as i64, total as i64);
        let launched: Vec<&RegionReadiness> =
            s.readiness.values().filter(|r| r.activated_at.is_some()).collect();
        let on_time_launches = launched.iter().filter(|r| r.note.contains("on time")).count();
        report.on_time_launch_rate = ratio(on_time_launches as i64, s.readiness.len() as i64);
        report.exceptions_raised = s.exceptions.len() as u32;
        for rr in report.regions.iter_mut() {
            if let Some(x) = s.readiness.get(&rr.region_id) {
                rr.launched_on_time = x.note.contains("on time");
                rr.state = x.state;
            }
        }
    });
    Ok(Some(report))
}

/// Patch id of the change that publishes the revert to every channel at close.
pub const CLOSE_REVERTS_CHANNELS: &str = "close-reverts-channels";

/// Patch id of the change that keeps a region from launching once the window has ended (before
/// it, such a region went live with a sales window ending before it began, and the sales
/// contract refused the post-event analysis). Consulted on the launch loop's last pass, once the
/// window has ended, so new runs that reach the gate carry its marker.
pub const NO_LAUNCH_AFTER_WINDOW: &str = "no-launch-after-window";

/// Publishes the revert to every target that went live (national channels, and regional ones of
/// activated regions) and waits, within the acknowledgment deadline, for the channels to confirm.
async fn revert_channels(
    ctx: &WorkflowContext<PromotionWorkflow>,
    plan: &Plan,
    policy: &Policy,
    price_change_id: String,
) -> WorkflowResult<()> {
    let (revision, targets) = ctx.state(|s| {
        let live: Vec<Target> = s
            .publications
            .iter()
            .filter(|p| p.kind == PublicationKind::Activate as i32)
            .filter(|p| {
                region_of_target(&p.target)
                    .is_none_or(|r| s.readiness.get(r).is_some_and(|x| x.activated_at.is_some()))
            })
            .map(|p| p.target.clone())
            .collect();
        (s.revision, live)
    });
    let futs: Vec<_> = targets
        .iter()
        .map(|t| {
            ctx.execute_activity(
                A::publish,
                PublishInput {
                    promotion_id: plan.promotion_id.clone(),
                    revision,
                    target: t.clone(),
                    kind: PublicationKind::Revert as i32,
                    price_change_id: price_change_id.clone(),
                    effective: (plan.starts_at, plan.ends_at),
                    line_count: plan.lines.len() as u32,
                },
                opts(PUBLISH_TIMEOUT_SECS, format!("revert on {} {}", channel_name(t.channel), t.region_id)),
            )
        })
        .collect();
    let mut reverts = Vec::with_capacity(futs.len());
    for r in join_all(futs).await {
        reverts.push(r?);
    }
    let deadline = policy.scaled(policy.durations.ack_deadline.0);
    let acked = ctx
        .execute_activity(
            A::await_acknowledgments,
            AwaitAcksInput { publications: reverts.clone(), timeout_ms: deadline.as_millis() as u64 },
            heartbeat_opts(deadline, format!("wait for {} revert acknowledgments", reverts.len())),
        )
        .await?;
    let t = now(ctx);
    ctx.state_mut(|s| {
        let confirmed = acked.iter().filter(|p| p.acknowledged_at_ms.is_some()).count();
        let missing: Vec<String> = acked
            .iter()
            .filter(|p| p.acknowledged_at_ms.is_none())
            .map(|p| format!("{} {}", channel_name(p.target.channel), p.target.region_id))
            .collect();
        s.record(
            t,
            "system",
            "channels-reverted",
            if missing.is_empty() {
                format!("{confirmed} channel targets acknowledged the revert")
            } else {
                format!("{confirmed} acknowledged; not yet: {}", missing.join(", "))
            },
        );
        s.publications.extend(acked);
    });
    Ok(())
}

fn ratio(a: i64, b: i64) -> String {
    if b == 0 {
        return "0".into();
    }
    promo_contracts::money::format_ratio(Decimal::from(a) / Decimal::from(b))
}

fn describe_next(next: i64, plan: &Plan, pending_launch: Option<i64>, next_monitor: i64) -> String {
    if next == plan.ends_at {
        "end of the window".into()
    } else if Some(next) == pending_launch {
        "launch".into()
    } else if next == next_monitor {
        "monitoring".into()
    } else {
        "next check".into()
    }
}

fn sales_input(
    ctx: &WorkflowContext<PromotionWorkflow>,
    plan: &Plan,
    windows: BTreeMap<String, (i64, i64)>,
) -> SalesInput {
    ctx.state(|s| SalesInput {
        plan: plan.clone(),
        adjustments: s.adjustments.clone(),
        windows,
        assessment: s.assessment.clone().unwrap_or_default(),
    })
}

/// Sleeps (a durable timer) unless cancelled first; false when cancelled.
async fn sleep_or_cancel(ctx: &WorkflowContext<PromotionWorkflow>, d: Duration, summary: String) -> bool {
    wait_or(ctx, d, summary).await
}

/// Waits for `d`, waking early on cancel, override, resume or an acknowledgment change; false when
/// cancelled.
async fn wait_or(ctx: &WorkflowContext<PromotionWorkflow>, d: Duration, summary: String) -> bool {
    if d.is_zero() {
        return !ctx.state(|s| s.cancel.is_some());
    }
    let (paused0, overrides0) = ctx.state(|s| (s.paused, s.overrides.len()));
    let mut t = pin!(ctx.timer(timer(d, summary)));
    let woke = select! {
        _ = ctx.wait_condition(move |s: &PromotionWorkflow| s.cancel.is_some() || s.paused != paused0 || s.overrides.len() != overrides0) => true,
        _ = t.as_mut() => false,
    };
    if woke {
        t.cancel();
    }
    !ctx.state(|s| s.cancel.is_some())
}
