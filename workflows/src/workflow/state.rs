//! The state of one promotion and what the outside sees of it: the `status` query, the search
//! attributes and the Web UI's current details all come from [`PromotionWorkflow::outside`],
//! published by [`publish`] (from the run) and [`PromotionWorkflow::publish_sync`] (from
//! handlers) after every change.

use crate::{
    api::{self, Adjustments, PublicationRef, RegionInfo, StartInput, Target},
    decisions::{self, role_name, stage_name},
    plan::Plan,
    policy::Policy,
    summary::channel_name,
};
use pbjson_types::Timestamp as PbTimestamp;
use promo_contracts::{promo::v1::*, retail::v1::PublicationKind};
use std::collections::{BTreeMap, BTreeSet};
use temporalio_common::search_attributes::{SearchAttributeUpdate, SearchAttributes};
use temporalio_macros::workflow;
use temporalio_sdk::{SyncWorkflowContext, WorkflowContext};

/// The context every stage takes.
pub type Ctx = WorkflowContext<PromotionWorkflow>;

/// The state of one promotion. Everything here is a summary: the store × SKU matrix stays in the
/// systems of record and is streamed into activities.
#[workflow]
pub struct PromotionWorkflow {
    /// The lifecycle version this run takes ([`crate::version::Version`]), read first thing.
    pub(crate) version: crate::version::Version,
    /// Search attributes changed since the run last upserted them (it upserts them when it next
    /// waits on the server, [`publish_pending`]).
    pub(crate) attributes_pending: bool,
    /// While the run waits on the server ([`super::wait::wait`]): a message handler leaves
    /// its search attributes to the wait, which upserts them in the same workflow task — with
    /// what the run changes when the message wakes it — instead of upserting them itself.
    pub(crate) handlers_defer: bool,
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
    pub(crate) readiness: BTreeMap<String, RegionReadiness>,
    /// Regions that went live at their planned instant (typed, for the report's KPIs).
    pub(crate) on_time: BTreeMap<String, bool>,
    pub(crate) audit: Vec<AuditEntry>,
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
    /// Signatures of decisions already applied: a signature is good for one decision.
    pub(crate) used_signatures: BTreeSet<String>,
    /// Prices read back from the channels: (matching the approved price, all).
    pub(crate) price_checks: (u64, u64),
    /// Mismatches found, open or corrected, in the order found.
    pub(crate) price_corrections: Vec<PriceCorrection>,
    /// This run's id, part of every process event's id.
    pub(crate) run_id: String,
    /// Whether the compensation's own activity found (and freed) a calendar reservation, when
    /// it ran.
    pub(crate) calendar_released: Option<bool>,
    /// Process events not yet recorded ([`super::events`]), and the sequence number of the last.
    pub(crate) outbox: Vec<promo_contracts::retail::v1::ProcessEvent>,
    pub(crate) event_seq: u32,
    /// How many of the outbox's first events an ordinary activity has carried already: they stay
    /// in the outbox until a flush records them for certain.
    pub(crate) carried: usize,
    /// After a failed flush: no new try before this instant (0 when the last flush succeeded).
    pub(crate) events_retry_at: i64,
    /// Activations republished by the launch gate, per target ([`Self::corrections_sent`]).
    pub(crate) gate_republished: BTreeMap<(i32, String), u32>,
    /// Signals that arrived before the policy was loaded (signal-with-start, or sent while the
    /// first task was pending): applied, or refused with a reason, right after it loads.
    pub(crate) early: Vec<(crate::api::MessageKind, serde_json::Value)>,
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
}

pub(crate) fn pb_ts(seconds: i64) -> Option<PbTimestamp> {
    Some(PbTimestamp { seconds, nanos: 0 })
}

pub(crate) fn region_of_target(t: &Target) -> Option<&str> {
    (!t.region_id.is_empty()).then_some(t.region_id.as_str())
}

