//! The state of one promotion and what the outside sees of it: the `status` query, the search
//! attributes and the Web UI's current details all come from [`PromotionWorkflow::outside`],
//! published by [`super::publish::publish`] (from the run) and
//! [`PromotionWorkflow::publish_sync`] (from handlers) after every change.

use crate::{
    api::{self, Adjustments, PublicationRef, RegionInfo, Target},
    decisions::{self, role_name, stage_name},
    plan::Plan,
    policy::Policy,
    summary::channel_name,
};
use pbjson_types::Timestamp as PbTimestamp;
use promo_contracts::{promo::v1::*, retail::v1::PublicationKind};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use temporalio_common::search_attributes::SearchAttributeUpdate;
use temporalio_macros::workflow;
use temporalio_sdk::WorkflowContext;

/// The context every stage takes.
pub type Ctx = WorkflowContext<PromotionWorkflow>;

/// The state of one promotion. Everything here is a summary: the store × SKU matrix stays in the
/// systems of record and is streamed into activities. It is also what a run hands to the next
/// when it continues as new ([`super::carry`]): the fields marked `skip` are the run's own.
#[workflow]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PromotionWorkflow {
    /// The lifecycle version this run takes ([`crate::version::Version`]), read first thing.
    #[serde(skip, default = "current_version")]
    pub(crate) version: crate::version::Version,
    /// Search attributes changed since the run last upserted them (it upserts them when it next
    /// waits on the server, [`publish_pending`]).
    #[serde(skip)]
    pub(crate) attributes_pending: bool,
    /// Why the start input is not a spec, when it is not.
    pub(crate) input_error: Option<String>,
    pub(crate) spec: PromotionSpec,
    pub(crate) revision: u32,
    pub(crate) stage: Stage,
    pub(crate) outcome: Outcome,
    pub(crate) outcome_reason: String,
    pub(crate) timeline: Vec<StageEntry>,
    pub(crate) policy: Option<Policy>,
    pub(crate) plan: Option<Plan>,
    pub(crate) regions: Vec<RegionInfo>,
    pub(crate) assessment: Option<AssessmentSummary>,
    pub(crate) requirements: Vec<ApprovalRequirement>,
    pub(crate) exceptions: Vec<PromotionException>,
    /// Exceptions raised and resolved that no longer fit in `exceptions` (kept for the count).
    pub(crate) exceptions_forgotten: u32,
    pub(crate) readiness: BTreeMap<String, RegionReadiness>,
    /// Regions that went live at their planned instant (typed, for the report's KPIs).
    pub(crate) on_time: BTreeMap<String, bool>,
    /// The latest entries of the audit trail ([`AUDIT_TAIL`] at most): the whole trail goes to
    /// the process-event record, entry by entry.
    pub(crate) audit: Vec<AuditEntry>,
    /// How many entries the audit trail holds in all (the last entry's `seq`).
    pub(crate) audit_seq: u64,
    pub(crate) adjustments: Adjustments,
    pub(crate) remediation_options: Vec<RemediationOption>,
    pub(crate) remediation_choices: BTreeMap<String, (String, String)>,
    pub(crate) change_request: Option<ChangeRequest>,
    pub(crate) rejection: Option<ApprovalDecision>,
    pub(crate) cancel: Option<OperatorAction>,
    pub(crate) paused: bool,
    pub(crate) overrides: BTreeSet<String>,
    /// Regions the launch gate's final re-check holds back, and why ([`decisions::gate_holds`]);
    /// released by a remediation choice or an operator override (stock) and by finance (funding).
    pub(crate) gate_holds: BTreeMap<String, BTreeSet<decisions::Hold>>,
    /// Fingerprints of the signatures already applied ([`crate::signing::fingerprint`]), with
    /// when they were signed: a signature is good for one message. One older than the policy's
    /// signature age is forgotten (it would be refused as stale anyway), so the set stays as
    /// small as the messages of the last few minutes.
    pub(crate) used_signatures: BTreeMap<String, i64>,
    /// Prices read back from the channels: (matching the approved price, all).
    pub(crate) price_checks: (u64, u64),
    /// Mismatches found, open or corrected, in the order found.
    pub(crate) price_corrections: Vec<PriceCorrection>,
    /// This run's id.
    #[serde(skip)]
    pub(crate) run_id: String,
    /// The first run of the promotion's chain of runs (it continues as new): part of every
    /// process event's id, every idempotency key and every signed message, so that nothing of
    /// another chain under the same workflow id (a failed promotion started again) is taken for
    /// this one's.
    pub(crate) first_run_id: String,
    /// Whether the compensation's own activity found (and freed) a calendar reservation, when
    /// it ran.
    pub(crate) calendar_released: Option<bool>,
    /// Process events not yet recorded ([`super::events`]), and the sequence number of the last.
    pub(crate) outbox: Vec<promo_contracts::retail::v1::ProcessEvent>,
    pub(crate) event_seq: u32,
    /// How many of the outbox's first events an ordinary activity has carried already: they stay
    /// in the outbox until a flush records them for certain.
    #[serde(skip)]
    pub(crate) carried: usize,
    /// Whether a flush is under way ([`super::events::flush`]).
    #[serde(skip)]
    pub(crate) flushing: bool,
    /// After a failed flush: no new try before this instant (0 when the last flush succeeded).
    pub(crate) events_retry_at: i64,
    /// Refusals of messages not written to the audit trail one by one because the outbox was
    /// full (the record down during a flood of messages): counted, and written as one entry.
    pub(crate) refusals_uncounted: u64,
    /// Activations republished by the launch gate, per target ([`target_key`];
    /// [`Self::corrections_sent`]).
    pub(crate) gate_republished: BTreeMap<String, u32>,
    /// Signals that arrived before the policy was loaded (signal-with-start, or sent while the
    /// first task was pending): applied, or refused with a reason, right after it loads.
    pub(crate) early: Vec<(crate::api::MessageKind, serde_json::Value)>,
    /// Messages taken in (a ticket each, in arrival order) and applied: a message whose checks
    /// read the systems (a key's revocation, a change request's master data) waits for the
    /// messages before it to be applied first.
    pub(crate) tickets: Tickets,
    /// Whether the run has written to the systems (staged prices, ordered, published): from then
    /// on, an ending compensates.
    pub(crate) wrote: bool,
    pub(crate) price_change_id: Option<String>,
    pub(crate) orders: Vec<String>,
    pub(crate) publications: Vec<PublicationRef>,
    pub(crate) on_time_acks: (u32, u32),
    /// Workflow time at start: the origin of the (possibly compressed) business clock.
    pub(crate) started_at: i64,
    /// Whether monitoring rounds propose transfers (the policy enables replenishment).
    pub(crate) replenishes: bool,
    /// Monitoring rounds that asked for replenishment so far.
    pub(crate) replenish_round: u32,
    /// Transfers recommended in the window, oldest first.
    pub(crate) transfers: Vec<Transfer>,
    /// Transfers whose order was released or cancelled as their state says.
    pub(crate) transfers_settled: BTreeSet<String>,
    /// How far the run has got within its stage, so that a run continued as new resumes there.
    pub(crate) progress: Progress,
    /// An operator's decision on a blocked compensation, waiting for the ending to act on it.
    pub(crate) compensation_decision: Option<CompensationDecision>,
    /// How the run ends, once it is ending: a run continued as new while it compensates or
    /// records its end resumes there.
    pub(crate) ending: Option<Ending>,
    /// Runs of this promotion's chain so far (1 for the first).
    pub(crate) runs: u32,
}

