//! The learned uplift model: a pooled Poisson regression (log link) of promoted units on the
//! baseline units of the same cells, over what past promotions sold.
//!
//! log E[units] = log(baseline units) + b0 + (b_depth + u[category]) × depth + b_curve × depth²
//!                + m[mechanic] + r[region]
//!
//! The category slopes u and region levels r are shrunk toward 0 (a ridge penalty, the
//! empirical-Bayes reading of a random effect), so a category or region seen in few promotions
//! borrows strength from the pool; one never seen gets the pooled slope. Cells whose stores ran
//! out of stock are fitted on their in-stock part only (sales there are not censored). The fit is
//! iteratively reweighted least squares with a Cholesky solve; it is small (≤ a few dozen
//! parameters) and runs in an activity, never in workflow code.

use std::collections::{BTreeSet, HashMap};

/// The model family; part of every version string.
pub const FAMILY: &str = "uplift-glm/1";

/// The mechanics, in model order (index 0 is the reference level).
pub const MECHANICS: [&str; 3] = ["price cut", "multi-buy", "feature"];

/// One observation: what a SKU sold in a region in a week of a past promotion (or any finer or
/// coarser cell), with its baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// Past promotion (an index chosen by the caller; used for held-out splits and counts).
    pub promotion: u32,
    /// Category index into the model's vocabulary.
    pub category: u32,
    /// Region index into the model's vocabulary.
    pub region: u32,
    /// Mechanic index into [`MECHANICS`].
    pub mechanic: u8,
    /// Discount depth, 0–1.
    pub depth: f64,
    /// Baseline (non-promoted) units of the cell.
    pub exposure: f64,
    /// Units sold.
    pub units: f64,
}

/// Fit statistics of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct FitStats {
    /// Cells fitted.
    pub cells: usize,
    /// Distinct past promotions fitted.
    pub promotions: usize,
    /// IRLS iterations.
    pub iterations: u32,
    /// Poisson deviance of the fit.
    pub deviance: f64,
    /// Deviance of the intercept-only model (a flat uplift).
    pub null_deviance: f64,
    /// 1 − deviance / null deviance.
    pub pseudo_r2: f64,
    /// Pearson χ² / (cells − parameters): how overdispersed the cells are.
    pub dispersion: f64,
}

/// Accuracy on held-out promotions.
#[derive(Debug, Clone, PartialEq)]
pub struct Holdout {
    /// Promotions held out.
    pub promotions: usize,
    /// Σ|forecast − actual| / Σ actual over held-out cells.
    pub wape: f64,
    /// Same, over held-out promotion totals.
    pub promotion_wape: f64,
    /// Σ(forecast − actual) / Σ actual.
    pub bias: f64,
    /// Mean of ln(actual / forecast) over promotion totals.
    pub log_mean: f64,
    /// Standard deviation of ln(actual / forecast) over promotion totals.
    pub log_spread: f64,
}

/// A fitted model.
#[derive(Debug, Clone, PartialEq)]
pub struct UpliftModel {
    /// Category names (the vocabulary of `Observation::category`).
    pub categories: Vec<String>,
    /// Region ids (the vocabulary of `Observation::region`).
    pub regions: Vec<String>,
    /// b0.
    pub intercept: f64,
    /// Pooled slope of log lift in depth.
    pub slope: f64,
    /// Coefficient of depth².
    pub curvature: f64,
    /// Log lift of each mechanic (0 for the price cut).
    pub mechanic: [f64; 3],
    /// Each category's deviation from the pooled slope.
    pub category_slope: Vec<f64>,
    /// Each region's level.
    pub region: Vec<f64>,
    /// Fit statistics.
    pub stats: FitStats,
}

/// Why a model could not be fitted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    /// Too little history.
    #[error("{cells} usable cells from {promotions} past promotions; the model needs at least {needed}")]
    TooLittle {
        /// Cells with baseline and sales.
        cells: usize,
        /// Promotions among them.
        promotions: usize,
        /// Cells needed.
        needed: usize,
    },
    /// The normal equations were singular (e.g. a single depth in all of history).
    #[error("the history does not identify the model: {0}")]
    Singular(String),
}

/// Prior standard deviation of a category's slope around the pooled slope (log lift per unit of
/// depth). With the region's below, the ridge penalty is dispersion / sd²: the normal prior of a
/// random effect, so a category seen a handful of times stays near the pool and one seen hundreds
/// of times keeps its own slope.
pub const CATEGORY_SLOPE_SD: f64 = 1.0;
/// Prior standard deviation of a region's level (log lift).
pub const REGION_SD: f64 = 0.25;
const MIN_CELLS: usize = 30;

