//! Intake: turning a [`PromotionSpec`] into a validated [`Plan`], reporting every problem at once
//! with the promotion line (1-based) and field it is on. Pure functions: the CLI runs them before
//! starting a workflow, and the intake activity runs them again with master data.
//!
//! [`validate_spec`] is all or nothing. Intake wants every problem in one list, so it uses
//! [`validate_spec_partial`], which also keeps the parts of a spec that are well-formed, checks
//! those against master data ([`check_master_partial`]) even when other parts have problems,
//! adds the approval lead time ([`lead_time_problem`]) and sorts the lot ([`sort_problems`]).

use chrono::{LocalResult, NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use promo_contracts::{
    domain::Product,
    money::{parse_decimal, parse_price},
    promo::v1::{PromotionSpec, promotion_line::Offer},
    retail::v1::Channel,
};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::{
    collections::{HashMap, HashSet},
    fmt,
    time::Duration,
};

/// Largest spec accepted, in bytes of JSON: keeps the workflow input far below Temporal's 2 MB
/// payload limit and the history lean.
pub const MAX_SPEC_BYTES: usize = 256 * 1024;
/// Most lines a promotion may have.
pub const MAX_LINES: usize = 2_000;

/// One problem with a spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Promotion line (1-based) the problem is on, if it is on a line.
    pub line: Option<usize>,
    /// Field path, e.g. `lines[2].promo_price` or `window.starts_at`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "line {l}: {}: {}", self.field, self.message),
            None => write!(f, "{}: {}", self.field, self.message),
        }
    }
}

/// Sorts problems by line, problems with the whole spec first; problems on one line keep their
/// order (shape before master data), so a planner reads the spec top to bottom.
pub fn sort_problems(problems: &mut [Problem]) {
    problems.sort_by_key(|p| p.line);
}

/// Renders problems one per line, for errors shown to people.
pub fn describe(problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n")
}

/// The offer of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OfferKind {
    /// An explicit promotional price.
    Price(Decimal),
    /// A percentage off the regular price.
    DiscountPercent(Decimal),
}

/// A validated line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanLine {
    /// SKU.
    pub sku: String,
    /// Offer.
    pub offer: OfferKind,
    /// Funding agreement, if funded.
    pub funding_agreement_id: Option<String>,
    /// Planner's uplift, if given.
    pub planned_uplift: Option<Decimal>,
}

impl PlanLine {
    /// The promotional price given the regular price (discounts rounded to cents).
    pub fn promo_price(&self, regular: Decimal) -> Decimal {
        match self.offer {
            OfferKind::Price(p) => p,
            OfferKind::DiscountPercent(d) => (regular * (Decimal::ONE_HUNDRED - d) / Decimal::ONE_HUNDRED)
                .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero),
        }
    }

    /// The promotional price of a substitute SKU standing in for this line: the same discount
    /// depth off the substitute's own regular price (`regular` is this line's regular price).
    pub fn substitute_price(&self, regular: Decimal, substitute_regular: Decimal) -> Decimal {
        match self.offer {
            OfferKind::DiscountPercent(_) => self.promo_price(substitute_regular),
            OfferKind::Price(p) if regular > Decimal::ZERO => (substitute_regular * p / regular)
                .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero),
            OfferKind::Price(_) => substitute_regular,
        }
    }
}

/// A validated spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Promotion id.
    pub promotion_id: String,
    /// Start, Unix seconds.
    pub starts_at: i64,
    /// End (exclusive), Unix seconds.
    pub ends_at: i64,
    /// Regions.
    pub regions: Vec<String>,
    /// Individual stores.
    pub stores: Vec<String>,
    /// Channels.
    pub channels: Vec<Channel>,
    /// Lines.
    pub lines: Vec<PlanLine>,
}

