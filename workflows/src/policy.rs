//! The promotion policy: thresholds, required approvals, SLA and deadline durations, monitoring
//! cadence and the approver directory. Loaded by the worker from a TOML file (see
//! `config/policy.toml`) and handed to each workflow through the `promo.load_policy` activity,
//! so a run keeps the policy it started with (it is in its history) even if the file changes.

use promo_contracts::{money::parse_decimal, promo::v1::Role};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, fmt, str::FromStr, time::Duration};

/// What to do when a region's channels have not acknowledged by the deadline (after retries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LateAckAction {
    /// Launch the other regions on time; the late region launches once acknowledged.
    DelayRegion,
    /// Hold the whole launch until every channel acknowledges (or an operator overrides).
    HoldLaunch,
}

/// Why a policy is refused: the key and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The text is not TOML of the policy's shape (an unknown key, a value of the wrong type).
    #[error("policy: {0}")]
    Parse(String),
    /// A key whose value is out of its range or invalid.
    #[error("policy: {key}: {reason}")]
    Field {
        /// The key (`replenishment.dc_unit_cost`).
        key: String,
        /// What is wrong with its value.
        reason: String,
    },
}

impl PolicyError {
    fn field(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Field { key: key.into(), reason: reason.into() }
    }
}

/// A text that is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a duration (use e.g. \"90s\", \"15m\", \"4h\", \"2d\", \"1h30m\")")]
pub struct SpanError(pub String);

/// A duration written as `"90s"`, `"15m"`, `"4h"`, `"2d"` or a combination (`"1h30m"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Span(pub Duration);

impl FromStr for Span {
    type Err = SpanError;

    fn from_str(s: &str) -> Result<Self, SpanError> {
        let bad = || SpanError(s.to_owned());
        let mut total = 0u64;
        let mut digits = String::new();
        if s.is_empty() {
            return Err(bad());
        }
        for c in s.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let unit = match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                _ => return Err(bad()),
            };
            let n: u64 = digits.parse().map_err(|_| bad())?;
            total = total.checked_add(n.checked_mul(unit).ok_or_else(bad)?).ok_or_else(bad)?;
            digits.clear();
        }
        if !digits.is_empty() {
            return Err(bad());
        }
        Ok(Span(Duration::from_secs(total)))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.0.as_secs();
        if s == 0 {
            return f.write_str("0s");
        }
        for (unit, n) in [('d', 86_400), ('h', 3600), ('m', 60), ('s', 1)] {
            if s >= n {
                write!(f, "{}{unit}", s / n)?;
                s %= n;
            }
        }
        Ok(())
    }
}

