//! The active window's monitoring: a round reads the sell-through so far (stockouts, and with
//! replenishment the transfers it proposes) and the live prices back; `promo.watch_window` runs
//! rounds at the policy's cadence — kept by its own retry policy, so that rounds with nothing to
//! decide cost the history nothing — and returns to the workflow only when a round finds
//! something to decide.

use crate::{Systems, business, context::load_context, pulse::beating};
use promo_contracts::money::format_ratio;
use promo_workflows::api::{
    MonitorReport, MonitorRoundInput, MonitorRoundOutput, SalesInput, WatchInput, WatchOutput, WatchedRound,
};
use rust_decimal::Decimal;
use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use temporalio_sdk::{
    ApplicationFailure,
    activities::{ActivityContext, ActivityError},
};

/// The retryable failure with which a `promo.watch_window` round that found nothing to decide
/// ends its attempt: the next attempt, at the cadence, is the next round.
fn nothing_to_decide(msg: String) -> ActivityError {
    ActivityError::application(
        ApplicationFailure::builder(msg).type_name("NothingToDecide".to_owned()).build(),
    )
}

/// How long after the second a watched stretch's end is taken to have come.
const WALL_MARGIN: Duration = Duration::from_millis(50);

/// The longest a watched stretch's last attempt waits for the stretch's end, well inside the
/// attempt's start-to-close timeout (120 s); a longer wait is the workflow's timer.
const MAX_END_WAIT: Duration = Duration::from_secs(60);

/// `2026-12-05 14:00 UTC`.
fn business_time(at: i64) -> String {
    chrono::DateTime::from_timestamp(at, 0)
        .map_or_else(|| at.to_string(), |t| t.format("%Y-%m-%d %H:%M UTC").to_string())
}

/// Whether a watched round found something the workflow must decide now: a stockout in a region
/// not yet raised, transfers to put to supply chain, prices that differ, or prices read back while
/// a correction waits to be confirmed.
/// `released`: the round's transfers were all released without approval.
fn decide(input: &WatchInput, out: &MonitorRoundOutput, released: bool) -> bool {
    out.report.stockouts.keys().any(|r| !input.open_stockouts.contains(r))
        || (!out.report.transfers.is_empty() && !released)
        || matches!(&out.prices, Some(Ok(p)) if !p.mismatches.is_empty() || !input.open_corrections.is_empty())
}