/// Resolves a local date-time in `tz`, refusing times that do not exist (DST gap); ambiguous
/// times (DST overlap) take the earlier instant.
pub fn resolve_local(field: &str, local: &str, tz: Tz) -> Result<i64, Problem> {
    let problem = |m: String| Problem { line: None, field: field.to_owned(), message: m };
    let naive = NaiveDateTime::parse_from_str(local, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(local, "%Y-%m-%dT%H:%M:%S"))
        .map_err(|_| problem(format!("{local:?} is not a local date-time like \"2026-12-05T00:00\"")))?;
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Ok(t.timestamp()),
        LocalResult::None => Err(problem(format!("{local:?} does not exist in {tz} (daylight-saving gap)"))),
    }
}

fn valid_id(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Validates the shape of a spec (no master data). `now` is Unix seconds (workflow time in a
/// workflow, the clock in the CLI). Returns every problem found.
pub fn validate_spec(spec: &PromotionSpec, now: i64) -> Result<Plan, Vec<Problem>> {
    let partial = validate_spec_partial(spec, now);
    partial.plan.ok_or(partial.problems)
}

/// A line of a spec whose SKU is well-formed (present, and not on an earlier line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialLine {
    /// Index in the spec's lines (0-based; the line number is one more).
    pub index: usize,
    /// The SKU.
    pub sku: String,
    /// The offer, when it is well-formed too.
    pub offer: Option<OfferKind>,
}

/// A spec checked for shape as far as it goes: the plan when there is no problem, and either
/// way the well-formed parts, which master data can still be checked against.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartialPlan {
    /// The plan, when the spec has no shape problem.
    pub plan: Option<Plan>,
    /// The window (start, end; Unix seconds), when well-formed and in the future.
    pub window: Option<(i64, i64)>,
    /// The window's time zone, when it is one.
    pub time_zone: Option<Tz>,
    /// Well-formed regions, each with its index in the spec's regions.
    pub regions: Vec<(usize, String)>,
    /// Well-formed stores, each with its index in the spec's stores.
    pub stores: Vec<(usize, String)>,
    /// Well-formed channels.
    pub channels: Vec<Channel>,
    /// Lines with a well-formed SKU; none when the spec has more than [`MAX_LINES`] lines (it is
    /// refused anyway, and its SKUs would be more than one master-data lookup takes).
    pub lines: Vec<PartialLine>,
    /// Every shape problem, in the order found (the order [`validate_spec`] reports).
    pub problems: Vec<Problem>,
}

impl PartialPlan {
    /// The parts of a valid plan (every line well-formed, at its index; no time zone, which a
    /// plan does not keep).
    pub fn of(plan: &Plan) -> Self {
        Self {
            plan: Some(plan.clone()),
            window: Some((plan.starts_at, plan.ends_at)),
            time_zone: None,
            regions: plan.regions.iter().cloned().enumerate().collect(),
            stores: plan.stores.iter().cloned().enumerate().collect(),
            channels: plan.channels.clone(),
            lines: plan
                .lines
                .iter()
                .enumerate()
                .map(|(index, l)| PartialLine { index, sku: l.sku.clone(), offer: Some(l.offer) })
                .collect(),
            problems: Vec::new(),
        }
    }

    /// The SKUs of the well-formed lines, in line order.
    pub fn skus(&self) -> Vec<String> {
        self.lines.iter().map(|l| l.sku.clone()).collect()
    }
}

