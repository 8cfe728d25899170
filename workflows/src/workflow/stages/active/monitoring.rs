//! Monitoring the live window: a round reads the sell-through so far (stockouts raised as
//! exceptions; with replenishment, transfers released within the policy's limit or put to supply
//! chain) and the live prices back; a watched stretch runs rounds at the cadence in one activity
//! and returns only when a round finds something to decide.

use super::{Windows, reconcile};
use crate::{
    api::{
        MonitorReport, MonitorRoundInput, PromotionActivities as A, ReconcileOutput, ReplenishInput,
        SalesInput, SettleTransfersInput, Target, WatchInput, WatchOutput,
    },
    decisions,
    decisions::exception,
    plan::Plan,
    policy::Policy,
    workflow::{
        options::{systems_opts, watch_opts},
        persist::{Shows, until_answered},
        publish::publish,
        state::{Ctx, PromotionWorkflow},
        time::{business_now, now, until},
        wait::{self, Stop},
    },
};
use promo_contracts::promo::v1::*;
use std::time::Duration;

/// One monitoring round: sell-through so far, stockouts raised as exceptions and, with
/// replenishment, the round's transfers released or put to supply chain. The live prices are
/// read back in the same activity: returned for the round's reconciliation.
pub(super) async fn monitor(
    ctx: &Ctx,
    plan: &Plan,
    policy: &Policy,
    so_far: Windows,
) -> Result<Option<Result<ReconcileOutput, String>>, Stop> {
    let mut input = sales_input(ctx, plan, so_far);
    if ctx.state(|s| s.replenishes) {
        input.replenish = Some(ctx.state_mut(|s| {
            s.replenish_round += 1;
            replenish_input(s, policy, s.replenish_round)
        }));
    }
    // The round releases the transfers within the policy's limit itself.
    let auto = ctx.state(|s| s.replenishes);
    let input = MonitorRoundInput {
        sales: input,
        prices: reconcile::read_input(ctx, plan, policy, true),
        auto_apply_max_cost: auto.then(|| policy.replenishment.auto_apply_max_cost.clone()),
        release_at: if auto { business_now(ctx, policy) } else { 0 },
    };
    let summary = "monitor sell-through and read back live prices".to_owned();
    let attempts = policy.systems_attempts;
    let answer = until_answered(ctx, "a monitoring round", Shows::Systems, || {
        wait::call(ctx, A::monitor_round, input.clone(), systems_opts(attempts, 120, summary.clone()))
    })
    .await?;
    let out = match answer {
        Ok(out) => out,
        // Refused for good (an answer that breaks its contract): a round missed, not a reason to
        // tear a live promotion down; the next round tries again.
        Err(why) => {
            let t = now(ctx);
            ctx.state_mut(|s| s.record(t, "system", "monitoring-missed", why));
            return Ok(None);
        }
    };
    take_round(ctx, plan, policy, now(ctx), out.report, &out.released).await?;
    Ok(out.prices)
}

