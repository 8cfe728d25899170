//! Decisions of the lifecycle as pure functions: which approvals a revision needs, whether a
//! decision may be accepted, which exceptions an assessment raises, the risk level, and which
//! remediation policy applies by itself. Unit-tested without a server; the workflow only calls them.

use crate::{
    api::{PriceMismatch, PublicationRef, Target},
    policy::{LateAckAction, Policy, Thresholds},
    refusal::Refusal,
    summary::channel_name,
};
use promo_contracts::{
    money::parse_decimal,
    promo::v1::{
        ApprovalRequirement, AssessmentSummary, ExceptionKind, ExceptionStatus, PromotionException,
        RegionAlignment, RegionState, RemediationOption, Role, Severity, Stage,
    },
};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// The roles a revision needs, with the reason for each.
pub fn required_approvals(assessment: &AssessmentSummary, remediated: bool) -> Vec<(Role, String)> {
    let mut out = vec![(Role::Merchandising, "every promotion needs merchandising sign-off".to_owned())];
    let margin_exceptions = assessment.margin.as_ref().map_or(0, |m| m.exception_count as usize);
    let funding_issues =
        assessment.funding.as_ref().map_or(0, |f| f.issue_count as usize + f.over_cap_agreements.len());
    let anomalies = assessment.margin.as_ref().map_or(&[][..], |m| &m.anomalies[..]);
    let anomaly_count = assessment.margin.as_ref().map_or(0, |m| m.anomaly_count as usize);
    if margin_exceptions > 0 || funding_issues > 0 || anomaly_count > 0 {
        let mut why = Vec::new();
        if margin_exceptions > 0 {
            why.push(format!("{} below the margin floor", plural(margin_exceptions, "line")));
        }
        if anomaly_count > 0 {
            let first = anomalies.first().map(|a| format!(" ({})", a.explanation)).unwrap_or_default();
            why.push(format!("{} with anomalous margin{first}", plural(anomaly_count, "line")));
        }
        if funding_issues > 0 {
            why.push(format!("{} without valid funding", plural(funding_issues, "funded line")));
        }
        out.push((Role::Finance, why.join("; ")));
    }
    if remediated {
        out.push((Role::SupplyChain, "stock positioning was remediated".to_owned()));
    }
    out
}

/// `1 line`, `2 lines`.
pub fn plural(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// Why a decision is refused, or `Ok` when it may be applied.
pub fn check_decision(
    policy: &Policy,
    stage: Stage,
    current_revision: u32,
    requirements: &[ApprovalRequirement],
    approver: &str,
    role: Role,
    revision: u32,
) -> Result<(), Refusal> {
    if stage != Stage::Approval {
        return Err(Refusal::WrongStage { stage, awaiting: "awaiting approval" });
    }
    if revision != 0 && revision != current_revision {
        return Err(Refusal::WrongRevision { given: revision, current: current_revision });
    }
    let Some(roles) = policy.roles_of(approver) else {
        return Err(Refusal::NotInDirectory { what: "approver", who: approver.to_owned() });
    };
    if role == Role::Unspecified {
        return Err(Refusal::RoleRequired);
    }
    if !roles.contains(&role) {
        return Err(Refusal::MissingRole { what: "approver", who: approver.to_owned(), role });
    }
    let Some(req) = requirements.iter().find(|r| r.role() == role) else {
        return Err(Refusal::RoleNotRequired { role, revision: current_revision });
    };
    if !req.approved_by.is_empty() {
        return Err(Refusal::AlreadyGiven { role, by: req.approved_by.clone() });
    }
    Ok(())
}

pub use crate::summary::{role_name, stage_name};

fn dec(s: &str) -> Decimal {
    parse_decimal("", s, 12).unwrap_or_default()
}

/// An open exception: what it is, how bad, who owns it, what it puts at risk, and why.
pub fn exception(
    id: impl Into<String>,
    kind: ExceptionKind,
    severity: Severity,
    owner: Role,
    revenue_at_risk: impl Into<String>,
    detail: impl Into<String>,
) -> PromotionException {
    PromotionException {
        exception_id: id.into(),
        kind: kind as i32,
        severity: severity as i32,
        owner_role: owner as i32,
        revenue_at_risk: revenue_at_risk.into(),
        status: ExceptionStatus::Open as i32,
        detail: detail.into(),
        ..Default::default()
    }
}

/// Exceptions an assessment raises: stock risk per failing region, margin erosion, missing funding.
/// `id_suffix` keeps ids unique across revisions.
pub fn exceptions_from_assessment(a: &AssessmentSummary, id_suffix: &str) -> Vec<PromotionException> {
    let mut out = Vec::new();
    for r in a.regions.iter().filter(|r| !r.passes) {
        out.push(PromotionException {
            region_id: r.region_id.clone(),
            ..exception(
                format!("stock-{}-{id_suffix}", r.region_id),
                ExceptionKind::StockRisk,
                Severity::High,
                Role::SupplyChain,
                r.revenue_at_risk.clone(),
                region_risk_note(r),
            )
        });
    }
    if let Some(m) = a.margin.as_ref().filter(|m| m.exception_count > 0) {
        out.push(exception(
            format!("margin-{id_suffix}"),
            ExceptionKind::MarginErosion,
            Severity::Medium,
            Role::Finance,
            or_zero(&m.exception_revenue),
            format!("{} below the margin floor", plural(m.exception_count as usize, "line")),
        ));
    }
    if let Some(m) = a.margin.as_ref().filter(|m| m.anomaly_count > 0) {
        let shown: Vec<&str> = m.anomalies.iter().take(3).map(|x| x.explanation.as_str()).collect();
        let more = (m.anomaly_count as usize).saturating_sub(shown.len());
        out.push(exception(
            format!("margin-anomaly-{id_suffix}"),
            ExceptionKind::MarginErosion,
            Severity::Medium,
            Role::Finance,
            or_zero(&m.anomaly_revenue),
            format!(
                "{}: {}{}",
                if m.anomaly_count == 1 {
                    "1 line with a margin far below its peers".to_owned()
                } else {
                    format!("{} lines with margins far below their peers", m.anomaly_count)
                },
                shown.join("; "),
                if more > 0 { format!("; and {more} more") } else { String::new() }
            ),
        ));
    }
    if let Some(m) = a.margin.as_ref()
        && let Some(d) = m.forecast_model.as_ref().and_then(|f| f.drift.as_ref()).filter(|d| d.drifting)
    {
        // What rides on a forecast that far off: the forecast revenue times the window's bias.
        let at_risk = (dec(&m.forecast_revenue) * dec(&d.bias).abs()).round_dp(2);
        out.push(exception(
            format!("model-drift-{id_suffix}"),
            ExceptionKind::ModelDrift,
            Severity::Medium,
            Role::Merchandising,
            at_risk.normalize().to_string(),
            format!(
                "uplift model {} is drifting: {}",
                m.forecast_model.as_ref().map_or("", |f| f.version.as_str()),
                d.explanation
            ),
        ));
    }
    if let Some(f) = a.funding.as_ref().filter(|f| f.issue_count > 0 || !f.over_cap_agreements.is_empty()) {
        let agreements: Vec<&str> = f.invalid_agreements.iter().map(String::as_str).collect();
        out.push(exception(
            format!("funding-{id_suffix}"),
            ExceptionKind::FundingMissing,
            Severity::High,
            Role::Finance,
            or_zero(&f.unfunded_revenue),
            format!(
                "{} funded lines without valid funding (agreements {}){}",
                f.issue_count,
                agreements.join(", "),
                if f.over_cap_agreements.is_empty() {
                    String::new()
                } else {
                    format!("; over cap: {}", f.over_cap_agreements.join(", "))
                }
            ),
        ));
    }
    out
}

/// Why the launch gate holds a region back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum Hold {
    /// Its stock fell below the policy's floor after approval.
    Stock,
    /// Funding the approval counted on was withdrawn (an agreement revoked or expired).
    Funding,
}

