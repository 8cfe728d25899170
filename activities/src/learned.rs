//! The learned uplift model as the assessment uses it: past promotions' outcomes streamed from
//! the demand service (`StreamPromotionOutcomes`), checked, fitted ([`uplift::fit`]) with a
//! held-out measure of its accuracy, and kept per history version so that every assessment on the
//! same history reuses one fit (a fit takes tens of milliseconds; the stream, a few MB). The
//! request names the versions held, so a service whose history is one of them does not read it
//! again (its sort and scan of every past outcome cost more than the rest of a small lifecycle).

use crate::{
    Systems,
    engines::{
        drift, stockout,
        uplift::{self, Holdout, Observation, UpliftModel},
    },
};
use promo_contracts::{money::format_ratio, promo::v1 as pb, retail::v1::*};
use rust_decimal::{Decimal, prelude::FromPrimitive};
use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, OnceLock},
};

/// Share of past promotions (the latest by start) held out to measure the model.
pub const HOLDOUT_SHARE: f64 = 0.2;
/// Fitted models kept per worker (one per history version).
const CACHED: usize = 4;

/// A fitted model with what it was fitted on.
#[derive(Debug, Clone)]
pub struct Learned {
    /// `uplift-glm/1@<history version>`.
    pub version: String,
    /// The model fitted on the whole history.
    pub model: UpliftModel,
    /// Accuracy on the latest promotions when fitted without them.
    pub holdout: Option<Holdout>,
    /// First week of the history (date).
    pub training_from: String,
    /// Last week of the history (date).
    pub training_to: String,
    /// Negative-binomial size of a store-week's demand around the model's forecast
    /// ([`stockout::size_from_moments`]); `None` when the outcomes carry no store-level moments.
    pub store_size: Option<f64>,
}

/// The model, or why there is none (the assessment then falls back to the per-SKU slope).
#[derive(Debug, Clone)]
pub enum ModelState {
    /// Fitted.
    Ready(Arc<Learned>),
    /// Not usable, and why.
    Unavailable(String),
}

/// Fitted models by history version, oldest first.
type Cache = Mutex<Vec<(String, Arc<Learned>)>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The model for the systems' current history: from the cache when this worker has fitted the
/// same history version, else streamed and fitted. The model is an aid, not a precondition: when
/// the outcomes cannot be read (after the usual retries of transient errors), do not hold
/// together, or are too few, the answer is [`ModelState::Unavailable`] naming the problem, and
/// the assessment falls back to each SKU's own past promotions.
pub async fn learned_model(systems: &Systems) -> ModelState {
    match read_and_fit(systems).await {
        Ok(state) => state,
        Err(s) => {
            ModelState::Unavailable(format!("demand outcomes unreadable: {} ({:?})", s.message(), s.code()))
        }
    }
}

async fn read_and_fit(systems: &Systems) -> Result<ModelState, tonic::Status> {
    // The fits this worker holds: the service streams the outcomes only when its history is
    // none of them (otherwise one message naming the version).
    let held: Vec<(String, Arc<Learned>)> = cache().lock().expect("model cache").clone();
    let mut stream = rpc!(
        systems.demand(),
        stream_promotion_outcomes,
        StreamPromotionOutcomesRequest {
            since: None,
            outcomes_per_message: 0,
            known_history_versions: held.iter().map(|(v, _)| v.clone()).collect(),
        }
    )
    .await?
    .into_inner();
    let mut outcomes = Vec::new();
    let mut version = None;
    while let Some(msg) = stream.message().await? {
        if version.is_none() {
            let v = msg.history_version.clone();
            if !v.is_empty()
                && let Some((_, hit)) = held.iter().find(|(k, _)| *k == v)
            {
                return Ok(ModelState::Ready(hit.clone()));
            }
            version = Some(v);
        }
        outcomes.extend(msg.outcomes);
    }
    let version = version.unwrap_or_default();
    let learned = match fit_outcomes(&version, &outcomes) {
        Ok(l) => Arc::new(l),
        Err(why) => return Ok(ModelState::Unavailable(why)),
    };
    if !version.is_empty() {
        let mut c = cache().lock().expect("model cache");
        c.retain(|(k, _)| *k != version);
        c.push((version, learned.clone()));
        if c.len() > CACHED {
            c.remove(0);
        }
    }
    Ok(ModelState::Ready(learned))
}