/// What a round found, taken into the state at workflow time `t`: the audit line, stockouts
/// raised as exceptions (or brought up to date) and, with replenishment, its transfers — those
/// whose orders are in `released` already released by the round itself.
async fn take_round(
    ctx: &Ctx,
    plan: &Plan,
    policy: &Policy,
    t: i64,
    m: MonitorReport,
    released: &[String],
) -> Result<(), Stop> {
    ctx.state_mut(|s| {
        s.record(
            t,
            "system",
            "monitor",
            format!("{} units sold, sell-through {}", m.units_sold, m.sell_through),
        );
        let window_days = (plan.ends_at - plan.starts_at) as f64 / 86_400.0;
        for (r, days) in &m.stockouts {
            let stores = s.regions.iter().find(|x| &x.region_id == r).map_or(0, |x| x.stores);
            let at_risk = s.assessment.as_ref().map_or_else(
                || "0".to_owned(),
                |a| decisions::stockout_revenue_at_risk(a, r, *days as i64, stores, window_days),
            );
            let id = format!("stockout-{r}");
            let detail = format!("{days} store-days out of stock so far");
            // Raised once per region; later rounds bring its figures up to date.
            if let Some(open) =
                s.exceptions.iter_mut().find(|x| x.exception_id == id && x.status() == ExceptionStatus::Open)
            {
                open.revenue_at_risk = at_risk;
                open.detail = detail;
                continue;
            }
            s.raise(
                t,
                PromotionException {
                    region_id: r.clone(),
                    ..exception(
                        id,
                        ExceptionKind::StockRisk,
                        Severity::Medium,
                        Role::SupplyChain,
                        at_risk,
                        detail,
                    )
                },
            );
        }
    });
    if ctx.state(|s| s.replenishes) {
        recommend(ctx, policy, m.transfers);
        ctx.state_mut(|s| {
            let by_round: Vec<Transfer> = s
                .transfers
                .iter()
                .filter(|x| x.state() == TransferState::Applied && released.contains(&x.order_id))
                .cloned()
                .collect();
            for x in by_round {
                if s.transfers_settled.insert(x.transfer_id.clone()) {
                    s.wrote = true;
                    let detail =
                        format!("{}: order {} released ({} units)", x.transfer_id, x.order_id, x.units);
                    s.record(t, "system", "transfer-released", detail);
                }
            }
        });
        settle(ctx, policy).await?;
    }
    publish(ctx);
    Ok(())
}

/// How a watched stretch ended.
pub(super) enum Stretch {
    /// Its rounds were taken; the business instant of the last.
    Rounds(i64),
    /// A pause, an override or a hold released interrupted it: the caller looks again.
    Interrupted,
    /// It ran no round: it could not run (recorded as monitoring missed, not a reason to stop
    /// the promotion), or there was no room for one before its end.
    Idle,
    /// The systems did not answer a round (after the rounds taken, the instant of the last):
    /// SYSTEMS_UNAVAILABLE shows, and the next round goes by the timer, whose call waits for
    /// them.
    Missed(Option<i64>),
}

/// Monitors the live window up to business instant `end` with `promo.watch_window` — one
/// ordinary activity whose retry policy keeps the cadence (a round with nothing to decide ends
/// its attempt, and retries are not history events), each round reading its inputs from the
/// workflow's `monitor_input` query, returning only when a round finds something to decide or
/// the stretch ends — then takes its rounds in order as timer-driven rounds would have been
/// taken, each at its own time. A window costs a bounded number of events whatever its number
/// of rounds.
pub(super) async fn watch_stretch(
    ctx: &Ctx,
    plan: &Plan,
    policy: &Policy,
    every: i64,
    end: i64,
    nudged: impl Fn(&PromotionWorkflow) -> bool,
) -> Result<Stretch, Stop> {
    let (open_stockouts, open_corrections) = ctx.state(|s| {
        let open = s
            .exceptions
            .iter()
            .filter(|x| x.exception_id.starts_with("stockout-") && x.status() == ExceptionStatus::Open)
            .map(|x| x.region_id.clone())
            .collect();
        let corrections = s
            .price_corrections
            .iter()
            .filter(|c| !c.after_revert && c.corrected_at.is_none())
            .map(|c| Target { channel: c.channel, region_id: c.region_id.clone() })
            .collect();
        (open, corrections)
    });
    let clock = crate::workflow::time::clock(ctx, policy);
    // Transfers within the limit are released by the rounds themselves (no stretch starts while
    // one awaits supply chain, so there is none for them to supersede).
    let auto_apply_max_cost =
        ctx.state(|s| s.replenishes).then(|| policy.replenishment.auto_apply_max_cost.clone());
    let input = WatchInput {
        every,
        until: end,
        clock,
        open_stockouts,
        auto_apply_max_cost,
        open_corrections,
        events: crate::workflow::events::carry(ctx),
    };
    let cadence = policy.scaled(Duration::from_secs(every as u64));
    let summary = format!("monitor the live window every {} (business time)", policy.durations.monitor_every);
    let work =
        wait::remote(ctx, A::watch_window, input, watch_opts(cadence, until(ctx, policy, end), summary));
    let out: WatchOutput = match wait::activity(ctx, work, nudged).await {
        Ok(Some(out)) => out,
        Ok(None) => return Ok(Stretch::Interrupted),
        Err(Stop::Failed(why, _)) => {
            let t = now(ctx);
            ctx.state_mut(|s| s.record(t, "system", "monitoring-missed", why));
            return Ok(Stretch::Idle);
        }
        Err(stop) => return Err(stop),
    };
    let mut last = Stretch::Idle;
    let missed = out.missed.clone();
    for r in out.rounds {
        // The round's own moment on the workflow clock, for its audit line and exceptions.
        let t = clock.server_second_of(r.at);
        if ctx.state(|s| s.replenishes) {
            ctx.state_mut(|s| s.replenish_round += 1);
        }
        take_round(ctx, plan, policy, t, r.round.report, &r.released).await?;
        reconcile::round_from(ctx, plan, policy, true, r.round.prices).await?;
        last = Stretch::Rounds(r.at);
    }
    if let Some(why) = missed {
        super::systems_unavailable(ctx, "a monitoring round", &why);
        return Ok(Stretch::Missed(match last {
            Stretch::Rounds(at) => Some(at),
            _ => None,
        }));
    }
    if matches!(last, Stretch::Rounds(_)) {
        let t = now(ctx);
        ctx.state_mut(|s| {
            s.resolve(t, |e| e.kind() == ExceptionKind::SystemsUnavailable, "monitoring rounds answer again")
        });
    }
    Ok(last)
}

