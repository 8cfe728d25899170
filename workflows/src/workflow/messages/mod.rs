//! The nine messages a promotion accepts, each as a signal and as an update, through one path:
//! parse (raw JSON, so an ill-typed message is refused, never a failed workflow task) → check
//! (shape, ranges, signature — pure) → verify what only the systems know (the signing key's
//! revocation; a change request's master data and calendar) → apply (stage, revision,
//! directory), in the order the messages arrived. Every refusal is in the audit trail with its
//! reason; updates also answer it to the caller.
//!
//! Nothing here assumes the lifecycle has got anywhere: a message that arrives before the
//! policy is loaded (signal-with-start, an update right after start, signals sent while no worker
//! ran) is refused for the stage it finds, or — a signal — queued and applied right after the
//! policy loads.

mod apply;

use super::{
    events,
    options::retry,
    publish::publish,
    state::{Ctx, PromotionWorkflow},
    time::{business_now, now},
};
use crate::{
    api::{CalendarCheck, IntakeInput, KeyStatusInput, PromotionActivities as A},
    plan,
    refusal::Refusal,
    signing::{self, Subject, Verified},
};
use promo_contracts::promo::v1::*;
use serde::de::DeserializeOwned;
use std::time::Duration;
use temporalio_sdk::LocalActivityOptions;

pub use crate::api::MessageKind as Kind;

type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// The audit action of an applied message (`request-changes`).
fn action(kind: Kind) -> String {
    kind.name().replace('_', "-")
}

/// A parsed message.
pub(crate) enum Message {
    Decision(ApprovalDecision),
    Changes(Box<ChangeRequest>),
    Choice(RemediationChoice),
    Operator(OperatorAction),
    Override(GateOverride),
    Compensation(CompensationDecision),
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
            Message::Compensation(c) => &c.operator_id,
        }
    }

    /// Its signature, when it was signed, and the text its signature covers by hash.
    fn signed(&self) -> (&str, i64, &str) {
        match self {
            Message::Decision(d) => (&d.signature, d.signed_at, &d.comment),
            Message::Changes(c) => (&c.signature, c.signed_at, &c.comment),
            Message::Choice(c) => (&c.signature, c.signed_at, &c.comment),
            Message::Operator(a) => (&a.signature, a.signed_at, &a.reason),
            Message::Override(o) => (&o.signature, o.signed_at, &o.reason),
            Message::Compensation(c) => (&c.signature, c.signed_at, &c.reason),
        }
    }

    /// The role it decides in, for decisions.
    fn role(&self) -> Option<Role> {
        match self {
            Message::Decision(d) => Some(d.role()),
            Message::Changes(c) => Some(c.role()),
            _ => None,
        }
    }

    /// The revision it names (0: the current one).
    fn revision(&self) -> u32 {
        match self {
            Message::Decision(d) => d.revision,
            Message::Changes(c) => c.revision,
            _ => 0,
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
        Kind::RequestChanges => {
            let c: ChangeRequest = decode(kind, input)?;
            required("approver_id", &c.approver_id)?;
            Message::Changes(Box::new(c))
        }
        Kind::ChooseRemediation => {
            let c: RemediationChoice = decode(kind, input)?;
            required("chosen_by", &c.chosen_by)?;
            Message::Choice(c)
        }
        Kind::Cancel | Kind::Pause | Kind::Resume => {
            let a: OperatorAction = decode(kind, input)?;
            required("operator_id", &a.operator_id)?;
            Message::Operator(a)
        }
        Kind::Override => {
            let o: GateOverride = decode(kind, input)?;
            required("operator_id", &o.operator_id)?;
            Message::Override(o)
        }
        Kind::ResolveCompensation => {
            let c: CompensationDecision = decode(kind, input)?;
            required("operator_id", &c.operator_id)?;
            if c.resolution() == CompensationResolution::Unspecified {
                return Err(Refusal::Required("resolution"));
            }
            Message::Compensation(c)
        }
    })
}

