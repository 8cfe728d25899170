//! Compensation: everything of a promotion still live in the systems is undone — read from
//! the systems themselves, so that a write whose answer was lost, or an activity cancelled
//! mid-call, is undone too — and then its footprint in the promotion calendar is freed.

use crate::{Systems, status_error};
use promo_contracts::retail::v1::*;
use promo_workflows::api::{CompensateInput, CompensateOutput};
use temporalio_sdk::activities::ActivityError;

/// The sweep, then (when asked) the calendar release.
pub(crate) async fn compensate(
    systems: &Systems,
    input: &CompensateInput,
) -> Result<CompensateOutput, ActivityError> {
    let mut out = sweep(systems, input).await?;
    if input.release_calendar {
        out.calendar_released = Some(release_calendar(systems, &input.promotion_id).await?);
    }
    Ok(out)
}

/// Undoes everything of a promotion still live in the systems, reading what they hold (so a
/// write whose response was lost, or an activity cancelled mid-call, is undone too): staged
/// price changes are reverted; activation publications are withdrawn unless their target has an
/// acknowledged revert (the channel already restored its regular prices); released orders are
/// cancelled unless they arrive by `keep_orders_arriving_by`. Idempotent: a second sweep finds
/// nothing to do.
async fn sweep(systems: &Systems, input: &CompensateInput) -> Result<CompensateOutput, ActivityError> {
    let promotion_id = input.promotion_id.clone();
    let mut out = CompensateOutput::default();
    let pubs = rpc!(
        systems.publication(),
        list_publications,
        ListPublicationsRequest { promotion_id: promotion_id.clone() }
    )
    .await
    .map_err(|s| status_error("publication", s))?
    .into_inner()
    .publications;
    let reverted: std::collections::HashSet<(i32, String)> = pubs
        .iter()
        .filter(|p| p.kind() == PublicationKind::Revert && p.state() == PublicationState::Acknowledged)
        .map(|p| (p.channel, p.region_id.clone()))
        .collect();
    for p in pubs.iter().rev().filter(|p| {
        p.kind() == PublicationKind::Activate
            && p.state() != PublicationState::Withdrawn
            && !reverted.contains(&(p.channel, p.region_id.clone()))
    }) {
        rpc!(
            systems.publication(),
            withdraw,
            WithdrawRequest { publication_id: p.publication_id.clone(), reason: input.reason.clone() }
        )
        .await
        .map_err(|s| status_error("publication", s))?;
        out.withdrawn += 1;
    }
    let changes = rpc!(
        systems.prices(),
        list_price_changes,
        ListPriceChangesRequest { promotion_id: promotion_id.clone(), include_lines: false }
    )
    .await
    .map_err(|s| status_error("ERP", s))?
    .into_inner()
    .price_changes;
    for c in changes.iter().filter(|c| c.state() == PriceChangeState::Staged) {
        rpc!(
            systems.prices(),
            revert_price_change,
            RevertPriceChangeRequest {
                price_change_id: c.price_change_id.clone(),
                reason: input.reason.clone()
            }
        )
        .await
        .map_err(|s| status_error("ERP", s))?;
        out.reverted = true;
    }
    let orders =
        rpc!(systems.replenishment(), list_orders, ListOrdersRequest { promotion_id: promotion_id.clone() })
            .await
            .map_err(|s| status_error("replenishment", s))?
            .into_inner()
            .orders;
    let keep = |o: &TransferOrder| {
        input.keep_orders_arriving_by > 0
            && o.eta.as_ref().is_some_and(|eta| eta.seconds <= input.keep_orders_arriving_by)
    };
    // Proposed orders (replenishment nobody released) never stay.
    let live = |o: &TransferOrder| match o.state() {
        OrderState::Released => !keep(o),
        OrderState::Proposed => true,
        _ => false,
    };
    for o in orders.iter().rev().filter(|o| live(o)) {
        rpc!(
            systems.replenishment(),
            cancel_order,
            CancelOrderRequest { order_id: o.order_id.clone(), reason: input.reason.clone() }
        )
        .await
        .map_err(|s| status_error("replenishment", s))?;
        out.cancelled += 1;
    }
    Ok(out)
}

/// Frees a promotion's footprint in the promotion calendar: whether it held one.
pub(crate) async fn release_calendar(systems: &Systems, promotion_id: &str) -> Result<bool, ActivityError> {
    let req = ReleaseRequest { promotion_id: promotion_id.to_owned() };
    let done = rpc!(systems.calendar(), release, req.clone())
        .await
        .map_err(|s| status_error("promotion calendar", s))?;
    Ok(done.into_inner().released)
}
