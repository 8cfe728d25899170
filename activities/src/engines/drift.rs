//! Drift of the uplift model: after each promotion its forecast error is recorded (the log ratio
//! of units sold to units forecast, promotion total); the latest errors are compared with the
//! errors the model made on promotions held out when it was fitted.
//!
//! The tracking signal is the standardised mean error of the window:
//! z = (mean error − held-out mean error) / (held-out spread / √n). A model that still behaves as
//! it did on held-out promotions keeps |z| small whatever its own bias; a world whose lift has
//! shifted moves the mean and |z| grows with every promotion. Past the policy's threshold (with
//! at least [`MIN_TRACKED`] promotions) the model is drifting. The rolling WAPE is reported
//! beside the held-out one for people; the decision is the signal's.

/// Promotions in the rolling window.
pub const WINDOW: usize = 12;
/// Promotions needed before the signal can flag drift.
pub const MIN_TRACKED: usize = 4;
/// Floor of the held-out spread of log errors: a fit that happened to be near perfect on its
/// held-out promotions must not make every later wobble look like drift.
pub const MIN_SPREAD: f64 = 0.02;

/// How the model did on promotions held out when it was fitted, per promotion total.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reference {
    /// Mean log error (ln sold − ln forecast).
    pub mean: f64,
    /// Standard deviation of the log errors.
    pub spread: f64,
    /// Promotion-total WAPE.
    pub wape: f64,
}

/// The drift state after the latest promotions.
#[derive(Debug, Clone, PartialEq)]
pub struct Drift {
    /// Promotions in the window.
    pub tracked: usize,
    /// The tracking signal (0 with fewer than [`MIN_TRACKED`] promotions).
    pub signal: f64,
    /// Σ(sold − forecast) / Σ forecast over the window: how far off the forecasts ran.
    pub bias: f64,
    /// Σ|sold − forecast| / Σ sold over the window.
    pub wape: f64,
    /// Whether |signal| passed the threshold.
    pub drifting: bool,
}

impl Drift {
    /// For people: "tracking signal −5.2 over the last 8 promotions (threshold 3.5): sold 24% below
    /// forecast; rolling WAPE 26% vs 4% held out".
    pub fn explain(&self, threshold: f64, reference: &Reference) -> String {
        let direction = if self.bias < 0.0 { "below" } else { "above" };
        format!(
            "tracking signal {:+.1} over the last {} promotions (threshold {threshold}): sold {:.0}% {direction} forecast; rolling WAPE {:.0}% vs {:.0}% held out",
            self.signal,
            self.tracked,
            100.0 * self.bias.abs(),
            100.0 * self.wape,
            100.0 * reference.wape
        )
    }
}

/// The drift state of the last [`WINDOW`] of `outcomes` (forecast units, sold units; oldest
/// first), against `reference`; `threshold` ≤ 0 disables the flag.
pub fn track(outcomes: &[(f64, f64)], reference: &Reference, threshold: f64) -> Drift {
    let recent: Vec<(f64, f64)> =
        outcomes.iter().copied().filter(|(f, s)| *f > 0.0 && *s > 0.0).rev().take(WINDOW).collect();
    let n = recent.len();
    let (forecast, sold): (f64, f64) = recent.iter().fold((0.0, 0.0), |a, (f, s)| (a.0 + f, a.1 + s));
    let abs: f64 = recent.iter().map(|(f, s)| (s - f).abs()).sum();
    let mean = if n == 0 { 0.0 } else { recent.iter().map(|(f, s)| (s / f).ln()).sum::<f64>() / n as f64 };
    let signal = if n < MIN_TRACKED {
        0.0
    } else {
        (mean - reference.mean) / (reference.spread.max(MIN_SPREAD) / (n as f64).sqrt())
    };
    Drift {
        tracked: n,
        signal,
        bias: if forecast > 0.0 { (sold - forecast) / forecast } else { 0.0 },
        wape: if sold > 0.0 { abs / sold } else { 0.0 },
        drifting: threshold > 0.0 && n >= MIN_TRACKED && signal.abs() > threshold,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REF: Reference = Reference { mean: -0.02, spread: 0.05, wape: 0.04 };

    #[test]
    fn a_model_behaving_as_held_out_does_not_drift_and_a_shift_does() {
        // Errors scattered around the held-out mean: quiet.
        let calm: Vec<(f64, f64)> =
            (0..12).map(|i| (1000.0, 1000.0 * (-0.02f64 + 0.05 * [1.0, -1.0, 0.5][i % 3]).exp())).collect();
        let d = track(&calm, &REF, 3.5);
        assert!(!d.drifting && d.signal.abs() < 1.0, "{d:?}");
        // Lift fell by a fifth: every promotion sells ~20% under forecast.
        let shifted: Vec<(f64, f64)> = calm.iter().map(|(f, s)| (*f, s * 0.8)).collect();
        let d = track(&shifted, &REF, 3.5);
        assert!(d.drifting && d.signal < -3.5 && (d.bias + 0.21).abs() < 0.03, "{d:?}");
        let e = d.explain(3.5, &REF);
        assert!(
            e.starts_with("tracking signal -")
                && e.contains("below forecast")
                && e.ends_with("vs 4% held out"),
            "{e}"
        );
        // Too few promotions, or the flag off: no decision.
        assert!(!track(&shifted[..3], &REF, 3.5).drifting);
        assert!(!track(&shifted, &REF, 0.0).drifting);
        // Only the latest WINDOW count: old errors age out.
        let recovered: Vec<(f64, f64)> = shifted.iter().chain(&calm).copied().collect();
        assert!(!track(&recovered, &REF, 3.5).drifting);
    }
}
