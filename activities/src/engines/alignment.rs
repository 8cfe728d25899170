//! Inventory alignment: promo demand against stock available by launch, per store × SKU, rolled
//! up per region — the hot path of an assessment (720,000 cells in the canonical scenario).
//!
//! For each cell: demand = baseline daily units × uplift(region, SKU) × days live in its region;
//! available = on hand + in-transit arriving by launch + supplier-confirmed arriving by launch;
//! covered = min(available, demand). A region passes when Σ covered / Σ demand reaches the policy
//! floor. The columns are structure-of-arrays so the loop streams through memory once.

/// Store × SKU cells as columns of equal length.
#[derive(Debug, Clone, Default)]
pub struct Cells {
    /// Region index of the cell's store.
    pub region: Vec<u16>,
    /// SKU index (into the promotion's lines).
    pub sku: Vec<u32>,
    /// Baseline daily demand in units.
    pub daily: Vec<f32>,
    /// Units on hand.
    pub on_hand: Vec<i32>,
    /// Units in transit.
    pub in_transit: Vec<i32>,
    /// In-transit ETA, Unix seconds (0 = none).
    pub in_transit_eta: Vec<i64>,
    /// Supplier-confirmed units.
    pub confirmed: Vec<i32>,
    /// Supplier-confirmed ETA, Unix seconds (0 = none).
    pub confirmed_eta: Vec<i64>,
    /// Where each store's cells begin, with its id (cells arrive store by store), for naming a
    /// cell's store; empty when the caller did not say.
    pub stores: Vec<(usize, String)>,
}

impl Cells {
    /// Number of cells.
    pub fn len(&self) -> usize {
        self.sku.len()
    }

    /// Whether there are no cells.
    pub fn is_empty(&self) -> bool {
        self.sku.is_empty()
    }

    /// Reserves room for `n` more cells.
    pub fn reserve(&mut self, n: usize) {
        self.region.reserve(n);
        self.sku.reserve(n);
        self.daily.reserve(n);
        self.on_hand.reserve(n);
        self.in_transit.reserve(n);
        self.in_transit_eta.reserve(n);
        self.confirmed.reserve(n);
        self.confirmed_eta.reserve(n);
    }

    /// Marks the cells pushed from here on as store `id`'s.
    pub fn begin_store(&mut self, id: &str) {
        self.stores.push((self.len(), id.to_owned()));
    }

    /// The store of cell `i`, when stores were marked.
    pub fn store_of(&self, i: usize) -> Option<&str> {
        let at = self.stores.partition_point(|(start, _)| *start <= i);
        at.checked_sub(1).map(|j| self.stores[j].1.as_str())
    }

    /// Appends one cell.
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        region: u16,
        sku: u32,
        daily: f32,
        on_hand: i32,
        in_transit: i32,
        in_transit_eta: i64,
        confirmed: i32,
        confirmed_eta: i64,
    ) {
        self.region.push(region);
        self.sku.push(sku);
        self.daily.push(daily);
        self.on_hand.push(on_hand);
        self.in_transit.push(in_transit);
        self.in_transit_eta.push(in_transit_eta);
        self.confirmed.push(confirmed);
        self.confirmed_eta.push(confirmed_eta);
    }
}

/// When and for how long each region is live, and which SKUs count there.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Launch instant per region (Unix seconds).
    pub launch: Vec<i64>,
    /// Days live per region (end − launch).
    pub days: Vec<f32>,
    /// `uplift[region][sku]`.
    pub uplift: Vec<Vec<f32>>,
    /// `excluded[region][sku]`: the SKU is dropped in that region.
    pub excluded: Vec<Vec<bool>>,
}

/// Per-region totals.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegionTotals {
    /// Promo demand, units.
    pub demand: f64,
    /// Demand covered by available stock, units.
    pub covered: f64,
    /// Cells with demand.
    pub cells: u64,
    /// Cells whose stock covers their demand.
    pub cells_covered: u64,
}

impl RegionTotals {
    /// covered / demand (1 when there is no demand).
    pub fn fill_rate(&self) -> f64 {
        if self.demand <= 0.0 { 1.0 } else { self.covered / self.demand }
    }

    /// Share of cells fully covered.
    pub fn coverage(&self) -> f64 {
        if self.cells == 0 { 1.0 } else { self.cells_covered as f64 / self.cells as f64 }
    }
}

/// The result of one alignment pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Alignment {
    /// Per region.
    pub regions: Vec<RegionTotals>,
    /// `short[region][sku]` = uncovered demand units.
    pub short: Vec<Vec<f32>>,
    /// `demand[region][sku]` = promo demand units.
    pub demand: Vec<Vec<f32>>,
}

