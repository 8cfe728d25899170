//! One promotion as it runs: the `status` screen with the commands to run next, the `audit`
//! trail, and what an update or a signal answered.

use super::{
    or_dash, outcome_name, percent, region_state_name, role_arg,
    table::{Table, fields},
    thousands, time,
};
use promo_contracts::promo::v1::{
    ActionResult, AuditTrail, ExceptionKind, Outcome, PromotionStatus, RegionState, Severity, Stage,
    TransferState,
};
use promo_workflows::decisions::{role_name, stage_name};

/// `STOCK_RISK` for `EXCEPTION_KIND_STOCK_RISK`.
fn kind_name(k: ExceptionKind) -> &'static str {
    k.as_str_name().trim_start_matches("EXCEPTION_KIND_")
}

/// `HIGH` for `SEVERITY_HIGH`.
fn severity_name(s: Severity) -> &'static str {
    s.as_str_name().trim_start_matches("SEVERITY_")
}

/// `awaiting approval` for `TRANSFER_STATE_AWAITING_APPROVAL`.
fn transfer_state_name(s: TransferState) -> String {
    s.as_str_name().trim_start_matches("TRANSFER_STATE_").to_lowercase().replace('_', " ")
}

/// Channel names, comma-separated; `—` for none.
fn channels(cs: &[i32]) -> String {
    if cs.is_empty() {
        return "—".into();
    }
    cs.iter().map(|c| crate::spec::channel_name(*c)).collect::<Vec<_>>().join(", ")
}