impl Hold {
    /// How the hold is named to people.
    pub fn describe(self) -> &'static str {
        match self {
            Hold::Stock => "stock below the policy floor at the final re-check",
            Hold::Funding => "supplier funding withdrawn since approval",
        }
    }
}

/// One hold the final re-check places: the regions it keeps from launching and the exception
/// that tells its owner, with the revenue at risk.
#[derive(Debug, Clone, PartialEq)]
pub struct GateHold {
    /// Why.
    pub hold: Hold,
    /// Regions held.
    pub regions: Vec<String>,
    /// The exception raised.
    pub exception: PromotionException,
}

/// The launch gate's rule: what the final re-check found that the approval did not know.
/// A region that passed the approved assessment and fails the re-check is held for stock
/// (supply chain owns it; the revenue at risk is its uncovered demand); agreements that were
/// valid at approval and are not now hold every region for funding (finance owns it; every
/// region's revenue is at risk until finance decides). Risks the approvers accepted knowingly
/// — a region approved failing after remediation, funding already missing — hold nothing.
pub fn gate_holds(
    approved: &AssessmentSummary,
    recheck: &AssessmentSummary,
    id_suffix: &str,
) -> Vec<GateHold> {
    let mut out = Vec::new();
    let passed = |r: &str| approved.regions.iter().any(|a| a.region_id == r && a.passes);
    for r in recheck.regions.iter().filter(|r| !r.passes && passed(&r.region_id)) {
        out.push(GateHold {
            hold: Hold::Stock,
            regions: vec![r.region_id.clone()],
            exception: PromotionException {
                region_id: r.region_id.clone(),
                ..exception(
                    format!("gate-stock-{}-{id_suffix}", r.region_id),
                    ExceptionKind::StockRisk,
                    Severity::High,
                    Role::SupplyChain,
                    r.revenue_at_risk.clone(),
                    format!(
                        "held at the launch gate: {} at the final re-check; choose a delay, or an operator \
                     overrides",
                        region_risk_note(r)
                    ),
                )
            },
        });
    }
    let invalid =
        |a: &AssessmentSummary| a.funding.as_ref().map(|f| f.invalid_agreements.clone()).unwrap_or_default();
    let was_invalid = invalid(approved);
    let revoked: Vec<String> = invalid(recheck).into_iter().filter(|a| !was_invalid.contains(a)).collect();
    if !revoked.is_empty() {
        let claim =
            |a: &AssessmentSummary| a.funding.as_ref().map_or(Decimal::ZERO, |f| dec(&f.forecast_claim));
        let revenue = recheck.margin.as_ref().map_or_else(String::new, |m| m.forecast_revenue.clone());
        out.push(GateHold {
            hold: Hold::Funding,
            regions: recheck.regions.iter().map(|r| r.region_id.clone()).collect(),
            exception: exception(
                format!("gate-funding-{id_suffix}"),
                ExceptionKind::FundingMissing,
                Severity::High,
                Role::Finance,
                if revenue.is_empty() { "0".into() } else { revenue },
                format!(
                    "held at the launch gate: {} no longer valid; forecast funding claim {} → {}; \
                     finance approves launching without it, or the promotion is cancelled",
                    plural_list("agreement", &revoked),
                    claim(approved).round_dp(2),
                    claim(recheck).round_dp(2),
                ),
            ),
        });
    }
    out
}

/// Why a region fails inventory alignment, in words: SKUs short of the fill-rate floor, or —
/// none short — too many of its store × SKU cells likely to run out (the policy's
/// `max_stockout_share`).
pub fn region_risk_note(r: &RegionAlignment) -> String {
    let share = |x: &str| format!("{:.1}%", dec(x) * Decimal::ONE_HUNDRED);
    if r.short_sku_count == 0 && !r.stockout_probability.is_empty() {
        return format!(
            "{} of store × SKU cells expected to run out (≈ {}), above the policy ceiling",
            share(&r.stockout_probability),
            r.expected_stockouts
        );
    }
    let risk = if r.stockout_probability.is_empty() {
        String::new()
    } else {
        format!("; {} of store × SKU cells expected to run out", share(&r.stockout_probability))
    };
    format!(
        "fill rate {} below the policy floor; {} short{risk}",
        r.fill_rate,
        plural(r.short_sku_count as usize, "SKU")
    )
}

