//! `promo-worker`: polls Temporal for promotion workflows and runs their activities.
//!
//! The Temporal connection comes from Temporal's own env config (`TEMPORAL_ADDRESS`,
//! `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`, `TEMPORAL_TLS*`, `temporal.toml` profiles), exactly as
//! for the `temporal` CLI. Everything else is a flag or a `PROMO_…` variable.

use clap::Parser;
use std::{net::SocketAddr, path::PathBuf};

/// The promotion lifecycle worker.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Retail integration services (the gRPC contracts of proto/retail/v1).
    #[arg(long, env = "PROMO_SYSTEMS_ADDR", default_value = "http://127.0.0.1:50051")]
    systems: String,
    /// Policy file (TOML, see config/policy.toml); built-in defaults when unset.
    #[arg(long, env = "PROMO_POLICY")]
    policy: Option<PathBuf>,
    /// Task queue.
    #[arg(long, env = "PROMO_TASK_QUEUE", default_value = promo_workflows::api::TASK_QUEUE)]
    task_queue: String,
    /// Serve Prometheus metrics on this address ("off" to disable).
    #[arg(long, env = "PROMO_METRICS_ADDR", default_value = "127.0.0.1:9464")]
    metrics: String,
    /// How often to refresh the business gauges (promo_promotions, promo_open_exceptions,
    /// promo_revenue_at_risk, …) on the metrics endpoint, e.g. 30s; "off" leaves them out.
    #[arg(long, env = "PROMO_BUSINESS_METRICS_EVERY", default_value = "30s")]
    business_metrics_every: String,
    /// Age at which an open exception counts as overdue in the business gauges (e.g. 4h).
    #[arg(long, env = "PROMO_EXCEPTION_SLA", default_value = "4h")]
    exception_sla: String,
    /// Most promotions kept in the worker's cache (evicted ones replay on their next task).
    #[arg(long, env = "PROMO_MAX_CACHED_WORKFLOWS", default_value_t = promo_worker::DEFAULT_MAX_CACHED_WORKFLOWS)]
    max_cached_workflows: usize,
    /// Most local activities (assessments, reads, short writes) running at once in this worker.
    #[arg(long, env = "PROMO_MAX_LOCAL_ACTIVITIES", default_value_t = promo_worker::DEFAULT_MAX_LOCAL_ACTIVITIES)]
    max_local_activities: usize,
    /// Replay the histories of this many recent promotions before polling; refuse to start if
    /// any does not replay (0 disables).
    #[arg(long, env = "PROMO_VERIFY", default_value_t = 0)]
    verify: usize,
    /// Log format: "text" or "json".
    #[arg(long, env = "PROMO_LOG_FORMAT", default_value = "text")]
    log_format: String,
    /// PEM CA to trust for the systems' TLS certificate (an https --systems address; the
    /// system roots when unset).
    #[arg(long, env = "PROMO_SYSTEMS_CA_CERT")]
    systems_ca_cert: Option<PathBuf>,
    /// PEM client certificate for mutual TLS toward the systems; needs --systems-client-key.
    #[arg(long, env = "PROMO_SYSTEMS_CLIENT_CERT", requires = "systems_client_key")]
    systems_client_cert: Option<PathBuf>,
    /// PEM key of --systems-client-cert.
    #[arg(long, env = "PROMO_SYSTEMS_CLIENT_KEY", requires = "systems_client_cert")]
    systems_client_key: Option<PathBuf>,
    /// Server name to verify in the systems' certificate instead of the address's host.
    #[arg(long, env = "PROMO_SYSTEMS_TLS_DOMAIN")]
    systems_tls_domain: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    match args.log_format.as_str() {
        "json" => tracing_subscriber::fmt().json().with_env_filter(filter).init(),
        "text" => tracing_subscriber::fmt().with_env_filter(filter).init(),
        other => anyhow::bail!("--log-format: {other:?} is not \"text\" or \"json\""),
    }
    let metrics = match args.metrics.as_str() {
        "off" | "" => None,
        a => Some(a.parse::<SocketAddr>().map_err(|e| anyhow::anyhow!("--metrics: {a:?}: {e}"))?),
    };
    let span = |flag: &str, v: &str| {
        v.parse::<promo_workflows::policy::Span>()
            .map(|s| s.0)
            .map_err(|e| anyhow::anyhow!("--{flag}: {v:?}: {e}"))
    };
    let business_metrics_every = match args.business_metrics_every.as_str() {
        "off" | "" => None,
        v => Some(span("business-metrics-every", v)?.max(std::time::Duration::from_secs(1))),
    };
    let exception_sla = span("exception-sla", &args.exception_sla)?;
    let systems_tls = promo_activities::SystemsTls::from_paths(
        args.systems_ca_cert.as_deref(),
        args.systems_client_cert.as_deref(),
        args.systems_client_key.as_deref(),
        args.systems_tls_domain.as_deref(),
    )?;
    let settings = promo_worker::Settings {
        systems: args.systems,
        systems_tls,
        policy: promo_worker::load_policy(args.policy.as_deref())?,
        task_queue: args.task_queue,
        metrics,
        business_metrics_every,
        exception_sla,
        verify: args.verify,
        max_cached_workflows: args.max_cached_workflows,
        max_local_activities: args.max_local_activities,
    };
    promo_worker::run(settings).await
}