/// The `status` screen.
pub fn status(s: &PromotionStatus) -> String {
    let id = &s.promotion_id;
    let mut out = format!("Promotion {id}: {}\n", s.name);
    let outcome = if s.outcome() == Outcome::Unspecified {
        "running".to_owned()
    } else {
        outcome_name(s.outcome()).to_owned()
    };
    let mut pairs =
        vec![("stage", format!("{} (revision {})", stage_name(s.stage()), s.revision)), ("outcome", outcome)];
    if !s.outcome_reason.is_empty() {
        pairs.push(("reason", s.outcome_reason.clone()));
    }
    pairs.push(("risk", or_dash(&s.risk)));
    pairs.push(("paused", if s.paused { "yes".into() } else { "no".into() }));
    pairs.push((
        "exceptions",
        format!("{} open, {} raised in all", s.open_exceptions.len(), s.exceptions_raised),
    ));
    out.push_str(&fields(&pairs));

    if !s.timeline.is_empty() {
        out.push_str("\nTimeline\n");
        let mut t = Table::new(["STAGE", "ENTERED", "REVISION"]).right(2);
        for e in &s.timeline {
            t.row([stage_name(e.stage()).to_owned(), time(e.entered_at.as_ref()), e.revision.to_string()]);
        }
        out.push_str(&t.render());
    }

    if !s.approvals.is_empty() {
        out.push_str(&format!("\nApprovals (revision {})\n", s.revision));
        let mut t = Table::new(["ROLE", "STATUS", "APPROVED BY", "AT", "REASON"]);
        for a in &s.approvals {
            let done = !a.approved_by.is_empty();
            t.row([
                role_name(a.role()).to_owned(),
                if done { "approved".into() } else { "pending".into() },
                or_dash(&a.approved_by),
                if done { time(a.approved_at.as_ref()) } else { "—".into() },
                a.reason.clone(),
            ]);
        }
        out.push_str(&t.render());
    }

    if !s.open_exceptions.is_empty() {
        out.push_str(&format!("\nOpen exceptions ({})\n", s.open_exceptions.len()));
        let mut t =
            Table::new(["ID", "KIND", "SEVERITY", "OWNER", "REGION", "REVENUE AT RISK", "RAISED", "DETAIL"])
                .right(5);
        for e in &s.open_exceptions {
            t.row([
                e.exception_id.clone(),
                kind_name(e.kind()).to_owned(),
                severity_name(e.severity()).to_owned(),
                role_name(e.owner_role()).to_owned(),
                or_dash(&e.region_id),
                or_dash(&e.revenue_at_risk),
                time(e.raised_at.as_ref()),
                e.detail.clone(),
            ]);
        }
        out.push_str(&t.render());
    }

    if !s.forecast.is_empty() {
        out.push_str(&format!("\nForecast\n  {}\n", s.forecast));
    }

    if !s.regions.is_empty() {
        out.push_str("\nRegions\n");
        let mut t = Table::new([
            "REGION",
            "STATE",
            "FILL RATE",
            "STOCKOUT RISK",
            "LAUNCH",
            "LIVE SINCE",
            "ACKNOWLEDGED",
            "AWAITING ACK",
            "NOTE",
        ])
        .right(2)
        .right(3);
        for r in &s.regions {
            t.row([
                r.region_id.clone(),
                region_state_name(r.state()).to_owned(),
                percent(&r.fill_rate, false),
                percent(&r.stockout_probability, false),
                time(r.launch_at.as_ref()),
                time(r.activated_at.as_ref()),
                channels(&r.acknowledged),
                channels(&r.awaiting_ack),
                r.note.clone(),
            ]);
        }
        out.push_str(&t.render());
    }

    if !s.transfers.is_empty() {
        out.push_str("\nReplenishment transfers\n");
        let mut t = Table::new([
            "TRANSFER",
            "STATE",
            "UNITS",
            "CELLS",
            "COST",
            "PROTECTS",
            "STOCKOUTS WITHOUT → WITH",
            "ORDER",
            "DECIDED BY",
        ])
        .right(2)
        .right(3)
        .right(4)
        .right(5);
        for x in &s.transfers {
            t.row([
                x.transfer_id.clone(),
                transfer_state_name(x.state()).to_owned(),
                thousands(x.units),
                x.cells.to_string(),
                or_dash(&x.cost),
                or_dash(&x.revenue_protected),
                format!(
                    "{} → {}",
                    percent(&x.stockout_share_before, false),
                    percent(&x.stockout_share_after, false)
                ),
                or_dash(&x.order_id),
                or_dash(&x.decided_by),
            ]);
        }
        out.push_str(&t.render());
    }

    if !s.remediation_options.is_empty() {
        out.push_str("\nRemediation options\n");
        let mut t = Table::new([
            "OPTION",
            "REGION",
            "KIND",
            "FILL RATE",
            "REVENUE EFFECT",
            "MARGIN EFFECT",
            "DELAY UNTIL",
            "DESCRIPTION",
        ])
        .right(3)
        .right(4)
        .right(5);
        for o in &s.remediation_options {
            t.row([
                o.option_id.clone(),
                o.region_id.clone(),
                o.kind.clone(),
                percent(&o.resulting_fill_rate, false),
                or_dash(&o.revenue_effect),
                or_dash(&o.margin_effect),
                time(o.delay_until.as_ref()),
                o.description.clone(),
            ]);
        }
        out.push_str(&t.render());
        for o in s.remediation_options.iter().filter(|o| !o.substitutes.is_empty()) {
            let pairs: Vec<String> =
                o.skus.iter().zip(&o.substitutes).take(8).map(|(a, b)| format!("{a} → {b}")).collect();
            let more = o.substitutes.len().saturating_sub(8);
            out.push_str(&format!(
                "  {}: {}{}\n",
                o.option_id,
                pairs.join(", "),
                if more > 0 { format!(" (+{more} more)") } else { String::new() }
            ));
        }
    }

    let next = next_steps(s);
    if !next.is_empty() {
        out.push_str("\nNext\n");
        let messages = next.iter().any(|n| !n.starts_with("promo report"));
        for n in next {
            out.push_str(&format!("  {n}\n"));
        }
        if messages {
            out.push_str(
                "  (each signed with --key KEY_FILE, or PROMO_APPROVER_KEY, where the policy requires it)\n",
            );
        }
    }
    out
}

/// What the people involved can do now, as commands.
pub fn next_steps(s: &PromotionStatus) -> Vec<String> {
    let id = &s.promotion_id;
    let mut next = Vec::new();
    if s.stage() == Stage::Done {
        next.push(format!("promo report {id}    # outcome and post-event report"));
        return next;
    }
    if s.paused {
        next.push(format!("promo resume {id} --as OPERATOR_ID --reason \"...\""));
    }
    match s.stage() {
        Stage::Remediation if !s.remediation_options.is_empty() => {
            let regions: std::collections::BTreeSet<&str> =
                s.remediation_options.iter().map(|o| o.region_id.as_str()).collect();
            for r in regions {
                next.push(format!(
                    "promo choose-remediation {id} --region {r} --option OPTION_ID --as EMPLOYEE_ID"
                ));
            }
        }
        Stage::Approval => {
            for a in s.approvals.iter().filter(|a| a.approved_by.is_empty()) {
                next.push(format!(
                    "promo approve {id} --as APPROVER_ID --role {} --revision {}",
                    role_arg(a.role()),
                    s.revision
                ));
            }
        }
        _ => {}
    }
    if s.transfers.iter().any(|x| x.state() == TransferState::AwaitingApproval) {
        next.push(format!(
            "promo approve {id} --as APPROVER_ID --role supply-chain    # or reject: the transfers awaiting approval"
        ));
    }
    let waiting: Vec<&str> = s
        .regions
        .iter()
        .filter(|r| r.state() == RegionState::Delayed && !r.awaiting_ack.is_empty())
        .map(|r| r.region_id.as_str())
        .collect();
    for r in waiting {
        next.push(format!("promo override {id} --as OPERATOR_ID --region {r} --reason \"...\"    # only once its channels are confirmed"));
    }
    next
}

