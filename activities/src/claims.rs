//! Supplier funding claims at close: per agreement, the funding actual sales earned (units sold
//! on the lines that reference it × funding per unit), less what was sold outside the
//! agreement's validity (each region's live window prorated against it) and what its cap has no
//! room left for after other claims; the rest is submitted to the trade-terms system
//! (`SubmitClaim`, idempotent by `<promotion>:r<revision>:claim:<agreement>`). Nothing that is
//! not owed is claimed: it is reported with the reason.

use crate::{Systems, context::Context, idempotency_key, status_error};
use promo_contracts::{
    domain::FundingAgreement,
    money::{format_money, parse_decimal},
    promo::v1 as pb,
    retail::v1::*,
};
use promo_workflows::api::ClaimsInput;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use temporalio_sdk::activities::ActivityError;
use tonic::Code;

/// What actual sales earned under one agreement.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Earned {
    /// Funded units sold.
    pub units: i64,
    /// Units × funding per unit.
    pub earned: Decimal,
    /// The part earned outside the agreement's validity.
    pub out_of_window: Decimal,
    /// Lines whose SKU the agreement does not cover (their funding is not owed).
    pub uncovered_skus: Vec<String>,
}

/// Share of a live window `[from, to)` inside the agreement's validity.
pub fn share_in_validity(a: &FundingAgreement, from: i64, to: i64) -> Decimal {
    if to <= from {
        return Decimal::ONE;
    }
    let inside = (to.min(a.valid_to) - from.max(a.valid_from)).max(0);
    Decimal::from(inside) / Decimal::from(to - from)
}

/// The claim of one agreement: (claimable, over cap) from what is claimable before the cap and
/// what the cap has left.
pub fn capped(claimable: Decimal, cap_left: Decimal) -> (Decimal, Decimal) {
    let claim = claimable.min(cap_left.max(Decimal::ZERO));
    (claim, claimable - claim)
}

/// Reconciles the funding `actuals` earned under each agreement of `c` and submits the claims.
pub async fn submit(
    systems: &Systems,
    input: &ClaimsInput,
    c: &Context,
    actuals: &[SalesActual],
) -> Result<Vec<pb::FundingClaimResult>, ActivityError> {
    let sales = &input.sales;
    let agreement_of: BTreeMap<&str, &str> = c
        .lines
        .iter()
        .filter_map(|l| {
            let id = l
                .funding
                .as_ref()
                .map(|f| f.0.as_str())
                .or(l.funding_issue.as_ref().map(|f| f.0.as_str()))?;
            Some((l.sku.as_str(), id))
        })
        .collect();
    let mut earned: BTreeMap<String, Earned> = BTreeMap::new();
    for a in actuals {
        let Some(&id) = agreement_of.get(a.sku.as_str()) else { continue };
        let e = earned.entry(id.to_owned()).or_default();
        let Some(agreement) = c.agreements.get(id) else { continue };
        if !agreement.skus.contains(&a.sku) {
            e.uncovered_skus.push(a.sku.clone());
            continue;
        }
        let units = Decimal::from(a.units_sold);
        let amount = units * agreement.funding_per_unit;
        let (from, to) = sales.windows.get(&a.region_id).copied().unwrap_or((c.starts_at, c.ends_at));
        e.units += a.units_sold;
        e.earned += amount;
        e.out_of_window += amount * (Decimal::ONE - share_in_validity(agreement, from, to));
    }

    let submitted = rpc!(systems.funding(), list_claims, ListClaimsRequest { promotion_id: String::new() })
        .await
        .map_err(|s| status_error("funding", s))?
        .into_inner()
        .claims;
    let forecast = sales.assessment.funding.as_ref().map(|f| f.forecast_claims.clone()).unwrap_or_default();
    let mut out = Vec::new();
    for (id, e) in earned {
        let key =
            idempotency_key(&sales.plan.promotion_id, &input.chain, input.revision, &format!("claim:{id}"));
        let mut r = pb::FundingClaimResult {
            agreement_id: id.clone(),
            forecast: forecast.get(&id).cloned().unwrap_or_else(|| "0".into()),
            units_sold: e.units,
            earned: format_money(e.earned.round_dp(2)),
            out_of_window: format_money(e.out_of_window.round_dp(2)),
            over_cap: "0".into(),
            claimed: "0".into(),
            ..Default::default()
        };
        let mut notes = Vec::new();
        if !e.uncovered_skus.is_empty() {
            notes.push(format!("{} not covered by the agreement", e.uncovered_skus.join(", ")));
        }
        match c.agreements.get(&id) {
            None => notes.push("agreement not found".into()),
            Some(a) if a.status != AgreementStatus::Active => notes.push(format!(
                "agreement is {}",
                a.status.as_str_name().trim_start_matches("AGREEMENT_STATUS_")
            )),
            Some(a) => {
                if !e.out_of_window.is_zero() {
                    notes.push("part of the sales fell outside the agreement's validity".into());
                }
                let others: Decimal = submitted
                    .iter()
                    .filter(|s| s.agreement_id == id && s.idempotency_key != key)
                    .filter_map(|s| parse_decimal("amount", &s.amount, 2).ok())
                    .sum();
                let (claim, over) = capped((e.earned - e.out_of_window).round_dp(2), a.cap_amount - others);
                r.over_cap = format_money(over);
                if !over.is_zero() {
                    notes.push(format!("the cap of {} has {} left", a.cap_amount, a.cap_amount - others));
                }
                if claim > Decimal::ZERO {
                    let req = SubmitClaimRequest {
                        idempotency_key: key.clone(),
                        promotion_id: sales.plan.promotion_id.clone(),
                        agreement_id: id.clone(),
                        amount: format_money(claim),
                        units: e.units,
                    };
                    match rpc!(systems.funding(), submit_claim, req.clone()).await {
                        Ok(resp) => {
                            let got = resp.into_inner().claim.unwrap_or_default();
                            r.claimed = got.amount;
                            r.claim_id = got.claim_id;
                        }
                        Err(s) if s.code() == Code::FailedPrecondition => {
                            notes.push(format!("refused by the trade-terms system: {}", s.message()));
                        }
                        Err(s) => return Err(status_error("funding", s)),
                    }
                }
            }
        }
        r.note = notes.join("; ");
        out.push(r);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agreement(valid_from: i64, valid_to: i64) -> FundingAgreement {
        FundingAgreement {
            agreement_id: "FA-1".into(),
            supplier_id: "S".into(),
            status: AgreementStatus::Active,
            valid_from,
            valid_to,
            skus: vec!["A".into()],
            funding_per_unit: Decimal::ONE,
            cap_amount: Decimal::TEN,
        }
    }

    #[test]
    fn sales_outside_the_validity_and_over_the_cap_are_not_claimed() {
        assert_eq!(share_in_validity(&agreement(0, 100), 0, 100), Decimal::ONE);
        assert_eq!(share_in_validity(&agreement(0, 50), 0, 100), Decimal::new(5, 1));
        assert_eq!(share_in_validity(&agreement(200, 300), 0, 100), Decimal::ZERO);
        assert_eq!(capped(Decimal::from(8), Decimal::TEN), (Decimal::from(8), Decimal::ZERO));
        assert_eq!(capped(Decimal::from(12), Decimal::TEN), (Decimal::TEN, Decimal::from(2)));
        assert_eq!(capped(Decimal::from(3), Decimal::from(-1)), (Decimal::ZERO, Decimal::from(3)));
    }
}
