//! In-flight replenishment: during the window, re-forecast each region's remaining demand from
//! the sell-through so far and move stock to the stores that would run out.
//!
//! **Re-forecast.** Each line's lift in a region is a gamma prior centred on the learned model's
//! lift (shape `prior_shape`: the model's held-out spread between promotions, 1/σ²), updated by
//! the uncensored sales so far — the units sold on the days a store did not run out, against the
//! baseline units of those days (a day the store ran out only says demand was at least what it
//! sold, so it is left out rather than read as low demand). Posterior lift = (a + units) /
//! (a / prior + baseline units).
//!
//! **Projection.** A cell's demand over the rest of the window ~ NegativeBinomial(baseline ×
//! posterior lift × days left, size k) against its stock now plus what is on its way and lands
//! before the window ends; the region's figure is the expected share of cells running out.
//!
//! **Moves.** A unit moved to a cell is worth its promo price times the probability it sells
//! (P(demand > stock + units already added)) — the newsvendor's marginal value. Units go one at a
//! time to the cell where the next unit is worth most, first from the region's DC (while its
//! value covers the DC unit cost and the DC has the SKU), then from stores of the same region
//! whose own next-to-last unit is worth least (while the receiver's value less the donor's loss
//! covers the store unit cost). Donors keep what they are likely to sell themselves.
//!
//! Limits: the transfer lands one lead time later, but its value is taken over the whole rest of
//! the window (demand before it lands that the stock cannot meet is lost either way, so this
//! overstates a little for cells already near zero); inbound units are counted as if on hand.

use super::stockout::{MAX_SIZE, probability};
use std::{cmp::Ordering, collections::BinaryHeap};

/// One store × SKU cell of a region as the window stands now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cell {
    /// Store index (the caller's numbering).
    pub store: u32,
    /// Line index into [`Line`]s.
    pub line: u32,
    /// Baseline demand, units a day.
    pub baseline: f64,
    /// Units sold on the days the store did not run out.
    pub in_stock_units: f64,
    /// Days the store did not run out.
    pub in_stock_days: f64,
    /// Units on hand now plus units landing before the window ends.
    pub stock: f64,
}

/// A line in the region.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line {
    /// The learned model's lift (the prior's mean).
    pub prior_lift: f64,
    /// Promo price.
    pub price: f64,
    /// Units the region's DC can still allocate.
    pub dc_available: f64,
}

/// The knobs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Days left in the window.
    pub days_left: f64,
    /// Days a transfer takes to land; nothing is moved when fewer days than this are left.
    pub lead_days: f64,
    /// Negative-binomial size of a cell's demand.
    pub size: f64,
    /// Gamma shape of the lift prior.
    pub prior_shape: f64,
    /// Cost of moving a unit from the DC to a store.
    pub dc_unit_cost: f64,
    /// Cost of moving a unit between stores.
    pub store_unit_cost: f64,
}

/// Units moved to one cell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Move {
    /// Line.
    pub line: u32,
    /// Source store, `None` for the DC.
    pub from: Option<u32>,
    /// Destination store.
    pub to: u32,
    /// Units.
    pub units: u32,
    /// Expected revenue they protect (the donor's expected loss deducted).
    pub protected: f64,
}

/// A region's re-forecast and moves.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Per line: (prior lift, posterior lift, uncensored baseline days behind it).
    pub lifts: Vec<(f64, f64, f64)>,
    /// Cells with demand left.
    pub cells: u64,
    /// Expected cells running out before the window ends, without and with the moves.
    pub expected_before: f64,
    /// With the moves.
    pub expected_after: f64,
    /// DC → store moves.
    pub from_dc: Vec<Move>,
    /// Store → store moves.
    pub between_stores: Vec<Move>,
}

impl Plan {
    /// Expected share of cells running out, without and with the moves.
    pub fn shares(&self) -> (f64, f64) {
        if self.cells == 0 {
            (0.0, 0.0)
        } else {
            (self.expected_before / self.cells as f64, self.expected_after / self.cells as f64)
        }
    }
}

/// The posterior lift of each line from its cells' uncensored sales: (prior, posterior,
/// baseline units of the uncensored days).
pub fn posterior_lifts(cells: &[Cell], lines: &[Line], prior_shape: f64) -> Vec<(f64, f64, f64)> {
    let mut units = vec![0.0; lines.len()];
    let mut exposure = vec![0.0; lines.len()];
    for c in cells {
        units[c.line as usize] += c.in_stock_units;
        exposure[c.line as usize] += c.baseline * c.in_stock_days;
    }
    lines
        .iter()
        .enumerate()
        .map(|(k, l)| {
            let prior = l.prior_lift.max(1e-3);
            let a = prior_shape.max(1e-3);
            (l.prior_lift, (a + units[k]) / (a / prior + exposure[k]), exposure[k])
        })
        .collect()
}

