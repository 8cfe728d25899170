//! Scheduling: the promotional prices staged in the ERP (idempotent by promotion + revision),
//! transfer orders to position stock (idempotent by promotion + revision + region), and the
//! release or cancellation of the transfer orders in-flight replenishment proposes.

use crate::{Systems, business, context::load_context, idempotency_key, status_error, ts};
use promo_contracts::{money::format_money, pbjson_types::Timestamp, retail::v1::*};
use promo_workflows::api::{OrdersInput, SettleTransfersInput, StagePricesInput};
use temporalio_sdk::activities::ActivityError;

/// Stages the promotional prices in the ERP; returns the price change's id.
pub(crate) async fn stage_prices(
    systems: &Systems,
    input: &StagePricesInput,
) -> Result<String, ActivityError> {
    let c = load_context(systems, &input.plan, &input.adjustments, &[]).await?;
    let req = StagePriceChangeRequest {
        idempotency_key: idempotency_key(
            &input.plan.promotion_id,
            &input.chain,
            input.revision,
            "erp-prices",
        ),
        promotion_id: input.plan.promotion_id.clone(),
        revision: input.revision,
        region_ids: input.regions.clone(),
        effective_from: ts(input.plan.starts_at),
        effective_to: ts(input.plan.ends_at),
        lines: c
            .price_lines()
            .into_iter()
            .map(|(sku, price, region_ids)| PriceLine { sku, promo_price: format_money(price), region_ids })
            .collect(),
    };
    let resp =
        rpc!(systems.prices(), stage_price_change, req.clone()).await.map_err(|s| status_error("ERP", s))?;
    // An empty id would be staged prices nobody can revert.
    match resp.into_inner().price_change.map(|p| p.price_change_id) {
        Some(id) if !id.is_empty() => Ok(id),
        _ => Err(business("ERP: StagePriceChange: price_change: missing from the response")),
    }
}

/// Creates a transfer order from each region's DC; returns their ids.
pub(crate) async fn create_transfer_orders(
    systems: &Systems,
    input: &OrdersInput,
) -> Result<Vec<String>, ActivityError> {
    let mut ids = Vec::new();
    for (region, (dc, lines)) in &input.orders {
        let req = CreateTransferOrderRequest {
            idempotency_key: idempotency_key(
                &input.promotion_id,
                &input.chain,
                input.revision,
                &format!("transfer:{region}"),
            ),
            promotion_id: input.promotion_id.clone(),
            from_dc_id: dc.clone(),
            to_region_id: region.clone(),
            lines: lines
                .iter()
                .map(|(sku, units)| OrderLine { sku: sku.clone(), units: *units, ..Default::default() })
                .collect(),
            ..Default::default()
        };
        let resp = rpc!(systems.replenishment(), create_transfer_order, req.clone())
            .await
            .map_err(|s| status_error("replenishment", s))?;
        // An order without an id could never be cancelled by compensation.
        match resp.into_inner().order.map(|o| o.order_id) {
            Some(id) if !id.is_empty() => ids.push(id),
            _ => {
                return Err(business(format!(
                    "replenishment: CreateTransferOrder {region}: order: missing from the response"
                )));
            }
        }
    }
    Ok(ids)
}

/// Releases and cancels proposed transfer orders (each call idempotent); returns those released.
pub(crate) async fn settle_transfers(
    systems: &Systems,
    input: &SettleTransfersInput,
) -> Result<Vec<String>, ActivityError> {
    let released = release_orders(systems, input.release.clone(), input.release_at).await?;
    for id in &input.cancel {
        let req = CancelOrderRequest { order_id: id.clone(), reason: input.reason.clone() };
        rpc!(systems.replenishment(), cancel_order, req.clone())
            .await
            .map_err(|s| status_error("replenishment", s))?;
    }
    Ok(released)
}

/// Releases proposed transfer orders to ship at business instant `at`; returns those now
/// released (idempotent: an order already released stays so).
pub(crate) async fn release_orders(
    systems: &Systems,
    orders: Vec<String>,
    at: i64,
) -> Result<Vec<String>, ActivityError> {
    let mut released = Vec::new();
    for id in orders {
        let req = ReleaseOrderRequest {
            order_id: id.clone(),
            release_at: Some(Timestamp { seconds: at, nanos: 0 }),
        };
        let o = rpc!(systems.replenishment(), release_order, req.clone())
            .await
            .map_err(|s| status_error("replenishment", s))?
            .into_inner()
            .order;
        if o.is_some_and(|o| o.state() == OrderState::Released) {
            released.push(id);
        }
    }
    Ok(released)
}

/// Reverts the staged price change at the end of the window (idempotent).
pub(crate) async fn revert_prices(systems: &Systems, price_change_id: &str) -> Result<(), ActivityError> {
    let req = RevertPriceChangeRequest {
        price_change_id: price_change_id.to_owned(),
        reason: "promotion window ended".into(),
    };
    rpc!(systems.prices(), revert_price_change, req.clone()).await.map_err(|s| status_error("ERP", s))?;
    Ok(())
}
