//! Decisions of the lifecycle as pure functions: which approvals a revision needs, whether a
//! decision may be accepted, which exceptions an assessment raises, the risk level, and which
//! remediation policy applies by itself. Unit-tested without a server; the workflow only calls them.

use crate::policy::{Policy, Thresholds};
use promo_contracts::{
    money::parse_decimal,
    promo::v1::{
        ApprovalRequirement, AssessmentSummary, ExceptionKind, ExceptionStatus, PromotionException,
        RemediationOption, Role, Severity, Stage,
    },
};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// The roles a revision needs, with the reason for each.
pub fn required_approvals(assessment: &AssessmentSummary, remediated: bool) -> Vec<(Role, String)> {
    let mut out = vec![(Role::Merchandising, "every promotion needs merchandising sign-off".to_owned())];
    let margin_exceptions = assessment.margin.as_ref().map_or(0, |m| m.exception_count as usize);
    let funding_issues =
        assessment.funding.as_ref().map_or(0, |f| f.issue_count as usize + f.over_cap_agreements.len());
    if margin_exceptions > 0 || funding_issues > 0 {
        let mut why = Vec::new();
        if margin_exceptions > 0 {
            why.push(format!("{} below the margin floor", plural(margin_exceptions, "line")));
        }
        if funding_issues > 0 {
            why.push(format!("{} without valid funding", plural(funding_issues, "funded line")));
        }
        out.push((Role::Finance, why.join("; ")));
    }
    if remediated {
        out.push((Role::SupplyChain, "stock positioning was remediated".to_owned()));
    }
    out
}

/// `1 line`, `2 lines`.
pub fn plural(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// Why a decision is refused, or `Ok` when it may be applied.
pub fn check_decision(
    policy: &Policy,
    stage: Stage,
    current_revision: u32,
    requirements: &[ApprovalRequirement],
    approver: &str,
    role: Role,
    revision: u32,
) -> Result<(), String> {
    if stage != Stage::Approval {
        return Err(format!("the promotion is in stage {}, not awaiting approval", stage_name(stage)));
    }
    if revision != 0 && revision != current_revision {
        return Err(format!("revision {revision} is not the current revision {current_revision}"));
    }
    let Some(roles) = policy.roles_of(approver) else {
        return Err(format!("approver {approver:?} is not in the approver directory"));
    };
    if role == Role::Unspecified {
        return Err("role is required".to_owned());
    }
    if !roles.contains(&role) {
        return Err(format!("approver {approver:?} does not hold the {} role", role_name(role)));
    }
    let Some(req) = requirements.iter().find(|r| r.role() == role) else {
        return Err(format!("the {} role is not required for revision {current_revision}", role_name(role)));
    };
    if !req.approved_by.is_empty() {
        return Err(format!("the {} approval was already given by {}", role_name(role), req.approved_by));
    }
    Ok(())
}

/// Stage name as shown in search attributes (`APPROVAL`).
pub fn stage_name(stage: Stage) -> &'static str {
    stage.as_str_name().trim_start_matches("STAGE_")
}

/// Role name as shown to people and in search attributes (`FINANCE`).
pub fn role_name(role: Role) -> &'static str {
    role.as_str_name().trim_start_matches("ROLE_")
}

fn dec(s: &str) -> Decimal {
    parse_decimal("", s, 12).unwrap_or_default()
}