/// [`validate_spec`], keeping what is well-formed next to the problems (see [`PartialPlan`]).
pub fn validate_spec_partial(spec: &PromotionSpec, now: i64) -> PartialPlan {
    let mut partial = PartialPlan::default();
    let mut problems = Vec::new();
    let mut top =
        |field: &str, message: String| problems.push(Problem { line: None, field: field.into(), message });
    if !valid_id(&spec.promotion_id) {
        top(
            "promotion_id",
            format!("{:?} must be 1–64 characters of letters, digits, '-', '_' or '.'", spec.promotion_id),
        );
    }
    if spec.name.trim().is_empty() {
        top("name", "is required".into());
    }
    if spec.planner_id.trim().is_empty() {
        top("planner_id", "is required (the planner's employee id)".into());
    }
    let mut window = None;
    match &spec.window {
        None => top("window", "is required".into()),
        Some(w) => match w.time_zone.parse::<Tz>() {
            Err(_) => top(
                "window.time_zone",
                format!("{:?} is not an IANA time zone like \"America/New_York\"", w.time_zone),
            ),
            Ok(tz) => {
                partial.time_zone = Some(tz);
                let start = resolve_local("window.starts_at", &w.starts_at, tz);
                let end = resolve_local("window.ends_at", &w.ends_at, tz);
                match (start, end) {
                    (Ok(s), Ok(e)) => {
                        if e <= s {
                            top(
                                "window.ends_at",
                                format!("{:?} must be after starts_at {:?}", w.ends_at, w.starts_at),
                            );
                        } else if s <= now {
                            top("window.starts_at", format!("{:?} is not in the future", w.starts_at));
                        } else {
                            window = Some((s, e));
                        }
                    }
                    (s, e) => {
                        problems.extend(s.err());
                        problems.extend(e.err());
                    }
                }
            }
        },
    }
    let mut top =
        |field: &str, message: String| problems.push(Problem { line: None, field: field.into(), message });
    if spec.regions.is_empty() && spec.stores.is_empty() {
        top("regions", "name at least one region or store".into());
    }
    for (field, list) in [("regions", &spec.regions), ("stores", &spec.stores)] {
        let mut seen = HashSet::new();
        for (i, r) in list.iter().enumerate() {
            if r.trim().is_empty() {
                top(&format!("{field}[{i}]"), "is empty".into());
            } else if !seen.insert(r) {
                top(&format!("{field}[{i}]"), format!("{r:?} is listed twice"));
            } else if field == "regions" {
                partial.regions.push((i, r.clone()));
            } else {
                partial.stores.push((i, r.clone()));
            }
        }
    }
    let mut channels = Vec::new();
    if spec.channels.is_empty() {
        top("channels", "name at least one channel".into());
    }
    for (i, c) in spec.channels.iter().enumerate() {
        match Channel::try_from(*c) {
            Ok(Channel::Unspecified) | Err(_) => {
                top(&format!("channels[{i}]"), format!("{c} is not a channel"))
            }
            Ok(ch) if channels.contains(&ch) => {
                top(&format!("channels[{i}]"), format!("{} is listed twice", ch.as_str_name()))
            }
            Ok(ch) => channels.push(ch),
        }
    }
    if spec.lines.is_empty() {
        top("lines", "a promotion needs at least one line".into());
    }
    if spec.lines.len() > MAX_LINES {
        top("lines", format!("{} lines; at most {MAX_LINES} are allowed", spec.lines.len()));
    }
    let mut lines = Vec::with_capacity(spec.lines.len());
    let mut seen = HashMap::new();
    for (i, l) in spec.lines.iter().enumerate() {
        let n = i + 1;
        let mut at = |field: &str, message: String| {
            problems.push(Problem { line: Some(n), field: format!("lines[{i}].{field}"), message })
        };
        let mut sku_ok = false;
        if l.sku.trim().is_empty() {
            at("sku", "is required".into());
        } else if let Some(first) = seen.insert(l.sku.clone(), n) {
            at("sku", format!("{} is already on line {first}", l.sku));
        } else {
            sku_ok = true;
        }
        let offer = match &l.offer {
            None => {
                at("offer", "set promo_price or discount_percent".into());
                None
            }
            Some(Offer::PromoPrice(p)) => parse_price("promo_price", p)
                .map(OfferKind::Price)
                .map_err(|e| at("promo_price", e.reason))
                .ok(),
            Some(Offer::DiscountPercent(d)) => match parse_decimal("discount_percent", d, 2) {
                Err(e) => {
                    at("discount_percent", e.reason);
                    None
                }
                Ok(v) if v <= Decimal::ZERO || v >= Decimal::ONE_HUNDRED => {
                    at("discount_percent", format!("{d:?} must be above 0 and below 100"));
                    None
                }
                Ok(v) => Some(OfferKind::DiscountPercent(v)),
            },
        };
        let funding = (!l.funding_agreement_id.is_empty()).then(|| l.funding_agreement_id.clone());
        if funding.as_deref().is_some_and(|f| !valid_id(f)) {
            at("funding_agreement_id", format!("{:?} is not an agreement id", l.funding_agreement_id));
        }
        let uplift = if l.planned_uplift.is_empty() {
            None
        } else {
            match parse_decimal("planned_uplift", &l.planned_uplift, 4) {
                Err(e) => {
                    at("planned_uplift", e.reason);
                    None
                }
                Ok(u) if u < Decimal::ONE || u > Decimal::from(20) => {
                    at("planned_uplift", format!("{:?} must be between 1 and 20", l.planned_uplift));
                    None
                }
                Ok(u) => Some(u),
            }
        };
        if sku_ok && spec.lines.len() <= MAX_LINES {
            partial.lines.push(PartialLine { index: i, sku: l.sku.clone(), offer });
        }
        if let Some(offer) = offer {
            lines.push(PlanLine {
                sku: l.sku.clone(),
                offer,
                funding_agreement_id: funding,
                planned_uplift: uplift,
            });
        }
    }
    partial.plan = match window {
        Some((starts_at, ends_at)) if problems.is_empty() => Some(Plan {
            promotion_id: spec.promotion_id.clone(),
            starts_at,
            ends_at,
            regions: spec.regions.clone(),
            stores: spec.stores.clone(),
            channels: channels.clone(),
            lines,
        }),
        _ => None,
    };
    partial.window = window;
    partial.channels = channels;
    partial.problems = problems;
    partial
}