struct Layout {
    categories: usize,
    regions: usize,
}

impl Layout {
    const FIXED: usize = 5; // intercept, depth, depth², multi-buy, feature
    fn len(&self) -> usize {
        Self::FIXED + self.categories + self.regions
    }
    /// Writes the non-zero entries of observation `o`'s design row as (index, value).
    fn row(&self, o: &Observation) -> [(usize, f64); 6] {
        let m = o.mechanic as usize;
        [
            (0, 1.0),
            (1, o.depth),
            (2, o.depth * o.depth),
            (if m == 0 { 3 } else { 2 + m }, if m == 0 { 0.0 } else { 1.0 }),
            (Self::FIXED + o.category as usize, o.depth),
            (Self::FIXED + self.categories + o.region as usize, 1.0),
        ]
    }
}

fn poisson_deviance(y: f64, mu: f64) -> f64 {
    let term = if y > 0.0 { y * (y / mu).ln() } else { 0.0 };
    2.0 * (term - (y - mu))
}

/// Solves `a x = b` for symmetric positive-definite `a` (row-major n × n) by Cholesky.
fn cholesky_solve(mut a: Vec<f64>, mut b: Vec<f64>, n: usize) -> Result<Vec<f64>, FitError> {
    for j in 0..n {
        let diagonal = a[j * n + j];
        let mut d = diagonal;
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        if d.is_nan() || d <= 1e-10 * diagonal.abs().max(1e-12) {
            return Err(FitError::Singular(format!("pivot {j} is {d:.3e}")));
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
    }
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= a[i * n + k] * b[k];
        }
        b[i] = s / a[i * n + i];
    }
    for i in (0..n).rev() {
        let mut s = b[i];
        for k in i + 1..n {
            s -= a[k * n + i] * b[k];
        }
        b[i] = s / a[i * n + i];
    }
    Ok(b)
}

/// Fits the model on `observations`, whose category and region indexes point into
/// `categories` and `regions`.
pub fn fit(
    observations: &[Observation],
    categories: Vec<String>,
    regions: Vec<String>,
) -> Result<UpliftModel, FitError> {
    let obs: Vec<&Observation> = observations.iter().filter(|o| o.exposure > 0.0 && o.units >= 0.0).collect();
    let promotions = obs.iter().map(|o| o.promotion).collect::<BTreeSet<_>>().len();
    if obs.len() < MIN_CELLS {
        return Err(FitError::TooLittle { cells: obs.len(), promotions, needed: MIN_CELLS });
    }
    let layout = Layout { categories: categories.len(), regions: regions.len() };
    let p = layout.len();
    let (units, exposure): (f64, f64) = obs.iter().fold((0.0, 0.0), |a, o| (a.0 + o.units, a.1 + o.exposure));
    let flat = (units / exposure).max(1e-9);
    // Quasi-Poisson: the weights are divided by the Pearson dispersion of the previous iteration
    // (never below 1: no more confidence than Poisson counts give).
    let mut dispersion = 1.0f64;
    let mut beta = vec![0.0; p];
    beta[0] = flat.ln();
    let null_deviance: f64 = obs.iter().map(|o| poisson_deviance(o.units, o.exposure * flat)).sum();
    let mut deviance = f64::INFINITY;
    let mut iterations = 0;
    for it in 1..=50 {
        iterations = it;
        let mut xtwx = vec![0.0; p * p];
        let mut xtwz = vec![0.0; p];
        for o in &obs {
            let row = layout.row(o);
            let eta: f64 = row.iter().map(|(i, x)| beta[*i] * x).sum();
            let mu = o.exposure * eta.exp();
            let w = mu / dispersion;
            let z = eta + (o.units - mu) / mu;
            for &(i, xi) in &row {
                if xi == 0.0 {
                    continue;
                }
                xtwz[i] += w * xi * z;
                for &(j, xj) in &row {
                    xtwx[i * p + j] += w * xi * xj;
                }
            }
        }
        for i in 0..p {
            let sd = if i < Layout::FIXED + layout.categories { CATEGORY_SLOPE_SD } else { REGION_SD };
            if i >= Layout::FIXED {
                xtwx[i * p + i] += 1.0 / (sd * sd);
            }
        }
        beta = cholesky_solve(xtwx, xtwz, p)?;
        let (mut d, mut pearson) = (0.0, 0.0);
        for o in &obs {
            let eta: f64 = layout.row(o).iter().map(|(i, x)| beta[*i] * x).sum();
            let mu = o.exposure * eta.exp();
            d += poisson_deviance(o.units, mu);
            pearson += (o.units - mu).powi(2) / mu;
        }
        dispersion = (pearson / obs.len().saturating_sub(p).max(1) as f64).max(1.0);
        let done = (deviance - d).abs() <= 1e-10 * d.max(1.0);
        deviance = d;
        if done {
            break;
        }
    }
    let f = Layout::FIXED;
    Ok(UpliftModel {
        intercept: beta[0],
        slope: beta[1],
        curvature: beta[2],
        mechanic: [0.0, beta[3], beta[4]],
        category_slope: beta[f..f + layout.categories].to_vec(),
        region: beta[f + layout.categories..].to_vec(),
        stats: FitStats {
            cells: obs.len(),
            promotions,
            iterations,
            deviance,
            null_deviance,
            pseudo_r2: if null_deviance > 0.0 { 1.0 - deviance / null_deviance } else { 0.0 },
            dispersion,
        },
        categories,
        regions,
    })
}

