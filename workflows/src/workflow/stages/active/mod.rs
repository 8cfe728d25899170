//! The active window: regions go live as their gates open (their time has come, their channels
//! acknowledged or an operator overrode, nothing paused — `decisions::activation`), late
//! acknowledgments are polled, sell-through is monitored on the policy's cadence, and the
//! window's end closes it. Returns each region's live window for the analysis.

use super::{Stop, check_cancel, enter, publishing, reconcile};
use crate::{
    api::{
        MonitorReport, MonitorRoundInput, PromotionActivities as A, ReconcileOutput, ReplenishInput,
        SalesInput, SettleTransfersInput, Target, WatchInput, WatchOutput,
    },
    decisions::{self, Activation, Gate},
    plan::Plan,
    policy::{LateAckAction, Policy},
    workflow::{
        options::{long_opts, opts, watch_opts},
        state::{Ctx, PromotionWorkflow, pb_ts, publish},
        time::{business_now, now, until},
        wait,
    },
};
use promo_contracts::promo::v1::*;
use std::{collections::BTreeMap, time::Duration};

/// Each live region's window, business seconds: (went live, ends).
pub type Windows = BTreeMap<String, (i64, i64)>;

/// Runs the window to its end.
pub async fn run(ctx: &Ctx, plan: &Plan, policy: &Policy) -> Result<Windows, Stop> {
    let mut windows = Windows::new();
    let every = policy.durations.monitor_every.0.as_secs().max(60) as i64;
    let mut next_monitor = plan.starts_at + every;
    let mut announced = false;
    // A watched stretch that ran no round is not started again before the round due then.
    let mut no_watch_before = i64::MIN;
    // Monitoring rounds propose transfers when the policy enables them.
    let replenishes = policy.replenishment.enabled;
    ctx.state_mut(|s| s.replenishes = replenishes);
    // The timer of a wait that a message interrupted is kept when the next wait is for the same
    // instant (a supply-chain decision between two rounds, a pause and resume).
    let mut kept = wait::Kept::default();
    loop {
        check_cancel(ctx)?;
        let bnow = business_now(ctx, policy);
        // A region whose gate opens only after the window has ended does not launch: there is
        // nothing left to sell, and its sales window would end before it began.
        let window_over = bnow >= plan.ends_at;
        let activated = activate(ctx, plan, policy, bnow, window_over);
        for r in &activated {
            windows.insert(r.clone(), (bnow, plan.ends_at));
        }
        if !activated.is_empty() && !announced {
            announced = true;
            enter(ctx, Stage::Active);
        } else if !activated.is_empty() {
            publish(ctx);
        }
        if !activated.is_empty() {
            reconcile::round(ctx, plan, policy, true).await?;
        }
        if bnow >= plan.ends_at {
            if replenishes {
                // Nobody decided in time: the window is over, nothing is left to protect.
                supersede_waiting(ctx, "the window ended before supply chain decided");
                settle(ctx, policy).await?;
            }
            kept.stop();
            return Ok(windows);
        }
        // Wait for the next thing: a delayed launch, missing acknowledgments, monitoring, the end.
        let waiting_acks = publishing::waiting_for(ctx);
        let pending_launch = ctx.state(|s| {
            s.readiness
                .keys()
                .filter(|r| {
                    !matches!(
                        s.readiness[*r].state(),
                        RegionState::Active | RegionState::Closed | RegionState::Dropped
                    )
                })
                .map(|r| s.adjustments.delays.get(r).copied().unwrap_or(plan.starts_at))
                .filter(|&l| l > bnow)
                .min()
        });
        let (next, why) =
            decisions::next_wakeup(plan.ends_at, pending_launch, announced.then_some(next_monitor));
        let (paused, overrides, holds, unsettled) =
            ctx.state(|s| (s.paused, s.overrides.len(), s.hold_count(), s.unsettled_transfers()));
        let nudged = move |s: &PromotionWorkflow| {
            s.paused != paused
                || s.overrides.len() != overrides
                || s.hold_count() != holds
                || s.unsettled_transfers() != unsettled
        };
        // The run monitors the stretch up to the next thing besides monitoring in one activity, when its first round falls on the cadence from now (right after the launch
        // and after each stretch; otherwise a timer waits for the round first). Not while a
        // transfer awaits supply chain: their decision must release its order at once, which a
        // timer-driven wait does without cancelling an activity, and the next round supersedes it.
        let (stretch_end, _) = decisions::next_wakeup(plan.ends_at, pending_launch, None);
        let watch = ctx.state(|s| {
            !s.paused && !s.transfers.iter().any(|x| x.state() == TransferState::AwaitingApproval)
        }) && announced
            && next_monitor >= no_watch_before
            && bnow + every + every / 20 < stretch_end
            && next_monitor - bnow >= every - every / 10;
        if !waiting_acks.is_empty() && bnow >= plan.starts_at && !ctx.state(|s| s.overrides.contains("")) {
            kept.stop();
            // Acknowledgments are pushed to the wait: it returns at the first change (a region may
            // launch) and otherwise lasts until the next wake-up.
            let timeout = until(ctx, policy, next);
            let input = publishing::acks_input(ctx, waiting_acks.clone(), timeout, true);
            let summary = format!("wait for {} late acknowledgments", waiting_acks.len());
            let work = wait::remote(ctx, A::await_acknowledgments, input, long_opts(timeout, summary));
            if let Some(acked) = wait::activity(ctx, work, nudged).await? {
                let t = now(ctx);
                ctx.state_mut(|s| {
                    s.merge_acks(t, &acked);
                    s.refresh_ack_readiness();
                    s.resolve_reacknowledged(t);
                });
                publish(ctx);
            }
        } else if watch {
            kept.stop();
            match watch_stretch(ctx, plan, policy, every, stretch_end, nudged).await? {
                Stretch::Rounds(last) => next_monitor = last + every,
                Stretch::Interrupted => {}
                // No round ran (the stretch could not run, or had no room for one): the next
                // round goes by the timer, so that a stretch is never retried in a loop.
                Stretch::Idle => no_watch_before = next_monitor + 1,
            }
        } else {
            let summary = format!("next: {}", why.describe());
            kept.sleep(ctx, next, until(ctx, policy, next), summary, nudged).await?;
        }
        if replenishes {
            // Supply chain's decisions taken while waiting.
            settle(ctx, policy).await?;
        }
        let bnow = business_now(ctx, policy);
        if announced && bnow >= next_monitor && bnow < plan.ends_at && !ctx.state(|s| s.paused) {
            next_monitor = bnow + every;
            let so_far: Windows =
                windows.iter().map(|(r, (a, _))| (r.clone(), (*a, bnow.min(plan.ends_at)))).collect();
            let prices = monitor(ctx, plan, policy, so_far).await?;
            reconcile::round_from(ctx, plan, policy, true, prices).await?;
        }
    }
}

