//! Activities of the promotion workflow: every piece of I/O and heavy computation.
//!
//! - [`PromotionActivities`] implements the activity definitions of
//!   `promo_workflows::api::PromotionActivities` over the gRPC integration contracts
//!   ([`Systems`]) and, for collision checks, Temporal visibility;
//! - [`engines`] holds the pure assessment engines (alignment, forecast, funding);
//! - [`context`] loads what an assessment needs (master data, streamed positions and demand);
//! - [`checks`] checks every response where it is decoded: a malformed one (columns of unequal
//!   length, ids nobody asked for, negative stock) fails the activity without retries, naming
//!   the service and the field.
//!
//! Every write carries an idempotency key derived from promotion id + revision + target, so a
//! retried activity or a restarted worker never writes twice. Business refusals from the systems
//! (unknown SKU, invalid request) are non-retryable; transport failures retry with backoff:
//! first in place, a few times per call ([`retry_transient`]), so one flaky call does not throw
//! away an activity's other calls; then as a whole, by the workflow's activity retry policy.

/// One systems call, retried in place on transient failures ([`retry_transient`]):
/// `rpc!(client_expr, method, request_expr)` builds a fresh client and request for each attempt
/// (clients are cheap handles on one channel), so the request expression must not move.
macro_rules! rpc {
    ($client:expr, $method:ident, $req:expr) => {
        $crate::retry_transient(|| {
            let mut client = $client;
            let req = $req;
            async move { client.$method(req).await }
        })
    };
}

pub mod checks;
pub mod claims;
pub mod context;
pub mod engines;
pub mod intake;
pub mod learned;
pub mod reconcile;
pub mod replenish;
pub mod substitutes;

use context::{Context, load_context};
use engines::{
    alignment::{self, Alignment},
    stockout::{self, RegionRisk},
};
use promo_contracts::{
    money::{format_money, format_ratio},
    pbjson_types::Timestamp,
    promo::v1 as pb,
    retail::v1::{self as wire, *},
};
use promo_workflows::{
    api::{
        self, AnalysisAndClaims, AssessInput, Assessment, AwaitAcksInput, ClaimsInput, CompensateInput,
        CompensateOutput, IntakeInput, IntakeOutput, InventoryAssessment, MonitorReport, MonitorRoundInput,
        MonitorRoundOutput, OrdersInput, PublicationRef, PublishInput, RecheckGateInput, RecheckGateOutput,
        ReconcileInput, ReconcileOutput, SalesInput, SettleTransfersInput, StagePricesInput, WatchInput,
        WatchOutput, WatchedRound, activity_names,
    },
    policy::Policy,
};
use rust_decimal::{Decimal, prelude::FromPrimitive};
use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use temporalio_client::Client;
use temporalio_macros::activities;
use temporalio_sdk::{
    ApplicationFailure,
    activities::{ActivityContext, ActivityError},
};
use tonic::{Code, Status, transport::Channel as Conn};

/// Connections to the retail integration services (one HTTP/2 channel shared by all clients).
#[derive(Debug, Clone)]
pub struct Systems {
    conn: Conn,
}

/// TLS toward the integration services.
#[derive(Debug, Clone, Default)]
pub struct SystemsTls {
    /// PEM of the CA that signed the services' certificate; the system roots when `None`.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM certificate and key this client presents (mutual TLS), if the services ask for one.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// Server name to verify instead of the URL's host.
    pub domain: Option<String>,
}

impl SystemsTls {
    /// Environment variables read by [`SystemsTls::from_env`] (and the worker's flags of the
    /// same meaning): CA file, client certificate file, client key file, server name.
    pub const ENV: [&'static str; 4] = [
        "PROMO_SYSTEMS_CA_CERT",
        "PROMO_SYSTEMS_CLIENT_CERT",
        "PROMO_SYSTEMS_CLIENT_KEY",
        "PROMO_SYSTEMS_TLS_DOMAIN",
    ];

    /// Reads the PEM files; `None` when nothing is set. Errors name the setting and the file.
    pub fn from_paths(
        ca: Option<&std::path::Path>,
        cert: Option<&std::path::Path>,
        key: Option<&std::path::Path>,
        domain: Option<&str>,
    ) -> Result<Option<Self>, String> {
        let read = |what: &str, p: &std::path::Path| {
            std::fs::read(p).map_err(|e| format!("{what}: cannot read {}: {e}", p.display()))
        };
        let identity = match (cert, key) {
            (Some(c), Some(k)) => {
                Some((read("systems client certificate", c)?, read("systems client key", k)?))
            }
            (None, None) => None,
            _ => return Err("systems mutual TLS needs both a client certificate and its key".into()),
        };
        let ca_pem = ca.map(|p| read("systems CA certificate", p)).transpose()?;
        let domain = domain.filter(|d| !d.is_empty()).map(str::to_owned);
        if ca_pem.is_none() && identity.is_none() && domain.is_none() {
            return Ok(None);
        }
        Ok(Some(Self { ca_pem, identity, domain }))
    }

    /// [`SystemsTls::from_paths`] from the [`SystemsTls::ENV`] variables.
    pub fn from_env() -> Result<Option<Self>, String> {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(std::path::PathBuf::from);
        let [ca, cert, key, domain] = Self::ENV.map(var);
        let domain = domain.map(|d| d.to_string_lossy().into_owned());
        Self::from_paths(ca.as_deref(), cert.as_deref(), key.as_deref(), domain.as_deref())
    }
}

impl Systems {
    /// A lazily connecting channel to `url` (e.g. `http://127.0.0.1:50051`); `https` URLs use
    /// TLS with the system roots.
    pub fn new(url: &str) -> Result<Self, String> {
        Self::with_tls(url, None)
    }

    /// As [`Systems::new`], with TLS configured by `tls`; TLS settings with a plain `http` URL
    /// are refused rather than silently ignored.
    pub fn with_tls(url: &str, tls: Option<&SystemsTls>) -> Result<Self, String> {
        if tls.is_some() && !url.starts_with("https://") {
            return Err(format!(
                "systems address {url:?}: TLS settings are set, so the address must start with https://"
            ));
        }
        let mut endpoint = Conn::from_shared(url.to_owned())
            .map_err(|e| format!("systems address {url:?}: {e}"))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        if url.starts_with("https://") {
            let mut config = tonic::transport::ClientTlsConfig::new();
            let none = SystemsTls::default();
            let t = tls.unwrap_or(&none);
            config = match &t.ca_pem {
                Some(ca) => config.ca_certificate(tonic::transport::Certificate::from_pem(ca)),
                None => config.with_native_roots(),
            };
            if let Some((cert, key)) = &t.identity {
                config = config.identity(tonic::transport::Identity::from_pem(cert, key));
            }
            if let Some(d) = &t.domain {
                config = config.domain_name(d.clone());
            }
            endpoint = endpoint.tls_config(config).map_err(|e| format!("systems TLS for {url:?}: {e}"))?;
        }
        Ok(Self { conn: endpoint.connect_lazy() })
    }

