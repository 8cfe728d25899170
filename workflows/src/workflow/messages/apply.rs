//! Applying a message that passed its checks: each message's own rules (stage, revision, the
//! directory's roles), then the change it makes to the state, audited with its signature.

use super::{Kind, Message};
use crate::{
    decisions::{self, Hold, role_name},
    refusal::Refusal,
    signing::Verified,
    workflow::state::{PromotionWorkflow, pb_ts},
};
use promo_contracts::promo::v1::*;

/// What an approval decision applies to, by the promotion's state and the role it is made in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// Finance releases a launch held for withdrawn funding.
    FundingRelease,
    /// Supply chain decides the transfers awaiting it (their ids).
    Transfers(Vec<String>),
    /// The approval of the current revision.
    Approval,
}

fn required(field: &'static str, value: &str) -> Result<(), Refusal> {
    if value.trim().is_empty() { Err(Refusal::Required(field)) } else { Ok(()) }
}

impl PromotionWorkflow {
    /// Applies a checked message (its signature `signed`, when it was signed).
    pub(crate) fn apply(
        &mut self,
        now: i64,
        kind: Kind,
        msg: Message,
        signed: Option<Verified>,
    ) -> Result<String, Refusal> {
        match msg {
            Message::Decision(d) => self.apply_decision(now, &d, kind == Kind::Approve, signed),
            Message::Changes(c) => self.apply_change_request(now, &c, signed),
            Message::Choice(c) => self.apply_choice(now, &c, signed),
            Message::Operator(a) => self.apply_operator(now, kind, &a, signed),
            Message::Override(o) => self.apply_override(now, &o, signed),
            Message::Compensation(c) => self.apply_compensation(now, &c, signed),
        }
    }

    /// What an approval decision in `role` applies to now.
    pub(crate) fn route(&self, role: Role, approve: bool) -> Route {
        let funding_held = self.gate_holds.values().any(|h| h.contains(&Hold::Funding));
        if approve && funding_held && role == Role::Finance {
            return Route::FundingRelease;
        }
        let waiting: Vec<String> = self
            .transfers
            .iter()
            .filter(|t| t.state() == TransferState::AwaitingApproval)
            .map(|t| t.transfer_id.clone())
            .collect();
        if !waiting.is_empty() && role == Role::SupplyChain && self.stage == Stage::Active {
            return Route::Transfers(waiting);
        }
        Route::Approval
    }

    fn apply_decision(
        &mut self,
        now: i64,
        d: &ApprovalDecision,
        approve: bool,
        signed: Option<Verified>,
    ) -> Result<String, Refusal> {
        match self.route(d.role(), approve) {
            Route::FundingRelease => return self.release_funding(now, d, signed),
            Route::Transfers(_) => return self.decide_transfers(now, d, approve, signed),
            Route::Approval => {}
        }
        self.check_approver(&d.approver_id, d.role(), d.revision)?;
        let role = role_name(d.role());
        let action = if approve { "approve" } else { "reject" };
        self.record_signed(now, &d.approver_id, action, format!("as {role}: {}", d.comment), signed);
        self.decision_event(now, d.role(), &d.approver_id, if approve { "approved" } else { "rejected" });
        if !approve {
            self.rejection = Some(d.clone());
            return Ok(format!("rejected as {role}"));
        }
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
    }

    /// An approval decision as a process event, with the wait since the approval was requested.
    fn decision_event(&mut self, now: i64, role: Role, approver: &str, decision: &str) {
        let asked = self.approval_requested_at().unwrap_or(now);
        self.event(now, promo_contracts::retail::v1::ProcessEventKind::ApprovalDecided, |e| {
            e.role = role_name(role).to_owned();
            e.actor = approver.to_owned();
            e.detail = decision.to_owned();
            e.wait_seconds = (now - asked).max(0);
        });
    }

