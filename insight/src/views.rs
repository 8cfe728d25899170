//! The views: pure functions of a [`Snapshot`] (and the [`Sla`] thresholds), each what one
//! panel of the dashboard draws, one form of `promo ask` answers from, or one family of the
//! worker's gauges reports.

use crate::snapshot::Snapshot;
use promo_contracts::{
    promo::v1::{PromotionException, Stage},
    retail::v1::{ProcessEvent, ProcessEventKind},
};
use promo_workflows::{
    decisions::{role_name, stage_name},
    policy::Policy,
};
use rust_decimal::Decimal;
use serde::Serialize;
use std::{collections::BTreeMap, str::FromStr, time::Duration};

/// Thresholds past which a wait is flagged: the policy's approval reminder and escalation (at
/// its time scale), and the age at which an open exception is overdue.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sla {
    /// Approval age (wall seconds) at which the reminder is due.
    pub approval_reminder: i64,
    /// Approval age at which it is escalated.
    pub approval_escalation: i64,
    /// Exception age at which it is overdue.
    pub exception_age: i64,
}

impl Sla {
    /// From a policy and the exception threshold (wall time).
    pub fn from_policy(p: &Policy, exception_age: Duration) -> Self {
        Self {
            approval_reminder: p.scaled(p.durations.approval_reminder.0).as_secs() as i64,
            approval_escalation: p.scaled(p.durations.approval_escalation.0).as_secs() as i64,
            exception_age: exception_age.as_secs() as i64,
        }
    }
}

/// Number of running promotions per stage, in lifecycle order, and the finished ones.
pub fn by_stage(s: &Snapshot) -> Vec<(String, usize)> {
    let mut counts: BTreeMap<i32, usize> = BTreeMap::new();
    let mut finished = 0;
    for p in &s.promotions {
        if p.execution_status != "running" {
            finished += 1;
            continue;
        }
        let stage = p.stage.as_deref().and_then(Stage::from_str_name_short).unwrap_or(Stage::Intake);
        *counts.entry(stage as i32).or_default() += 1;
    }
    let mut out: Vec<(String, usize)> = counts
        .into_iter()
        .map(|(k, n)| (stage_name(Stage::try_from(k).unwrap_or(Stage::Intake)).to_owned(), n))
        .collect();
    out.push(("FINISHED".into(), finished));
    out
}

/// Stage names as search attributes and events carry them (`APPROVAL`).
trait ShortName: Sized {
    fn from_str_name_short(s: &str) -> Option<Self>;
}

impl ShortName for Stage {
    fn from_str_name_short(s: &str) -> Option<Self> {
        Stage::from_str_name(&format!("STAGE_{}", s.to_ascii_uppercase()))
    }
}

/// An approval still missing on a running promotion.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PendingApproval {
    /// Promotion id.
    pub promotion_id: String,
    /// Role, e.g. `FINANCE`.
    pub role: String,
    /// Why the role is required.
    pub reason: String,
    /// Seconds since the approval was requested.
    pub age: i64,
    /// `ok`, `reminder due` or `escalated` ([`Sla`]).
    pub sla: &'static str,
}

/// Approvals pending on running promotions, oldest first.
pub fn pending_approvals(s: &Snapshot, sla: &Sla) -> Vec<PendingApproval> {
    let mut out = Vec::new();
    for (id, st) in &s.statuses {
        if st.stage() != Stage::Approval {
            continue;
        }
        let asked = st
            .timeline
            .iter()
            .rev()
            .find(|e| e.stage() == Stage::Approval)
            .and_then(|e| e.entered_at.as_ref())
            .map_or(s.now, |t| t.seconds);
        let age = (s.now - asked).max(0);
        for r in st.approvals.iter().filter(|r| r.approved_by.is_empty()) {
            out.push(PendingApproval {
                promotion_id: id.clone(),
                role: role_name(r.role()).to_owned(),
                reason: r.reason.clone(),
                age,
                sla: if age >= sla.approval_escalation {
                    "escalated"
                } else if age >= sla.approval_reminder {
                    "reminder due"
                } else {
                    "ok"
                },
            });
        }
    }
    out.sort_by(|a, b| b.age.cmp(&a.age).then(a.promotion_id.cmp(&b.promotion_id)));
    out
}

/// An open exception in the queue.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueuedException {
    /// Promotion id.
    pub promotion_id: String,
    /// Exception id.
    pub exception_id: String,
    /// Kind, e.g. `CHANNEL_SYNC`.
    pub kind: String,
    /// Owner role.
    pub owner: String,
    /// Region, if any.
    pub region_id: String,
    /// Revenue at risk.
    pub revenue_at_risk: Decimal,
    /// Seconds since it was raised.
    pub age: i64,
    /// Past the exception age threshold.
    pub overdue: bool,
    /// What it says.
    pub detail: String,
}

fn short_kind(e: &PromotionException) -> String {
    e.kind().as_str_name().trim_start_matches("EXCEPTION_KIND_").to_owned()
}

