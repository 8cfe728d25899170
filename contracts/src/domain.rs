//! Validated domain views of the integration messages: decimals parsed, enums checked.
//! Every conversion names the record and field it refuses.

use crate::money::{FieldError, parse_decimal, parse_money, parse_non_negative_money};
use crate::retail::v1 as wire;
use rust_decimal::Decimal;

/// A product master record with parsed money.
#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    /// SKU.
    pub sku: String,
    /// Category.
    pub category: String,
    /// Supplier.
    pub supplier_id: String,
    /// Unit cost.
    pub cost: Decimal,
    /// Regular shelf price.
    pub regular_price: Decimal,
    /// Price band within the category.
    pub price_band: u32,
    /// Channels the SKU may be promoted on.
    pub eligible_channels: Vec<wire::Channel>,
}

impl TryFrom<&wire::Product> for Product {
    type Error = FieldError;

    fn try_from(p: &wire::Product) -> Result<Self, FieldError> {
        let field = |f: &str| format!("product {} {f}", p.sku);
        let regular_price = parse_non_negative_money(&field("regular_price"), &p.regular_price)?;
        if regular_price.is_zero() {
            return Err(FieldError::new(field("regular_price"), "must be above zero"));
        }
        Ok(Self {
            sku: p.sku.clone(),
            category: p.category.clone(),
            supplier_id: p.supplier_id.clone(),
            cost: parse_non_negative_money(&field("cost"), &p.cost)?,
            regular_price,
            price_band: p.price_band,
            eligible_channels: p.eligible_channels().collect(),
        })
    }
}

/// A funding agreement with parsed money and validity.
#[derive(Debug, Clone, PartialEq)]
pub struct FundingAgreement {
    /// Agreement id.
    pub agreement_id: String,
    /// Supplier.
    pub supplier_id: String,
    /// Status.
    pub status: wire::AgreementStatus,
    /// Valid from, Unix seconds.
    pub valid_from: i64,
    /// Valid to, Unix seconds.
    pub valid_to: i64,
    /// SKUs covered.
    pub skus: Vec<String>,
    /// Funding per unit sold.
    pub funding_per_unit: Decimal,
    /// Cap on total funding.
    pub cap_amount: Decimal,
}

impl TryFrom<&wire::FundingAgreement> for FundingAgreement {
    type Error = FieldError;

    fn try_from(a: &wire::FundingAgreement) -> Result<Self, FieldError> {
        let field = |f: &str| format!("agreement {} {f}", a.agreement_id);
        let status = wire::AgreementStatus::try_from(a.status)
            .map_err(|_| FieldError::new(field("status"), format!("unknown status {}", a.status)))?;
        Ok(Self {
            agreement_id: a.agreement_id.clone(),
            supplier_id: a.supplier_id.clone(),
            status,
            valid_from: a.valid_from.as_ref().map_or(i64::MIN, |t| t.seconds),
            valid_to: a.valid_to.as_ref().map_or(i64::MAX, |t| t.seconds),
            skus: a.skus.clone(),
            funding_per_unit: parse_non_negative_money(&field("funding_per_unit"), &a.funding_per_unit)?,
            cap_amount: parse_non_negative_money(&field("cap_amount"), &a.cap_amount)?,
        })
    }
}

/// A past promotion result with parsed ratios.
#[derive(Debug, Clone, PartialEq)]
pub struct PastPromotion {
    /// SKU.
    pub sku: String,
    /// Discount depth as a fraction of regular price.
    pub discount_depth: Decimal,
    /// Realised uplift over baseline.
    pub realised_uplift: Decimal,
}

impl TryFrom<&wire::PastPromotion> for PastPromotion {
    type Error = FieldError;

    fn try_from(h: &wire::PastPromotion) -> Result<Self, FieldError> {
        let field = |f: &str| format!("history {}/{} {f}", h.sku, h.promotion_id);
        Ok(Self {
            sku: h.sku.clone(),
            discount_depth: parse_decimal(&field("discount_depth"), &h.discount_depth, 6)?,
            realised_uplift: parse_decimal(&field("realised_uplift"), &h.realised_uplift, 6)?,
        })
    }
}

/// Parses a money string from a response field, naming the record (`what`) and field.
pub fn money_field(what: &str, field: &str, value: &str) -> Result<Decimal, FieldError> {
    parse_money(&format!("{what} {field}"), value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_conversion_names_the_sku_and_field() {
        let p = wire::Product {
            sku: "SKU-1".into(),
            cost: "4,20".into(),
            regular_price: "9.99".into(),
            ..Default::default()
        };
        let e = Product::try_from(&p).unwrap_err();
        assert_eq!(e.field, "product SKU-1 cost");
        assert!(e.reason.contains("\"4,20\""), "{e}");
        let ok = Product::try_from(&wire::Product { cost: "4.2".into(), ..p }).unwrap();
        assert_eq!(ok.cost, Decimal::new(42, 1));
    }
}
