//! Approval: the roles the policy requires for this revision, then a wait for their decisions —
//! with reminder and escalation timers — until every role approved (→ scheduling), someone
//! rejected (→ REJECTED), changes were requested (→ a new revision from intake), or the deadline
//! passed (→ EXPIRED).

use super::{Stop, enter, remediation::approval_deadline};
use crate::{
    decisions::{self, role_name},
    plan::Plan,
    policy::Policy,
    workflow::{
        state::{PromotionWorkflow, publish},
        wait::{self, Alarm, Ctx, Nothing, Woke, now, until},
    },
};
use promo_contracts::promo::v1::*;

/// How approval ended, when the lifecycle goes on.
pub enum Verdict {
    /// Every required role approved.
    Approved,
    /// Changes were requested: the new revision is in the state.
    ChangesRequested,
}

const EXPIRY: usize = 0;
const REMINDER: usize = 1;
const ESCALATION: usize = 2;

/// Requires the policy's approvals for this revision and waits for them.
pub async fn run(ctx: &Ctx, policy: &Policy, plan: &Plan, remediated: bool) -> Result<Verdict, Stop> {
    enter(ctx, Stage::Approval);
    let t = now(ctx);
    ctx.state_mut(|s| {
        let assessment = s.assessment.clone().unwrap_or_default();
        s.requirements = decisions::required_approvals(&assessment, remediated)
            .into_iter()
            .map(|(role, reason)| ApprovalRequirement { role: role as i32, reason, ..Default::default() })
            .collect();
        let roles = s.pending_roles().join(", ");
        s.record(t, "policy", "approvals-required", roles);
        for r in s.requirements.clone() {
            s.event(t, promo_contracts::retail::v1::ProcessEventKind::ApprovalRequested, |e| {
                e.role = decisions::role_name(r.role()).to_owned();
                e.detail = r.reason.clone();
            });
        }
    });
    publish(ctx);

    let d = &policy.durations;
    let mut alarms = [
        Alarm::start(ctx, until(ctx, policy, approval_deadline(plan, policy)), "approval deadline".into()),
        Alarm::start(
            ctx,
            policy.scaled(d.approval_reminder.0),
            format!("approval reminder ({})", d.approval_reminder),
        ),
        Alarm::start(
            ctx,
            policy.scaled(d.approval_escalation.0),
            format!("approval escalation ({})", d.approval_escalation),
        ),
    ];
    let settled = |s: &PromotionWorkflow| {
        s.rejection.is_some() || s.change_request.is_some() || s.pending_roles().is_empty()
    };
    let expired = loop {
        match wait::wait(ctx, Nothing, &mut alarms, settled).await? {
            Woke::Rang(EXPIRY) => break true,
            Woke::Rang(REMINDER) => remind(ctx),
            Woke::Rang(ESCALATION) => escalate(ctx),
            _ => break false,
        }
    };
    for a in &mut alarms {
        a.stop();
    }
    if expired {
        return Err(Stop::Expired("approvals were not complete before the approval deadline".into()));
    }
    let t = now(ctx);
    ctx.state_mut(|s| {
        s.resolve(t, |e| e.kind() == ExceptionKind::ApprovalSla, "approvals settled");
        if let Some(r) = &s.rejection {
            return Err(Stop::Rejected(format!(
                "rejected by {} ({}): {}",
                r.approver_id,
                role_name(r.role()),
                r.comment
            )));
        }
        if let Some(c) = s.change_request.take() {
            s.revision += 1;
            s.spec = c.amended_spec.clone().unwrap_or_default();
            s.requirements.clear();
            let detail = format!("revision {} from {}'s change request", s.revision, c.approver_id);
            s.record(t, "system", "new-revision", detail);
            return Ok(Verdict::ChangesRequested);
        }
        s.resolve(
            t,
            |e| matches!(e.kind(), ExceptionKind::MarginErosion | ExceptionKind::FundingMissing),
            "approved by finance",
        );
        Ok(Verdict::Approved)
    })
}

fn remind(ctx: &Ctx) {
    let t = now(ctx);
    ctx.state_mut(|s| {
        let pending = s.pending_roles().join(", ");
        s.record(t, "system", "approval-reminder", format!("still waiting for {pending}"));
    });
    publish(ctx);
}

fn escalate(ctx: &Ctx) {
    let t = now(ctx);
    ctx.state_mut(|s| {
        let pending = s.pending_roles().join(", ");
        let revenue_at_risk = s
            .assessment
            .as_ref()
            .and_then(|a| a.margin.as_ref())
            .map(|m| m.forecast_revenue.clone())
            .unwrap_or_default();
        s.raise(
            t,
            PromotionException {
                exception_id: format!("approval-sla-r{}", s.revision),
                kind: ExceptionKind::ApprovalSla as i32,
                severity: Severity::Medium as i32,
                owner_role: Role::Merchandising as i32,
                revenue_at_risk,
                status: ExceptionStatus::Open as i32,
                detail: format!("approvals overdue: waiting for {pending}"),
                ..Default::default()
            },
        );
    });
    publish(ctx);
}
