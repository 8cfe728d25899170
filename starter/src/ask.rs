//! `promo ask "…"`: questions in plain words, answered from visibility, the `status` query and
//! the process-event record ([`promo_insight::Snapshot`]). A deterministic parser over the forms in
//! [`FORMS`]: no model, nothing downloaded. Every answer names the source it used; a question
//! outside the forms gets the list of forms.

use crate::render::age;
use promo_contracts::promo::v1::{Role, Stage};
use promo_insight::{self as insight, SOURCE_EVENTS, SOURCE_STATUS, SOURCE_VISIBILITY, Sla, Snapshot};
use promo_workflows::decisions::{plural, role_name, stage_name};
use rust_decimal::Decimal;
use serde::Serialize;
use std::fmt::Write;

/// The question forms understood, as shown to people.
pub const FORMS: [&str; 9] = [
    "which promotions are waiting on <finance|merchandising|supply chain|operations>?",
    "what is stuck in <region>?  (e.g. R3)",
    "revenue at risk <today|this week|this month|now>?",
    "why is <promotion id> delayed?  (also: what is holding up <id>?, status of <id>)",
    "how long do <role> approvals take?  (or: how long do approvals take?)",
    "how many promotions are in <stage>?  (intake, assessment, approval, publishing, active, …)",
    "what is live?",
    "which exceptions are open?  (or: top exceptions)",
    "how long does each stage take?  (cycle times)",
];

/// A question, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Question {
    /// Promotions with an approval pending in this role.
    WaitingOn(Role),
    /// What is not live in this region, and why.
    StuckIn(String),
    /// Revenue at risk of open exceptions raised within the last this-many seconds (`None`: all).
    RevenueAtRisk(Option<i64>, &'static str),
    /// Why this promotion is not further along.
    Why(String),
    /// How long approvals take (in this role).
    ApprovalTime(Option<Role>),
    /// Promotions in this stage.
    InStage(Stage),
    /// The exception queue.
    Exceptions,
    /// Cycle time per stage.
    CycleTimes,
}

/// Words and the role they name.
const ROLES: [(&str, Role); 6] = [
    ("finance", Role::Finance),
    ("merchandising", Role::Merchandising),
    ("merchandiser", Role::Merchandising),
    ("supply chain", Role::SupplyChain),
    ("supply-chain", Role::SupplyChain),
    ("operations", Role::Operations),
];

fn role_in(q: &str) -> Option<Role> {
    ROLES.iter().find(|(w, _)| q.contains(w)).map(|(_, r)| *r)
}

fn stage_in(q: &str) -> Option<Stage> {
    const STAGES: [(&str, Stage); 11] = [
        ("intake", Stage::Intake),
        ("assessment", Stage::Assessment),
        ("remediation", Stage::Remediation),
        ("approval", Stage::Approval),
        ("scheduling", Stage::Scheduling),
        ("publishing", Stage::Publishing),
        ("launch gate", Stage::LaunchGate),
        ("active", Stage::Active),
        ("live", Stage::Active),
        ("closing", Stage::Closing),
        ("analysis", Stage::Analysis),
    ];
    STAGES.iter().find(|(w, _)| q.contains(w)).map(|(_, s)| *s)
}

fn words(q: &str) -> Vec<String> {
    q.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
        .map(|w| w.trim_matches('.').to_owned())
        .filter(|w| !w.is_empty())
        .collect()
}

fn has(q: &str, any: &[&str]) -> bool {
    let ws = words(q);
    any.iter().any(|a| if a.contains(' ') { q.contains(a) } else { ws.iter().any(|w| w == a) })
}