/// Checks the outcomes and fits on them; the error names the outcome and field at fault, or why
/// the history does not suffice.
pub fn fit_outcomes(history_version: &str, outcomes: &[PromotionOutcome]) -> Result<Learned, String> {
    let mut categories: Vec<String> = Vec::new();
    let mut regions: Vec<String> = Vec::new();
    let mut promotions: HashMap<&str, (u32, i64)> = HashMap::new();
    let index = |names: &mut Vec<String>, name: &str| {
        names.iter().position(|n| n == name).unwrap_or_else(|| {
            names.push(name.to_owned());
            names.len() - 1
        }) as u32
    };
    let mut observations = Vec::with_capacity(outcomes.len());
    let mut moments = Vec::with_capacity(outcomes.len());
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    for (i, o) in outcomes.iter().enumerate() {
        let bad = |field: &str, why: String| {
            format!("StreamPromotionOutcomes outcomes[{i}] ({}): {field} {why}", o.promotion_id)
        };
        for (field, v) in [
            ("promotion_id", &o.promotion_id),
            ("sku", &o.sku),
            ("category", &o.category),
            ("region_id", &o.region_id),
        ] {
            if v.is_empty() {
                return Err(bad(field, "is empty".into()));
            }
        }
        let week = o.week_start.as_ref().ok_or_else(|| bad("week_start", "is missing".into()))?.seconds;
        let mechanic = match Mechanic::try_from(o.mechanic) {
            Ok(Mechanic::PriceCut) => 0,
            Ok(Mechanic::MultiBuy) => 1,
            Ok(Mechanic::Feature) => 2,
            _ => return Err(bad("mechanic", format!("{} is not a known mechanic", o.mechanic))),
        };
        let depth: f64 =
            o.discount_depth.parse().ok().filter(|d| (0.0..0.95).contains(d)).ok_or_else(|| {
                bad("discount_depth", format!("{:?} is not a depth in [0, 0.95)", o.discount_depth))
            })?;
        for (field, v) in [
            ("baseline_units", o.baseline_units),
            ("in_stock_baseline_units", o.in_stock_baseline_units),
            ("in_stock_units_squared", o.in_stock_units_squared),
            ("in_stock_baseline_squared", o.in_stock_baseline_squared),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(bad(field, format!("is {v}; it must be a finite count ≥ 0")));
            }
        }
        for (field, v) in [("units_sold", o.units_sold), ("in_stock_units_sold", o.in_stock_units_sold)] {
            if v < 0 {
                return Err(bad(field, format!("is {v}; it cannot be negative")));
            }
        }
        if o.in_stock_units_sold > o.units_sold || o.in_stock_baseline_units > o.baseline_units + 1e-6 {
            return Err(bad("in_stock_units_sold", "exceeds the outcome's totals".into()));
        }
        let next = promotions.len() as u32;
        let (promotion, start) = *promotions.entry(o.promotion_id.as_str()).or_insert((next, week));
        promotions.get_mut(o.promotion_id.as_str()).expect("inserted").1 = start.min(week);
        first = first.min(week);
        last = last.max(week);
        // Sales of stores that ran out are censored: fit on the store-weeks that stayed in stock.
        observations.push(Observation {
            promotion,
            category: index(&mut categories, &o.category),
            region: index(&mut regions, &o.region_id),
            mechanic,
            depth,
            exposure: o.in_stock_baseline_units,
            units: o.in_stock_units_sold as f64,
        });
        moments.push((o.in_stock_units_squared, o.in_stock_baseline_squared));
    }
    let starts: BTreeMap<u32, i64> = promotions.values().copied().collect();
    let holdout = if starts.len() >= 10 {
        uplift::time_holdout(
            &observations,
            |p| starts.get(&p).copied().unwrap_or(0),
            HOLDOUT_SHARE,
            categories.clone(),
            regions.clone(),
        )
        .ok()
    } else {
        None
    };
    let model = uplift::fit(&observations, categories, regions).map_err(|e| e.to_string())?;
    let store_size = stockout::size_from_moments(observations.iter().zip(&moments).map(|(o, &(sq, bsq))| {
        let lift = model.lift_at(o.category as usize, o.region as usize, usize::from(o.mechanic), o.depth);
        (lift, sq, o.units, bsq)
    }));
    let date = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0).map(|d| d.date_naive().to_string()).unwrap_or_default()
    };
    let short = &history_version[..history_version.len().min(12)];
    Ok(Learned {
        version: format!("{}@{}", uplift::FAMILY, if short.is_empty() { "unversioned" } else { short }),
        model,
        holdout,
        training_from: if first == i64::MAX { String::new() } else { date(first) },
        training_to: if last == i64::MIN { String::new() } else { date(last) },
        store_size,
    })
}

