//! Backtest of the uplift forecasts on held-out promotions of the reference world
//! (`config/world.toml`, drawn at the canonical sizes: 600 stores in 6 regions, 1,200 SKUs in 24
//! categories, the dataset's seed).
//!
//! The models see only what the reference systems publish: per SKU × region × week, the baseline
//! units and units sold of the store-weeks that stayed in stock (`StreamPromotionOutcomes`), and
//! per SKU × promotion the realised uplift (`GetPromotionHistory`). They are scored against the
//! units *demanded* in each store-week of the held-out promotions (the world's draw before the
//! stock cap: a demand forecast is judged on demand), at three grains: store-week, SKU ×
//! promotion total, and promotion total (all its SKUs, regions and weeks).
//!
//! - `flat`: the planner's flat uplift, the best single constant on the training cells;
//! - `per-SKU slope`: `forecast::uplift_from_history` on the SKU's training promotions;
//! - `learned`: `uplift::fit` on the training cells;
//! - `oracle`: the world's true mean (every parameter known, only the noise unknown).
//!
//! Two splits: by time (promotions starting in the last 20% of the history's weeks are held out)
//! and by promotion (every fifth promotion held out, spread over the whole history).
//!
//! Then drift: the model fitted on the whole history, its reference the errors it made on the
//! latest 20% of promotions when fitted without them (as the assessment does), and sequences of
//! later promotions from the same world (stationary) or from one whose lift fell (every region's
//! level −0.05 or −0.2: sales 5% or 18% under the old lift) — after each promotion the tracking signal of
//! `engines::drift` with the policy's default threshold (4). Reported: the share of stationary
//! sequences with a false alarm, and how many promotions a shift takes to be flagged.
//!
//! Then stockout calibration: the probabilities `engines::stockout` gives from the model and the
//! store-level size it reads from the history's in-stock moments, against what later promotions
//! of the world did, per store-week and per store × line over a two-week promotion, with the
//! world's stock and with tighter stock: the Brier skill score against the base rate (target ≥
//! 0.10) and reliability per bin of forecasts (within 5 points where a bin has ≥ 200 cells).
//!
//! Run with: `cargo bench -p promo-activities --bench backtest`; `PROMO_WORLD=FILE` backtests on
//! another world file instead of the reference one.

use promo_activities::engines::{drift, forecast::uplift_from_history, stockout, uplift};
use promo_systems::{
    rng::SplitMix64,
    world::{PastPromotion, World, WorldSpec},
};
use rust_decimal::{Decimal, prelude::FromPrimitive};
use std::{
    collections::{BTreeMap, HashMap},
    time::Instant,
};

const SEED: u64 = 2026;
const STORES: usize = 600;
const SKUS: usize = 1200;
const CATEGORIES: usize = 24;
const REGIONS: usize = 6;
const MODELS: [&str; 4] = ["flat", "per-SKU slope", "learned", "oracle"];

/// In-stock sums of a line × region × week: baseline, units, units², baseline².
type Sums = (f64, f64, f64, f64);

/// Whether promotion `i` is held out.
type HeldOut = Box<dyn Fn(usize, &PastPromotion) -> bool>;

/// Accumulated errors of one model.
#[derive(Default, Clone)]
struct Score {
    abs: f64,
    err: f64,
    actual: f64,
}

impl Score {
    fn add(&mut self, forecast: f64, actual: f64) {
        self.abs += (forecast - actual).abs();
        self.err += forecast - actual;
        self.actual += actual;
    }
    fn wape(&self) -> f64 {
        self.abs / self.actual
    }
    fn bias(&self) -> f64 {
        self.err / self.actual
    }
}

struct Data {
    world: World,
    promos: Vec<PastPromotion>,
    stores_by_region: Vec<Vec<usize>>,
    category_of: Vec<usize>,
    baseline: Vec<f32>,
}

impl Data {
    fn simulate(&self, p: &PastPromotion, sink: impl FnMut(&promo_systems::world::StoreWeek)) {
        self.world.simulate_promotion(
            p,
            &self.stores_by_region,
            &self.category_of,
            |s, k| f64::from(self.baseline[s * SKUS + k]),
            sink,
        );
    }
}