impl Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Durations of the lifecycle, in business time (see [`Policy::time_scale`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Durations {
    /// Remind approvers after this long without a decision.
    pub approval_reminder: Span,
    /// Raise an approval-SLA exception after this long.
    pub approval_escalation: Span,
    /// Approvals must be complete this long before launch, or the promotion EXPIRES.
    pub approval_deadline_before_launch: Span,
    /// How long channels have to acknowledge a publication.
    pub ack_deadline: Span,
    /// Re-check readiness (stock, acknowledgments, funding) this long before launch.
    pub final_recheck_before_launch: Span,
    /// Monitoring cadence while active.
    pub monitor_every: Span,
    /// How old (wall clock) a signed decision may be when it arrives.
    pub signature_max_age: Span,
    /// The longest pause between two calls while the systems fail (a compensation, a live or
    /// finished promotion's call, the record of its last events): pauses start at 5 s and
    /// double up to this.
    pub outage_retry_max: Span,
}

impl Default for Durations {
    fn default() -> Self {
        let h = |n: u64| Span(Duration::from_secs(n * 3600));
        Self {
            approval_reminder: h(4),
            approval_escalation: h(12),
            approval_deadline_before_launch: h(24),
            ack_deadline: h(2),
            final_recheck_before_launch: h(1),
            monitor_every: h(24),
            signature_max_age: Span(Duration::from_secs(15 * 60)),
            outage_retry_max: Span(Duration::from_secs(5 * 60)),
        }
    }
}

/// In-flight replenishment: each monitoring round re-forecasts the rest of the window from the
/// sell-through so far and proposes transfers (DC → store, store → store) to the stores that
/// would run out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Replenishment {
    /// Whether monitoring rounds propose transfers at all.
    pub enabled: bool,
    /// Cost of moving one unit from a region's DC to a store (decimal string).
    pub dc_unit_cost: String,
    /// Cost of moving one unit between two stores of a region (decimal string).
    pub store_unit_cost: String,
    /// A transfer costing at most this is released at once; a dearer one waits for supply chain
    /// (`approve` / `reject` in role SUPPLY_CHAIN) until the next round replaces it.
    pub auto_apply_max_cost: String,
}

impl Default for Replenishment {
    fn default() -> Self {
        Self {
            enabled: false,
            dc_unit_cost: "0.40".into(),
            store_unit_cost: "0.90".into(),
            auto_apply_max_cost: "250.00".into(),
        }
    }
}

/// Bounded history: a promotion's run continues as new — the same workflow id, its state
/// carried — before its history grows past this, so that no promotion, however long it runs or
/// however many messages it is sent, reaches the server's history limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct History {
    /// Events a run's history may reach before it continues as new (the server may ask sooner,
    /// past its own size limit in bytes: `limit.historySize.suggestContinueAsNew`).
    pub max_events: u32,
}

impl Default for History {
    fn default() -> Self {
        Self { max_events: 10_000 }
    }
}

/// The policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// A region passes inventory alignment when covered units / demand units ≥ this (0–1).
    pub min_fill_rate: String,
    /// Lines whose promo margin rate is below this are margin exceptions (0–1).
    pub min_margin_rate: String,
    /// Lines whose margin rate is this many scaled MADs or more below their peers' median
    /// (same category, discount-depth band and funding) are margin anomalies, which need finance
    /// approval ("0" disables).
    pub margin_anomaly_mads: String,
    /// The uplift model is drifting when its tracking signal over the latest promotions (their
    /// mean forecast error against the errors it made on held-out promotions, in standard
    /// errors) passes this; a MODEL_DRIFT exception is raised ("0" disables).
    pub model_drift_signal: String,
    /// A region fails inventory alignment when the expected share of its store × SKU cells that
    /// run out of stock before the window ends (the mean of their stockout probabilities, from
    /// the forecast's uncertainty and the time-phased stock) is above this (0–1; "0" disables).
    pub max_stockout_share: String,
    /// Remediation options whose revenue loss is at most this share of forecast revenue are
    /// applied automatically (0 disables auto-remediation); substitutes never are.
    pub auto_remediation_max_revenue_share: String,
    /// Extra acknowledgment rounds after the first deadline before `late_ack_action` applies.
    pub ack_retries: u32,
    /// What a missing acknowledgment does after the retries.
    pub late_ack_action: LateAckAction,
    /// Clock compression for demos and tests: business durations (the spec window, the policy
    /// durations) pass this many times faster on the workflow's timers. 1 in production.
    pub time_scale: u32,
    /// Attempts of one compensation call (withdraw, revert, cancel orders; the revert at close)
    /// before the promotion shows a COMPENSATION_PENDING exception; it then keeps trying, with
    /// pauses growing from 5 s to 5 min, until the call succeeds.
    pub compensation_attempts: u32,
    /// Attempts of a call that a live or finished promotion makes (a monitoring round, the revert
    /// and read-back at close, the analysis) before it shows a SYSTEMS_UNAVAILABLE exception; it
    /// then keeps trying, with the same pauses as compensation, until the systems answer.
    pub systems_attempts: u32,
    /// Bounded history.
    pub history: History,
    /// Durations.
    pub durations: Durations,
    /// In-flight replenishment.
    pub replenishment: Replenishment,
    /// The approver directory: employee id → roles held.
    pub approvers: BTreeMap<String, Vec<RoleName>>,
    /// Whether every privileged message (approvals, change requests, remediation choices,
    /// cancel, pause, resume, overrides, compensation decisions) must be signed by its sender's
    /// key.
    /// A policy file that leaves it out requires signatures; a policy recorded in a history from
    /// before signatures existed does not (so those runs replay as they ran).
    #[serde(default)]
    pub require_signatures: bool,
    /// The approvers' and operators' Ed25519 public keys (base64), by employee id (`promo keygen`
    /// makes them). A key is revoked in the key directory (`retail.v1.DirectoryService`), which
    /// every running promotion asks before it applies a signed message.
    #[serde(default)]
    pub approver_keys: BTreeMap<String, String>,
}