/// The terms of one forecast, for the audit trail.
#[derive(Debug, Clone, PartialEq)]
pub struct Terms {
    /// Category slope deviation used (0 when the category was never seen).
    pub category_slope: f64,
    /// Region level used (0 when the region was never seen).
    pub region: f64,
    /// Mechanic effect used.
    pub mechanic: f64,
    /// The lift.
    pub lift: f64,
}

impl UpliftModel {
    /// The lift of a line of `category` at `depth` with `mechanic` in `region` (names; an unseen
    /// category or region takes the pool's value).
    pub fn terms(&self, category: &str, region: Option<&str>, mechanic: usize, depth: f64) -> Terms {
        let c = self.categories.iter().position(|x| x == category).map_or(0.0, |i| self.category_slope[i]);
        let r = region.and_then(|r| self.regions.iter().position(|x| x == r)).map_or(0.0, |i| self.region[i]);
        let m = self.mechanic[mechanic.min(2)];
        let lift = (self.intercept + (self.slope + c) * depth + self.curvature * depth * depth + m + r).exp();
        Terms { category_slope: c, region: r, mechanic: m, lift }
    }

    /// The lift by indexes (the bench's hot path).
    pub fn lift_at(&self, category: usize, region: usize, mechanic: usize, depth: f64) -> f64 {
        let c = self.category_slope.get(category).copied().unwrap_or(0.0);
        let r = self.region.get(region).copied().unwrap_or(0.0);
        (self.intercept
            + (self.slope + c) * depth
            + self.curvature * depth * depth
            + self.mechanic[mechanic]
            + r)
            .exp()
    }

    /// How `terms` were computed, in one line: "exp(0.01 + (2.10 + 0.32 garden) × 0.25 − 1.40 ×
    /// 0.25² + 0.00 price cut + 0.05 R1) = 1.79"; without a region, the region term is left out.
    pub fn explain(&self, category: &str, region: Option<&str>, mechanic: usize, depth: f64) -> String {
        let t = self.terms(category, region, mechanic, depth);
        let signed = |x: f64| if x < 0.0 { format!("− {:.2}", -x) } else { format!("+ {x:.2}") };
        let region_term = region.map(|r| format!(" {} {r}", signed(t.region))).unwrap_or_default();
        format!(
            "exp({:.2} + ({:.2} {} {category}) × {depth:.2} {} × {depth:.2}² {} {}{region_term}) = {:.2}",
            self.intercept,
            self.slope,
            signed(t.category_slope),
            signed(self.curvature),
            signed(t.mechanic),
            MECHANICS[mechanic.min(2)],
            t.lift
        )
    }
}