/// Parses a question. `known` are the promotion ids in the portfolio (matched case-insensitively).
pub fn parse(question: &str, known: &[String]) -> Option<Question> {
    let q = question.to_lowercase();
    let promotion =
        words(question).into_iter().find_map(|w| known.iter().find(|k| k.eq_ignore_ascii_case(&w)).cloned());
    let region = words(&q)
        .into_iter()
        .find(|w| w.len() >= 2 && w.starts_with('r') && w[1..].chars().all(|c| c.is_ascii_digit()));
    if let Some(id) = promotion
        && has(
            &q,
            &["why", "holding", "delayed", "late", "stuck", "blocked", "status", "wrong", "waiting", "held"],
        )
    {
        return Some(Question::Why(id));
    }
    if has(
        &q,
        &[
            "how long",
            "how much time",
            "time",
            "duration",
            "take",
            "takes",
            "slow",
            "bottleneck",
            "bottlenecks",
        ],
    ) && has(&q, &["approval", "approvals", "approve", "sign-off", "signoff"])
    {
        return Some(Question::ApprovalTime(role_in(&q)));
    }
    if has(&q, &["cycle", "cycle time", "cycle times", "each stage", "per stage", "stages take"]) {
        return Some(Question::CycleTimes);
    }
    if has(&q, &["revenue", "money", "sales"]) && has(&q, &["risk", "at-risk", "exposed", "exposure"]) {
        let (secs, label) = if has(&q, &["today", "day"]) {
            (Some(86_400), "raised today")
        } else if has(&q, &["week"]) {
            (Some(7 * 86_400), "raised this week")
        } else if has(&q, &["month"]) {
            (Some(30 * 86_400), "raised this month")
        } else {
            (None, "open now")
        };
        return Some(Question::RevenueAtRisk(secs, label));
    }
    if let Some(r) = region
        && has(
            &q,
            &[
                "stuck",
                "blocked",
                "held",
                "waiting",
                "late",
                "delayed",
                "wrong",
                "happening",
                "not",
                "problem",
                "problems",
            ],
        )
    {
        return Some(Question::StuckIn(r.to_uppercase()));
    }
    if has(&q, &["waiting", "pending", "awaiting", "need", "needs", "sign", "approve", "approval"])
        && let Some(role) = role_in(&q)
    {
        return Some(Question::WaitingOn(role));
    }
    if has(&q, &["exception", "exceptions", "issues", "problems", "incidents"]) {
        return Some(Question::Exceptions);
    }
    if has(&q, &["what is live", "what's live", "whats live", "running live", "are live", "is live"]) {
        return Some(Question::InStage(Stage::Active));
    }
    if has(&q, &["how many", "which", "what", "list", "in", "count"])
        && let Some(stage) = stage_in(&q)
    {
        return Some(Question::InStage(stage));
    }
    None
}

/// An answer and what it was read from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer {
    /// For people.
    pub text: String,
    /// The query or record used.
    pub source: String,
}

