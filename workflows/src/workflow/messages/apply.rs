//! The eight messages a promotion accepts, each as a signal and as an update, through one path:
//! parse (raw JSON, so an ill-typed message is refused, never a failed workflow task) → check
//! (stage, revision, directory, shape) → apply. Every refusal is in the audit trail with its
//! reason; updates also answer it to the caller.
//!
//! Nothing here assumes the lifecycle has got anywhere: a message that arrives before the
//! policy is loaded (signal-with-start, an update right after start, signals sent while no worker
//! ran) is refused for the stage it finds, or — a signal — queued and applied right after the
//! policy loads.

use super::state::{PromotionWorkflow, pb_ts};
use crate::{
    decisions::{self, Hold, role_name},
    plan,
    refusal::Refusal,
    signing,
};
use promo_contracts::promo::v1::*;
use serde::de::DeserializeOwned;
use temporalio_sdk::SyncWorkflowContext;

pub use crate::api::MessageKind as Kind;

type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// The audit action of an applied message (`request-changes`).
fn action(kind: Kind) -> String {
    kind.name().replace('_', "-")
}

/// A parsed message.
enum Message {
    Decision(ApprovalDecision),
    Changes(Box<ChangeRequest>),
    Choice(RemediationChoice),
    Operator(OperatorAction),
    Override(GateOverride),
}

impl Message {
    /// Who sent it, as the message says.
    fn actor(&self) -> &str {
        match self {
            Message::Decision(d) => &d.approver_id,
            Message::Changes(c) => &c.approver_id,
            Message::Choice(c) => &c.chosen_by,
            Message::Operator(a) => &a.operator_id,
            Message::Override(o) => &o.operator_id,
        }
    }
}

/// Decodes `input` as `T`, naming the field that does not fit.
fn decode<T: DeserializeOwned>(kind: Kind, input: &serde_json::Value) -> Result<T, Refusal> {
    serde_path_to_error::deserialize(input).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." { String::new() } else { format!("{path}: ") };
        Refusal::Malformed { message: kind.name(), detail: format!("{at}{}", e.inner()) }
    })
}

fn required(field: &'static str, value: &str) -> Result<(), Refusal> {
    if value.trim().is_empty() { Err(Refusal::Required(field)) } else { Ok(()) }
}

/// Parses and checks the shape of a message (what needs no state).
fn parse(kind: Kind, input: &serde_json::Value) -> Result<Message, Refusal> {
    Ok(match kind {
        Kind::Approve | Kind::Reject => {
            let d: ApprovalDecision = decode(kind, input)?;
            required("approver_id", &d.approver_id)?;
            if d.role() == Role::Unspecified {
                return Err(Refusal::RoleRequired);
            }
            Message::Decision(d)
        }
        Kind::RequestChanges => Message::Changes(Box::new(decode(kind, input)?)),
        Kind::ChooseRemediation => Message::Choice(decode(kind, input)?),
        Kind::Cancel | Kind::Pause | Kind::Resume => Message::Operator(decode(kind, input)?),
        Kind::Override => Message::Override(decode(kind, input)?),
    })
}

/// The update validator of every message: refuses what does not parse, before anything is
/// written to history.
pub fn validate(kind: Kind, input: &serde_json::Value) -> Result<(), HandlerError> {
    parse(kind, input).map(drop).map_err(Into::into)
}

pub(crate) fn now_sync(ctx: &SyncWorkflowContext<PromotionWorkflow>) -> i64 {
    ctx.workflow_time().map_or(0, crate::clock::unix)
}

impl PromotionWorkflow {
    /// A signal: applied, queued until the policy is loaded, or ignored with an audit entry.
    pub(crate) fn on_signal(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        kind: Kind,
        input: serde_json::Value,
    ) {
        let now = now_sync(ctx);
        if self.policy.is_none() && self.stage != Stage::Done && self.input_error.is_none() {
            self.record(
                now,
                "unknown",
                &format!("{}-queued", action(kind)),
                "received before the promotion loaded its policy; applied right after".into(),
            );
            self.early.push((kind, input));
        } else {
            let _ = self.receive(now, kind, input, true);
        }
        self.publish_sync(ctx);
    }