/// Exceptions an assessment raises: stock risk per failing region, margin erosion, missing funding.
/// `id_suffix` keeps ids unique across revisions.
pub fn exceptions_from_assessment(a: &AssessmentSummary, id_suffix: &str) -> Vec<PromotionException> {
    let mut out = Vec::new();
    for r in a.regions.iter().filter(|r| !r.passes) {
        out.push(PromotionException {
            exception_id: format!("stock-{}-{id_suffix}", r.region_id),
            kind: ExceptionKind::StockRisk as i32,
            severity: Severity::High as i32,
            owner_role: Role::SupplyChain as i32,
            revenue_at_risk: r.revenue_at_risk.clone(),
            status: ExceptionStatus::Open as i32,
            region_id: r.region_id.clone(),
            detail: format!(
                "fill rate {} below the policy floor; {} SKUs short",
                r.fill_rate, r.short_sku_count
            ),
            ..Default::default()
        });
    }
    if let Some(m) = a.margin.as_ref().filter(|m| m.exception_count > 0) {
        out.push(PromotionException {
            exception_id: format!("margin-{id_suffix}"),
            kind: ExceptionKind::MarginErosion as i32,
            severity: Severity::Medium as i32,
            owner_role: Role::Finance as i32,
            revenue_at_risk: "0".into(),
            status: ExceptionStatus::Open as i32,
            detail: format!("{} below the margin floor", plural(m.exception_count as usize, "line")),
            ..Default::default()
        });
    }
    if let Some(f) = a.funding.as_ref().filter(|f| f.issue_count > 0 || !f.over_cap_agreements.is_empty()) {
        let agreements: Vec<&str> = f.invalid_agreements.iter().map(String::as_str).collect();
        out.push(PromotionException {
            exception_id: format!("funding-{id_suffix}"),
            kind: ExceptionKind::FundingMissing as i32,
            severity: Severity::High as i32,
            owner_role: Role::Finance as i32,
            revenue_at_risk: "0".into(),
            status: ExceptionStatus::Open as i32,
            detail: format!(
                "{} funded lines without valid funding (agreements {}){}",
                f.issue_count,
                agreements.join(", "),
                if f.over_cap_agreements.is_empty() {
                    String::new()
                } else {
                    format!("; over cap: {}", f.over_cap_agreements.join(", "))
                }
            ),
            ..Default::default()
        });
    }
    out
}

/// `low`, `medium` or `high`, from open exceptions.
pub fn risk(open: &[PromotionException]) -> &'static str {
    if open.iter().any(|e| e.severity() == Severity::High) {
        "high"
    } else if open.is_empty() {
        "low"
    } else {
        "medium"
    }
}

