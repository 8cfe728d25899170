//! Approval: the roles the policy requires for this revision, then a wait for their decisions —
//! with reminder and escalation timers — until every role approved (→ scheduling), someone
//! rejected (→ REJECTED), changes were requested (→ a new revision from intake), or the deadline
//! passed (→ EXPIRED).

use super::{Stop, enter, past, remediation::approval_deadline};
use crate::{
    decisions::exception,
    decisions::{self, role_name},
    plan::Plan,
    policy::Policy,
    workflow::{
        carry,
        publish::publish,
        state::{Ctx, PromotionWorkflow},
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

/// Requires the policy's approvals for this revision and waits for them. A run continued as new
/// while it waited resumes the wait, its reminder and escalation where they were.
pub async fn run(ctx: &Ctx, policy: &Policy, plan: &Plan) -> Result<Verdict, Stop> {
    if past(ctx, Stage::Approval) {
        return Ok(Verdict::Approved);
    }
    if ctx.state(|s| s.stage != Stage::Approval) {
        require(ctx);
    }
    let settled = |s: &PromotionWorkflow| {
        s.rejection.is_some() || s.change_request.is_some() || s.pending_roles().is_empty()
    };
    if wait_one_alarm_at_a_time(ctx, policy, plan, settled).await? {
        return Err(Stop::Expired("approvals were not complete before the approval deadline".into()));
    }
    let t = now(ctx);
    let verdict = ctx.state_mut(|s| {
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
            s.progress = Default::default();
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
    })?;
    if matches!(verdict, Verdict::ChangesRequested) {
        // The new revision starts at intake.
        enter(ctx, Stage::Intake);
    }
    Ok(verdict)
}

/// Enters the stage with the roles the policy requires for this revision.
fn require(ctx: &Ctx) {
    enter(ctx, Stage::Approval);
    let t = now(ctx);
    ctx.state_mut(|s| {
        let assessment = s.assessment.clone().unwrap_or_default();
        s.requirements = decisions::required_approvals(&assessment, s.progress.remediated)
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
}

/// One timer at a time, to the next of the reminder, the escalation and the deadline that is
/// still to come (an approval that comes before the reminder costs one timer, not three started
/// and three cancelled). The reminder and escalation count from when approval was requested, so a
/// run continued as new keeps them where they were. `Ok(true)` when the deadline passed.
async fn wait_one_alarm_at_a_time(
    ctx: &Ctx,
    policy: &Policy,
    plan: &Plan,
    settled: impl Fn(&PromotionWorkflow) -> bool + Copy,
) -> Result<bool, Stop> {
    let d = &policy.durations;
    loop {
        if ctx.state(settled) {
            return Ok(false);
        }
        carry::checkpoint(ctx).await?;
        let t = now(ctx);
        let (asked, reminded, escalated) = ctx
            .state(|s| (s.approval_requested_at().unwrap_or(t), s.progress.reminded, s.progress.escalated));
        // From now, the wall time until `asked` + the business duration `after`.
        let from_asked = |after: std::time::Duration| {
            let at = asked.saturating_add(policy.scaled(after).as_secs() as i64);
            std::time::Duration::from_secs(at.saturating_sub(t).max(0) as u64)
        };
        let mut due = vec![(
            until(ctx, policy, approval_deadline(plan, policy)),
            EXPIRY,
            "approval deadline".to_owned(),
        )];
        if !reminded {
            due.push((
                from_asked(d.approval_reminder.0),
                REMINDER,
                format!("approval reminder ({})", d.approval_reminder),
            ));
        }
        if !escalated {
            let summary = format!("approval escalation ({})", d.approval_escalation);
            due.push((from_asked(d.approval_escalation.0), ESCALATION, summary));
        }
        due.sort_by_key(|(at, which, _)| (*at, *which));
        let (at, which, summary) = due.swap_remove(0);
        let mut alarm = [Alarm::start(ctx, at, summary)];
        match wait::wait(ctx, Nothing, &mut alarm, carry::or_due(ctx, settled)).await? {
            Woke::Rang if which == EXPIRY => return Ok(true),
            Woke::Rang if which == REMINDER => remind(ctx),
            Woke::Rang => escalate(ctx),
            _ => alarm[0].stop(),
        }
    }
}

fn remind(ctx: &Ctx) {
    let t = now(ctx);
    ctx.state_mut(|s| {
        s.progress.reminded = true;
        let pending = s.pending_roles().join(", ");
        s.record(t, "system", "approval-reminder", format!("still waiting for {pending}"));
    });
    publish(ctx);
}

fn escalate(ctx: &Ctx) {
    let t = now(ctx);
    ctx.state_mut(|s| {
        s.progress.escalated = true;
        let pending = s.pending_roles().join(", ");
        let revenue_at_risk = s.forecast_revenue();
        s.raise(
            t,
            exception(
                format!("approval-sla-r{}", s.revision),
                ExceptionKind::ApprovalSla,
                Severity::Medium,
                Role::Merchandising,
                revenue_at_risk,
                format!("approvals overdue: waiting for {pending}"),
            ),
        );
    });
    publish(ctx);
}
