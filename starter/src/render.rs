//! Human output: the workflow's answers rendered as text and tables. Pure functions of the
//! `promo.v1` messages, so every screen is unit-tested without a server.

use crate::table::{Table, fields};
use chrono::DateTime;
use promo_contracts::{
    pbjson_types::Timestamp,
    promo::v1::{
        ActionResult, AuditTrail, ExceptionKind, Outcome, PromotionResult, PromotionStatus, RegionState,
        Role, Severity, Stage, TransferState,
    },
};
use promo_insight::ListRow;
use promo_workflows::decisions::{role_name, stage_name};
use rust_decimal::Decimal;
use std::str::FromStr;

/// A timestamp as `2030-04-01 04:00 UTC`; `—` when unset.
pub fn time(t: Option<&Timestamp>) -> String {
    t.and_then(|t| DateTime::from_timestamp(t.seconds, 0))
        .map_or_else(|| "—".into(), |d| unix_time(d.timestamp()))
}

/// Unix seconds as `2030-04-01 04:00 UTC`.
pub fn unix_time(seconds: i64) -> String {
    DateTime::from_timestamp(seconds, 0)
        .map_or_else(|| seconds.to_string(), |d| d.format("%Y-%m-%d %H:%M UTC").to_string())
}

/// A ratio (decimal string in [0, 1] or beyond) as a percentage with one decimal, e.g. `81.2%`;
/// signed with `signed`. Unparseable values are shown as they are; empty as `—`.
pub fn percent(ratio: &str, signed: bool) -> String {
    if ratio.trim().is_empty() {
        return "—".into();
    }
    match Decimal::from_str(ratio.trim()) {
        Ok(d) => {
            let p = (d * Decimal::ONE_HUNDRED).round_dp(1);
            if signed && p > Decimal::ZERO { format!("+{p:.1}%") } else { format!("{p:.1}%") }
        }
        Err(_) => ratio.to_owned(),
    }
}

/// Seconds as `3d 4h 5m` (`12s` under a minute, `0s` for nothing).
pub fn duration(seconds: u64) -> String {
    if seconds < 60 {
        return format!("{seconds}s");
    }
    let (d, h, m) = (seconds / 86_400, seconds % 86_400 / 3600, seconds % 3600 / 60);
    let mut parts = Vec::new();
    if d > 0 {
        parts.push(format!("{d}d"));
    }
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 {
        parts.push(format!("{m}m"));
    }
    parts.join(" ")
}

/// An integer with thousands separators: `1,234,567`.
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn or_dash(s: &str) -> String {
    if s.trim().is_empty() { "—".into() } else { s.to_owned() }
}

fn outcome_name(o: Outcome) -> &'static str {
    o.as_str_name().trim_start_matches("OUTCOME_")
}

fn kind_name(k: ExceptionKind) -> &'static str {
    k.as_str_name().trim_start_matches("EXCEPTION_KIND_")
}

fn severity_name(s: Severity) -> &'static str {
    s.as_str_name().trim_start_matches("SEVERITY_")
}

fn transfer_state_name(s: TransferState) -> String {
    s.as_str_name().trim_start_matches("TRANSFER_STATE_").to_lowercase().replace('_', " ")
}

fn region_state_name(s: RegionState) -> &'static str {
    s.as_str_name().trim_start_matches("REGION_STATE_")
}