/// The options policy applies by itself: per failing region, the option with the smallest
/// revenue loss, when that loss is within the policy's share of forecast revenue. Substitutes
/// are never applied by policy: they put SKUs on promotion that the planner did not choose.
pub fn auto_remediation(
    options: &[RemediationOption],
    forecast_revenue: &str,
    thresholds: &Thresholds,
) -> BTreeMap<String, String> {
    let limit = dec(forecast_revenue) * thresholds.auto_remediation_max_revenue_share;
    let mut best: BTreeMap<String, (Decimal, String)> = BTreeMap::new();
    for o in options.iter().filter(|o| o.kind != "substitute") {
        let loss = -dec(&o.revenue_effect);
        if loss <= limit && thresholds.auto_remediation_max_revenue_share > Decimal::ZERO {
            let e = best.entry(o.region_id.clone()).or_insert((loss, o.option_id.clone()));
            if loss < e.0 {
                *e = (loss, o.option_id.clone());
            }
        }
    }
    best.into_iter().map(|(r, (_, id))| (r, id)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use promo_contracts::promo::v1::{
        FundingIssue, FundingSummary, LineMargin, MarginSummary, RegionAlignment,
    };

    fn assessment(margin_exceptions: usize, funding_issues: usize, failing: &[&str]) -> AssessmentSummary {
        AssessmentSummary {
            margin: Some(MarginSummary {
                exceptions: (0..margin_exceptions).map(|_| LineMargin::default()).collect(),
                exception_count: margin_exceptions as u32,
                ..Default::default()
            }),
            funding: Some(FundingSummary {
                issues: (0..funding_issues)
                    .map(|i| FundingIssue {
                        sku: format!("S{i}"),
                        agreement_id: "FA-1".into(),
                        reason: "x".into(),
                    })
                    .collect(),
                issue_count: funding_issues as u32,
                invalid_agreements: if funding_issues > 0 { vec!["FA-1".into()] } else { vec![] },
                ..Default::default()
            }),
            regions: ["R1", "R2", "R3"]
                .iter()
                .map(|r| RegionAlignment {
                    region_id: (*r).into(),
                    passes: !failing.contains(r),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn finance_is_required_for_unfunded_lines_and_supply_chain_after_remediation() {
        let roles = |a, r| required_approvals(&a, r).into_iter().map(|x| x.0).collect::<Vec<_>>();
        assert_eq!(roles(assessment(0, 0, &[]), false), vec![Role::Merchandising]);
        assert_eq!(roles(assessment(0, 3, &[]), false), vec![Role::Merchandising, Role::Finance]);
        assert_eq!(
            roles(assessment(2, 0, &[]), true),
            vec![Role::Merchandising, Role::Finance, Role::SupplyChain]
        );
    }

    #[test]
    fn decisions_are_checked_against_directory_roles_requirements_and_stage() {
        let p = Policy::default();
        let reqs = vec![
            ApprovalRequirement { role: Role::Merchandising as i32, ..Default::default() },
            ApprovalRequirement {
                role: Role::Finance as i32,
                approved_by: "E2001".into(),
                ..Default::default()
            },
        ];
        let check = |stage, who: &str, role, rev| check_decision(&p, stage, 2, &reqs, who, role, rev);
        assert!(check(Stage::Approval, "E1001", Role::Merchandising, 0).is_ok());
        assert!(check(Stage::Approval, "E1001", Role::Merchandising, 2).is_ok());
        let e = |r: Result<(), String>| r.unwrap_err();
        assert!(
            e(check(Stage::Approval, "E9999", Role::Merchandising, 0))
                .contains("not in the approver directory")
        );
        assert!(
            e(check(Stage::Approval, "E1001", Role::Finance, 0)).contains("does not hold the FINANCE role")
        );
        assert!(e(check(Stage::Approval, "E3001", Role::SupplyChain, 0)).contains("not required"));
        assert!(e(check(Stage::Approval, "E2001", Role::Finance, 0)).contains("already given"));
        assert!(e(check(Stage::Publishing, "E1001", Role::Merchandising, 0)).contains("stage PUBLISHING"));
        assert!(e(check(Stage::Approval, "E1001", Role::Merchandising, 1)).contains("revision 1"));
    }

    #[test]
    fn assessment_raises_exceptions_and_risk() {
        let ex = exceptions_from_assessment(&assessment(1, 2, &["R2"]), "r1");
        let kinds: Vec<ExceptionKind> = ex.iter().map(|e| e.kind()).collect();
        assert_eq!(
            kinds,
            vec![ExceptionKind::StockRisk, ExceptionKind::MarginErosion, ExceptionKind::FundingMissing]
        );
        assert_eq!(ex[0].region_id, "R2");
        assert_eq!(risk(&ex), "high");
        assert_eq!(risk(&ex[1..2]), "medium");
        assert_eq!(risk(&[]), "low");
    }

    #[test]
    fn auto_remediation_picks_small_fixes_only() {
        let opt = |id: &str, region: &str, effect: &str| RemediationOption {
            option_id: id.into(),
            region_id: region.into(),
            revenue_effect: effect.into(),
            ..Default::default()
        };
        let mut options =
            vec![opt("R1:drop", "R1", "-50"), opt("R1:delay", "R1", "-80"), opt("R2:drop", "R2", "-5000")];
        // A substitute that gains revenue is still the planner's call.
        options.push(RemediationOption { kind: "substitute".into(), ..opt("R2:substitute", "R2", "120") });
        let t = Thresholds {
            min_fill_rate: Decimal::ONE,
            min_margin_rate: Decimal::ONE,
            auto_remediation_max_revenue_share: Decimal::new(1, 2),
        };
        let chosen = auto_remediation(&options, "10000", &t);
        assert_eq!(chosen.into_iter().collect::<Vec<_>>(), vec![("R1".to_string(), "R1:drop".to_string())]);
        let off = Thresholds { auto_remediation_max_revenue_share: Decimal::ZERO, ..t };
        assert!(auto_remediation(&options, "10000", &off).is_empty());
    }
}