impl PromotionWorkflow {
    /// What a message is about in the current state, as its signature must name it
    /// ([`signing::subject`]).
    fn subject_of(&self, kind: Kind, msg: &Message) -> String {
        signing::subject(&match msg {
            Message::Decision(d) => return self.decision_subject(d.role(), kind == Kind::Approve),
            Message::Changes(_) => Subject::Approval,
            Message::Choice(c) => Subject::Remediation { region: &c.region_id, option: &c.option_id },
            Message::Operator(_) => Subject::Promotion,
            Message::Override(o) => Subject::Override(&o.region_id),
            Message::Compensation(c) => Subject::Compensation(match c.resolution() {
                CompensationResolution::Accept => "accept",
                _ => "retry",
            }),
        })
    }

    /// The subject an approval decision in `role` names now: what [`Self::apply_decision`]
    /// would apply it to.
    pub(crate) fn decision_subject(&self, role: Role, approve: bool) -> String {
        match self.route(role, approve) {
            apply::Route::FundingRelease => signing::subject(&Subject::FundingHold),
            apply::Route::Transfers(ids) => signing::subject(&Subject::Transfers(&ids)),
            apply::Route::Approval => signing::subject(&Subject::Approval),
        }
    }

    /// Checks a message's signature against the directory ([`signing::check`]): what to keep
    /// in the audit trail, `None` for an unsigned message the policy accepts, or why it is
    /// refused. `now` is unknown in an update validator (no staleness check there; the handler
    /// checks it).
    fn verify(&self, now: Option<i64>, kind: Kind, msg: &Message) -> Result<Option<Verified>, Refusal> {
        let Some(policy) = self.policy() else { return Ok(None) };
        let (signature, signed_at, comment) = msg.signed();
        let actor = msg.actor();
        // Decisions name the revision they decide on; the other messages name none of their own
        // and are signed for the current one.
        let revision = match msg.revision() {
            _ if msg.role().is_none() => self.revision,
            0 if !signature.is_empty() => return Err(signing::SignatureError::NoRevision.into()),
            0 => self.revision,
            r => r,
        };
        let check = signing::Check {
            public_key: policy.approver_keys.get(actor).map(String::as_str),
            required: policy.require_signatures,
            current_revision: self.revision,
            now,
            max_age: policy.durations.signature_max_age.0.as_secs() as i64,
            used: &self.used_signatures,
        };
        let subject = self.subject_of(kind, msg);
        let workflow_id = crate::api::workflow_id(&self.spec.promotion_id);
        let signed = signing::Signed {
            workflow_id: &workflow_id,
            first_run_id: &self.first_run_id,
            message: kind.name(),
            subject: &subject,
            revision,
            actor,
            role: msg.role().map_or("-", |r| r.as_str_name()),
            comment,
            signed_at,
        };
        Ok(signing::check(&check, &signed, signature)?)
    }

    /// The update validator of every message: refuses what does not parse and what is not
    /// signed as the policy requires, before anything is written to history.
    pub(crate) fn validate(&self, kind: Kind, input: &serde_json::Value) -> Result<(), HandlerError> {
        let msg = parse(kind, input)?;
        self.verify(None, kind, &msg)?;
        Ok(())
    }

    /// Parse → check → apply, with what the outside checks found (`outside`); every refusal is
    /// audited. `signal` only changes the wording of a malformed message's audit entry
    /// (`<name>-ignored`: nobody is there to answer).
    fn receive_now(
        &mut self,
        now: i64,
        kind: Kind,
        input: &serde_json::Value,
        outside: Result<(), Refusal>,
        signal: bool,
    ) -> Result<String, Refusal> {
        let msg = match parse(kind, input) {
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
                self.record_refusal(now, "unknown", &what, detail);
                return Err(why);
            }
        };
        let applied = outside.and_then(|()| {
            let verified = self.verify(Some(now), kind, &msg)?;
            self.apply(now, kind, msg_clone(&msg), verified)
        });
        if let Err(why) = &applied {
            let actor = msg.actor().trim();
            let who = if actor.is_empty() { "unknown" } else { actor };
            self.record_refusal(now, who, &format!("{}-refused", action(kind)), why.to_string());
        }
        applied
    }
}