/// The assessment's stockout risk per region for the audit trail, with the riskiest cell of each
/// region; `None` when it was not estimated.
pub fn stockout_audit(a: &AssessmentSummary) -> Option<String> {
    let regions: Vec<String> = a
        .regions
        .iter()
        .filter(|r| !r.stockout_probability.is_empty())
        .map(|r| {
            let top = r.riskiest_cells.first().map_or_else(String::new, |c| {
                format!(
                    " (riskiest {} at {}: {:.0}%, {} units for {} forecast)",
                    c.sku,
                    c.store_id,
                    dec(&c.probability) * Decimal::ONE_HUNDRED,
                    c.available_units,
                    c.demand_units
                )
            });
            format!("{} {:.1}%{top}", r.region_id, dec(&r.stockout_probability) * Decimal::ONE_HUNDRED)
        })
        .collect();
    if regions.is_empty() {
        return None;
    }
    let size = a
        .margin
        .as_ref()
        .and_then(|m| m.forecast_model.as_ref())
        .map_or_else(String::new, |m| format!(", store-level size {}", m.store_size));
    Some(format!(
        "revision {}: expected share of store × SKU cells running out before the window ends \
         (negative binomial around the forecast{size}, stock time-phased): {}",
        a.revision,
        regions.join("; ")
    ))
}

fn plural_list(noun: &str, items: &[String]) -> String {
    if items.len() == 1 { format!("{noun} {}", items[0]) } else { format!("{noun}s {}", items.join(", ")) }
}

/// `low`, `medium` or `high`, from open exceptions.
pub fn risk(open: &[PromotionException]) -> &'static str {
    if open.iter().any(|e| e.severity() == Severity::High) {
        "high"
    } else if open.is_empty() {
        "low"
    } else {
        "medium"
    }
}

/// The options policy applies by itself: per failing region, the option with the smallest
/// revenue loss, when that loss is within the policy's share of forecast revenue. Substitutes
/// are never applied by policy: they put SKUs on promotion that the planner did not choose.
pub fn auto_remediation(
    options: &[RemediationOption],
    forecast_revenue: &str,
    thresholds: &Thresholds,
) -> BTreeMap<String, String> {
    let limit = dec(forecast_revenue) * thresholds.auto_remediation_max_revenue_share;
    let mut best: BTreeMap<String, (Decimal, String)> = BTreeMap::new();
    for o in options.iter().filter(|o| o.kind != "substitute") {
        let loss = -dec(&o.revenue_effect);
        if loss <= limit && thresholds.auto_remediation_max_revenue_share > Decimal::ZERO {
            let e = best.entry(o.region_id.clone()).or_insert((loss, o.option_id.clone()));
            if loss < e.0 {
                *e = (loss, o.option_id.clone());
            }
        }
    }
    best.into_iter().map(|(r, (_, id))| (r, id)).collect()
}

/// What a region still waiting for its acknowledgments becomes after the ack retries, by policy
/// (the region's note).
pub fn late_ack_note(action: LateAckAction) -> &'static str {
    match action {
        LateAckAction::DelayRegion => "launch delayed until its channels acknowledge",
        LateAckAction::HoldLaunch => "launch held until every channel acknowledges",
    }
}

/// Everything the launch gate knows about one region at one instant (business seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gate {
    /// The region's state.
    pub state: RegionState,
    /// When it may launch: the window's start, or later if remediation delayed it.
    pub launch_at: i64,
    /// Business time now.
    pub now: i64,
    /// Its channels acknowledged (or an operator overrode its gate).
    pub acknowledged: bool,
    /// An operator overrode its gate.
    pub overridden: bool,
    /// The policy holds the whole launch and some region is still unacknowledged.
    pub held: bool,
    /// An operator paused the promotion.
    pub paused: bool,
    /// The promotion's window has ended.
    pub window_over: bool,
    /// The final re-check holds the region (see [`gate_holds`]) and nobody has released it.
    pub held_at_gate: bool,
}

/// What the gate does with a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Nothing yet (live already, closed, dropped, not its time, not acknowledged, paused, held).
    Wait,
    /// Its gate opened only after the window ended: it never goes live.
    MissedWindow,
    /// It goes live now.
    Activate,
}

/// The activation rule: a region goes live when its time has come, its channels acknowledged
/// (or an operator overrode), the launch is not held for another region, nothing is paused, and
/// the window has not ended.
pub fn activation(g: &Gate) -> Activation {
    let done = matches!(g.state, RegionState::Active | RegionState::Closed | RegionState::Dropped);
    let waits = g.paused || g.held_at_gate || g.launch_at > g.now;
    if done || waits || !g.acknowledged || (g.held && !g.overridden) {
        Activation::Wait
    } else if g.window_over {
        Activation::MissedWindow
    } else {
        Activation::Activate
    }
}

/// Whether a region launched on time: at its planned instant (not delayed by remediation),
/// within a business hour of it — or five seconds of wall time, the processing slack on a
/// compressed clock.
pub fn launched_on_time(planned: i64, launch_at: i64, activated_at: i64, time_scale: u32) -> bool {
    let slack = 3600.max(5 * i64::from(time_scale));
    launch_at == planned && activated_at - launch_at <= slack
}

/// Why the active loop wakes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The window ends.
    End,
    /// A delayed region's launch.
    Launch,
    /// The monitoring cadence.
    Monitor,
}

impl Wake {
    /// For the timer's summary on the Web UI's timeline.
    pub fn describe(self) -> &'static str {
        match self {
            Wake::End => "end of the window",
            Wake::Launch => "launch",
            Wake::Monitor => "monitoring",
        }
    }
}