/// The problem with launching at `starts_at` when approvals must be complete `lead_secs` before
/// launch and it is `now` (Unix seconds, business time): `None` when the launch leaves that
/// lead, when it is not in the future at all (the shape check says so), or when `lead_secs` is
/// 0 or less (no lead required). `tz` is the window's time zone: the message gives the launch
/// and the earliest possible one as local times a planner can paste into the spec.
pub fn lead_time_problem(starts_at: i64, now: i64, lead_secs: i64, tz: Tz) -> Option<Problem> {
    if lead_secs <= 0 || starts_at <= now || starts_at - now >= lead_secs {
        return None;
    }
    // Rounded up to the minute: the spec's local times have minutes, and rounding down would
    // suggest a launch a few seconds too soon.
    let earliest = now + lead_secs;
    let earliest = earliest + (60 - earliest.rem_euclid(60)) % 60;
    let local = |t: i64| {
        tz.timestamp_opt(t, 0)
            .single()
            .map_or_else(|| t.to_string(), |d| d.format("%Y-%m-%dT%H:%M").to_string())
    };
    let lead = crate::policy::Span(Duration::from_secs(lead_secs.unsigned_abs()));
    Some(Problem {
        line: None,
        field: "window.starts_at".into(),
        message: format!(
            "launches {} ({tz}), sooner than the approval lead time of {lead}; the earliest possible launch is {}",
            local(starts_at),
            local(earliest)
        ),
    })
}

/// Master data an intake check needs.
#[derive(Debug, Clone, Default)]
pub struct MasterData {
    /// Products by SKU (only those found).
    pub products: HashMap<String, Product>,
    /// Known region ids.
    pub regions: HashSet<String>,
    /// Known store id → region id.
    pub stores: HashMap<String, String>,
}

/// Checks a plan against master data: SKUs exist, promo price above zero and below regular,
/// channels eligible per SKU, regions and stores exist.
pub fn check_master(plan: &Plan, master: &MasterData) -> Vec<Problem> {
    check_master_partial(&PartialPlan::of(plan), master)
}