/// A copy of a parsed message (the state applies it by value).
fn msg_clone(m: &Message) -> Message {
    match m {
        Message::Decision(d) => Message::Decision(d.clone()),
        Message::Changes(c) => Message::Changes(c.clone()),
        Message::Choice(c) => Message::Choice(c.clone()),
        Message::Operator(a) => Message::Operator(a.clone()),
        Message::Override(o) => Message::Override(o.clone()),
        Message::Compensation(c) => Message::Compensation(c.clone()),
    }
}

/// A signal: applied (in arrival order), queued until the policy is loaded, or refused with an
/// audit entry.
pub(crate) async fn on_signal(ctx: &Ctx, kind: Kind, input: serde_json::Value) {
    let t = now(ctx);
    let queued = ctx.state_mut(|s| {
        let early = s.policy.is_none() && s.stage != Stage::Done && s.input_error.is_none();
        if early {
            s.record(
                t,
                "unknown",
                &format!("{}-queued", action(kind)),
                "received before the promotion loaded its policy; applied right after".into(),
            );
            s.early.push((kind, input.clone()));
        }
        early
    });
    if queued {
        publish(ctx);
        return;
    }
    let _ = receive(ctx, kind, input, true).await;
}

/// An update: applied or refused, and answered either way.
pub(crate) async fn on_update(
    ctx: &Ctx,
    kind: Kind,
    input: serde_json::Value,
) -> Result<ActionResult, HandlerError> {
    let r = receive(ctx, kind, input, false).await;
    let revision = ctx.state(|s| s.revision);
    Ok(ActionResult { accepted: true, message: r?, revision })
}

/// Applies the messages queued before the policy loaded, in arrival order.
pub(crate) async fn apply_early(ctx: &Ctx) -> usize {
    let early = ctx.state_mut(|s| std::mem::take(&mut s.early));
    for (kind, input) in &early {
        let _ = receive(ctx, *kind, input.clone(), true).await;
    }
    early.len()
}

/// Parse → check → verify outside → apply, in arrival order (a message waits for the ones
/// before it to be applied: its own checks may take a call to the systems).
pub(crate) async fn receive(
    ctx: &Ctx,
    kind: Kind,
    input: serde_json::Value,
    signal: bool,
) -> Result<String, Refusal> {
    let ticket = ctx.state_mut(|s| {
        s.tickets.taken += 1;
        s.tickets.taken
    });
    let applied = receive_in_turn(ctx, kind, input, signal, ticket).await;
    // The last change a handler makes to the state: it wakes a checkpoint waiting for the
    // messages in flight ([`super::carry::checkpoint`]).
    ctx.state_mut(|s| s.tickets.done += 1);
    applied
}

async fn receive_in_turn(
    ctx: &Ctx,
    kind: Kind,
    input: serde_json::Value,
    signal: bool,
    ticket: u64,
) -> Result<String, Refusal> {
    let t = now(ctx);
    // The pure checks first: a message refused by them costs no call to the systems.
    let checked = ctx.state(|s| {
        parse(kind, &input).and_then(|m| s.verify(Some(t), kind, &m).map(|verified| (m, verified)))
    });
    let outside = match &checked {
        Ok((msg, verified)) => verify_outside(ctx, msg, verified.as_ref()).await,
        Err(_) => Ok(()),
    };
    // Applied in arrival order; a cancelled wait (the run ending) applies it at once.
    let _ = ctx.wait_condition(move |s: &PromotionWorkflow| s.tickets.applied + 1 >= ticket).await;
    let t = now(ctx);
    let applied = ctx.state_mut(|s| {
        let r = s.receive_now(t, kind, &input, outside, signal);
        s.tickets.applied += 1;
        r
    });
    publish(ctx);
    if ctx.state(|s| s.outbox.len() >= events::HANDLER_FLUSH_AT) {
        events::flush(ctx).await;
    }
    applied
}

