//! The command line (clap derive): parsing only, no I/O. [`crate::run`] applies it.

use clap::{Args, Parser, Subcommand, ValueEnum};
use promo_contracts::promo::v1::{Role, Stage};
use std::path::PathBuf;

/// Default address of the retail integration services (same as the worker's).
pub const DEFAULT_SYSTEMS_ADDR: &str = "http://127.0.0.1:50051";

/// `promo`: start, approve and inspect promotions run by the promotion worker on Temporal.
///
/// The Temporal connection comes from Temporal's own environment configuration, like the
/// `temporal` CLI: TEMPORAL_ADDRESS (default localhost:7233), TEMPORAL_NAMESPACE, TEMPORAL_API_KEY,
/// TEMPORAL_TLS*, TEMPORAL_PROFILE and the temporal.toml config file.
#[derive(Debug, Parser)]
#[command(name = "promo", version, propagate_version = true)]
pub struct Cli {
    /// Print machine-readable JSON (proto3 JSON for workflow messages) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Seconds to wait for the workflow to answer a query or an update (a worker must be running).
    #[arg(long, global = true, value_name = "SECONDS", env = "PROMO_TIMEOUT", default_value_t = 30)]
    pub timeout: u64,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a spec file and start its promotion workflow.
    Start(StartArgs),
    /// Stage, risk, timeline, approvals, open exceptions and per-region readiness.
    Status(IdArgs),
    /// Approve the current revision in a role.
    Approve(DecisionArgs),
    /// Reject the promotion (ends it as REJECTED).
    Reject(DecisionArgs),
    /// Request changes with an amended spec (starts a new revision).
    RequestChanges(ChangeArgs),
    /// Choose a remediation option for a failing region.
    ChooseRemediation(RemediationArgs),
    /// Cancel the promotion; everything done so far is compensated.
    Cancel(OperatorArgs),
    /// Pause: no region activates and monitoring stops until resumed.
    Pause(OperatorArgs),
    /// Resume after a pause.
    Resume(OperatorArgs),
    /// Open a stuck launch gate (missing acknowledgments) for a region or the whole promotion.
    Override(OverrideArgs),
    /// Decide a compensation a system refused for good (COMPENSATION_BLOCKED): retry it once the
    /// system is fixed, or accept once the items were undone by hand (the promotion checks).
    ResolveCompensation(CompensationArgs),
    /// List promotions from Temporal visibility (search attributes).
    List(ListArgs),
    /// The post-event report (waits for the promotion to end unless --no-wait).
    Report(ReportArgs),
    /// The audit trail: every decision, refusal, override and system action.
    Audit(AuditArgs),
    /// Make an approver's Ed25519 key pair: the secret key to a file (mode 0600), the public key
    /// printed as the line to add to the policy's [approver_keys].
    Keygen(KeygenArgs),
    /// Revoke a signing key in the key directory: every running promotion refuses a message
    /// signed with it from then on (it asks the directory at each message).
    RevokeKey(RevokeKeyArgs),
    /// Open exceptions of every running promotion, ranked by revenue at risk, with owner, age
    /// and whether they are past the exception SLA.
    Exceptions(ExceptionsArgs),
    /// Serve the operations dashboard on localhost: promotions by stage, approvals pending with
    /// their SLA, the exception queue by revenue at risk, regional readiness, cycle times,
    /// approval bottlenecks and post-event KPIs, refreshed live. It is also the codec server of
    /// large (compressed) payloads: `/codec` for the Web UI's `--ui-codec-endpoint` and the
    /// `temporal` CLI's `--codec-endpoint`.
    Dashboard(DashboardArgs),
    /// Answer a question in plain words ("which promotions are waiting on finance?", "what is
    /// stuck in R3?", "revenue at risk this week?", "why is SPRING-26 delayed?", "how long do
    /// finance approvals take?"), naming the source of the answer.
    Ask(AskArgs),
}