    /// An update: applied or refused, and answered either way.
    pub(crate) fn on_update(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        kind: Kind,
        input: serde_json::Value,
    ) -> Result<ActionResult, HandlerError> {
        let r = self.receive(now_sync(ctx), kind, input, false);
        self.publish_sync(ctx);
        Ok(ActionResult { accepted: true, message: r.map_err(|e| e.to_string())?, revision: self.revision })
    }

    /// Applies the messages queued before the policy loaded, in arrival order.
    pub(crate) fn apply_early(&mut self, now: i64) -> usize {
        let early = std::mem::take(&mut self.early);
        for (kind, input) in &early {
            let _ = self.receive(now, *kind, input.clone(), true);
        }
        early.len()
    }

    /// Parse → check → apply; every refusal is audited. `signal` only changes the wording of a
    /// malformed message's audit entry (`<name>-ignored`: nobody is there to answer).
    pub(crate) fn receive(
        &mut self,
        now: i64,
        kind: Kind,
        input: serde_json::Value,
        signal: bool,
    ) -> Result<String, Refusal> {
        let msg = match parse(kind, &input) {
            Ok(m) => m,
            Err(why) => {
                let (what, detail) = if signal {
                    let detail = why.to_string().replacen(
                        &format!("malformed {} input", kind.name()),
                        &format!("malformed {} signal", kind.name()),
                        1,
                    );
                    (format!("{}-ignored", kind.name()), detail)
                } else {
                    (format!("{}-refused", action(kind)), why.to_string())
                };
                self.record(now, "unknown", &what, detail);
                return Err(why);
            }
        };
        let actor = msg.actor().to_owned();
        let applied = match msg {
            Message::Decision(d) => self.apply_decision(now, &d, kind == Kind::Approve),
            Message::Changes(c) => self.apply_change_request(now, &c),
            Message::Choice(c) => self.apply_choice(now, &c),
            Message::Operator(a) => self.apply_operator(now, kind, &a),
            Message::Override(o) => self.apply_override(now, &o),
        };
        if let Err(why) = &applied {
            let who = if actor.trim().is_empty() { "unknown" } else { actor.as_str() };
            self.record(now, who, &format!("{}-refused", action(kind)), why.to_string());
        }
        applied
    }