    /// Supply chain's decision on the transfers waiting for it (those over the policy's limit):
    /// approved ones are released by the window's loop, declined ones cancelled.
    fn decide_transfers(
        &mut self,
        now: i64,
        d: &ApprovalDecision,
        approve: bool,
        signed: Option<Verified>,
    ) -> Result<String, Refusal> {
        self.check_holds("approver", &d.approver_id, Role::SupplyChain)?;
        self.check_revision(d.revision)?;
        let action = if approve { "approve" } else { "reject" };
        let (state, verb) = if approve {
            (TransferState::Approved, "approved")
        } else {
            (TransferState::Declined, "declined")
        };
        let mut ids = Vec::new();
        for t in self.transfers.iter_mut().filter(|t| t.state() == TransferState::AwaitingApproval) {
            t.state = state as i32;
            t.decided_by = d.approver_id.clone();
            ids.push(t.transfer_id.clone());
        }
        let list = ids.join(", ");
        self.record_signed(
            now,
            &d.approver_id,
            action,
            format!("as SUPPLY_CHAIN, transfers {list}: {}", d.comment),
            signed,
        );
        for id in &ids {
            let exception = format!("transfer-{id}");
            self.resolve(now, |e| e.exception_id == exception, &format!("supply chain {verb} it"));
        }
        Ok(format!("transfers {verb}: {list}"))
    }

    /// Finance's approval of a launch the gate holds because funding was withdrawn.
    fn release_funding(
        &mut self,
        now: i64,
        d: &ApprovalDecision,
        signed: Option<Verified>,
    ) -> Result<String, Refusal> {
        self.check_holds("approver", &d.approver_id, Role::Finance)?;
        self.check_revision(d.revision)?;
        self.record_signed(
            now,
            &d.approver_id,
            "approve",
            format!("as FINANCE, without the withdrawn funding: {}", d.comment),
            signed,
        );
        let released = self.release_hold(
            now,
            &[],
            Hold::Funding,
            &d.approver_id,
            "finance approved launching without it",
        );
        Ok(format!("launch approved without the withdrawn funding for {}", released.join(", ")))
    }

    /// Whether `who` holds `role` in the policy's directory.
    fn holds(&self, who: &str, role: Role) -> bool {
        self.policy().and_then(|p| p.roles_of(who)).is_some_and(|roles| roles.contains(&role))
    }

    /// Refuses unless `who` (an `approver` or `operator`, `what`) holds `role`.
    fn check_holds(&self, what: &'static str, who: &str, role: Role) -> Result<(), Refusal> {
        if self.holds(who, role) {
            Ok(())
        } else {
            Err(Refusal::MissingRole { what, who: who.to_owned(), role })
        }
    }

    /// Whether `who` may decide in `role` on `revision` in the approval stage
    /// ([`decisions::check_decision`]).
    fn check_approver(&self, who: &str, role: Role, revision: u32) -> Result<(), Refusal> {
        if self.stage != Stage::Approval {
            return Err(Refusal::WrongStage { stage: self.stage, awaiting: "awaiting approval" });
        }
        let Some(policy) = self.policy() else {
            return Err(Refusal::Loading);
        };
        decisions::check_decision(policy, self.stage, self.revision, &self.requirements, who, role, revision)
    }

    /// Refuses a revision other than the current one (0: the message names none).
    fn check_revision(&self, given: u32) -> Result<(), Refusal> {
        if given != 0 && given != self.revision {
            return Err(Refusal::WrongRevision { given, current: self.revision });
        }
        Ok(())
    }

    fn apply_change_request(
        &mut self,
        now: i64,
        c: &ChangeRequest,
        signed: Option<Verified>,
    ) -> Result<String, Refusal> {
        // A role whose approval is already given may still ask for changes.
        self.check_approver(&c.approver_id, c.role(), c.revision)
            .or_else(|e| if matches!(e, Refusal::AlreadyGiven { .. }) { Ok(()) } else { Err(e) })?;
        let Some(amended) = &c.amended_spec else {
            return Err(Refusal::Required("amended_spec"));
        };
        if amended.promotion_id != self.spec.promotion_id {
            return Err(Refusal::PromotionIdChanged {
                given: amended.promotion_id.clone(),
                current: self.spec.promotion_id.clone(),
            });
        }
        // The amended spec passed intake's checks before it got here (`verify_outside`).
        self.record_signed(
            now,
            &c.approver_id,
            "request-changes",
            format!("as {}: {}", role_name(c.role()), c.comment),
            signed,
        );
        self.change_request = Some(c.clone());
        self.decision_event(now, c.role(), &c.approver_id, "changes requested");
        Ok(format!(
            "changes requested on revision {}; revision {} will be assessed",
            self.revision,
            self.revision + 1
        ))
    }