fn current_version() -> crate::version::Version {
    crate::version::Version::CURRENT
}

/// The messages taken in (a ticket each, in arrival order), applied, and done with (their
/// handler finished).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Tickets {
    pub(crate) taken: u64,
    pub(crate) applied: u64,
    pub(crate) done: u64,
}

impl Tickets {
    /// Messages whose handler has not finished.
    pub(crate) fn in_flight(&self) -> u64 {
        self.taken.saturating_sub(self.done)
    }
}

/// The outbox size past which refused messages are counted instead of itemized one by one
/// (the record down during a flood of messages: the state must stay bounded).
pub(crate) const OUTBOX_FULL: usize = 1_000;

/// Entries of the audit trail kept in the state (the `audit` query's tail).
pub(crate) const AUDIT_TAIL: usize = 200;

/// Resolved exceptions kept in the state (the open ones are always kept).
pub(crate) const RESOLVED_KEPT: usize = 100;

/// How far a run has got within its stage: what a run continued as new needs to resume where
/// the last one was, instead of starting the stage again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Progress {
    /// The current revision went through remediation.
    pub(crate) remediated: bool,
    /// The current revision's approval reminder has been sent, and its escalation raised.
    pub(crate) reminded: bool,
    pub(crate) escalated: bool,
    /// Acknowledgment rounds done in publishing.
    pub(crate) ack_rounds: u32,
    /// The launch gate's final re-check has run.
    pub(crate) rechecked: bool,
    /// The active window: the business instant of the next monitoring round (once live), and
    /// the instant before which no watched stretch starts again.
    pub(crate) next_monitor: Option<i64>,
    pub(crate) no_watch_before: i64,
    /// Close: the ERP price change reverted; the revert published to the channels.
    pub(crate) erp_reverted: bool,
    pub(crate) channels_reverted: bool,
    /// The ending's compensation has run (or an operator accepted what it could not undo).
    pub(crate) compensated: bool,
}