    /// Product master.
    pub fn products(&self) -> product_service_client::ProductServiceClient<Conn> {
        product_service_client::ProductServiceClient::new(self.conn.clone())
    }
    /// Locations.
    pub fn locations(&self) -> location_service_client::LocationServiceClient<Conn> {
        location_service_client::LocationServiceClient::new(self.conn.clone())
    }
    /// Inventory.
    pub fn inventory(&self) -> inventory_service_client::InventoryServiceClient<Conn> {
        inventory_service_client::InventoryServiceClient::new(self.conn.clone())
            .max_decoding_message_size(64 << 20)
    }
    /// Demand.
    pub fn demand(&self) -> demand_service_client::DemandServiceClient<Conn> {
        demand_service_client::DemandServiceClient::new(self.conn.clone()).max_decoding_message_size(64 << 20)
    }
    /// Funding.
    pub fn funding(&self) -> funding_service_client::FundingServiceClient<Conn> {
        funding_service_client::FundingServiceClient::new(self.conn.clone())
    }
    /// ERP prices.
    pub fn prices(&self) -> price_service_client::PriceServiceClient<Conn> {
        price_service_client::PriceServiceClient::new(self.conn.clone())
    }
    /// Replenishment.
    pub fn replenishment(&self) -> replenishment_service_client::ReplenishmentServiceClient<Conn> {
        replenishment_service_client::ReplenishmentServiceClient::new(self.conn.clone())
    }
    /// The process-event record (analytics).
    pub fn events(&self) -> process_event_service_client::ProcessEventServiceClient<Conn> {
        process_event_service_client::ProcessEventServiceClient::new(self.conn.clone())
    }
    /// The promotion calendar (footprint reservations).
    pub fn calendar(&self) -> calendar_service_client::CalendarServiceClient<Conn> {
        calendar_service_client::CalendarServiceClient::new(self.conn.clone())
    }
    /// Channel publication.
    pub fn publication(&self) -> publication_service_client::PublicationServiceClient<Conn> {
        publication_service_client::PublicationServiceClient::new(self.conn.clone())
    }
    /// Sales.
    pub fn sales(&self) -> sales_service_client::SalesServiceClient<Conn> {
        sales_service_client::SalesServiceClient::new(self.conn.clone())
    }
}

/// Attempts of one systems call before a transient failure is left to the activity's retry
/// policy.
pub const CALL_ATTEMPTS: u32 = 6;

/// Whether a failed call may succeed if simply made again: the service was unreachable,
/// overloaded or timed out. Writes are safe to repeat because every one carries an idempotency
/// key; an ambiguous commit (committed, response lost) returns the same record on the retry.
pub fn is_transient(s: &Status) -> bool {
    matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted | Code::Aborted)
}

/// Makes the call `f` builds, again on transient failures ([`is_transient`]), at most
/// [`CALL_ATTEMPTS`] times with jittered exponential backoff (50 ms doubling, capped at 2 s).
/// Business refusals and the last transient failure are returned as they are.
pub async fn retry_transient<T, Fut>(mut f: impl FnMut() -> Fut) -> Result<T, Status>
where
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let mut pause = Duration::from_millis(50);
    let mut attempt = 1;
    loop {
        match f().await {
            Err(s) if attempt < CALL_ATTEMPTS && is_transient(&s) => {
                tokio::time::sleep(jittered(pause)).await;
                pause = (pause * 2).min(Duration::from_secs(2));
                attempt += 1;
            }
            r => return r,
        }
    }
}

/// `d` scaled by a factor in [0.5, 1.5), so that calls failing together do not retry together.
fn jittered(d: Duration) -> Duration {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |t| t.subsec_nanos());
    // A multiplicative hash spreads the clock's low bits over [0, 1).
    let unit = f64::from(nanos.wrapping_mul(2_654_435_761)) / f64::from(u32::MAX);
    d.mul_f64(0.5 + unit)
}

/// Maps a systems error: business refusals are non-retryable, the rest retry.
pub fn status_error(what: &str, s: Status) -> ActivityError {
    let msg = format!("{what}: {} ({:?})", s.message(), s.code());
    match s.code() {
        Code::NotFound | Code::InvalidArgument | Code::FailedPrecondition | Code::AlreadyExists => {
            business(msg)
        }
        _ => anyhow::anyhow!(msg).into(),
    }
}

/// A non-retryable business-rule failure.
pub fn business(msg: impl Into<String>) -> ActivityError {
    ActivityError::application(
        ApplicationFailure::builder(msg.into())
            .type_name("BusinessRule".to_owned())
            .non_retryable(true)
            .build(),
    )
}

/// The retryable failure with which a `promo.watch_window` round that found nothing to decide
/// ends its attempt: the next attempt, at the cadence, is the next round.
fn nothing_to_decide(msg: String) -> ActivityError {
    ActivityError::application(
        ApplicationFailure::builder(msg).type_name("NothingToDecide".to_owned()).build(),
    )
}

/// The business instant (Unix seconds) of server time `t` on the workflow's business clock.
fn business_instant(input: &WatchInput, t: SystemTime) -> i64 {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    input.clock_origin + (secs - input.clock_origin) * i64::from(input.time_scale.max(1))
}

/// The wall-clock instant at which the business clock of `input` reaches `at` (the workflow's
/// business clock counts whole server seconds), with a margin for the workflow task that follows.
fn wall_instant(input: &WatchInput, at: i64) -> SystemTime {
    let scale = i64::from(input.time_scale.max(1));
    let secs = input.clock_origin + (at - input.clock_origin + scale - 1).div_euclid(scale);
    UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64) + WALL_MARGIN
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

/// The implementation of every activity of the promotion workflow.
pub struct PromotionActivities {
    systems: Systems,
    policy: Policy,
    temporal: Option<Client>,
}

impl PromotionActivities {
    /// Activities over `systems` handing out `policy`; `temporal` enables collision checks
    /// against other running promotions.
    pub fn new(systems: Systems, policy: Policy, temporal: Option<Client>) -> Self {
        Self { systems, policy, temporal }
    }
}

pub(crate) fn ts(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

pub(crate) fn dec(x: f64) -> Decimal {
    Decimal::from_f64(x).unwrap_or_default()
}

/// Idempotency key of a write: promotion id + revision + target.
pub fn idempotency_key(promotion_id: &str, revision: u32, target: &str) -> String {
    format!("{promotion_id}:r{revision}:{target}")
}

/// How often a running activity heartbeats. The workflow gives every activity a 10 s heartbeat
/// timeout, several pulses long, so an activity on a worker that died is retried elsewhere
/// within seconds, not at the end of its start-to-close timeout. Core throttles what reaches the
/// server to 80% of that timeout. The pulse shares the activity's task: work that blocks the
/// thread for seconds must yield (the engines take milliseconds on the canonical promotion).
pub const PULSE: Duration = Duration::from_secs(2);

/// The longest `promo.publish_and_await` waits for its publications to be written before it
/// fails the attempt (the local `promo.publish_many`'s start-to-close timeout, 20 s).
const PUBLISH_WAIT: Duration = Duration::from_secs(20);

/// The latest progress of a running activity, sent with each heartbeat (shown as the pending
/// activity's heartbeat details in the Web UI).
#[derive(Debug, Default)]
struct Progress(std::sync::Mutex<String>);

impl Progress {
    fn set(&self, progress: impl Into<String>) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = progress.into();
    }

    fn get(&self) -> String {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// What an activity error says, for a result that carries it instead of failing.
fn error_text(e: &ActivityError) -> String {
    match e {
        ActivityError::Application(f) => f.to_string(),
        other => format!("{other:?}"),
    }
}

/// Runs `work`, heartbeating every [`PULSE`] with `progress` until it finishes.
async fn alive<T>(ctx: &ActivityContext, progress: &Progress, work: impl Future<Output = T>) -> T {
    beating(ctx, || progress.get(), work).await
}

/// Runs `work`, heartbeating every [`PULSE`] with what `details` returns then.
async fn beating<T, D>(ctx: &ActivityContext, details: impl Fn() -> D, work: impl Future<Output = T>) -> T
where
    D: temporalio_common::data_converters::TemporalSerializable + 'static,
{
    let mut work = std::pin::pin!(work);
    let mut pulse = tokio::time::interval(PULSE);
    pulse.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = pulse.tick() => {
                let _ = ctx.record_heartbeat(details()).await;
            }
        }
    }
}