/// [`check_master`] over the well-formed parts of a spec that may have other problems: its
/// regions, stores and lines with a well-formed SKU (the price only where the offer is
/// well-formed too). Problems carry the spec's own line numbers and field paths.
pub fn check_master_partial(partial: &PartialPlan, master: &MasterData) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (i, r) in &partial.regions {
        if !master.regions.contains(r) {
            problems.push(Problem {
                line: None,
                field: format!("regions[{i}]"),
                message: format!("unknown region {r:?}"),
            });
        }
    }
    for (i, s) in &partial.stores {
        if !master.stores.contains_key(s) {
            problems.push(Problem {
                line: None,
                field: format!("stores[{i}]"),
                message: format!("unknown store {s:?}"),
            });
        }
    }
    for l in &partial.lines {
        let i = l.index;
        let at = |field: &str, message: String| Problem {
            line: Some(i + 1),
            field: format!("lines[{i}].{field}"),
            message,
        };
        let Some(p) = master.products.get(&l.sku) else {
            problems.push(at("sku", format!("unknown SKU {:?}", l.sku)));
            continue;
        };
        if let Some(offer) = l.offer {
            let line =
                PlanLine { sku: l.sku.clone(), offer, funding_agreement_id: None, planned_uplift: None };
            let price = line.promo_price(p.regular_price);
            if price >= p.regular_price {
                problems.push(at(
                    "promo_price",
                    format!("{} {price} is not below the regular price {}", l.sku, p.regular_price),
                ));
            } else if price <= Decimal::ZERO {
                problems.push(at("discount_percent", format!("{} leaves a price of {price}", l.sku)));
            }
        }
        let ineligible: Vec<&str> = partial
            .channels
            .iter()
            .filter(|c| !p.eligible_channels.contains(c))
            .map(|c| c.as_str_name())
            .collect();
        if !ineligible.is_empty() {
            problems.push(at("sku", format!("{} is not eligible for {}", l.sku, ineligible.join(", "))));
        }
    }
    problems
}

/// What a promotion occupies (SKU × location × dates), as the promotion calendar reserves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Footprint {
    /// Its promotion id.
    pub promotion_id: String,
    /// Start, Unix seconds.
    pub starts_at: i64,
    /// End, Unix seconds.
    pub ends_at: i64,
    /// Locations it covers: region ids and store ids.
    pub regions: Vec<String>,
    /// Stores named individually.
    pub stores: Vec<String>,
    /// Its SKUs.
    pub skus: Vec<String>,
}

impl Footprint {
    /// The footprint of a plan.
    pub fn of(plan: &Plan) -> Self {
        Self {
            promotion_id: plan.promotion_id.clone(),
            starts_at: plan.starts_at,
            ends_at: plan.ends_at,
            regions: plan.regions.clone(),
            stores: plan.stores.clone(),
            skus: plan.lines.iter().map(|l| l.sku.clone()).collect(),
        }
    }
}