/// How a run ends, kept while it compensates and records its end (and carried across a
/// continue-as-new meanwhile).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Ending {
    /// The lifecycle completed with this report.
    Completed(Box<PostEventReport>),
    /// Rejected, for this reason.
    Rejected(String),
    /// Expired, for this reason.
    Expired(String),
    /// Cancelled by an operator (or through Temporal).
    Cancelled,
    /// Failed: the reason, and the failure's type name (`InvalidSpec`, …) when it has one.
    Failed(String, Option<String>),
}

pub(crate) fn pb_ts(seconds: i64) -> Option<PbTimestamp> {
    Some(PbTimestamp { seconds, nanos: 0 })
}

/// A target as a map key (`<channel>/<region>`), for maps that are carried as JSON.
pub(crate) fn target_key(t: &Target) -> String {
    format!("{}/{}", t.channel, t.region_id)
}

pub(crate) fn region_of_target(t: &Target) -> Option<&str> {
    (!t.region_id.is_empty()).then_some(t.region_id.as_str())
}

impl PromotionWorkflow {
    /// The state a run continued as new starts from: the one the run before handed on, its
    /// run-local fields reset.
    pub(crate) fn continued(mut state: Box<Self>) -> Self {
        state.runs += 1;
        // The new run upserts what the outside sees at its first wait.
        state.attributes_pending = true;
        *state
    }

    /// The initial state of a new promotion: its spec, or why what was sent is not one.
    pub(crate) fn from_spec(spec: Result<PromotionSpec, String>) -> Self {
        let (spec, input_error) = match spec {
            Ok(spec) => (spec, None),
            Err(why) => (PromotionSpec::default(), Some(why)),
        };
        Self {
            version: crate::version::Version::CURRENT,
            attributes_pending: false,
            input_error,
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
            exceptions_forgotten: 0,
            readiness: BTreeMap::new(),
            on_time: BTreeMap::new(),
            audit: Vec::new(),
            audit_seq: 0,
            adjustments: Adjustments::default(),
            remediation_options: Vec::new(),
            remediation_choices: BTreeMap::new(),
            change_request: None,
            rejection: None,
            cancel: None,
            paused: false,
            overrides: BTreeSet::new(),
            gate_holds: BTreeMap::new(),
            used_signatures: BTreeMap::new(),
            price_checks: (0, 0),
            price_corrections: Vec::new(),
            gate_republished: BTreeMap::new(),
            run_id: String::new(),
            first_run_id: String::new(),
            calendar_released: None,
            outbox: Vec::new(),
            event_seq: 0,
            carried: 0,
            flushing: false,
            events_retry_at: 0,
            refusals_uncounted: 0,
            early: Vec::new(),
            tickets: Tickets::default(),
            wrote: false,
            price_change_id: None,
            orders: Vec::new(),
            publications: Vec::new(),
            on_time_acks: (0, 0),
            started_at: 0,
            replenishes: false,
            replenish_round: 0,
            transfers: Vec::new(),
            transfers_settled: BTreeSet::new(),
            progress: Progress::default(),
            compensation_decision: None,
            ending: None,
            runs: 1,
        }
    }

    /// Appends to the audit trail.
    pub(crate) fn record(&mut self, now: i64, actor: &str, action: &str, detail: String) {
        self.record_signed(now, actor, action, detail, None);
    }

