//! The reference world: the generating process behind the promotion history and the in-window
//! sales of the reference systems, from a seed and the parameters of `config/world.toml`.
//!
//! A store × SKU × period of a promotion demands NegativeBinomial(μ, `dispersion`) units with
//!
//! ```text
//! μ        = baseline × days × exp(log lift + promotion-line noise + store noise)
//! log lift = slope[category] × depth + curvature × depth² + region[r] + region_depth[r] × depth
//!            + mechanic[m]
//! ```
//!
//! Sold units are capped by stock, so stockouts censor what history records.
//!
//! Nothing here reads the clock or OS randomness: the same spec and seed give the same world.

use crate::rng::mix;
use rand::{RngExt, SeedableRng, rngs::ChaCha8Rng};
use serde::{Deserialize, Serialize};
use statrs::distribution::{NegativeBinomial, Normal};

/// The mechanics a past promotion used, in the order of the spec's arrays.
pub const MECHANICS: [&str; 3] = ["price cut", "multi-buy", "feature"];

/// The generating process, as written in a world file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldSpec {
    /// Seed of every draw (combined with the dataset's seed).
    pub seed: u64,
    /// Past promotions.
    pub history: HistorySpec,
    /// How a promotion lifts demand.
    pub lift: LiftSpec,
    /// How units are drawn.
    pub sales: SalesSpec,
}

/// Past promotions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistorySpec {
    /// How many.
    pub promotions: u32,
    /// Weeks of history before the anchor they are spread over.
    pub weeks: u32,
    /// SKUs per promotion, drawn uniformly in [min, max].
    pub skus_per_promotion: [u32; 2],
    /// Regions per promotion, drawn uniformly in [min, max].
    pub regions_per_promotion: [u32; 2],
    /// Weeks a promotion lasts, drawn uniformly in [min, max].
    pub duration_weeks: [u32; 2],
    /// Discount depths a line is drawn from.
    pub depths: Vec<f64>,
    /// Shares of price cut, multi-buy and feature.
    pub mechanic_shares: [f64; 3],
    /// Stock of a past store-week as a multiple of its expected demand, uniform in [min, max].
    pub cover: [f64; 2],
}

/// How a promotion lifts demand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiftSpec {
    /// Per-category slope of log lift in depth, uniform in [min, max].
    pub category_slope: [f64; 2],
    /// Coefficient of depth².
    pub curvature: f64,
    /// Standard deviation of the regions' level effects.
    pub region_sd: f64,
    /// Standard deviation of the regions' extra depth slope.
    pub region_depth_sd: f64,
    /// Log lift of each mechanic.
    pub mechanic: [f64; 3],
    /// Standard deviation of a promotion line's own log effect.
    pub promotion_sd: f64,
    /// Standard deviation of a store's log effect within a promotion.
    pub store_sd: f64,
}

/// How units are drawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SalesSpec {
    /// Negative-binomial size: variance = μ + μ² / dispersion.
    pub dispersion: f64,
}

/// A world file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    /// Not TOML of the expected shape (the message names the line and the field).
    #[error("world file: {0}")]
    Parse(#[from] toml::de::Error),
    /// A value out of range.
    #[error("world file: {field}: {reason}")]
    Invalid {
        /// The field, dotted.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> WorldError {
    WorldError::Invalid { field, reason: reason.into() }
}

impl WorldSpec {
    /// `config/world.toml`, compiled in.
    pub const REFERENCE_TOML: &'static str = include_str!("../../config/world.toml");

    /// The reference world.
    pub fn reference() -> Self {
        Self::from_toml(Self::REFERENCE_TOML).expect("config/world.toml is a valid world")
    }

    /// Parses and checks a world file.
    pub fn from_toml(text: &str) -> Result<Self, WorldError> {
        let spec: Self = toml::from_str(text)?;
        spec.check()?;
        Ok(spec)
    }

    /// The spec as TOML (how a dataset records the world it was drawn from).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a world spec serialises")
    }

    fn check(&self) -> Result<(), WorldError> {
        let h = &self.history;
        let range = |field, [lo, hi]: [u32; 2]| {
            if lo == 0 || lo > hi {
                Err(invalid(field, format!("[{lo}, {hi}] must be 1 ≤ min ≤ max")))
            } else {
                Ok(())
            }
        };
        range("history.skus_per_promotion", h.skus_per_promotion)?;
        range("history.regions_per_promotion", h.regions_per_promotion)?;
        range("history.duration_weeks", h.duration_weeks)?;
        if h.weeks <= h.duration_weeks[1] {
            return Err(invalid("history.weeks", "must exceed the longest duration"));
        }
        if h.depths.is_empty() || h.depths.iter().any(|d| !(0.0..0.95).contains(d)) {
            return Err(invalid("history.depths", "needs depths in [0, 0.95)"));
        }
        if h.mechanic_shares.iter().any(|s| *s < 0.0) || h.mechanic_shares.iter().sum::<f64>() <= 0.0 {
            return Err(invalid("history.mechanic_shares", "shares must be ≥ 0 with a positive sum"));
        }
        if h.cover[0].is_nan() || h.cover[0] <= 0.0 || h.cover[0] > h.cover[1] {
            return Err(invalid("history.cover", "must be 0 < min ≤ max"));
        }
        let l = &self.lift;
        if l.category_slope[0] > l.category_slope[1] {
            return Err(invalid("lift.category_slope", "min > max"));
        }
        for (field, sd) in [
            ("lift.region_sd", l.region_sd),
            ("lift.region_depth_sd", l.region_depth_sd),
            ("lift.promotion_sd", l.promotion_sd),
            ("lift.store_sd", l.store_sd),
        ] {
            if !(0.0..=2.0).contains(&sd) {
                return Err(invalid(field, format!("{sd} is not a standard deviation in [0, 2]")));
            }
        }
        if self.sales.dispersion.is_nan() || self.sales.dispersion <= 0.0 {
            return Err(invalid("sales.dispersion", "must be > 0"));
        }
        Ok(())
    }
}