/// A candidate next unit: its value and whose it is.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Next {
    value: f64,
    cell: usize,
}

impl Eq for Next {}

impl PartialOrd for Next {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Next {
    fn cmp(&self, other: &Self) -> Ordering {
        self.value.total_cmp(&other.value).then(other.cell.cmp(&self.cell))
    }
}

/// Re-forecasts one region and chooses its moves (see the module docs).
pub fn plan_region(cells: &[Cell], lines: &[Line], p: &Params) -> Plan {
    let lifts = posterior_lifts(cells, lines, p.prior_shape);
    let size = p.size.clamp(1e-3, MAX_SIZE);
    let mean: Vec<f64> =
        cells.iter().map(|c| c.baseline * lifts[c.line as usize].1 * p.days_left.max(0.0)).collect();
    let mut plan = Plan { lifts, ..Plan::default() };
    let mut added = vec![0.0f64; cells.len()];
    let mut taken = vec![0.0f64; cells.len()];
    for (i, c) in cells.iter().enumerate() {
        if mean[i] > 0.0 {
            plan.cells += 1;
            plan.expected_before += probability(mean[i], size, c.stock);
        }
    }
    let price = |i: usize| lines[cells[i].line as usize].price;
    // The value of cell i's next unit: price × P(demand > what it will have).
    let gain = |i: usize, added: f64| price(i) * probability(mean[i], size, cells[i].stock + added);
    // What donor i loses by giving its next unit: price × P(demand > what it keeps − 1).
    let loss = |i: usize, taken: f64| price(i) * probability(mean[i], size, cells[i].stock - taken - 1.0);
    if p.days_left > p.lead_days {
        for (k, line) in lines.iter().enumerate() {
            let of_line: Vec<usize> =
                (0..cells.len()).filter(|&i| cells[i].line as usize == k && mean[i] > 0.0).collect();
            // From the DC.
            let mut dc = line.dc_available.floor().max(0.0);
            let mut wants: BinaryHeap<Next> =
                of_line.iter().map(|&i| Next { value: gain(i, 0.0), cell: i }).collect();
            // Units and the value they protect, per cell (each unit's value summed as it is given).
            let mut dc_units = vec![(0u32, 0.0f64); cells.len()];
            while dc >= 1.0 {
                let Some(top) = wants.pop() else { break };
                if top.value < p.dc_unit_cost || top.value <= 0.0 {
                    wants.push(top);
                    break;
                }
                added[top.cell] += 1.0;
                dc_units[top.cell].0 += 1;
                dc_units[top.cell].1 += top.value;
                dc -= 1.0;
                wants.push(Next { value: gain(top.cell, added[top.cell]), cell: top.cell });
            }
            for &i in &of_line {
                let (units, protected) = dc_units[i];
                if units > 0 {
                    plan.from_dc.push(Move {
                        line: k as u32,
                        from: None,
                        to: cells[i].store,
                        units,
                        protected,
                    });
                }
            }
            // Between stores: the donor whose next unit is worth least gives it, while the
            // receiver's value less that loss covers the cost.
            let mut gives: BinaryHeap<std::cmp::Reverse<Next>> = of_line
                .iter()
                .filter(|&&i| cells[i].stock >= 1.0)
                .map(|&i| std::cmp::Reverse(Next { value: loss(i, 0.0), cell: i }))
                .collect();
            let mut pairs: std::collections::BTreeMap<(usize, usize), (u32, f64)> = Default::default();
            while let (Some(want), Some(std::cmp::Reverse(give))) =
                (wants.peek().copied(), gives.peek().copied())
            {
                if want.cell == give.cell || want.value - give.value < p.store_unit_cost {
                    break;
                }
                wants.pop();
                gives.pop();
                let e = pairs.entry((give.cell, want.cell)).or_insert((0, 0.0));
                e.0 += 1;
                e.1 += want.value - give.value;
                added[want.cell] += 1.0;
                taken[give.cell] += 1.0;
                wants.push(Next { value: gain(want.cell, added[want.cell]), cell: want.cell });
                if cells[give.cell].stock - taken[give.cell] >= 1.0 {
                    gives.push(std::cmp::Reverse(Next {
                        value: loss(give.cell, taken[give.cell]),
                        cell: give.cell,
                    }));
                }
            }
            for ((from, to), (units, protected)) in pairs {
                plan.between_stores.push(Move {
                    line: k as u32,
                    from: Some(cells[from].store),
                    to: cells[to].store,
                    units,
                    protected,
                });
            }
        }
    }
    plan.expected_after = (0..cells.len())
        .filter(|&i| mean[i] > 0.0)
        .map(|i| probability(mean[i], size, cells[i].stock + added[i] - taken[i]))
        .sum();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Params {
        Params {
            days_left: 7.0,
            lead_days: 1.0,
            size: 4.0,
            prior_shape: 10.0,
            dc_unit_cost: 0.4,
            store_unit_cost: 0.9,
        }
    }

    fn cell(store: u32, stock: f64) -> Cell {
        Cell { store, line: 0, baseline: 2.0, in_stock_units: 0.0, in_stock_days: 0.0, stock }
    }

    #[test]
    fn the_posterior_moves_from_the_prior_towards_the_uncensored_sales() {
        let line = Line { prior_lift: 2.0, price: 5.0, dc_available: 0.0 };
        // No sales yet: the prior.
        let none = posterior_lifts(&[cell(0, 10.0)], &[line], 10.0);
        assert!((none[0].1 - 2.0).abs() < 1e-12);
        // Sales at three times baseline over 100 baseline units: far above the prior, short of 3.
        let mut c = cell(0, 10.0);
        c.in_stock_days = 50.0;
        c.in_stock_units = 300.0;
        let seen = posterior_lifts(&[c], &[line], 10.0);
        assert!(seen[0].1 > 2.8 && seen[0].1 < 3.0, "{seen:?}");
        // A weaker prior follows the data more closely.
        let weak = posterior_lifts(&[c], &[line], 1.0);
        assert!(weak[0].1 > seen[0].1);
    }

    #[test]
    fn units_go_from_the_dc_to_the_cells_that_would_run_out_and_stop_at_the_cost() {
        let line = Line { prior_lift: 2.0, price: 5.0, dc_available: 1_000.0 };
        // Mean demand left 28 units: a store with 5 is short, one with 200 is not.
        let cells = [cell(0, 5.0), cell(1, 200.0)];
        let plan = plan_region(&cells, &[line], &params());
        assert_eq!(plan.from_dc.len(), 1);
        let m = plan.from_dc[0];
        assert_eq!((m.to, m.from), (0, None));
        // Topped up to where P(demand > stock) × 5 < 0.4, i.e. well above the mean of 28.
        let stock = 5.0 + f64::from(m.units);
        assert!(probability(28.0, 4.0, stock) * 5.0 < 0.4, "{stock}");
        assert!(probability(28.0, 4.0, stock - 1.0) * 5.0 >= 0.4, "{stock}");
        assert!(m.protected > 0.0 && m.protected < 5.0 * f64::from(m.units));
        assert!(plan.expected_after < plan.expected_before);
        // Nothing moved with too few days left for a transfer to land.
        let late = plan_region(&cells, &[line], &Params { days_left: 0.5, ..params() });
        assert!(late.from_dc.is_empty() && late.between_stores.is_empty());
    }

    #[test]
    fn without_dc_stock_a_store_with_plenty_gives_to_one_running_out() {
        let line = Line { prior_lift: 2.0, price: 5.0, dc_available: 0.0 };
        let cells = [cell(0, 2.0), cell(1, 200.0), cell(2, 30.0)];
        let plan = plan_region(&cells, &[line], &params());
        assert!(plan.from_dc.is_empty());
        let to_short: u32 = plan.between_stores.iter().filter(|m| m.to == 0).map(|m| m.units).sum();
        assert!(to_short > 10, "{:?}", plan.between_stores);
        // Only the store with plenty gives; the one near its mean keeps its stock.
        assert!(plan.between_stores.iter().all(|m| m.from == Some(1)), "{:?}", plan.between_stores);
        let (before, after) = plan.shares();
        assert!(after < before, "{before} {after}");
    }

    #[test]
    fn a_dearer_move_than_a_sale_is_worth_is_not_made() {
        let line = Line { prior_lift: 2.0, price: 0.3, dc_available: 1_000.0 };
        let plan = plan_region(&[cell(0, 0.0), cell(1, 200.0)], &[line], &params());
        assert!(plan.from_dc.is_empty() && plan.between_stores.is_empty());
        assert_eq!(plan.expected_before, plan.expected_after);
    }
}
