//! Price-accuracy reconciliation: what each channel target charges, read back through the
//! publication contract (`GetLivePrices`), against what was approved (the ERP price change's
//! lines while live, the regular prices after the revert).

use crate::{
    Systems, business,
    checks::{self, BadResponse},
    status_error,
};
use promo_contracts::{
    money::{format_money, parse_decimal},
    retail::v1::*,
};
use promo_workflows::api::{PriceMismatch, ReconcileInput, ReconcileOutput, Target};
use rust_decimal::Decimal;
use temporalio_sdk::activities::ActivityError;

const SERVICE: &str = "publication";

/// The SKUs a target carries and their approved promo prices: lines for every region, plus,
/// on a regional target, the lines of that region only.
fn approved_for<'a>(lines: &'a [PriceLine], target: &Target) -> Vec<&'a PriceLine> {
    lines
        .iter()
        .filter(|l| {
            l.region_ids.is_empty()
                || (!target.region_id.is_empty() && l.region_ids.contains(&target.region_id))
        })
        .collect()
}

/// Reads back every target and compares.
pub async fn run(systems: &Systems, input: &ReconcileInput) -> Result<ReconcileOutput, ActivityError> {
    let changes = rpc!(
        systems.prices(),
        list_price_changes,
        ListPriceChangesRequest { promotion_id: input.promotion_id.clone(), include_lines: true }
    )
    .await
    .map_err(|s| status_error("ERP", s))?
    .into_inner()
    .price_changes;
    let Some(change) = changes.into_iter().find(|c| c.price_change_id == input.price_change_id) else {
        return Err(business(format!(
            "ERP: price change {:?} of {} not found",
            input.price_change_id, input.promotion_id
        )));
    };
    let mut skus: Vec<String> = change.lines.iter().map(|l| l.sku.clone()).collect();
    skus.sort();
    skus.dedup();
    let products = rpc!(systems.products(), get_products, GetProductsRequest { skus: skus.clone() })
        .await
        .map_err(|s| status_error("product master", s))?
        .into_inner()
        .products;
    let products = checks::products(&skus, &products).map_err(BadResponse::into_activity_error)?;
    let per_sku = |region: &str| -> Decimal {
        // Forecast units of one SKU on the target for the rest of the window: the region's
        // (every region's, for a national target) promo demand spread over the price change's
        // lines.
        let units: i64 = if region.is_empty() {
            input.demand_units.values().sum()
        } else {
            input.demand_units.get(region).copied().unwrap_or(0)
        };
        Decimal::from(units) * Decimal::from(input.remaining_permille)
            / Decimal::from(1000)
            / Decimal::from(change.lines.len().max(1) as u64)
    };

    let mut out = ReconcileOutput::default();
    for target in &input.targets {
        let lines = approved_for(&change.lines, target);
        let req = GetLivePricesRequest {
            channel: target.channel,
            region_id: target.region_id.clone(),
            skus: lines.iter().map(|l| l.sku.clone()).collect(),
        };
        let live = rpc!(systems.publication(), get_live_prices, req.clone())
            .await
            .map_err(|s| status_error(SERVICE, s))?
            .into_inner()
            .prices;
        let at = format!("GetLivePrices {} {:?}", target.channel, target.region_id);
        if live.len() != lines.len() {
            let reason = format!("{} prices for {} SKUs asked", live.len(), lines.len());
            return Err(BadResponse::new(
                SERVICE,
                at,
                checks::Defect::Invalid { field: "prices".into(), reason },
            )
            .into_activity_error());
        }
        let mut wrong: Vec<(String, Decimal, Decimal)> = Vec::new();
        for (i, (line, got)) in lines.iter().zip(&live).enumerate() {
            if got.sku != line.sku {
                let defect = checks::Defect::UnknownId {
                    field: format!("prices[{i}].sku"),
                    id: got.sku.clone(),
                    why: "is not the SKU asked for at that position",
                };
                return Err(BadResponse::new(SERVICE, at, defect).into_activity_error());
            }
            let charged = parse_decimal(&format!("prices[{i}].price"), &got.price, 4)
                .map_err(|e| BadResponse::new(SERVICE, at.clone(), e).into_activity_error())?;
            let expected = if input.expect_promo {
                parse_decimal("promo_price", &line.promo_price, 4)
                    .map_err(|e| BadResponse::new("ERP", "ListPriceChanges", e).into_activity_error())?
            } else {
                products[&line.sku].regular_price
            };
            out.checked += 1;
            if charged == expected {
                out.matching += 1;
            } else {
                wrong.push((line.sku.clone(), charged, expected));
            }
        }
        if wrong.is_empty() {
            continue;
        }
        let units = per_sku(&target.region_id);
        let at_risk: Decimal =
            wrong.iter().map(|(_, charged, expected)| (*charged - *expected).abs() * units).sum();
        let detail = wrong
            .iter()
            .take(5)
            .map(|(sku, charged, expected)| format!("{sku} charges {charged}, should be {expected}"))
            .collect::<Vec<_>>()
            .join("; ");
        out.mismatches.push(PriceMismatch {
            target: target.clone(),
            skus: wrong.iter().take(20).map(|(sku, ..)| sku.clone()).collect(),
            count: wrong.len() as u32,
            detail,
            revenue_at_risk: format_money(at_risk.round_dp(2)),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_carries_the_lines_of_every_region_and_its_own() {
        let line = |sku: &str, regions: &[&str]| PriceLine {
            sku: sku.into(),
            promo_price: "1.00".into(),
            region_ids: regions.iter().map(|r| (*r).to_owned()).collect(),
        };
        let lines = [line("A", &[]), line("B", &["R1"]), line("C", &["R2"])];
        let skus = |t: Target| approved_for(&lines, &t).iter().map(|l| l.sku.clone()).collect::<Vec<_>>();
        assert_eq!(skus(Target { channel: 1, region_id: "R1".into() }), ["A", "B"]);
        assert_eq!(skus(Target { channel: 2, region_id: String::new() }), ["A"]);
    }
}