    fn apply_choice(
        &mut self,
        now: i64,
        c: &RemediationChoice,
        signed: Option<Verified>,
    ) -> Result<String, Refusal> {
        // A planner (or anyone) in the directory chooses; an id nobody knows does not.
        required("chosen_by", &c.chosen_by)?;
        if self.policy().is_some_and(|p| p.roles_of(&c.chosen_by).is_none()) {
            return Err(Refusal::NotInDirectory { what: "planner", who: c.chosen_by.clone() });
        }
        let stock_held = self.gate_holds.get(&c.region_id).is_some_and(|h| h.contains(&Hold::Stock));
        if stock_held && matches!(self.stage, Stage::LaunchGate | Stage::Active) {
            return self.apply_gate_choice(now, c, signed);
        }
        if self.stage != Stage::Remediation {
            return Err(Refusal::WrongStage { stage: self.stage, awaiting: "awaiting remediation" });
        }
        let Some(opt) = self
            .remediation_options
            .iter()
            .find(|o| o.option_id == c.option_id && o.region_id == c.region_id)
        else {
            let options = self
                .remediation_options
                .iter()
                .filter(|o| o.region_id == c.region_id)
                .map(|o| o.option_id.clone())
                .collect();
            return Err(Refusal::NotAnOption {
                option: c.option_id.clone(),
                region: c.region_id.clone(),
                options,
            });
        };
        let desc = opt.description.clone();
        self.remediation_choices.insert(c.region_id.clone(), (c.option_id.clone(), c.chosen_by.clone()));
        Ok(self.record_choice(now, c, &desc, signed))
    }

    /// Audits a remediation choice that holds; the answer to the planner.
    fn record_choice(
        &mut self,
        now: i64,
        c: &RemediationChoice,
        desc: &str,
        signed: Option<Verified>,
    ) -> String {
        let detail = format!("{}: {desc} ({})", c.option_id, c.comment);
        self.record_signed(now, &c.chosen_by, "remediation-chosen", detail, signed);
        format!("{} chosen for {}", c.option_id, c.region_id)
    }

    /// A remediation chosen for a region the launch gate holds for stock: only a delay, since
    /// the prices are already published (a change to the lines is a new revision).
    fn apply_gate_choice(
        &mut self,
        now: i64,
        c: &RemediationChoice,
        signed: Option<Verified>,
    ) -> Result<String, Refusal> {
        let Some(opt) = self
            .remediation_options
            .iter()
            .find(|o| o.option_id == c.option_id && o.region_id == c.region_id && o.kind == "delay")
            .cloned()
        else {
            return Err(Refusal::NotAGateOption { option: c.option_id.clone(), region: c.region_id.clone() });
        };
        let Some(until) = opt.delay_until.as_ref().map(|d| d.seconds) else {
            return Err(Refusal::NoDelayDate(c.option_id.clone()));
        };
        let answer = self.record_choice(now, c, &opt.description, signed);
        self.adjustments.delays.insert(c.region_id.clone(), until);
        if let Some(r) = self.readiness.get_mut(&c.region_id) {
            r.launch_at = pb_ts(until);
        }
        self.release_hold(
            now,
            std::slice::from_ref(&c.region_id),
            Hold::Stock,
            &c.chosen_by,
            &opt.description,
        );
        Ok(answer)
    }

