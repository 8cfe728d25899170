//! Deterministic sales simulation for post-event analysis.
//!
//! For every store × SKU in scope and every day of the region's live window, units demanded are
//! drawn from the dataset's world (`crate::world`): negative-binomial around baseline × the
//! world's lift for the category, region and depth (a price cut) × the promotion line's and the
//! store's own effects, keyed by the promotion id — no wall clock, no global state, the same
//! process the promotion history was drawn from, which no forecast sees. Sales are capped by the
//! stock on hand at the start plus arrivals (in-transit and supplier-confirmed ETAs), so stockouts
//! happen where stock is short. Store-addressed transfer orders move stock in the window: a
//! store → store transfer leaves its source at release (the source's stock floors at zero), and
//! every transfer reaches its destination at its ETA.

use crate::{Systems, rng::mix};
use promo_contracts::{money::format_money, retail::v1 as wire};
use rusqlite::Connection;
use rust_decimal::Decimal;
use std::{collections::HashMap, convert::Infallible, ops::ControlFlow};

const DAY: i64 = 86_400;

/// The store-addressed lines of transfer orders (the order's state is in `transfer_orders`);
/// a source store of -1 is the order's DC.
pub(crate) const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS store_transfer_lines(
    order_id TEXT NOT NULL, sku_idx INTEGER NOT NULL, from_store_idx INTEGER NOT NULL,
    to_store_idx INTEGER NOT NULL, units INTEGER NOT NULL, release_s INTEGER NOT NULL,
    eta_s INTEGER NOT NULL, dc_idx INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS store_transfer_lines_by_order ON store_transfer_lines(order_id);";

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

/// A store-addressed transfer of the promotion (DC → store or store → store), business seconds.
#[derive(Debug, Clone, Copy)]
pub struct Transfer {
    /// Product index.
    pub sku_idx: usize,
    /// Source store, or `None` for the DC.
    pub from_store: Option<usize>,
    /// Destination store.
    pub to_store: usize,
    /// Units.
    pub units: f64,
    /// When it leaves the source.
    pub release: i64,
    /// When it reaches the destination.
    pub eta: i64,
}

/// The released store-addressed transfers of `promotion_id`.
pub fn transfers(conn: &Connection, promotion_id: &str) -> rusqlite::Result<Vec<Transfer>> {
    let mut stmt = conn.prepare_cached(
        "SELECT l.sku_idx, l.from_store_idx, l.to_store_idx, l.units, l.release_s, l.eta_s
         FROM store_transfer_lines l JOIN transfer_orders o ON o.order_id = l.order_id
         WHERE o.promotion_id = ?1 AND o.state = 1",
    )?;
    let rows = stmt.query_map([promotion_id], |r| {
        let from: i64 = r.get(1)?;
        Ok(Transfer {
            sku_idx: r.get::<_, i64>(0)? as usize,
            from_store: usize::try_from(from).ok(),
            to_store: r.get::<_, i64>(2)? as usize,
            units: r.get::<_, i64>(3)? as f64,
            release: r.get(4)?,
            eta: r.get(5)?,
        })
    })?;
    rows.collect()
}

/// What one store × SKU did over a scope's window.
#[derive(Debug, Default, Clone, Copy)]
pub struct CellOutcome {
    /// Daily baseline demand.
    pub baseline: f64,
    /// Units sold.
    pub sold: f64,
    /// Units sold on days demand was met.
    pub in_stock_units: f64,
    /// Days (fractions for a part day) demand was met.
    pub in_stock_days: f64,
    /// Days the store ran out.
    pub stockout_days: u32,
    /// Units on hand at the window's end.
    pub ending: f64,
    /// Units available to sell over the window (start stock plus arrivals within it).
    pub available: f64,
    /// Units arriving after the window's end.
    pub inbound_units: f64,
    /// The first of those arrivals, business seconds (0 when none).
    pub inbound_eta: i64,
}

/// Walks every store × SKU cell of `lines` in `scopes` day by day, handing each cell's outcome
/// to `visit(scope index, store index, line index, outcome)`, a store's cells in a run;
/// `transfers` move stock between stores (and from DCs) at their release and arrival days. The
/// walk ends early with what `visit` breaks with (a stream whose client hung up stops
/// simulating).
pub fn walk<B>(
    systems: &Systems,
    conn: &Connection,
    promotion_id: &str,
    lines: &[Line],
    scopes: &[Scope],
    transfers: &[Transfer],
    mut visit: impl FnMut(usize, usize, usize, &CellOutcome) -> ControlFlow<B>,
) -> rusqlite::Result<ControlFlow<B>> {
    let master = systems.master();
    let world = &master.world;
    let promotion = promotion_id.bytes().fold(0x7072_6f6du64, |acc, b| mix(acc ^ u64::from(b)));
    let line_effect: Vec<f64> = lines.iter().map(|l| world.line_effect(promotion, l.sku_idx)).collect();
    let anchor = systems.anchor();
    let mut line_of_sku = vec![usize::MAX; master.products.len()];
    for (i, l) in lines.iter().enumerate() {
        line_of_sku[l.sku_idx] = i;
    }
    // (store, sku) → (when, units): + for an arrival, − for a departure.
    let mut moves: HashMap<(usize, usize), Vec<(i64, f64)>> = HashMap::new();
    for t in transfers {
        moves.entry((t.to_store, t.sku_idx)).or_default().push((t.eta, t.units));
        if let Some(from) = t.from_store {
            moves.entry((from, t.sku_idx)).or_default().push((t.release, -t.units));
        }
    }
    let mut stmt = conn.prepare_cached(
        "SELECT sku_idx, on_hand, in_transit, in_transit_eta, confirmed, confirmed_eta, baseline
         FROM store_positions WHERE store_idx = ?1",
    )?;
    for (si, scope) in scopes.iter().enumerate() {
        let length = (scope.end - scope.start).max(0);
        let days = (length + DAY - 1) / DAY;
        for (store_idx, _) in
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
                let mut cell = CellOutcome { baseline: r.get::<_, f64>(6)?, ..CellOutcome::default() };
                let mut stock = r.get::<_, i64>(1)? as f64;
                // Stock movements during the window, by day; later ones are inbound.
                let mut during: Vec<(i64, f64)> = Vec::new();
                let inbound =
                    [(r.get::<_, i64>(2)?, r.get::<_, i64>(3)?), (r.get::<_, i64>(4)?, r.get::<_, i64>(5)?)]
                        .into_iter()
                        .filter(|&(units, _)| units > 0)
                        .map(|(units, eta_offset)| (anchor + eta_offset, units as f64));
                let moved = moves.get(&(store_idx, sku_idx)).into_iter().flatten().copied();
                for (at, units) in inbound.chain(moved) {
                    if at <= scope.start {
                        stock = (stock + units).max(0.0);
                    } else if at < scope.end {
                        during.push(((at - scope.start) / DAY, units));
                    } else if units > 0.0 {
                        cell.inbound_units += units;
                        cell.inbound_eta = if cell.inbound_eta == 0 { at } else { cell.inbound_eta.min(at) };
                    }
                }
                cell.available = stock + during.iter().map(|x| x.1.max(0.0)).sum::<f64>();
                for day in 0..days {
                    for &(d, units) in &during {
                        if d == day {
                            stock = (stock + units).max(0.0);
                        }
                    }
                    let fraction = ((length - day * DAY) as f64 / DAY as f64).min(1.0);
                    let demand = world.draw(&mut rng, cell.baseline * lift * fraction);
                    let sold = demand.min(stock);
                    if stock < demand {
                        cell.stockout_days += 1;
                    } else {
                        cell.in_stock_units += sold;
                        cell.in_stock_days += fraction;
                    }
                    stock -= sold;
                    cell.sold += sold;
                }
                cell.ending = stock;
                if let ControlFlow::Break(b) = visit(si, store_idx, li, &cell) {
                    return Ok(ControlFlow::Break(b));
                }
            }
        }
    }
    Ok(ControlFlow::Continue(()))
}

