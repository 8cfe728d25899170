//! A monitoring round's replenishment ([`engines::replenish`]): reads each store's sell-through
//! so far over `SalesService/StreamStoreSellThrough`, re-forecasts and plans each region, and
//! proposes the moves as transfer orders (planned, moving nothing until the workflow releases
//! them: at once within the policy's limit, after supply chain's approval above it).

use crate::{
    Systems,
    analysis::sales_request,
    business,
    context::Context,
    engines::replenish::{self, Cell, Line, Params},
    idempotency_key, learned, status_error,
};
use promo_contracts::{
    money::{format_money, format_ratio},
    pbjson_types::Timestamp,
    promo::v1 as pb,
    retail::v1::*,
};
use promo_workflows::api::{ReplenishInput, SalesInput};
use rust_decimal::{Decimal, prelude::FromPrimitive};
use std::collections::{BTreeMap, HashMap};
use temporalio_sdk::activities::ActivityError;

const DAY: f64 = 86_400.0;
/// Days a transfer takes to land (the replenishment system's lead time).
const LEAD_DAYS: f64 = 1.0;
/// Gamma shape of the lift prior when the model has no held-out spread to give one.
const DEFAULT_PRIOR_SHAPE: f64 = 10.0;
/// Store-level size of demand when no model gave one.
const DEFAULT_SIZE: f64 = 4.0;

/// One region's cells as streamed: the cells and the store ids they index.
#[derive(Default)]
struct Region {
    stores: Vec<String>,
    cells: Vec<Cell>,
}