fn money(s: &str) -> Decimal {
    Decimal::from_str(s.trim()).unwrap_or_default()
}

/// Every open exception of every running promotion, ranked by revenue at risk (then age).
pub fn exception_queue(s: &Snapshot, sla: &Sla) -> Vec<QueuedException> {
    let mut out: Vec<QueuedException> = s
        .statuses
        .iter()
        .flat_map(|(id, st)| {
            st.open_exceptions.iter().map(move |e| {
                let age = e.raised_at.as_ref().map_or(0, |t| (s.now - t.seconds).max(0));
                QueuedException {
                    promotion_id: id.clone(),
                    exception_id: e.exception_id.clone(),
                    kind: short_kind(e),
                    owner: role_name(e.owner_role()).to_owned(),
                    region_id: e.region_id.clone(),
                    revenue_at_risk: money(&e.revenue_at_risk),
                    age,
                    overdue: age >= sla.exception_age,
                    detail: e.detail.clone(),
                }
            })
        })
        .collect();
    out.sort_by(|a, b| b.revenue_at_risk.cmp(&a.revenue_at_risk).then(b.age.cmp(&a.age)));
    out
}

/// One region of a running promotion.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionCell {
    /// Region.
    pub region_id: String,
    /// State, e.g. `READY`, `ACTIVE`.
    pub state: String,
    /// Channels still to acknowledge.
    pub awaiting: usize,
    /// Note.
    pub note: String,
}

/// Regional readiness of each running promotion.
pub fn readiness(s: &Snapshot) -> Vec<(String, String, Vec<RegionCell>)> {
    s.statuses
        .iter()
        .map(|(id, st)| {
            let cells = st
                .regions
                .iter()
                .map(|r| RegionCell {
                    region_id: r.region_id.clone(),
                    state: r.state().as_str_name().trim_start_matches("REGION_STATE_").to_owned(),
                    awaiting: r.awaiting_ack.len(),
                    note: r.note.clone(),
                })
                .collect();
            (id.clone(), stage_name(st.stage()).to_owned(), cells)
        })
        .collect()
}

/// p50 / p95 (nearest rank) and count of a sample, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct Spread {
    /// Observations.
    pub n: usize,
    /// Median.
    pub p50: i64,
    /// 95th percentile.
    pub p95: i64,
}

impl Spread {
    /// The spread of `samples`: the one percentile rule of the read model. Nearest rank (the
    /// smallest observation with at least q of the sample at or below it), so every figure
    /// shown is a wait that really happened, in whole seconds, rather than an interpolation
    /// between two of them.
    pub fn of(mut samples: Vec<i64>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let n = samples.len();
        let at = |q: f64| samples[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
        Self { n, p50: at(0.50), p95: at(0.95) }
    }
}

/// Time spent in each stage across promotions (from one stage entry to the next in the same
/// run), in lifecycle order.
pub fn cycle_times(events: &[ProcessEvent]) -> Vec<(String, Spread)> {
    let mut runs: BTreeMap<&str, Vec<&ProcessEvent>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.kind() == ProcessEventKind::StageEntered) {
        runs.entry(e.run_id.as_str()).or_default().push(e);
    }
    let mut by_stage: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for entries in runs.values() {
        for pair in entries.windows(2) {
            let secs = |e: &ProcessEvent| e.at.as_ref().map_or(0, |t| t.seconds);
            let stage = Stage::from_str_name_short(&pair[0].stage).unwrap_or(Stage::Intake);
            by_stage.entry(stage as i32).or_default().push((secs(pair[1]) - secs(pair[0])).max(0));
        }
    }
    by_stage
        .into_iter()
        .map(|(k, v)| (stage_name(Stage::try_from(k).unwrap_or(Stage::Intake)).to_owned(), Spread::of(v)))
        .collect()
}

/// How long each role's approval decisions took (from the request to the decision), and how
/// many of its approvals are pending now.
pub fn approval_waits(events: &[ProcessEvent], pending: &[PendingApproval]) -> Vec<(String, Spread, usize)> {
    let mut by_role: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.kind() == ProcessEventKind::ApprovalDecided) {
        by_role.entry(e.role.clone()).or_default().push(e.wait_seconds);
    }
    for p in pending {
        by_role.entry(p.role.clone()).or_default();
    }
    by_role
        .into_iter()
        .map(|(role, waits)| {
            let n = pending.iter().filter(|p| p.role == role).count();
            (role, Spread::of(waits), n)
        })
        .collect()
}

/// The post-event figures of each reported promotion, most recent last.
pub fn kpis(events: &[ProcessEvent]) -> Vec<(String, BTreeMap<String, String>)> {
    events
        .iter()
        .filter(|e| e.kind() == ProcessEventKind::Report)
        .map(|e| (e.promotion_id.clone(), e.kpis.iter().map(|(k, v)| (k.clone(), v.clone())).collect()))
        .collect()
}

