//! The active window: regions go live as their gates open (their time has come, their channels
//! acknowledged or an operator overrode, nothing paused — `decisions::activation`), late
//! acknowledgments are waited for, sell-through is monitored on the policy's cadence
//! ([`monitoring`]), and the window's end closes it. Returns each region's live window for the
//! analysis.

mod monitoring;

pub(crate) use monitoring::{sales_input, watched_round_input};

use super::{Stop, check_cancel, enter_once, past, publishing, reconcile};
use crate::{
    api::PromotionActivities as A,
    decisions::{self, Activation, Gate},
    plan::Plan,
    policy::{LateAckAction, Policy},
    workflow::{
        carry,
        options::long_opts,
        outage,
        publish::publish,
        state::{Ctx, PromotionWorkflow, pb_ts},
        time::{business_now, now, until},
        wait,
    },
};
use promo_contracts::promo::v1::*;
use std::{collections::BTreeMap, time::Duration};

/// Each live region's window, business seconds: (went live, ends).
pub type Windows = BTreeMap<String, (i64, i64)>;

/// Runs the window to its end. A run continued as new meanwhile resumes the loop where it was:
/// what it needs (the next round's instant, the regions live and since when) is in the state.
pub async fn run(ctx: &Ctx, plan: &Plan, policy: &Policy) -> Result<Windows, Stop> {
    if past(ctx, Stage::Active) {
        return Ok(ctx.state(|s| windows_of(s, plan, plan.ends_at)));
    }
    let every = policy.durations.monitor_every.0.as_secs().max(60) as i64;
    // Monitoring rounds propose transfers when the policy enables them.
    let replenishes = policy.replenishment.enabled;
    ctx.state_mut(|s| s.replenishes = replenishes);
    // The timer of a wait that a message interrupted is kept when the next wait is for the same
    // instant (a supply-chain decision between two rounds, a pause and resume).
    let mut kept = wait::Kept::default();
    // The instant the loop last found due without waiting: found due again, it waits a second
    // on a timer rather than loop without yielding.
    let mut due_without_wait = None;
    // Pauses between calls while the systems do not answer the late-acknowledgment wait.
    let mut outage_pauses = outage::pauses(ctx, Some(ExceptionKind::SystemsUnavailable));
    loop {
        check_cancel(ctx)?;
        let bnow = business_now(ctx, policy);
        // A region whose gate opens only after the window has ended does not launch: there is
        // nothing left to sell, and its sales window would end before it began.
        let window_over = bnow >= plan.ends_at;
        let activated = activate(ctx, plan, policy, bnow, window_over);
        if !activated.is_empty() {
            enter_once(ctx, Stage::Active);
            publish(ctx);
            reconcile::round(ctx, plan, policy, true).await?;
        }
        if bnow >= plan.ends_at {
            if replenishes {
                // Nobody decided in time: the window is over, nothing is left to protect.
                monitoring::supersede_waiting(ctx, "the window ended before supply chain decided");
                monitoring::settle(ctx, policy).await?;
            }
            kept.stop();
            return Ok(ctx.state(|s| windows_of(s, plan, plan.ends_at)));
        }
        carry::checkpoint(ctx).await?;
        let announced = ctx.state(|s| s.stage == Stage::Active);
        let (next_monitor, no_watch_before, paused) = ctx.state(|s| {
            (s.progress.next_monitor.unwrap_or(plan.starts_at + every), s.progress.no_watch_before, s.paused)
        });
        // Wait for the next thing: a delayed launch, missing acknowledgments, monitoring, the end.
        // While paused, monitoring waits for the resume (a round due meanwhile runs then).
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
        let monitoring = (announced && !paused).then_some(next_monitor);
        let (next, why) = decisions::next_wakeup(plan.ends_at, pending_launch, monitoring);
        let (overrides, holds, unsettled) =
            ctx.state(|s| (s.overrides.len(), s.hold_count(), s.unsettled_transfers()));
        let nudged = carry::or_due(ctx, move |s: &PromotionWorkflow| {
            s.paused != paused
                || s.overrides.len() != overrides
                || s.hold_count() != holds
                || s.unsettled_transfers() != unsettled
        });
        // The run monitors the stretch up to the next thing besides monitoring in one activity,
        // when its first round falls on the cadence from now (right after the launch and after
        // each stretch; otherwise a timer waits for the round first). Not while a transfer awaits
        // supply chain: their decision must release its order at once, which a timer-driven wait
        // does without cancelling an activity, and the next round supersedes it.
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
            match wait::activity(ctx, work, nudged).await {
                Ok(Some(acked)) => {
                    outage_pauses = Box::new(policy.outage_pauses());
                    let t = now(ctx);
                    ctx.state_mut(|s| {
                        s.merge_acks(t, &acked);
                        s.refresh_ack_readiness();
                        s.resolve_reacknowledged(t);
                        s.resolve(
                            t,
                            |e| e.kind() == ExceptionKind::SystemsUnavailable,
                            "the channels answer again",
                        );
                    });
                    publish(ctx);
                }
                Ok(None) => {}
                // The channel system does not answer: the live promotion waits and asks again.
                Err(Stop::Failed(why, _)) => {
                    systems_unavailable(ctx, "the wait for late acknowledgments", &why);
                    let pause = outage_pauses.next().unwrap_or(Duration::from_secs(5));
                    wait::sleep(ctx, pause, "wait for the channel system".into(), |_| false).await?;
                }
                Err(stop) => return Err(stop),
            }
        } else if watch {
            kept.stop();
            match monitoring::watch_stretch(ctx, plan, policy, every, stretch_end, nudged).await? {
                monitoring::Stretch::Rounds(last) => {
                    ctx.state_mut(|s| s.progress.next_monitor = Some(last + every))
                }
                monitoring::Stretch::Interrupted => {}
                // No round ran (the stretch could not run, or had no room for one): the next
                // round goes by the timer, so that a stretch is never retried in a loop.
                monitoring::Stretch::Idle => ctx.state_mut(|s| s.progress.no_watch_before = next_monitor + 1),
                monitoring::Stretch::Missed(last) => ctx.state_mut(|s| {
                    let next = last.map_or(next_monitor, |at| at + every);
                    s.progress.next_monitor = Some(next);
                    s.progress.no_watch_before = next + 1;
                }),
            }
        } else {
            let summary = format!("next: {}", why.describe());
            let wait_for = until(ctx, policy, next);
            if wait_for.is_zero() && due_without_wait == Some(next) {
                // Found due twice with nothing done: yield a second instead of spinning.
                wait::sleep(ctx, Duration::from_secs(1), summary, nudged).await?;
            } else {
                kept.sleep(ctx, next, wait_for, summary, nudged).await?;
            }
            due_without_wait = wait_for.is_zero().then_some(next);
        }
        if replenishes {
            // Supply chain's decisions taken while waiting.
            monitoring::settle(ctx, policy).await?;
        }
        let bnow = business_now(ctx, policy);
        // The round due now, as the state says after the wait (a watched stretch moved it on).
        let next_monitor = ctx.state(|s| s.progress.next_monitor.unwrap_or(plan.starts_at + every));
        if announced && bnow >= next_monitor && bnow < plan.ends_at && !ctx.state(|s| s.paused) {
            ctx.state_mut(|s| s.progress.next_monitor = Some(bnow + every));
            let so_far = ctx.state(|s| windows_of(s, plan, bnow.min(plan.ends_at)));
            let prices = monitoring::monitor(ctx, plan, policy, so_far).await?;
            reconcile::round_from(ctx, plan, policy, true, prices).await?;
        }
    }
}

/// Each live region's window so far: from its activation to `until` (business seconds).
pub(crate) fn windows_of(s: &PromotionWorkflow, plan: &Plan, until: i64) -> Windows {
    s.readiness
        .iter()
        .filter_map(|(r, x)| {
            x.activated_at.as_ref().map(|a| (r.clone(), (a.seconds, until.min(plan.ends_at))))
        })
        .collect()
}

/// Shows SYSTEMS_UNAVAILABLE while a live promotion's call keeps failing.
pub(crate) fn systems_unavailable(ctx: &Ctx, what: &str, why: &str) {
    let t = now(ctx);
    ctx.state_mut(|s| {
        let at_risk = s.forecast_revenue();
        s.raise(t, decisions::systems_unavailable_exception(what, why, at_risk));
        s.record(t, "system", "call-retry", format!("{what}: {why}"));
    });
    publish(ctx);
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