fn ratio(x: f64) -> String {
    format_ratio(Decimal::from_f64(x).unwrap_or_default())
}

impl Learned {
    /// What the drift of this model is measured against: its held-out promotion-total errors.
    pub fn reference(&self) -> Option<drift::Reference> {
        self.holdout.as_ref().map(|h| drift::Reference {
            mean: h.log_mean,
            spread: h.log_spread,
            wape: h.promotion_wape,
        })
    }

    /// The drift of this model over the latest completed promotions it forecast, read from the
    /// process-event record's reports; `threshold` ≤ 0 disables the flag. `None` without a
    /// held-out reference; a record that cannot be read is said in the explanation.
    pub async fn drift(&self, systems: &Systems, threshold: f64) -> Option<pb::ModelDrift> {
        let reference = self.reference()?;
        let read = rpc!(
            systems.events(),
            list_events,
            ListEventsRequest {
                kinds: vec![ProcessEventKind::Report as i32],
                limit: 5_000,
                ..Default::default()
            }
        )
        .await;
        let events = match read {
            Ok(r) => r.into_inner().events,
            Err(s) => {
                return Some(pb::ModelDrift {
                    threshold: threshold.to_string(),
                    explanation: format!(
                        "not tracked: the process-event record is unreadable: {}",
                        s.message()
                    ),
                    ..Default::default()
                });
            }
        };
        let outcomes: Vec<(f64, f64)> = events
            .iter()
            .filter(|e| e.kpis.get("forecast_model") == Some(&self.version))
            .filter_map(|e| {
                let f = e.kpis.get("forecast_units")?.parse::<f64>().ok()?;
                let s = e.kpis.get("units_sold")?.parse::<f64>().ok()?;
                Some((f, s))
            })
            .collect();
        let d = drift::track(&outcomes, &reference, threshold);
        Some(pb::ModelDrift {
            tracked: d.tracked as u32,
            signal: format!("{:.2}", d.signal),
            bias: ratio(d.bias),
            wape: ratio(d.wape),
            drifting: d.drifting,
            threshold: threshold.to_string(),
            explanation: if d.tracked == 0 {
                "no completed promotion forecast by this model yet".to_owned()
            } else {
                d.explain(threshold, &reference)
            },
        })
    }