/// The assessment engines, shared by the three assessment activities and `promo.assess`.
impl PromotionActivities {
    async fn margin(
        &self,
        input: &AssessInput,
        progress: &Progress,
    ) -> Result<pb::MarginSummary, ActivityError> {
        let c = load_context(&self.systems, &input.plan, &input.adjustments, &input.only_regions).await?;
        progress.set("master data loaded");
        let demand = c.demand_by_region_line(&self.systems).await?;
        let floor = promo_contracts::money::parse_decimal("min_margin_rate", &input.min_margin_rate, 6)
            .map_err(|e| business(e.to_string()))?;
        // Runs from before the field carry none: no anomaly scoring.
        let mads = optional_threshold("margin_anomaly_mads", &input.margin_anomaly_mads)?;
        let mut summary = c.margin(&demand, floor, mads);
        // Runs from before the field carry none: drift is tracked but never flagged.
        let drift_signal = optional_threshold("model_drift_signal", &input.model_drift_signal)?;
        if let (Some(l), Some(m)) = (&c.learned, summary.forecast_model.as_mut()) {
            m.drift = l.drift(&self.systems, drift_signal).await;
        }
        Ok(summary)
    }

    async fn inventory(
        &self,
        input: &AssessInput,
        progress: &Progress,
    ) -> Result<InventoryAssessment, ActivityError> {
        let c = load_context(&self.systems, &input.plan, &input.adjustments, &input.only_regions).await?;
        progress.set("master data loaded");
        let cells = c.cells(&self.systems).await?;
        progress.set(format!("{} positions read", cells.len()));
        let floor: f64 =
            input.min_fill_rate.parse().map_err(|_| business("min_fill_rate is not a number"))?;
        // Histories from before the gate carry none: off.
        let ceiling = optional_threshold("max_stockout_share", &input.max_stockout_share)?;
        let scenario = c.scenario();
        let a = alignment::align(&cells, &scenario, c.regions.len(), c.lines.len());
        // The forecast's store-level uncertainty comes with the learned model (fitted, or
        // from this worker's cache, even when every line has the planner's uplift).
        let size = match &c.learned {
            Some(l) => l.store_size,
            None => match learned::learned_model(&self.systems).await {
                learned::ModelState::Ready(l) => l.store_size,
                learned::ModelState::Unavailable(_) => None,
            },
        };
        let (cells, risks) = match size {
            Some(k) => {
                progress.set("stockout probabilities");
                // CPU-bound for a few hundred ms on the canonical promotion: off the runtime.
                let (regions, lines, s) = (c.regions.len(), c.lines.len(), scenario.clone());
                tokio::task::spawn_blocking(move || {
                    let r = stockout::assess(&cells, &s, regions, lines, k, RISKIEST_CELLS);
                    (cells, Some(r))
                })
                .await
                .map_err(|e| business(format!("stockout probabilities: {e}")))?
            }
            None => (cells, None),
        };
        let mut summary = c.inventory_summary(&cells, &scenario, &a, floor, risks.as_deref(), ceiling);
        if summary.regions.iter().any(|r| !r.passes) {
            progress.set("looking for substitutes");
            let (options, positions) = substitutes::options(&self.systems, &c, &a, floor).await?;
            summary.options.extend(options);
            summary.positions_read += positions;
            // Options per region, in the order drop-short, delay, substitute.
            let order = |o: &pb::RemediationOption| c.regions.iter().position(|r| r == &o.region_id);
            summary.options.sort_by_key(order);
        }
        Ok(summary)
    }

    /// One monitoring round: sell-through (as `promo.monitor`) and the live prices read back (as
    /// `promo.reconcile_prices`, up to three tries), concurrently. A read-back that fails is
    /// returned as its reason, for the round to record as a missed check.
    async fn round(&self, input: &MonitorRoundInput) -> Result<MonitorRoundOutput, ActivityError> {
        let prices = async {
            let p = input.prices.as_ref()?;
            let mut pause = Duration::from_millis(500);
            let mut tries = 1;
            loop {
                match reconcile::run(&self.systems, p).await {
                    Ok(found) => return Some(Ok(found)),
                    Err(e) if tries >= 3 => return Some(Err(error_text(&e))),
                    Err(_) => {
                        tries += 1;
                        tokio::time::sleep(pause).await;
                        pause *= 2;
                    }
                }
            }
        };
        let (report, prices) = tokio::join!(self.sales_report(&input.sales), prices);
        Ok(MonitorRoundOutput { report: report?, prices, released: Vec::new() })
    }

    /// One publication to one channel target, idempotent by promotion, revision, target, kind
    /// and correction.
    async fn publish_one(&self, input: &PublishInput) -> Result<PublicationRef, ActivityError> {
        let channel =
            wire::Channel::try_from(input.target.channel).map_err(|_| business("unknown channel"))?;
        let kind = PublicationKind::try_from(input.kind).map_err(|_| business("unknown publication kind"))?;
        let mut target = format!(
            "publish:{}:{}:{}",
            channel.as_str_name(),
            if input.target.region_id.is_empty() { "national" } else { &input.target.region_id },
            kind.as_str_name()
        );
        if input.correction > 0 {
            target.push_str(&format!(":correction-{}", input.correction));
        }
        let req = PublishRequest {
            idempotency_key: idempotency_key(&input.promotion_id, input.revision, &target),
            promotion_id: input.promotion_id.clone(),
            revision: input.revision,
            channel: input.target.channel,
            region_id: input.target.region_id.clone(),
            kind: input.kind,
            price_change_id: input.price_change_id.clone(),
            effective: Some(TimeRange { start: ts(input.effective.0), end: ts(input.effective.1) }),
            line_count: input.line_count,
        };
        let p = rpc!(self.systems.publication(), publish, req.clone())
            .await
            .map_err(|s| status_error("publication", s))?
            .into_inner()
            .publication
            .ok_or_else(|| business("publication: empty response"))?;
        Ok(publication_ref(&p, input.target.clone()))
    }

    /// Frees a promotion's footprint in the promotion calendar: whether it held one.
    async fn release(&self, promotion_id: &str) -> Result<bool, ActivityError> {
        let req = ReleaseRequest { promotion_id: promotion_id.to_owned() };
        let done = rpc!(self.systems.calendar(), release, req.clone())
            .await
            .map_err(|s| status_error("promotion calendar", s))?;
        Ok(done.into_inner().released)
    }

