//! Deterministic sales simulation for post-event analysis.
//!
//! For every store × SKU in scope and every day of the region's live window, units demanded are
//! drawn from the dataset's world (`crate::world`): negative-binomial around baseline × the
//! world's lift for the category, region and depth (a price cut) × the promotion line's and the
//! store's own effects, keyed by the promotion id — no wall clock, no global state, the same
//! process the promotion history was drawn from, which no forecast sees. Sales are capped by the
//! stock on hand at the start plus arrivals (in-transit and supplier-confirmed ETAs), so stockouts
//! happen where stock is short.

use crate::{Systems, rng::mix};
use promo_contracts::{money::format_money, retail::v1 as wire};
use rusqlite::Connection;
use rust_decimal::Decimal;

const DAY: i64 = 86_400;

/// One promoted SKU.
#[derive(Debug, Clone)]
pub struct Line {
    /// Product index.
    pub sku_idx: usize,
    /// Promo price.
    pub promo_price: Decimal,
    /// Discount depth, 0–1.
    pub depth: f64,
    /// Region indexes where the line is on promotion; empty means every scope.
    pub regions: Vec<usize>,
}

/// A region and its live window, Unix seconds.
#[derive(Debug, Clone, Copy)]
pub struct Scope {
    /// Region index.
    pub region_idx: usize,
    /// Start.
    pub start: i64,
    /// End (exclusive).
    pub end: i64,
}

#[derive(Default, Clone, Copy)]
struct Acc {
    sold: f64,
    stockout_days: u32,
    ending: f64,
    available: f64,
    touched: bool,
}

/// Simulates sales of `lines` over `scopes`; one row per region × SKU, ordered by region, SKU.
pub fn simulate(
    systems: &Systems,
    conn: &Connection,
    promotion_id: &str,
    lines: &[Line],
    scopes: &[Scope],
) -> rusqlite::Result<Vec<wire::SalesActual>> {
    let master = systems.master();
    let world = &master.world;
    let promotion = promotion_id.bytes().fold(0x7072_6f6du64, |acc, b| mix(acc ^ u64::from(b)));
    let line_effect: Vec<f64> = lines.iter().map(|l| world.line_effect(promotion, l.sku_idx)).collect();
    let anchor = systems.anchor();
    let mut line_of_sku = vec![usize::MAX; master.products.len()];
    for (i, l) in lines.iter().enumerate() {
        line_of_sku[l.sku_idx] = i;
    }
    let mut stmt = conn.prepare_cached(
        "SELECT sku_idx, on_hand, in_transit, in_transit_eta, confirmed, confirmed_eta, baseline
         FROM store_positions WHERE store_idx = ?1",
    )?;
    let mut out = Vec::new();
    for scope in scopes {
        let mut acc = vec![Acc::default(); lines.len()];
        let length = (scope.end - scope.start).max(0);
        let days = (length + DAY - 1) / DAY;
        for (store_idx, store) in
            master.stores.iter().enumerate().filter(|(_, s)| s.region_idx == scope.region_idx)
        {
            let store_effect = world.store_effect(promotion, store_idx);
            let mut rows = stmt.query([store_idx as i64])?;
            while let Some(r) = rows.next()? {
                let sku_idx = r.get::<_, i64>(0)? as usize;
                let Some(&li) = line_of_sku.get(sku_idx).filter(|&&li| li != usize::MAX) else { continue };
                let line = &lines[li];
                if !line.regions.is_empty() && !line.regions.contains(&scope.region_idx) {
                    continue;
                }
                let lift =
                    world.log_lift(master.category_idx[sku_idx], scope.region_idx, 0, line.depth).exp()
                        * line_effect[li]
                        * store_effect;
                let mut rng = world.rng(&[5, promotion, store_idx as u64, sku_idx as u64]);
                let baseline = r.get::<_, f64>(6)?;
                let inbound =
                    [(r.get::<_, i64>(2)?, r.get::<_, i64>(3)?), (r.get::<_, i64>(4)?, r.get::<_, i64>(5)?)];
                let mut stock = r.get::<_, i64>(1)? as f64;
                let mut arrivals = Vec::with_capacity(2);
                for (units, eta_offset) in inbound {
                    if units <= 0 {
                        continue;
                    }
                    let eta = anchor + eta_offset;
                    if eta <= scope.start {
                        stock += units as f64;
                    } else if eta < scope.end {
                        arrivals.push(((eta - scope.start) / DAY, units as f64));
                    }
                }
                let a = &mut acc[li];
                a.touched = true;
                a.available += stock + arrivals.iter().map(|x| x.1).sum::<f64>();
                for day in 0..days {
                    for &(d, units) in &arrivals {
                        if d == day {
                            stock += units;
                        }
                    }
                    let fraction = ((length - day * DAY) as f64 / DAY as f64).min(1.0);
                    let demand = world.draw(&mut rng, baseline * lift * fraction);
                    let sold = demand.min(stock);
                    if stock < demand {
                        a.stockout_days += 1;
                    }
                    stock -= sold;
                    a.sold += sold;
                }
                a.ending += stock;
                let _ = store;
            }
        }
        let region_id = &master.regions[scope.region_idx].region_id;
        for (li, a) in acc.iter().enumerate().filter(|(_, a)| a.touched) {
            let line = &lines[li];
            let units = a.sold.round() as i64;
            out.push(wire::SalesActual {
                region_id: region_id.clone(),
                sku: master.products[line.sku_idx].sku.clone(),
                units_sold: units,
                revenue: format_money(line.promo_price * Decimal::from(units)),
                stockout_store_days: a.stockout_days,
                ending_units: a.ending.round() as i64,
                available_units: a.available.round() as i64,
            });
        }
    }
    out.sort_by(|a, b| (&a.region_id, &a.sku).cmp(&(&b.region_id, &b.sku)));
    Ok(out)
}
