//! Many promotions at once: `promo list` (visibility rows) and `promo exceptions` (the
//! exception queue of the read model).

use super::{age, table::Table, unix_time};
use promo_insight::{ListRow, QueuedException};
use promo_workflows::decisions::plural;
use rust_decimal::Decimal;

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
        "{}{}\n",
        plural(rows.len(), "promotion"),
        if rows.len() >= limit { format!(" (limit {limit}: use --limit for more)") } else { String::new() }
    ));
    out
}

/// The `exceptions` screen: the queue as ranked (highest revenue at risk first), numbered, with
/// owner, age and the `overdue` mark, then the count and the total at risk.
pub fn exceptions(queue: &[QueuedException]) -> String {
    if queue.is_empty() {
        return "No open exception.\n".into();
    }
    let mut t = Table::new(["#", "PROMOTION", "KIND", "REGION", "OWNER", "REVENUE AT RISK", "AGE", "DETAIL"])
        .right(0)
        .right(5)
        .right(6)
        .max_width(7, 80);
    for (i, q) in queue.iter().enumerate() {
        let overdue = if q.overdue { " overdue" } else { "" };
        t.row([
            (i + 1).to_string(),
            q.promotion_id.clone(),
            q.kind.clone(),
            if q.region_id.is_empty() { "national".to_owned() } else { q.region_id.clone() },
            q.owner.clone(),
            format!("{:.2}", q.revenue_at_risk),
            format!("{}{overdue}", age(q.age)),
            q.detail.clone(),
        ]);
    }
    let total: Decimal = queue.iter().map(|q| q.revenue_at_risk).sum();
    format!("{}\n{} open, {total:.2} revenue at risk\n", t.render(), queue.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_900_000_000; // 2030-03-17 17:46 UTC

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

    #[test]
    fn exceptions_are_numbered_by_revenue_at_risk_with_the_total() {
        let q = |promotion: &str, region: &str, risk: &str, age: i64, overdue: bool| QueuedException {
            promotion_id: promotion.into(),
            exception_id: format!("{promotion}-x"),
            kind: "CHANNEL_SYNC".into(),
            owner: "OPERATIONS".into(),
            region_id: region.into(),
            revenue_at_risk: risk.parse().unwrap(),
            age,
            overdue,
            detail: "POS publication PUB-000007 not acknowledged by the deadline".into(),
        };
        let text =
            exceptions(&[q("INS-ACK", "R3", "228.83", 5, false), q("INS-FIN", "", "59.07", 7300, true)]);
        assert_eq!(
            text,
            "#  PROMOTION  KIND          REGION    OWNER       REVENUE AT RISK            AGE  DETAIL\n\
             ---------------------------------------------------------------------------------------------------------------------------------------------\n\
             1  INS-ACK    CHANNEL_SYNC  R3        OPERATIONS           228.83             5s  POS publication PUB-000007 not acknowledged by the deadline\n\
             2  INS-FIN    CHANNEL_SYNC  national  OPERATIONS            59.07  2h 1m overdue  POS publication PUB-000007 not acknowledged by the deadline\n\
             \n\
             2 open, 287.90 revenue at risk\n"
        );
        assert_eq!(exceptions(&[]), "No open exception.\n");
    }
}