    fn apply_operator(
        &mut self,
        now: i64,
        kind: Kind,
        a: &OperatorAction,
        signed: Option<Verified>,
    ) -> Result<String, Refusal> {
        let action = kind.name();
        required("operator_id", &a.operator_id)?;
        if self.stage == Stage::Done {
            return Err(Refusal::Ended { outcome: self.outcome });
        }
        if matches!(self.stage, Stage::Closing | Stage::Analysis) || self.ending.is_some() {
            return Err(Refusal::WindowOver { stage: self.stage, action });
        }
        // Cancel: operations or merchandising (the offer's owner); pause/resume: operations.
        let allowed: &[Role] =
            if kind == Kind::Cancel { &[Role::Operations, Role::Merchandising] } else { &[Role::Operations] };
        let Some(policy) = self.policy() else {
            return Err(Refusal::Loading);
        };
        match policy.roles_of(&a.operator_id) {
            None => return Err(Refusal::NotInDirectory { what: "operator", who: a.operator_id.clone() }),
            Some(roles) if !roles.iter().any(|r| allowed.contains(r)) => {
                return Err(Refusal::NeedsRole {
                    who: a.operator_id.clone(),
                    roles: allowed.to_vec(),
                    action,
                });
            }
            Some(_) => {}
        }
        match kind {
            Kind::Cancel if self.cancel.is_some() => return Err(Refusal::AlreadyCancelling),
            Kind::Cancel => self.cancel = Some(a.clone()),
            Kind::Pause if self.paused => return Err(Refusal::AlreadyPaused),
            Kind::Pause => self.paused = true,
            _ if !self.paused => return Err(Refusal::NotPaused),
            _ => self.paused = false,
        }
        self.record_signed(now, &a.operator_id, action, a.reason.clone(), signed);
        Ok(format!("{action} accepted"))
    }

    fn apply_override(
        &mut self,
        now: i64,
        o: &GateOverride,
        signed: Option<Verified>,
    ) -> Result<String, Refusal> {
        self.check_holds("operator", &o.operator_id, Role::Operations)?;
        if o.reason.trim().is_empty() {
            return Err(Refusal::OverrideReason);
        } else if !matches!(self.stage, Stage::Publishing | Stage::LaunchGate | Stage::Active) {
            return Err(Refusal::NoGate { stage: self.stage });
        } else if !o.region_id.is_empty() && !self.readiness.contains_key(&o.region_id) {
            return Err(Refusal::UnknownRegion(o.region_id.clone()));
        }
        let scope = if o.region_id.is_empty() { "all regions".to_owned() } else { o.region_id.clone() };
        self.record_signed(
            now,
            &o.operator_id,
            "override",
            format!("gate opened for {scope}: {}", o.reason),
            signed,
        );
        self.overrides.insert(o.region_id.clone());
        let scope_regions: Vec<String> =
            if o.region_id.is_empty() { Vec::new() } else { vec![o.region_id.clone()] };
        self.release_hold(now, &scope_regions, Hold::Stock, &o.operator_id, &o.reason);
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

    /// An operator's decision on a compensation blocked by a system's refusal: the ending's
    /// wait takes it (retry, or check that what was refused was undone by hand).
    fn apply_compensation(
        &mut self,
        now: i64,
        c: &CompensationDecision,
        signed: Option<Verified>,
    ) -> Result<String, Refusal> {
        self.check_holds("operator", &c.operator_id, Role::Operations)?;
        required("reason", &c.reason)?;
        if !self.compensation_blocked() {
            return Err(Refusal::NothingBlocked);
        }
        if self.compensation_decision.is_some() {
            return Err(Refusal::AlreadyDecided);
        }
        let what = match c.resolution() {
            CompensationResolution::Accept => "accept: undone by hand",
            _ => "retry",
        };
        self.record_signed(
            now,
            &c.operator_id,
            "resolve-compensation",
            format!("{what}: {}", c.reason),
            signed,
        );
        self.compensation_decision = Some(c.clone());
        Ok(format!("compensation {what}; the promotion takes it now"))
    }
}
