//! The inventory-alignment engine on the canonical shape, against its memory floor.
//!
//! Builds 720,000 synthetic store × SKU cells in memory (600 stores in 6 regions × 1,200 SKUs,
//! store-major like the positions stream, values from a fixed-seed LCG: daily demand 0.1–2.0,
//! on hand 0–60, 40% with in-transit stock and 20% with supplier-confirmed stock whose ETAs fall
//! within ±5 days of the region's launch) and a 14-day scenario (launch per region, uplift per SKU
//! 1.2–2.5, no exclusions). Then, round-robin in the same loop so all see the same machine state,
//! it times [`RUNS`] calls of each (after [`WARMUP`]):
//!
//! - `alignment::memory_floor(&cells)` — one streaming pass summing the same input columns;
//! - `alignment::align(&cells, &scenario, 6, 1200)` — the engine (region runs, branch-free
//!   availability);
//! - `alignment::align_reference` — the straightforward pass it is checked against, to the bit.
//!
//! Each call's inputs and result go through `std::hint::black_box`. Wall time per call with
//! `Instant`, single thread; the table gives min / median / max, ns per cell, input GB/s and the
//! median relative to the floor and to `align`.
//!
//! Run with: `cargo bench -p promo-activities --bench alignment`

use promo_activities::engines::alignment::{self, Alignment, Cells, RegionTotals, Scenario};
use std::{
    hint::black_box,
    time::{Duration, Instant},
};

/// Regions in the canonical scenario.
const REGIONS: usize = 6;
/// Stores per region.
const STORES_PER_REGION: usize = 100;
/// SKUs in the promotion.
const SKUS: usize = 1200;
/// Untimed iterations of each function before timing.
const WARMUP: usize = 3;
/// Timed iterations of each function.
const RUNS: usize = 30;
/// Launch of region 0, Unix seconds; region r launches r hours later (time zones).
const LAUNCH: i64 = 1_800_000_000;
/// One day in seconds.
const DAY: i64 = 86_400;
/// Input bytes per cell read by both `align` and `memory_floor` (u16 + 2×u32/f32 + 3×i32 + 2×i64).
const BYTES_PER_CELL: usize = 2 + 4 + 4 + 4 + 4 + 8 + 4 + 8;

/// Knuth's MMIX linear congruential generator; the high bits are used.
struct Lcg(u64);

impl Lcg {
    /// Next value in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Next value in [lo, hi).
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Next integer in [lo, hi] (inclusive).
    fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + ((hi - lo + 1) as f64 * self.unit()) as i64
    }
}

/// Launch instant of region `r`.
fn launch(r: usize) -> i64 {
    LAUNCH + r as i64 * 3_600
}

/// The canonical-shaped cells, store-major (every SKU of store 0, then store 1, …).
fn cells(rng: &mut Lcg) -> Cells {
    let mut c = Cells::default();
    c.reserve(REGIONS * STORES_PER_REGION * SKUS);
    for store in 0..REGIONS * STORES_PER_REGION {
        let r = store / STORES_PER_REGION;
        let at = launch(r);
        for k in 0..SKUS {
            let daily = rng.range(0.1, 2.0) as f32;
            let on_hand = rng.int(0, 60) as i32;
            let (in_transit, in_transit_eta) = if rng.unit() < 0.4 {
                (rng.int(1, 48) as i32, at + rng.int(-5 * DAY, 5 * DAY))
            } else {
                (0, 0)
            };
            let (confirmed, confirmed_eta) = if rng.unit() < 0.2 {
                (rng.int(1, 60) as i32, at + rng.int(-5 * DAY, 5 * DAY))
            } else {
                (0, 0)
            };
            c.push(r as u16, k as u32, daily, on_hand, in_transit, in_transit_eta, confirmed, confirmed_eta);
        }
    }
    c
}

/// Launch per region, 14 days live, uplift per SKU 1.2–2.5, nothing excluded.
fn scenario(rng: &mut Lcg) -> Scenario {
    Scenario {
        launch: (0..REGIONS).map(launch).collect(),
        days: vec![14.0; REGIONS],
        uplift: {
            let per_sku: Vec<f32> = (0..SKUS).map(|_| rng.range(1.2, 2.5) as f32).collect();
            vec![per_sku; REGIONS]
        },
        excluded: vec![vec![false; SKUS]; REGIONS],
    }
}

