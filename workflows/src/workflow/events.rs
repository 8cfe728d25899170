//! The process-event record: what the dashboard and `promo ask` read about finished and running
//! promotions. The state keeps an outbox of events — stage entered, approval requested and
//! decided (with its wait), exception raised and resolved (with its age), channel acknowledged,
//! the report, the end — each with a deterministic id (promotion, run, sequence), and [`flush`]
//! hands the outbox to a local activity (`promo.record_events`, idempotent by id) before every
//! wait on the server and at the end. Local activities put one marker in the history and not
//! their input, so the record costs one event per flush whatever the batch. A record that cannot
//! be written (the analytics store down) is audited once, kept, and sent again at a later wait:
//! it never holds a promotion up. A run about to wait on an ordinary activity hands it the
//! events instead ([`carry`]), and keeps them until its next flush, which records them for
//! certain.

use crate::{
    api::PromotionActivities as A,
    decisions::stage_name,
    workflow::{
        options::{local, retry},
        state::{Ctx, OUTBOX_FULL, PromotionWorkflow, pb_ts},
        time::now,
    },
};
use promo_contracts::{
    promo::v1::{AuditEntry, PostEventReport, PromotionException, Stage},
    retail::v1::{ProcessEvent, ProcessEventKind},
};
use std::time::Duration;
use temporalio_common::ActivityCloseTimeouts;
use temporalio_sdk::ActivityOptions;

/// After a failed flush, the next try waits at least this long (workflow time).
const RETRY_AFTER_SECS: i64 = 60;

/// The most events a run keeps in its outbox without a flush: past it, the next wait
/// flushes even when an activity carried them (the outbox, and the next flush's batch, stay
/// small whatever the number of waits on activities in a row).
const CARRY_LIMIT: usize = 64;

impl PromotionWorkflow {
    /// Appends an event to the outbox; `fill` sets what is particular to it. Its id names the
    /// run chain (not the run), so a chain continued as new numbers its events on.
    pub(crate) fn event(&mut self, t: i64, kind: ProcessEventKind, fill: impl FnOnce(&mut ProcessEvent)) {
        // A start input that is not a spec names no promotion: there is nothing to record it
        // under (its failure is the run's result).
        if self.spec.promotion_id.is_empty() {
            return;
        }
        self.event_seq += 1;
        let mut e = ProcessEvent {
            event_id: format!("{}/{}/{}", self.spec.promotion_id, self.first_run_id, self.event_seq),
            promotion_id: self.spec.promotion_id.clone(),
            run_id: self.run_id.clone(),
            revision: self.revision,
            kind: kind as i32,
            at: pb_ts(t),
            stage: stage_name(self.stage).to_owned(),
            ..Default::default()
        };
        fill(&mut e);
        self.outbox.push(e);
    }

    /// An audit-trail entry, as an event (the record keeps the whole trail).
    pub(crate) fn audit_event(&mut self, t: i64, a: &AuditEntry) {
        self.event(t, ProcessEventKind::Audit, |x| {
            x.actor = a.actor.clone();
            x.action = a.action.clone();
            x.detail = a.detail.clone();
            x.signature = a.signature.clone();
            x.signed_payload = a.signed_payload.clone();
            x.seq = a.seq;
            x.repeated = a.repeated;
        });
    }

    /// An exception raised or resolved, as an event.
    pub(crate) fn exception_event(&mut self, t: i64, e: &PromotionException, resolved: bool) {
        let kind =
            if resolved { ProcessEventKind::ExceptionResolved } else { ProcessEventKind::ExceptionRaised };
        let age = e.raised_at.as_ref().map_or(0, |r| (t - r.seconds).max(0));
        self.event(t, kind, |x| {
            x.exception_id = e.exception_id.clone();
            x.exception_kind = e.kind().as_str_name().trim_start_matches("EXCEPTION_KIND_").to_owned();
            x.role = e.owner_role().as_str_name().trim_start_matches("ROLE_").to_owned();
            x.region_id = e.region_id.clone();
            x.revenue_at_risk = e.revenue_at_risk.clone();
            x.detail = if resolved { e.resolution.clone() } else { e.detail.clone() };
            x.wait_seconds = if resolved { age } else { 0 };
        });
    }

    /// When the current revision's approval was requested: its stage's last entry.
    pub(crate) fn approval_requested_at(&self) -> Option<i64> {
        self.timeline
            .iter()
            .rev()
            .find(|e| e.stage() == Stage::Approval)
            .and_then(|e| e.entered_at.as_ref().map(|t| t.seconds))
    }

    /// When publishing began (for the time to each acknowledgment).
    pub(crate) fn publishing_began_at(&self) -> Option<i64> {
        self.timeline
            .iter()
            .rev()
            .find(|e| e.stage() == Stage::Publishing)
            .and_then(|e| e.entered_at.as_ref().map(|t| t.seconds))
    }
}