/// A world: the spec with its per-category and per-region parameters drawn.
#[derive(Debug, Clone)]
pub struct World {
    /// The spec.
    pub spec: WorldSpec,
    /// Slope of log lift in depth, per category index.
    pub category_slope: Vec<f64>,
    /// Level of log lift, per region index.
    pub region_level: Vec<f64>,
    /// Extra depth slope, per region index.
    pub region_depth: Vec<f64>,
    seed: u64,
}

/// A normal draw (mean 0) that tolerates a zero standard deviation.
fn normal(rng: &mut ChaCha8Rng, sd: f64) -> f64 {
    if sd <= 0.0 { 0.0 } else { rng.sample(Normal::new(0.0, sd).expect("sd > 0 and finite")) }
}

impl World {
    /// Draws the world's parameters for a dataset with `categories` and `regions`.
    pub fn new(spec: WorldSpec, dataset_seed: u64, categories: usize, regions: usize) -> Self {
        let seed = mix(spec.seed ^ mix(dataset_seed));
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let [lo, hi] = spec.lift.category_slope;
        let category_slope = (0..categories).map(|_| lo + (hi - lo) * rng.random::<f64>()).collect();
        let region_level = (0..regions).map(|_| normal(&mut rng, spec.lift.region_sd)).collect();
        let region_depth = (0..regions).map(|_| normal(&mut rng, spec.lift.region_depth_sd)).collect();
        Self { spec, category_slope, region_level, region_depth, seed }
    }

    /// Log lift without noise.
    pub fn log_lift(&self, category: usize, region: usize, mechanic: usize, depth: f64) -> f64 {
        let l = &self.spec.lift;
        self.category_slope[category] * depth
            + l.curvature * depth * depth
            + self.region_level[region]
            + self.region_depth[region] * depth
            + l.mechanic[mechanic]
    }

    /// Expected lift over the promotion and store noise (the oracle's lift):
    /// E[exp(ε + η)] = exp((σp² + σs²) / 2) for normal ε, η.
    pub fn mean_lift(&self, category: usize, region: usize, mechanic: usize, depth: f64) -> f64 {
        let l = &self.spec.lift;
        (self.log_lift(category, region, mechanic, depth)
            + (l.promotion_sd * l.promotion_sd + l.store_sd * l.store_sd) / 2.0)
            .exp()
    }