/// What a watched round at business instant `at` takes, from the state alone (the
/// `monitor_input` query): the same input a timer-driven round builds. `None` before a region
/// is live.
pub(crate) fn watched_round_input(s: &PromotionWorkflow, at: i64) -> Option<MonitorRoundInput> {
    let (plan, policy) = (s.plan.as_ref()?, s.policy.as_ref()?);
    let windows: Windows = s
        .readiness
        .iter()
        .filter_map(|(r, x)| x.activated_at.as_ref().map(|a| (r.clone(), (a.seconds, at.min(plan.ends_at)))))
        .collect();
    if windows.is_empty() {
        return None;
    }
    let mut sales = sales_input_of(s, plan, windows);
    sales.replenish = s.replenishes.then(|| replenish_input(s, policy, s.replenish_round + 1));
    // The watched stretch releases its rounds' transfers itself, when they are all within
    // the limit (`promo.watch_window`).
    Some(MonitorRoundInput {
        sales,
        prices: reconcile::read_input_at(s, plan, at, true),
        auto_apply_max_cost: None,
        release_at: 0,
    })
}

/// The replenishment asked of monitoring round `round`.
fn replenish_input(s: &PromotionWorkflow, policy: &Policy, round: u32) -> ReplenishInput {
    ReplenishInput {
        revision: s.revision,
        chain: s.first_run_id.clone(),
        round,
        dc_unit_cost: policy.replenishment.dc_unit_cost.clone(),
        store_unit_cost: policy.replenishment.store_unit_cost.clone(),
        region_dcs: s.regions.iter().map(|r| (r.region_id.clone(), r.dc_id.clone())).collect(),
    }
}

/// Takes a round's recommendations: the ones waiting from an earlier round are superseded; each
/// new one within the policy's limit is to be released, a dearer one waits for supply chain.
fn recommend(ctx: &Ctx, policy: &Policy, transfers: Vec<Transfer>) {
    let t = now(ctx);
    supersede_waiting(ctx, "a later monitoring round replaced it");
    let limit = policy.replenishment.auto_apply_max_cost.clone();
    ctx.state_mut(|s| {
        for mut x in transfers {
            let within = decisions::within_limit(&x.cost, &limit);
            let what = format!(
                "{} {}: {} units to {} cells, cost {}, protects {} of revenue ({}); order {}",
                x.transfer_id, x.kind, x.units, x.cells, x.cost, x.revenue_protected, x.rationale, x.order_id
            );
            s.record(t, "system", "transfer-recommended", what);
            if within {
                x.state = TransferState::Applied as i32;
            } else {
                x.state = TransferState::AwaitingApproval as i32;
                s.raise(
                    t,
                    PromotionException { region_id: x.region_id.clone(), ..exception(format!("transfer-{}", x.transfer_id), ExceptionKind::StockRisk, Severity::Medium, Role::SupplyChain, x.revenue_protected.clone(), format!(
                            "transfer {} costs {}, over the {limit} released without approval: approve or reject \
                             as SUPPLY_CHAIN",
                            x.transfer_id, x.cost
                        )) },
                );
            }
            s.transfers.push(x);
        }
    });
}