    /// Audits a refused message, or only counts it while the outbox is full (written as one
    /// entry once the record takes the backlog: [`super::events::flush`]).
    pub(crate) fn record_refusal(&mut self, now: i64, actor: &str, action: &str, detail: String) {
        // The same refusal as the last entry, not yet sent to the record (neither carried by an
        // activity nor in a flush under way): counted on it (a client retrying in a loop gets
        // one entry, not thousands).
        let seq = self.audit_seq;
        if !self.flushing
            && let Some(last) = self.audit.last_mut().filter(|e| {
                e.seq == seq
                    && e.actor == actor
                    && e.action == action
                    && e.detail == detail
                    && e.signature.is_empty()
            })
            && let Some(queued) =
                self.outbox.iter_mut().skip(self.carried).rev().find(|x| {
                    x.kind() == promo_contracts::retail::v1::ProcessEventKind::Audit && x.seq == seq
                })
        {
            last.repeated = last.repeated.max(1) + 1;
            queued.repeated = last.repeated;
            return;
        }
        if self.outbox.len() >= OUTBOX_FULL {
            self.refusals_uncounted += 1;
        } else {
            self.record(now, actor, action, detail);
        }
    }

    /// Appends a message to the audit trail with its signature, if it was signed (the signature
    /// is then spent). The entry goes to the process-event record (through the outbox); the state
    /// keeps the latest [`AUDIT_TAIL`].
    pub(crate) fn record_signed(
        &mut self,
        now: i64,
        actor: &str,
        action: &str,
        detail: String,
        signed: Option<crate::signing::Verified>,
    ) {
        self.audit_seq += 1;
        let mut e = AuditEntry {
            at: pb_ts(now),
            actor: actor.to_owned(),
            action: action.to_owned(),
            detail,
            revision: self.revision,
            seq: self.audit_seq,
            ..Default::default()
        };
        if let Some(v) = signed {
            let max_age =
                self.policy.as_ref().map_or(900, |p| p.durations.signature_max_age.0.as_secs() as i64);
            // Kept while a signature could still pass the age check (with a margin).
            let horizon = now.saturating_sub(max_age.saturating_add(crate::signing::MAX_FUTURE_SKEW));
            self.used_signatures.retain(|_, signed_at| *signed_at >= horizon);
            self.used_signatures.insert(v.fingerprint, v.signed_at);
            e.signature = v.signature;
            e.signed_payload = v.payload;
        }
        self.audit_event(now, &e);
        self.audit.push(e);
        if self.audit.len() > AUDIT_TAIL {
            self.audit.drain(..self.audit.len() - AUDIT_TAIL);
        }
    }

    /// The forecast promotional revenue (decimal string, "0" before the assessment): what an
    /// outage or a compensation that cannot finish puts at risk.
    pub(crate) fn forecast_revenue(&self) -> String {
        self.assessment
            .as_ref()
            .and_then(|a| a.margin.as_ref())
            .map_or_else(|| "0".to_owned(), |m| m.forecast_revenue.clone())
    }

    /// Whether an item of the compensation is refused for good and waits for an operator.
    pub(crate) fn compensation_blocked(&self) -> bool {
        self.exceptions
            .iter()
            .any(|e| e.kind() == ExceptionKind::CompensationBlocked && e.status() == ExceptionStatus::Open)
    }

    /// Exceptions still open.
    pub(crate) fn open_exceptions(&self) -> Vec<PromotionException> {
        self.exceptions.iter().filter(|e| e.status() == ExceptionStatus::Open).cloned().collect()
    }

    /// Raises `e` (audited) unless an exception with its id is already open.
    pub(crate) fn raise(&mut self, now: i64, mut e: PromotionException) {
        if self
            .exceptions
            .iter()
            .any(|x| x.exception_id == e.exception_id && x.status() == ExceptionStatus::Open)
        {
            return;
        }
        e.raised_at = pb_ts(now);
        self.record(now, "system", "exception-raised", format!("{}: {}", e.exception_id, e.detail));
        self.exception_event(now, &e, false);
        self.exceptions.push(e);
    }

    /// Resolves every open exception `pred` selects, with `resolution` as the reason.
    pub(crate) fn resolve(&mut self, now: i64, pred: impl Fn(&PromotionException) -> bool, resolution: &str) {
        let mut resolved = Vec::new();
        for e in self.exceptions.iter_mut().filter(|e| e.status() == ExceptionStatus::Open && pred(e)) {
            e.status = ExceptionStatus::Resolved as i32;
            e.resolved_at = pb_ts(now);
            e.resolution = resolution.to_owned();
            resolved.push(e.clone());
        }
        for e in &resolved {
            self.exception_event(now, e, true);
        }
        self.forget_resolved();
    }