/// One monitoring round: sell-through (as `promo.monitor`) and the live prices read back (as
/// `promo.reconcile_prices`, up to three tries), concurrently. A read-back that fails is
/// returned as its reason, for the round to record as a missed check.
pub(crate) async fn round(
    systems: &Systems,
    input: &MonitorRoundInput,
) -> Result<MonitorRoundOutput, ActivityError> {
    let prices = async {
        let p = input.prices.as_ref()?;
        let mut pause = Duration::from_millis(500);
        let mut tries = 1;
        loop {
            match crate::reconcile::run(systems, p).await {
                Ok(found) => return Some(Ok(found)),
                Err(e) if tries >= 3 => return Some(Err(crate::client::error_text(&e))),
                Err(_) => {
                    tries += 1;
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
            }
        }
    };
    let (report, prices) = tokio::join!(sales_report(systems, &input.sales), prices);
    Ok(MonitorRoundOutput { report: report?, prices, released: Vec::new() })
}

pub(crate) async fn sales_report(
    systems: &Systems,
    input: &SalesInput,
) -> Result<MonitorReport, ActivityError> {
    let c = load_context(systems, &input.plan, &input.adjustments, &[]).await?;
    let actuals = crate::analysis::sales_actuals(systems, &c, input).await?;
    let sold: i64 = actuals.iter().map(|a| a.units_sold).sum();
    let available: i64 = actuals.iter().map(|a| a.available_units).sum();
    let mut stockouts = BTreeMap::new();
    for a in actuals.iter().filter(|a| a.stockout_store_days > 0) {
        *stockouts.entry(a.region_id.clone()).or_insert(0u64) += u64::from(a.stockout_store_days);
    }
    let transfers = match &input.replenish {
        Some(r) => crate::replenish::propose(systems, &c, input, r).await?,
        None => Vec::new(),
    };
    Ok(MonitorReport {
        transfers,
        units_sold: sold,
        sell_through: format_ratio(if available > 0 {
            Decimal::from(sold) / Decimal::from(available)
        } else {
            Decimal::ZERO
        }),
        stockouts,
    })
}

/// One monitoring round (`promo.monitor_round`): sell-through and the live prices read back,
/// concurrently; with replenishment, the round's transfers within the policy's limit released
/// as the workflow would.
pub(crate) async fn monitor_round(
    systems: &Systems,
    input: &MonitorRoundInput,
) -> Result<MonitorRoundOutput, ActivityError> {
    let mut out = round(systems, input).await?;
    // The transfers within the policy's limit, released as the workflow would.
    if let Some(limit) = input.auto_apply_max_cost.as_deref() {
        let within =
            out.report.transfers.iter().filter(|x| promo_workflows::decisions::within_limit(&x.cost, limit));
        let orders = within.map(|x| x.order_id.clone()).collect::<Vec<_>>();
        if !orders.is_empty() {
            out.released = crate::schedule::release_orders(systems, orders, input.release_at).await?;
        }
    }
    Ok(out)
}

/// The most rounds one watch returns at once.
pub const MAX_ROUNDS_PER_STRETCH: usize = 7;

/// Monitoring rounds at the policy's cadence, kept by this activity's retry policy: the first
/// attempt starts the cadence, each
/// later attempt is a round at the business instant the server scheduled it for. A round
/// reads its input from the workflow (`monitor_input`), runs as `promo.monitor_round`, and
/// adds itself to the rounds carried from attempt to attempt in the heartbeat details; it
/// returns them all when it finds something for the workflow to decide (a stockout in a
/// region not yet raised, transfers, prices that differ) or, when the next round would fall
/// at or after the stretch's end, at that end; and otherwise ends its attempt with a retryable
/// `NothingToDecide` failure saying what it saw, which is what the Web UI shows as the
/// activity's last failure until the next round.
pub(crate) async fn watch_window(
    systems: &Systems,
    ctx: &ActivityContext,
    input: &WatchInput,
) -> Result<WatchOutput, ActivityError> {
    let info = ctx.info();
    let scheduled =
        info.current_attempt_scheduled_time.or(info.scheduled_time).unwrap_or_else(SystemTime::now);
    let at = input.clock.business_at_time(scheduled);
    if info.attempt <= 1 {
        crate::events::record_carried(systems, &input.events).await;
        if at + input.every >= input.until {
            return Ok(WatchOutput::default());
        }
        return Err(nothing_to_decide(format!(
            "monitoring every {} business seconds until {}; the first round is due at {}",
            input.every,
            business_time(input.until),
            business_time(at + input.every)
        )));
    }
    let mut rounds: Vec<WatchedRound> =
        ctx.heartbeat_details().deserialize().ok().flatten().unwrap_or_default();
    // A round is never earlier than the cadence allows: one `every` after the last round, or
    // after the first attempt. (Temporal's time-skipping test server reports an attempt's
    // scheduled time one attempt late; read as it is, a stretch's rounds would each carry the
    // instant of the round before.)
    let due = match rounds.last() {
        Some(last) => Some(last.at + input.every),
        None => info.scheduled_time.map(|t| input.clock.business_at_time(t) + input.every),
    };
    let at = due.map_or(at, |due| at.max(due));
    let handle = ctx
        .workflow_handle::<promo_workflows::PromotionWorkflow>()
        .ok_or_else(|| business("promo.watch_window runs only for a promotion workflow"))?;
    let round = async {
        let asked = handle
            .query(promo_workflows::PromotionWorkflow::monitor_input, at, Default::default())
            .await
            .map_err(|e| anyhow::anyhow!("the promotion did not answer monitor_input: {e}"))?;
        let mut input_now = asked.ok_or_else(|| business("the promotion has no live region to monitor"))?;
        if let Some(r) = input_now.sales.replenish.as_mut() {
            r.round += rounds.len() as u32;
        }
        round(systems, &input_now).await
    };
    // Heartbeats carry the rounds so far, so that a retry after a lost worker keeps them.
    let out = beating(ctx, || rounds.clone(), async {
        tokio::select! {
            out = round => out,
            () = ctx.cancelled() => Err(ActivityError::cancelled()),
        }
    })
    .await;
    let out = match out {
        Ok(out) => out,
        Err(e)
            if ctx.is_cancelled() || matches!(&e, ActivityError::Application(f) if f.is_non_retryable()) =>
        {
            return Err(e);
        }
        // A round the systems do not answer goes back to the workflow (with the rounds so far),
        // which shows the outage and calls again until they answer: never a round skipped
        // silently by the next retry.
        Err(e) => return Ok(WatchOutput { rounds, missed: Some(crate::client::error_text(&e)) }),
    };
    // Transfers all within the policy's limit are released here, as the workflow would.
    let mut released = Vec::new();
    let auto = input.auto_apply_max_cost.as_deref().is_some_and(|limit| {
        out.report.transfers.iter().all(|x| promo_workflows::decisions::within_limit(&x.cost, limit))
    });
    if auto {
        let orders = out.report.transfers.iter().map(|x| x.order_id.clone()).collect();
        released = crate::schedule::release_orders(systems, orders, at).await?;
    }
    // An order the systems did not release goes back to the workflow, whose settlement retries it.
    let news = decide(input, &out, auto && released.len() == out.report.transfers.len());
    let seen = format!(
        "round at {}: {} units sold, sell-through {}{}",
        business_time(at),
        out.report.units_sold,
        out.report.sell_through,
        match &out.prices {
            Some(Ok(p)) => format!(", {} of {} prices as approved", p.matching, p.checked),
            Some(Err(why)) => format!(", prices not read back ({why})"),
            None => String::new(),
        }
    );
    rounds.push(WatchedRound { at, round: out, released });
    // News goes to the workflow at once; so does a week of quiet rounds, so that the state (and
    // the heartbeat carrying the rounds) stays small however long the window.
    if news || rounds.len() >= MAX_ROUNDS_PER_STRETCH {
        return Ok(WatchOutput { rounds, missed: None });
    }
    if at + input.every >= input.until {
        // The stretch's last round: return at its end, so that the workflow goes on to what
        // comes then (the close, a delayed launch) without a timer and a workflow task more;
        // an end further off than the attempt may last is left to the workflow's timer.
        let end = UNIX_EPOCH
            + Duration::from_secs(input.clock.server_second_of(input.until).max(0) as u64)
            + WALL_MARGIN;
        let sleep = end.duration_since(SystemTime::now()).unwrap_or_default();
        if sleep > MAX_END_WAIT {
            return Ok(WatchOutput { rounds, missed: None });
        }
        beating(ctx, || rounds.clone(), async {
            tokio::select! {
                () = tokio::time::sleep(sleep) => Ok(()),
                () = ctx.cancelled() => Err(ActivityError::cancelled()),
            }
        })
        .await?;
        return Ok(WatchOutput { rounds, missed: None });
    }
    let _ = ctx.record_heartbeat(rounds).await;
    Err(nothing_to_decide(format!(
        "{seen}; nothing to decide, next round at {}",
        business_time(at + input.every)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use promo_contracts::promo::v1 as pb;
    use promo_workflows::api::ReconcileOutput;

    fn watch(open: &[&str], limit: Option<&str>) -> WatchInput {
        WatchInput {
            every: 86_400,
            until: 2_000_000,
            clock: promo_workflows::clock::BusinessClock::new(1_000_000, 43_200),
            open_stockouts: open.iter().map(|r| (*r).to_owned()).collect(),
            auto_apply_max_cost: limit.map(str::to_owned),
            open_corrections: vec![],
            events: vec![],
        }
    }

    fn round(stockouts: &[&str], transfers: usize, mismatches: usize) -> MonitorRoundOutput {
        let target = promo_workflows::api::Target { channel: 1, region_id: "R1".into() };
        MonitorRoundOutput {
            released: vec![],
            report: MonitorReport {
                units_sold: 10,
                sell_through: "0.1".into(),
                stockouts: stockouts.iter().map(|r| ((*r).to_owned(), 1)).collect(),
                transfers: (0..transfers).map(|_| pb::Transfer::default()).collect(),
            },
            prices: Some(Ok(ReconcileOutput {
                checked: 4,
                matching: 4 - mismatches as u64,
                mismatches: (0..mismatches)
                    .map(|_| promo_workflows::api::PriceMismatch {
                        target: target.clone(),
                        skus: vec!["SKU-00001".into()],
                        count: 1,
                        detail: String::new(),
                        revenue_at_risk: "1".into(),
                    })
                    .collect(),
            })),
        }
    }

    /// A watched round goes back to the workflow only for what it must decide.
    #[test]
    fn a_watched_round_returns_only_for_a_decision() {
        let input = watch(&["R1"], Some("500"));
        assert!(!decide(&input, &round(&[], 0, 0), false), "nothing found");
        assert!(!decide(&input, &round(&["R1"], 0, 0), false), "a stockout already raised");
        assert!(decide(&input, &round(&["R1", "R2"], 0, 0), false), "a stockout in a new region");
        assert!(!decide(&input, &round(&[], 2, 0), true), "transfers released by the round");
        assert!(decide(&input, &round(&[], 2, 0), false), "transfers over the limit");
        assert!(decide(&input, &round(&[], 0, 1), false), "prices that differ");
        let unread = MonitorRoundOutput { prices: Some(Err("down".into())), ..round(&[], 0, 0) };
        assert!(!decide(&input, &unread, false), "a read-back that failed is recorded, not decided");
        // A correction the workflow has not confirmed yet: the next read-back decides it.
        let correcting = WatchInput {
            open_corrections: vec![promo_workflows::api::Target { channel: 1, region_id: "R1".into() }],
            ..watch(&["R1"], Some("500"))
        };
        assert!(decide(&correcting, &round(&[], 0, 0), false), "prices match again: confirm");
        assert!(!decide(&correcting, &unread, false), "prices not read: nothing to confirm yet");
    }
}
