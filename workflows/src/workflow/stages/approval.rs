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
        state::{Ctx, PromotionWorkflow, publish},
        time::{now, until},
        wait::{self, Alarm, Nothing, Woke},
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

    let settled = |s: &PromotionWorkflow| {
        s.rejection.is_some() || s.change_request.is_some() || s.pending_roles().is_empty()
    };
    let expired = wait_one_alarm_at_a_time(ctx, policy, plan, settled).await?;
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

/// How long from now until the approval deadline, the reminder and the escalation (indexed
/// [`EXPIRY`], [`REMINDER`], [`ESCALATION`]), each with its timer's summary.
fn alarms_due(ctx: &Ctx, policy: &Policy, plan: &Plan) -> [(std::time::Duration, String); 3] {
    let d = &policy.durations;
    [
        (until(ctx, policy, approval_deadline(plan, policy)), "approval deadline".into()),
        (policy.scaled(d.approval_reminder.0), format!("approval reminder ({})", d.approval_reminder)),
        (policy.scaled(d.approval_escalation.0), format!("approval escalation ({})", d.approval_escalation)),
    ]
}

/// One timer at a time, to the next of the reminder, the escalation and the deadline in time
/// order (an approval that comes before the reminder costs one timer, not three started and
/// three cancelled). `Ok(true)` when the deadline passed.
async fn wait_one_alarm_at_a_time(
    ctx: &Ctx,
    policy: &Policy,
    plan: &Plan,
    settled: impl Fn(&PromotionWorkflow) -> bool,
) -> Result<bool, Stop> {
    let start = ctx.workflow_time().unwrap_or(std::time::UNIX_EPOCH);
    let mut due = [EXPIRY, REMINDER, ESCALATION]
        .into_iter()
        .zip(alarms_due(ctx, policy, plan))
        .map(|(which, (at, summary))| (at, which, summary))
        .collect::<Vec<_>>();
    due.sort_by_key(|(at, which, _)| (*at, *which));
    for (at, which, summary) in due {
        let elapsed = ctx.workflow_time().and_then(|t| t.duration_since(start).ok()).unwrap_or_default();
        let mut alarm = [Alarm::start(ctx, at.saturating_sub(elapsed), summary)];
        match wait::wait(ctx, Nothing, &mut alarm, &settled).await? {
            Woke::Rang if which == EXPIRY => return Ok(true),
            Woke::Rang if which == REMINDER => remind(ctx),
            Woke::Rang => escalate(ctx),
            _ => {
                alarm[0].stop();
                return Ok(false);
            }
        }
    }
    // The deadline is one of the three, and ringing it returned above.
    Ok(true)
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