/// The next instant the active loop must look again: the earliest of the window's end, the
/// next pending launch and (once live) the next monitoring round. Ties go to the end, then the
/// launch.
pub fn next_wakeup(ends_at: i64, pending_launch: Option<i64>, next_monitor: Option<i64>) -> (i64, Wake) {
    let mut best = (ends_at, Wake::End);
    for (at, why) in [(pending_launch, Wake::Launch), (next_monitor, Wake::Monitor)] {
        if let Some(at) = at
            && at < best.0
        {
            best = (at, why);
        }
    }
    best
}

/// The channel-sync exception of a publication not acknowledged by its deadline, with the
/// revenue at risk of its region.
pub fn channel_sync_exception(
    p: &PublicationRef,
    revision: u32,
    revenue_at_risk: String,
) -> PromotionException {
    let region = p.target.region_id.clone();
    PromotionException {
        region_id: region.clone(),
        ..exception(
            format!(
                "channel-{}-{}-r{revision}",
                channel_name(p.target.channel),
                if region.is_empty() { "national" } else { &region }
            ),
            ExceptionKind::ChannelSync,
            Severity::High,
            Role::Operations,
            revenue_at_risk,
            format!(
                "{} publication {} not acknowledged by the deadline",
                channel_name(p.target.channel),
                p.publication_id
            ),
        )
    }
}

/// A decimal string, or "0" for an empty one (a figure the assessment left out).
fn or_zero(s: &str) -> String {
    if s.is_empty() { "0".into() } else { s.to_owned() }
}

/// Whether a recommended transfer costing `cost` is released without approval under the
/// policy's `limit` (decimal strings; one that does not parse always asks supply chain).
pub fn within_limit(cost: &str, limit: &str) -> bool {
    match (cost.parse::<Decimal>(), limit.parse::<Decimal>()) {
        (Ok(c), Ok(l)) => c <= l,
        _ => false,
    }
}

/// What the store-days out of stock so far in `region` cost: the region's forecast revenue
/// (its demand share, as [`channel_revenue_at_risk`]) per store and day of the window, times
/// the store-days without stock.
pub fn stockout_revenue_at_risk(
    a: &AssessmentSummary,
    region: &str,
    store_days: i64,
    stores: u32,
    window_days: f64,
) -> String {
    let region_revenue = forecast_revenue_of(a, Some(region)).round_dp(2);
    let per_store_day = stores as f64 * window_days;
    if per_store_day <= 0.0 || store_days <= 0 {
        return "0".into();
    }
    let per = Decimal::from_f64_retain(per_store_day).unwrap_or(Decimal::ONE);
    (region_revenue * Decimal::from(store_days) / per).round_dp(2).normalize().to_string()
}

/// What a channel target that does not carry the promotion puts at risk: the forecast
/// promotional revenue of the region it serves (the forecast split by demand), or the whole
/// forecast for a national target, which every region depends on.
pub fn channel_revenue_at_risk(a: &AssessmentSummary, region: Option<&str>) -> String {
    forecast_revenue_of(a, region).round_dp(2).normalize().to_string()
}

/// The forecast promotional revenue of `region` (split by demand), or all of it for `None`.
fn forecast_revenue_of(a: &AssessmentSummary, region: Option<&str>) -> Decimal {
    let revenue = a.margin.as_ref().map_or(Decimal::ZERO, |m| dec(&m.forecast_revenue));
    let total: i64 = a.regions.iter().map(|r| r.demand_units.max(0)).sum();
    let share = match region {
        None => Decimal::ONE,
        Some(_) if total == 0 => Decimal::ZERO,
        Some(id) => {
            let units = a.regions.iter().find(|r| r.region_id == id).map_or(0, |r| r.demand_units.max(0));
            Decimal::from(units) / Decimal::from(total)
        }
    };
    revenue * share
}

/// The id of [`ack_withdrawn_exception`] for a target.
pub fn ack_withdrawn_exception_id(t: &Target, revision: u32) -> String {
    let place = if t.region_id.is_empty() { "national" } else { &t.region_id };
    format!("gate-channel-{}-{place}-r{revision}", channel_name(t.channel))
}

/// The exception the launch gate raises when a channel took back, after approval, an
/// acknowledgment the launch counted on: operations owns it; the regions it holds stay dark
/// until the channel acknowledges the republished activation or an operator overrides.
pub fn ack_withdrawn_exception(
    p: &PublicationRef,
    revision: u32,
    held: &[String],
    revenue_at_risk: String,
) -> PromotionException {
    let region = p.target.region_id.clone();
    let place = if region.is_empty() { "national" } else { &region };
    PromotionException {
        region_id: region.clone(),
        ..exception(
            ack_withdrawn_exception_id(&p.target, revision),
            ExceptionKind::ChannelSync,
            Severity::High,
            Role::Operations,
            revenue_at_risk,
            format!(
                "held at the launch gate: {} {place} took back its acknowledgment of publication {}; \
             republished, {} held until the channel acknowledges it, or an operator overrides",
                channel_name(p.target.channel),
                p.publication_id,
                plural_list("region", held),
            ),
        )
    }
}

/// The exception a price read-back raises: a channel target charging other prices than the
/// approved ones (`after_close`: still charging the promotional price after the revert).
pub fn price_mismatch_exception(m: &PriceMismatch, after_close: bool) -> PromotionException {
    let region = m.target.region_id.clone();
    let place = if region.is_empty() { "national".to_owned() } else { region.clone() };
    let channel = channel_name(m.target.channel);
    PromotionException {
        region_id: region.clone(),
        ..exception(
            price_exception_id(&m.target, after_close),
            ExceptionKind::ChannelSync,
            Severity::High,
            Role::Operations,
            m.revenue_at_risk.clone(),
            format!(
                "{channel} {place} charges other prices than {} for {}: {}; republishing",
                if after_close { "the regular ones after the revert" } else { "approved" },
                plural(m.count as usize, "SKU"),
                m.detail
            ),
        )
    }
}