    /// The model's record in an assessment (without the per-line parts).
    pub fn record(&self) -> pb::ForecastModel {
        let m = &self.model;
        let mut coefficients: HashMap<String, String> = HashMap::new();
        let mut put = |k: String, v: f64| {
            coefficients.insert(k, format!("{v:.4}"));
        };
        put("intercept".into(), m.intercept);
        put("depth".into(), m.slope);
        put("depth^2".into(), m.curvature);
        for (name, v) in uplift::MECHANICS.iter().zip(m.mechanic).skip(1) {
            put(format!("mechanic:{name}"), v);
        }
        for (name, v) in m.categories.iter().zip(&m.category_slope) {
            put(format!("category:{name}"), *v);
        }
        for (name, v) in m.regions.iter().zip(&m.region) {
            put(format!("region:{name}"), *v);
        }
        let h = self.holdout.as_ref();
        pb::ForecastModel {
            version: self.version.clone(),
            promotions: m.stats.promotions as u32,
            cells: m.stats.cells as u32,
            training_from: self.training_from.clone(),
            training_to: self.training_to.clone(),
            pseudo_r2: ratio(m.stats.pseudo_r2),
            dispersion: format!("{:.1}", m.stats.dispersion),
            holdout_promotions: h.map_or(0, |h| h.promotions as u32),
            holdout_wape: h.map_or_else(String::new, |h| ratio(h.wape)),
            holdout_promotion_wape: h.map_or_else(String::new, |h| ratio(h.promotion_wape)),
            holdout_bias: h.map_or_else(String::new, |h| ratio(h.bias)),
            coefficients,
            store_size: self.store_size.map_or_else(String::new, |k| format!("{k:.2}")),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use promo_contracts::pbjson_types::Timestamp;

    fn outcome(p: usize, depth: f64, week: i64, units: i64) -> PromotionOutcome {
        PromotionOutcome {
            promotion_id: format!("P{p}"),
            sku: "SKU-1".into(),
            category: ["a", "b"][p % 2].into(),
            region_id: ["R1", "R2", "R3"][p % 3].into(),
            week_start: Some(Timestamp { seconds: week * 604_800, nanos: 0 }),
            mechanic: 1 + (p % 3) as i32,
            discount_depth: format!("{depth:.2}"),
            store_weeks: 10,
            baseline_units: 100.0,
            units_sold: units,
            stockout_store_weeks: 0,
            in_stock_baseline_units: 100.0,
            in_stock_units_sold: units,
            // 10 stores of 10 baseline units each, selling alike
            in_stock_units_squared: (units * units) as f64 / 10.0,
            in_stock_baseline_squared: 1_000.0,
        }
    }

    #[test]
    fn fits_a_history_and_names_a_bad_outcome() {
        let outcomes: Vec<PromotionOutcome> = (0..60)
            .map(|p| {
                let d = 0.1 + 0.05 * (p % 6) as f64;
                outcome(p, d, p as i64, (100.0 * (2.0 * d).exp()).round() as i64)
            })
            .collect();
        let l = fit_outcomes("abcdef0123456789", &outcomes).unwrap();
        assert_eq!(l.version, "uplift-glm/1@abcdef012345");
        let h = l.holdout.clone().unwrap();
        assert_eq!(h.promotions, 12);
        assert!(h.wape < 0.05, "{h:?}");
        let r = l.record();
        assert_eq!(r.promotions, 60);
        assert!(r.coefficients.contains_key("category:b") && r.coefficients.contains_key("region:R3"));
        assert_eq!(r.training_from, "1970-01-01");
        // stores that sell alike spread less than a Poisson count: the size is the cap
        assert_eq!(r.store_size, format!("{:.2}", stockout::MAX_SIZE));
        let mut spread = outcomes.clone();
        for o in &mut spread {
            o.in_stock_units_squared *= 1.25;
        }
        let k = fit_outcomes("v", &spread).unwrap().store_size.unwrap();
        assert!((2.0..8.0).contains(&k), "{k}");

        let mut bad = outcomes.clone();
        bad[7].discount_depth = "deep".into();
        assert_eq!(
            fit_outcomes("v", &bad).unwrap_err(),
            "StreamPromotionOutcomes outcomes[7] (P7): discount_depth \"deep\" is not a depth in [0, 0.95)"
        );
        bad[7] = PromotionOutcome { in_stock_units_sold: 10_000, ..outcomes[7].clone() };
        assert!(fit_outcomes("v", &bad).unwrap_err().contains("in_stock_units_sold exceeds"));
        assert!(fit_outcomes("v", &outcomes[..5]).unwrap_err().contains("needs at least"));
    }
}
