//! Post-event analysis: the report from sales actuals against the plan (sell-through, forecast
//! variance, stockout store-days, markdown exposure, realised margin, the replenishment's
//! effect), and the supplier funding claims reconciled per agreement (`promo.analyse_and_claim`:
//! one load of the context and one read of the sales for both).

use crate::{
    Systems, checks, claims,
    context::{Context, load_context},
    status_error, ts,
};
use promo_contracts::{money::format_money, promo::v1 as pb, retail::v1::*};
use promo_workflows::api::{AnalysisAndClaims, ClaimsInput, SalesInput};
use temporalio_sdk::activities::ActivityError;

/// The post-event report and the funding claims of `input`.
pub(crate) async fn analyse_and_claim(
    systems: &Systems,
    input: &ClaimsInput,
) -> Result<AnalysisAndClaims, ActivityError> {
    let (report, c, actuals) = report(systems, &input.sales).await?;
    let claims = claims::submit(systems, input, &c, &actuals).await?;
    Ok(AnalysisAndClaims { report, claims })
}

/// The post-event report of `input`, with the context and the sales actuals it was made from.
async fn report(
    systems: &Systems,
    input: &SalesInput,
) -> Result<(pb::PostEventReport, Context, Vec<SalesActual>), ActivityError> {
    let c = load_context(systems, &input.plan, &input.adjustments, &[]).await?;
    let actuals = sales_actuals(systems, &c, input).await?;
    let mut report = c.report(&actuals, &input.assessment);
    replenishment_outcome(systems, &c, input, &mut report).await?;
    Ok((report, c, actuals))
}

/// The in-flight replenishment figures of the report: the transfer orders released during the
/// window, the units they moved, and the stockout store-days the same sales would have had
/// without them (the reference world's counterfactual).
async fn replenishment_outcome(
    systems: &Systems,
    c: &Context,
    input: &SalesInput,
    report: &mut pb::PostEventReport,
) -> Result<(), ActivityError> {
    report.stockout_store_days_without_transfers = report.stockout_store_days;
    report.units_sold_without_transfers = report.units_sold;
    let orders = rpc!(
        systems.replenishment(),
        list_orders,
        ListOrdersRequest { promotion_id: input.plan.promotion_id.clone() }
    )
    .await
    .map_err(|s| status_error("replenishment", s))?
    .into_inner()
    .orders;
    let released: Vec<&TransferOrder> = orders
        .iter()
        .filter(|o| o.state() == OrderState::Released && o.idempotency_key.contains(":replenish:"))
        .collect();
    if released.is_empty() {
        return Ok(());
    }
    report.transfers_released = released.len() as u32;
    report.units_transferred = released.iter().map(|o| o.total_units).sum();
    let Some(mut req) = sales_request(c, input) else { return Ok(()) };
    req.without_store_transfers = true;
    let without = rpc!(systems.sales(), get_sales_actuals, req.clone())
        .await
        .map_err(|s| status_error("sales", s))?
        .into_inner()
        .actuals;
    checks::sales_actuals(&req, &without).map_err(checks::BadResponse::into_activity_error)?;
    report.stockout_store_days_without_transfers =
        without.iter().map(|a| u64::from(a.stockout_store_days)).sum();
    report.units_sold_without_transfers = without.iter().map(|a| a.units_sold).sum();
    Ok(())
}

/// The sales request of the context's lines over the live windows of `input`; `None` when no
/// region has been live for any time.
pub(crate) fn sales_request(c: &Context, input: &SalesInput) -> Option<GetSalesActualsRequest> {
    // A region that went live as its window closed sold nothing: no empty scopes.
    let scopes: Vec<SalesScope> = input
        .windows
        .iter()
        .filter(|(_, (a, b))| b > a)
        .map(|(r, (a, b))| SalesScope {
            region_id: r.clone(),
            window: Some(TimeRange { start: ts(*a), end: ts(*b) }),
        })
        .collect();
    if scopes.is_empty() {
        return None;
    }
    Some(GetSalesActualsRequest {
        promotion_id: input.plan.promotion_id.clone(),
        lines: c
            .price_lines()
            .into_iter()
            .map(|(sku, price, region_ids)| SalesLine { sku, promo_price: format_money(price), region_ids })
            .collect(),
        scopes,
        without_store_transfers: false,
    })
}

/// Sales actuals of the context's lines over the live windows of `input`, checked
/// ([`checks::sales_actuals`]).
pub async fn sales_actuals(
    systems: &Systems,
    c: &Context,
    input: &SalesInput,
) -> Result<Vec<SalesActual>, ActivityError> {
    let Some(req) = sales_request(c, input) else { return Ok(Vec::new()) };
    let actuals = rpc!(systems.sales(), get_sales_actuals, req.clone())
        .await
        .map_err(|s| status_error("sales", s))?
        .into_inner()
        .actuals;
    checks::sales_actuals(&req, &actuals).map_err(checks::BadResponse::into_activity_error)?;
    Ok(actuals)
}