/// Marks every transfer still waiting for supply chain as superseded (its order is cancelled by
/// the next [`settle`]).
pub(super) fn supersede_waiting(ctx: &Ctx, why: &str) {
    let t = now(ctx);
    ctx.state_mut(|s| {
        let mut ids = Vec::new();
        for x in s.transfers.iter_mut().filter(|x| x.state() == TransferState::AwaitingApproval) {
            x.state = TransferState::Superseded as i32;
            ids.push(x.transfer_id.clone());
        }
        for id in ids {
            let exception = format!("transfer-{id}");
            s.resolve(t, |e| e.exception_id == exception, why);
            s.record(t, "system", "transfer-superseded", format!("{id}: {why}"));
        }
    });
}

/// Releases the orders of applied and approved transfers and cancels those of declined and
/// superseded ones, once each.
pub(super) async fn settle(ctx: &Ctx, policy: &Policy) -> Result<(), Stop> {
    let (release, cancel): (Vec<Transfer>, Vec<Transfer>) = ctx.state(|s| {
        s.transfers
            .iter()
            .filter(|x| {
                x.state() != TransferState::AwaitingApproval && !s.transfers_settled.contains(&x.transfer_id)
            })
            .cloned()
            .partition(|x| matches!(x.state(), TransferState::Applied | TransferState::Approved))
    });
    if release.is_empty() && cancel.is_empty() {
        return Ok(());
    }
    let input = SettleTransfersInput {
        release: release.iter().map(|x| x.order_id.clone()).collect(),
        release_at: business_now(ctx, policy),
        cancel: cancel.iter().map(|x| x.order_id.clone()).collect(),
        reason: "replenishment not approved".into(),
    };
    let summary = format!("release {} and cancel {} transfer orders", release.len(), cancel.len());
    let attempts = policy.systems_attempts;
    let answer = until_answered(ctx, "the release of transfer orders", Shows::Systems, || {
        wait::call(ctx, A::settle_transfers, input.clone(), systems_opts(attempts, 60, summary.clone()))
    })
    .await?;
    let t = now(ctx);
    let released = match answer {
        Ok(released) => released,
        // Refused for good: recorded, and not asked again (the ending's sweep cancels any
        // proposed order left).
        Err(why) => {
            ctx.state_mut(|s| {
                s.record(t, "system", "transfers-refused", why);
                for x in release.iter().chain(&cancel) {
                    s.transfers_settled.insert(x.transfer_id.clone());
                }
            });
            return Ok(());
        }
    };
    ctx.state_mut(|s| {
        s.wrote = true;
        for x in &release {
            let detail = if released.contains(&x.order_id) {
                format!("{}: order {} released ({} units)", x.transfer_id, x.order_id, x.units)
            } else {
                format!("{}: order {} could not be released", x.transfer_id, x.order_id)
            };
            s.record(t, "system", "transfer-released", detail);
            s.transfers_settled.insert(x.transfer_id.clone());
        }
        for x in &cancel {
            s.record(
                t,
                "system",
                "transfer-cancelled",
                format!("{}: order {} cancelled", x.transfer_id, x.order_id),
            );
            s.transfers_settled.insert(x.transfer_id.clone());
        }
    });
    publish(ctx);
    Ok(())
}

/// The input of the sales activities over `windows`.
pub(crate) fn sales_input(ctx: &Ctx, plan: &Plan, windows: Windows) -> SalesInput {
    ctx.state(|s| sales_input_of(s, plan, windows))
}

/// [`sales_input`] from the state alone (for the `monitor_input` query as well).
fn sales_input_of(s: &PromotionWorkflow, plan: &Plan, windows: Windows) -> SalesInput {
    SalesInput {
        plan: plan.clone(),
        adjustments: s.adjustments.clone(),
        windows,
        assessment: s.assessment.clone().unwrap_or_default(),
        replenish: None,
    }
}