    /// Keeps every open exception and the latest [`RESOLVED_KEPT`] resolved ones (their events
    /// are in the record; the rest are counted), so the state stays bounded however long the
    /// promotion runs.
    fn forget_resolved(&mut self) {
        let resolved = self.exceptions.iter().filter(|e| e.status() != ExceptionStatus::Open).count();
        let mut drop = resolved.saturating_sub(RESOLVED_KEPT);
        if drop == 0 {
            return;
        }
        self.exceptions_forgotten += drop as u32;
        self.exceptions.retain(|e| {
            if drop > 0 && e.status() != ExceptionStatus::Open {
                drop -= 1;
                return false;
            }
            true
        });
    }

    /// Records the acknowledgments `acked` reports (an acknowledgment is never taken back here;
    /// the launch gate takes back one the channel withdrew), with an event for each new one.
    pub(crate) fn merge_acks(&mut self, now: i64, acked: &[PublicationRef]) {
        let began = self.publishing_began_at().unwrap_or(now);
        let mut new = Vec::new();
        for p in self.publications.iter_mut() {
            if p.acknowledged_at_ms.is_some() {
                continue;
            }
            if let Some(at) =
                acked.iter().find(|a| a.publication_id == p.publication_id).and_then(|a| a.acknowledged_at_ms)
            {
                p.acknowledged_at_ms = Some(at);
                if p.kind == PublicationKind::Activate as i32 {
                    new.push((p.target.clone(), at));
                }
            }
        }
        for (target, at) in new {
            self.event(now, promo_contracts::retail::v1::ProcessEventKind::Acknowledged, |e| {
                e.channel = channel_name(target.channel).to_owned();
                e.region_id = target.region_id.clone();
                e.wait_seconds = (at / 1000 - began).max(0);
            });
        }
    }

    /// Roles whose approval is still missing.
    pub(crate) fn pending_roles(&self) -> Vec<String> {
        self.requirements
            .iter()
            .filter(|r| r.approved_by.is_empty())
            .map(|r| role_name(r.role()).to_owned())
            .collect()
    }