/// Units available at `at` for cell `i`. Branch-free: whether inbound stock arrives by launch is
/// close to a coin flip on real data, so branches here mispredict about once per cell. Summed in
/// i64 and converted once.
#[inline(always)]
fn available(c: &Cells, i: usize, at: i64) -> f32 {
    let (it, cf) = (c.in_transit[i], c.confirmed[i]);
    (i64::from(c.on_hand[i])
        + i64::from(it) * i64::from((it > 0) & (c.in_transit_eta[i] <= at))
        + i64::from(cf) * i64::from((cf > 0) & (c.confirmed_eta[i] <= at))) as f32
}

/// The straightforward pass over every cell: the definition [`align`] must match to the bit
/// (checked by the unit tests and the benchmark).
pub fn align_reference(cells: &Cells, scenario: &Scenario, regions: usize, skus: usize) -> Alignment {
    let mut out = Alignment {
        regions: vec![RegionTotals::default(); regions],
        short: vec![vec![0.0; skus]; regions],
        demand: vec![vec![0.0; skus]; regions],
    };
    for i in 0..cells.len() {
        let r = cells.region[i] as usize;
        let k = cells.sku[i] as usize;
        if scenario.excluded[r][k] {
            continue;
        }
        let demand = cells.daily[i] * scenario.uplift[r][k] * scenario.days[r];
        if demand <= 0.0 {
            continue;
        }
        let avail = available(cells, i, scenario.launch[r]);
        let covered = avail.min(demand);
        let t = &mut out.regions[r];
        t.demand += f64::from(demand);
        t.covered += f64::from(covered);
        t.cells += 1;
        t.cells_covered += u64::from(avail >= demand);
        out.short[r][k] += demand - covered;
        out.demand[r][k] += demand;
    }
    out
}

/// One pass over every cell. Cells arrive store by store, so the loop walks runs of one region
/// with that region's launch, days, exclusions and output rows hoisted into locals; the result is
/// identical to [`align_reference`] (same summation order).
pub fn align(cells: &Cells, scenario: &Scenario, regions: usize, skus: usize) -> Alignment {
    let mut out = Alignment {
        regions: vec![RegionTotals::default(); regions],
        short: vec![vec![0.0; skus]; regions],
        demand: vec![vec![0.0; skus]; regions],
    };
    let n = cells.len();
    let (region, sku, daily) = (&cells.region[..n], &cells.sku[..n], &cells.daily[..n]);
    let mut start = 0;
    while start < n {
        let r = usize::from(region[start]);
        let mut end = n;
        let (at, days) = (scenario.launch[r], scenario.days[r]);
        let excluded = &scenario.excluded[r][..skus];
        let uplift = &scenario.uplift[r][..skus];
        let short = &mut out.short[r][..skus];
        let demand_row = &mut out.demand[r][..skus];
        let t = &mut out.regions[r];
        let (mut demand_sum, mut covered_sum) = (t.demand, t.covered);
        let (mut cells_n, mut covered_n) = (t.cells, t.cells_covered);
        for i in start..n {
            if usize::from(region[i]) != r {
                end = i;
                break;
            }
            let k = sku[i] as usize;
            assert!(k < skus, "SKU index {k} out of range");
            if excluded[k] {
                continue;
            }
            let demand = daily[i] * uplift[k] * days;
            if demand <= 0.0 {
                continue;
            }
            let avail = available(cells, i, at);
            let covered = avail.min(demand);
            demand_sum += f64::from(demand);
            covered_sum += f64::from(covered);
            cells_n += 1;
            covered_n += u64::from(avail >= demand);
            short[k] += demand - covered;
            demand_row[k] += demand;
        }
        (t.demand, t.covered, t.cells, t.cells_covered) = (demand_sum, covered_sum, cells_n, covered_n);
        start = end;
    }
    out
}

/// Fill rate of region `region` if it launched at `at` instead (window end fixed at `end`).
pub fn fill_rate_at(cells: &Cells, scenario: &Scenario, region: u16, at: i64, end: i64) -> f64 {
    let days = ((end - at).max(0) as f32) / 86_400.0;
    let (mut demand, mut covered) = (0f64, 0f64);
    for i in (0..cells.len()).filter(|&i| cells.region[i] == region) {
        let k = cells.sku[i] as usize;
        if scenario.excluded[region as usize][k] {
            continue;
        }
        let d = cells.daily[i] * scenario.uplift[region as usize][k] * days;
        demand += f64::from(d);
        covered += f64::from(available(cells, i, at).min(d));
    }
    if demand <= 0.0 { 1.0 } else { covered / demand }
}