/// A role as written in the policy file: `merchandising`, `finance`, `supply-chain`, `operations`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoleName {
    /// Merchandising.
    Merchandising,
    /// Finance.
    Finance,
    /// Supply chain.
    SupplyChain,
    /// Operations.
    Operations,
}

impl From<RoleName> for Role {
    fn from(r: RoleName) -> Role {
        match r {
            RoleName::Merchandising => Role::Merchandising,
            RoleName::Finance => Role::Finance,
            RoleName::SupplyChain => Role::SupplyChain,
            RoleName::Operations => Role::Operations,
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        let mut approvers = BTreeMap::new();
        approvers.insert("E1001".to_owned(), vec![RoleName::Merchandising]);
        approvers.insert("E1002".to_owned(), vec![RoleName::Merchandising]);
        approvers.insert("E2001".to_owned(), vec![RoleName::Finance]);
        approvers.insert("E3001".to_owned(), vec![RoleName::SupplyChain]);
        approvers.insert("E4001".to_owned(), vec![RoleName::Operations]);
        // A planner: in the directory (chooses remediation options, signs), approves nothing.
        approvers.insert("E0042".to_owned(), vec![]);
        Self {
            min_fill_rate: "0.90".into(),
            min_margin_rate: "0.10".into(),
            margin_anomaly_mads: "3.5".into(),
            model_drift_signal: "4".into(),
            max_stockout_share: "0".into(),
            auto_remediation_max_revenue_share: "0".into(),
            ack_retries: 1,
            late_ack_action: LateAckAction::DelayRegion,
            time_scale: 1,
            compensation_attempts: 5,
            systems_attempts: 20,
            history: History::default(),
            durations: Durations::default(),
            replenishment: Replenishment::default(),
            approvers,
            require_signatures: true,
            approver_keys: BTreeMap::new(),
        }
    }
}

/// A policy with its ratios parsed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// See [`Policy::min_fill_rate`].
    pub min_fill_rate: Decimal,
    /// See [`Policy::min_margin_rate`].
    pub min_margin_rate: Decimal,
    /// See [`Policy::auto_remediation_max_revenue_share`].
    pub auto_remediation_max_revenue_share: Decimal,
}