    fn apply_decision(&mut self, now: i64, d: &ApprovalDecision, approve: bool) -> Result<String, Refusal> {
        let funding_held = self.gate_holds.values().any(|h| h.contains(&Hold::Funding));
        if approve && funding_held && d.role() == Role::Finance {
            return self.release_funding(now, d);
        }
        let transfers_waiting = self.transfers.iter().any(|t| t.state() == TransferState::AwaitingApproval);
        if transfers_waiting && d.role() == Role::SupplyChain && self.stage == Stage::Active {
            return self.decide_transfers(now, d, approve);
        }
        if self.stage != Stage::Approval {
            return Err(Refusal::WrongStage { stage: self.stage, awaiting: "awaiting approval" });
        }
        let Some(policy) = self.policy() else {
            return Err(Refusal::Loading);
        };
        decisions::check_decision(
            policy,
            self.stage,
            self.revision,
            &self.requirements,
            &d.approver_id,
            d.role(),
            d.revision,
        )?;
        let role = role_name(d.role());
        let action = if approve { "approve" } else { "reject" };
        let signed = self.decision_signature(Some(now), d, action)?;
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
    fn decide_transfers(&mut self, now: i64, d: &ApprovalDecision, approve: bool) -> Result<String, Refusal> {
        self.check_holds("approver", &d.approver_id, Role::SupplyChain)?;
        self.check_revision(d.revision)?;
        let action = if approve { "approve" } else { "reject" };
        let signed = self.decision_signature(Some(now), d, action)?;
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
    fn release_funding(&mut self, now: i64, d: &ApprovalDecision) -> Result<String, Refusal> {
        self.check_holds("approver", &d.approver_id, Role::Finance)?;
        self.check_revision(d.revision)?;
        let signed = self.decision_signature(Some(now), d, "approve")?;
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

    /// Checks a decision's signature against the directory ([`signing::check`]): the signed
    /// text and signature to keep in the audit trail, `None` for an unsigned decision the policy
    /// accepts, or why it is refused. `now` is unknown in an update validator (no staleness
    /// check there; the handler checks it).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn signature(
        &self,
        now: Option<i64>,
        approver: &str,
        role: Role,
        decision: &str,
        comment: &str,
        revision: u32,
        signed_at: i64,
        signature: &str,
    ) -> Result<Option<(String, String)>, Refusal> {
        let Some(policy) = self.policy() else { return Ok(None) };
        let check = signing::Check {
            public_key: policy.approver_keys.get(approver).map(String::as_str),
            required: policy.require_signatures,
            current_revision: self.revision,
            now,
            max_age: policy.durations.signature_max_age.0.as_secs() as i64,
            used: &self.used_signatures,
        };
        let d = signing::Decision {
            promotion_id: &self.spec.promotion_id,
            revision,
            role: role.as_str_name(),
            decision,
            comment,
            signed_at,
        };
        let payload = signing::check(&check, &d, signature)?;
        Ok(payload.map(|p| (p, signature.to_owned())))
    }

    /// [`Self::signature`] of an `approve` or `reject` (`action`).
    fn decision_signature(
        &self,
        now: Option<i64>,
        d: &ApprovalDecision,
        action: &str,
    ) -> Result<Option<(String, String)>, Refusal> {
        let (who, comment) = (d.approver_id.as_str(), d.comment.as_str());
        self.signature(now, who, d.role(), action, comment, d.revision, d.signed_at, &d.signature)
    }

    /// [`Self::signature`] of a `request_changes`.
    fn change_signature(
        &self,
        now: Option<i64>,
        c: &ChangeRequest,
    ) -> Result<Option<(String, String)>, Refusal> {
        let (who, comment) = (c.approver_id.as_str(), c.comment.as_str());
        self.signature(now, who, c.role(), "request_changes", comment, c.revision, c.signed_at, &c.signature)
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

    /// Refuses a revision other than the current one (0: the message names none).
    fn check_revision(&self, given: u32) -> Result<(), Refusal> {
        if given != 0 && given != self.revision {
            return Err(Refusal::WrongRevision { given, current: self.revision });
        }
        Ok(())
    }

    /// The update validator's check of a decision's signature, before anything is written to
    /// history: forged, unsigned (where required), replayed and other-revision signatures are
    /// refused there and never reach the promotion.
    pub(crate) fn validate_signature(
        &self,
        kind: Kind,
        input: &serde_json::Value,
    ) -> Result<(), HandlerError> {
        let checked = match parse(kind, input)? {
            Message::Decision(d) => {
                self.decision_signature(None, &d, if kind == Kind::Approve { "approve" } else { "reject" })
            }
            Message::Changes(c) => self.change_signature(None, &c),
            _ => Ok(None),
        };
        checked.map(drop).map_err(Into::into)
    }

    fn apply_change_request(&mut self, now: i64, c: &ChangeRequest) -> Result<String, Refusal> {
        if self.stage != Stage::Approval {
            return Err(Refusal::WrongStage { stage: self.stage, awaiting: "awaiting approval" });
        }
        let Some(policy) = self.policy() else {
            return Err(Refusal::Loading);
        };
        // A role whose approval is already given may still ask for changes.
        decisions::check_decision(
            policy,
            self.stage,
            self.revision,
            &self.requirements,
            &c.approver_id,
            c.role(),
            c.revision,
        )
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
        if let Err(problems) = plan::validate_spec(amended, now) {
            return Err(Refusal::InvalidAmendment(plan::describe(&problems)));
        }
        let signed = self.change_signature(Some(now), c)?;
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

    fn apply_choice(&mut self, now: i64, c: &RemediationChoice) -> Result<String, Refusal> {
        let stock_held = self.gate_holds.get(&c.region_id).is_some_and(|h| h.contains(&Hold::Stock));
        if stock_held && matches!(self.stage, Stage::LaunchGate | Stage::Active) {
            return self.apply_gate_choice(now, c);
        }
        if self.stage != Stage::Remediation {
            return Err(Refusal::WrongStage { stage: self.stage, awaiting: "awaiting remediation" });
        }
        required("chosen_by", &c.chosen_by)?;
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
        self.record(
            now,
            &c.chosen_by,
            "remediation-chosen",
            format!("{}: {desc} ({})", c.option_id, c.comment),
        );
        self.remediation_choices.insert(c.region_id.clone(), (c.option_id.clone(), c.chosen_by.clone()));
        Ok(format!("{} chosen for {}", c.option_id, c.region_id))
    }

    /// A remediation chosen for a region the launch gate holds for stock: only a delay, since
    /// the prices are already published (a change to the lines is a new revision).
    fn apply_gate_choice(&mut self, now: i64, c: &RemediationChoice) -> Result<String, Refusal> {
        required("chosen_by", &c.chosen_by)?;
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
        self.record(
            now,
            &c.chosen_by,
            "remediation-chosen",
            format!("{}: {} ({})", c.option_id, opt.description, c.comment),
        );
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
        Ok(format!("{} chosen for {}", c.option_id, c.region_id))
    }

    fn apply_operator(&mut self, now: i64, kind: Kind, a: &OperatorAction) -> Result<String, Refusal> {
        let action = kind.name();
        required("operator_id", &a.operator_id)?;
        if self.stage == Stage::Done {
            return Err(Refusal::Ended { outcome: self.outcome });
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
        self.record(now, &a.operator_id, action, a.reason.clone());
        Ok(format!("{action} accepted"))
    }

    fn apply_override(&mut self, now: i64, o: &GateOverride) -> Result<String, Refusal> {
        self.check_holds("operator", &o.operator_id, Role::Operations)?;
        if o.reason.trim().is_empty() {
            return Err(Refusal::OverrideReason);
        } else if !matches!(self.stage, Stage::Publishing | Stage::LaunchGate | Stage::Active) {
            return Err(Refusal::NoGate { stage: self.stage });
        } else if !o.region_id.is_empty() && !self.readiness.contains_key(&o.region_id) {
            return Err(Refusal::UnknownRegion(o.region_id.clone()));
        }
        let scope = if o.region_id.is_empty() { "all regions".to_owned() } else { o.region_id.clone() };
        self.record(now, &o.operator_id, "override", format!("gate opened for {scope}: {}", o.reason));
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{api::StartInput, policy::Policy};

    #[test]
    fn the_validator_refuses_unsigned_and_forged_decisions_and_accepts_signed_ones() {
        let (secret, public) = signing::keypair_from_seed([3; 32]);
        let mut policy = Policy::default();
        policy.approver_keys.insert("E1001".into(), public);
        let spec = PromotionSpec { promotion_id: "P".into(), ..Default::default() };
        let mut s = PromotionWorkflow::from_input(StartInput(Ok(spec)));
        s.policy = Some(policy);
        s.stage = Stage::Approval;
        let unsigned =
            serde_json::json!({"approverId": "E1001", "role": "ROLE_MERCHANDISING", "comment": "go"});
        let e = s.validate_signature(Kind::Approve, &unsigned).unwrap_err().to_string();
        assert!(e.contains("unsigned"), "{e}");
        let d = signing::Decision {
            promotion_id: "P",
            revision: 1,
            role: "ROLE_MERCHANDISING",
            decision: "approve",
            comment: "go",
            signed_at: 5,
        };
        let sig = signing::sign(&secret, &d.payload()).unwrap();
        let signed = serde_json::json!({"approverId": "E1001", "role": "ROLE_MERCHANDISING", "comment": "go", "revision": 1, "signature": sig, "signedAt": "5"});
        s.validate_signature(Kind::Approve, &signed).unwrap();
        let forged = serde_json::json!({"approverId": "E1001", "role": "ROLE_MERCHANDISING", "comment": "no", "revision": 1, "signature": sig, "signedAt": "5"});
        assert!(
            s.validate_signature(Kind::Approve, &forged).unwrap_err().to_string().contains("does not verify")
        );
    }
}
