//! The contract of the promotion workflow: task queue, workflow id, message names, search
//! attributes, and the activities it calls ([`activities`]: declared here, implemented in
//! `promo-activities`).
//!
//! Other Temporal clients (the `temporal` CLI, any SDK) can drive a promotion with these names
//! and the proto3-JSON messages of `promo.v1`.

mod activities;

pub use activities::*;
use promo_contracts::promo::v1 as pb;
use serde::{Deserialize, Serialize};
use temporalio_common::search_attributes::SearchAttributeKey;

/// Task queue the worker polls.
pub const TASK_QUEUE: &str = "promotions";
/// Workflow type name.
pub const WORKFLOW_TYPE: &str = "PromotionWorkflow";

/// The visibility query of promotions: their current runs only. A promotion's run continues as
/// new when its history is long; the runs it handed over stay in visibility, closed with status
/// ContinuedAsNew and the search attributes they had then, and would show it twice (and stale).
pub const PROMOTIONS_QUERY: &str =
    "WorkflowType = 'PromotionWorkflow' AND ExecutionStatus != 'ContinuedAsNew'";

/// Workflow id of a promotion: the business key makes starts idempotent.
pub fn workflow_id(promotion_id: &str) -> String {
    format!("promotion-{promotion_id}")
}

/// Start options for a promotion: its business-key workflow id, refused while that promotion runs
/// or after it ran to an outcome (a failed start, e.g. an invalid spec, may be resubmitted), with
/// a readable summary and details for the Web UI.
pub fn start_options(task_queue: &str, spec: &pb::PromotionSpec) -> temporalio_client::WorkflowStartOptions {
    use temporalio_client::WorkflowIdReusePolicy;
    temporalio_client::WorkflowStartOptions::new(task_queue, workflow_id(&spec.promotion_id))
        .id_reuse_policy(WorkflowIdReusePolicy::AllowDuplicateFailedOnly)
        .static_summary(crate::summary::summary(spec))
        .static_details(crate::summary::details(spec))
        .build()
}

/// Signal and update names (each message is accepted as both).
pub mod names {
    /// Approve (`ApprovalDecision`).
    pub const APPROVE: &str = "approve";
    /// Reject (`ApprovalDecision`).
    pub const REJECT: &str = "reject";
    /// Request changes with an amended spec (`ChangeRequest`).
    pub const REQUEST_CHANGES: &str = "request_changes";
    /// Choose a remediation option (`RemediationChoice`).
    pub const CHOOSE_REMEDIATION: &str = "choose_remediation";
    /// Cancel (`OperatorAction`).
    pub const CANCEL: &str = "cancel";
    /// Pause (`OperatorAction`).
    pub const PAUSE: &str = "pause";
    /// Resume (`OperatorAction`).
    pub const RESUME: &str = "resume";
    /// Override a stuck gate (`GateOverride`).
    pub const OVERRIDE: &str = "override";
    /// Decide a blocked compensation: retry, or accept what was undone by hand
    /// (`CompensationDecision`).
    pub const RESOLVE_COMPENSATION: &str = "resolve_compensation";
    /// Query: `PromotionStatus`.
    pub const STATUS: &str = "status";
    /// Query: `AssessmentSummary`.
    pub const ASSESSMENT: &str = "assessment";
    /// Query: `AuditTrail`.
    pub const AUDIT: &str = "audit";
}

/// The nine messages a promotion accepts, each as a signal and as an update of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageKind {
    /// `approve` (`ApprovalDecision`).
    Approve,
    /// `reject` (`ApprovalDecision`).
    Reject,
    /// `request_changes` (`ChangeRequest`).
    RequestChanges,
    /// `choose_remediation` (`RemediationChoice`).
    ChooseRemediation,
    /// `cancel` (`OperatorAction`).
    Cancel,
    /// `pause` (`OperatorAction`).
    Pause,
    /// `resume` (`OperatorAction`).
    Resume,
    /// `override` (`GateOverride`).
    Override,
    /// `resolve_compensation` (`CompensationDecision`).
    ResolveCompensation,
}

impl MessageKind {
    /// Every message.
    pub const ALL: [MessageKind; 9] = [
        MessageKind::Approve,
        MessageKind::Reject,
        MessageKind::RequestChanges,
        MessageKind::ChooseRemediation,
        MessageKind::Cancel,
        MessageKind::Pause,
        MessageKind::Resume,
        MessageKind::Override,
        MessageKind::ResolveCompensation,
    ];

    /// The audit trail's action names of the messages applied (`approve` also for supply
    /// chain's transfers and finance's funding release; `remediation-chosen` for a choice).
    pub const APPLIED_ACTIONS: [&'static str; 9] = [
        "approve",
        "reject",
        "request-changes",
        "remediation-chosen",
        "cancel",
        "pause",
        "resume",
        "override",
        "resolve-compensation",
    ];