fn main() {
    let t = Instant::now();
    let spec = match std::env::var("PROMO_WORLD") {
        Ok(path) => {
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("PROMO_WORLD={path}: {e}"));
            WorldSpec::from_toml(&text).unwrap_or_else(|e| panic!("PROMO_WORLD={path}: {e}"))
        }
        Err(_) => WorldSpec::reference(),
    };
    let world = World::new(spec, SEED, CATEGORIES, REGIONS);
    // Baselines with the dataset's distribution: SKU popularity × store size × cell noise.
    let mut rng = SplitMix64::new(SEED);
    let store_factor: Vec<f64> = (0..STORES).map(|_| rng.range(0.6, 1.6)).collect();
    let popularity: Vec<f64> = (0..SKUS).map(|_| rng.range(0.3, 2.5)).collect();
    let mut baseline = vec![0f32; STORES * SKUS];
    for (s, f) in store_factor.iter().enumerate() {
        for (k, p) in popularity.iter().enumerate() {
            baseline[s * SKUS + k] = (p * f * rng.range(0.6, 1.4) / 2.0) as f32;
        }
    }
    let mut stores_by_region = vec![Vec::new(); REGIONS];
    for s in 0..STORES {
        stores_by_region[s * REGIONS / STORES].push(s);
    }
    let promos = world.past_promotions(SKUS, REGIONS);
    let data = Data {
        category_of: (0..SKUS).map(|k| k % CATEGORIES).collect(),
        world,
        promos,
        stores_by_region,
        baseline,
    };

    // What the systems publish: in-stock outcomes per SKU × region × week, and per SKU ×
    // promotion the realised uplift.
    let mut observations = Vec::new();
    let mut moments = Vec::new(); // per observation: in-stock Σ units², Σ baseline²
    let mut realised: Vec<Vec<(usize, f64, f64)>> = Vec::new(); // per promotion: (sku, depth, uplift)
    let (mut store_weeks, mut stockouts) = (0u64, 0u64);
    for (pi, p) in data.promos.iter().enumerate() {
        let mut cells: BTreeMap<(usize, usize, u32), Sums> = BTreeMap::new();
        data.simulate(p, |c| {
            store_weeks += 1;
            if c.stocked_out {
                stockouts += 1;
            } else {
                let a = cells.entry((c.line, c.region, c.week)).or_default();
                a.0 += c.baseline_units;
                a.1 += c.sold;
                a.2 += c.sold * c.sold;
                a.3 += c.baseline_units * c.baseline_units;
            }
        });
        let mut lines = vec![(0.0, 0.0); p.lines.len()];
        for ((line, region, _), (exposure, units, units_sq, baseline_sq)) in cells {
            moments.push((units_sq, baseline_sq));
            let (sku, depth) = p.lines[line];
            observations.push(uplift::Observation {
                promotion: pi as u32,
                category: data.category_of[sku] as u32,
                region: region as u32,
                mechanic: p.mechanic as u8,
                depth,
                exposure,
                units,
            });
            lines[line].0 += exposure;
            lines[line].1 += units;
        }
        realised.push(
            p.lines
                .iter()
                .zip(lines)
                .filter(|(_, (e, _))| *e > 0.0)
                .map(|(&(k, d), (e, u))| (k, d, u / e))
                .collect(),
        );
    }
    println!(
        "world: {} past promotions over {} weeks, {} store-weeks ({:.1}% stocked out), {} published cells; drawn in {:.1}s\n",
        data.promos.len(),
        data.world.spec.history.weeks,
        store_weeks,
        100.0 * stockouts as f64 / store_weeks as f64,
        observations.len(),
        t.elapsed().as_secs_f64()
    );

    let cut = (f64::from(data.world.spec.history.weeks) * 0.8) as u32;
    let splits: [(&str, HeldOut); 2] = [
        ("by time: promotions starting in the last 20% of weeks", Box::new(move |_, p| p.start_week >= cut)),
        ("by promotion: every fifth promotion", Box::new(|i, _| i % 5 == 4)),
    ];
    let mut misses = 0;
    for (name, held_out) in &splits {
        let test: Vec<bool> = data.promos.iter().enumerate().map(|(i, p)| held_out(i, p)).collect();
        let train: Vec<uplift::Observation> =
            observations.iter().filter(|o| !test[o.promotion as usize]).copied().collect();
        let (units, exposure) = train.iter().fold((0.0, 0.0), |a, o| (a.0 + o.units, a.1 + o.exposure));
        let flat = units / exposure;
        let mut history: HashMap<usize, Vec<(Decimal, Decimal)>> = HashMap::new();
        for (pi, lines) in realised.iter().enumerate().filter(|(pi, _)| !test[*pi]) {
            let _ = pi;
            for &(k, d, u) in lines {
                let dec = |x: f64| Decimal::from_f64(x).unwrap_or_default().round_dp(3);
                history.entry(k).or_default().push((dec(d), dec(u)));
            }
        }
        let fit_started = Instant::now();
        let categories = (0..CATEGORIES).map(|c| format!("c{c}")).collect();
        let regions = (0..REGIONS).map(|r| format!("R{r}")).collect();
        let model = uplift::fit(&train, categories, regions).expect("the reference history fits");
        let fit_ms = fit_started.elapsed().as_secs_f64() * 1e3;

        let mut store_week = vec![Score::default(); 4];
        let mut sku_total = vec![Score::default(); 4];
        let mut promo_total = vec![Score::default(); 4];
        let mut held = 0;
        for (_, p) in data.promos.iter().enumerate().filter(|(pi, _)| test[*pi]) {
            held += 1;
            let slope: Vec<f64> = p
                .lines
                .iter()
                .map(|&(k, d)| uplift_from_history(history.get(&k).map_or(&[][..], |v| v), d))
                .collect();
            let mut line_sums = vec![[0f64; 5]; p.lines.len()];
            let mut sums = [0f64; 5];
            data.simulate(p, |c| {
                let depth = p.lines[c.line].1;
                let f = [
                    c.baseline_units * flat,
                    c.baseline_units * slope[c.line],
                    c.baseline_units * model.lift_at(c.category, c.region, p.mechanic, depth),
                    c.expected,
                ];
                for (m, x) in f.iter().enumerate() {
                    store_week[m].add(*x, c.demand);
                    line_sums[c.line][m] += x;
                    sums[m] += x;
                }
                line_sums[c.line][4] += c.demand;
                sums[4] += c.demand;
            });
            for l in &line_sums {
                for m in 0..4 {
                    sku_total[m].add(l[m], l[4]);
                }
            }
            for m in 0..4 {
                promo_total[m].add(sums[m], sums[4]);
            }
        }
        println!("split {name}: {held} held out, {} training cells", train.len());
        println!(
            "learned model: fitted in {fit_ms:.0} ms, {} IRLS iterations, pseudo-R² {:.3}, dispersion {:.1}",
            model.stats.iterations, model.stats.pseudo_r2, model.stats.dispersion
        );
        println!("| model | store-week WAPE | SKU × promotion WAPE | promotion WAPE | bias |");
        println!("|---|---:|---:|---:|---:|");
        for m in 0..4 {
            println!(
                "| {} | {:.1}% | {:.1}% | {:.1}% | {:+.1}% |",
                MODELS[m],
                100.0 * store_week[m].wape(),
                100.0 * sku_total[m].wape(),
                100.0 * promo_total[m].wape(),
                100.0 * store_week[m].bias()
            );
        }
        let (flat_p, learned_p, oracle_p) =
            (promo_total[0].wape(), promo_total[2].wape(), promo_total[3].wape());
        let checks = [
            ("promotion WAPE ≥ 30% below flat", 1.0 - learned_p / flat_p, 0.30),
            ("store-week WAPE ≥ 8% below flat", 1.0 - store_week[2].wape() / store_week[0].wape(), 0.08),
            ("|bias| ≤ 5%", 0.05 - store_week[2].bias().abs(), 0.0),
            ("≥ 60% of the gap to the oracle closed", (flat_p - learned_p) / (flat_p - oracle_p), 0.60),
        ];
        for (what, value, target) in checks {
            let met = value >= target;
            misses += usize::from(!met);
            let shown = if target == 0.0 {
                format!("bias {:+.1}%", 100.0 * store_week[2].bias())
            } else {
                format!("{:.0}%", 100.0 * value)
            };
            println!("  {} {what}: {shown}", if met { "met " } else { "MISS" });
        }
        println!();
    }
    drift_section(&data, &observations);
    misses += stockout_section(&data, &observations, &moments);
    println!("{} target(s) missed; total {:.1}s", misses, t.elapsed().as_secs_f64());
}

