//! Scheduling: the price change staged in the ERP (idempotent by promotion + revision), and
//! transfer orders for regions whose short SKUs are still in the plan.

use super::{Stop, check_cancel, enter, past};
use crate::{
    api::{OrdersInput, PromotionActivities as A, RegionInfo, StagePricesInput},
    plan::Plan,
    workflow::{options::opts, state::Ctx, wait},
};
use promo_contracts::promo::v1::Stage;
use std::collections::BTreeMap;

/// Stages prices and orders stock.
pub async fn run(ctx: &Ctx, plan: &Plan) -> Result<(), Stop> {
    if past(ctx, Stage::Scheduling) {
        return Ok(());
    }
    enter(ctx, Stage::Scheduling);
    let (revision, chain, adjustments, regions) = ctx.state_mut(|s| {
        s.wrote = true;
        (s.revision, s.first_run_id.clone(), s.adjustments.clone(), s.regions.clone())
    });
    let input = StagePricesInput {
        revision,
        chain: chain.clone(),
        plan: plan.clone(),
        regions: regions.iter().map(|r| r.region_id.clone()).collect(),
        adjustments,
    };
    let summary = format!("stage {} promo prices in the ERP", plan.lines.len());
    let price_change_id = wait::run(ctx, wait::call(ctx, A::stage_prices, input, opts(60, summary))).await?;
    ctx.state_mut(|s| s.price_change_id = Some(price_change_id));
    let orders = transfer_orders(ctx, &regions);
    if !orders.is_empty() {
        let n = orders.len();
        let input = OrdersInput { promotion_id: plan.promotion_id.clone(), revision, chain, orders };
        let summary = format!("order stock for {n} regions");
        let ids =
            wait::run(ctx, wait::call(ctx, A::create_transfer_orders, input, opts(60, summary))).await?;
        ctx.state_mut(|s| s.orders = ids);
    }
    check_cancel(ctx)
}

/// Transfer orders for regions whose short SKUs are not covered (from the assessment summary).
fn transfer_orders(ctx: &Ctx, regions: &[RegionInfo]) -> BTreeMap<String, (String, Vec<(String, i64)>)> {
    ctx.state(|s| {
        let mut out = BTreeMap::new();
        let Some(a) = &s.assessment else { return out };
        for r in a.regions.iter().filter(|r| r.short_sku_count > 0) {
            let dropped = s.adjustments.dropped.get(&r.region_id);
            let lines: Vec<(String, i64)> = r
                .short_skus
                .iter()
                .zip(r.short_units.iter().chain(std::iter::repeat(&0)))
                .filter(|(sku, units)| **units > 0 && dropped.is_none_or(|d| !d.contains(*sku)))
                .map(|(sku, units)| (sku.clone(), *units))
                .collect();
            if let (false, Some(info)) =
                (lines.is_empty(), regions.iter().find(|x| x.region_id == r.region_id))
            {
                out.insert(r.region_id.clone(), (info.dc_id.clone(), lines));
            }
        }
        out
    })
}