    /// A generator for the draws keyed by `keys` (a promotion, a store, …).
    pub fn rng(&self, keys: &[u64]) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(keys.iter().fold(self.seed, |acc, k| mix(acc ^ mix(*k))))
    }

    /// The multiplicative effect of promotion `promotion`'s line of SKU `sku`.
    pub fn line_effect(&self, promotion: u64, sku: usize) -> f64 {
        normal(&mut self.rng(&[1, promotion, sku as u64]), self.spec.lift.promotion_sd).exp()
    }

    /// The multiplicative effect of store `store` in promotion `promotion`.
    pub fn store_effect(&self, promotion: u64, store: usize) -> f64 {
        normal(&mut self.rng(&[2, promotion, store as u64]), self.spec.lift.store_sd).exp()
    }

    /// Units demanded when `mean` are expected.
    pub fn draw(&self, rng: &mut ChaCha8Rng, mean: f64) -> f64 {
        if mean <= 0.0 {
            return 0.0;
        }
        let r = self.spec.sales.dispersion;
        let nb = NegativeBinomial::new(r, r / (r + mean)).expect("r > 0 and p in (0, 1]");
        rng.sample(nb) as f64
    }

    /// The history's past promotions: when, where, which SKUs at which depths, which mechanic.
    /// `category_of[sku]` is each SKU's category; `regions` the dataset's region count.
    pub fn past_promotions(&self, skus: usize, regions: usize) -> Vec<PastPromotion> {
        self.draw_promotions(&mut self.rng(&[3]), 0, self.spec.history.promotions, skus, regions)
    }

    /// `count` further promotions of the same world, stream `stream` (for backtests of what comes
    /// after the history): the same distribution as the history's, keys from 1,000,000 × (stream + 1).
    pub fn future_promotions(
        &self,
        stream: u64,
        count: u32,
        skus: usize,
        regions: usize,
    ) -> Vec<PastPromotion> {
        self.draw_promotions(&mut self.rng(&[6, stream]), 1_000_000 * (stream + 1), count, skus, regions)
    }

    fn draw_promotions(
        &self,
        rng: &mut ChaCha8Rng,
        first_key: u64,
        count: u32,
        skus: usize,
        regions: usize,
    ) -> Vec<PastPromotion> {
        let h = &self.spec.history;
        let uniform = |rng: &mut ChaCha8Rng, [lo, hi]: [u32; 2]| lo + rng.random_range(0..=hi - lo);
        let share_sum: f64 = h.mechanic_shares.iter().sum();
        (0..count)
            .map(|p| {
                let rng = &mut *rng;
                let weeks = uniform(rng, h.duration_weeks);
                let start_week = rng.random_range(0..=h.weeks - weeks);
                let mut pick = rng.random::<f64>() * share_sum;
                let mechanic = h
                    .mechanic_shares
                    .iter()
                    .position(|s| {
                        pick -= s;
                        pick < 0.0
                    })
                    .unwrap_or(0);
                let n_regions = (uniform(rng, h.regions_per_promotion) as usize).min(regions);
                let mut region_ids = rand::seq::index::sample(rng, regions, n_regions).into_vec();
                region_ids.sort_unstable();
                let n_skus = (uniform(rng, h.skus_per_promotion) as usize).min(skus);
                let mut sku_ids = rand::seq::index::sample(rng, skus, n_skus).into_vec();
                sku_ids.sort_unstable();
                let lines =
                    sku_ids.into_iter().map(|k| (k, h.depths[rng.random_range(0..h.depths.len())])).collect();
                PastPromotion {
                    id: format!("HIST-W{start_week:03}-{p:03}"),
                    key: first_key + u64::from(p),
                    start_week,
                    weeks,
                    mechanic,
                    regions: region_ids,
                    lines,
                }
            })
            .collect()
    }

    /// Draws the store-weeks of `promotion` and hands each to `sink`, line by line, region by
    /// region, store by store, week by week. `baseline(store, sku)` is daily baseline units.
    pub fn simulate_promotion(
        &self,
        promotion: &PastPromotion,
        stores_by_region: &[Vec<usize>],
        category_of: &[usize],
        baseline: impl Fn(usize, usize) -> f64,
        mut sink: impl FnMut(&StoreWeek),
    ) {
        let mut rng = self.rng(&[4, promotion.key]);
        let [lo, hi] = self.spec.history.cover;
        let store_effect: Vec<Vec<f64>> = promotion
            .regions
            .iter()
            .map(|&r| stores_by_region[r].iter().map(|&s| self.store_effect(promotion.key, s)).collect())
            .collect();
        for (line, &(sku, depth)) in promotion.lines.iter().enumerate() {
            let category = category_of[sku];
            let line_effect = self.line_effect(promotion.key, sku);
            for (ri, &region) in promotion.regions.iter().enumerate() {
                let structural = self.log_lift(category, region, promotion.mechanic, depth).exp();
                let mean_lift = self.mean_lift(category, region, promotion.mechanic, depth);
                for (si, &store) in stores_by_region[region].iter().enumerate() {
                    let weekly = baseline(store, sku) * 7.0;
                    let mean = weekly * structural * line_effect * store_effect[ri][si];
                    let expected = weekly * mean_lift;
                    for week in 0..promotion.weeks {
                        let demand = self.draw(&mut rng, mean);
                        let stock = (expected * (lo + (hi - lo) * rng.random::<f64>())).ceil();
                        sink(&StoreWeek {
                            line,
                            sku,
                            category,
                            region,
                            store,
                            week: promotion.start_week + week,
                            baseline_units: weekly,
                            expected,
                            mean,
                            demand,
                            stock,
                            sold: demand.min(stock),
                            stocked_out: demand > stock,
                        });
                    }
                }
            }
        }
    }
}