/// min / median / max of `runs` (sorted in place); the median of an even count is the mean of
/// the two middle runs.
fn stats(runs: &mut [Duration]) -> (Duration, Duration, Duration) {
    runs.sort();
    let n = runs.len();
    let median = if n.is_multiple_of(2) { (runs[n / 2 - 1] + runs[n / 2]) / 2 } else { runs[n / 2] };
    (runs[0], median, runs[n - 1])
}

/// Milliseconds with three decimals.
fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

/// Wall time of one call of `f`, its input and output hidden from the optimizer.
fn time<T>(f: impl FnOnce() -> T) -> Duration {
    let t = Instant::now();
    black_box(f());
    t.elapsed()
}

/// An alignment implementation under test.
type AlignFn = fn(&Cells, &Scenario, usize, usize) -> Alignment;

fn main() {
    let mut rng = Lcg(0x5EED_A11C);
    let t = Instant::now();
    let cells = cells(&mut rng);
    let scenario = scenario(&mut rng);
    let built = t.elapsed();
    let n = cells.len();
    assert_eq!(n, REGIONS * STORES_PER_REGION * SKUS);

    let engines: [(&str, AlignFn); 2] =
        [("align (engine)", alignment::align), ("align_reference (naive pass)", alignment::align_reference)];
    // The engine returns the reference's answer, to the bit.
    let reference = alignment::align_reference(&cells, &scenario, REGIONS, SKUS);
    assert_eq!(
        alignment::align(&cells, &scenario, REGIONS, SKUS),
        reference,
        "align disagrees with the reference"
    );

    // walls[0] = memory_floor, walls[1..] = engines, timed round-robin.
    let mut walls: Vec<Vec<Duration>> = vec![Vec::with_capacity(RUNS); engines.len() + 1];
    for i in 0..WARMUP + RUNS {
        let floor = time(|| alignment::memory_floor(black_box(&cells)));
        let mut w = vec![floor];
        w.extend(
            engines.iter().map(|(_, f)| time(|| f(black_box(&cells), black_box(&scenario), REGIONS, SKUS))),
        );
        if i >= WARMUP {
            for (v, d) in walls.iter_mut().zip(w) {
                v.push(d);
            }
        }
    }
    let rows: Vec<(&str, Duration, Duration, Duration)> = std::iter::once("memory_floor")
        .chain(engines.iter().map(|(name, _)| *name))
        .zip(walls.iter_mut())
        .map(|(name, v)| {
            let (min, median, max) = stats(v);
            (name, min, median, max)
        })
        .collect();
    let floor = rows[0].2.as_secs_f64();
    let engine = rows[1].2.as_secs_f64();

    println!(
        "alignment: {n} cells ({REGIONS} regions × {STORES_PER_REGION} stores × {SKUS} SKUs), store-major"
    );
    println!(
        "  built in {:.1} ms; input {:.1} MB ({BYTES_PER_CELL} B/cell over 8 columns); {WARMUP} warm-up + \
         {RUNS} timed calls of each, round-robin, single thread, Instant wall time, black_box in/out",
        built.as_secs_f64() * 1e3,
        (n * BYTES_PER_CELL) as f64 / 1e6
    );
    println!();
    println!(
        "{:<34} {:>9} {:>10} {:>9} {:>8} {:>7} {:>8} {:>8}",
        "function", "min ms", "median ms", "max ms", "ns/cell", "GB/s", "x floor", "x align"
    );
    for (name, min, median, max) in &rows {
        let s = median.as_secs_f64();
        println!(
            "{name:<34} {:>9} {:>10} {:>9} {:>8.2} {:>7.2} {:>8.2} {:>8.2}",
            ms(*min),
            ms(*median),
            ms(*max),
            s * 1e9 / n as f64,
            (n * BYTES_PER_CELL) as f64 / 1e9 / s,
            s / floor,
            s / engine
        );
    }
    println!();
    println!(
        "  align median {:.3} ms = {:.2} × memory_floor median {:.3} ms (target: align ≤ 10 ms)",
        engine * 1e3,
        engine / floor,
        floor * 1e3
    );
    println!(
        "  align_reference is the straightforward pass align is checked against (same Alignment, to the bit)"
    );
    let worst = reference.regions.iter().map(RegionTotals::fill_rate).fold(f64::INFINITY, f64::min);
    println!("  sanity: lowest regional fill rate {worst:.3}");
}
