//! Compensation: everything of a promotion still live in the systems is undone — read from
//! the systems themselves, so that a write whose answer was lost, or an activity cancelled
//! mid-call, is undone too — item by item, so that one item a system refuses does not stop the
//! others; then, once nothing is live, its footprint in the promotion calendar is freed.

use crate::{Systems, is_transient, status_error};
use promo_contracts::retail::v1::*;
use promo_workflows::api::{CompensateInput, CompensateOutput, RefusedUndo};
use std::collections::HashSet;
use temporalio_sdk::activities::ActivityError;
use tonic::Status;

/// What of a promotion is live in the systems now.
struct Live {
    /// Activation publications not superseded by an acknowledged revert: (id, what, channel).
    publications: Vec<(String, String, i32)>,
    /// Staged price changes: (id, what).
    price_changes: Vec<(String, String)>,
    /// Orders to cancel: (id, what).
    orders: Vec<(String, String)>,
}

impl Live {
    fn describe(&self) -> Vec<String> {
        let publications = self.publications.iter().map(|(_, what, _)| what.clone());
        publications
            .chain(self.price_changes.iter().chain(&self.orders).map(|(_, what)| what.clone()))
            .collect()
    }
}

/// The sweep (or, `dry_run`, the listing of what is live), then — when asked and nothing is left
/// live — the calendar release. A transient failure of any item fails the attempt after every
/// other item was tried (the activity is retried; every undo is idempotent); a refusal for good
/// is reported in `refused`.
pub(crate) async fn compensate(
    systems: &Systems,
    input: &CompensateInput,
) -> Result<CompensateOutput, ActivityError> {
    let live = list(systems, input).await?;
    let mut out = CompensateOutput::default();
    if input.dry_run {
        out.still_live = live.describe();
        return Ok(out);
    }
    let mut sweep = Sweep::default();
    let mut withdrawn = 0;
    for (id, what, channel) in &live.publications {
        let req = WithdrawRequest { publication_id: id.clone(), reason: input.reason.clone() };
        let call = rpc!(systems.publication(), withdraw, req.clone());
        withdrawn += u32::from(sweep.undo(&format!("channel {channel}"), what, call).await);
    }
    let mut reverted = false;
    for (id, what) in &live.price_changes {
        let req = RevertPriceChangeRequest { price_change_id: id.clone(), reason: input.reason.clone() };
        reverted |=
            sweep.undo("prices", what, rpc!(systems.prices(), revert_price_change, req.clone())).await;
    }
    let mut cancelled = 0;
    for (id, what) in &live.orders {
        let req = CancelOrderRequest { order_id: id.clone(), reason: input.reason.clone() };
        let call = rpc!(systems.replenishment(), cancel_order, req.clone());
        cancelled += u32::from(sweep.undo("orders", what, call).await);
    }
    let Sweep { transient, refused, .. } = sweep;
    out.refused = refused;
    out.withdrawn = withdrawn;
    out.reverted = reverted;
    out.cancelled = cancelled;
    if !transient.is_empty() {
        // Tried every item; the attempt is retried (what was undone stays undone).
        return Err(anyhow::anyhow!(
            "compensation: {} items could not be undone now: {}",
            transient.len(),
            transient.join("; ")
        )
        .into());
    }
    if input.release_calendar && out.refused.is_empty() {
        out.calendar_released = Some(release_calendar(systems, &input.promotion_id).await?);
    }
    Ok(out)
}

/// One sweep's undo calls and what came of them. A service (for publications, a channel — each
/// a system of its own behind the publication service) that failed transiently is not called
/// again in the same sweep: during an outage one probe per service and attempt, not one per
/// item with its own quick retries; a channel that is down holds back no other.
#[derive(Default)]
struct Sweep {
    /// The services that failed transiently in this sweep.
    down: HashSet<String>,
    /// Items not undone now, for the attempt's retry.
    transient: Vec<String>,
    /// Items a system refused for good.
    refused: Vec<RefusedUndo>,
}

impl Sweep {
    /// Makes `call` (the undo of `what` on `service`) unless that service is down; whether
    /// the item is undone.
    async fn undo<T>(
        &mut self,
        service: &str,
        what: &str,
        call: impl std::future::Future<Output = Result<T, Status>>,
    ) -> bool {
        if self.down.contains(service) {
            self.transient.push(format!("{what}: not tried, its service was unavailable"));
            return false;
        }
        match call.await {
            Ok(_) => true,
            Err(s) if is_transient(&s) => {
                self.down.insert(service.to_owned());
                self.transient.push(format!("{what}: {} ({:?})", s.message(), s.code()));
                false
            }
            Err(s) => {
                let reason = format!("{} ({:?})", s.message(), s.code());
                self.refused.push(RefusedUndo { item: what.to_owned(), reason });
                false
            }
        }
    }
}

/// What of the promotion is live: activation publications not superseded by an acknowledged
/// revert (the channel already restored its regular prices), staged price changes, and orders
/// that are proposed, or released and arriving after `keep_orders_arriving_by`.
async fn list(systems: &Systems, input: &CompensateInput) -> Result<Live, ActivityError> {
    let promotion_id = input.promotion_id.clone();
    let pubs = rpc!(
        systems.publication(),
        list_publications,
        ListPublicationsRequest { promotion_id: promotion_id.clone() }
    )
    .await
    .map_err(|s| status_error("publication", s))?
    .into_inner()
    .publications;
    let reverted: HashSet<(i32, String)> = pubs
        .iter()
        .filter(|p| p.kind() == PublicationKind::Revert && p.state() == PublicationState::Acknowledged)
        .map(|p| (p.channel, p.region_id.clone()))
        .collect();
    let publications = pubs
        .iter()
        .rev()
        .filter(|p| {
            p.kind() == PublicationKind::Activate
                && p.state() != PublicationState::Withdrawn
                && !reverted.contains(&(p.channel, p.region_id.clone()))
        })
        .map(|p| {
            let place = if p.region_id.is_empty() { "national" } else { &p.region_id };
            let channel = Channel::try_from(p.channel).map_or("channel", |c| c.as_str_name());
            (
                p.publication_id.clone(),
                format!("publication {} ({channel} {place})", p.publication_id),
                p.channel,
            )
        })
        .collect();
    let changes = rpc!(
        systems.prices(),
        list_price_changes,
        ListPriceChangesRequest { promotion_id: promotion_id.clone(), include_lines: false }
    )
    .await
    .map_err(|s| status_error("ERP", s))?
    .into_inner()
    .price_changes;
    let price_changes = changes
        .iter()
        .filter(|c| c.state() == PriceChangeState::Staged)
        .map(|c| {
            (c.price_change_id.clone(), format!("price change {} (staged in the ERP)", c.price_change_id))
        })
        .collect();
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
    let orders = orders
        .iter()
        .rev()
        .filter(|o| live(o))
        .map(|o| (o.order_id.clone(), format!("transfer order {} ({})", o.order_id, o.state().as_str_name())))
        .collect();
    Ok(Live { publications, price_changes, orders })
}

/// Frees a promotion's footprint in the promotion calendar: whether it held one.
pub(crate) async fn release_calendar(systems: &Systems, promotion_id: &str) -> Result<bool, ActivityError> {
    let req = ReleaseRequest { promotion_id: promotion_id.to_owned() };
    let done = rpc!(systems.calendar(), release, req.clone())
        .await
        .map_err(|s| status_error("promotion calendar", s))?;
    Ok(done.into_inner().released)
}