impl PromotionWorkflow {
    /// The initial state from the start input.
    pub(crate) fn from_input(input: StartInput) -> Self {
        let (spec, input_error) = match input.0 {
            Ok(spec) => (spec, None),
            Err(why) => (PromotionSpec::default(), Some(why)),
        };
        Self {
            version: crate::version::Version::CURRENT,
            handlers_defer: false,
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
            readiness: BTreeMap::new(),
            on_time: BTreeMap::new(),
            audit: Vec::new(),
            adjustments: Adjustments::default(),
            remediation_options: Vec::new(),
            remediation_choices: BTreeMap::new(),
            change_request: None,
            rejection: None,
            cancel: None,
            paused: false,
            overrides: BTreeSet::new(),
            gate_holds: BTreeMap::new(),
            used_signatures: BTreeSet::new(),
            price_checks: (0, 0),
            price_corrections: Vec::new(),
            gate_republished: BTreeMap::new(),
            run_id: String::new(),
            calendar_released: None,
            outbox: Vec::new(),
            event_seq: 0,
            carried: 0,
            events_retry_at: 0,
            early: Vec::new(),
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
        }
    }

    /// Appends to the audit trail.
    pub(crate) fn record(&mut self, now: i64, actor: &str, action: &str, detail: String) {
        self.audit.push(AuditEntry {
            at: pb_ts(now),
            actor: actor.to_owned(),
            action: action.to_owned(),
            detail,
            revision: self.revision,
            ..Default::default()
        });
    }

    /// Appends a decision to the audit trail with its signature, if it was signed (the
    /// signature is then spent).
    pub(crate) fn record_signed(
        &mut self,
        now: i64,
        actor: &str,
        action: &str,
        detail: String,
        signed: Option<(String, String)>,
    ) {
        self.record(now, actor, action, detail);
        if let (Some((payload, signature)), Some(e)) = (signed, self.audit.last_mut()) {
            self.used_signatures.insert(signature.clone());
            e.signature = signature;
            e.signed_payload = payload;
        }
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
            exceptions_raised: self.exceptions.len() as u32,
            forecast: self.assessment.as_ref().and_then(decisions::forecast_model_audit).unwrap_or_default(),
            transfers: self.transfers.clone(),
        }
    }

    /// What the outside sees: the search attributes and the Web UI's current details (Markdown).
    pub(crate) fn outside(&self) -> (Vec<SearchAttributeUpdate>, String) {
        let open = self.open_exceptions();
        let funding_held = self.gate_holds.values().any(|h| h.contains(&decisions::Hold::Funding));
        let pending = if self.stage == Stage::Approval {
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

    /// [`publish`] from a signal or update handler.
    pub(crate) fn publish_sync(&mut self, ctx: &SyncWorkflowContext<Self>) {
        let (mut sas, md) = self.outside();
        if self.handlers_defer {
            self.attributes_pending = true;
            ctx.set_current_details(md);
            return;
        }
        changed_only(&mut sas, &ctx.search_attributes());
        if !sas.is_empty() {
            ctx.upsert_search_attributes(sas);
        }
        ctx.set_current_details(md);
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
        reconciled + self.gate_republished.get(&(t.channel, t.region_id.clone())).copied().unwrap_or(0)
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

/// Publishes what the outside sees ([`PromotionWorkflow::outside`]) from the run: the search
/// attributes are upserted at the run's next wait on the server ([`publish_pending`]), so that
/// the steps of one workflow task cost one upsert; the details (a query-side value, no history
/// event) go now.
pub(crate) fn publish(ctx: &Ctx) {
    let md = ctx.state_mut(|s| {
        s.attributes_pending = true;
        s.outside().1
    });
    ctx.set_current_details(md);
}

/// Upserts what [`publish`] kept back, if anything: called before the run waits
/// on the server and when it ends.
pub(crate) fn publish_pending(ctx: &Ctx) {
    if ctx.state_mut(|s| std::mem::take(&mut s.attributes_pending)) {
        upsert(ctx);
    }
}

fn upsert(ctx: &Ctx) {
    let (mut sas, md) = ctx.state(PromotionWorkflow::outside);
    changed_only(&mut sas, &ctx.search_attributes());
    if !sas.is_empty() {
        ctx.upsert_search_attributes(sas);
    }
    ctx.set_current_details(md);
}

/// Keeps the updates that change a value (each upsert is a history event, and most stage steps
/// leave the attributes as they were).
fn changed_only(sas: &mut Vec<SearchAttributeUpdate>, current: &SearchAttributes) {
    let next = SearchAttributes::new(sas.iter().cloned());
    sas.retain(|u| next.raw_payload(u.name()) != current.raw_payload(u.name()));
}
