//! The lifecycle's end-state promises, checked against the real servers: no workflow task of any
//! run of a promotion's chain failed; the promotion ended DONE with no open exception and no
//! pending approval, in its status and in visibility; nothing it wrote is live in the reference
//! systems; its calendar reservation is released. Each check returns what it found wrong, so a
//! generated test can print its seed with it.

use crate::env::PromoEnv;
use futures::StreamExt;
use promo_contracts::{
    promo::v1::{AuditTrail, PromotionStatus, Stage},
    retail::v1::{
        ListEventsRequest, ListOrdersRequest, ListPriceChangesRequest, ListPublicationsRequest,
        ListReservationsRequest, OrderState, PriceChangeState, ProcessEvent, ProcessEventKind,
        PublicationKind, PublicationState, TransferOrder, calendar_service_client::CalendarServiceClient,
        price_service_client::PriceServiceClient, process_event_service_client::ProcessEventServiceClient,
        publication_service_client::PublicationServiceClient,
        replenishment_service_client::ReplenishmentServiceClient,
    },
};
use promo_workflows::api;
use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};
use temporalio_client::{
    Client, NamespacedClient, WorkflowExecutionInfo, WorkflowFetchHistoryOptions, WorkflowHandle,
    WorkflowListOptions,
};
use temporalio_common::protos::temporal::api::{
    enums::v1::WorkflowTaskFailedCause,
    history::v1::{HistoryEvent, history_event::Attributes},
};

/// The histories of every run of the promotion's chain (it continues as new), oldest run first:
/// each run's first event names the run it continues.
pub async fn chain_histories(client: &Client, id: &str) -> Result<Vec<Vec<HistoryEvent>>, String> {
    let mut runs = Vec::new();
    let mut run_id: Option<String> = None;
    loop {
        let info = WorkflowExecutionInfo::builder()
            .namespace(client.namespace())
            .workflow_id(api::workflow_id(id))
            .maybe_run_id(run_id.clone())
            .build();
        let h: WorkflowHandle<_, promo_workflows::PromotionWorkflow> =
            WorkflowHandle::new(client.clone(), info);
        let events = h
            .fetch_history(WorkflowFetchHistoryOptions::default())
            .into_events()
            .await
            .map_err(|e| format!("{id}: history of run {run_id:?}: {e}"))?;
        let previous = events.first().and_then(|e| match &e.attributes {
            Some(Attributes::WorkflowExecutionStartedEventAttributes(a))
                if !a.continued_execution_run_id.is_empty() =>
            {
                Some(a.continued_execution_run_id.clone())
            }
            _ => None,
        });
        runs.push(events);
        match previous {
            Some(p) => run_id = Some(p),
            None => break,
        }
    }
    runs.reverse();
    Ok(runs)
}

/// No workflow task of any run of the chain failed (no handler or stage panicked, nothing was
/// retried by the server); returns the runs' history lengths. One failure is the server's, not
/// the workflow's, and is let through: UNHANDLED_COMMAND, the server refusing a task that would
/// end the run (or continue it as new) because a message arrived meanwhile — the next task
/// applies the message, as Temporal intends.
pub async fn no_failed_task(client: &Client, id: &str) -> Result<Vec<usize>, String> {
    let runs = chain_histories(client, id).await?;
    for (i, events) in runs.iter().enumerate() {
        let failed: Vec<_> = events
            .iter()
            .filter_map(|e| match &e.attributes {
                Some(Attributes::WorkflowTaskFailedEventAttributes(a))
                    if a.cause() != WorkflowTaskFailedCause::UnhandledCommand =>
                {
                    Some((a.cause(), a.failure.clone()))
                }
                _ => None,
            })
            .collect();
        if !failed.is_empty() {
            return Err(format!("{id}: run {} of {}: workflow tasks failed: {failed:#?}", i + 1, runs.len()));
        }
    }
    Ok(runs.iter().map(Vec::len).collect())
}

/// Workflow ids listed by a visibility query.
pub async fn listed(env: &PromoEnv, query: &str) -> Vec<String> {
    env.client
        .list_workflows(query, WorkflowListOptions::default())
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .filter_map(|w| w.ok().map(|w| w.id().to_owned()))
        .collect()
}

