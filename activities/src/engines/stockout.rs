//! Stockout probability: how likely each store × SKU cell is to run out of stock before its
//! region's window ends, from the forecast's uncertainty and the stock that reaches the store.
//!
//! A cell's demand over its first d days ~ NegativeBinomial(mean = daily baseline × uplift × d,
//! size k), k being the store-level size of the forecast's errors ([`size_from_moments`]: the
//! learned model's residual spread across stores, read from the in-stock moments of past
//! promotions). Stock is time-phased as the alignment reads it: on hand plus the in-transit and
//! supplier-confirmed units arriving by launch; an arrival during the window adds its units from
//! its ETA. The cell runs out if demand before an arrival exceeds the stock before it, or demand
//! over the window exceeds all the stock that arrived. Those events nest along one demand path,
//! so the cell's probability is taken as the largest of theirs (a lower bound that is exact
//! without arrivals in the window, the common case). A region's figure is the mean over its cells
//! with demand: the share of its store × SKU cells expected to run out.

use super::alignment::{Cells, Scenario};
use statrs::distribution::{DiscreteCDF, NegativeBinomial};

/// The largest negative-binomial size used (beyond it the distribution is Poisson to the
/// precision that matters here).
pub const MAX_SIZE: f64 = 1_000.0;

/// P(demand > stock) for demand ~ NegativeBinomial(mean, size); stock in units (fractions are
/// rounded down: 3.7 units on hand sell 3).
pub fn probability(mean: f64, size: f64, stock: f64) -> f64 {
    if mean.is_nan() || mean <= 0.0 {
        return 0.0;
    }
    if stock < 0.0 {
        return 1.0;
    }
    let size = size.clamp(1e-3, MAX_SIZE);
    match NegativeBinomial::new(size, size / (size + mean)) {
        Ok(nb) => nb.sf(stock.floor() as u64),
        Err(_) => 0.0,
    }
}

/// The probability that cell `i` runs out between `launch` and `end`, demand accruing at `rate`
/// units a day, with the units it has by launch.
pub fn cell_probability(c: &Cells, i: usize, rate: f64, launch: i64, end: i64, size: f64) -> (f64, f64) {
    let mut stock = f64::from(c.on_hand[i]);
    let mut later: [(i64, f64); 2] = [(i64::MAX, 0.0); 2];
    for (j, (units, eta)) in
        [(c.in_transit[i], c.in_transit_eta[i]), (c.confirmed[i], c.confirmed_eta[i])].into_iter().enumerate()
    {
        if units <= 0 {
            continue;
        }
        if eta <= launch {
            stock += f64::from(units);
        } else if eta < end {
            later[j] = (eta, f64::from(units));
        }
    }
    if later[1].0 < later[0].0 {
        later.swap(0, 1);
    }
    let days = |t: i64| (t - launch) as f64 / 86_400.0;
    let at_launch = stock;
    let mut p = 0.0f64;
    for (eta, units) in later {
        if eta == i64::MAX {
            break;
        }
        p = p.max(probability(rate * days(eta), size, stock));
        stock += units;
    }
    (p.max(probability(rate * days(end), size, stock)), at_launch)
}

/// One cell's risk.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CellRisk {
    /// Index into the cells.
    pub cell: usize,
    /// Probability of running out before the window ends.
    pub probability: f64,
    /// Forecast promo demand over the window, units.
    pub demand: f64,
    /// Units available by launch.
    pub available: f64,
}

/// A region's risk.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegionRisk {
    /// Cells with demand.
    pub cells: u64,
    /// Σ probability: the number of cells expected to run out.
    pub expected_stockouts: f64,
    /// The riskiest cells, most likely first.
    pub riskiest: Vec<CellRisk>,
    /// Per line: (cells with demand, expected stockouts, Σ probability × forecast units).
    pub by_line: Vec<(u64, f64, f64)>,
}

impl RegionRisk {
    /// The share of the region's cells expected to run out (0 without cells).
    pub fn share(&self) -> f64 {
        if self.cells == 0 { 0.0 } else { self.expected_stockouts / self.cells as f64 }
    }

    /// The lines to drop so that the region's expected stockout share falls to `ceiling`: those
    /// whose cells are the likeliest to run out first, until the share is under it. Returns the
    /// lines and the resulting share.
    pub fn lines_to_drop(&self, ceiling: f64) -> (Vec<usize>, f64) {
        let mut order: Vec<usize> = (0..self.by_line.len()).filter(|&k| self.by_line[k].0 > 0).collect();
        let rate = |k: usize| self.by_line[k].1 / self.by_line[k].0 as f64;
        order.sort_by(|&x, &y| rate(y).total_cmp(&rate(x)).then(x.cmp(&y)));
        let (mut cells, mut expected) = (self.cells, self.expected_stockouts);
        let mut dropped = Vec::new();
        for k in order {
            if cells == 0 || expected / cells as f64 <= ceiling {
                break;
            }
            cells -= self.by_line[k].0;
            expected -= self.by_line[k].1;
            dropped.push(k);
        }
        (dropped, if cells == 0 { 0.0 } else { expected.max(0.0) / cells as f64 })
    }

