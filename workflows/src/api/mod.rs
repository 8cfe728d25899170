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
    /// Query: `PromotionStatus`.
    pub const STATUS: &str = "status";
    /// Query: `AssessmentSummary`.
    pub const ASSESSMENT: &str = "assessment";
    /// Query: `AuditTrail`.
    pub const AUDIT: &str = "audit";
}

/// The eight messages a promotion accepts, each as a signal and as an update of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
}

impl MessageKind {
    /// Every message.
    pub const ALL: [MessageKind; 8] = [
        MessageKind::Approve,
        MessageKind::Reject,
        MessageKind::RequestChanges,
        MessageKind::ChooseRemediation,
        MessageKind::Cancel,
        MessageKind::Pause,
        MessageKind::Resume,
        MessageKind::Override,
    ];

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

/// The start input of a promotion: a `PromotionSpec`, or — when what was sent is not one — the
/// reason, naming the field. Deserializes from any JSON so that a start input of the wrong
/// shape ends the run with a clear `InvalidSpec` failure instead of failing every workflow task;
/// serializes as the spec.
#[derive(Debug, Clone, PartialEq)]
pub struct StartInput(pub Result<pb::PromotionSpec, String>);

impl From<pb::PromotionSpec> for StartInput {
    fn from(spec: pb::PromotionSpec) -> Self {
        Self(Ok(spec))
    }
}

impl Serialize for StartInput {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Ok(spec) => spec.serialize(s),
            Err(why) => s.serialize_str(why),
        }
    }
}

impl<'de> Deserialize<'de> for StartInput {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = serde_json::Value::deserialize(d)?;
        Ok(Self::parse(&raw))
    }
}

impl StartInput {
    /// Reads a spec from any JSON value; the error names the field that does not fit.
    pub fn parse(raw: &serde_json::Value) -> Self {
        if !raw.is_object() {
            let kind = match raw {
                serde_json::Value::Null => "null",
                serde_json::Value::Bool(_) => "a boolean",
                serde_json::Value::Number(_) => "a number",
                serde_json::Value::String(_) => "a string",
                serde_json::Value::Array(_) => "an array",
                serde_json::Value::Object(_) => "an object",
            };
            return Self(Err(format!(
                "the start input must be a promo.v1.PromotionSpec JSON object, not {kind}"
            )));
        }
        Self(serde_path_to_error::deserialize(raw).map_err(|e| {
            format!("the start input is not a promo.v1.PromotionSpec: {}: {}", e.path(), e.inner())
        }))
    }
}

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