/// Where the portfolio views read from, and their thresholds.
#[derive(Debug, Args)]
pub struct InsightArgs {
    /// The analytics service holding the process-event record (the retail systems by default).
    #[arg(long, value_name = "URL", env = "PROMO_SYSTEMS_ADDR", default_value = DEFAULT_SYSTEMS_ADDR)]
    pub systems: String,
    /// The policy whose approval reminder and escalation times flag pending approvals.
    #[arg(long, value_name = "FILE", env = "PROMO_POLICY", default_value = "config/policy.toml")]
    pub policy: PathBuf,
    /// Age at which an open exception is flagged overdue (e.g. 30m, 4h, 2d).
    #[arg(long, value_name = "DURATION", default_value = "4h")]
    pub exception_sla: String,
}

/// `promo dashboard`.
#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Address to serve on.
    #[arg(long, value_name = "ADDR", env = "PROMO_DASHBOARD_ADDR", default_value = "127.0.0.1:8090")]
    pub listen: String,
    /// The Temporal Web UI each promotion links to.
    #[arg(long, value_name = "URL", env = "PROMO_WEB_UI", default_value = "http://localhost:8233")]
    pub web_ui: String,
    /// Seconds between reloads of the page.
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    pub refresh: u64,
    /// Sources and thresholds.
    #[command(flatten)]
    pub insight: InsightArgs,
}

/// `promo exceptions`.
#[derive(Debug, Args)]
pub struct ExceptionsArgs {
    /// Show at most this many (the highest revenue at risk first).
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: usize,
    /// Only exceptions owned by this role (finance, merchandising, supply-chain, operations).
    #[arg(long, value_name = "ROLE")]
    pub owner: Option<String>,
    /// Sources and thresholds.
    #[command(flatten)]
    pub insight: InsightArgs,
}

/// `promo ask`.
#[derive(Debug, Args)]
pub struct AskArgs {
    /// The question, in quotes.
    pub question: Vec<String>,
    /// Sources and thresholds.
    #[command(flatten)]
    pub insight: InsightArgs,
}

/// `promo audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Promotion id.
    pub id: String,
    /// The whole trail: the entries older than the workflow's latest few hundred are paged from
    /// the process-event record.
    #[arg(long)]
    pub all: bool,
    /// Re-verify every signed message of the whole trail against the public keys of the policy
    /// file (implies --all).
    #[arg(long)]
    pub verify: bool,
    /// The analytics service holding the process-event record.
    #[arg(long, value_name = "URL", env = "PROMO_SYSTEMS_ADDR", default_value = DEFAULT_SYSTEMS_ADDR)]
    pub systems: String,
    /// The policy file whose [approver_keys] to verify with.
    #[arg(long, value_name = "FILE", env = "PROMO_POLICY", default_value = "config/policy.toml")]
    pub policy: PathBuf,
}

/// `promo keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Approver's employee id (for the printed policy line).
    #[arg(long = "for", value_name = "APPROVER_ID")]
    pub approver: String,
    /// Where to write the secret key (refused if it exists).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// `promo revoke-key`.
#[derive(Debug, Args)]
pub struct RevokeKeyArgs {
    /// The key's owner (employee id).
    #[arg(long = "for", value_name = "EMPLOYEE_ID")]
    pub employee: String,
    /// The public key (base64) to revoke; every key of the employee when left out.
    #[arg(long, value_name = "BASE64")]
    pub public_key: Option<String>,
    /// Why, for the record (a departure, a lost laptop).
    #[arg(long)]
    pub reason: String,
    /// The key directory service (the retail systems by default).
    #[arg(long, value_name = "URL", env = "PROMO_SYSTEMS_ADDR", default_value = DEFAULT_SYSTEMS_ADDR)]
    pub systems: String,
}

/// `promo start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// The spec: promo.v1.PromotionSpec in proto3 JSON.
    pub spec: PathBuf,
    /// Retail integration services for the master-data and collision checks; skipped (with a
    /// note) when unreachable, since the workflow validates again at intake.
    #[arg(long, value_name = "URL", env = "PROMO_SYSTEMS_ADDR", default_value = DEFAULT_SYSTEMS_ADDR)]
    pub systems: String,
    /// Validate only; do not start the workflow.
    #[arg(long)]
    pub dry_run: bool,
}