impl Policy {
    /// Parses and validates a TOML policy; every problem is named with its key.
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        let mut p: Policy = toml::from_str(text).map_err(|e| PolicyError::Parse(e.to_string()))?;
        let table: toml::Table = toml::from_str(text).map_err(|e| PolicyError::Parse(e.to_string()))?;
        if !table.contains_key("require_signatures") {
            p.require_signatures = true;
        }
        p.validate()?;
        Ok(p)
    }

    /// Checks ranges and the directory.
    pub fn validate(&self) -> Result<(), PolicyError> {
        self.thresholds()?;
        let at_least_zero = |key: &str, value: &str, dp: u32| -> Result<Decimal, PolicyError> {
            let d = decimal(key, value, dp)?;
            if d < Decimal::ZERO {
                return Err(PolicyError::field(key, format!("{value:?} must be 0 or more")));
            }
            Ok(d)
        };
        at_least_zero("margin_anomaly_mads", &self.margin_anomaly_mads, 3)?;
        at_least_zero("model_drift_signal", &self.model_drift_signal, 3)?;
        let share = at_least_zero("max_stockout_share", &self.max_stockout_share, 4)?;
        if share > Decimal::ONE {
            let why = format!("{:?} must be between 0 and 1", self.max_stockout_share);
            return Err(PolicyError::field("max_stockout_share", why));
        }
        for (key, value) in [
            ("dc_unit_cost", &self.replenishment.dc_unit_cost),
            ("store_unit_cost", &self.replenishment.store_unit_cost),
            ("auto_apply_max_cost", &self.replenishment.auto_apply_max_cost),
        ] {
            at_least_zero(&format!("replenishment.{key}"), value, 4)?;
        }
        if self.time_scale == 0 {
            return Err(PolicyError::field("time_scale", "must be at least 1"));
        }
        if self.history.max_events < MIN_HISTORY_EVENTS {
            let why =
                format!("must be at least {MIN_HISTORY_EVENTS} (a run needs room for its stage's steps)");
            return Err(PolicyError::field("history.max_events", why));
        }
        if self.history.max_events > MAX_HISTORY_EVENTS {
            let why =
                format!("must be at most {MAX_HISTORY_EVENTS}, well below the server's 50,000-event limit");
            return Err(PolicyError::field("history.max_events", why));
        }
        if self.compensation_attempts == 0 || self.systems_attempts == 0 {
            return Err(PolicyError::field("compensation_attempts, systems_attempts", "must be at least 1"));
        }
        if !self.approvers.values().flatten().any(|r| *r == RoleName::Merchandising) {
            return Err(PolicyError::field("approvers", "must include someone with the merchandising role"));
        }
        for (who, key) in &self.approver_keys {
            let at = format!("approver_keys.{who}");
            if !self.approvers.contains_key(who) {
                return Err(PolicyError::field(at, "not in the approver directory"));
            }
            crate::signing::public_key(key).map_err(|e| PolicyError::field(at, e.to_string()))?;
        }
        Ok(())
    }

    /// The ratios, parsed.
    pub fn thresholds(&self) -> Result<Thresholds, PolicyError> {
        let ratio = |key: &str, v: &str| -> Result<Decimal, PolicyError> {
            let d = decimal(key, v, 6)?;
            if d < Decimal::ZERO || d > Decimal::ONE {
                return Err(PolicyError::field(key, format!("{v:?} must be between 0 and 1")));
            }
            Ok(d)
        };
        Ok(Thresholds {
            min_fill_rate: ratio("min_fill_rate", &self.min_fill_rate)?,
            min_margin_rate: ratio("min_margin_rate", &self.min_margin_rate)?,
            auto_remediation_max_revenue_share: ratio(
                "auto_remediation_max_revenue_share",
                &self.auto_remediation_max_revenue_share,
            )?,
        })
    }

    /// Roles `approver` holds, or `None` when not in the directory.
    pub fn roles_of(&self, approver: &str) -> Option<Vec<Role>> {
        self.approvers.get(approver).map(|rs| rs.iter().map(|r| Role::from(*r)).collect())
    }

    /// A business duration as wall-clock time on the workflow's timers.
    pub fn scaled(&self, business: Duration) -> Duration {
        business / self.time_scale.max(1)
    }

    /// The pauses between calls while the systems fail: 5 s doubling to
    /// [`Durations::outage_retry_max`] (scaled like every business duration, and never under a
    /// second).
    pub fn outage_pauses(&self) -> impl Iterator<Item = Duration> + use<> {
        let max = self.scaled(self.durations.outage_retry_max.0).max(Duration::from_secs(1));
        std::iter::successors(Some(Duration::from_secs(5).min(max)), move |p| Some((*p * 2).min(max)))
    }

    /// [`Self::outage_pauses`] as they stand after `waited` of them: the pause reached by then
    /// first (an outage that outlived a continue-as-new keeps its cadence).
    pub fn outage_pauses_after(&self, waited: Duration) -> impl Iterator<Item = Duration> + use<> {
        let mut pauses = self.outage_pauses();
        let mut first = pauses.next().unwrap_or(Duration::from_secs(5));
        let mut left = waited;
        while left > first {
            left -= first;
            match pauses.next() {
                Some(next) if next != first => first = next,
                _ => break,
            }
        }
        std::iter::once(first).chain(pauses)
    }
}