/// A problem on every line of `plan` promoting one of `skus`, which collide with promotion
/// `other` in `locations` over overlapping dates (as the promotion calendar found them).
pub fn collision_problems(plan: &Plan, other: &str, skus: &[String], locations: &[String]) -> Vec<Problem> {
    let theirs: HashSet<&str> = skus.iter().map(String::as_str).collect();
    plan.lines
        .iter()
        .enumerate()
        .filter(|(_, l)| theirs.contains(l.sku.as_str()))
        .map(|(i, l)| Problem {
            line: Some(i + 1),
            field: format!("lines[{i}].sku"),
            message: format!(
                "{} collides with promotion {other} in {} over overlapping dates",
                l.sku,
                locations.join(", ")
            ),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use promo_contracts::promo::v1::{PromotionLine, PromotionWindow};

    pub(crate) fn spec() -> PromotionSpec {
        PromotionSpec {
            promotion_id: "SPRING-26".into(),
            name: "Spring".into(),
            window: Some(PromotionWindow {
                starts_at: "2030-04-01T00:00".into(),
                ends_at: "2030-04-15T00:00".into(),
                time_zone: "America/New_York".into(),
            }),
            regions: vec!["R1".into(), "R2".into()],
            stores: vec![],
            channels: vec![Channel::Pos as i32, Channel::Ecommerce as i32],
            lines: vec![
                PromotionLine {
                    sku: "SKU-1".into(),
                    offer: Some(Offer::PromoPrice("7.99".into())),
                    ..Default::default()
                },
                PromotionLine {
                    sku: "SKU-2".into(),
                    offer: Some(Offer::DiscountPercent("25".into())),
                    ..Default::default()
                },
            ],
            planner_id: "E0042".into(),
            description: String::new(),
        }
    }

    const NOW: i64 = 1_900_000_000; // 2030-03-17

    #[test]
    fn a_good_spec_becomes_a_plan() {
        let plan = validate_spec(&spec(), NOW).unwrap();
        assert_eq!(plan.ends_at - plan.starts_at, 14 * 86_400);
        assert_eq!(plan.lines[1].promo_price(Decimal::new(1000, 2)), Decimal::new(750, 2));
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_line() {
        let mut s = spec();
        s.promotion_id = "bad id!".into();
        s.window.as_mut().unwrap().ends_at = "2030-03-31T00:00".into();
        s.lines[0].offer = Some(Offer::PromoPrice("7.999".into()));
        s.lines[1].sku = "SKU-1".into();
        s.lines.push(PromotionLine {
            sku: "SKU-3".into(),
            offer: None,
            planned_uplift: "0.5".into(),
            ..Default::default()
        });
        let problems = validate_spec(&s, NOW).unwrap_err();
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(text.iter().any(|p| p.starts_with("promotion_id: ")), "{text:?}");
        assert!(text.iter().any(|p| p.starts_with("window.ends_at: ")), "{text:?}");
        assert!(
            text.contains(
                &"line 1: lines[0].promo_price: \"7.999\" has 3 decimal places; at most 2 are allowed"
                    .to_string()
            ),
            "{text:?}"
        );
        assert!(text.contains(&"line 2: lines[1].sku: SKU-1 is already on line 1".to_string()), "{text:?}");
        assert!(text.iter().any(|p| p.starts_with("line 3: lines[2].offer")), "{text:?}");
        assert!(text.iter().any(|p| p.starts_with("line 3: lines[2].planned_uplift")), "{text:?}");
    }

    #[test]
    fn dst_gap_and_past_windows_are_refused() {
        let mut s = spec();
        s.window.as_mut().unwrap().starts_at = "2030-03-10T02:30".into();
        let p = validate_spec(&s, NOW - 30 * 86_400).unwrap_err();
        assert!(p[0].message.contains("daylight-saving gap"), "{p:?}");
        let p = validate_spec(&spec(), NOW + 60 * 86_400).unwrap_err();
        assert!(p[0].message.contains("not in the future"), "{p:?}");
    }

    fn master(skus: &[(&str, &str)]) -> MasterData {
        MasterData {
            products: skus
                .iter()
                .map(|(sku, regular)| {
                    let p = Product {
                        sku: (*sku).into(),
                        category: "c".into(),
                        supplier_id: "s".into(),
                        cost: Decimal::ONE,
                        regular_price: regular.parse().unwrap(),
                        price_band: 1,
                        eligible_channels: vec![Channel::Pos, Channel::Ecommerce],
                    };
                    ((*sku).to_owned(), p)
                })
                .collect(),
            regions: ["R1".to_owned(), "R2".to_owned()].into(),
            stores: HashMap::new(),
        }
    }

    /// Shape and master-data problems of `s`, as intake reports them.
    fn intake_problems(s: &PromotionSpec, master: &MasterData) -> Vec<String> {
        let partial = validate_spec_partial(s, NOW);
        let mut problems = partial.problems.clone();
        problems.extend(check_master_partial(&partial, master));
        sort_problems(&mut problems);
        problems.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn master_data_is_checked_on_the_lines_that_are_well_formed_despite_other_problems() {
        let mut s = spec();
        s.lines[0].offer = Some(Offer::PromoPrice("-1".into()));
        s.lines[1].sku = "SKU-9".into();
        s.regions.push("R7".into());
        s.name = String::new();
        let text = intake_problems(&s, &master(&[("SKU-1", "9.99")]));
        assert_eq!(
            text,
            [
                "name: is required",
                "regions[2]: unknown region \"R7\"",
                "line 1: lines[0].promo_price: \"-1\" must be above zero",
                "line 2: lines[1].sku: unknown SKU \"SKU-9\"",
            ]
        );
        // validate_spec still reports the shape problems only, in its own order.
        assert_eq!(validate_spec(&s, NOW).unwrap_err().len(), 2);
    }

    #[test]
    fn lines_whose_sku_is_malformed_or_repeated_are_not_looked_up() {
        let mut s = spec();
        s.lines[1].sku = "SKU-1".into();
        s.lines.push(PromotionLine { sku: " ".into(), ..Default::default() });
        s.lines.push(PromotionLine {
            sku: "SKU-3".into(),
            offer: Some(Offer::PromoPrice("12.00".into())),
            ..Default::default()
        });
        let partial = validate_spec_partial(&s, NOW);
        assert_eq!(partial.plan, None);
        assert_eq!(partial.skus(), ["SKU-1", "SKU-3"]);
        let text = intake_problems(&s, &master(&[("SKU-1", "9.99"), ("SKU-3", "10.00")]));
        assert_eq!(
            text,
            [
                "line 2: lines[1].sku: SKU-1 is already on line 1",
                "line 3: lines[2].sku: is required",
                "line 3: lines[2].offer: set promo_price or discount_percent",
                "line 4: lines[3].promo_price: SKU-3 12.00 is not below the regular price 10.00",
            ]
        );
    }

    #[test]
    fn a_valid_spec_checks_against_master_data_as_a_plan_does() {
        let plan = validate_spec(&spec(), NOW).unwrap();
        let partial = validate_spec_partial(&spec(), NOW);
        assert_eq!(partial.plan.as_ref(), Some(&plan));
        let m = master(&[("SKU-1", "7.99")]);
        assert_eq!(check_master_partial(&partial, &m), check_master(&plan, &m));
        assert_eq!(check_master(&plan, &m).len(), 2, "price not below regular, SKU-2 unknown");
    }

    #[test]
    fn a_launch_inside_the_approval_lead_time_is_refused_with_the_earliest_launch() {
        let utc: Tz = "Etc/UTC".parse().unwrap();
        let at = |local: &str| resolve_local("t", local, utc).unwrap();
        let (starts, now) = (at("2026-12-03T10:00"), at("2026-12-02T18:00"));
        let p = lead_time_problem(starts, now, 24 * 3600, utc).unwrap();
        assert_eq!(
            p.to_string(),
            "window.starts_at: launches 2026-12-03T10:00 (Etc/UTC), sooner than the approval lead time of 1d; \
             the earliest possible launch is 2026-12-03T18:00"
        );
        assert_eq!(lead_time_problem(starts, now, 16 * 3600, utc), None, "exactly the lead time is enough");
        assert_eq!(lead_time_problem(starts, now, 0, utc), None, "0 means no check");
        assert_eq!(lead_time_problem(starts, starts + 60, 3600, utc), None, "the past is the shape check's");
        let p = lead_time_problem(starts, now + 30, 24 * 3600, utc).unwrap();
        assert!(p.message.ends_with("is 2026-12-03T18:01"), "rounded up to the minute: {p}");
        let ny: Tz = "America/New_York".parse().unwrap();
        let p = lead_time_problem(starts, now, 20 * 3600, ny).unwrap();
        assert_eq!(
            p.message,
            "launches 2026-12-03T05:00 (America/New_York), sooner than the approval lead time of 20h; \
             the earliest possible launch is 2026-12-03T09:00"
        );
    }

    #[test]
    fn a_collision_is_a_problem_on_every_line_of_a_shared_sku() {
        let plan = validate_spec(&spec(), NOW).unwrap();
        let p = collision_problems(&plan, "OTHER", &["SKU-2".into(), "SKU-9".into()], &["R2".into()]);
        assert_eq!(p.len(), 1);
        assert_eq!(
            p[0].to_string(),
            "line 2: lines[1].sku: SKU-2 collides with promotion OTHER in R2 over overlapping dates"
        );
    }
}
