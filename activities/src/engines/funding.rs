//! Supplier funding checks: an agreement exists, is active for the whole window, covers the SKU,
//! and its cap covers forecast units × funding per unit.

use promo_contracts::{domain::FundingAgreement, retail::v1::AgreementStatus};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};

/// Why a funded line is not validly funded, or `None` when it is.
pub fn funding_problem(
    agreement: Option<&FundingAgreement>,
    sku: &str,
    start: i64,
    end: i64,
) -> Option<String> {
    let Some(a) = agreement else {
        return Some("agreement not found".into());
    };
    if a.status != AgreementStatus::Active {
        return Some(format!(
            "agreement is {}",
            a.status.as_str_name().trim_start_matches("AGREEMENT_STATUS_")
        ));
    }
    if a.valid_from > start || a.valid_to < end {
        return Some("agreement does not cover the whole window".into());
    }
    if !a.skus.iter().any(|s| s == sku) {
        return Some(format!("agreement does not cover {sku}"));
    }
    None
}

/// Agreements whose forecast claim exceeds their cap. `claims` are (agreement id, amount).
pub fn over_cap(claims: &[(String, Decimal)], agreements: &HashMap<String, FundingAgreement>) -> Vec<String> {
    let mut totals: BTreeMap<&str, Decimal> = BTreeMap::new();
    for (id, amount) in claims {
        *totals.entry(id.as_str()).or_default() += *amount;
    }
    totals
        .into_iter()
        .filter(|(id, total)| agreements.get(*id).is_some_and(|a| *total > a.cap_amount))
        .map(|(id, _)| id.to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agreement(status: AgreementStatus) -> FundingAgreement {
        FundingAgreement {
            agreement_id: "FA-1".into(),
            supplier_id: "S".into(),
            status,
            valid_from: 0,
            valid_to: 100,
            skus: vec!["A".into()],
            funding_per_unit: Decimal::ONE,
            cap_amount: Decimal::TEN,
        }
    }

    #[test]
    fn every_funding_rule() {
        let ok = agreement(AgreementStatus::Active);
        assert_eq!(funding_problem(Some(&ok), "A", 10, 90), None);
        assert_eq!(funding_problem(None, "A", 10, 90).unwrap(), "agreement not found");
        assert!(
            funding_problem(Some(&agreement(AgreementStatus::PendingSignature)), "A", 10, 90)
                .unwrap()
                .contains("PENDING_SIGNATURE")
        );
        assert!(funding_problem(Some(&ok), "A", 10, 190).unwrap().contains("whole window"));
        assert!(funding_problem(Some(&ok), "B", 10, 90).unwrap().contains("does not cover B"));
        let map: HashMap<String, FundingAgreement> = [("FA-1".to_string(), ok)].into();
        assert_eq!(
            over_cap(&[("FA-1".into(), Decimal::new(6, 0)), ("FA-1".into(), Decimal::new(5, 0))], &map),
            vec!["FA-1"]
        );
        assert!(over_cap(&[("FA-1".into(), Decimal::new(9, 0))], &map).is_empty());
    }
}