    /// Whether an audit entry's action is a message applied (what `promo audit --verify`
    /// expects to be signed).
    pub fn applied_action(action: &str) -> bool {
        Self::APPLIED_ACTIONS.contains(&action)
    }

    /// The signal and update name.
    pub fn name(self) -> &'static str {
        match self {
            MessageKind::Approve => names::APPROVE,
            MessageKind::Reject => names::REJECT,
            MessageKind::RequestChanges => names::REQUEST_CHANGES,
            MessageKind::ChooseRemediation => names::CHOOSE_REMEDIATION,
            MessageKind::Cancel => names::CANCEL,
            MessageKind::Pause => names::PAUSE,
            MessageKind::Resume => names::RESUME,
            MessageKind::Override => names::OVERRIDE,
            MessageKind::ResolveCompensation => names::RESOLVE_COMPENSATION,
        }
    }
}

/// `PromotionId` (Keyword).
pub const PROMOTION_ID: SearchAttributeKey<String> = SearchAttributeKey::keyword("PromotionId");
/// `PromotionStage` (Keyword): the stage name without the `STAGE_` prefix, e.g. `APPROVAL`.
pub const PROMOTION_STAGE: SearchAttributeKey<String> = SearchAttributeKey::keyword("PromotionStage");
/// `PromotionRegions` (KeywordList).
pub const PROMOTION_REGIONS: SearchAttributeKey<Vec<String>> =
    SearchAttributeKey::keyword_list("PromotionRegions");
/// `PromotionRisk` (Keyword): `low`, `medium`, `high`.
pub const PROMOTION_RISK: SearchAttributeKey<String> = SearchAttributeKey::keyword("PromotionRisk");
/// `PendingApprovals` (KeywordList): roles still to approve, e.g. `FINANCE`.
pub const PENDING_APPROVALS: SearchAttributeKey<Vec<String>> =
    SearchAttributeKey::keyword_list("PendingApprovals");
/// `OpenExceptions` (Int).
pub const OPEN_EXCEPTIONS: SearchAttributeKey<i64> = SearchAttributeKey::int("OpenExceptions");
/// `LaunchAt` (Datetime).
pub const LAUNCH_AT: SearchAttributeKey<temporalio_common::search_attributes::Timestamp> =
    SearchAttributeKey::datetime("LaunchAt");

/// `PromotionRevision` (Int): the revision in progress, set with the workflow's search attributes
/// at every stage; absent (meaning 1) only before its first workflow task has run.
pub const PROMOTION_REVISION: SearchAttributeKey<i64> = SearchAttributeKey::int("PromotionRevision");

/// Every custom search attribute with its type name, for server registration.
pub const SEARCH_ATTRIBUTES: &[(&str, &str)] = &[
    ("PromotionId", "Keyword"),
    ("PromotionStage", "Keyword"),
    ("PromotionRegions", "KeywordList"),
    ("PromotionRisk", "Keyword"),
    ("PendingApprovals", "KeywordList"),
    ("OpenExceptions", "Int"),
    ("LaunchAt", "Datetime"),
    ("PromotionRevision", "Int"),
];

/// Connects to Temporal the way the `temporal` CLI does: `TEMPORAL_ADDRESS`,
/// `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`, `TEMPORAL_TLS*`, `TEMPORAL_PROFILE` and the
/// `temporal.toml` config file (`TEMPORAL_CONFIG_FILE`); defaults to `localhost:7233`, namespace
/// `default`. `identity` names this process in the Web UI. Payloads go through
/// [`crate::codec::data_converter`].
pub async fn connect(identity: &str) -> Result<temporalio_client::Client, ConnectError> {
    use temporalio_client::{Client, ClientOptions, envconfig::LoadClientConfigProfileOptions};
    let (mut conn, opts) = ClientOptions::load_from_config(LoadClientConfigProfileOptions::default())
        .map_err(|e| ConnectError::Config(e.to_string()))?;
    conn.identity = identity.to_owned();
    let mut opts = opts;
    opts.data_converter = crate::codec::data_converter();
    let target = conn.target.to_string();
    Client::connect(conn, opts).await.map_err(|e| ConnectError::Unreachable { target, detail: e.to_string() })
}

/// Why [`connect`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The env config (variables, `temporal.toml`) does not make a connection.
    #[error("Temporal connection config: {0}")]
    Config(String),
    /// Nothing answered at the address.
    #[error(
        "cannot reach Temporal at {target}: {detail} (set TEMPORAL_ADDRESS or start a server: make demo \
         starts one)"
    )]
    Unreachable {
        /// The address tried.
        target: String,
        /// What the connection said.
        detail: String,
    },
}