/// The answer to `question` from `s`, or the forms understood.
pub fn answer(question: &str, s: &Snapshot, sla: &Sla) -> Result<Answer, String> {
    let known: Vec<String> = s.promotions.iter().map(|p| p.promotion_id.clone()).collect();
    let Some(q) = parse(question, &known) else {
        let mut text = format!("I do not understand {question:?}. I can answer:\n");
        for f in FORMS {
            let _ = writeln!(text, "  - {f}");
        }
        return Err(text);
    };
    Ok(match q {
        Question::WaitingOn(role) => {
            let name = role_name(role);
            let rows: Vec<_> = s
                .promotions
                .iter()
                .filter(|p| p.execution_status == "running" && p.pending_approvals.iter().any(|r| r == name))
                .collect();
            let mut text = match rows.len() {
                0 => format!("No promotion is waiting on {name}."),
                n => format!("{} {} waiting on {name}:", plural(n, "promotion"), are(n)),
            };
            let pending = insight::pending_approvals(s, sla);
            for p in rows {
                let wait = pending
                    .iter()
                    .find(|x| x.promotion_id == p.promotion_id && x.role == name)
                    .map(|x| format!(", waiting {}, {}", age(x.age), x.sla))
                    .unwrap_or_default();
                let _ = write!(
                    text,
                    "\n  {} (stage {}{wait})",
                    p.promotion_id,
                    p.stage.as_deref().unwrap_or("?")
                );
            }
            Answer {
                text,
                source: format!(
                    "{SOURCE_VISIBILITY} AND PendingApprovals = '{name}'; ages from the {SOURCE_STATUS}"
                ),
            }
        }
        Question::StuckIn(region) => {
            let mut lines = Vec::new();
            for (id, st) in &s.statuses {
                for r in st.regions.iter().filter(|r| r.region_id == region) {
                    let state = r.state().as_str_name().trim_start_matches("REGION_STATE_").to_owned();
                    if !insight::stuck(&state) && r.awaiting_ack.is_empty() {
                        continue;
                    }
                    let mut why: Vec<String> = Vec::new();
                    if !r.note.is_empty() {
                        why.push(r.note.clone());
                    }
                    if !r.awaiting_ack.is_empty() {
                        why.push(format!(
                            "{} pending",
                            plural(r.awaiting_ack.len(), "channel acknowledgment")
                        ));
                    }
                    for e in st.open_exceptions.iter().filter(|e| e.region_id == region) {
                        why.push(format!("{} (revenue at risk {})", e.detail, e.revenue_at_risk));
                    }
                    if why.is_empty() {
                        why.push(format!("promotion in stage {}", stage_name(st.stage())));
                    }
                    lines.push(format!("  {id}: {region} {state} — {}", why.join("; ")));
                }
            }
            let text = if lines.is_empty() {
                format!(
                    "Nothing is stuck in {region}: every running promotion there is live or has not reached it."
                )
            } else {
                format!(
                    "{} {} not live in {region}:\n{}",
                    plural(lines.len(), "promotion"),
                    are(lines.len()),
                    lines.join("\n")
                )
            };
            Answer { text, source: format!("{SOURCE_STATUS} (regions, open exceptions)") }
        }
        Question::RevenueAtRisk(window, label) => {
            let queue = insight::exception_queue(s, sla);
            let picked: Vec<_> = queue.iter().filter(|q| window.is_none_or(|w| q.age <= w)).collect();
            let total: Decimal = picked.iter().map(|q| q.revenue_at_risk).sum();
            let mut text = format!(
                "Revenue at risk {label}: {:.2} across {} open exceptions on {} promotions.",
                total,
                picked.len(),
                picked.iter().map(|q| &q.promotion_id).collect::<std::collections::BTreeSet<_>>().len()
            );
            for q in picked.iter().take(3) {
                let _ = write!(
                    text,
                    "\n  {:.2} {} {} ({}): {}",
                    q.revenue_at_risk, q.promotion_id, q.kind, q.owner, q.detail
                );
            }
            Answer { text, source: format!("{SOURCE_STATUS} (open exceptions, revenue at risk, raised at)") }
        }
        Question::Why(id) => {
            let Some(st) = s.statuses.get(&id) else {
                let row = s.promotions.iter().find(|p| p.promotion_id == id);
                let text = match row {
                    Some(p) => format!(
                        "{id} is not running ({}); `promo report {id}` has how it ended.",
                        p.execution_status
                    ),
                    None => format!("{id} is not in visibility."),
                };
                return Ok(Answer { text, source: SOURCE_VISIBILITY.to_owned() });
            };
            let mut reasons = Vec::new();
            for r in st.approvals.iter().filter(|r| r.approved_by.is_empty()) {
                reasons.push(format!("waiting on {} approval ({})", role_name(r.role()), r.reason));
            }
            for e in &st.open_exceptions {
                let place =
                    if e.region_id.is_empty() { String::new() } else { format!(" in {}", e.region_id) };
                reasons.push(format!(
                    "{}{place}, owned by {}: {} (revenue at risk {})",
                    e.kind().as_str_name().trim_start_matches("EXCEPTION_KIND_"),
                    role_name(e.owner_role()),
                    e.detail,
                    e.revenue_at_risk
                ));
            }
            for r in st.regions.iter().filter(|r| {
                !r.note.is_empty()
                    && insight::stuck(r.state().as_str_name().trim_start_matches("REGION_STATE_"))
            }) {
                reasons.push(format!("{}: {}", r.region_id, r.note));
            }
            if st.paused {
                reasons.push("paused by an operator".into());
            }
            let head = format!("{id} is in stage {} (risk {}).", stage_name(st.stage()), st.risk);
            let text = if reasons.is_empty() {
                format!("{head} Nothing holds it up: it is where its schedule puts it.")
            } else {
                format!("{head} What holds it up:\n  - {}", reasons.join("\n  - "))
            };
            Answer { text, source: format!("{SOURCE_STATUS}: `status` of {id}") }
        }
        Question::ApprovalTime(role) => {
            let pending = insight::pending_approvals(s, sla);
            let waits = insight::approval_waits(&s.events, &pending);
            let name = role.map(role_name);
            let rows: Vec<_> = waits.iter().filter(|(r, _, _)| name.is_none_or(|n| n == r)).collect();
            let mut text = String::new();
            if rows.iter().all(|(_, sp, _)| sp.n == 0) {
                let _ = write!(
                    text,
                    "No {}approval decision is recorded yet.",
                    name.map(|n| format!("{n} ")).unwrap_or_default()
                );
            }
            for (r, sp, n) in rows {
                if sp.n > 0 {
                    let _ = writeln!(
                        text,
                        "{r} approvals take {} at the median, {} at p95 ({}); {n} pending now.",
                        age(sp.p50),
                        age(sp.p95),
                        plural(sp.n, "decision")
                    );
                } else if *n > 0 {
                    let _ = writeln!(text, "{r}: no decision recorded yet; {n} pending now.");
                }
            }
            Answer {
                text: text.trim_end().to_owned(),
                source: format!("{SOURCE_EVENTS} (APPROVAL_DECIDED wait_seconds)"),
            }
        }
        Question::InStage(stage) => {
            let name = stage_name(stage);
            let ids: Vec<&str> = s
                .promotions
                .iter()
                .filter(|p| p.execution_status == "running" && p.stage.as_deref() == Some(name))
                .map(|p| p.promotion_id.as_str())
                .collect();
            let text = match ids.len() {
                0 => format!("No promotion is in {name}."),
                n => format!("{} {} in {name}: {}", plural(n, "promotion"), are(n), ids.join(", ")),
            };
            Answer {
                text,
                source: format!(
                    "{SOURCE_VISIBILITY} AND PromotionStage = '{name}' AND ExecutionStatus = 'Running'"
                ),
            }
        }
        Question::Exceptions => {
            let queue = insight::exception_queue(s, sla);
            let mut text = match queue.len() {
                0 => "No exception is open.".to_owned(),
                n => format!("{} {} open, by revenue at risk:", plural(n, "exception"), are(n)),
            };
            for q in queue.iter().take(5) {
                let overdue = if q.overdue { ", overdue" } else { "" };
                let _ = write!(
                    text,
                    "\n  {:.2} {} {} {} — owner {}, {} old{overdue}: {}",
                    q.revenue_at_risk,
                    q.promotion_id,
                    q.kind,
                    if q.region_id.is_empty() { "national" } else { &q.region_id },
                    q.owner,
                    age(q.age),
                    q.detail
                );
            }
            Answer { text, source: format!("{SOURCE_STATUS} (open exceptions)") }
        }
        Question::CycleTimes => {
            let ct = insight::cycle_times(&s.events);
            let mut text = String::new();
            if ct.is_empty() {
                text.push_str("No stage has been completed yet.");
            }
            for (stage, sp) in ct {
                // A stage can be visited more than once in a run (a new revision is assessed again).
                let visits = plural(sp.n, "visit");
                let _ = writeln!(text, "{stage}: p50 {}, p95 {} ({visits})", age(sp.p50), age(sp.p95));
            }
            Answer { text: text.trim_end().to_owned(), source: format!("{SOURCE_EVENTS} (STAGE_ENTERED)") }
        }
    })
}