/// Activates every region whose gate is open now; returns them.
fn activate(ctx: &Ctx, plan: &Plan, policy: &Policy, bnow: i64, window_over: bool) -> Vec<String> {
    let t = now(ctx);
    ctx.state_mut(|s| {
        let mut activated = Vec::new();
        let held = policy.late_ack_action == LateAckAction::HoldLaunch
            && s.readiness.keys().any(|x| !s.acknowledged(x));
        let ids: Vec<String> = s.readiness.keys().cloned().collect();
        for r in ids {
            let launch_at = s.adjustments.delays.get(&r).copied().unwrap_or(plan.starts_at);
            let gate = Gate {
                state: s.readiness[&r].state(),
                launch_at,
                now: bnow,
                acknowledged: s.acknowledged(&r),
                overridden: s.overridden(&r),
                held,
                paused: s.paused,
                window_over,
                held_at_gate: s.held_at_gate(&r),
            };
            match decisions::activation(&gate) {
                Activation::Wait => {}
                Activation::MissedWindow => {
                    if let Some(x) = s.readiness.get_mut(&r) {
                        x.note = "the window ended before the region could launch".into();
                    }
                    s.record(t, "system", "region-missed-window", r.clone());
                }
                Activation::Activate => {
                    let on_time =
                        decisions::launched_on_time(plan.starts_at, launch_at, bnow, policy.time_scale);
                    if let Some(x) = s.readiness.get_mut(&r) {
                        x.state = RegionState::Active as i32;
                        x.activated_at = pb_ts(bnow);
                        x.note = if on_time { "launched on time".into() } else { "launched late".into() };
                    }
                    s.on_time.insert(r.clone(), on_time);
                    s.record(t, "system", "region-activated", r.clone());
                    s.resolve(
                        t,
                        |e| e.kind() == ExceptionKind::ChannelSync && e.region_id == r,
                        "acknowledged; region launched",
                    );
                    activated.push(r);
                }
            }
        }
        activated
    })
}

/// One monitoring round: sell-through so far, stockouts raised as exceptions and, with
/// replenishment, the round's transfers released or put to supply chain. The live prices are
/// read back in the same activity: returned for the round's reconciliation.
async fn monitor(
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
    let out = wait::run(ctx, wait::call(ctx, A::monitor_round, input, opts(120, summary))).await?;
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
                    exception_id: id,
                    kind: ExceptionKind::StockRisk as i32,
                    severity: Severity::Medium as i32,
                    owner_role: Role::SupplyChain as i32,
                    revenue_at_risk: at_risk,
                    status: ExceptionStatus::Open as i32,
                    region_id: r.clone(),
                    detail,
                    ..Default::default()
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
enum Stretch {
    /// Its rounds were taken; the business instant of the last.
    Rounds(i64),
    /// A pause, an override or a hold released interrupted it: the caller looks again.
    Interrupted,
    /// It ran no round: it could not run (recorded as monitoring missed, not a reason to stop
    /// the promotion), or there was no room for one before its end.
    Idle,
}

/// Monitors the live window up to business instant `end` with `promo.watch_window` — one
/// ordinary activity whose retry policy keeps the cadence (a round with nothing to decide ends
/// its attempt, and retries are not history events), each round reading its inputs from the
/// workflow's `monitor_input` query, returning only when a round finds something to decide or
/// the stretch ends — then takes its rounds in order as timer-driven rounds would have been
/// taken, each at its own time. A window costs a bounded number of events whatever its number
/// of rounds.
async fn watch_stretch(
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
                    PromotionException {
                        exception_id: format!("transfer-{}", x.transfer_id),
                        kind: ExceptionKind::StockRisk as i32,
                        severity: Severity::Medium as i32,
                        owner_role: Role::SupplyChain as i32,
                        revenue_at_risk: x.revenue_protected.clone(),
                        status: ExceptionStatus::Open as i32,
                        region_id: x.region_id.clone(),
                        detail: format!(
                            "transfer {} costs {}, over the {limit} released without approval: approve or reject \
                             as SUPPLY_CHAIN",
                            x.transfer_id, x.cost
                        ),
                        ..Default::default()
                    },
                );
            }
            s.transfers.push(x);
        }
    });
}

/// Marks every transfer still waiting for supply chain as superseded (its order is cancelled by
/// the next [`settle`]).
fn supersede_waiting(ctx: &Ctx, why: &str) {
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
async fn settle(ctx: &Ctx, policy: &Policy) -> Result<(), Stop> {
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
    let released = wait::run(ctx, wait::call(ctx, A::settle_transfers, input, opts(60, summary))).await?;
    let t = now(ctx);
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
