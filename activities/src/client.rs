//! The connection to the retail integration services (the gRPC contracts of `proto/retail/v1`)
//! and how a call to them fails: transient failures (unreachable, overloaded, timed out) are
//! retried in place with jittered exponential backoff, so one flaky call does not throw away an
//! activity's other calls; what is still failing then is left to the activity's retry policy;
//! business refusals (unknown SKU, invalid request) are non-retryable failures with the
//! service's reason.

use backon::{ExponentialBuilder, Retryable};
use promo_contracts::retail::v1::*;
use std::time::Duration;
use temporalio_sdk::{ApplicationFailure, activities::ActivityError};
use tonic::{Code, Status, transport::Channel as Conn};

/// Why a connection to the systems cannot be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SystemsError {
    /// The address does not parse, or does not fit the TLS settings.
    #[error("systems address {url:?}: {detail}")]
    Address {
        /// The address given.
        url: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The TLS settings are refused.
    #[error("systems TLS for {url:?}: {detail}")]
    Tls {
        /// The address given.
        url: String,
        /// What is wrong.
        detail: String,
    },
    /// A certificate or key file cannot be read.
    #[error("{what}: cannot read {path}: {detail}")]
    Unreadable {
        /// Which setting.
        what: &'static str,
        /// The file.
        path: String,
        /// The reason.
        detail: String,
    },
    /// A client certificate without its key, or the reverse.
    #[error("systems mutual TLS needs both a client certificate and its key")]
    IncompleteIdentity,
}

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
    ) -> Result<Option<Self>, SystemsError> {
        let read = |what: &'static str, p: &std::path::Path| {
            std::fs::read(p).map_err(|e| SystemsError::Unreadable {
                what,
                path: p.display().to_string(),
                detail: e.to_string(),
            })
        };
        let identity = match (cert, key) {
            (Some(c), Some(k)) => {
                Some((read("systems client certificate", c)?, read("systems client key", k)?))
            }
            (None, None) => None,
            _ => return Err(SystemsError::IncompleteIdentity),
        };
        let ca_pem = ca.map(|p| read("systems CA certificate", p)).transpose()?;
        let domain = domain.filter(|d| !d.is_empty()).map(str::to_owned);
        if ca_pem.is_none() && identity.is_none() && domain.is_none() {
            return Ok(None);
        }
        Ok(Some(Self { ca_pem, identity, domain }))
    }

    /// [`SystemsTls::from_paths`] from the [`SystemsTls::ENV`] variables.
    pub fn from_env() -> Result<Option<Self>, SystemsError> {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(std::path::PathBuf::from);
        let [ca, cert, key, domain] = Self::ENV.map(var);
        let domain = domain.map(|d| d.to_string_lossy().into_owned());
        Self::from_paths(ca.as_deref(), cert.as_deref(), key.as_deref(), domain.as_deref())
    }
}

impl Systems {
    /// A lazily connecting channel to `url` (e.g. `http://127.0.0.1:50051`); `https` URLs use
    /// TLS with the system roots.
    pub fn new(url: &str) -> Result<Self, SystemsError> {
        Self::with_tls(url, None)
    }

    /// As [`Systems::new`], with TLS configured by `tls`; TLS settings with a plain `http` URL
    /// are refused rather than silently ignored.
    pub fn with_tls(url: &str, tls: Option<&SystemsTls>) -> Result<Self, SystemsError> {
        let address = |detail: String| SystemsError::Address { url: url.to_owned(), detail };
        if tls.is_some() && !url.starts_with("https://") {
            return Err(address("TLS settings are set, so the address must start with https://".into()));
        }
        let mut endpoint = Conn::from_shared(url.to_owned())
            .map_err(|e| address(e.to_string()))?
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
            endpoint = endpoint
                .tls_config(config)
                .map_err(|e| SystemsError::Tls { url: url.to_owned(), detail: e.to_string() })?;
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
    /// The key directory (signing-key revocations).
    pub fn directory(&self) -> directory_service_client::DirectoryServiceClient<Conn> {
        directory_service_client::DirectoryServiceClient::new(self.conn.clone())
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
/// [`CALL_ATTEMPTS`] times with jittered exponential backoff (from 50 ms, doubling, capped at
/// 2 s), so that calls failing together do not retry together. Business refusals and the last
/// transient failure are returned as they are.
pub async fn retry_transient<T, Fut>(f: impl FnMut() -> Fut) -> Result<T, Status>
where
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_factor(2.0)
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(CALL_ATTEMPTS as usize - 1)
        .with_jitter();
    f.retry(backoff).sleep(tokio::time::sleep).when(is_transient).await
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

/// What an activity error says, for a result that carries it instead of failing.
pub(crate) fn error_text(e: &ActivityError) -> String {
    match e {
        ActivityError::Application(f) => f.to_string(),
        other => format!("{other:?}"),
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
}