/// The `audit` screen.
pub fn audit(id: &str, trail: &AuditTrail) -> String {
    if trail.entries.is_empty() {
        return format!("Audit trail of {id}: no entries yet\n");
    }
    let n = trail.entries.len();
    let mut out = format!("Audit trail of {id} ({n} entr{})\n", if n == 1 { "y" } else { "ies" });
    let older = trail.first_seq.saturating_sub(1);
    if older > 0 {
        out.push_str(&format!(
            "the latest {n} of {}: `promo audit {id} --all` pages the {older} older ones from the record\n",
            trail.total_entries
        ));
    }
    let mut t = Table::new(["AT", "REV", "ACTOR", "ACTION", "DETAIL"]).right(1);
    for e in &trail.entries {
        t.row([
            time(e.at.as_ref()),
            e.revision.to_string(),
            e.actor.clone(),
            e.action.clone(),
            if e.repeated > 1 { format!("{} (×{})", e.detail, e.repeated) } else { e.detail.clone() },
        ]);
    }
    out.push_str(&t.render());
    out
}

/// The answer to an update.
pub fn action_result(action: &str, id: &str, r: &ActionResult) -> String {
    format!(
        "{action} {}: {} (promotion {id}, revision {})\n",
        if r.accepted { "accepted" } else { "not accepted" },
        r.message,
        r.revision
    )
}