/// A past promotion.
#[derive(Debug, Clone, PartialEq)]
pub struct PastPromotion {
    /// Identifier, e.g. "HIST-W042-017".
    pub id: String,
    /// Key of its draws.
    pub key: u64,
    /// First week, counted from the start of history.
    pub start_week: u32,
    /// Weeks it ran.
    pub weeks: u32,
    /// Index into [`MECHANICS`].
    pub mechanic: usize,
    /// Region indexes.
    pub regions: Vec<usize>,
    /// SKU index and discount depth of each line.
    pub lines: Vec<(usize, f64)>,
}

/// One store × SKU × week of a past promotion.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoreWeek {
    /// Line index within the promotion.
    pub line: usize,
    /// SKU index.
    pub sku: usize,
    /// Category index.
    pub category: usize,
    /// Region index.
    pub region: usize,
    /// Store index.
    pub store: usize,
    /// Week, counted from the start of history.
    pub week: u32,
    /// Baseline units of the week (non-promoted demand).
    pub baseline_units: f64,
    /// Expected units given everything but the noise (the oracle's forecast).
    pub expected: f64,
    /// Units demanded.
    pub demand: f64,
    /// The mean of this store-week's draw: `expected` with the promotion line's and the store's
    /// effects (what only an oracle knows).
    pub mean: f64,
    /// Units in stock for the week.
    pub stock: f64,
    /// Units sold: demand capped by stock.
    pub sold: f64,
    /// Whether demand exceeded stock.
    pub stocked_out: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_file_parses_and_bad_files_name_the_field() {
        let w = WorldSpec::reference();
        assert_eq!(w.history.depths.len(), 8);
        assert_eq!(WorldSpec::from_toml(&w.to_toml()).unwrap(), w);
        let bad = WorldSpec::REFERENCE_TOML.replace("dispersion = 5.0", "dispersion = -1.0");
        assert_eq!(
            WorldSpec::from_toml(&bad).unwrap_err().to_string(),
            "world file: sales.dispersion: must be > 0"
        );
        let typo = WorldSpec::REFERENCE_TOML.replace("store_sd", "stor_sd");
        let e = WorldSpec::from_toml(&typo).unwrap_err().to_string();
        assert!(e.contains("stor_sd") && e.contains("line"), "{e}");
    }

    #[test]
    fn draws_are_deterministic_and_lift_has_the_documented_shape() {
        let w = World::new(WorldSpec::reference(), 7, 4, 3);
        let again = World::new(WorldSpec::reference(), 7, 4, 3);
        assert_eq!(w.category_slope, again.category_slope);
        assert_eq!(w.past_promotions(40, 3), again.past_promotions(40, 3));
        assert_ne!(World::new(WorldSpec::reference(), 8, 4, 3).category_slope, w.category_slope);
        // Deeper discounts lift more over the depths of the spec; the oracle's lift adds the
        // lognormal mean of the noise.
        assert!(w.log_lift(0, 0, 0, 0.3) > w.log_lift(0, 0, 0, 0.1));
        let noise = (0.15f64.powi(2) + 0.2f64.powi(2)) / 2.0;
        assert!((w.mean_lift(1, 2, 1, 0.2).ln() - w.log_lift(1, 2, 1, 0.2) - noise).abs() < 1e-12);
        // Negative-binomial draws: mean μ, variance μ + μ²/r.
        let mut rng = w.rng(&[9]);
        let n = 40_000;
        let xs: Vec<f64> = (0..n).map(|_| w.draw(&mut rng, 12.0)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!((mean - 12.0).abs() < 0.2, "{mean}");
        let r = w.spec.sales.dispersion;
        assert!((var - (12.0 + 144.0 / r)).abs() < 4.0, "{var} vs r = {r}");
    }

    #[test]
    fn stockouts_censor_sales() {
        let w = World::new(WorldSpec::reference(), 7, 4, 3);
        let promos = w.past_promotions(40, 3);
        let stores: Vec<Vec<usize>> = (0..3).map(|r| (r * 4..r * 4 + 4).collect()).collect();
        let category: Vec<usize> = (0..40).map(|k| k % 4).collect();
        let (mut cells, mut out, mut demand, mut sold) = (0, 0, 0.0, 0.0);
        for p in &promos {
            w.simulate_promotion(
                p,
                &stores,
                &category,
                |_, _| 2.0,
                |c| {
                    cells += 1;
                    out += usize::from(c.stocked_out);
                    demand += c.demand;
                    sold += c.sold;
                    assert!(c.sold <= c.demand);
                },
            );
        }
        assert!(cells > 10_000, "{cells}");
        let share = out as f64 / cells as f64;
        assert!(share > 0.005 && share < 0.2, "stockout share {share}");
        assert!(sold < demand);
    }
}