/// A promotion id.
#[derive(Debug, Args)]
pub struct IdArgs {
    /// Promotion id, e.g. SPRING-26 (the workflow id is promotion-<id>).
    pub id: String,
}

/// An approval role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// Owns the offer; approves every promotion.
    Merchandising,
    /// Margin exceptions and unfunded or under-funded lines.
    Finance,
    /// Promotions whose stock positioning was remediated.
    #[value(alias = "supply_chain")]
    SupplyChain,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Merchandising => Role::Merchandising,
            RoleArg::Finance => Role::Finance,
            RoleArg::SupplyChain => Role::SupplyChain,
        }
    }
}

/// How a message is delivered.
#[derive(Debug, Clone, Default, Args)]
pub struct Delivery {
    /// Send a signal instead of an update: fire-and-forget, no answer; refusals only show in
    /// `promo audit`.
    #[arg(long)]
    pub signal: bool,
    /// The sender's secret key file (`promo keygen`): the message is signed with it, for the
    /// promotion's current revision and what the message is about (read from its status).
    #[arg(long, value_name = "FILE", env = "PROMO_APPROVER_KEY")]
    pub key: Option<PathBuf>,
}

/// `promo approve` / `promo reject`.
#[derive(Debug, Args)]
pub struct DecisionArgs {
    /// Promotion id.
    pub id: String,
    /// Approver's employee id (must be in the approver directory).
    #[arg(long = "as", value_name = "APPROVER_ID")]
    pub approver: String,
    /// Role the approver acts in.
    #[arg(long, ignore_case = true)]
    pub role: RoleArg,
    /// Comment for the audit trail.
    #[arg(long, default_value = "")]
    pub comment: String,
    /// Revision the decision is about (default: the current one). Guards against approving a
    /// revision you have not seen.
    #[arg(long, value_name = "N")]
    pub revision: Option<u32>,
    /// Update (answered) or signal (fire-and-forget).
    #[command(flatten)]
    pub delivery: Delivery,
}

/// `promo request-changes`.
#[derive(Debug, Args)]
pub struct ChangeArgs {
    /// Promotion id.
    pub id: String,
    /// Approver's employee id.
    #[arg(long = "as", value_name = "APPROVER_ID")]
    pub approver: String,
    /// Role the approver acts in.
    #[arg(long, ignore_case = true)]
    pub role: RoleArg,
    /// The amended spec file (same promotion id).
    #[arg(long, value_name = "FILE")]
    pub spec: PathBuf,
    /// What must change, for the audit trail.
    #[arg(long, default_value = "")]
    pub comment: String,
    /// Revision the request is about (default: the current one).
    #[arg(long, value_name = "N")]
    pub revision: Option<u32>,
    /// Update (answered) or signal (fire-and-forget).
    #[command(flatten)]
    pub delivery: Delivery,
}

/// `promo choose-remediation`.
#[derive(Debug, Args)]
pub struct RemediationArgs {
    /// Promotion id.
    pub id: String,
    /// Region the choice is for.
    #[arg(long, value_name = "REGION")]
    pub region: String,
    /// Option id as listed by `promo status`, e.g. R2:drop-short.
    #[arg(long = "option", value_name = "OPTION_ID")]
    pub option: String,
    /// Employee id of the planner choosing.
    #[arg(long = "as", value_name = "EMPLOYEE_ID")]
    pub chosen_by: String,
    /// Comment for the audit trail.
    #[arg(long, default_value = "")]
    pub comment: String,
    /// Update (answered) or signal (fire-and-forget).
    #[command(flatten)]
    pub delivery: Delivery,
}

/// `promo cancel` / `pause` / `resume`.
#[derive(Debug, Args)]
pub struct OperatorArgs {
    /// Promotion id.
    pub id: String,
    /// Operator's employee id.
    #[arg(long = "as", value_name = "OPERATOR_ID")]
    pub operator: String,
    /// Why, for the audit trail.
    #[arg(long)]
    pub reason: String,
    /// Update (answered) or signal (fire-and-forget).
    #[command(flatten)]
    pub delivery: Delivery,
}