    /// The `status` query's answer.
    pub(crate) fn snapshot(&self) -> PromotionStatus {
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
            exceptions_raised: self.exceptions.len() as u32 + self.exceptions_forgotten,
            forecast: self.assessment.as_ref().and_then(decisions::forecast_model_audit).unwrap_or_default(),
            transfers: self.transfers.clone(),
            first_run_id: self.first_run_id.clone(),
            decision_subjects: [Role::Merchandising, Role::Finance, Role::SupplyChain]
                .into_iter()
                .map(|r| (r.as_str_name().to_owned(), self.decision_subject(r, true)))
                .collect(),
        }
    }

    /// What the outside sees: the search attributes and the Web UI's current details (Markdown).
    pub(crate) fn outside(&self) -> (Vec<SearchAttributeUpdate>, String) {
        let open = self.open_exceptions();
        let funding_held = self.gate_holds.values().any(|h| h.contains(&decisions::Hold::Funding));
        let pending = if self.stage == Stage::Done {
            vec![]
        } else if self.stage == Stage::Approval {
            self.pending_roles()
        } else if funding_held {
            // The launch gate waits for finance to approve launching without withdrawn funding.
            vec![role_name(Role::Finance).to_owned()]
        } else if self.transfers.iter().any(|t| t.state() == TransferState::AwaitingApproval) {
            vec![role_name(Role::SupplyChain).to_owned()]
        } else {
            vec![]
        };
        let mut sas = vec![
            api::PROMOTION_STAGE.value_set(stage_name(self.stage).to_owned()),
            api::PROMOTION_RISK.value_set(decisions::risk(&open).to_owned()),
            api::PENDING_APPROVALS.value_set(pending.clone()),
            api::OPEN_EXCEPTIONS.value_set(open.len() as i64),
            api::PROMOTION_REVISION.value_set(i64::from(self.revision)),
        ];
        if self.input_error.is_none() {
            // A start input that is not a spec has no id or regions to show.
            let regions = if self.regions.is_empty() {
                self.spec.regions.clone()
            } else {
                self.regions.iter().map(|r| r.region_id.clone()).collect()
            };
            sas.push(api::PROMOTION_ID.value_set(self.spec.promotion_id.clone()));
            sas.push(api::PROMOTION_REGIONS.value_set(regions));
            if let Some(plan) = &self.plan {
                sas.push(
                    api::LAUNCH_AT
                        .value_set(temporalio_common::search_attributes::Timestamp::new(plan.starts_at, 0)),
                );
            }
        }
        let mut md = format!(
            "**Stage** {} · revision {} · risk {}\n\n",
            stage_name(self.stage),
            self.revision,
            decisions::risk(&open)
        );
        if self.stage == Stage::Done {
            md.push_str(&format!(
                "**Outcome** {} {}\n\n",
                self.outcome.as_str_name().trim_start_matches("OUTCOME_"),
                self.outcome_reason
            ));
        }
        if !pending.is_empty() {
            md.push_str(&format!("**Waiting for approval** from {}\n\n", pending.join(", ")));
        }
        if self.paused {
            md.push_str("**Paused** by an operator\n\n");
        }
        if !self.readiness.is_empty() {
            md.push_str("| region | state | fill rate | stockout risk | note |\n|---|---|---|---|---|\n");
            for r in self.readiness.values() {
                md.push_str(&format!(
                    "| {} | {} | {} | {} | {} |\n",
                    r.region_id,
                    r.state().as_str_name().trim_start_matches("REGION_STATE_"),
                    r.fill_rate,
                    r.stockout_probability,
                    r.note
                ));
            }
        }
        if !self.transfers.is_empty() {
            // The latest transfers: the rest are in `status` and the audit trail.
            let shown = self.transfers.len().min(6);
            md.push_str(&format!(
                "\n**Replenishment transfers** (latest {shown} of {})\n\n| transfer | state | units | cost | protects | stockouts without → with |\n|---|---|---|---|---|---|\n",
                self.transfers.len()
            ));
            for t in &self.transfers[self.transfers.len() - shown..] {
                md.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} → {} |\n",
                    t.transfer_id,
                    t.state().as_str_name().trim_start_matches("TRANSFER_STATE_"),
                    t.units,
                    t.cost,
                    t.revenue_protected,
                    t.stockout_share_before,
                    t.stockout_share_after
                ));
            }
        }
        if !open.is_empty() {
            md.push_str(&format!("\n**Open exceptions ({})**\n", open.len()));
            for e in &open {
                md.push_str(&format!("- {}: {}\n", e.exception_id, e.detail));
            }
        }
        (sas, md)
    }

    /// Whether the launch gate holds `region` back.
    pub(crate) fn held_at_gate(&self, region: &str) -> bool {
        self.gate_holds.get(region).is_some_and(|h| !h.is_empty())
    }

    /// How many holds are in place: a wait watches it to wake when one is released.
    pub(crate) fn hold_count(&self) -> usize {
        self.gate_holds.values().map(BTreeSet::len).sum()
    }

    /// Places a hold of the launch gate: the regions do not launch until it is released.
    pub(crate) fn place_hold(&mut self, now: i64, h: &decisions::GateHold) {
        for r in &h.regions {
            self.gate_holds.entry(r.clone()).or_default().insert(h.hold);
            if let Some(x) = self.readiness.get_mut(r)
                && !matches!(x.state(), RegionState::Active | RegionState::Closed | RegionState::Dropped)
            {
                x.state = RegionState::AtRisk as i32;
                x.note = format!("held at the launch gate: {}", h.hold.describe());
            }
        }
        self.record(
            now,
            "system",
            "gate-hold",
            format!("{} held: {}", h.regions.join(", "), h.hold.describe()),
        );
        self.raise(now, h.exception.clone());
    }

    /// Releases `hold` from `regions` (every held region when empty); returns those released.
    pub(crate) fn release_hold(
        &mut self,
        now: i64,
        regions: &[String],
        hold: decisions::Hold,
        by: &str,
        why: &str,
    ) -> Vec<String> {
        let mut released = Vec::new();
        for (r, holds) in &mut self.gate_holds {
            if (regions.is_empty() || regions.contains(r)) && holds.remove(&hold) {
                released.push(r.clone());
            }
        }
        for r in &released {
            if self.held_at_gate(r) {
                continue;
            }
            if let Some(x) = self.readiness.get_mut(r)
                && x.state() == RegionState::AtRisk
            {
                let delayed = self.adjustments.delays.contains_key(r);
                x.state = if delayed { RegionState::Delayed } else { RegionState::Ready } as i32;
                x.note = format!("released at the launch gate by {by}");
            }
        }
        if !released.is_empty() {
            let kind = match hold {
                decisions::Hold::Stock => ExceptionKind::StockRisk,
                decisions::Hold::Funding => ExceptionKind::FundingMissing,
            };
            self.resolve(
                now,
                |e| {
                    e.exception_id.starts_with("gate-")
                        && e.kind() == kind
                        && (e.region_id.is_empty() || released.contains(&e.region_id))
                },
                &format!("released by {by}: {why}"),
            );
            self.record(
                now,
                by,
                "gate-hold-released",
                format!("{} ({}): {why}", released.join(", "), hold.describe()),
            );
        }
        released
    }

    pub(crate) fn overridden(&self, region: &str) -> bool {
        self.overrides.contains("") || self.overrides.contains(region)
    }

    /// Activation publications a region depends on: its own, and the national ones.
    fn activations_of<'a>(&'a self, region: &'a str) -> impl Iterator<Item = &'a PublicationRef> + 'a {
        self.publications
            .iter()
            .filter(|p| p.kind == PublicationKind::Activate as i32)
            .filter(move |p| region_of_target(&p.target).is_none_or(|r| r == region))
    }

    /// Corrections published to a target so far (by the launch gate and by price reconciliation):
    /// each republication gets the next number, so its own idempotency key.
    pub(crate) fn corrections_sent(&self, t: &Target) -> u32 {
        let reconciled: u32 = self
            .price_corrections
            .iter()
            .filter(|c| c.channel == t.channel && c.region_id == t.region_id)
            .map(|c| c.republished)
            .sum();
        reconciled + self.gate_republished.get(&target_key(t)).copied().unwrap_or(0)
    }

    /// Resolves the launch gate's withdrawn-acknowledgment exceptions whose target acknowledged
    /// its republished activation, with an audit line each.
    pub(crate) fn resolve_reacknowledged(&mut self, now: i64) {
        let back: Vec<(String, String)> = self
            .publications
            .iter()
            .filter(|p| p.kind == PublicationKind::Activate as i32 && p.acknowledged_at_ms.is_some())
            .map(|p| {
                let place = region_of_target(&p.target).unwrap_or("national");
                let id = decisions::ack_withdrawn_exception_id(&p.target, self.revision);
                (id, format!("{} {place}", channel_name(p.target.channel)))
            })
            .filter(|(id, _)| {
                self.exceptions.iter().any(|e| &e.exception_id == id && e.status() == ExceptionStatus::Open)
            })
            .collect();
        for (id, target) in back {
            self.resolve(now, |e| e.exception_id == id, "the channel acknowledged the republished prices");
            self.record(now, "channel", "acknowledgment-restored", format!("{target} acknowledged again"));
        }
    }

    /// Whether every channel target a region depends on has acknowledged the activation (or an
    /// operator overrode the gate). No region activates otherwise.
    pub(crate) fn acknowledged(&self, region: &str) -> bool {
        self.overridden(region) || self.activations_of(region).all(|p| p.acknowledged_at_ms.is_some())
    }

    /// Refreshes each region's acknowledged / awaiting channels from the publications.
    pub(crate) fn refresh_ack_readiness(&mut self) {
        let by_region: Vec<(String, Vec<i32>, Vec<i32>)> = self
            .readiness
            .keys()
            .map(|r| {
                let (acked, waiting): (Vec<&PublicationRef>, Vec<&PublicationRef>) =
                    self.activations_of(r).partition(|p| p.acknowledged_at_ms.is_some());
                (
                    r.clone(),
                    acked.iter().map(|p| p.target.channel).collect(),
                    waiting.iter().map(|p| p.target.channel).collect(),
                )
            })
            .collect();
        for (r, acked, waiting) in by_region {
            if let Some(x) = self.readiness.get_mut(&r) {
                x.acknowledged = acked;
                x.awaiting_ack = waiting;
            }
        }
    }

    /// Transfers decided or superseded whose order has not been released or cancelled yet.
    pub(crate) fn unsettled_transfers(&self) -> usize {
        self.transfers
            .iter()
            .filter(|t| {
                t.state() != TransferState::AwaitingApproval
                    && !self.transfers_settled.contains(&t.transfer_id)
            })
            .count()
    }

    /// The policy, once loaded.
    pub(crate) fn policy(&self) -> Option<&Policy> {
        self.policy.as_ref()
    }
}