/// Wape, promotion-total WAPE and bias of `model` on `test` (cells of whole promotions).
pub fn evaluate(model: &UpliftModel, test: &[Observation]) -> Holdout {
    let (mut abs, mut err, mut actual) = (0.0, 0.0, 0.0);
    let mut totals: HashMap<u32, (f64, f64)> = HashMap::new();
    for o in test.iter().filter(|o| o.exposure > 0.0) {
        let f =
            o.exposure * model.lift_at(o.category as usize, o.region as usize, o.mechanic as usize, o.depth);
        abs += (f - o.units).abs();
        err += f - o.units;
        actual += o.units;
        let t = totals.entry(o.promotion).or_default();
        t.0 += f;
        t.1 += o.units;
    }
    let promotion_abs: f64 = totals.values().map(|(f, a)| (f - a).abs()).sum();
    let ratio = |x: f64| if actual > 0.0 { x / actual } else { 0.0 };
    let logs: Vec<f64> =
        totals.values().filter(|(f, a)| *f > 0.0 && *a > 0.0).map(|(f, a)| (a / f).ln()).collect();
    let n = logs.len().max(1) as f64;
    let log_mean = logs.iter().sum::<f64>() / n;
    let log_spread = (logs.iter().map(|x| (x - log_mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt();
    Holdout {
        promotions: totals.len(),
        wape: ratio(abs),
        promotion_wape: ratio(promotion_abs),
        bias: ratio(err),
        log_mean,
        log_spread,
    }
}

/// Fits on the promotions before the last `share` of them (by `order`, e.g. start week) and
/// measures the fit on those held out.
pub fn time_holdout(
    observations: &[Observation],
    order: impl Fn(u32) -> i64,
    share: f64,
    categories: Vec<String>,
    regions: Vec<String>,
) -> Result<Holdout, FitError> {
    let mut promos: Vec<u32> =
        observations.iter().map(|o| o.promotion).collect::<BTreeSet<_>>().into_iter().collect();
    promos.sort_by_key(|p| (order(*p), *p));
    let cut =
        promos.len() - ((promos.len() as f64 * share).round() as usize).clamp(1, promos.len().max(2) - 1);
    let test: BTreeSet<u32> = promos[cut..].iter().copied().collect();
    let (train, held): (Vec<Observation>, Vec<Observation>) =
        observations.iter().partition(|o| !test.contains(&o.promotion));
    let model = fit(&train, categories, regions)?;
    Ok(evaluate(&model, &held))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cells drawn without noise from known coefficients: the fit recovers them.
    fn world(c_slopes: &[f64], regions: &[f64]) -> Vec<Observation> {
        let mut out = Vec::new();
        let mut p = 0;
        for (c, cs) in c_slopes.iter().enumerate() {
            for (r, rl) in regions.iter().enumerate() {
                for (m, ml) in [0.0, 0.1, 0.3].iter().enumerate() {
                    for d in [0.1, 0.2, 0.3, 0.4] {
                        let lift = f64::exp(0.0 + (2.0 + cs) * d - 1.0 * d * d + ml + rl);
                        p += 1;
                        out.push(Observation {
                            promotion: p,
                            category: c as u32,
                            region: r as u32,
                            mechanic: m as u8,
                            depth: d,
                            exposure: 1000.0,
                            units: 1000.0 * lift,
                        });
                    }
                }
            }
        }
        out
    }

    fn names(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}")).collect()
    }

    #[test]
    fn recovers_known_coefficients_and_explains_a_forecast() {
        let (cs, rs) = ([-0.5, 0.0, 0.5], [0.1, -0.1]);
        let obs = world(&cs, &rs);
        let m = fit(&obs, names("cat", 3), names("R", 2)).unwrap();
        // The ridge shrinks a little: within 0.05 of the truth.
        for (c, truth) in cs.iter().enumerate() {
            let got = m.slope + m.category_slope[c];
            assert!((got - (2.0 + truth)).abs() < 0.05, "category {c}: {got}");
        }
        assert!((m.mechanic[2] - 0.3).abs() < 0.02, "{:?}", m.mechanic);
        assert!(m.stats.pseudo_r2 > 0.99, "{:?}", m.stats);
        let t = m.terms("cat2", Some("R0"), 1, 0.25);
        let truth = f64::exp(2.5 * 0.25 - 0.0625 + 0.1 + 0.1);
        assert!((t.lift / truth - 1.0).abs() < 0.02, "{} vs {truth}", t.lift);
        let e = m.explain("cat2", Some("R0"), 1, 0.25);
        assert!(
            e.contains("cat2")
                && e.contains("multi-buy")
                && e.contains("R0")
                && e.ends_with(&format!("= {:.2}", t.lift)),
            "{e}"
        );
        // An unseen category takes the pooled slope.
        assert_eq!(m.terms("new", None, 0, 0.2).category_slope, 0.0);
    }

    #[test]
    fn held_out_accuracy_is_measured_on_whole_later_promotions() {
        let obs = world(&[-0.3, 0.3], &[0.0, 0.2]);
        let h = time_holdout(&obs, i64::from, 0.2, names("cat", 2), names("R", 2)).unwrap();
        assert!(h.promotions >= 9 && h.wape < 0.05 && h.bias.abs() < 0.05, "{h:?}");
        // A flat history cannot identify the depth terms.
        let flat: Vec<Observation> = obs.iter().map(|o| Observation { depth: 0.2, ..*o }).collect();
        assert!(matches!(fit(&flat, names("cat", 2), names("R", 2)), Err(FitError::Singular(_))));
        assert!(matches!(fit(&obs[..10], vec![], vec![]), Err(FitError::TooLittle { cells: 10, .. })));
    }
}