    fn keep(&mut self, risk: CellRisk, top: usize) {
        if top == 0 || risk.probability <= 0.0 {
            return;
        }
        if self.riskiest.len() == top
            && self.riskiest.last().is_some_and(|w| w.probability >= risk.probability)
        {
            return;
        }
        let at = self.riskiest.partition_point(|x| x.probability >= risk.probability);
        self.riskiest.insert(at, risk);
        self.riskiest.truncate(top);
    }
}

/// Every cell's stockout probability, rolled up per region with its `top` riskiest cells; the
/// cells and exclusions are the alignment's, so the two agree on which cells have demand. A
/// probability is an incomplete beta function (about half a microsecond), so the cells are split
/// over the machine's cores (at most 4); the result depends on the split only in the last bits of
/// the sums.
pub fn assess(
    cells: &Cells,
    scenario: &Scenario,
    regions: usize,
    lines: usize,
    size: f64,
    top: usize,
) -> Vec<RegionRisk> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4);
    let n = cells.len();
    let chunk = n.div_ceil(threads).max(1);
    let parts: Vec<Vec<RegionRisk>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .step_by(chunk)
            .map(|start| {
                s.spawn(move || {
                    assess_range(cells, scenario, start..(start + chunk).min(n), regions, lines, size, top)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a stockout worker thread panicked")).collect()
    });
    let mut out = vec![RegionRisk { by_line: vec![(0, 0.0, 0.0); lines], ..Default::default() }; regions];
    for part in parts {
        for (total, p) in out.iter_mut().zip(part) {
            total.cells += p.cells;
            total.expected_stockouts += p.expected_stockouts;
            for (t, x) in total.by_line.iter_mut().zip(&p.by_line) {
                t.0 += x.0;
                t.1 += x.1;
                t.2 += x.2;
            }
            for c in p.riskiest {
                total.keep(c, top);
            }
        }
    }
    out
}

fn assess_range(
    cells: &Cells,
    scenario: &Scenario,
    range: std::ops::Range<usize>,
    regions: usize,
    lines: usize,
    size: f64,
    top: usize,
) -> Vec<RegionRisk> {
    let mut out = vec![RegionRisk { by_line: vec![(0, 0.0, 0.0); lines], ..Default::default() }; regions];
    for i in range {
        let r = usize::from(cells.region[i]);
        let k = cells.sku[i] as usize;
        if scenario.excluded[r][k] {
            continue;
        }
        let rate = f64::from(cells.daily[i]) * f64::from(scenario.uplift[r][k]);
        let days = f64::from(scenario.days[r]);
        if !(rate > 0.0 && days > 0.0) {
            continue;
        }
        let launch = scenario.launch[r];
        let end = launch + (days * 86_400.0).round() as i64;
        let (p, available) = cell_probability(cells, i, rate, launch, end, size);
        let t = &mut out[r];
        t.cells += 1;
        t.expected_stockouts += p;
        t.by_line[k].0 += 1;
        t.by_line[k].1 += p;
        t.by_line[k].2 += p * rate * days;
        t.keep(CellRisk { cell: i, probability: p, demand: rate * days, available }, top);
    }
    out
}

/// The store-level negative-binomial size of a forecast's errors from in-stock moments of past
/// outcomes: for each outcome (a SKU × region × week), its forecast lift L, Σ units² and Σ units
/// over its in-stock store-weeks and Σ baseline² over the same store-weeks. With store demand
/// y ~ NB(mean b × L × ε, size k) around the forecast, E[y² − y] = (b L)² (1 + 1/k'), where 1/k'
/// gathers the count noise, the store and promotion effects and the forecast's own error; so
/// 1/k' = Σ(Σy² − Σy) / Σ L² Σb² − 1. `None` when there are no moments (older systems).
pub fn size_from_moments(rows: impl IntoIterator<Item = (f64, f64, f64, f64)>) -> Option<f64> {
    let (mut num, mut den) = (0.0, 0.0);
    for (lift, units_sq, units, baseline_sq) in rows {
        if baseline_sq > 0.0 && lift.is_finite() {
            num += units_sq - units;
            den += lift * lift * baseline_sq;
        }
    }
    if !(den > 0.0 && num.is_finite()) {
        return None;
    }
    let inverse = num / den - 1.0;
    Some(if inverse <= 1.0 / MAX_SIZE { MAX_SIZE } else { 1.0 / inverse })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng, rngs::ChaCha8Rng};

    #[test]
    fn probability_matches_monte_carlo() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (mean, size, stock) = (20.0, 4.0, 30.0);
        let nb = NegativeBinomial::new(size, size / (size + mean)).unwrap();
        let n = 200_000;
        let out = (0..n).filter(|_| rng.sample(nb) as f64 > stock).count();
        let p = probability(mean, size, stock);
        assert!((p - out as f64 / n as f64).abs() < 0.005, "{p} vs {}", out as f64 / n as f64);
        assert_eq!(probability(0.0, size, 0.0), 0.0);
        assert_eq!(probability(5.0, size, -1.0), 1.0);
        assert!(probability(5.0, size, 0.0) > 0.4);
    }

    #[test]
    fn stock_arriving_mid_window_does_not_cover_the_days_before_it() {
        let day = 86_400;
        let mut c = Cells::default();
        // 2 units a day for 10 days; 5 on hand, 100 arriving on day 5, 3 confirmed before launch
        c.push(0, 0, 1.0, 5, 100, 5 * day, 3, -day);
        let (p, available) = cell_probability(&c, 0, 2.0, 0, 10 * day, 4.0);
        assert_eq!(available, 8.0);
        assert!((p - probability(10.0, 4.0, 8.0)).abs() < 1e-12, "{p}");
        assert!(p > 0.4);
        // the same stock all on hand by launch: 108 units against 20 expected
        let mut early = Cells::default();
        early.push(0, 0, 1.0, 5, 100, 0, 3, -day);
        assert!(cell_probability(&early, 0, 2.0, 0, 10 * day, 4.0).0 < 1e-4);
    }

    #[test]
    fn regions_roll_up_their_cells_and_keep_the_riskiest() {
        let mut c = Cells::default();
        for (stock, region) in [(0, 0), (50, 0), (10, 0), (10, 1), (3, 0)] {
            c.push(region, 0, 1.0, stock, 0, 0, 0, 0);
        }
        c.push(1, 1, 1.0, 0, 0, 0, 0, 0); // excluded in region 1
        let scenario = Scenario {
            launch: vec![0, 0],
            days: vec![10.0, 10.0],
            uplift: vec![vec![1.0, 1.0], vec![1.0, 1.0]],
            excluded: vec![vec![false, false], vec![false, true]],
        };
        let r = assess(&c, &scenario, 2, 2, 5.0, 2);
        assert_eq!((r[0].cells, r[1].cells), (4, 1));
        let probs: Vec<f64> = [0.0, 50.0, 10.0, 3.0].iter().map(|s| probability(10.0, 5.0, *s)).collect();
        assert!((r[0].expected_stockouts - probs.iter().sum::<f64>()).abs() < 1e-9);
        assert_eq!(r[0].riskiest.iter().map(|x| x.cell).collect::<Vec<_>>(), vec![0, 4]);
        assert!((r[1].share() - probability(10.0, 5.0, 10.0)).abs() < 1e-9);
        assert_eq!(r[0].by_line[0].0, 4);
        assert!((r[0].by_line[0].1 - r[0].expected_stockouts).abs() < 1e-12);
        assert!((r[0].by_line[0].2 - 10.0 * r[0].expected_stockouts).abs() < 1e-9);
        assert_eq!(r[0].by_line[1], (0, 0.0, 0.0));
        // one line: dropping it leaves nothing at risk
        assert_eq!(r[0].lines_to_drop(0.1), (vec![0], 0.0));
        assert_eq!(r[0].lines_to_drop(1.0), (vec![], r[0].share()));
    }

    #[test]
    fn the_size_is_recovered_from_in_stock_moments() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let (size, lift) = (4.0, 1.8);
        let rows: Vec<(f64, f64, f64, f64)> = (0..400)
            .map(|_| {
                let (mut sq, mut sum, mut bsq) = (0.0, 0.0, 0.0);
                for _ in 0..50 {
                    let b = rng.random_range(2.0..20.0);
                    let mean: f64 = b * lift;
                    let y = rng.sample(NegativeBinomial::new(size, size / (size + mean)).unwrap()) as f64;
                    (sq, sum, bsq) = (sq + y * y, sum + y, bsq + b * b);
                }
                (lift, sq, sum, bsq)
            })
            .collect();
        let k = size_from_moments(rows.iter().copied()).unwrap();
        assert!((k - size).abs() < 0.3, "{k}");
        assert_eq!(size_from_moments([(1.0, 0.0, 0.0, 0.0)]), None);
    }
}