/// Revenue at risk of the open exceptions raised since `since` (Unix seconds).
pub fn revenue_at_risk_since(queue: &[QueuedException], now: i64, since: i64) -> Decimal {
    queue.iter().filter(|q| now - q.age >= since).map(|q| q.revenue_at_risk).sum()
}

/// A running region is stuck when it is not live and not finished.
pub fn stuck(state: &str) -> bool {
    !matches!(state, "ACTIVE" | "CLOSED" | "DROPPED")
}

#[cfg(test)]
mod tests {
    use super::*;
    use promo_contracts::{pbjson_types::Timestamp, promo::v1::PromotionStatus};

    fn at(s: i64) -> Option<Timestamp> {
        Some(Timestamp { seconds: s, nanos: 0 })
    }

    fn stage_event(run: &str, stage: &str, t: i64) -> ProcessEvent {
        ProcessEvent {
            run_id: run.into(),
            kind: ProcessEventKind::StageEntered as i32,
            stage: stage.into(),
            at: at(t),
            ..Default::default()
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        assert_eq!(Spread::of(vec![]), Spread::default());
        assert_eq!(Spread::of(vec![7]), Spread { n: 1, p50: 7, p95: 7 });
        let s = Spread::of((1..=100).rev().collect());
        assert_eq!((s.n, s.p50, s.p95), (100, 50, 95));
        assert_eq!(Spread::of(vec![10, 1, 5, 3]).p50, 3);
    }

    #[test]
    fn cycle_times_come_from_consecutive_stage_entries_of_one_run() {
        let events = vec![
            stage_event("a", "INTAKE", 0),
            stage_event("b", "INTAKE", 100),
            stage_event("a", "APPROVAL", 10),
            stage_event("b", "APPROVAL", 130),
            stage_event("a", "SCHEDULING", 70),
            stage_event("b", "SCHEDULING", 330),
            // A run still in approval: its open stage is not a cycle time yet.
            stage_event("c", "APPROVAL", 500),
        ];
        let ct = cycle_times(&events);
        let get = |s: &str| ct.iter().find(|(n, _)| n == s).map(|(_, x)| *x).unwrap();
        assert_eq!(get("INTAKE"), Spread { n: 2, p50: 10, p95: 30 });
        assert_eq!(get("APPROVAL"), Spread { n: 2, p50: 60, p95: 200 });
        assert!(ct.iter().all(|(n, _)| n != "SCHEDULING"), "{ct:?}");
        assert_eq!(ct[0].0, "INTAKE", "lifecycle order");
    }

    #[test]
    fn the_queue_ranks_by_revenue_at_risk_and_flags_overdue() {
        let exc = |id: &str, rev: &str, raised: i64| PromotionException {
            exception_id: id.into(),
            revenue_at_risk: rev.into(),
            raised_at: at(raised),
            ..Default::default()
        };
        let mut s = Snapshot { now: 1000, ..Default::default() };
        s.statuses.insert(
            "P1".into(),
            PromotionStatus {
                open_exceptions: vec![exc("a", "10.5", 990), exc("b", "900", 100)],
                ..Default::default()
            },
        );
        s.statuses.insert(
            "P2".into(),
            PromotionStatus { open_exceptions: vec![exc("c", "50", 0)], ..Default::default() },
        );
        let sla = Sla { approval_reminder: 10, approval_escalation: 20, exception_age: 500 };
        let q = exception_queue(&s, &sla);
        let ids: Vec<&str> = q.iter().map(|x| x.exception_id.as_str()).collect();
        assert_eq!(ids, ["b", "c", "a"]);
        assert_eq!(q.iter().map(|x| x.overdue).collect::<Vec<_>>(), [true, true, false]);
        assert_eq!(revenue_at_risk_since(&q, 1000, 950), Decimal::from_str("10.5").unwrap());
    }

    #[test]
    fn pending_approvals_age_from_the_approval_stage_and_meet_the_sla() {
        use promo_contracts::promo::v1::{ApprovalRequirement, Role, StageEntry};
        let st = PromotionStatus {
            stage: Stage::Approval as i32,
            timeline: vec![StageEntry { stage: Stage::Approval as i32, entered_at: at(100), revision: 1 }],
            approvals: vec![
                ApprovalRequirement {
                    role: Role::Merchandising as i32,
                    approved_by: "E1".into(),
                    ..Default::default()
                },
                ApprovalRequirement {
                    role: Role::Finance as i32,
                    reason: "margin".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let mut s = Snapshot { now: 130, ..Default::default() };
        s.statuses.insert("P".into(), st);
        let sla = |r, e| Sla { approval_reminder: r, approval_escalation: e, exception_age: 1 };
        let p = pending_approvals(&s, &sla(10, 20));
        assert_eq!((p.len(), p[0].role.as_str(), p[0].age, p[0].sla), (1, "FINANCE", 30, "escalated"));
        assert_eq!(pending_approvals(&s, &sla(10, 60))[0].sla, "reminder due");
        assert_eq!(pending_approvals(&s, &sla(40, 60))[0].sla, "ok");
    }
}