/// What a signal send means.
pub fn signal_sent(action: &str, id: &str) -> String {
    format!(
        "{action} signal sent to workflow {} (signals get no answer: `promo audit {id}` shows whether it was \
         applied or refused)\n",
        promo_workflows::api::workflow_id(id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use promo_contracts::{pbjson_types::Timestamp, promo::v1::*};

    fn ts(seconds: i64) -> Option<Timestamp> {
        Some(Timestamp { seconds, nanos: 0 })
    }

    const T0: i64 = 1_900_000_000; // 2030-03-17 17:46 UTC

    fn sample_status() -> PromotionStatus {
        PromotionStatus {
            promotion_id: "SPRING-26".into(),
            name: "Spring garden".into(),
            revision: 2,
            stage: Stage::Approval as i32,
            outcome: Outcome::Unspecified as i32,
            timeline: vec![
                StageEntry { stage: Stage::Intake as i32, entered_at: ts(T0), revision: 1 },
                StageEntry { stage: Stage::Approval as i32, entered_at: ts(T0 + 60), revision: 2 },
            ],
            approvals: vec![
                ApprovalRequirement {
                    role: Role::Merchandising as i32,
                    reason: "every promotion needs merchandising sign-off".into(),
                    approved_by: "E1001".into(),
                    approved_at: ts(T0 + 120),
                },
                ApprovalRequirement {
                    role: Role::SupplyChain as i32,
                    reason: "stock positioning was remediated".into(),
                    ..Default::default()
                },
            ],
            open_exceptions: vec![PromotionException {
                exception_id: "stock-R3-r2".into(),
                kind: ExceptionKind::StockRisk as i32,
                severity: Severity::High as i32,
                owner_role: Role::SupplyChain as i32,
                revenue_at_risk: "1234.50".into(),
                status: ExceptionStatus::Open as i32,
                region_id: "R3".into(),
                detail: "fill rate 0.72 under 0.90".into(),
                raised_at: ts(T0 + 30),
                ..Default::default()
            }],
            regions: vec![RegionReadiness {
                region_id: "R3".into(),
                state: RegionState::Delayed as i32,
                fill_rate: "0.7234".into(),
                stockout_probability: "0.1842".into(),
                acknowledged: vec![4],
                awaiting_ack: vec![1],
                launch_at: ts(T0 + 86_400),
                note: "awaiting acknowledgment".into(),
                ..Default::default()
            }],
            paused: false,
            risk: "high".into(),
            remediation_options: vec![],
            outcome_reason: String::new(),
            exceptions_raised: 3,
            forecast: "revision 2: uplift uplift-glm/1@c82a1f8dcaca fitted on 320 past promotions".into(),
            transfers: vec![Transfer {
                transfer_id: "R3-round2-dc-to-store".into(),
                region_id: "R3".into(),
                kind: "dc-to-store".into(),
                units: 1_240,
                cells: 310,
                cost: "496.00".into(),
                revenue_protected: "5210.75".into(),
                stockout_share_before: "0.2110".into(),
                stockout_share_after: "0.0420".into(),
                state: TransferState::AwaitingApproval as i32,
                order_id: "TO-000007".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn status_shows_every_section_and_the_next_steps() {
        let text = status(&sample_status());
        assert!(
            text.starts_with("Promotion SPRING-26: Spring garden\n  stage       APPROVAL (revision 2)\n"),
            "{text}"
        );
        assert!(text.contains("  exceptions  1 open, 3 raised in all\n"), "{text}");
        assert!(
            text.contains(
                "R3-round2-dc-to-store  awaiting approval  1,240    310  496.00   5210.75  21.1% → 4.2%"
            ),
            "{text}"
        );
        assert!(text.contains("promo approve SPRING-26 --as APPROVER_ID --role supply-chain"), "{text}");
        assert!(text.contains("APPROVAL  2030-03-17 17:47 UTC         2\n"), "{text}");
        assert!(
            text.contains("MERCHANDISING  approved  E1001        2030-03-17 17:48 UTC  every promotion"),
            "{text}"
        );
        assert!(text.contains("SUPPLY_CHAIN   pending   —            —"), "{text}");
        assert!(
            text.contains("stock-R3-r2  STOCK_RISK  HIGH      SUPPLY_CHAIN  R3              1234.50"),
            "{text}"
        );
        assert!(
            text.contains(
                "R3      DELAYED      72.3%          18.4%  2030-03-18 17:46 UTC  —           STORE_COMMS   POS"
            ),
            "{text}"
        );
        assert!(
            text.contains("promo approve SPRING-26 --as APPROVER_ID --role supply-chain --revision 2\n"),
            "{text}"
        );
        assert!(text.contains("promo override SPRING-26 --as OPERATOR_ID --region R3"), "{text}");
        assert!(
            text.contains(
                "\nForecast\n  revision 2: uplift uplift-glm/1@c82a1f8dcaca fitted on 320 past promotions\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn status_lists_remediation_options_with_the_command_to_choose() {
        let mut s = sample_status();
        s.stage = Stage::Remediation as i32;
        s.regions.clear();
        s.remediation_options = vec![RemediationOption {
            option_id: "R3:delay".into(),
            region_id: "R3".into(),
            kind: "delay".into(),
            description: "launch R3 on 2030-04-03".into(),
            revenue_effect: "-812.00".into(),
            margin_effect: "-200.10".into(),
            resulting_fill_rate: "0.95".into(),
            delay_until: ts(T0 + 2 * 86_400),
            ..Default::default()
        }];
        s.remediation_options.push(RemediationOption {
            option_id: "R3:substitute".into(),
            region_id: "R3".into(),
            kind: "substitute".into(),
            skus: vec!["SKU-00001".into(), "SKU-00002".into()],
            substitutes: vec!["SKU-00121".into(), "SKU-00122".into()],
            ..Default::default()
        });
        let text = status(&s);
        assert!(text.contains("  R3:substitute: SKU-00001 → SKU-00121, SKU-00002 → SKU-00122\n"), "{text}");
        assert!(
            text.contains(
                "R3:delay       R3      delay           95.0%         -812.00        -200.10  2030-03-19"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "promo choose-remediation SPRING-26 --region R3 --option OPTION_ID --as EMPLOYEE_ID"
            ),
            "{text}"
        );
    }

    #[test]
    fn audit_is_a_table_in_time_order() {
        let trail = AuditTrail {
            total_entries: 1,
            first_seq: 1,
            entries: vec![AuditEntry {
                at: ts(T0),
                actor: "E2001".into(),
                action: "approve-refused".into(),
                detail: "the promotion is in stage ASSESSMENT, not awaiting approval".into(),
                revision: 1,
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = audit("X", &trail);
        assert_eq!(
            text,
            "Audit trail of X (1 entry)\n\
             AT                    REV  ACTOR  ACTION           DETAIL\n\
             --------------------------------------------------------------------------------------------------------------\n\
             2030-03-17 17:46 UTC    1  E2001  approve-refused  the promotion is in stage ASSESSMENT, not awaiting approval\n"
        );
    }
}