/// The verb after a count: "1 promotion is", "2 promotions are".
fn are(n: usize) -> &'static str {
    if n == 1 { "is" } else { "are" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(q: &str) -> Option<Question> {
        parse(q, &["SPRING-26".to_owned(), "DASH-A".to_owned()])
    }

    #[test]
    fn the_documented_forms_and_their_variants_parse() {
        use Question::*;
        let cases: Vec<(&str, Question)> = vec![
            ("which promotions are waiting on finance?", WaitingOn(Role::Finance)),
            ("What is waiting for Finance approval", WaitingOn(Role::Finance)),
            ("anything pending with supply chain?", WaitingOn(Role::SupplyChain)),
            ("which promos need merchandising sign off", WaitingOn(Role::Merchandising)),
            ("what is stuck in R3?", StuckIn("R3".into())),
            ("anything blocked in r5", StuckIn("R5".into())),
            ("what's happening in R2, is it late?", StuckIn("R2".into())),
            ("revenue at risk this week?", RevenueAtRisk(Some(7 * 86_400), "raised this week")),
            ("How much revenue is at risk today", RevenueAtRisk(Some(86_400), "raised today")),
            ("total revenue at risk", RevenueAtRisk(None, "open now")),
            ("why is SPRING-26 delayed?", Why("SPRING-26".into())),
            ("what is holding up spring-26", Why("SPRING-26".into())),
            ("status of DASH-A", Why("DASH-A".into())),
            ("how long do finance approvals take?", ApprovalTime(Some(Role::Finance))),
            ("how long does approval take", ApprovalTime(None)),
            ("are merchandising approvals the bottleneck?", ApprovalTime(Some(Role::Merchandising))),
            ("how many promotions are in approval?", InStage(Stage::Approval)),
            ("which promotions are in publishing", InStage(Stage::Publishing)),
            ("what is live?", InStage(Stage::Active)),
            ("which exceptions are open?", Exceptions),
            ("top exceptions", Exceptions),
            ("how long does each stage take?", CycleTimes),
            ("cycle times please", CycleTimes),
        ];
        for (q, want) in cases {
            assert_eq!(p(q), Some(want), "{q}");
        }
    }

    #[test]
    fn questions_outside_the_forms_get_the_list_of_forms() {
        for q in ["what's the weather?", "tell me a joke", "why is NOPE-1 delayed?", "R3", ""] {
            assert_eq!(p(q), None, "{q}");
            let err = answer(
                q,
                &Snapshot::default(),
                &Sla { approval_reminder: 1, approval_escalation: 2, exception_age: 3 },
            )
            .unwrap_err();
            assert!(err.contains("I can answer") && err.contains("what is stuck in <region>?"), "{err}");
        }
    }

    #[test]
    fn answers_name_their_source() {
        use promo_insight::ListRow;
        let mut s = Snapshot { now: 100, ..Default::default() };
        s.promotions.push(ListRow {
            promotion_id: "DASH-A".into(),
            workflow_id: "promotion-DASH-A".into(),
            execution_status: "running".into(),
            stage: Some("APPROVAL".into()),
            risk: None,
            open_exceptions: Some(0),
            launch_at: None,
            pending_approvals: vec!["FINANCE".into()],
            regions: vec![],
        });
        let sla = Sla { approval_reminder: 1, approval_escalation: 2, exception_age: 3 };
        let a = answer("which promotions are waiting on finance?", &s, &sla).unwrap();
        assert!(a.text.contains("1 promotion is waiting on FINANCE") && a.text.contains("DASH-A"), "{a:?}");
        assert!(a.source.contains("PendingApprovals = 'FINANCE'"), "{a:?}");
        let a = answer("how many promotions are in approval?", &s, &sla).unwrap();
        assert!(a.text.contains("DASH-A") && a.source.contains("PromotionStage = 'APPROVAL'"), "{a:?}");
        let a = answer("how long do finance approvals take?", &s, &sla).unwrap();
        assert!(
            a.text.contains("FINANCE: no decision recorded yet; 0 pending")
                || a.text.contains("No FINANCE approval"),
            "{a:?}"
        );
        assert!(a.source.contains("ProcessEventService"), "{a:?}");
    }
}