/// The id of the exception a price mismatch on `target` raises.
pub fn price_exception_id(target: &crate::api::Target, after_close: bool) -> String {
    let place = if target.region_id.is_empty() { "national" } else { &target.region_id };
    format!("price-{}-{place}{}", channel_name(target.channel), if after_close { "-revert" } else { "" })
}

/// Price accuracy: prices read back that matched, over all read back ("" when none was).
pub fn price_accuracy(matching: u64, checked: u64) -> String {
    if checked == 0 {
        return String::new();
    }
    promo_contracts::money::format_ratio(Decimal::from(matching) / Decimal::from(checked))
}

/// The exception shown while compensation (or the revert at close) keeps failing: something of
/// the promotion may still be live.
pub fn compensation_pending_exception(
    what: &str,
    error: &str,
    revenue_at_risk: String,
) -> PromotionException {
    exception(
        "compensation-pending",
        ExceptionKind::CompensationPending,
        Severity::High,
        Role::Operations,
        revenue_at_risk,
        format!("{what} has not succeeded yet and is retried until it does: {error}"),
    )
}

/// The exception shown while a live or finished promotion's call to the systems keeps failing:
/// the promotion waits and calls again, it does not fail.
pub fn systems_unavailable_exception(what: &str, error: &str, revenue_at_risk: String) -> PromotionException {
    exception(
        "systems-unavailable",
        ExceptionKind::SystemsUnavailable,
        Severity::High,
        Role::Operations,
        revenue_at_risk,
        format!(
            "the retail systems do not answer ({what}): {error}; the promotion keeps waiting and calling \
             again, and carries on when they answer"
        ),
    )
}

/// The exception of a compensation that a system refused for good: what is still live, owned by
/// operations, until an operator's signed decision (retry, or accept what was undone by hand).
pub fn compensation_blocked_exception(still_live: &[String], revenue_at_risk: String) -> PromotionException {
    let shown: Vec<&str> = still_live.iter().take(5).map(String::as_str).collect();
    let more = still_live.len().saturating_sub(shown.len());
    exception(
        "compensation-blocked",
        ExceptionKind::CompensationBlocked,
        Severity::High,
        Role::Operations,
        revenue_at_risk,
        format!(
            "the systems refused to undo {}: {}{}; still live. An operator decides with a signed \
             resolve_compensation: retry (once the system is fixed) or accept (once it was undone by hand)",
            plural(still_live.len(), "item"),
            shown.join("; "),
            if more > 0 { format!("; and {more} more") } else { String::new() }
        ),
    )
}

