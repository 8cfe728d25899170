//! The active window: regions go live as their gates open (their time has come, their channels
//! acknowledged or an operator overrode, nothing paused — `decisions::activation`), late
//! acknowledgments are polled, sell-through is monitored on the policy's cadence, and the
//! window's end closes it. Returns each region's live window for the analysis.

use super::{Stop, check_cancel, enter, publishing, reconcile};
use crate::{
    api::{AwaitAcksInput, PromotionActivities as A, SalesInput},
    decisions::{self, Activation, Gate},
    plan::Plan,
    policy::{LateAckAction, Policy},
    workflow::{
        NO_LAUNCH_AFTER_WINDOW, PRICE_RECONCILIATION,
        state::{PromotionWorkflow, pb_ts, publish},
        wait::{self, Ctx, business_now, long_opts, now, opts, until},
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
    let ack_poll = policy.scaled(policy.durations.ack_deadline.0).max(Duration::from_secs(1));
    let mut announced = false;
    // Versioned change: live prices are read back and reconciled from here on.
    let reconciles = ctx.state(|s| s.v2) && ctx.patched(PRICE_RECONCILIATION);
    ctx.state_mut(|s| s.reconciles = reconciles);
    loop {
        check_cancel(ctx)?;
        let bnow = business_now(ctx, policy);
        // A region whose gate opens only after the window has ended does not launch: there is
        // nothing left to sell, and its sales window would end before it began.
        let window_over = bnow >= plan.ends_at && ctx.patched(NO_LAUNCH_AFTER_WINDOW);
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
        let (paused, overrides, holds) = ctx.state(|s| (s.paused, s.overrides.len(), s.hold_count()));
        let nudged = move |s: &PromotionWorkflow| {
            s.paused != paused || s.overrides.len() != overrides || s.hold_count() != holds
        };
        if !waiting_acks.is_empty() && bnow >= plan.starts_at && !ctx.state(|s| s.overrides.contains("")) {
            let timeout = until(ctx, policy, next).min(ack_poll);
            let input =
                AwaitAcksInput { publications: waiting_acks.clone(), timeout_ms: timeout.as_millis() as u64 };
            let summary = format!("wait for {} late acknowledgments", waiting_acks.len());
            let work = ctx.execute_activity(A::await_acknowledgments, input, long_opts(timeout, summary));
            if let Some(acked) = wait::activity(ctx, work, nudged).await? {
                let t = now(ctx);
                ctx.state_mut(|s| {
                    s.merge_acks(t, &acked);
                    s.refresh_ack_readiness();
                    s.resolve_reacknowledged(t);
                });
                publish(ctx);
            }
        } else {
            let summary = format!("next: {}", why.describe());
            wait::sleep(ctx, until(ctx, policy, next), summary, nudged).await?;
        }
        let bnow = business_now(ctx, policy);
        if announced && bnow >= next_monitor && bnow < plan.ends_at && !ctx.state(|s| s.paused) {
            next_monitor = bnow + every;
            let so_far: Windows =
                windows.iter().map(|(r, (a, _))| (r.clone(), (*a, bnow.min(plan.ends_at)))).collect();
            monitor(ctx, plan, so_far).await?;
            reconcile::round(ctx, plan, policy, true).await?;
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

/// One monitoring round: sell-through so far, and stockouts raised as exceptions.
async fn monitor(ctx: &Ctx, plan: &Plan, so_far: Windows) -> Result<(), Stop> {
    let input = sales_input(ctx, plan, so_far);
    let m = wait::run(ctx, ctx.execute_activity(A::monitor, input, opts(120, "monitor sell-through".into())))
        .await?;
    let t = now(ctx);
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
    publish(ctx);
    Ok(())
}

/// The input of the sales activities over `windows`.
pub(crate) fn sales_input(ctx: &Ctx, plan: &Plan, windows: Windows) -> SalesInput {
    ctx.state(|s| SalesInput {
        plan: plan.clone(),
        adjustments: s.adjustments.clone(),
        windows,
        assessment: s.assessment.clone().unwrap_or_default(),
    })
}