/// The figures of a report, as the record keeps them.
pub(crate) fn report_kpis(r: &PostEventReport) -> Vec<(String, String)> {
    let mut out = vec![
        ("units_sold".to_owned(), r.units_sold.to_string()),
        ("forecast_units".to_owned(), r.forecast_units.to_string()),
        ("sell_through".to_owned(), r.sell_through.clone()),
        ("forecast_variance".to_owned(), r.forecast_variance.clone()),
        ("stockout_store_days".to_owned(), r.stockout_store_days.to_string()),
        ("markdown_exposure".to_owned(), r.markdown_exposure.clone()),
        ("revenue".to_owned(), r.revenue.clone()),
        ("realised_margin".to_owned(), r.realised_margin.clone()),
        ("on_time_ack_rate".to_owned(), r.on_time_ack_rate.clone()),
        ("on_time_launch_rate".to_owned(), r.on_time_launch_rate.clone()),
        ("price_accuracy".to_owned(), r.price_accuracy.clone()),
        ("exceptions_raised".to_owned(), r.exceptions_raised.to_string()),
        ("forecast_model".to_owned(), r.forecast_model.clone()),
    ];
    out.retain(|(_, v)| !v.is_empty());
    out
}

/// The events an ordinary activity about to be waited on carries: those no activity has
/// carried yet. They stay in the
/// outbox: the activity writes them best effort, the run's next [`flush`] for certain.
pub(crate) fn carry(ctx: &Ctx) -> Vec<ProcessEvent> {
    ctx.state_mut(|s| {
        let new = s.outbox[s.carried.min(s.outbox.len())..].to_vec();
        s.carried = s.outbox.len();
        new
    })
}

/// Whether a wait on an ordinary activity can leave the outbox to what the activities carried
/// (every event carried, and not too many kept) instead of flushing first.
pub(crate) fn carried(s: &PromotionWorkflow) -> bool {
    s.carried >= s.outbox.len() && s.outbox.len() <= CARRY_LIMIT
}

/// The outbox size at which a message handler flushes it itself (a flood of messages while the
/// run waits, which wakes nothing that would).
pub(crate) const HANDLER_FLUSH_AT: usize = 250;

/// The most events one flush sends (a long outage's backlog goes in several).
const FLUSH_MAX: usize = 500;

/// Hands the outbox's oldest events (up to [`FLUSH_MAX`]) to `promo.record_events` (a local activity), unless there is nothing to
/// send or a failed flush is still cooling down.
pub(crate) async fn flush(ctx: &Ctx) {
    let t = now(ctx);
    // One flush at a time (a message handler flushes a flood's backlog while the run waits):
    // each sends the outbox's oldest events and drains as many.
    let batch = ctx.state_mut(|s| {
        let due = !s.flushing && !s.outbox.is_empty() && t >= s.events_retry_at;
        s.flushing |= due;
        due.then(|| s.outbox[..s.outbox.len().min(FLUSH_MAX)].to_vec())
    });
    let Some(batch) = batch else { return };
    let n = batch.len();
    // 10 s an attempt, three within 30 s; as every local activity, each retry on a timer.
    let timeouts = ActivityCloseTimeouts::ScheduleAndStartToClose {
        schedule_to_close: Duration::from_secs(30),
        start_to_close: Duration::from_secs(10),
    };
    let opts = ActivityOptions::with_close_timeouts(timeouts)
        .retry_policy(retry(3))
        .summary(format!("record {n} process events"))
        .build();
    let sent = ctx.execute_local_activity(A::record_events, batch, local(opts)).await;
    let t = now(ctx);
    ctx.state_mut(|s| s.flushing = false);
    ctx.state_mut(|s| match sent {
        Ok(_) => {
            s.outbox.drain(..n);
            s.carried = s.carried.saturating_sub(n);
            s.events_retry_at = 0;
            if s.refusals_uncounted > 0 && s.outbox.len() < OUTBOX_FULL {
                let n = std::mem::take(&mut s.refusals_uncounted);
                s.record(
                    t,
                    "system",
                    "refusals-not-itemized",
                    format!(
                        "{n} messages refused while {OUTBOX_FULL} process events waited for the record: \
                         counted here, not itemized (the history of the run that received them has each)"
                    ),
                );
            }
        }
        // Refused for good (the record found them invalid): sending them again would be refused
        // again, so they are dropped, saying so.
        Err(e) if e.failure().is_some_and(super::outage::non_retryable) => {
            s.outbox.drain(..n);
            s.carried = s.carried.saturating_sub(n);
            s.events_retry_at = 0;
            let why = e.failure().map_or_else(|| e.to_string(), super::outage::innermost_message);
            s.record(
                t,
                "system",
                "process-events-refused",
                format!("{n} events refused by the record: {why}"),
            );
        }
        Err(e) => {
            if s.events_retry_at == 0 {
                s.record(t, "system", "process-events-deferred", format!("{n} events kept for later: {e}"));
            }
            s.events_retry_at = t + RETRY_AFTER_SECS;
        }
    });
}

/// Flushes until the record has every event (the end of a run: its report and end must not be
/// lost to a record that is down), waiting 5 s, doubling to 5 min, between tries.
pub(crate) async fn flush_until_recorded(ctx: &Ctx) -> Result<(), super::stop::Stop> {
    let mut pauses = super::outage::pauses(ctx, None);
    loop {
        super::carry::checkpoint(ctx).await?;
        ctx.state_mut(|s| s.events_retry_at = 0);
        flush(ctx).await;
        let (left, failed) = ctx.state(|s| (s.outbox.len(), s.events_retry_at != 0));
        if left == 0 {
            return Ok(());
        }
        if !failed {
            continue;
        }
        let pause = pauses.next().unwrap_or(Duration::from_secs(5));
        let opts = temporalio_sdk::TimerOptions::builder(pause)
            .summary("record the last process events again".to_owned())
            .cancellation_token(temporalio_sdk::WorkflowCancellationToken::new())
            .build();
        let _ = ctx.timer(opts).await;
    }
}