/// What the audit trail keeps of the forecast behind an assessment: which model (or why none),
/// its held-out accuracy, and where each line's uplift came from. `None` when every uplift came
/// from the planner.
pub fn forecast_model_audit(a: &AssessmentSummary) -> Option<String> {
    let m = a.margin.as_ref()?.forecast_model.as_ref()?;
    let mut sources: Vec<(&String, &u32)> = m.lines_by_source.iter().collect();
    sources.sort();
    let sources: Vec<String> = sources.iter().map(|(k, v)| format!("{v} {k}")).collect();
    let lines = if sources.is_empty() { String::new() } else { format!("; lines: {}", sources.join(", ")) };
    if !m.fallback_reason.is_empty() {
        return Some(format!(
            "revision {}: no learned uplift model ({}); uplift from each SKU's past promotions{lines}",
            a.revision, m.fallback_reason
        ));
    }
    let percent = |x: &str| dec(x) * Decimal::ONE_HUNDRED;
    let holdout = if m.holdout_promotions > 0 {
        format!(
            ", held-out WAPE {:.1}% per SKU × region × week and {:.1}% per promotion, bias {:+.1}% on the latest {}",
            percent(&m.holdout_wape),
            percent(&m.holdout_promotion_wape),
            percent(&m.holdout_bias),
            plural(m.holdout_promotions as usize, "promotion")
        )
    } else {
        String::new()
    };
    let drift = match &m.drift {
        Some(d) if d.tracked > 0 => {
            format!("; {}{}", if d.drifting { "DRIFTING: " } else { "drift: " }, d.explanation)
        }
        _ => String::new(),
    };
    Some(format!(
        "revision {}: uplift {} fitted on {} ({}–{}), pseudo-R² {}{holdout}{lines}{drift}",
        a.revision,
        m.version,
        plural(m.promotions as usize, "past promotion"),
        m.training_from,
        m.training_to,
        m.pseudo_r2,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assessment_exceptions_carry_the_revenue_of_the_lines_they_are_about() {
        use promo_contracts::promo::v1::{FundingSummary, MarginSummary};
        let a = AssessmentSummary {
            margin: Some(MarginSummary {
                exception_count: 2,
                exception_revenue: "480.50".into(),
                ..Default::default()
            }),
            funding: Some(FundingSummary {
                issue_count: 3,
                unfunded_revenue: "912.00".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let ex = exceptions_from_assessment(&a, "r1");
        let at = |k: ExceptionKind| ex.iter().find(|e| e.kind() == k).unwrap().revenue_at_risk.clone();
        assert_eq!(at(ExceptionKind::MarginErosion), "480.50");
        assert_eq!(at(ExceptionKind::FundingMissing), "912.00");
        // An assessment recorded before the figures existed still reads as 0, not empty.
        let old = AssessmentSummary {
            margin: Some(MarginSummary { exception_count: 1, ..Default::default() }),
            ..Default::default()
        };
        assert_eq!(exceptions_from_assessment(&old, "r1")[0].revenue_at_risk, "0");
    }

    #[test]
    fn a_margin_anomaly_needs_finance_with_the_explanation() {
        use promo_contracts::promo::v1::{MarginAnomaly, MarginSummary};
        let explanation = "SKU-00042 margin rate -12.0% vs peer median 18.0% (garden · 20–30% · funded, 9 peers), 4.1 MADs below";
        let a = AssessmentSummary {
            margin: Some(MarginSummary {
                anomaly_count: 1,
                anomaly_revenue: "300.00".into(),
                anomalies: vec![MarginAnomaly {
                    sku: "SKU-00042".into(),
                    explanation: explanation.into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let req = required_approvals(&a, false);
        let finance = req.iter().find(|(r, _)| *r == Role::Finance).expect("finance required");
        assert_eq!(finance.1, format!("1 line with anomalous margin ({explanation})"));
        let ex = exceptions_from_assessment(&a, "r1");
        assert_eq!(ex.len(), 1);
        assert_eq!(
            (ex[0].exception_id.as_str(), ex[0].revenue_at_risk.as_str()),
            ("margin-anomaly-r1", "300.00")
        );
        assert!(ex[0].detail.contains(explanation), "{}", ex[0].detail);
    }
    #[test]
    fn a_drifting_model_raises_model_drift_for_merchandising_and_the_audit_says_which_model() {
        use promo_contracts::promo::v1::{ForecastModel, MarginSummary, ModelDrift};
        let drift = |drifting| ModelDrift {
            tracked: 6,
            signal: "-9.10".into(),
            bias: "-0.2400".into(),
            drifting,
            explanation:
                "tracking signal -9.1 over the last 6 promotions (threshold 4): sold 24% below forecast"
                    .into(),
            ..Default::default()
        };
        let mut a = AssessmentSummary {
            revision: 2,
            margin: Some(MarginSummary {
                forecast_revenue: "1000.00".into(),
                forecast_model: Some(ForecastModel {
                    version: "uplift-glm/1@abc".into(),
                    promotions: 320,
                    training_from: "2025-01-01".into(),
                    training_to: "2026-12-01".into(),
                    pseudo_r2: "0.86".into(),
                    holdout_promotions: 64,
                    holdout_wape: "0.12".into(),
                    holdout_promotion_wape: "0.04".into(),
                    holdout_bias: "-0.02".into(),
                    lines_by_source: [("model".to_owned(), 9), ("planner".to_owned(), 1)].into(),
                    drift: Some(drift(true)),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let ex = exceptions_from_assessment(&a, "r2");
        assert_eq!(ex.len(), 1);
        assert_eq!((ex[0].kind(), ex[0].owner_role()), (ExceptionKind::ModelDrift, Role::Merchandising));
        assert_eq!((ex[0].exception_id.as_str(), ex[0].revenue_at_risk.as_str()), ("model-drift-r2", "240"));
        assert!(ex[0].detail.starts_with("uplift model uplift-glm/1@abc is drifting: tracking signal -9.1"));
        assert_eq!(
            forecast_model_audit(&a).unwrap(),
            "revision 2: uplift uplift-glm/1@abc fitted on 320 past promotions (2025-01-01–2026-12-01), \
             pseudo-R² 0.86, held-out WAPE 12.0% per SKU × region × week and 4.0% per promotion, bias -2.0% \
             on the latest 64 promotions; lines: 9 model, 1 planner; DRIFTING: tracking signal -9.1 over the \
             last 6 promotions (threshold 4): sold 24% below forecast"
        );
        // Not drifting: no exception.
        a.margin.as_mut().unwrap().forecast_model.as_mut().unwrap().drift = Some(drift(false));
        assert!(exceptions_from_assessment(&a, "r2").is_empty());
        // No model (every uplift from the planner): nothing to audit.
        a.margin.as_mut().unwrap().forecast_model = None;
        assert_eq!(forecast_model_audit(&a), None);
    }

    use promo_contracts::promo::v1::{
        FundingIssue, FundingSummary, LineMargin, MarginSummary, RegionAlignment,
    };

    fn assessment(margin_exceptions: usize, funding_issues: usize, failing: &[&str]) -> AssessmentSummary {
        AssessmentSummary {
            margin: Some(MarginSummary {
                exceptions: (0..margin_exceptions).map(|_| LineMargin::default()).collect(),
                exception_count: margin_exceptions as u32,
                ..Default::default()
            }),
            funding: Some(FundingSummary {
                issues: (0..funding_issues)
                    .map(|i| FundingIssue {
                        sku: format!("S{i}"),
                        agreement_id: "FA-1".into(),
                        reason: "x".into(),
                    })
                    .collect(),
                issue_count: funding_issues as u32,
                invalid_agreements: if funding_issues > 0 { vec!["FA-1".into()] } else { vec![] },
                ..Default::default()
            }),
            regions: ["R1", "R2", "R3"]
                .iter()
                .map(|r| RegionAlignment {
                    region_id: (*r).into(),
                    passes: !failing.contains(r),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn finance_is_required_for_unfunded_lines_and_supply_chain_after_remediation() {
        let roles = |a, r| required_approvals(&a, r).into_iter().map(|x| x.0).collect::<Vec<_>>();
        assert_eq!(roles(assessment(0, 0, &[]), false), vec![Role::Merchandising]);
        assert_eq!(roles(assessment(0, 3, &[]), false), vec![Role::Merchandising, Role::Finance]);
        assert_eq!(
            roles(assessment(2, 0, &[]), true),
            vec![Role::Merchandising, Role::Finance, Role::SupplyChain]
        );
    }

    #[test]
    fn decisions_are_checked_against_directory_roles_requirements_and_stage() {
        let p = Policy::default();
        let reqs = vec![
            ApprovalRequirement { role: Role::Merchandising as i32, ..Default::default() },
            ApprovalRequirement {
                role: Role::Finance as i32,
                approved_by: "E2001".into(),
                ..Default::default()
            },
        ];
        let check = |stage, who: &str, role, rev| check_decision(&p, stage, 2, &reqs, who, role, rev);
        assert!(check(Stage::Approval, "E1001", Role::Merchandising, 0).is_ok());
        assert!(check(Stage::Approval, "E1001", Role::Merchandising, 2).is_ok());
        let e = |r: Result<(), Refusal>| r.unwrap_err().to_string();
        assert!(
            e(check(Stage::Approval, "E9999", Role::Merchandising, 0))
                .contains("not in the approver directory")
        );
        assert!(
            e(check(Stage::Approval, "E1001", Role::Finance, 0)).contains("does not hold the FINANCE role")
        );
        assert!(e(check(Stage::Approval, "E3001", Role::SupplyChain, 0)).contains("not required"));
        assert!(e(check(Stage::Approval, "E2001", Role::Finance, 0)).contains("already given"));
        assert!(e(check(Stage::Publishing, "E1001", Role::Merchandising, 0)).contains("stage PUBLISHING"));
        assert!(e(check(Stage::Approval, "E1001", Role::Merchandising, 1)).contains("revision 1"));
    }

    #[test]
    fn assessment_raises_exceptions_and_risk() {
        let ex = exceptions_from_assessment(&assessment(1, 2, &["R2"]), "r1");
        let kinds: Vec<ExceptionKind> = ex.iter().map(|e| e.kind()).collect();
        assert_eq!(
            kinds,
            vec![ExceptionKind::StockRisk, ExceptionKind::MarginErosion, ExceptionKind::FundingMissing]
        );
        assert_eq!(ex[0].region_id, "R2");
        assert_eq!(risk(&ex), "high");
        assert_eq!(risk(&ex[1..2]), "medium");
        assert_eq!(risk(&[]), "low");
    }

    #[test]
    fn auto_remediation_picks_small_fixes_only() {
        let opt = |id: &str, region: &str, effect: &str| RemediationOption {
            option_id: id.into(),
            region_id: region.into(),
            revenue_effect: effect.into(),
            ..Default::default()
        };
        let mut options =
            vec![opt("R1:drop", "R1", "-50"), opt("R1:delay", "R1", "-80"), opt("R2:drop", "R2", "-5000")];
        // A substitute that gains revenue is still the planner's call.
        options.push(RemediationOption { kind: "substitute".into(), ..opt("R2:substitute", "R2", "120") });
        let t = Thresholds {
            min_fill_rate: Decimal::ONE,
            min_margin_rate: Decimal::ONE,
            auto_remediation_max_revenue_share: Decimal::new(1, 2),
        };
        let chosen = auto_remediation(&options, "10000", &t);
        assert_eq!(chosen.into_iter().collect::<Vec<_>>(), vec![("R1".to_string(), "R1:drop".to_string())]);
        let off = Thresholds { auto_remediation_max_revenue_share: Decimal::ZERO, ..t };
        assert!(auto_remediation(&options, "10000", &off).is_empty());
    }

    fn gate() -> Gate {
        Gate {
            state: RegionState::Ready,
            launch_at: 100,
            now: 100,
            acknowledged: true,
            overridden: false,
            held: false,
            paused: false,
            window_over: false,
            held_at_gate: false,
        }
    }

    #[test]
    fn price_mismatches_name_channel_region_skus_and_revenue_at_risk() {
        let m = PriceMismatch {
            target: crate::api::Target { channel: 1, region_id: "R1".into() },
            skus: vec!["SKU-00001".into(), "SKU-00002".into()],
            count: 2,
            detail: "SKU-00001 charges 10.00, should be 8.00; SKU-00002 charges 5.00, should be 4.00".into(),
            revenue_at_risk: "120.00".into(),
        };
        let e = price_mismatch_exception(&m, false);
        assert_eq!(e.kind(), ExceptionKind::ChannelSync);
        assert_eq!((e.region_id.as_str(), e.revenue_at_risk.as_str()), ("R1", "120.00"));
        assert!(
            e.detail.starts_with("POS R1 charges other prices than approved for 2 SKUs: SKU-00001"),
            "{}",
            e.detail
        );
        assert_ne!(e.exception_id, price_mismatch_exception(&m, true).exception_id);
        assert_eq!(price_accuracy(0, 0), "");
        assert_eq!(price_accuracy(3, 4), "0.75");
    }

    #[test]
    fn the_gate_holds_only_what_changed_since_approval() {
        let approved = assessment(0, 0, &["R3"]);
        assert!(gate_holds(&approved, &approved, "r1").is_empty(), "nothing changed, nothing held");
        // R1 fell below the floor; R3 was approved failing (after remediation): only R1 is held.
        let mut recheck = assessment(0, 0, &["R1", "R3"]);
        recheck.regions[0].revenue_at_risk = "1234.50".into();
        let holds = gate_holds(&approved, &recheck, "r1");
        assert_eq!(holds.len(), 1, "{holds:?}");
        assert_eq!((holds[0].hold, holds[0].regions.clone()), (Hold::Stock, vec!["R1".to_owned()]));
        let e = &holds[0].exception;
        assert_eq!(
            (e.kind(), e.owner_role(), e.revenue_at_risk.as_str()),
            (ExceptionKind::StockRisk, Role::SupplyChain, "1234.50")
        );
        assert_eq!(e.exception_id, "gate-stock-R1-r1");
        // An agreement revoked since approval holds every region; one already invalid does not.
        let mut revoked = assessment(0, 1, &[]);
        revoked.margin.as_mut().unwrap().forecast_revenue = "9000.00".into();
        let holds = gate_holds(&assessment(0, 0, &[]), &revoked, "r2");
        assert_eq!(holds.len(), 1, "{holds:?}");
        assert_eq!(holds[0].hold, Hold::Funding);
        assert_eq!(holds[0].regions, ["R1", "R2", "R3"]);
        let e = &holds[0].exception;
        assert_eq!((e.owner_role(), e.revenue_at_risk.as_str()), (Role::Finance, "9000.00"));
        assert!(e.detail.contains("agreement FA-1 no longer valid"), "{}", e.detail);
        assert!(gate_holds(&assessment(0, 1, &[]), &assessment(0, 1, &[]), "r1").is_empty());
    }

    #[test]
    fn a_region_activates_only_when_its_time_acks_and_operators_allow() {
        assert_eq!(activation(&gate()), Activation::Activate);
        assert_eq!(activation(&Gate { now: 99, ..gate() }), Activation::Wait);
        assert_eq!(activation(&Gate { acknowledged: false, ..gate() }), Activation::Wait);
        assert_eq!(activation(&Gate { paused: true, ..gate() }), Activation::Wait);
        assert_eq!(activation(&Gate { held: true, ..gate() }), Activation::Wait);
        assert_eq!(activation(&Gate { held: true, overridden: true, ..gate() }), Activation::Activate);
        assert_eq!(activation(&Gate { state: RegionState::Active, ..gate() }), Activation::Wait);
        assert_eq!(activation(&Gate { state: RegionState::Delayed, ..gate() }), Activation::Activate);
        assert_eq!(activation(&Gate { window_over: true, ..gate() }), Activation::MissedWindow);
        assert_eq!(activation(&Gate { window_over: true, acknowledged: false, ..gate() }), Activation::Wait);
        assert_eq!(activation(&Gate { held_at_gate: true, ..gate() }), Activation::Wait);
        assert_eq!(activation(&Gate { held_at_gate: true, overridden: true, ..gate() }), Activation::Wait);
        assert_eq!(activation(&Gate { held_at_gate: true, window_over: true, ..gate() }), Activation::Wait);
    }

    #[test]
    fn on_time_means_the_planned_instant_within_the_slack() {
        assert!(launched_on_time(1000, 1000, 1000 + 3600, 1));
        assert!(!launched_on_time(1000, 1000, 1000 + 3601, 1));
        // On a compressed clock five wall seconds are the slack.
        assert!(launched_on_time(1000, 1000, 1000 + 5 * 43_200, 43_200));
        // A region delayed by remediation is late by definition.
        assert!(!launched_on_time(1000, 2000, 2000, 1));
    }

    #[test]
    fn the_active_loop_wakes_at_the_earliest_of_end_launch_and_monitoring() {
        assert_eq!(next_wakeup(100, None, None), (100, Wake::End));
        assert_eq!(next_wakeup(100, Some(50), Some(70)), (50, Wake::Launch));
        assert_eq!(next_wakeup(100, Some(80), Some(70)), (70, Wake::Monitor));
        assert_eq!(next_wakeup(100, Some(100), None), (100, Wake::End));
        assert_eq!(Wake::Monitor.describe(), "monitoring");
    }

    #[test]
    fn a_withdrawn_acknowledgment_puts_the_revenue_of_the_regions_it_holds_at_risk() {
        use promo_contracts::promo::v1::{MarginSummary, RegionAlignment};
        let region = |id: &str, units| RegionAlignment {
            region_id: id.into(),
            demand_units: units,
            ..Default::default()
        };
        let a = AssessmentSummary {
            margin: Some(MarginSummary { forecast_revenue: "1000.00".into(), ..Default::default() }),
            regions: vec![region("R1", 300), region("R3", 100)],
            ..Default::default()
        };
        assert_eq!(channel_revenue_at_risk(&a, Some("R1")), "750");
        assert_eq!(channel_revenue_at_risk(&a, Some("R3")), "250");
        assert_eq!(channel_revenue_at_risk(&a, None), "1000", "a national channel holds every region");
        assert_eq!(channel_revenue_at_risk(&a, Some("R9")), "0");
        assert_eq!(channel_revenue_at_risk(&AssessmentSummary::default(), Some("R1")), "0");
        // R1's 750 over 10 stores × 5 days is 15 a store-day: 4 store-days out of stock, 60.
        assert_eq!(stockout_revenue_at_risk(&a, "R1", 4, 10, 5.0), "60");
        assert_eq!(stockout_revenue_at_risk(&a, "R1", 0, 10, 5.0), "0");
        assert_eq!(stockout_revenue_at_risk(&a, "R1", 4, 0, 5.0), "0", "no stores known");
        let p = PublicationRef {
            publication_id: "PUB-7".into(),
            target: crate::api::Target {
                channel: promo_contracts::retail::v1::Channel::Pos as i32,
                region_id: "R3".into(),
            },
            kind: 1,
            acknowledged_at_ms: None,
        };
        let e = ack_withdrawn_exception(&p, 2, &["R3".into()], "250".into());
        assert_eq!(e.exception_id, "gate-channel-POS-R3-r2");
        assert_eq!(
            (e.kind(), e.owner_role(), e.region_id.as_str(), e.revenue_at_risk.as_str()),
            (ExceptionKind::ChannelSync, Role::Operations, "R3", "250")
        );
        assert!(
            e.detail.contains("POS R3 took back its acknowledgment of publication PUB-7"),
            "{}",
            e.detail
        );
        assert!(e.detail.contains("region R3 held"), "{}", e.detail);
    }

    #[test]
    fn late_acks_and_channel_sync_exceptions_are_named_by_policy_and_target() {
        assert_eq!(
            late_ack_note(LateAckAction::DelayRegion),
            "launch delayed until its channels acknowledge"
        );
        assert_eq!(late_ack_note(LateAckAction::HoldLaunch), "launch held until every channel acknowledges");
        let p = PublicationRef {
            publication_id: "PUB-1".into(),
            target: crate::api::Target {
                channel: promo_contracts::retail::v1::Channel::Pos as i32,
                region_id: "R5".into(),
            },
            kind: 1,
            acknowledged_at_ms: None,
        };
        let e = channel_sync_exception(&p, 2, "12.50".into());
        assert_eq!(e.exception_id, "channel-POS-R5-r2");
        assert_eq!(
            (e.kind(), e.owner_role(), e.region_id.as_str()),
            (ExceptionKind::ChannelSync, Role::Operations, "R5")
        );
        assert_eq!(e.detail, "POS publication PUB-1 not acknowledged by the deadline");
        let national =
            PublicationRef { target: crate::api::Target { channel: 2, region_id: String::new() }, ..p };
        assert!(channel_sync_exception(&national, 1, "0".into()).exception_id.ends_with("-national-r1"));
        let c = compensation_pending_exception(
            "the revert of the ERP price change",
            "ERP: unavailable",
            "9".into(),
        );
        assert_eq!((c.kind(), c.severity()), (ExceptionKind::CompensationPending, Severity::High));
    }
}
