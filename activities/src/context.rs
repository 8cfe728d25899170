//! What an assessment needs, loaded through the contracts: resolved lines (prices, costs, uplift,
//! funding), the regions and stores in scope, and the streamed store × SKU data.

use crate::{
    Systems, business,
    checks::{self, BadResponse, ColumnarStream},
    engines::{alignment, forecast::uplift_from_history, funding},
    learned::{self, ModelState},
    status_error,
};
use promo_contracts::{
    domain::{FundingAgreement, Product},
    promo::v1 as pb,
    retail::v1::*,
};
use promo_workflows::{
    api::Adjustments,
    plan::{Plan, PlanLine},
};
use rust_decimal::{Decimal, prelude::ToPrimitive};
use std::collections::{BTreeSet, HashMap};
use temporalio_sdk::activities::ActivityError;

const DAY: f64 = 86_400.0;

/// A line with everything the engines need.
#[derive(Debug, Clone)]
pub struct Line {
    /// SKU.
    pub sku: String,
    /// Promo price.
    pub promo_price: Decimal,
    /// Promo price as f64 (for the hot loops).
    pub price_f64: f64,
    /// Regular price.
    pub regular: Decimal,
    /// Unit cost.
    pub cost: Decimal,
    /// Uplift used for the forecast: the mean over the regions in scope of `uplift_by_region`.
    pub uplift: f64,
    /// Uplift per region in scope (the context's `regions` order).
    pub uplift_by_region: Vec<f64>,
    /// "planner", "model" or "history".
    pub uplift_source: &'static str,
    /// How the uplift was computed.
    pub uplift_explanation: String,
    /// Agreement id and funding per unit, when validly funded.
    pub funding: Option<(String, Decimal)>,
    /// Agreement id and why it does not fund, when the line references an invalid agreement.
    pub funding_issue: Option<(String, String)>,
    /// promo − cost + valid funding, per unit.
    pub unit_margin: Decimal,
    /// `unit_margin` as f64.
    pub unit_margin_f64: f64,
    /// Merchandise category (the peer group of margin anomalies).
    pub category: String,
    /// Price band within the category (also the peer group).
    pub price_band: u32,
}

/// The assessment context of one plan.
#[derive(Debug, Clone)]
pub struct Context {
    /// Promotion id.
    pub promotion_id: String,
    /// Lines in plan order.
    pub lines: Vec<Line>,
    /// Regions in scope.
    pub regions: Vec<String>,
    /// Stores per region in scope.
    pub stores_per_region: Vec<u32>,
    /// Store id → region index, for stores in scope.
    pub store_region: HashMap<String, u16>,
    /// Launch per region (remediation delays applied).
    pub launch: Vec<i64>,
    /// Window start.
    pub starts_at: i64,
    /// Window end.
    pub ends_at: i64,
    /// `excluded[region][line]`.
    pub excluded: Vec<Vec<bool>>,
    /// Agreements referenced, by id.
    pub agreements: HashMap<String, FundingAgreement>,
    /// The uplift model behind the forecast, when one was fitted (or why none was).
    pub forecast_model: Option<pb::ForecastModel>,
    /// The fitted model itself, when the forecast used it.
    pub learned: Option<std::sync::Arc<learned::Learned>>,
    /// The plan's lines (offers), aligned with the first `plan_lines.len()` of `lines`.
    plan_lines: Vec<PlanLine>,
    region_ids_req: Vec<String>,
    store_ids_req: Vec<String>,
}

