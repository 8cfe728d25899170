//! A whole promotion environment for integration tests: an isolated Temporal dev server, the
//! reference systems over a fresh SQLite file (small dataset), and helpers to start promotions,
//! send messages and wait on conditions through the workflow's own queries.

use crate::{
    process::WorkerConfig,
    temporal::{DevServer, DevServerOptions, run_worker_until, start_dev_server_with},
};
use anyhow::{Context, anyhow};
use promo_activities::{PromotionActivities, Systems};
use promo_contracts::{
    promo::v1::{
        PromotionLine, PromotionResult, PromotionSpec, PromotionStatus, PromotionWindow,
        promotion_line::Offer,
    },
    retail::v1::{self as retail, Channel},
};
use promo_systems::{RunningSystems, Systems as Store, dataset::DatasetSpec};
use promo_workflows::{PromotionWorkflow, api, policy::Policy};
use std::{
    future::Future,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};
use temporalio_client::{
    Client, WorkflowGetResultOptions, WorkflowHandle, WorkflowQueryOptions, WorkflowStartOptions,
};
use temporalio_sdk::WorkerOptions;
use tonic::transport::Channel as Transport;

/// Business seconds per wall-clock second in tests: one business day passes in two seconds.
pub const TEST_TIME_SCALE: u32 = 43_200;

/// A policy for tests: the default thresholds and directory, time compressed.
pub fn test_policy() -> Policy {
    let mut p = Policy { time_scale: TEST_TIME_SCALE, ..Policy::default() };
    p.durations.ack_deadline = "6h".parse().expect("span");
    p.durations.approval_deadline_before_launch = "12h".parse().expect("span");
    p.durations.final_recheck_before_launch = "6h".parse().expect("span");
    // Unsigned decisions, said explicitly: most tests are about other things
    // (`tests/tests/compliance.rs` runs with signatures required).
    p.require_signatures = false;
    p
}

/// Unix seconds now.
pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Formats Unix seconds as a local UTC date-time for a spec window.
pub fn local(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0).expect("valid time").format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// A spec on the small dataset: `skus` (0-based product indexes) at 20% off, in `regions`,
/// starting `start_days` business days from now and lasting `days`.
pub fn spec(
    id: &str,
    regions: &[&str],
    skus: std::ops::Range<usize>,
    start_days: f64,
    days: f64,
) -> PromotionSpec {
    let start = now() + (start_days * 86_400.0) as i64;
    PromotionSpec {
        promotion_id: id.into(),
        name: format!("{id} test promotion"),
        window: Some(PromotionWindow {
            starts_at: local(start),
            ends_at: local(start + (days * 86_400.0) as i64),
            time_zone: "Etc/UTC".into(),
        }),
        regions: regions.iter().map(|r| (*r).to_owned()).collect(),
        stores: vec![],
        channels: vec![Channel::Pos as i32, Channel::StoreComms as i32],
        lines: skus
            .map(|i| PromotionLine {
                sku: DatasetSpec::sku(i),
                offer: Some(Offer::DiscountPercent("20".into())),
                funding_agreement_id: String::new(),
                planned_uplift: String::new(),
            })
            .collect(),
        planner_id: "E0042".into(),
        description: "integration test".into(),
    }
}