    /// Releases proposed transfer orders to ship at business instant `at`; returns those now
    /// released (idempotent: an order already released stays so).
    async fn release_orders(&self, orders: Vec<String>, at: i64) -> Result<Vec<String>, ActivityError> {
        let mut released = Vec::new();
        for id in orders {
            let req = ReleaseOrderRequest {
                order_id: id.clone(),
                release_at: Some(Timestamp { seconds: at, nanos: 0 }),
            };
            let o = rpc!(self.systems.replenishment(), release_order, req.clone())
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

    async fn sales_report(&self, input: &SalesInput) -> Result<MonitorReport, ActivityError> {
        let c = load_context(&self.systems, &input.plan, &input.adjustments, &[]).await?;
        let actuals = sales_actuals(&self.systems, &c, input).await?;
        let sold: i64 = actuals.iter().map(|a| a.units_sold).sum();
        let available: i64 = actuals.iter().map(|a| a.available_units).sum();
        let mut stockouts = BTreeMap::new();
        for a in actuals.iter().filter(|a| a.stockout_store_days > 0) {
            *stockouts.entry(a.region_id.clone()).or_insert(0u64) += u64::from(a.stockout_store_days);
        }
        let transfers = match &input.replenish {
            Some(r) => replenish::propose(&self.systems, &c, input, r).await?,
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

    async fn funding(&self, input: &AssessInput) -> Result<pb::FundingSummary, ActivityError> {
        let c = load_context(&self.systems, &input.plan, &input.adjustments, &input.only_regions).await?;
        let demand = c.demand_by_region_line(&self.systems).await?;
        Ok(c.funding(&demand))
    }
}

#[activities]
impl PromotionActivities {
    /// Returns the worker's policy.
    #[activity(name = activity_names::LOAD_POLICY)]
    pub async fn load_policy(self: Arc<Self>, _ctx: ActivityContext, _: ()) -> Result<Policy, ActivityError> {
        Ok(self.policy.clone())
    }

    /// Validates a spec against master data and other running promotions.
    #[activity(name = activity_names::VALIDATE_SPEC)]
    pub async fn validate_spec(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: IntakeInput,
    ) -> Result<IntakeOutput, ActivityError> {
        alive(&ctx, &Progress::default(), async {
            intake::validate(&self.systems, self.temporal.as_ref(), &input).await
        })
        .await
    }

    /// Margin and compliance of every line.
    #[activity(name = activity_names::ASSESS_MARGIN)]
    pub async fn assess_margin(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: AssessInput,
    ) -> Result<pb::MarginSummary, ActivityError> {
        let progress = Progress::default();
        alive(&ctx, &progress, self.margin(&input, &progress)).await
    }

    /// Inventory alignment per region and store, with remediation options for failing regions.
    #[activity(name = activity_names::ASSESS_INVENTORY)]
    pub async fn assess_inventory(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: AssessInput,
    ) -> Result<InventoryAssessment, ActivityError> {
        let progress = Progress::default();
        alive(&ctx, &progress, self.inventory(&input, &progress)).await
    }

    /// Supplier funding of every funded line.
    #[activity(name = activity_names::ASSESS_FUNDING)]
    pub async fn assess_funding(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: AssessInput,
    ) -> Result<pb::FundingSummary, ActivityError> {
        alive(&ctx, &Progress::default(), self.funding(&input)).await
    }

    /// Margin, inventory and funding together (what the three activities above return), their
    /// reads running concurrently: one local activity's marker in a batched run's history.
    #[activity(name = activity_names::ASSESS)]
    pub async fn assess(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: AssessInput,
    ) -> Result<Assessment, ActivityError> {
        let progress = Progress::default();
        alive(&ctx, &progress, self.assessment(&input, &progress)).await
    }

    /// Margin, inventory and funding of `input`, their reads running concurrently.
    async fn assessment(
        &self,
        input: &AssessInput,
        progress: &Progress,
    ) -> Result<Assessment, ActivityError> {
        let (margin, inventory, funding) = tokio::try_join!(
            self.margin(input, progress),
            self.inventory(input, progress),
            self.funding(input)
        )?;
        Ok(Assessment { margin, inventory, funding })
    }

    /// Stages the promotional prices in the ERP (idempotent by promotion + revision).
    #[activity(name = activity_names::STAGE_PRICES)]
    pub async fn stage_prices(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: StagePricesInput,
    ) -> Result<String, ActivityError> {
        alive(&ctx, &Progress::default(), async {
            let c = load_context(&self.systems, &input.plan, &input.adjustments, &[]).await?;
            let req = StagePriceChangeRequest {
                idempotency_key: idempotency_key(&input.plan.promotion_id, input.revision, "erp-prices"),
                promotion_id: input.plan.promotion_id.clone(),
                revision: input.revision,
                region_ids: input.regions.clone(),
                effective_from: ts(input.plan.starts_at),
                effective_to: ts(input.plan.ends_at),
                lines: c
                    .price_lines()
                    .into_iter()
                    .map(|(sku, price, region_ids)| PriceLine {
                        sku,
                        promo_price: format_money(price),
                        region_ids,
                    })
                    .collect(),
            };
            let resp = rpc!(self.systems.prices(), stage_price_change, req.clone())
                .await
                .map_err(|s| status_error("ERP", s))?;
            // An empty id would be staged prices nobody can revert.
            match resp.into_inner().price_change.map(|p| p.price_change_id) {
                Some(id) if !id.is_empty() => Ok(id),
                _ => Err(business("ERP: StagePriceChange: price_change: missing from the response")),
            }
        })
        .await
    }

    /// Creates transfer orders from each region's DC (idempotent by promotion + revision + region).
    #[activity(name = activity_names::CREATE_TRANSFER_ORDERS)]
    pub async fn create_transfer_orders(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: OrdersInput,
    ) -> Result<Vec<String>, ActivityError> {
        alive(&ctx, &Progress::default(), async {
            let mut ids = Vec::new();
            for (region, (dc, lines)) in &input.orders {
                let req = CreateTransferOrderRequest {
                    idempotency_key: idempotency_key(
                        &input.promotion_id,
                        input.revision,
                        &format!("transfer:{region}"),
                    ),
                    promotion_id: input.promotion_id.clone(),
                    from_dc_id: dc.clone(),
                    to_region_id: region.clone(),
                    lines: lines
                        .iter()
                        .map(|(sku, units)| OrderLine {
                            sku: sku.clone(),
                            units: *units,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                };
                let resp = rpc!(self.systems.replenishment(), create_transfer_order, req.clone())
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
        })
        .await
    }

    /// Releases and cancels proposed transfer orders (each call idempotent); returns the ids
    /// released.
    #[activity(name = activity_names::SETTLE_TRANSFERS)]
    pub async fn settle_transfers(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: SettleTransfersInput,
    ) -> Result<Vec<String>, ActivityError> {
        alive(&ctx, &Progress::default(), async {
            let released = self.release_orders(input.release.clone(), input.release_at).await?;
            for id in &input.cancel {
                let req = CancelOrderRequest { order_id: id.clone(), reason: input.reason.clone() };
                rpc!(self.systems.replenishment(), cancel_order, req.clone())
                    .await
                    .map_err(|s| status_error("replenishment", s))?;
            }
            Ok(released)
        })
        .await
    }

    /// Publishes to one channel target (idempotent by promotion + revision + channel + region + kind).
    #[activity(name = activity_names::PUBLISH)]
    pub async fn publish(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: PublishInput,
    ) -> Result<PublicationRef, ActivityError> {
        alive(&ctx, &Progress::default(), self.publish_one(&input)).await
    }

    /// Publishes to every target at once (concurrently; each write idempotent by its key), in the
    /// order given: one local activity, so one history marker, for a whole wave.
    #[activity(name = activity_names::PUBLISH_MANY)]
    pub async fn publish_many(
        self: Arc<Self>,
        ctx: ActivityContext,
        inputs: Vec<PublishInput>,
    ) -> Result<Vec<PublicationRef>, ActivityError> {
        alive(&ctx, &Progress::default(), async {
            futures::future::try_join_all(inputs.iter().map(|i| self.publish_one(i))).await
        })
        .await
    }

    /// Waits until every publication is acknowledged (with `return_on_change`, until any
    /// acknowledgment changes) or `timeout_ms` passes, heartbeating. The
    /// acknowledgments are pushed: one `WatchPublications` stream for the whole wait, which the
    /// systems answer when a publication changes — no call per publication per poll, however
    /// long a channel takes.
    #[activity(name = activity_names::AWAIT_ACKNOWLEDGMENTS)]
    pub async fn await_acknowledgments(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: AwaitAcksInput,
    ) -> Result<Vec<PublicationRef>, ActivityError> {
        self.record_carried(&input.events).await;
        self.acknowledgments(&ctx, input.publications.clone(), &input).await
    }

    /// Publishes `input.publish` (as `promo.publish_many`), then waits for those and
    /// `input.publications` to be acknowledged (as `promo.await_acknowledgments`): one ordinary
    /// activity for a publication and the wait that follows it. A publication the channel system
    /// does not answer within [`PUBLISH_WAIT`] fails the attempt, which is retried.
    #[activity(name = activity_names::PUBLISH_AND_AWAIT)]
    pub async fn publish_and_await(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: AwaitAcksInput,
    ) -> Result<Vec<PublicationRef>, ActivityError> {
        self.record_carried(&input.events).await;
        let progress = Progress::default();
        progress.set(format!("publishing to {} channel targets", input.publish.len()));
        // Not cut short by a cancellation: the compensation that follows it sweeps what the
        // channel system holds, so every write this attempt sent must have landed by then.
        let publish = futures::future::try_join_all(input.publish.iter().map(|i| self.publish_one(i)));
        let published =
            alive(&ctx, &progress, tokio::time::timeout(PUBLISH_WAIT, publish)).await.unwrap_or_else(
                |_| Err(anyhow::anyhow!("publication: no answer within {PUBLISH_WAIT:?}").into()),
            )?;
        if ctx.is_cancelled() {
            return Err(ActivityError::cancelled());
        }
        let mut pubs = input.publications.clone();
        pubs.extend(published);
        self.acknowledgments(&ctx, pubs, &input).await
    }

    /// Writes the process events a carrying run handed to this activity, best effort: the run
    /// sends them again with its next `promo.record_events`, so a failure here is only logged.
    async fn record_carried(&self, events: &[ProcessEvent]) {
        if events.is_empty() {
            return;
        }
        let req = RecordEventsRequest { events: events.to_vec() };
        match tokio::time::timeout(
            Duration::from_secs(5),
            rpc!(self.systems.events(), record_events, req.clone()),
        )
        .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(s)) => tracing::warn!("process events left to the workflow's next flush: {}", s.message()),
            Err(_) => {
                tracing::warn!("process events left to the workflow's next flush: no answer within 5 s")
            }
        }
    }

    /// Waits until every publication of `pubs` is acknowledged (with `return_on_change`, until
    /// any acknowledgment changes) or `input.timeout_ms` passes, heartbeating.
    async fn acknowledgments(
        &self,
        ctx: &ActivityContext,
        pubs: Vec<PublicationRef>,
        input: &AwaitAcksInput,
    ) -> Result<Vec<PublicationRef>, ActivityError> {
        let progress = Progress::default();
        alive(ctx, &progress, async {
            let deadline = tokio::time::Instant::now() + Duration::from_millis(input.timeout_ms);
            let mut pubs = pubs;
            let waiting =
                |pubs: &[PublicationRef]| pubs.iter().filter(|p| p.acknowledged_at_ms.is_none()).count();
            if waiting(&pubs) == 0 {
                return Ok(pubs);
            }
            let publication_ids: Vec<String> = pubs
                .iter()
                .filter(|p| p.acknowledged_at_ms.is_none())
                .map(|p| p.publication_id.clone())
                .collect();
            let mut stream = rpc!(
                self.systems.publication(),
                watch_publications,
                WatchPublicationsRequest { publication_ids: publication_ids.clone() }
            )
            .await
            .map_err(|s| status_error("publication", s))?
            .into_inner();
            loop {
                progress.set(format!("{} acknowledgments pending", waiting(&pubs)));
                let next = tokio::select! {
                    () = ctx.cancelled() => return Err(ActivityError::cancelled()),
                    () = tokio::time::sleep_until(deadline) => return Ok(pubs),
                    next = stream.message() => next,
                };
                let got = next
                    .map_err(|s| status_error("publication", s))?
                    .ok_or_else(|| anyhow::anyhow!("publication: the acknowledgment stream ended"))?
                    .publication
                    .ok_or_else(|| business("publication: empty message"))?;
                let mut changed = false;
                if let Some(p) = pubs.iter_mut().find(|p| p.publication_id == got.publication_id) {
                    let now = publication_ref(&got, p.target.clone());
                    changed = now.acknowledged_at_ms != p.acknowledged_at_ms;
                    *p = now;
                }
                if waiting(&pubs) == 0 || (changed && input.return_on_change) {
                    return Ok(pubs);
                }
            }
        })
        .await
    }

    /// Records process events (a local activity: no heartbeat; one call, idempotent by id).
    #[activity(name = activity_names::RECORD_EVENTS)]
    pub async fn record_events(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: Vec<ProcessEvent>,
    ) -> Result<u32, ActivityError> {
        let done = rpc!(self.systems.events(), record_events, RecordEventsRequest { events: input.clone() })
            .await
            .map_err(|s| status_error("process events", s))?;
        Ok(done.into_inner().recorded)
    }

    /// Releases the promotion's calendar reservation (idempotent).
    #[activity(name = activity_names::RELEASE_CALENDAR)]
    pub async fn release_calendar(
        self: Arc<Self>,
        _ctx: ActivityContext,
        promotion_id: String,
    ) -> Result<bool, ActivityError> {
        self.release(&promotion_id).await
    }

    /// Reads each publication's state once (the launch gate's re-check of the acknowledgments).
    #[activity(name = activity_names::READ_PUBLICATIONS)]
    pub async fn read_publications(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: Vec<PublicationRef>,
    ) -> Result<Vec<PublicationRef>, ActivityError> {
        alive(&ctx, &Progress::default(), self.read(&input)).await
    }

    /// The launch gate's final re-check: the assessment of `promo.assess` and the re-read of
    /// `promo.read_publications`, concurrently; a re-read that fails is returned as its reason.
    #[activity(name = activity_names::RECHECK_GATE)]
    pub async fn recheck_gate(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: RecheckGateInput,
    ) -> Result<RecheckGateOutput, ActivityError> {
        let progress = Progress::default();
        alive(&ctx, &progress, async {
            let read = async { self.read(&input.publications).await.map_err(|e| error_text(&e)) };
            let (assessment, publications) = tokio::join!(self.assessment(&input.assess, &progress), read);
            Ok(RecheckGateOutput { assessment: assessment?, publications })
        })
        .await
    }

    /// Each publication as its channel shows it now.
    async fn read(&self, publications: &[PublicationRef]) -> Result<Vec<PublicationRef>, ActivityError> {
        let mut out = Vec::with_capacity(publications.len());
        for p in publications {
            let got = rpc!(
                self.systems.publication(),
                get_publication,
                GetPublicationRequest { publication_id: p.publication_id.clone() }
            )
            .await
            .map_err(|s| status_error("publication", s))?
            .into_inner()
            .publication
            .ok_or_else(|| business("publication: empty response"))?;
            out.push(publication_ref(&got, p.target.clone()));
        }
        Ok(out)
    }

    /// Compensation: withdraw publications, revert the price change, cancel orders.
    #[activity(name = activity_names::COMPENSATE)]
    pub async fn compensate(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: CompensateInput,
    ) -> Result<CompensateOutput, ActivityError> {
        alive(&ctx, &Progress::default(), async {
            if !input.sweep_promotion_id.is_empty() {
                let mut out = sweep(&self.systems, &input).await?;
                if !input.release_calendar.is_empty() {
                    out.calendar_released = Some(self.release(&input.release_calendar).await?);
                }
                return Ok(out);
            }
            let mut out = CompensateOutput::default();
            for id in &input.publications {
                rpc!(
                    self.systems.publication(),
                    withdraw,
                    WithdrawRequest { publication_id: id.clone(), reason: input.reason.clone() }
                )
                .await
                .map_err(|s| status_error("publication", s))?;
                out.withdrawn += 1;
            }
            if let Some(pc) = &input.price_change_id {
                rpc!(
                    self.systems.prices(),
                    revert_price_change,
                    RevertPriceChangeRequest { price_change_id: pc.clone(), reason: input.reason.clone() }
                )
                .await
                .map_err(|s| status_error("ERP", s))?;
                out.reverted = true;
            }
            for id in &input.orders {
                rpc!(
                    self.systems.replenishment(),
                    cancel_order,
                    CancelOrderRequest { order_id: id.clone(), reason: input.reason.clone() }
                )
                .await
                .map_err(|s| status_error("replenishment", s))?;
                out.cancelled += 1;
            }
            Ok(out)
        })
        .await
    }

    /// Reads back the live price of every SKU of the price change on each target and compares
    /// it with the approved one (the promo price while live, the regular price after the revert).
    #[activity(name = activity_names::RECONCILE_PRICES)]
    pub async fn reconcile_prices(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: ReconcileInput,
    ) -> Result<ReconcileOutput, ActivityError> {
        alive(&ctx, &Progress::default(), reconcile::run(&self.systems, &input)).await
    }

    /// The supplier funding claims of the promotion, reconciled and submitted.
    #[activity(name = activity_names::SUBMIT_FUNDING_CLAIMS)]
    pub async fn submit_funding_claims(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: ClaimsInput,
    ) -> Result<Vec<pb::FundingClaimResult>, ActivityError> {
        alive(&ctx, &Progress::default(), claims::run(&self.systems, &input)).await
    }

    /// Reverts the staged price change at the end of the window.
    #[activity(name = activity_names::REVERT_PRICES)]
    pub async fn revert_prices(
        self: Arc<Self>,
        ctx: ActivityContext,
        price_change_id: String,
    ) -> Result<(), ActivityError> {
        alive(&ctx, &Progress::default(), async {
            rpc!(
                self.systems.prices(),
                revert_price_change,
                RevertPriceChangeRequest {
                    price_change_id: price_change_id.clone(),
                    reason: "promotion window ended".into(),
                }
            )
            .await
            .map_err(|s| status_error("ERP", s))?;
            Ok(())
        })
        .await
    }

    /// Sell-through so far, from sales actuals of the live windows.
    #[activity(name = activity_names::MONITOR)]
    pub async fn monitor(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: SalesInput,
    ) -> Result<MonitorReport, ActivityError> {
        alive(&ctx, &Progress::default(), self.sales_report(&input)).await
    }

    /// A monitoring round: sell-through (as `promo.monitor`) and the live prices read back (as
    /// `promo.reconcile_prices`, up to three tries), concurrently. A read-back that fails is
    /// returned as its reason, for the round to record as a missed check.
    #[activity(name = activity_names::MONITOR_ROUND)]
    pub async fn monitor_round(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: MonitorRoundInput,
    ) -> Result<MonitorRoundOutput, ActivityError> {
        alive(&ctx, &Progress::default(), async {
            let mut out = self.round(&input).await?;
            // The transfers within the policy's limit, released as the workflow would.
            if let Some(limit) = input.auto_apply_max_cost.as_deref() {
                let within = out
                    .report
                    .transfers
                    .iter()
                    .filter(|x| promo_workflows::decisions::within_limit(&x.cost, limit));
                let orders = within.map(|x| x.order_id.clone()).collect::<Vec<_>>();
                if !orders.is_empty() {
                    out.released = self.release_orders(orders, input.release_at).await?;
                }
            }
            Ok(out)
        })
        .await
    }

    /// Monitoring rounds at the policy's cadence, kept by this activity's retry policy (see
    /// `promo_workflows::workflow::MONITOR_WINDOW`): the first attempt starts the cadence, each
    /// later attempt is a round at the business instant the server scheduled it for. A round
    /// reads its input from the workflow (`monitor_input`), runs as `promo.monitor_round`, and
    /// adds itself to the rounds carried from attempt to attempt in the heartbeat details; it
    /// returns them all when it finds something for the workflow to decide (a stockout in a
    /// region not yet raised, transfers, prices that differ) or, when the next round would fall
    /// at or after the stretch's end, at that end; and otherwise ends its attempt with a retryable
    /// `NothingToDecide` failure saying what it saw, which is what the Web UI shows as the
    /// activity's last failure until the next round.
    #[activity(name = activity_names::WATCH_WINDOW)]
    pub async fn watch_window(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: WatchInput,
    ) -> Result<WatchOutput, ActivityError> {
        let info = ctx.info();
        let scheduled =
            info.current_attempt_scheduled_time.or(info.scheduled_time).unwrap_or_else(SystemTime::now);
        let at = business_instant(&input, scheduled);
        if info.attempt <= 1 {
            self.record_carried(&input.events).await;
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
        let handle = ctx
            .workflow_handle::<promo_workflows::PromotionWorkflow>()
            .ok_or_else(|| business("promo.watch_window runs only for a promotion workflow"))?;
        let round = async {
            let asked = handle
                .query(promo_workflows::PromotionWorkflow::monitor_input, at, Default::default())
                .await
                .map_err(|e| anyhow::anyhow!("the promotion did not answer monitor_input: {e}"))?;
            let mut input_now =
                asked.ok_or_else(|| business("the promotion has no live region to monitor"))?;
            if let Some(r) = input_now.sales.replenish.as_mut() {
                r.round += rounds.len() as u32;
            }
            self.round(&input_now).await
        };
        // Heartbeats carry the rounds so far, so that a retry after a lost worker keeps them.
        let out = beating(&ctx, || rounds.clone(), async {
            tokio::select! {
                out = round => out,
                () = ctx.cancelled() => Err(ActivityError::cancelled()),
            }
        })
        .await?;
        // Transfers all within the policy's limit are released here, as the workflow would.
        let mut released = Vec::new();
        let auto = input.auto_apply_max_cost.as_deref().is_some_and(|limit| {
            out.report.transfers.iter().all(|x| promo_workflows::decisions::within_limit(&x.cost, limit))
        });
        if auto {
            let orders = out.report.transfers.iter().map(|x| x.order_id.clone()).collect();
            released = self.release_orders(orders, at).await?;
        }
        // An order the systems did not release goes back to the workflow, whose settlement retries it.
        let news = decide(&input, &out, auto && released.len() == out.report.transfers.len());
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
        if news {
            return Ok(WatchOutput { rounds });
        }
        if at + input.every >= input.until {
            // The stretch's last round: return at its end, so that the workflow goes on to what
            // comes then (the close, a delayed launch) without a timer and a workflow task more;
            // an end further off than the attempt may last is left to the workflow's timer.
            let end = wall_instant(&input, input.until);
            let sleep = end.duration_since(SystemTime::now()).unwrap_or_default();
            if sleep > MAX_END_WAIT {
                return Ok(WatchOutput { rounds });
            }
            beating(&ctx, || rounds.clone(), async {
                tokio::select! {
                    () = tokio::time::sleep(sleep) => Ok(()),
                    () = ctx.cancelled() => Err(ActivityError::cancelled()),
                }
            })
            .await?;
            return Ok(WatchOutput { rounds });
        }
        let _ = ctx.record_heartbeat(rounds).await;
        Err(nothing_to_decide(format!(
            "{seen}; nothing to decide, next round at {}",
            business_time(at + input.every)
        )))
    }

    /// The post-event report from sales actuals against the plan.
    #[activity(name = activity_names::POST_EVENT_ANALYSIS)]
    pub async fn post_event_analysis(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: SalesInput,
    ) -> Result<pb::PostEventReport, ActivityError> {
        alive(&ctx, &Progress::default(), async { Ok(self.report(&input).await?.0) }).await
    }

    /// The post-event report of `input`, with the context and the sales actuals it was made from.
    async fn report(
        &self,
        input: &SalesInput,
    ) -> Result<(pb::PostEventReport, Context, Vec<SalesActual>), ActivityError> {
        let c = load_context(&self.systems, &input.plan, &input.adjustments, &[]).await?;
        let actuals = sales_actuals(&self.systems, &c, input).await?;
        let mut report = c.report(&actuals, &input.assessment);
        replenishment_outcome(&self.systems, &c, input, &mut report).await?;
        Ok((report, c, actuals))
    }

    /// The post-event report and the funding claims over one load of the context and one read
    /// of the sales (what `promo.post_event_analysis` and `promo.submit_funding_claims` each
    /// read on their own).
    #[activity(name = activity_names::ANALYSE_AND_CLAIM)]
    pub async fn analyse_and_claim(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: ClaimsInput,
    ) -> Result<AnalysisAndClaims, ActivityError> {
        alive(&ctx, &Progress::default(), async {
            let (report, c, actuals) = self.report(&input.sales).await?;
            let claims = claims::submit(&self.systems, &input, &c, &actuals).await?;
            Ok(AnalysisAndClaims { report, claims })
        })
        .await
    }
}

/// Undoes everything of a promotion still live in the systems, reading what they hold (so a
/// write whose response was lost, or an activity cancelled mid-call, is undone too): staged
/// price changes are reverted; activation publications are withdrawn unless their target has an
/// acknowledged revert (the channel already restored its regular prices); released orders are
/// cancelled unless they arrive by `keep_orders_arriving_by`. Idempotent: a second sweep finds
/// nothing to do.
async fn sweep(systems: &Systems, input: &CompensateInput) -> Result<CompensateOutput, ActivityError> {
    let promotion_id = input.sweep_promotion_id.clone();
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

fn publication_ref(p: &Publication, target: api::Target) -> PublicationRef {
    PublicationRef {
        publication_id: p.publication_id.clone(),
        target,
        kind: p.kind,
        acknowledged_at_ms: (p.state() == PublicationState::Acknowledged).then(|| {
            p.acknowledged_at.as_ref().map_or(0, |t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
        }),
    }
}

/// The in-flight replenishment figures of the report: the transfer orders released during the
/// window, the units they moved, and the stockout store-days the same sales would have had
/// without them (the reference world's counterfactual).
async fn replenishment_outcome(
    systems: &Systems,
    c: &Context,
    input: &SalesInput,
    report: &mut pb::PostEventReport,
) -> Result<(), ActivityError> {
    report.stockout_store_days_without_transfers = report.stockout_store_days;
    report.units_sold_without_transfers = report.units_sold;
    let orders = rpc!(
        systems.replenishment(),
        list_orders,
        ListOrdersRequest { promotion_id: input.plan.promotion_id.clone() }
    )
    .await
    .map_err(|s| status_error("replenishment", s))?
    .into_inner()
    .orders;
    let released: Vec<&TransferOrder> = orders
        .iter()
        .filter(|o| o.state() == OrderState::Released && o.idempotency_key.contains(":replenish:"))
        .collect();
    if released.is_empty() {
        return Ok(());
    }
    report.transfers_released = released.len() as u32;
    report.units_transferred = released.iter().map(|o| o.total_units).sum();
    let Some(mut req) = sales_request(c, input) else { return Ok(()) };
    req.without_store_transfers = true;
    let without = rpc!(systems.sales(), get_sales_actuals, req.clone())
        .await
        .map_err(|s| status_error("sales", s))?
        .into_inner()
        .actuals;
    checks::sales_actuals(&req, &without).map_err(checks::BadResponse::into_activity_error)?;
    report.stockout_store_days_without_transfers =
        without.iter().map(|a| u64::from(a.stockout_store_days)).sum();
    report.units_sold_without_transfers = without.iter().map(|a| a.units_sold).sum();
    Ok(())
}

/// The sales request of the context's lines over the live windows of `input`; `None` when no
/// region has been live for any time.
pub(crate) fn sales_request(c: &Context, input: &SalesInput) -> Option<GetSalesActualsRequest> {
    // A region that went live as its window closed sold nothing: no empty scopes.
    let scopes: Vec<SalesScope> = input
        .windows
        .iter()
        .filter(|(_, (a, b))| b > a)
        .map(|(r, (a, b))| SalesScope {
            region_id: r.clone(),
            window: Some(TimeRange { start: ts(*a), end: ts(*b) }),
        })
        .collect();
    if scopes.is_empty() {
        return None;
    }
    Some(GetSalesActualsRequest {
        promotion_id: input.plan.promotion_id.clone(),
        lines: c
            .price_lines()
            .into_iter()
            .map(|(sku, price, region_ids)| SalesLine { sku, promo_price: format_money(price), region_ids })
            .collect(),
        scopes,
        without_store_transfers: false,
    })
}

/// Sales actuals of the context's lines over the live windows of `input`, checked
/// ([`checks::sales_actuals`]).
pub async fn sales_actuals(
    systems: &Systems,
    c: &Context,
    input: &SalesInput,
) -> Result<Vec<SalesActual>, ActivityError> {
    let Some(req) = sales_request(c, input) else { return Ok(Vec::new()) };
    let actuals = rpc!(systems.sales(), get_sales_actuals, req.clone())
        .await
        .map_err(|s| status_error("sales", s))?
        .into_inner()
        .actuals;
    checks::sales_actuals(&req, &actuals).map_err(checks::BadResponse::into_activity_error)?;
    Ok(actuals)
}

/// A policy threshold an activity input carries as a decimal string, where empty (a history
/// from before the threshold existed) and "0" both mean off (0).
fn optional_threshold(name: &str, value: &str) -> Result<f64, ActivityError> {
    if value.is_empty() {
        return Ok(0.0);
    }
    value.parse::<f64>().map_err(|e| business(format!("{name}: {value:?}: {e}")))
}

/// Cells most likely to run out named per region.
const RISKIEST_CELLS: usize = 5;

/// Lines whose fill in region `r` is under `floor`, with their shortfall in units, worst first.
pub(crate) fn short_lines(a: &Alignment, r: usize, floor: f64) -> Vec<(usize, f32)> {
    let mut short: Vec<(usize, f32)> = (0..a.demand[r].len())
        .filter(|&k| a.demand[r][k] > 0.0 && (1.0 - a.short[r][k] / a.demand[r][k]) < floor as f32)
        .map(|k| (k, a.short[r][k]))
        .collect();
    short.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
    short
}

impl Context {
    /// What dropping `lines` in region `r` costs: the revenue and margin of their covered
    /// demand, and the region's fill rate without them.
    fn drop_effect(&self, a: &Alignment, r: usize, lines: &[usize]) -> (f64, f64, f64) {
        let (mut lost_revenue, mut lost_margin, mut dropped_demand, mut dropped_covered) =
            (0f64, 0f64, 0f64, 0f64);
        for &k in lines {
            let covered = f64::from(a.demand[r][k] - a.short[r][k]);
            lost_revenue += covered * self.lines[k].price_f64;
            lost_margin += covered * self.lines[k].unit_margin_f64;
            dropped_demand += f64::from(a.demand[r][k]);
            dropped_covered += covered;
        }
        let t = &a.regions[r];
        let remaining = t.demand - dropped_demand;
        let fill = if remaining > 0.0 { (t.covered - dropped_covered) / remaining } else { 1.0 };
        (lost_revenue, lost_margin, fill)
    }

    /// Region rows and remediation options from an alignment pass (the last step of
    /// `promo.assess_inventory`).
    pub fn inventory_summary(
        &self,
        cells: &alignment::Cells,
        scenario: &alignment::Scenario,
        a: &Alignment,
        floor: f64,
        risks: Option<&[RegionRisk]>,
        max_stockout_share: f64,
    ) -> InventoryAssessment {
        let mut regions = Vec::new();
        let mut options = Vec::new();
        for (r, region_id) in self.regions.iter().enumerate() {
            let t = &a.regions[r];
            let fill = t.fill_rate();
            let risk = risks.and_then(|x| x.get(r));
            // The gate is the policy's ceiling on the model's number, not the model's call.
            let too_risky = risk.is_some_and(|x| max_stockout_share > 0.0 && x.share() > max_stockout_share);
            let fills = fill >= floor;
            let passes = fills && !too_risky;
            let short = short_lines(a, r, floor);
            // Uncovered demand; for a region that fills but fails the stockout ceiling, its
            // forecast revenue weighted by each cell's chance of running out.
            let revenue_at_risk: f64 = match risk {
                Some(x) if fills && too_risky => {
                    x.by_line.iter().zip(&self.lines).map(|(b, l)| b.2 * l.price_f64).sum()
                }
                _ => (0..self.lines.len()).map(|k| f64::from(a.short[r][k]) * self.lines[k].price_f64).sum(),
            };
            let passes_from = if fills {
                None
            } else {
                alignment::earliest_passing_launch(cells, scenario, r as u16, floor, self.ends_at)
            };
            regions.push(pb::RegionAlignment {
                region_id: region_id.clone(),
                stores: self.stores_per_region[r],
                demand_units: t.demand.round() as i64,
                covered_units: t.covered.round() as i64,
                fill_rate: format_ratio(dec(fill)),
                coverage: format_ratio(dec(t.coverage())),
                short_skus: short.iter().take(50).map(|(k, _)| self.lines[*k].sku.clone()).collect(),
                short_sku_count: short.len() as u32,
                passes,
                passes_from: passes_from.map(|(at, _)| at.to_string()).unwrap_or_default(),
                revenue_at_risk: format_money(dec(revenue_at_risk)),
                short_units: short.iter().take(50).map(|(_, u)| u.ceil() as i64).collect(),
                stockout_probability: risk.map_or_else(String::new, |x| format_ratio(dec(x.share()))),
                expected_stockouts: risk.map_or_else(String::new, |x| format!("{:.1}", x.expected_stockouts)),
                riskiest_cells: risk
                    .map(|x| {
                        x.riskiest
                            .iter()
                            .map(|c| pb::StockoutRisk {
                                store_id: cells.store_of(c.cell).unwrap_or_default().to_owned(),
                                sku: self.lines[cells.sku[c.cell] as usize].sku.clone(),
                                probability: format_ratio(dec(c.probability)),
                                demand_units: format!("{:.1}", c.demand),
                                available_units: c.available.round() as i64,
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            });
            if passes {
                continue;
            }
            if let Some(x) = risk.filter(|_| too_risky && fills) {
                // Short of no stock on average but too likely to run out: drop the lines whose
                // cells are the likeliest to, until the region is under the ceiling.
                let (lines, resulting) = x.lines_to_drop(max_stockout_share);
                let (lost_revenue, lost_margin, resulting_fill) = self.drop_effect(a, r, &lines);
                options.push(pb::RemediationOption {
                    option_id: format!("{region_id}:drop-risky"),
                    region_id: region_id.clone(),
                    kind: "drop-short".into(),
                    description: format!(
                        "drop the {} likeliest to run out in {region_id} (expected stockouts {:.1}% → {:.1}% of cells)",
                        promo_workflows::decisions::plural(lines.len(), "SKU"),
                        100.0 * x.share(),
                        100.0 * resulting
                    ),
                    revenue_effect: format_money(dec(-lost_revenue)),
                    margin_effect: format_money(dec(-lost_margin)),
                    resulting_fill_rate: format_ratio(dec(resulting_fill)),
                    delay_until: None,
                    skus: lines.iter().map(|&k| self.lines[k].sku.clone()).collect(),
                    substitutes: vec![],
                });
                continue;
            }
            // Option 1: drop the short SKUs in this region.
            let short_lines: Vec<usize> = short.iter().map(|(k, _)| *k).collect();
            let (lost_revenue, lost_margin, resulting) = self.drop_effect(a, r, &short_lines);
            options.push(pb::RemediationOption {
                option_id: format!("{region_id}:drop-short"),
                region_id: region_id.clone(),
                kind: "drop-short".into(),
                description: format!(
                    "drop {} in {region_id} (narrower assortment)",
                    promo_workflows::decisions::plural(short.len(), "short SKU")
                ),
                revenue_effect: format_money(dec(-lost_revenue)),
                margin_effect: format_money(dec(-lost_margin)),
                resulting_fill_rate: format_ratio(dec(resulting)),
                delay_until: None,
                skus: short.iter().map(|(k, _)| self.lines[*k].sku.clone()).collect(),
                substitutes: vec![],
            });
            // Option 2: delay the region until inbound stock makes it pass.
            if let Some((at, f)) = passes_from {
                let launch = scenario.launch[r];
                let share = (at - launch) as f64 / (self.ends_at - launch).max(1) as f64;
                let region_revenue: f64 = (0..self.lines.len())
                    .map(|k| f64::from(a.demand[r][k] - a.short[r][k]) * self.lines[k].price_f64)
                    .sum();
                let region_margin: f64 = (0..self.lines.len())
                    .map(|k| f64::from(a.demand[r][k] - a.short[r][k]) * self.lines[k].unit_margin_f64)
                    .sum();
                options.push(pb::RemediationOption {
                    option_id: format!("{region_id}:delay"),
                    region_id: region_id.clone(),
                    kind: "delay".into(),
                    description: format!(
                        "delay {region_id} by {}, until inbound stock arrives",
                        promo_workflows::decisions::plural(
                            ((at - launch) as f64 / 86_400.0).round() as usize,
                            "day"
                        )
                    ),
                    revenue_effect: format_money(dec(-region_revenue * share)),
                    margin_effect: format_money(dec(-region_margin * share)),
                    resulting_fill_rate: format_ratio(dec(f)),
                    delay_until: ts(at),
                    skus: vec![],
                    substitutes: vec![],
                });
            }
        }
        InventoryAssessment { regions, options, positions_read: cells.len() as u64 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    async fn calls_until(fail_first: u32, code: Code) -> (Result<u32, Status>, u32) {
        let n = AtomicU32::new(0);
        let r = retry_transient(|| {
            let i = n.fetch_add(1, Ordering::SeqCst) + 1;
            async move { if i <= fail_first { Err(Status::new(code, "injected")) } else { Ok(i) } }
        })
        .await;
        (r, n.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn transient_failures_are_retried_in_place_then_handed_on() {
        let (r, n) = calls_until(2, Code::Unavailable).await;
        assert_eq!((r.unwrap(), n), (3, 3));
        assert_eq!(calls_until(CALL_ATTEMPTS - 1, Code::DeadlineExceeded).await.1, CALL_ATTEMPTS);
        let (r, n) = calls_until(u32::MAX, Code::Unavailable).await;
        assert_eq!((r.unwrap_err().code(), n), (Code::Unavailable, CALL_ATTEMPTS));
    }

    #[tokio::test]
    async fn business_refusals_are_not_retried() {
        let (r, n) = calls_until(u32::MAX, Code::NotFound).await;
        assert_eq!((r.unwrap_err().code(), n), (Code::NotFound, 1));
        let (r, n) = calls_until(u32::MAX, Code::InvalidArgument).await;
        assert_eq!((r.unwrap_err().code(), n), (Code::InvalidArgument, 1));
    }

    fn watch(open: &[&str], limit: Option<&str>) -> WatchInput {
        WatchInput {
            every: 86_400,
            until: 2_000_000,
            clock_origin: 1_000_000,
            time_scale: 43_200,
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

    /// The business clock of a watched round is the workflow's: origin + elapsed × scale.
    #[test]
    fn a_watched_round_reads_the_business_clock_from_server_time() {
        let input = watch(&[], None);
        let t = UNIX_EPOCH + Duration::from_secs(1_000_002);
        assert_eq!(business_instant(&input, t), 1_000_000 + 2 * 43_200);
        assert_eq!(business_time(0), "1970-01-01 00:00 UTC");
    }

    /// A stretch's end on the wall clock is the first server second whose business instant has
    /// reached it, so the workflow task after the stretch finds the stretch over.
    #[test]
    fn a_stretch_ends_on_the_first_server_second_past_its_business_end() {
        let input = watch(&[], None);
        for until in [1_000_000 + 43_200, 1_000_000 + 43_201, 1_500_000, 2_000_000] {
            let end = wall_instant(&input, until);
            let second = UNIX_EPOCH + Duration::from_secs(end.duration_since(UNIX_EPOCH).unwrap().as_secs());
            assert!(business_instant(&input, second) >= until, "{until}");
            assert!(business_instant(&input, second - Duration::from_secs(1)) < until, "{until}");
            assert_eq!(end.duration_since(second).unwrap(), WALL_MARGIN);
        }
    }

    #[test]
    fn jitter_stays_within_half_to_one_and_a_half() {
        for _ in 0..1000 {
            let d = jittered(Duration::from_millis(100));
            assert!((Duration::from_millis(50)..Duration::from_millis(150)).contains(&d), "{d:?}");
        }
    }
}