/// Loads products, agreements, history and locations for `plan`.
pub async fn load_context(
    systems: &Systems,
    plan: &Plan,
    adjustments: &Adjustments,
    only_regions: &[String],
) -> Result<Context, ActivityError> {
    // Substitutes chosen in remediation, each with the line it stands in for (plan order).
    let mut substitutes: Vec<(String, usize)> = Vec::new();
    for m in adjustments.substitutes.values() {
        for (original, sub) in m {
            let Some(k) = plan.lines.iter().position(|l| &l.sku == original) else { continue };
            if !substitutes.iter().any(|(s, _)| s == sub) && !plan.lines.iter().any(|l| &l.sku == sub) {
                substitutes.push((sub.clone(), k));
            }
        }
    }
    let skus: Vec<String> =
        plan.lines.iter().map(|l| l.sku.clone()).chain(substitutes.iter().map(|s| s.0.clone())).collect();
    let agreement_ids: Vec<String> = plan
        .lines
        .iter()
        .filter_map(|l| l.funding_agreement_id.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let history_skus: Vec<String> =
        plan.lines.iter().filter(|l| l.planned_uplift.is_none()).map(|l| l.sku.clone()).collect();
    let needs_model = !history_skus.is_empty();
    let model = async { if needs_model { Some(learned::learned_model(systems).await) } else { None } };
    let (products, agreements, history, locations, model) = tokio::join!(
        rpc!(systems.products(), get_products, GetProductsRequest { skus: skus.clone() }),
        rpc!(
            systems.funding(),
            get_agreements,
            GetAgreementsRequest { agreement_ids: agreement_ids.clone() }
        ),
        rpc!(
            systems.demand(),
            get_promotion_history,
            GetPromotionHistoryRequest { skus: history_skus.clone() }
        ),
        rpc!(systems.locations(), list_locations, ListLocationsRequest {}),
        model,
    );
    let products = products.map_err(|s| status_error("product master", s))?.into_inner().products;
    let agreements = agreements.map_err(|s| status_error("funding", s))?.into_inner();
    let history = history.map_err(|s| status_error("demand history", s))?.into_inner().history;
    let locations = locations.map_err(|s| status_error("locations", s))?.into_inner();

    let products = checks::products(&skus, &products).map_err(BadResponse::into_activity_error)?;
    let agreements =
        checks::agreements(&agreement_ids, &agreements).map_err(BadResponse::into_activity_error)?;
    let history = checks::history(&history_skus, &history).map_err(BadResponse::into_activity_error)?;
    checks::locations(&locations).map_err(BadResponse::into_activity_error)?;
    let mut by_sku: HashMap<String, Vec<(Decimal, Decimal)>> = HashMap::new();
    for h in history {
        by_sku.entry(h.sku).or_default().push((h.discount_depth, h.realised_uplift));
    }

    // Regions in scope: whole regions and the regions of individual stores.
    let store_region_id: HashMap<&str, &str> =
        locations.stores.iter().map(|s| (s.store_id.as_str(), s.region_id.as_str())).collect();
    let mut regions: Vec<String> = plan.regions.clone();
    for s in &plan.stores {
        if let Some(r) = store_region_id.get(s.as_str())
            && !regions.iter().any(|x| x == r)
        {
            regions.push((*r).to_owned());
        }
    }
    if !only_regions.is_empty() {
        regions.retain(|r| only_regions.contains(r));
    }
    let learned = match &model {
        Some(ModelState::Ready(l)) => Some(l.clone()),
        _ => None,
    };
    let mut lines = Vec::with_capacity(plan.lines.len());
    for l in &plan.lines {
        let p = products.get(&l.sku).ok_or_else(|| business(format!("unknown SKU {}", l.sku)))?;
        let promo_price = l.promo_price(p.regular_price);
        let depth = ((p.regular_price - promo_price) / p.regular_price).to_f64().unwrap_or(0.0);
        let (uplift_by_region, uplift_source, uplift_explanation) = match (l.planned_uplift, &learned) {
            (Some(u), _) => (vec![u.to_f64().unwrap_or(1.0); regions.len()], "planner", String::new()),
            (None, Some(m)) => {
                let by_region: Vec<f64> =
                    regions.iter().map(|r| m.model.terms(&p.category, Some(r), 0, depth).lift).collect();
                (by_region, "model", model_explanation(m, &l.sku, &p.category, depth, &regions))
            }
            (None, None) => {
                let past = by_sku.get(&l.sku).map_or(&[][..], |v| v);
                let u = uplift_from_history(past, depth);
                let why = format!(
                    "per-SKU slope through {} past promotions at {:.0}% off",
                    past.len(),
                    depth * 100.0
                );
                (vec![u; regions.len()], "history", why)
            }
        };
        let uplift = mean_or(&uplift_by_region, 1.0);
        let (mut funding, mut funding_issue) = (None, None);
        if let Some(id) = &l.funding_agreement_id {
            match funding::funding_problem(agreements.get(id), &l.sku, plan.starts_at, plan.ends_at) {
                None => funding = Some((id.clone(), agreements[id].funding_per_unit)),
                Some(why) => funding_issue = Some((id.clone(), why)),
            }
        }
        let unit_margin = promo_price - p.cost + funding.as_ref().map_or(Decimal::ZERO, |f| f.1);
        lines.push(Line {
            sku: l.sku.clone(),
            promo_price,
            price_f64: promo_price.to_f64().unwrap_or(0.0),
            regular: p.regular_price,
            cost: p.cost,
            uplift,
            uplift_by_region,
            uplift_source,
            uplift_explanation,
            funding,
            funding_issue,
            unit_margin,
            unit_margin_f64: unit_margin.to_f64().unwrap_or(0.0),
            category: p.category.clone(),
            price_band: p.price_band,
        });
    }

    // A substitute sells at its original's discount depth with its original's uplift, unfunded
    // (funding agreements are per SKU).
    for (sub, k) in &substitutes {
        let p = products.get(sub).ok_or_else(|| business(format!("unknown substitute SKU {sub}")))?;
        let line = substitute_line(&plan.lines[*k], &lines[*k], p);
        lines.push(line);
    }

    let region_index: HashMap<&str, u16> =
        regions.iter().enumerate().map(|(i, r)| (r.as_str(), i as u16)).collect();
    let whole: BTreeSet<&str> = plan.regions.iter().map(String::as_str).collect();
    let named: BTreeSet<&str> = plan.stores.iter().map(String::as_str).collect();
    let mut store_region = HashMap::new();
    let mut stores_per_region = vec![0u32; regions.len()];
    for s in &locations.stores {
        let Some(&r) = region_index.get(s.region_id.as_str()) else { continue };
        if whole.contains(s.region_id.as_str()) || named.contains(s.store_id.as_str()) {
            store_region.insert(s.store_id.clone(), r);
            stores_per_region[r as usize] += 1;
        }
    }
    let launch: Vec<i64> = regions
        .iter()
        .map(|r| adjustments.delays.get(r).copied().unwrap_or(plan.starts_at).max(plan.starts_at))
        .collect();
    // A line is out of a region where it was dropped or substituted; a substitute is in only
    // where it stands in.
    let excluded = regions
        .iter()
        .map(|r| {
            let dropped = adjustments.dropped.get(r);
            let subs = adjustments.substitutes.get(r);
            lines
                .iter()
                .enumerate()
                .map(|(k, l)| {
                    if k < plan.lines.len() {
                        dropped.is_some_and(|d| d.contains(&l.sku))
                            || subs.is_some_and(|m| m.get(&l.sku).is_some_and(|s| s != &l.sku))
                    } else {
                        subs.is_none_or(|m| !m.values().any(|s| s == &l.sku))
                    }
                })
                .collect()
        })
        .collect();
    Ok(Context {
        promotion_id: plan.promotion_id.clone(),
        lines,
        region_ids_req: plan
            .regions
            .iter()
            .filter(|r| region_index.contains_key(r.as_str()))
            .cloned()
            .collect(),
        store_ids_req: plan.stores.iter().filter(|s| store_region.contains_key(*s)).cloned().collect(),
        regions,
        stores_per_region,
        store_region,
        launch,
        starts_at: plan.starts_at,
        ends_at: plan.ends_at,
        excluded,
        agreements,
        forecast_model: forecast_model_record(&model, plan.lines.len()),
        learned: learned.clone(),
        plan_lines: plan.lines.clone(),
    })
}

fn mean_or(xs: &[f64], empty: f64) -> f64 {
    if xs.is_empty() { empty } else { xs.iter().sum::<f64>() / xs.len() as f64 }
}

/// "grills, 25% price cut: exp(…) = 1.79 (R1 1.83, R2 1.74) [uplift-glm/1@…]".
fn model_explanation(
    m: &learned::Learned,
    sku: &str,
    category: &str,
    depth: f64,
    regions: &[String],
) -> String {
    let per_region: Vec<String> = regions
        .iter()
        .map(|r| format!("{r} {:.2}", m.model.terms(category, Some(r), 0, depth).lift))
        .collect();
    format!(
        "{sku}: {} ({}) [{}]",
        m.model.explain(category, None, 0, depth),
        if per_region.is_empty() { "no region in scope".to_owned() } else { per_region.join(", ") },
        m.version
    )
}

/// The model's record for the assessment, or the reason it was not used; `None` when every
/// line's uplift came from the planner (no model was asked for).
fn forecast_model_record(model: &Option<ModelState>, _lines: usize) -> Option<pb::ForecastModel> {
    match model {
        None => None,
        Some(ModelState::Ready(l)) => Some(l.record()),
        Some(ModelState::Unavailable(why)) => {
            Some(pb::ForecastModel { fallback_reason: why.clone(), ..Default::default() })
        }
    }
}

/// The line of substitute `p` standing in for `original` (plan line `plan_line`): the same
/// discount depth off its own regular price, the original's uplift, unfunded (funding
/// agreements are per SKU).
fn substitute_line(plan_line: &PlanLine, original: &Line, p: &Product) -> Line {
    let promo_price = plan_line.substitute_price(original.regular, p.regular_price);
    let unit_margin = promo_price - p.cost;
    Line {
        sku: p.sku.clone(),
        promo_price,
        price_f64: promo_price.to_f64().unwrap_or(0.0),
        regular: p.regular_price,
        cost: p.cost,
        uplift: original.uplift,
        uplift_by_region: original.uplift_by_region.clone(),
        uplift_source: original.uplift_source,
        uplift_explanation: original.uplift_explanation.clone(),
        funding: None,
        funding_issue: None,
        unit_margin,
        unit_margin_f64: unit_margin.to_f64().unwrap_or(0.0),
        category: p.category.clone(),
        price_band: p.price_band,
    }
}

impl Context {
    /// A context over `candidates` instead of the promotion's lines, each `(plan line index,
    /// product)` priced and forecast as a substitute for that line, in the regions flagged in
    /// `regions` only (the others are neither streamed nor counted).
    pub fn substitute_candidates(&self, candidates: &[(usize, Product)], regions: &[bool]) -> Context {
        let lines: Vec<Line> = candidates
            .iter()
            .map(|(k, p)| substitute_line(&self.plan_lines[*k], &self.lines[*k], p))
            .collect();
        let store_region: HashMap<String, u16> = self
            .store_region
            .iter()
            .filter(|(_, r)| regions[**r as usize])
            .map(|(s, r)| (s.clone(), *r))
            .collect();
        Context {
            promotion_id: self.promotion_id.clone(),
            excluded: regions.iter().map(|&live| vec![!live; lines.len()]).collect(),
            lines,
            forecast_model: self.forecast_model.clone(),
            learned: self.learned.clone(),
            regions: self.regions.clone(),
            stores_per_region: self.stores_per_region.clone(),
            launch: self.launch.clone(),
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            agreements: HashMap::new(),
            plan_lines: Vec::new(),
            region_ids_req: self
                .region_ids_req
                .iter()
                .filter(|r| self.regions.iter().position(|x| x == *r).is_some_and(|i| regions[i]))
                .cloned()
                .collect(),
            store_ids_req: self
                .store_ids_req
                .iter()
                .filter(|s| store_region.contains_key(*s))
                .cloned()
                .collect(),
            store_region,
        }
    }

    fn skus(&self) -> Vec<String> {
        self.lines.iter().map(|l| l.sku.clone()).collect()
    }

    /// Regions where line `k` is on promotion, as contracts that take a line's regions want
    /// them: `Some(empty)` when it is everywhere in scope, `None` when it is nowhere (dropped or
    /// substituted in every region).
    pub fn line_regions(&self, k: usize) -> Option<Vec<String>> {
        let live = |row: &Vec<bool>| !row[k];
        match self.excluded.iter().filter(|row| live(row)).count() {
            0 if !self.regions.is_empty() => None,
            n if n == self.regions.len() => Some(Vec::new()),
            _ => Some(
                self.regions
                    .iter()
                    .zip(&self.excluded)
                    .filter(|(_, row)| live(row))
                    .map(|(r, _)| r.clone())
                    .collect(),
            ),
        }
    }

    /// The price lines of the promotion, each with the regions it applies in.
    pub fn price_lines(&self) -> Vec<(String, Decimal, Vec<String>)> {
        (0..self.lines.len())
            .filter_map(|k| {
                self.line_regions(k).map(|r| (self.lines[k].sku.clone(), self.lines[k].promo_price, r))
            })
            .collect()
    }

    /// Days live per region.
    pub fn days(&self) -> Vec<f32> {
        self.launch.iter().map(|l| ((self.ends_at - l).max(0) as f64 / DAY) as f32).collect()
    }

    /// The alignment scenario (launches, days, uplift, exclusions).
    pub fn scenario(&self) -> alignment::Scenario {
        alignment::Scenario {
            launch: self.launch.clone(),
            days: self.days(),
            uplift: (0..self.regions.len())
                .map(|r| self.lines.iter().map(|l| l.uplift_by_region[r] as f32).collect())
                .collect(),
            excluded: self.excluded.clone(),
        }
    }

    /// Streams baseline demand; returns `[region][line]` summed daily units.
    pub async fn demand_by_region_line(&self, systems: &Systems) -> Result<Vec<Vec<f64>>, ActivityError> {
        let mut out = vec![vec![0f64; self.lines.len()]; self.regions.len()];
        if self.nothing_to_stream() {
            return Ok(out);
        }
        let skus = self.skus();
        let (mut stream, mut check) = self.demand_stream(systems, &skus).await?;
        while let Some(msg) = stream.message().await.map_err(|s| status_error("demand stream", s))? {
            check.next_batch(&msg.sku_dictionary).map_err(BadResponse::into_activity_error)?;
            for st in &msg.stores {
                let r = check.demand(st).map_err(BadResponse::into_activity_error)?;
                let row = &mut out[r as usize];
                for (x, d) in st.sku_index.iter().zip(&st.daily_units) {
                    row[check.line(*x)] += f64::from(*d);
                }
            }
        }
        Ok(out)
    }

    /// Opens the baseline-demand stream of `skus` over the stores in scope, with the checker of
    /// its batches.
    async fn demand_stream<'a>(
        &'a self,
        systems: &Systems,
        skus: &'a [String],
    ) -> Result<(tonic::Streaming<StreamBaselineDemandResponse>, ColumnarStream<'a>), ActivityError> {
        let req = StreamBaselineDemandRequest {
            skus: skus.to_vec(),
            region_ids: self.region_ids_req.clone(),
            store_ids: self.store_ids_req.clone(),
            stores_per_message: 0,
        };
        let stream = rpc!(systems.demand(), stream_baseline_demand, req.clone())
            .await
            .map_err(|s| status_error("demand", s))?
            .into_inner();
        let check =
            ColumnarStream::new("demand", "StreamBaselineDemand", skus, &self.store_region, &self.regions);
        Ok((stream, check))
    }

    /// Whether no store is in scope or no SKU is asked for, so there is nothing to stream (an
    /// empty `skus` would ask the services for every SKU).
    fn nothing_to_stream(&self) -> bool {
        (self.region_ids_req.is_empty() && self.store_ids_req.is_empty()) || self.lines.is_empty()
    }

    /// Streams positions and demand concurrently into store × SKU cells, checking both streams
    /// ([`ColumnarStream`]).
    pub async fn cells(&self, systems: &Systems) -> Result<alignment::Cells, ActivityError> {
        let mut cells = alignment::Cells::default();
        if self.nothing_to_stream() {
            return Ok(cells);
        }
        let skus = self.skus();
        let bad = BadResponse::into_activity_error;
        let demand = async {
            let (mut stream, mut check) = self.demand_stream(systems, &skus).await?;
            let mut by_store: HashMap<String, Vec<f32>> = HashMap::with_capacity(self.store_region.len());
            while let Some(msg) = stream.message().await.map_err(|s| status_error("demand", s))? {
                check.next_batch(&msg.sku_dictionary).map_err(bad)?;
                for st in msg.stores {
                    check.demand(&st).map_err(bad)?;
                    let mut row = vec![0f32; self.lines.len()];
                    for (x, d) in st.sku_index.iter().zip(&st.daily_units) {
                        row[check.line(*x)] = *d;
                    }
                    by_store.insert(st.store_id, row);
                }
            }
            Ok::<_, ActivityError>(by_store)
        };
        let positions = async {
            let mut stream = rpc!(
                systems.inventory(),
                stream_positions,
                StreamPositionsRequest {
                    skus: skus.clone(),
                    region_ids: self.region_ids_req.clone(),
                    store_ids: self.store_ids_req.clone(),
                    include_dcs: false,
                    locations_per_message: 0,
                }
            )
            .await
            .map_err(|s| status_error("inventory", s))?
            .into_inner();
            let mut check =
                ColumnarStream::new("inventory", "StreamPositions", &skus, &self.store_region, &self.regions);
            let mut all = Vec::new();
            while let Some(msg) = stream.message().await.map_err(|s| status_error("inventory", s))? {
                check.next_batch(&msg.sku_dictionary).map_err(bad)?;
                for mut loc in msg.locations {
                    let r = check.positions(&loc).map_err(bad)?;
                    // From here on the index column holds line indexes.
                    for x in &mut loc.sku_index {
                        *x = check.line(*x) as u32;
                    }
                    all.push((r, loc));
                }
            }
            Ok::<_, ActivityError>(all)
        };
        let (demand, positions) = tokio::join!(demand, positions);
        let (demand, positions) = (demand?, positions?);
        let n: usize = positions.iter().map(|(_, l)| l.sku_index.len()).sum();
        cells.reserve(n);
        // Checked above: equal columns, line indexes in range, quantities within 0..=i32::MAX.
        for (r, loc) in &positions {
            let daily = demand.get(&loc.location_id);
            cells.begin_store(&loc.location_id);
            for i in 0..loc.sku_index.len() {
                let k = loc.sku_index[i];
                cells.push(
                    *r,
                    k,
                    daily.map_or(0.0, |d| d[k as usize]),
                    loc.on_hand[i] as i32,
                    loc.in_transit[i] as i32,
                    loc.in_transit_eta[i],
                    loc.supplier_confirmed[i] as i32,
                    loc.supplier_confirmed_eta[i],
                );
            }
        }
        Ok(cells)
    }
}