/// Worker options for the promotion task queue with real activities against `systems_url`.
pub fn worker_options(systems_url: &str, policy: &Policy) -> anyhow::Result<WorkerOptions> {
    let systems = Systems::new(systems_url)?;
    let max_cached = std::env::var("PROMO_MAX_CACHED_WORKFLOWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(promo_worker::DEFAULT_MAX_CACHED_WORKFLOWS);
    let max_local = std::env::var("PROMO_MAX_LOCAL_ACTIVITIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(promo_worker::DEFAULT_MAX_LOCAL_ACTIVITIES);
    promo_worker::worker_options(
        api::TASK_QUEUE,
        PromotionActivities::new(systems, policy.clone()),
        max_cached,
        max_local,
    )
}

/// Reference systems over a fresh SQLite file with the small dataset.
pub async fn small_systems() -> anyhow::Result<RunningSystems> {
    let dir = std::env::temp_dir().join(format!("promo-it-{}-{}", std::process::id(), now_nanos()));
    std::fs::create_dir_all(&dir)?;
    let store = Store::open(&dir.join("systems.db"), &DatasetSpec::small(), true, None)?;
    Ok(RunningSystems::start(store).await?)
}

/// Dev server + reference systems + a client.
pub struct PromoEnv {
    /// The Temporal dev server.
    pub dev: DevServer,
    /// A client of it.
    pub client: Client,
    /// The reference systems.
    pub systems: RunningSystems,
    /// The worker's policy.
    pub policy: Policy,
    /// Task queue of this environment.
    pub task_queue: String,
}

/// One method per reference-systems service: `name => module::Client;` makes
/// `async fn name(&self) -> anyhow::Result<Client>` over a new connection.
macro_rules! clients {
    ($($(#[$doc:meta])* $name:ident => $module:ident::$client:ident;)*) => {
        $(
            $(#[$doc])*
            pub async fn $name(&self) -> anyhow::Result<retail::$module::$client<Transport>> {
                self.connect(retail::$module::$client::new).await
            }
        )*
    };
}

impl PromoEnv {
    /// Starts everything with `policy` on the small dataset.
    pub async fn start(policy: Policy) -> anyhow::Result<Self> {
        Self::start_with(policy, DevServerOptions::default()).await
    }

    /// Starts everything as [`PromoEnv::start`] does, with the dev server started from
    /// `options` (e.g. over a database file, so that it can be restarted).
    pub async fn start_with(policy: Policy, options: DevServerOptions) -> anyhow::Result<Self> {
        let dev = start_dev_server_with(options).await?;
        let client = dev.client();
        let systems = small_systems().await?;
        Ok(Self { dev, client, systems, policy, task_queue: api::TASK_QUEUE.to_owned() })
    }

    /// This environment's scratch directory (where the systems database lives): a place for a
    /// dev server database file, worker logs and policy files.
    pub fn dir(&self) -> std::path::PathBuf {
        self.systems
            .systems
            .path()
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_else(std::env::temp_dir)
    }

    /// How to run a `promo-worker` process against this environment (see
    /// [`crate::process::WorkerProcess::spawn`]), logging under [`PromoEnv::dir`].
    pub fn worker_config(&self) -> WorkerConfig {
        WorkerConfig {
            temporal_address: self.dev.address(),
            systems_url: self.systems.url(),
            policy: self.policy.clone(),
            max_cached_workflows: None,
            dir: self.dir().join("worker"),
            extra_args: vec![],
            bin: None,
        }
    }

    /// Worker options with real activities against this environment's systems.
    pub fn worker_options(&self) -> anyhow::Result<WorkerOptions> {
        worker_options(&self.systems.url(), &self.policy)
    }

    /// Runs a worker while `fut` runs.
    pub async fn with_worker<F: Future>(&self, fut: F) -> anyhow::Result<F::Output> {
        run_worker_until(&self.client, self.worker_options()?, fut).await
    }

    /// Starts a promotion as `promo start` does ([`api::start_options`]: summary, details and
    /// the footprint memo).
    pub async fn start_promotion(&self, spec: PromotionSpec) -> anyhow::Result<()> {
        let options = api::start_options(&self.task_queue, &spec);
        self.start_promotion_with(spec, options).await
    }

    /// Starts a promotion with bare options, as another SDK or the `temporal` CLI would: no
    /// footprint memo, so collision checks must query it.
    pub async fn start_promotion_bare(&self, spec: PromotionSpec) -> anyhow::Result<()> {
        let options =
            WorkflowStartOptions::new(&self.task_queue, api::workflow_id(&spec.promotion_id)).build();
        self.start_promotion_with(spec, options).await
    }

    async fn start_promotion_with(
        &self,
        spec: PromotionSpec,
        options: WorkflowStartOptions,
    ) -> anyhow::Result<()> {
        let id = api::workflow_id(&spec.promotion_id);
        self.client
            .start_workflow(PromotionWorkflow::run, spec.into(), options)
            .await
            .with_context(|| format!("starting {id}"))?;
        Ok(())
    }

    /// A handle by promotion id.
    pub fn handle(&self, promotion_id: &str) -> WorkflowHandle<Client, PromotionWorkflow> {
        self.client.get_workflow_handle::<PromotionWorkflow>(api::workflow_id(promotion_id))
    }

    /// Polls the `status` query until `pred` holds (at most `limit`).
    pub async fn wait_status(
        &self,
        promotion_id: &str,
        what: &str,
        limit: Duration,
        pred: impl Fn(&PromotionStatus) -> bool,
    ) -> anyhow::Result<PromotionStatus> {
        let h = self.handle(promotion_id);
        let deadline = Instant::now() + limit;
        loop {
            let last = h.query(PromotionWorkflow::status, (), WorkflowQueryOptions::default()).await;
            if let Ok(s) = &last
                && pred(s)
            {
                return Ok(s.clone());
            }
            if Instant::now() > deadline {
                return Err(anyhow!(
                    "{promotion_id}: timed out after {limit:?} waiting for {what}; last status: {last:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The workflow result.
    pub async fn result(&self, promotion_id: &str) -> anyhow::Result<PromotionResult> {
        Ok(self.handle(promotion_id).get_result(WorkflowGetResultOptions::default()).await?)
    }
}

/// A decision message.
pub fn decision(
    approver: &str,
    role: promo_contracts::promo::v1::Role,
    comment: &str,
) -> promo_contracts::promo::v1::ApprovalDecision {
    promo_contracts::promo::v1::ApprovalDecision {
        approver_id: approver.into(),
        role: role as i32,
        revision: 0,
        comment: comment.into(),
        ..Default::default()
    }
}

/// A test approver's key pair (secret, public; base64), derived from `n`.
pub fn test_keys(n: u8) -> (String, String) {
    promo_workflows::signing::keypair_from_seed([n; 32])
}

/// A signature (and its time, Unix seconds) for a message to the promotion whose `status` is
/// given, as the CLI makes it: `message` is the message name (`approve`), `subject` what it is
/// about ([`promo_workflows::signing::subject`]), `role` the role decided in or "-".
#[allow(clippy::too_many_arguments)]
pub fn sign_message(
    status: &promo_contracts::promo::v1::PromotionStatus,
    message: &str,
    subject: &str,
    revision: u32,
    actor: &str,
    role: &str,
    comment: &str,
    secret: &str,
) -> (String, i64) {
    let signed_at = now();
    let workflow_id = promo_workflows::api::workflow_id(&status.promotion_id);
    let signed = promo_workflows::signing::Signed {
        workflow_id: &workflow_id,
        first_run_id: &status.first_run_id,
        message,
        subject,
        revision,
        actor,
        role,
        comment,
        signed_at,
    };
    (promo_workflows::signing::sign(secret, &signed.payload()).expect("a valid test key"), signed_at)
}

/// `approve` at the promotion's current revision, signed now with `secret` (base64) as the CLI
/// signs it, about what the promotion's status says the role decides now.
pub fn signed_decision(
    status: &promo_contracts::promo::v1::PromotionStatus,
    approver: &str,
    role: promo_contracts::promo::v1::Role,
    comment: &str,
    secret: &str,
) -> promo_contracts::promo::v1::ApprovalDecision {
    let subject =
        status.decision_subjects.get(role.as_str_name()).cloned().unwrap_or_else(|| "approval".into());
    let revision = status.revision;
    let (signature, signed_at) =
        sign_message(status, "approve", &subject, revision, approver, role.as_str_name(), comment, secret);
    promo_contracts::promo::v1::ApprovalDecision {
        revision,
        signature,
        signed_at,
        ..decision(approver, role, comment)
    }
}

impl PromoEnv {
    /// Sends the `approve` update; `Err` carries the workflow's refusal message.
    pub async fn approve(
        &self,
        id: &str,
        approver: &str,
        role: promo_contracts::promo::v1::Role,
    ) -> Result<String, String> {
        self.update(id, || PromotionWorkflow::approve, decision(approver, role, "ok")).await
    }

    /// Sends an operator's `cancel`, `pause` or `resume` (as E4001, unsigned) as an update.
    pub async fn operate(&self, id: &str, name: &str, reason: &str) -> Result<String, String> {
        let action = promo_contracts::promo::v1::OperatorAction {
            operator_id: "E4001".into(),
            reason: reason.into(),
            ..Default::default()
        };
        match name {
            "cancel" => self.update(id, || PromotionWorkflow::cancel, action).await,
            "pause" => self.update(id, || PromotionWorkflow::pause, action).await,
            "resume" => self.update(id, || PromotionWorkflow::resume, action).await,
            other => Err(format!("not an operator action: {other}")),
        }
    }

    /// Sends a `choose_remediation` update; the workflow's answer or refusal.
    pub async fn choose_remediation(
        &self,
        id: &str,
        choice: promo_contracts::promo::v1::RemediationChoice,
    ) -> Result<String, String> {
        self.update(id, || PromotionWorkflow::choose_remediation, choice).await
    }

    /// Sends a `request_changes` update; the workflow's answer or refusal.
    pub async fn request_changes(
        &self,
        id: &str,
        change: promo_contracts::promo::v1::ChangeRequest,
    ) -> Result<String, String> {
        self.update(id, || PromotionWorkflow::request_changes, change).await
    }

    /// Sends one of the workflow's updates (`update` names it); its answer or refusal.
    pub async fn update<U>(
        &self,
        id: &str,
        update: impl Fn() -> U,
        input: impl serde::Serialize,
    ) -> Result<String, String>
    where
        U: temporalio_common::UpdateDefinition<
                Workflow = <PromotionWorkflow as temporalio_common::HasWorkflowDefinition>::Run,
                Input = serde_json::Value,
                Output = promo_contracts::promo::v1::ActionResult,
            >,
    {
        let input = serde_json::to_value(input).unwrap();
        // One update id for every try: the server applies it once however often it is sent.
        let update_id = format!("test-{}", now_nanos());
        let mut tries = 0;
        loop {
            let o = temporalio_client::WorkflowExecuteUpdateOptions::builder()
                .update_id(update_id.clone())
                .build();
            match self.handle(id).execute_update(update(), input.clone(), o).await {
                // A server under load can lose an update it had not yet handed to the workflow
                // ("not found on server ... fixed by retries"): sent again, as clients should.
                Err(temporalio_client::errors::WorkflowUpdateError::NotFound(s)) if tries < 5 => {
                    tries += 1;
                    println!("{id}: update not found ({}), sent again", s.message());
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                r => return update_message(r),
            }
        }
    }

    /// Adds a fault rule to the reference systems; returns its id.
    pub async fn inject(&self, fault: promo_contracts::retail::v1::Fault) -> anyhow::Result<u64> {
        use promo_contracts::retail::v1::InjectFaultRequest;
        Ok(self
            .admin()
            .await?
            .inject_fault(InjectFaultRequest { fault: Some(fault) })
            .await?
            .into_inner()
            .fault_id)
    }

    /// Removes every fault rule.
    pub async fn clear_faults(&self) -> anyhow::Result<()> {
        self.admin().await?.clear_faults(promo_contracts::retail::v1::ClearFaultsRequest {}).await?;
        Ok(())
    }

    /// The audit trail.
    pub async fn audit(&self, id: &str) -> anyhow::Result<promo_contracts::promo::v1::AuditTrail> {
        Ok(self.handle(id).query(PromotionWorkflow::audit, (), WorkflowQueryOptions::default()).await?)
    }

    clients! {
        /// A client of the reference systems' admin service.
        admin => admin_service_client::AdminServiceClient;
        /// A client of the reference systems' process-event record (analytics service).
        events => process_event_service_client::ProcessEventServiceClient;
        /// A client of the reference systems' publication service.
        publications => publication_service_client::PublicationServiceClient;
        /// A client of the reference systems' funding (trade-terms) service.
        funding => funding_service_client::FundingServiceClient;
        /// A client of the reference systems' price service.
        prices => price_service_client::PriceServiceClient;
    }

    /// A client of one of the reference systems' services, over a new connection.
    async fn connect<C>(&self, new: fn(Transport) -> C) -> anyhow::Result<C> {
        Ok(new(Transport::from_shared(self.systems.url())?.connect().await?))
    }

    /// Makes `channel` in `region` never acknowledge a publication from now on.
    pub async fn never_acknowledges(&self, channel: Channel, region: &str) -> anyhow::Result<()> {
        use promo_contracts::retail::v1::{Fault, InjectFaultRequest};
        let fault = Fault {
            service: "publication".into(),
            channel: channel as i32,
            region_id: region.into(),
            ack_never: true,
            ..Default::default()
        };
        self.admin().await?.inject_fault(InjectFaultRequest { fault: Some(fault) }).await?;
        Ok(())
    }

    /// Starts counting the calls of `service`.`method` in the reference systems: a fault rule
    /// with no effect, whose hits are the count. Returns the rule's id for [`Self::calls`].
    pub async fn count_calls(&self, service: &str, method: &str) -> anyhow::Result<u64> {
        let fault = promo_contracts::retail::v1::Fault {
            service: service.into(),
            method: method.into(),
            ..Default::default()
        };
        self.inject(fault).await
    }

    /// The calls a rule from [`Self::count_calls`] has seen so far.
    pub async fn calls(&self, rule: u64) -> anyhow::Result<u32> {
        let faults = self
            .admin()
            .await?
            .list_faults(promo_contracts::retail::v1::ListFaultsRequest {})
            .await?
            .into_inner()
            .faults;
        faults
            .iter()
            .find(|f| f.fault_id == rule)
            .map(|f| f.hits)
            .ok_or_else(|| anyhow::anyhow!("no fault rule {rule}"))
    }

    /// The promotion's price changes, as the ERP holds them now.
    pub async fn price_changes(&self, id: &str) -> anyhow::Result<Vec<retail::PriceChange>> {
        let request = retail::ListPriceChangesRequest { promotion_id: id.into(), ..Default::default() };
        Ok(self.prices().await?.list_price_changes(request).await?.into_inner().price_changes)
    }

    /// The promotion's publications, as the channels hold them now.
    pub async fn publications_of(&self, id: &str) -> anyhow::Result<Vec<retail::Publication>> {
        let request = retail::ListPublicationsRequest { promotion_id: id.into() };
        Ok(self.publications().await?.list_publications(request).await?.into_inner().publications)
    }
}

/// Where recorded histories live: `tests/histories/`, one folder per lifecycle version
/// (`v1/`, …), so that retiring a version deletes its folder.
pub fn histories_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("histories")
}

/// The folder of a version's histories.
pub fn version_histories_dir(v: promo_workflows::version::Version) -> std::path::PathBuf {
    histories_dir().join(format!("v{}", v.number()))
}

impl PromoEnv {
    /// The promotion's whole history, as the server holds it now.
    pub async fn history(
        &self,
        promotion_id: &str,
    ) -> anyhow::Result<Vec<temporalio_common::protos::temporal::api::history::v1::HistoryEvent>> {
        Ok(self
            .handle(promotion_id)
            .fetch_history(temporalio_client::WorkflowFetchHistoryOptions::default())
            .into_events()
            .await?)
    }

    /// Waits until `region` of the promotion is live.
    pub async fn region_live(&self, id: &str, region: &str) -> PromotionStatus {
        self.wait_status(id, &format!("{region} live"), Duration::from_secs(60), |s| {
            s.regions.iter().any(|r| {
                r.region_id == region && r.state() == promo_contracts::promo::v1::RegionState::Active
            })
        })
        .await
        .unwrap()
    }

    /// Starts the promotion, approves it as merchandising (E1001, enough for a one-region
    /// promotion of the test catalogue) and waits until `region` is live.
    pub async fn launch(&self, spec: PromotionSpec, region: &str) -> PromotionStatus {
        let id = spec.promotion_id.clone();
        self.start_promotion(spec).await.unwrap();
        self.wait_status(&id, "approval", Duration::from_secs(60), |s| {
            s.stage() == promo_contracts::promo::v1::Stage::Approval
        })
        .await
        .unwrap();
        self.approve(&id, "E1001", promo_contracts::promo::v1::Role::Merchandising).await.unwrap();
        self.region_live(&id, region).await
    }

    /// Waits for the promotion's result; returns it with the audit trail's tail, after
    /// recording the history as `name` ([`Self::record_history`]).
    pub async fn finish(
        &self,
        promotion_id: &str,
        name: &str,
    ) -> (PromotionResult, promo_contracts::promo::v1::AuditTrail) {
        let result = self.result(promotion_id).await.unwrap();
        let trail = self.audit(promotion_id).await.unwrap();
        self.record_history(promotion_id, name).await.unwrap();
        (result, trail)
    }

    /// With `PROMO_RECORD_HISTORIES=1`, saves the promotion's history as
    /// `tests/histories/v<current version>/<name>.json` for the replay tests (run when a new
    /// version is made, then commit the files).
    pub async fn record_history(&self, promotion_id: &str, name: &str) -> anyhow::Result<()> {
        if std::env::var("PROMO_RECORD_HISTORIES").as_deref() != Ok("1") {
            return Ok(());
        }
        let json = self
            .handle(promotion_id)
            .fetch_history(temporalio_client::WorkflowFetchHistoryOptions::default())
            .to_json()
            .await?;
        let dir = version_histories_dir(promo_workflows::version::Version::CURRENT);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("{name}.json")), json)?;
        Ok(())
    }
}

/// The message of an accepted update, or the refusal the workflow gave.
pub fn update_message(
    r: Result<promo_contracts::promo::v1::ActionResult, temporalio_client::errors::WorkflowUpdateError>,
) -> Result<String, String> {
    match r {
        Ok(a) => Ok(a.message),
        Err(temporalio_client::errors::WorkflowUpdateError::Failed(f)) => Err(f.message.clone()),
        Err(temporalio_client::errors::WorkflowUpdateError::NotFound(s)) => {
            Err(format!("update error: Workflow not found ({})", s.message()))
        }
        Err(e) => Err(format!("update error: {e}")),
    }
}

fn now_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}