/// `promo override`.
#[derive(Debug, Args)]
pub struct OverrideArgs {
    /// Promotion id.
    pub id: String,
    /// Operator's employee id (must hold the operations role).
    #[arg(long = "as", value_name = "OPERATOR_ID")]
    pub operator: String,
    /// Region whose gate to open (default: the promotion-wide gate).
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// Why the gate may be passed, for the audit trail.
    #[arg(long)]
    pub reason: String,
    /// Update (answered) or signal (fire-and-forget).
    #[command(flatten)]
    pub delivery: Delivery,
}

/// `promo resolve-compensation`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("resolution").required(true).args(["retry", "accept"])))]
pub struct CompensationArgs {
    /// Promotion id.
    pub id: String,
    /// Operator's employee id (must hold the operations role).
    #[arg(long = "as", value_name = "OPERATOR_ID")]
    pub operator: String,
    /// Try the compensation again (the system was fixed).
    #[arg(long)]
    pub retry: bool,
    /// The items were undone by hand; the promotion checks the systems no longer hold them live.
    #[arg(long)]
    pub accept: bool,
    /// Why, for the audit trail.
    #[arg(long)]
    pub reason: String,
    /// Update (answered) or signal (fire-and-forget).
    #[command(flatten)]
    pub delivery: Delivery,
}

/// `promo list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only promotions in this stage (e.g. approval, launch-gate, active, done).
    #[arg(long, value_parser = parse_stage)]
    pub stage: Option<Stage>,
    /// Only promotions running in this region.
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// Only promotions with open exceptions.
    #[arg(long)]
    pub open_exceptions: bool,
    /// Only promotions waiting for this role's approval.
    #[arg(long, value_name = "ROLE", ignore_case = true)]
    pub pending: Option<RoleArg>,
    /// Only running workflows (ended promotions are listed too by default).
    #[arg(long)]
    pub running: bool,
    /// At most this many promotions.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

/// `promo report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Promotion id.
    pub id: String,
    /// Fail at once if the promotion is still running instead of waiting for it to end.
    #[arg(long)]
    pub no_wait: bool,
}

/// Parses a stage name: `approval`, `APPROVAL`, `STAGE_APPROVAL`, `launch-gate`, `launch_gate`.
pub fn parse_stage(s: &str) -> Result<Stage, String> {
    let norm = s.trim().to_ascii_uppercase().replace('-', "_");
    let norm = norm.strip_prefix("STAGE_").unwrap_or(&norm);
    match Stage::from_str_name(&format!("STAGE_{norm}")) {
        Some(Stage::Unspecified) | None => {
            let names: Vec<String> = (1..=11)
                .filter_map(|i| Stage::try_from(i).ok())
                .map(|st| {
                    st.as_str_name().trim_start_matches("STAGE_").to_ascii_lowercase().replace('_', "-")
                })
                .collect();
            Err(format!("{s:?} is not a stage; stages: {}", names.join(", ")))
        }
        Some(st) => Ok(st),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_parse_in_any_spelling() {
        for s in ["approval", "APPROVAL", "STAGE_APPROVAL", "Approval"] {
            assert_eq!(parse_stage(s), Ok(Stage::Approval));
        }
        assert_eq!(parse_stage("launch-gate"), Ok(Stage::LaunchGate));
        let e = parse_stage("launched").unwrap_err();
        assert!(e.contains("stages: intake, assessment, remediation, approval"), "{e}");
        assert!(parse_stage("unspecified").is_err());
    }

    #[test]
    fn json_and_timeout_are_global() {
        let cli = Cli::try_parse_from(["promo", "status", "X", "--json", "--timeout", "5"]).unwrap();
        assert!(cli.json);
        assert_eq!(cli.timeout, 5);
        assert!(matches!(cli.command, Command::Status(IdArgs { ref id }) if id == "X"));
    }

    #[test]
    fn roles_are_checked_by_the_parser() {
        let e = Cli::try_parse_from(["promo", "approve", "X", "--as", "E1", "--role", "ceo"]).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("possible values: merchandising, finance, supply-chain"), "{text}");
        let ok = Cli::try_parse_from(["promo", "approve", "X", "--as", "E1", "--role", "SUPPLY-CHAIN"]);
        assert!(ok.is_ok());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