/// Simulates sales of `lines` over `scopes` with the promotion's store transfers (none when
/// `without_transfers`); one row per region × SKU, ordered by region, SKU.
pub fn simulate(
    systems: &Systems,
    conn: &Connection,
    promotion_id: &str,
    lines: &[Line],
    scopes: &[Scope],
    without_transfers: bool,
) -> rusqlite::Result<Vec<wire::SalesActual>> {
    let master = systems.master();
    let moves = if without_transfers { Vec::new() } else { transfers(conn, promotion_id)? };
    // (scope, line) → totals.
    let mut acc: Vec<Vec<Option<CellOutcome>>> = vec![vec![None; lines.len()]; scopes.len()];
    let ControlFlow::Continue(()) =
        walk(systems, conn, promotion_id, lines, scopes, &moves, |si, _, li, cell| {
            let a = acc[si][li].get_or_insert_with(CellOutcome::default);
            a.sold += cell.sold;
            a.stockout_days += cell.stockout_days;
            a.ending += cell.ending;
            a.available += cell.available;
            ControlFlow::<Infallible>::Continue(())
        })?;
    let mut out = Vec::new();
    for (scope, row) in scopes.iter().zip(&acc) {
        let region_id = &master.regions[scope.region_idx].region_id;
        for (li, a) in row.iter().enumerate() {
            let Some(a) = a else { continue };
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
