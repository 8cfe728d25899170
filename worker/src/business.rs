//! Business metrics beside the SDK's own on the worker's Prometheus endpoint, so an existing
//! Grafana can chart the portfolio (see `deploy/grafana/promotions.json`). Every round takes the
//! same snapshot the dashboard draws (visibility, the `status` query of each running promotion,
//! the process-event record) and sets:
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `promo_promotions` | `stage` | promotions per stage (finished ones as FINISHED, …) |
//! | `promo_open_exceptions` | `kind` | open exceptions of running promotions |
//! | `promo_revenue_at_risk` | `kind` | their revenue at risk, summed |
//! | `promo_exceptions_overdue` | `kind` | open exceptions older than the exception SLA |
//! | `promo_approvals_pending` | `role`, `sla` | pending approvals by role and SLA state (on time, reminder due, escalated) |
//! | `promo_business_metrics_problems` | | sources that could not be read in the last round |
//!
//! The figures are portfolio-wide, not per worker: with several workers, chart them with `max`
//! (the sample dashboard does), or turn the collector on in one of them only. A label set that
//! disappears is set to 0, so a cleared alert does not stay at its last value.

use promo_activities::Systems;
use promo_insight::{self as insight, Sla};
use rust_decimal::prelude::ToPrimitive;
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};
use temporalio_client::Client;
use temporalio_common::telemetry::metrics::{
    CoreMeter, Gauge, GaugeF64, MetricAttributes, MetricKeyValue, MetricParameters, NewAttributes,
};

/// One gauge and the label sets it has been given, so vanished ones can be zeroed.
struct Family<G> {
    gauge: G,
    labels: Vec<&'static str>,
    seen: BTreeSet<Vec<String>>,
}

impl<G> Family<G> {
    fn attrs(&self, meter: &dyn CoreMeter, values: &[String]) -> MetricAttributes {
        let kvs: Vec<MetricKeyValue> =
            self.labels.iter().zip(values).map(|(k, v)| MetricKeyValue::new(*k, v.clone())).collect();
        meter.new_attributes(NewAttributes::from(kvs))
    }
}

/// A gauge of either value type.
trait Record {
    type Value: Copy + Default;
    fn put(&self, v: Self::Value, attrs: &MetricAttributes);
}

impl Record for Gauge {
    type Value = u64;
    fn put(&self, v: u64, attrs: &MetricAttributes) {
        self.record(v, attrs);
    }
}

impl Record for GaugeF64 {
    type Value = f64;
    fn put(&self, v: f64, attrs: &MetricAttributes) {
        self.record(v, attrs);
    }
}

impl<G: Record> Family<G> {
    /// Sets every label set given, and 0 on those seen before and not given now.
    fn set_all(&mut self, meter: &dyn CoreMeter, values: BTreeMap<Vec<String>, G::Value>) {
        let gone: Vec<Vec<String>> = self.seen.iter().filter(|k| !values.contains_key(*k)).cloned().collect();
        for k in gone {
            self.gauge.put(G::Value::default(), &self.attrs(meter, &k));
        }
        for (k, v) in values {
            self.gauge.put(v, &self.attrs(meter, &k));
            self.seen.insert(k);
        }
    }
}

fn params(name: &'static str, description: &'static str) -> MetricParameters {
    MetricParameters::builder().name(name).description(description).build()
}

/// The business gauges on a meter.
pub struct BusinessMetrics {
    meter: Arc<dyn CoreMeter>,
    promotions: Family<Gauge>,
    exceptions: Family<Gauge>,
    at_risk: Family<GaugeF64>,
    overdue: Family<Gauge>,
    approvals: Family<Gauge>,
    problems: Gauge,
}

impl BusinessMetrics {
    /// Registers the gauges.
    pub fn new(meter: Arc<dyn CoreMeter>) -> Self {
        let family = |name, description, labels| Family {
            gauge: meter.gauge(params(name, description)),
            labels,
            seen: BTreeSet::new(),
        };
        Self {
            promotions: family("promo_promotions", "Promotions by stage.", vec!["stage"]),
            exceptions: family("promo_open_exceptions", "Open exceptions by kind.", vec!["kind"]),
            at_risk: Family {
                gauge: meter.gauge_f64(params(
                    "promo_revenue_at_risk",
                    "Revenue at risk of open exceptions, by kind (currency units).",
                )),
                labels: vec!["kind"],
                seen: BTreeSet::new(),
            },
            overdue: family(
                "promo_exceptions_overdue",
                "Open exceptions older than the exception SLA, by kind.",
                vec!["kind"],
            ),
            approvals: family(
                "promo_approvals_pending",
                "Pending approvals by role and SLA state.",
                vec!["role", "sla"],
            ),
            problems: meter.gauge(params(
                "promo_business_metrics_problems",
                "Sources the last round could not read (0 when all answered).",
            )),
            meter,
        }
    }

    /// Sets every gauge from one snapshot.
    pub fn set(&mut self, s: &insight::Snapshot, sla: &Sla) {
        let meter = self.meter.clone();
        let m = meter.as_ref();
        self.promotions
            .set_all(m, insight::by_stage(s).into_iter().map(|(stage, n)| (vec![stage], n as u64)).collect());
        let queue = insight::exception_queue(s, sla);
        let mut open: BTreeMap<Vec<String>, u64> = BTreeMap::new();
        let mut overdue: BTreeMap<Vec<String>, u64> = BTreeMap::new();
        let mut at_risk: BTreeMap<Vec<String>, f64> = BTreeMap::new();
        for q in &queue {
            let k = vec![q.kind.clone()];
            *open.entry(k.clone()).or_default() += 1;
            *at_risk.entry(k.clone()).or_default() += q.revenue_at_risk.to_f64().unwrap_or(0.0);
            // Every open kind has an overdue figure, 0 included, so an alert rule can watch it.
            *overdue.entry(k).or_default() += u64::from(q.overdue);
        }
        self.exceptions.set_all(m, open);
        self.overdue.set_all(m, overdue);
        self.at_risk.set_all(m, at_risk);
        let mut pending: BTreeMap<Vec<String>, u64> = BTreeMap::new();
        for p in insight::pending_approvals(s, sla) {
            *pending.entry(vec![p.role.clone(), p.sla.to_owned()]).or_default() += 1;
        }
        self.approvals.set_all(m, pending);
        self.problems.record(s.problems.len() as u64, &m.new_attributes(NewAttributes::from(vec![])));
    }
}

/// Sets the gauges every `every`, forever (a failed source shows in
/// `promo_business_metrics_problems` and is tried again next round).
pub async fn collect(meter: Arc<dyn CoreMeter>, client: Client, systems: Systems, sla: Sla, every: Duration) {
    let mut metrics = BusinessMetrics::new(meter);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let s = insight::snapshot(&client, Some(&systems), 1000, Duration::from_secs(10)).await;
        for p in &s.problems {
            tracing::warn!(problem = %p, "business metrics: a source could not be read");
        }
        metrics.set(&s, &sla);
    }
}