/// Proposes this round's transfers; each comes back with its proposed order's id.
pub async fn propose(
    systems: &Systems,
    c: &Context,
    input: &SalesInput,
    r: &ReplenishInput,
) -> Result<Vec<pb::Transfer>, ActivityError> {
    let Some(req) = sales_request(c, input) else { return Ok(Vec::new()) };
    let as_of = input.windows.values().map(|w| w.1).max().unwrap_or(input.plan.starts_at);
    let end = input.plan.ends_at;
    let cost = |name: &str, v: &str| -> Result<f64, ActivityError> {
        v.parse::<f64>().map_err(|e| business(format!("replenish.{name}: {v:?}: {e}")))
    };
    let model = match &c.learned {
        Some(l) => Some(l.clone()),
        None => match learned::learned_model(systems).await {
            learned::ModelState::Ready(l) => Some(l),
            learned::ModelState::Unavailable(_) => None,
        },
    };
    let params = Params {
        days_left: (end - as_of) as f64 / DAY,
        lead_days: LEAD_DAYS,
        size: model.as_ref().and_then(|m| m.store_size).unwrap_or(DEFAULT_SIZE),
        prior_shape: model
            .as_ref()
            .and_then(|m| m.holdout.as_ref())
            .map(|h| h.log_spread)
            .filter(|s| *s > 0.01)
            .map_or(DEFAULT_PRIOR_SHAPE, |s| 1.0 / (s * s)),
        dc_unit_cost: cost("dc_unit_cost", &r.dc_unit_cost)?,
        store_unit_cost: cost("store_unit_cost", &r.store_unit_cost)?,
    };
    // Dictionary index (the request's lines) → context line.
    let line_of: Vec<usize> =
        req.lines.iter().map(|l| c.lines.iter().position(|x| x.sku == l.sku).unwrap_or(usize::MAX)).collect();
    let stream_req = StreamStoreSellThroughRequest {
        promotion_id: req.promotion_id.clone(),
        lines: req.lines.clone(),
        scopes: req.scopes.clone(),
        without_store_transfers: false,
    };
    let mut stream = rpc!(systems.sales(), stream_store_sell_through, stream_req.clone())
        .await
        .map_err(|s| status_error("sales", s))?
        .into_inner();
    let mut regions: BTreeMap<String, Region> = BTreeMap::new();
    let mut dcs: HashMap<String, Vec<i64>> = HashMap::new();
    let bad = |what: String| business(format!("sales: StreamStoreSellThrough: {what}"));
    while let Some(msg) = stream.message().await.map_err(|s| status_error("sales", s))? {
        for s in msg.stores {
            let n = s.sku_index.len();
            let lengths = [
                s.baseline.len(),
                s.units_sold.len(),
                s.in_stock_units.len(),
                s.in_stock_days.len(),
                s.stockout_days.len(),
                s.on_hand.len(),
                s.inbound_units.len(),
                s.inbound_eta.len(),
            ];
            if lengths.iter().any(|&l| l != n) {
                return Err(bad(format!("store {}: columns of unequal length", s.store_id)));
            }
            if !c.regions.contains(&s.region_id) {
                return Err(bad(format!(
                    "store {}: region_id {:?} was not asked for",
                    s.store_id, s.region_id
                )));
            }
            let region = regions.entry(s.region_id.clone()).or_default();
            let store = region.stores.len() as u32;
            region.stores.push(s.store_id.clone());
            for i in 0..n {
                let k = s.sku_index[i] as usize;
                if k >= line_of.len() {
                    return Err(bad(format!("store {}: sku_index[{i}] {k} is out of range", s.store_id)));
                }
                if s.on_hand[i] < 0 || s.inbound_units[i] < 0 {
                    return Err(bad(format!("store {}: negative stock at sku_index[{i}]", s.store_id)));
                }
                let lands = s.inbound_units[i] > 0 && s.inbound_eta[i] < end;
                region.cells.push(Cell {
                    store,
                    line: k as u32,
                    baseline: s.baseline[i].max(0.0),
                    in_stock_units: s.in_stock_units[i].max(0) as f64,
                    in_stock_days: s.in_stock_days[i].max(0.0),
                    stock: (s.on_hand[i] + if lands { s.inbound_units[i] } else { 0 }) as f64,
                });
            }
        }
        for d in msg.dcs {
            if d.available.len() != line_of.len() {
                return Err(bad(format!(
                    "DC {}: {} availabilities for {} lines",
                    d.dc_id,
                    d.available.len(),
                    line_of.len()
                )));
            }
            dcs.insert(d.dc_id, d.available);
        }
    }
    let mut out = Vec::new();
    for (region_id, region) in &regions {
        let Some(ri) = c.regions.iter().position(|x| x == region_id) else { continue };
        let dc_id = r.region_dcs.get(region_id).cloned().unwrap_or_default();
        // Regions served by one DC share what it has left.
        let available = dcs.get(&dc_id).cloned().unwrap_or_else(|| vec![0; line_of.len()]);
        let lines: Vec<Line> = line_of
            .iter()
            .enumerate()
            .map(|(k, &li)| {
                let l = c.lines.get(li);
                Line {
                    prior_lift: l.and_then(|l| l.uplift_by_region.get(ri).copied()).unwrap_or(1.0),
                    price: l.map_or(0.0, |l| l.price_f64),
                    dc_available: available[k] as f64,
                }
            })
            .collect();
        let cells = region.cells.clone();
        let p = params;
        let plan = tokio::task::spawn_blocking(move || replenish::plan_region(&cells, &lines, &p))
            .await
            .map_err(|e| business(format!("replenishment planning failed: {e}")))?;
        if let Some(left) = dcs.get_mut(&dc_id) {
            for m in &plan.from_dc {
                left[m.line as usize] -= i64::from(m.units);
            }
        }
        let (before, after) = plan.shares();
        let rationale = rationale(&plan, &req.lines);
        for (kind, moves, unit_cost) in [
            ("dc-to-store", &plan.from_dc, params.dc_unit_cost),
            ("store-to-store", &plan.between_stores, params.store_unit_cost),
        ] {
            if moves.is_empty() {
                continue;
            }
            let units: i64 = moves.iter().map(|m| i64::from(m.units)).sum();
            let protected: f64 = moves.iter().map(|m| m.protected).sum();
            let transfer_id = format!("{region_id}-round{}-{kind}", r.round);
            let order = CreateTransferOrderRequest {
                idempotency_key: idempotency_key(
                    &input.plan.promotion_id,
                    &r.chain,
                    r.revision,
                    &format!("replenish:{transfer_id}"),
                ),
                promotion_id: input.plan.promotion_id.clone(),
                from_dc_id: if kind == "dc-to-store" { dc_id.clone() } else { String::new() },
                to_region_id: region_id.clone(),
                lines: moves
                    .iter()
                    .map(|m| OrderLine {
                        sku: req.lines[m.line as usize].sku.clone(),
                        units: i64::from(m.units),
                        to_store_id: region.stores[m.to as usize].clone(),
                        from_store_id: m.from.map(|f| region.stores[f as usize].clone()).unwrap_or_default(),
                    })
                    .collect(),
                release_at: Some(Timestamp { seconds: as_of, nanos: 0 }),
                proposed: true,
            };
            let o = rpc!(systems.replenishment(), create_transfer_order, order.clone())
                .await
                .map_err(|s| status_error("replenishment", s))?
                .into_inner()
                .order
                .filter(|o| !o.order_id.is_empty())
                .ok_or_else(|| {
                    business(format!("replenishment: CreateTransferOrder {transfer_id}: order: missing"))
                })?;
            let money = |x: f64| format_money(Decimal::from_f64(x).unwrap_or_default().round_dp(2));
            let ratio = |x: f64| format_ratio(Decimal::from_f64(x).unwrap_or_default().round_dp(4));
            let mut receivers: Vec<u32> = moves.iter().map(|m| m.to).collect();
            receivers.sort_unstable();
            receivers.dedup();
            out.push(pb::Transfer {
                transfer_id,
                region_id: region_id.clone(),
                kind: kind.to_owned(),
                units,
                cells: moves.iter().map(|m| (m.to, m.line)).collect::<std::collections::BTreeSet<_>>().len()
                    as u32,
                cost: money(units as f64 * unit_cost),
                revenue_protected: money(protected),
                stockout_share_before: ratio(before),
                stockout_share_after: ratio(after),
                rationale: rationale.clone(),
                order_id: o.order_id,
                recommended_at: Some(Timestamp { seconds: as_of, nanos: 0 }),
                ..Default::default()
            });
        }
    }
    Ok(out)
}

/// Why, in a sentence: the line whose sell-through moved its lift furthest from the model's.
fn rationale(plan: &replenish::Plan, lines: &[SalesLine]) -> String {
    let (before, after) = plan.shares();
    let moved = plan
        .lifts
        .iter()
        .enumerate()
        .filter(|(_, l)| l.2 > 0.0 && l.0 > 0.0)
        .max_by(|a, b| (a.1.1 / a.1.0 - 1.0).abs().total_cmp(&(b.1.1 / b.1.0 - 1.0).abs()));
    let lift = moved.map_or(String::new(), |(k, l)| {
        format!("; {} sells at lift {:.2} against the model's {:.2}", lines[k].sku, l.1, l.0)
    });
    format!(
        "expected stockouts over the rest of the window {:.1}% of cells without, {:.1}% with{lift}",
        before * 100.0,
        after * 100.0
    )
}