/// The promotion's end is clean in its status and in visibility: DONE, no open exception, no
/// pending approval. Returns the final status.
pub async fn ended_clean(env: &PromoEnv, id: &str, limit: Duration) -> Result<PromotionStatus, String> {
    let status =
        env.wait_status(id, "done", limit, |s| s.stage() == Stage::Done).await.map_err(|e| e.to_string())?;
    if !status.open_exceptions.is_empty() {
        return Err(format!("{id} ended with open exceptions: {:#?}", status.open_exceptions));
    }
    let wid = api::workflow_id(id);
    // The current run (the runs it continued from keep the attributes they had then).
    let current = "ExecutionStatus != 'ContinuedAsNew'";
    let clean =
        format!("WorkflowId = '{wid}' AND {current} AND PromotionStage = 'DONE' AND OpenExceptions = 0");
    let deadline = Instant::now() + limit;
    while !listed(env, &clean).await.contains(&wid) {
        if Instant::now() > deadline {
            return Err(format!("{id}: not listed by {clean}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stuck = format!(
        "WorkflowId = '{wid}' AND {current} AND (OpenExceptions > 0 OR PendingApprovals IN ('MERCHANDISING', \
         'FINANCE', 'SUPPLY_CHAIN', 'OPERATIONS'))"
    );
    if !listed(env, &stuck).await.is_empty() {
        let d = env.handle(id).describe(temporalio_client::WorkflowDescribeOptions::default()).await;
        let attributes = d.map(|d| format!("{:?}", d.search_attributes())).unwrap_or_else(|e| e.to_string());
        return Err(format!(
            "{id} is listed as stuck by {stuck}: its search attributes are {attributes}; its status {status:#?}"
        ));
    }
    Ok(status)
}

/// What the promotion left in the reference systems.
#[derive(Debug, Default)]
pub struct Footprint {
    /// Price changes staged (any state).
    pub price_changes: usize,
    /// Activation publications.
    pub activations: usize,
    /// Transfer orders.
    pub orders: Vec<TransferOrder>,
}

/// Nothing of the promotion is live in the reference systems: no price change still staged;
/// every activation withdrawn or followed by an acknowledged revert on its channel and region;
/// no transfer order still released unless `orders_may_stay` (a completed run keeps the orders
/// that arrive by the window's end); no calendar reservation. Returns what it wrote, for
/// callers that expect something.
/// A read the systems failed (an outage a test injected) is tried again for up to a minute: only
/// what the systems answer can break the promise.
pub async fn nothing_live(systems_url: &str, id: &str, orders_may_stay: bool) -> Result<Footprint, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match read_footprint(systems_url, id, orders_may_stay).await {
            Err(Check::Unread(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(Check::Unread(why) | Check::Broken(why)) => return Err(why),
            Ok(f) => return Ok(f),
        }
    }
}

/// Why a check did not pass.
enum Check {
    /// The systems did not answer a read.
    Unread(String),
    /// The promise does not hold.
    Broken(String),
}

async fn read_footprint(url: &str, id: &str, orders_may_stay: bool) -> Result<Footprint, Check> {
    let err = |what: &str, e: &dyn std::fmt::Display| Check::Unread(format!("{id}: reading {what}: {e}"));
    let prices = PriceServiceClient::connect(url.to_owned())
        .await
        .map_err(|e| err("prices", &e))?
        .list_price_changes(ListPriceChangesRequest { promotion_id: id.into(), ..Default::default() })
        .await
        .map_err(|e| err("prices", &e))?
        .into_inner()
        .price_changes;
    if let Some(p) = prices.iter().find(|p| p.state() != PriceChangeState::Reverted) {
        return Err(Check::Broken(format!("{id}: a promotional price is still staged: {p:?}")));
    }
    let pubs = PublicationServiceClient::connect(url.to_owned())
        .await
        .map_err(|e| err("publications", &e))?
        .list_publications(ListPublicationsRequest { promotion_id: id.into() })
        .await
        .map_err(|e| err("publications", &e))?
        .into_inner()
        .publications;
    let activations: Vec<_> = pubs.iter().filter(|p| p.kind() == PublicationKind::Activate).collect();
    for a in &activations {
        let reverted = pubs.iter().any(|r| {
            r.kind() == PublicationKind::Revert
                && r.channel == a.channel
                && r.region_id == a.region_id
                && r.state() == PublicationState::Acknowledged
        });
        if a.state() != PublicationState::Withdrawn && !reverted {
            return Err(Check::Broken(format!("{id}: an activation is still live on its channel: {a:?}")));
        }
    }
    let orders = ReplenishmentServiceClient::connect(url.to_owned())
        .await
        .map_err(|e| err("orders", &e))?
        .list_orders(ListOrdersRequest { promotion_id: id.into() })
        .await
        .map_err(|e| err("orders", &e))?
        .into_inner()
        .orders;
    if !orders_may_stay && let Some(o) = orders.iter().find(|o| o.state() != OrderState::Cancelled) {
        return Err(Check::Broken(format!("{id}: a transfer order is still open: {o:?}")));
    }
    let held = CalendarServiceClient::connect(url.to_owned())
        .await
        .map_err(|e| err("the calendar", &e))?
        .list_reservations(ListReservationsRequest { promotion_id: id.into() })
        .await
        .map_err(|e| err("the calendar", &e))?
        .into_inner()
        .reservations;
    if !held.is_empty() {
        return Err(Check::Broken(format!("{id}: its calendar reservation is still held: {held:?}")));
    }
    Ok(Footprint { price_changes: prices.len(), activations: activations.len(), orders })
}

/// The chain's audit entries in the process-event record (AUDIT events), oldest first, paged
/// from the newest as `promo audit --all` reads them.
pub async fn audit_events(
    systems_url: &str,
    id: &str,
    first_run_id: &str,
) -> Result<Vec<ProcessEvent>, String> {
    let mut events = ProcessEventServiceClient::connect(systems_url.to_owned())
        .await
        .map_err(|e| format!("{id}: the record: {e}"))?;
    let mut all: Vec<ProcessEvent> = Vec::new();
    let mut before = 0;
    loop {
        let req = ListEventsRequest {
            promotion_id: id.to_owned(),
            kinds: vec![ProcessEventKind::Audit as i32],
            limit: 5_000,
            before_seq: before,
            first_run_id: first_run_id.to_owned(),
            ..Default::default()
        };
        let page = events
            .list_events(req)
            .await
            .map_err(|e| format!("{id}: listing its audit events: {}", e.message()))?
            .into_inner()
            .events;
        let Some(first) = page.first() else { break };
        before = first.seq;
        all.splice(0..0, page);
        if before <= 1 {
            break;
        }
    }
    Ok(all)
}

/// The audit trail in the process-event record is whole: the chain's AUDIT events number
/// 1 ..= `trail.total_entries`, each once. Returns how many times each action happened (an
/// entry counting a repeated refusal counts as many).
pub async fn audit_recorded(
    systems_url: &str,
    id: &str,
    trail: &AuditTrail,
) -> Result<BTreeMap<String, u64>, String> {
    let recorded = audit_events(systems_url, id, &trail.first_run_id).await?;
    let mut actions: BTreeMap<String, u64> = BTreeMap::new();
    for e in &recorded {
        *actions.entry(e.action.clone()).or_default() += u64::from(e.repeated.max(1));
    }
    let mut seqs: Vec<u64> = recorded.iter().map(|e| e.seq).collect();
    seqs.sort_unstable();
    let expected: Vec<u64> = (1..=trail.total_entries).collect();
    if seqs != expected {
        let missing: Vec<u64> = expected.iter().filter(|s| seqs.binary_search(s).is_err()).copied().collect();
        return Err(format!(
            "{id}: the record holds {} audit entries for {} in the trail; missing {:?}{}",
            seqs.len(),
            trail.total_entries,
            &missing[..missing.len().min(20)],
            if seqs.windows(2).any(|w| w[0] == w[1]) { "; some twice" } else { "" }
        ));
    }
    Ok(actions)
}

/// The last `n` events of the chain's latest run, for a failure message: what the promotion
/// was doing.
pub async fn history_tail(client: &Client, id: &str, n: usize) -> Vec<String> {
    let runs = chain_histories(client, id).await.unwrap_or_default();
    let lengths: Vec<usize> = runs.iter().map(Vec::len).collect();
    let mut out = vec![format!("runs of {lengths:?} events; the last one ends:")];
    out.extend(runs.last().into_iter().flat_map(|h| {
        h.iter().rev().take(n).rev().map(|e| {
            let what = match &e.attributes {
                Some(Attributes::ActivityTaskScheduledEventAttributes(a)) => {
                    a.activity_type.as_ref().map_or(String::new(), |t| t.name.clone())
                }
                Some(Attributes::WorkflowTaskFailedEventAttributes(a)) => {
                    format!("{:?} {}", a.cause(), a.failure.as_ref().map_or("", |f| f.message.as_str()))
                }
                Some(Attributes::TimerStartedEventAttributes(a)) => format!("{:?}", a.start_to_fire_timeout),
                _ => String::new(),
            };
            format!("{} {:?} {what}", e.event_id, e.event_type())
        })
    }));
    out
}

/// The trail's actions, in order; panics naming the first of `expected` that is missing.
pub fn with_actions<'a>(trail: &'a AuditTrail, expected: &[&str]) -> Vec<&'a str> {
    let actions: Vec<&str> = trail.entries.iter().map(|e| e.action.as_str()).collect();
    for a in expected {
        assert!(actions.contains(a), "{a} missing from {actions:?}");
    }
    actions
}