/// The `--role` value for a role (`supply-chain`).
pub fn role_arg(r: Role) -> String {
    role_name(r).to_ascii_lowercase().replace('_', "-")
}

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
        for n in next {
            out.push_str(&format!("  {n}\n"));
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
    let mut t = Table::new(["AT", "REV", "ACTOR", "ACTION", "DETAIL"]).right(1);
    for e in &trail.entries {
        t.row([
            time(e.at.as_ref()),
            e.revision.to_string(),
            e.actor.clone(),
            e.action.clone(),
            e.detail.clone(),
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

/// The `report` screen: the post-event report of a completed promotion, or the outcome and
/// reason of any other ending.
pub fn report(r: &PromotionResult) -> String {
    let id = &r.promotion_id;
    let revision = if r.revision > 0 { format!(" (revision {})", r.revision) } else { String::new() };
    let mut out = format!("Promotion {id}: {}{revision}\n", outcome_name(r.outcome()));
    let Some(p) = r.report.as_ref().filter(|_| r.outcome() == Outcome::Completed) else {
        out.push_str(&fields(&[("reason", or_dash(&r.reason))]));
        out.push_str(&format!("\n`promo audit {id}` shows how it got there.\n"));
        return out;
    };
    out.push_str("\nSales\n");
    out.push_str(&fields(&[
        ("units sold", thousands(p.units_sold)),
        ("forecast units", thousands(p.forecast_units)),
        ("forecast variance", percent(&p.forecast_variance, true)),
        ("forecast model", or_dash(&p.forecast_model)),
        ("units available", thousands(p.available_units)),
        ("sell-through", percent(&p.sell_through, false)),
        ("stockout store-days", thousands(p.stockout_store_days as i64)),
        ("markdown exposure", or_dash(&p.markdown_exposure)),
    ]));
    if p.transfers_released > 0 {
        out.push_str("\nReplenishment in the window\n");
        out.push_str(&fields(&[
            ("transfer orders released", p.transfers_released.to_string()),
            ("units moved", thousands(p.units_transferred)),
            (
                "stockout store-days",
                format!(
                    "{} (without the transfers: {})",
                    thousands(p.stockout_store_days as i64),
                    thousands(p.stockout_store_days_without_transfers as i64)
                ),
            ),
            (
                "units sold",
                format!(
                    "{} (without the transfers: {})",
                    thousands(p.units_sold),
                    thousands(p.units_sold_without_transfers)
                ),
            ),
        ]));
    }
    out.push_str("\nMoney\n");
    let margin_gap = match (Decimal::from_str(&p.realised_margin), Decimal::from_str(&p.planned_margin)) {
        (Ok(a), Ok(b)) => {
            let d = a - b;
            format!("{}{d}", if d > Decimal::ZERO { "+" } else { "" })
        }
        _ => "—".into(),
    };
    out.push_str(&fields(&[
        ("revenue", or_dash(&p.revenue)),
        ("realised margin", or_dash(&p.realised_margin)),
        ("planned margin", or_dash(&p.planned_margin)),
        ("realised - planned", margin_gap),
        ("supplier funding claim", or_dash(&p.funding_claim)),
    ]));
    out.push_str("\nExecution\n");
    out.push_str(&fields(&[
        ("on-time acknowledgments", percent(&p.on_time_ack_rate, false)),
        ("on-time launches", percent(&p.on_time_launch_rate, false)),
        ("exceptions raised", p.exceptions_raised.to_string()),
        (
            "price accuracy",
            if p.price_accuracy.is_empty() {
                "—".into()
            } else {
                format!(
                    "{} of {} read back",
                    percent(&p.price_accuracy, false),
                    thousands(p.prices_checked as i64)
                )
            },
        ),
    ]));
    if !p.funding_claims.is_empty() {
        out.push_str("\nSupplier funding claims\n");
        let mut t = Table::new([
            "AGREEMENT",
            "FORECAST",
            "EARNED",
            "OUT OF WINDOW",
            "OVER CAP",
            "CLAIMED",
            "CLAIM",
            "NOTE",
        ])
        .right(1)
        .right(2)
        .right(3)
        .right(4)
        .right(5);
        for c in &p.funding_claims {
            t.row([
                c.agreement_id.clone(),
                or_dash(&c.forecast),
                or_dash(&c.earned),
                or_dash(&c.out_of_window),
                or_dash(&c.over_cap),
                or_dash(&c.claimed),
                or_dash(&c.claim_id),
                or_dash(&c.note),
            ]);
        }
        out.push_str(&t.render());
    }
    if !p.price_corrections.is_empty() {
        out.push_str("\nPrice mismatches found on the channels\n");
        let mut t = Table::new(["CHANNEL", "REGION", "WHEN", "SKUS", "REPUBLISHED", "CORRECTED IN"])
            .right(4)
            .right(5);
        for c in &p.price_corrections {
            let channel = promo_contracts::retail::v1::Channel::try_from(c.channel).map_or_else(
                |_| c.channel.to_string(),
                |x| x.as_str_name().trim_start_matches("CHANNEL_").to_owned(),
            );
            t.row([
                channel,
                if c.region_id.is_empty() { "national".into() } else { c.region_id.clone() },
                if c.after_revert { "after revert".into() } else { "live".into() },
                c.skus.join(" "),
                c.republished.to_string(),
                if c.corrected_at.is_some() {
                    duration(c.seconds_to_correct)
                } else {
                    "not corrected".into()
                },
            ]);
        }
        out.push_str(&t.render());
    }
    if !p.cycle_times.is_empty() {
        out.push_str("\nCycle time per stage\n");
        let mut t = Table::new(["STAGE", "TIME", "SECONDS"]).right(1).right(2);
        for c in &p.cycle_times {
            t.row([stage_name(c.stage()).to_owned(), duration(c.seconds), c.seconds.to_string()]);
        }
        out.push_str(&t.render());
    }
    if !p.regions.is_empty() {
        out.push_str("\nRegions\n");
        let mut t = Table::new([
            "REGION",
            "STATE",
            "UNITS SOLD",
            "REVENUE",
            "SELL-THROUGH",
            "STOCKOUT DAYS",
            "ON TIME",
        ])
        .right(2)
        .right(3)
        .right(4)
        .right(5);
        for x in &p.regions {
            t.row([
                x.region_id.clone(),
                region_state_name(x.state()).to_owned(),
                thousands(x.units_sold),
                or_dash(&x.revenue),
                percent(&x.sell_through, false),
                thousands(x.stockout_store_days as i64),
                if x.launched_on_time { "yes".into() } else { "no".into() },
            ]);
        }
        out.push_str(&t.render());
    }
    out
}

/// The `list` screen.
pub fn list(query: &str, rows: &[ListRow], limit: usize) -> String {
    let mut out = format!("query: {query}\n");
    if rows.is_empty() {
        out.push_str("no promotions match\n");
        return out;
    }
    let mut t =
        Table::new(["ID", "STATUS", "STAGE", "RISK", "OPEN EXC", "LAUNCH", "PENDING APPROVALS", "REGIONS"])
            .right(4)
            .max_width(7, 40);
    for r in rows {
        t.row([
            r.promotion_id.clone(),
            r.execution_status.clone(),
            r.stage.clone().unwrap_or_else(|| "—".into()),
            r.risk.clone().unwrap_or_else(|| "—".into()),
            r.open_exceptions.map_or_else(|| "—".into(), |n| n.to_string()),
            r.launch_at.map_or_else(|| "—".into(), unix_time),
            if r.pending_approvals.is_empty() { "—".into() } else { r.pending_approvals.join(", ") },
            if r.regions.is_empty() { "—".into() } else { r.regions.join(", ") },
        ]);
    }
    out.push_str(&t.render());
    out.push_str(&format!(
        "{} promotion{}{}\n",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" },
        if rows.len() >= limit { format!(" (limit {limit}: use --limit for more)") } else { String::new() }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use promo_contracts::promo::v1::*;

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
    fn report_of_a_completed_promotion() {
        let r = PromotionResult {
            promotion_id: "SPRING-26".into(),
            outcome: Outcome::Completed as i32,
            reason: String::new(),
            revision: 1,
            report: Some(PostEventReport {
                units_sold: 12_345,
                forecast_units: 11_000,
                available_units: 15_000,
                sell_through: "0.823".into(),
                forecast_variance: "0.1223".into(),
                stockout_store_days: 4,
                markdown_exposure: "321.00".into(),
                revenue: "98765.43".into(),
                realised_margin: "20000.00".into(),
                planned_margin: "21000.50".into(),
                funding_claim: "1500.00".into(),
                on_time_ack_rate: "1".into(),
                on_time_launch_rate: "0.5".into(),
                cycle_times: vec![StageCycleTime { stage: Stage::Approval as i32, seconds: 93_780 }],
                regions: vec![RegionResult {
                    region_id: "R1".into(),
                    units_sold: 6_000,
                    revenue: "48000.00".into(),
                    stockout_store_days: 0,
                    sell_through: "0.9".into(),
                    launched_on_time: true,
                    state: RegionState::Closed as i32,
                }],
                exceptions_raised: 2,
                price_accuracy: "0.9875".into(),
                prices_checked: 800,
                price_corrections: vec![PriceCorrection {
                    channel: 1,
                    region_id: "R1".into(),
                    skus: vec!["SKU-00001".into(), "SKU-00002".into()],
                    seconds_to_correct: 7200,
                    corrected_at: ts(T0),
                    republished: 1,
                    ..Default::default()
                }],
                funding_claims: vec![FundingClaimResult {
                    agreement_id: "FA-001".into(),
                    forecast: "120.00".into(),
                    units_sold: 100,
                    earned: "100.00".into(),
                    out_of_window: "0".into(),
                    over_cap: "40.00".into(),
                    claimed: "60.00".into(),
                    claim_id: "CL-000001".into(),
                    note: "the cap of 60.00 has 60.00 left".into(),
                }],
                forecast_model: "uplift-glm/1@c82a1f8dcaca".into(),
                transfers_released: 3,
                units_transferred: 181,
                stockout_store_days_without_transfers: 38,
                units_sold_without_transfers: 12_001,
            }),
        };
        let text = report(&r);
        assert!(text.contains("  transfer orders released  3\n"), "{text}");
        assert!(text.contains("  stockout store-days       4 (without the transfers: 38)\n"), "{text}");
        assert!(
            text.contains("  units sold                12,345 (without the transfers: 12,001)\n"),
            "{text}"
        );
        assert!(text.contains("  forecast model       uplift-glm/1@c82a1f8dcaca\n"), "{text}");
        assert!(
            text.contains("FA-001       120.00  100.00              0     40.00    60.00  CL-000001"),
            "{text}"
        );
        assert!(text.contains("  price accuracy           98.8% of 800 read back\n"), "{text}");
        assert!(
            text.contains("POS      R1      live  SKU-00001 SKU-00002            1            2h\n"),
            "{text}"
        );
        assert!(text.starts_with("Promotion SPRING-26: COMPLETED (revision 1)\n"), "{text}");
        assert!(text.contains("  units sold           12,345\n"), "{text}");
        assert!(text.contains("  forecast variance    +12.2%\n"), "{text}");
        assert!(text.contains("  sell-through         82.3%\n"), "{text}");
        assert!(text.contains("  realised - planned      -1000.50\n"), "{text}");
        assert!(text.contains("  on-time launches         50.0%\n"), "{text}");
        assert!(text.contains("APPROVAL  1d 2h 3m    93780\n"), "{text}");
        assert!(
            text.contains("R1      CLOSED       6,000  48000.00         90.0%              0  yes\n"),
            "{text}"
        );
    }

    #[test]
    fn report_of_a_rejected_promotion_gives_the_reason() {
        let r = PromotionResult {
            promotion_id: "X".into(),
            outcome: Outcome::Rejected as i32,
            reason: "rejected by E2001 (FINANCE): margin too thin".into(),
            revision: 2,
            report: None,
        };
        assert_eq!(
            report(&r),
            "Promotion X: REJECTED (revision 2)\n  reason  rejected by E2001 (FINANCE): margin too thin\n\n\
             `promo audit X` shows how it got there.\n"
        );
    }

    #[test]
    fn audit_is_a_table_in_time_order() {
        let trail = AuditTrail {
            entries: vec![AuditEntry {
                at: ts(T0),
                actor: "E2001".into(),
                action: "approve-refused".into(),
                detail: "the promotion is in stage ASSESSMENT, not awaiting approval".into(),
                revision: 1,
                ..Default::default()
            }],
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

    #[test]
    fn formatting_helpers() {
        assert_eq!(percent("0.8", false), "80.0%");
        assert_eq!(percent("-0.05", true), "-5.0%");
        assert_eq!(percent("", false), "—");
        assert_eq!(percent("n/a", false), "n/a");
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(3600), "1h");
        assert_eq!(thousands(-1_234_567), "-1,234,567");
        assert_eq!(thousands(999), "999");
        assert_eq!(role_arg(Role::SupplyChain), "supply-chain");
    }

    #[test]
    fn list_prints_the_query_and_a_row_per_promotion() {
        let rows = vec![ListRow {
            promotion_id: "SPRING-26".into(),
            workflow_id: "promotion-SPRING-26".into(),
            execution_status: "running".into(),
            stage: Some("APPROVAL".into()),
            risk: Some("medium".into()),
            open_exceptions: Some(2),
            launch_at: Some(T0),
            pending_approvals: vec!["FINANCE".into()],
            regions: vec!["R1".into(), "R3".into()],
        }];
        let text = list("WorkflowType = 'PromotionWorkflow'", &rows, 100);
        assert!(text.starts_with("query: WorkflowType = 'PromotionWorkflow'\nID "), "{text}");
        assert!(
            text.contains("SPRING-26  running  APPROVAL  medium         2  2030-03-17 17:46 UTC  FINANCE            R1, R3\n"),
            "{text}"
        );
        assert!(text.ends_with("1 promotion\n"), "{text}");
    }
}