/// The earliest whole-day launch delay at which `region` reaches `floor`, if any before `end`.
pub fn earliest_passing_launch(
    cells: &Cells,
    scenario: &Scenario,
    region: u16,
    floor: f64,
    end: i64,
) -> Option<(i64, f64)> {
    let launch = scenario.launch[region as usize];
    (1..).map(|d| launch + d * 86_400).take_while(|&t| t < end).find_map(|t| {
        let f = fill_rate_at(cells, scenario, region, t, end);
        (f >= floor).then_some((t, f))
    })
}

/// Memory floor for benchmarks: one streaming pass summing the same input columns.
pub fn memory_floor(cells: &Cells) -> f64 {
    let mut s = 0f64;
    for i in 0..cells.len() {
        s += f64::from(cells.daily[i])
            + f64::from(cells.on_hand[i])
            + f64::from(cells.in_transit[i])
            + cells.in_transit_eta[i] as f64
            + f64::from(cells.confirmed[i])
            + cells.confirmed_eta[i] as f64
            + f64::from(cells.region[i])
            + f64::from(cells.sku[i]);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(regions: usize, skus: usize) -> Scenario {
        Scenario {
            launch: vec![1000; regions],
            days: vec![10.0; regions],
            uplift: vec![vec![2.0; skus]; regions],
            excluded: vec![vec![false; skus]; regions],
        }
    }

    #[test]
    fn covers_demand_with_stock_arriving_by_launch() {
        let mut c = Cells::default();
        // demand 1 × 2 × 10 = 20 per cell
        c.push(0, 0, 1.0, 25, 0, 0, 0, 0); // covered
        c.push(0, 1, 1.0, 5, 10, 900, 10, 5000); // 15 by launch, confirmed later
        c.push(1, 0, 1.0, 0, 0, 0, 0, 0); // nothing
        let a = align(&c, &scenario(2, 2), 2, 2);
        assert_eq!(a.regions[0].demand, 40.0);
        assert_eq!(a.regions[0].covered, 35.0);
        assert_eq!(a.regions[0].cells_covered, 1);
        assert_eq!(a.short[0][1], 5.0);
        assert_eq!(a.regions[1].fill_rate(), 0.0);
        assert_eq!(c.store_of(1), None);
        let mut named = Cells::default();
        named.begin_store("S1");
        named.push(0, 0, 1.0, 1, 0, 0, 0, 0);
        named.push(0, 1, 1.0, 1, 0, 0, 0, 0);
        named.begin_store("S2");
        named.push(0, 0, 1.0, 1, 0, 0, 0, 0);
        assert_eq!([named.store_of(1), named.store_of(2)], [Some("S1"), Some("S2")]);
        assert!((a.regions[0].fill_rate() - 0.875).abs() < 1e-9);
    }

    #[test]
    fn the_fast_pass_matches_the_reference_to_the_bit() {
        let mut c = Cells::default();
        let mut x = 17u64;
        let mut next = || {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (x >> 33) as i64
        };
        for store in 0..30u32 {
            for sku in 0..50u32 {
                let r = (store / 10) as u16;
                let eta = 1000 + (next() % 5 - 2) * 86_400;
                c.push(
                    r,
                    sku,
                    (next() % 300) as f32 / 100.0,
                    (next() % 40) as i32,
                    (next() % 3) as i32 * 10,
                    eta,
                    (next() % 2) as i32 * 5,
                    eta + 86_400,
                );
            }
        }
        let mut s = scenario(3, 50);
        s.excluded[1][7] = true;
        s.launch[2] = 1000 + 86_400;
        assert_eq!(align(&c, &s, 3, 50), align_reference(&c, &s, 3, 50));
    }

    #[test]
    fn exclusions_and_delays() {
        let mut c = Cells::default();
        c.push(0, 0, 1.0, 2, 30, 1000 + 3 * 86_400, 0, 0);
        let mut s = scenario(1, 1);
        s.days = vec![10.0];
        let end = 1000 + 10 * 86_400;
        assert!(align(&c, &s, 1, 1).regions[0].fill_rate() < 0.2);
        // launching on day 3 catches the inbound: 7 days × 2 = 14 demand, 32 available
        let (t, f) = earliest_passing_launch(&c, &s, 0, 0.9, end).unwrap();
        assert_eq!(t, 1000 + 3 * 86_400);
        assert_eq!(f, 1.0);
        s.excluded[0][0] = true;
        assert_eq!(align(&c, &s, 1, 1).regions[0].demand, 0.0);
    }
}