/// Sequences of promotions after the history.
const SEQUENCES: u64 = 30;
/// Promotions per sequence.
const SEQUENCE_LEN: u32 = 24;
/// The policy's default threshold.
const THRESHOLD: f64 = 4.0;

fn drift_section(data: &Data, observations: &[uplift::Observation]) {
    let categories: Vec<String> = (0..CATEGORIES).map(|c| format!("c{c}")).collect();
    let regions: Vec<String> = (0..REGIONS).map(|r| format!("R{r}")).collect();
    let starts: Vec<i64> = data.promos.iter().map(|p| i64::from(p.start_week)).collect();
    let holdout =
        uplift::time_holdout(observations, |p| starts[p as usize], 0.2, categories.clone(), regions.clone())
            .expect("the reference history fits");
    let model = uplift::fit(observations, categories, regions).expect("the reference history fits");
    let reference =
        drift::Reference { mean: holdout.log_mean, spread: holdout.log_spread, wape: holdout.promotion_wape };
    let shift = |by: f64| {
        let mut w = data.world.clone();
        for r in &mut w.region_level {
            *r -= by;
        }
        w
    };
    let (small, large) = (shift(0.05), shift(0.2));
    println!(
        "drift: reference from {} held-out promotions (mean log error {:+.3}, spread {:.3}); {SEQUENCES} sequences of {SEQUENCE_LEN} later promotions, threshold {THRESHOLD}",
        holdout.promotions, holdout.log_mean, holdout.log_spread
    );
    for (name, world) in [
        ("stationary world", &data.world),
        ("lift fell 5% (region levels −0.05)", &small),
        ("lift fell 18% (region levels −0.2)", &large),
    ] {
        let (mut alarmed, mut checks, mut alarms) = (0u32, 0u32, 0u32);
        let mut delays = Vec::new();
        for s in 0..SEQUENCES {
            let mut outcomes = Vec::new();
            let mut first = None;
            for (i, p) in world.future_promotions(s, SEQUENCE_LEN, SKUS, REGIONS).iter().enumerate() {
                let (mut forecast, mut sold) = (0.0, 0.0);
                world.simulate_promotion(
                    p,
                    &data.stores_by_region,
                    &data.category_of,
                    |st, k| f64::from(data.baseline[st * SKUS + k]),
                    |c| {
                        forecast += c.baseline_units
                            * model.lift_at(c.category, c.region, p.mechanic, p.lines[c.line].1);
                        sold += c.sold;
                    },
                );
                outcomes.push((forecast, sold));
                let d = drift::track(&outcomes, &reference, THRESHOLD);
                if d.tracked >= drift::MIN_TRACKED {
                    checks += 1;
                    alarms += u32::from(d.drifting);
                }
                if d.drifting && first.is_none() {
                    first = Some(i + 1);
                }
            }
            alarmed += u32::from(first.is_some());
            if let Some(n) = first {
                delays.push(n);
            }
        }
        delays.sort_unstable();
        let pct =
            |q: f64| delays.get(((delays.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0);
        println!(
            "  {name}: {alarmed} of {SEQUENCES} sequences flagged ({alarms} of {checks} checks); promotions to the first flag: median {}, p90 {}",
            if delays.is_empty() { "—".to_owned() } else { pct(0.5).to_string() },
            if delays.is_empty() { "—".to_owned() } else { pct(0.9).to_string() },
        );
    }
    println!();
}

/// Later promotions scored for stockout calibration, per stock level.
const CALIBRATION_PROMOTIONS: u32 = 40;
/// Reliability: cells a bin needs to be judged, and how far its mean forecast may sit from the
/// share that ran out.
const BIN_CELLS: usize = 200;
const BIN_TOLERANCE: f64 = 0.05;
const BINS: [f64; 9] = [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0001];

/// Forecast probabilities with what happened, and an oracle's for the same cells.
#[derive(Default)]
struct Calibration {
    cells: Vec<(f64, bool)>,
    oracle: Vec<f64>,
}

impl Calibration {
    /// Prints Brier skill against the base rate and the reliability bins; returns the misses.
    fn report(&self, name: &str) -> usize {
        let n = self.cells.len() as f64;
        let base = self.cells.iter().filter(|c| c.1).count() as f64 / n;
        let brier = self.cells.iter().map(|&(p, o)| (p - f64::from(u8::from(o))).powi(2)).sum::<f64>() / n;
        let reference = base * (1.0 - base);
        let skill = 1.0 - brier / reference;
        let oracle = self
            .oracle
            .iter()
            .zip(&self.cells)
            .map(|(p, c)| (p - f64::from(u8::from(c.1))).powi(2))
            .sum::<f64>()
            / n;
        let mut bins = vec![(0usize, 0f64, 0usize); BINS.len()];
        for &(p, o) in &self.cells {
            let b = BINS.iter().position(|&hi| p < hi).unwrap_or(BINS.len() - 1);
            bins[b].0 += 1;
            bins[b].1 += p;
            bins[b].2 += usize::from(o);
        }
        println!(
            "  {name}: {} cells, {:.2}% ran out; Brier {:.4} vs {:.4} for the base rate: skill {:.2} (oracle: {:.2}){}",
            self.cells.len(),
            100.0 * base,
            brier,
            reference,
            skill,
            1.0 - oracle / reference,
            if skill < 0.10 { " MISS (target ≥ 0.10)" } else { "" }
        );
        println!("  | forecast bin | cells | mean forecast | ran out | gap |");
        println!("  |---|---:|---:|---:|---:|");
        let mut misses = usize::from(skill < 0.10);
        let mut lo = 0.0;
        for (hi, (count, sum, out)) in BINS.iter().zip(&bins) {
            if *count > 0 {
                let (mean, rate) = (sum / *count as f64, *out as f64 / *count as f64);
                let judged = *count >= BIN_CELLS;
                let ok = !judged || (mean - rate).abs() <= BIN_TOLERANCE;
                misses += usize::from(!ok);
                println!(
                    "  | {:.0}–{:.0}% | {count} | {:.1}% | {:.1}% | {:+.1} pts{} |",
                    100.0 * lo,
                    (100.0 * hi).min(100.0),
                    100.0 * mean,
                    100.0 * rate,
                    100.0 * (rate - mean),
                    if !judged {
                        " (too few to judge)"
                    } else if ok {
                        ""
                    } else {
                        " MISS"
                    }
                );
            }
            lo = *hi;
        }
        misses
    }
}

/// Stockout calibration: the model and its store-level size fitted on the whole history, then
/// later promotions of the same world with the world's stock (2–4 × expected demand), tight
/// stock (1–2.5 ×) and uneven stock (0.5–4 ×): per store-week, P(demand > stock) against whether
/// it ran out; per store × line over a whole two-week promotion, P(window demand > the window's
/// stock) likewise. The oracle knows each draw's mean (the promotion's and the store's effects
/// included) and the world's negative-binomial size: the skill no forecast can beat.
fn stockout_section(data: &Data, observations: &[uplift::Observation], moments: &[(f64, f64)]) -> usize {
    let categories: Vec<String> = (0..CATEGORIES).map(|c| format!("c{c}")).collect();
    let regions: Vec<String> = (0..REGIONS).map(|r| format!("R{r}")).collect();
    let model = uplift::fit(observations, categories, regions).expect("the reference history fits");
    let size =
        stockout::size_from_moments(observations.iter().zip(moments).map(|(o, &(units_sq, baseline_sq))| {
            (
                model.lift_at(o.category as usize, o.region as usize, usize::from(o.mechanic), o.depth),
                units_sq,
                o.units,
                baseline_sq,
            )
        }))
        .expect("the history carries moments");
    println!("stockout probability: store-level size {size:.2} from the in-stock moments of the history");
    let mut misses = 0;
    let dispersion = data.world.spec.sales.dispersion;
    for (name, cover) in [
        ("world's stock (2–4 × expected demand)", None),
        ("tight stock (1–2.5 ×)", Some([1.0, 2.5])),
        ("uneven stock (0.5–4 ×)", Some([0.5, 4.0])),
    ] {
        let mut world = data.world.clone();
        if let Some(c) = cover {
            world.spec.history.cover = c;
        }
        let (mut week, mut window) = (Calibration::default(), Calibration::default());
        for p in world.future_promotions(99, CALIBRATION_PROMOTIONS, SKUS, REGIONS) {
            // (line, store) → (forecast, demand, stock) over the promotion's weeks
            let mut totals: HashMap<(usize, usize), (f64, f64, f64, f64)> = HashMap::new();
            world.simulate_promotion(
                &p,
                &data.stores_by_region,
                &data.category_of,
                |st, k| f64::from(data.baseline[st * SKUS + k]),
                |c| {
                    let mean =
                        c.baseline_units * model.lift_at(c.category, c.region, p.mechanic, p.lines[c.line].1);
                    week.cells.push((stockout::probability(mean, size, c.stock), c.stocked_out));
                    week.oracle.push(stockout::probability(c.mean, dispersion, c.stock));
                    let t = totals.entry((c.line, c.store)).or_default();
                    t.0 += mean;
                    t.1 += c.demand;
                    t.2 += c.stock;
                    t.3 += c.mean;
                },
            );
            if p.weeks > 1 {
                for (forecast, demand, stock, mean) in totals.into_values() {
                    window.cells.push((stockout::probability(forecast, size, stock), demand > stock));
                    // the sum of two weeks' draws of the same mean and size: size × 2
                    window.oracle.push(stockout::probability(mean, 2.0 * dispersion, stock));
                }
            }
        }
        println!(" {name}");
        misses += week.report("per store-week");
        misses += window.report("per store × line over a two-week promotion");
    }
    println!();
    misses
}