/// What only the systems know: whether the signing key was revoked, and — for a change request
/// — whether the amended spec passes intake (master data, the approval lead time, the calendar).
async fn verify_outside(ctx: &Ctx, msg: &Message, verified: Option<&Verified>) -> Result<(), Refusal> {
    if let Some(v) = verified {
        let input = KeyStatusInput { employee_id: msg.actor().to_owned(), public_key: v.public_key.clone() };
        let status = ctx
            .execute_local_activity(
                A::key_status,
                input,
                call_options("check the signing key is not revoked"),
            )
            .await
            .map_err(|e| Refusal::DirectoryUnavailable(e.to_string()))?;
        if status.revoked {
            return Err(Refusal::KeyRevoked {
                who: msg.actor().to_owned(),
                since: status.revoked_at,
                reason: status.reason,
            });
        }
    }
    if let Message::Changes(c) = msg {
        let Some(amended) = &c.amended_spec else { return Err(Refusal::Required("amended_spec")) };
        let Some(policy) = ctx.state(|s| s.policy.clone()) else { return Err(Refusal::Loading) };
        let now = business_now(ctx, &policy);
        // The shape first: a spec that does not parse into a plan needs no call.
        if let Err(problems) = plan::validate_spec(amended, now) {
            return Err(Refusal::InvalidAmendment(plan::describe(&problems)));
        }
        let input = IntakeInput {
            spec: amended.clone(),
            now,
            approval_lead_secs: policy.durations.approval_deadline_before_launch.0.as_secs() as i64,
            calendar: CalendarCheck::DryRun,
        };
        let found = ctx
            .execute_local_activity(
                A::validate_spec,
                input,
                call_options("check the amended spec as intake would"),
            )
            .await
            .map_err(|e| Refusal::SystemsUnavailable(e.to_string()))?;
        if !found.problems.is_empty() {
            return Err(Refusal::InvalidAmendment(plan::describe(&found.problems)));
        }
    }
    Ok(())
}

/// Options of a message's check in the systems: short, a few quick tries within 5 s (the sender
/// is waiting for the answer, and so are the messages behind it; when the systems do not answer
/// in that time the message is refused, saying so).
fn call_options(summary: &str) -> LocalActivityOptions {
    let mut o = LocalActivityOptions::default();
    o.start_to_close_timeout = Some(Duration::from_secs(3));
    o.schedule_to_close_timeout = Some(Duration::from_secs(5));
    o.retry_policy = retry(3);
    o.summary = Some(summary.to_owned());
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    const FIELDS: [&str; 13] = [
        "approverId",
        "role",
        "revision",
        "comment",
        "signature",
        "signedAt",
        "amendedSpec",
        "regionId",
        "optionId",
        "chosenBy",
        "operatorId",
        "reason",
        "resolution",
    ];

    /// Any value a client could put in a field, the type limits among them.
    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            ".{0,24}".prop_map(Value::from),
            prop::sample::select(vec![
                json!("9223372036854775808"),
                json!("-9223372036854775809"),
                json!("4294967296"),
                json!("-1"),
                json!("ROLE_FINANCE"),
                json!("COMPENSATION_RESOLUTION_ACCEPT"),
                json!(1e308),
                json!([]),
                json!({"promotionId": 7}),
            ]),
        ]
    }

    proptest! {
        /// Parsing any object of any field values answers: the message, or a refusal that says
        /// why — naming the field when one does not fit.
        #[test]
        fn any_field_values_get_a_message_or_a_named_refusal(
            kind in 0..Kind::ALL.len(),
            fields in prop::collection::btree_map(prop::sample::select(FIELDS.to_vec()), value(), 0..8),
        ) {
            let kind = Kind::ALL[kind];
            let input = Value::Object(fields.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect());
            match parse(kind, &input) {
                Ok(_) => {}
                Err(Refusal::Malformed { detail, .. }) => {
                    prop_assert!(
                        fields.keys().any(|k| detail.starts_with(k)) || !detail.contains(": "),
                        "a refusal that names no field of {input}: {detail}"
                    );
                }
                Err(other) => prop_assert!(!other.to_string().is_empty()),
            }
        }
    }
}