/// The smallest history budget a policy may set.
pub const MIN_HISTORY_EVENTS: u32 = 100;
/// The largest history budget a policy may set.
pub const MAX_HISTORY_EVENTS: u32 = 40_000;

/// A decimal policy value, its key named when it is not one.
fn decimal(key: &str, value: &str, dp: u32) -> Result<Decimal, PolicyError> {
    parse_decimal(key, value, dp).map_err(|e| PolicyError::field(key, e.reason))
}

#[cfg(test)]
mod tests {
    /// The documented production policy file is the built-in default, key for key.
    #[test]
    fn config_policy_toml_is_the_default() {
        let file = Policy::from_toml(include_str!("../../config/policy.toml")).unwrap();
        assert_eq!(file, Policy::default());
    }

    use super::*;

    #[test]
    fn spans_parse_and_print() {
        assert_eq!("1h30m".parse::<Span>().unwrap().0, Duration::from_secs(5400));
        assert_eq!("2d".parse::<Span>().unwrap().to_string(), "2d");
        assert_eq!(Span(Duration::from_secs(93_784)).to_string(), "1d2h3m4s");
        for bad in ["", "5", "h", "1x", "1.5h", "-1h"] {
            assert!(bad.parse::<Span>().is_err(), "{bad}");
        }
    }

    #[test]
    fn policy_file_round_trips_and_is_validated() {
        let text = toml::to_string(&Policy::default()).unwrap();
        assert_eq!(Policy::from_toml(&text).unwrap(), Policy::default());
        let refused = |text: &str| Policy::from_toml(text).unwrap_err().to_string();
        let e = refused("min_fill_rate = \"1.5\"");
        assert!(e.contains("min_fill_rate"), "{e}");
        let e = refused("max_stockout_share = \"1.2\"");
        assert!(e.contains("max_stockout_share") && e.contains("between 0 and 1"), "{e}");
        assert_eq!(Policy::from_toml("max_stockout_share = \"0.2\"").unwrap().max_stockout_share, "0.2");
        let e = refused("min_fil_rate = \"0.5\"");
        assert!(e.contains("unknown field"), "{e}");
        let e = refused("[replenishment]\ndc_unit_cost = \"-1\"");
        assert!(e.contains("replenishment.dc_unit_cost"), "{e}");
        let e = refused("[durations]\nack_deadline = \"soon\"");
        assert!(e.contains("\"soon\" is not a duration"), "{e}");
    }

    #[test]
    fn scaled_durations() {
        let p = Policy { time_scale: 3600, ..Policy::default() };
        assert_eq!(p.scaled(Duration::from_secs(7200)), Duration::from_secs(2));
        assert_eq!(p.roles_of("E2001"), Some(vec![Role::Finance]));
        assert_eq!(p.roles_of("nobody"), None);
    }

    #[test]
    fn outage_pauses_keep_their_cadence_after_a_long_wait() {
        let mut p = Policy::default();
        p.durations.outage_retry_max = "1h".parse().unwrap();
        p.time_scale = 1;
        let secs =
            |it: &mut dyn Iterator<Item = Duration>| it.take(3).map(|d| d.as_secs()).collect::<Vec<_>>();
        assert_eq!(secs(&mut p.outage_pauses()), [5, 10, 20]);
        assert_eq!(secs(&mut p.outage_pauses_after(Duration::ZERO)), [5, 10, 20]);
        // 5 + 10 + 20 waited: the next pause is 40 s.
        assert_eq!(secs(&mut p.outage_pauses_after(Duration::from_secs(36))), [40, 80, 160]);
        // A day waited: the cadence is at its longest.
        assert_eq!(secs(&mut p.outage_pauses_after(Duration::from_secs(86_400))), [3600, 3600, 3600]);
    }
}
