//! Margin anomalies before approval: each line's promotional margin rate against its peers'
//! with a robust score, so a line that erodes margin far more than comparable lines is flagged
//! even when it stays above the policy floor.
//!
//! Peers are the promotion's other lines of the same category, price band (comparable SKUs
//! share one: a fixed funding per unit lifts a cheap SKU's rate far more than a dear one's),
//! discount-depth band (10-point bands: 0–10%, 10–20%, …, 40% and deeper) and funding (funded
//! or not). The score is the
//! distance below the peer median in scaled median absolute deviations,
//! `(median − rate) / (1.4826 · MAD)` (1.4826 makes a MAD comparable to a standard deviation
//! for normal data), with the MAD floored at two points of margin so a tight group of peers does
//! not flag a line a few points off it (at the default 3.5, a line must be at least ~10 points
//! below its peers). A group needs [`MIN_PEERS`] other lines; a smaller one is widened
//! to the category, price band and funding across depth bands, then across price bands too,
//! and a line with still too few peers is not scored. Only erosion is flagged (a line above
//! its peers is not a risk).

use std::collections::BTreeMap;

/// Fewest other lines a line is compared with.
pub const MIN_PEERS: usize = 4;
/// The MAD is never taken below this (two points of margin rate): a few peers can agree
/// closely by chance, and a line is not anomalous for being a few points off a tight group.
const MAD_FLOOR: f64 = 0.02;
/// Scales a MAD to a standard deviation for normal data.
const MAD_SCALE: f64 = 1.4826;

/// One line as the engine sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct LineRate {
    /// SKU.
    pub sku: String,
    /// Merchandise category.
    pub category: String,
    /// Price band within the category (1 entry … 5 premium).
    pub price_band: u32,
    /// Discount depth, (regular − promo) / regular.
    pub depth: f64,
    /// Whether the line is validly funded.
    pub funded: bool,
    /// Promotional margin rate, (promo − cost + funding) / promo.
    pub rate: f64,
}

/// A flagged line.
#[derive(Debug, Clone, PartialEq)]
pub struct Anomaly {
    /// Index of the line in the input.
    pub line: usize,
    /// Peer median margin rate.
    pub peer_median: f64,
    /// How many scaled MADs below the median.
    pub mads: f64,
    /// Peers compared with.
    pub peers: usize,
    /// The peer group, e.g. `garden band 2 · 20–30% · funded` (or `… · any depth · …`).
    pub group: String,
}

fn band(depth: f64) -> usize {
    ((depth.max(0.0) * 10.0).floor() as usize).min(4)
}

fn band_name(b: usize) -> String {
    if b >= 4 { "40%+".to_owned() } else { format!("{}–{}%", b * 10, b * 10 + 10) }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// Lines whose margin rate is at least `threshold` scaled MADs below their peers' median, most
/// anomalous first. A `threshold` of 0 or less flags nothing.
pub fn anomalies(lines: &[LineRate], threshold: f64) -> Vec<Anomaly> {
    if threshold <= 0.0 {
        return Vec::new();
    }
    // Three levels of peers, the first with enough lines taken: category, price band, depth
    // band and funding; then across depth bands; then across price bands too.
    let mut narrow: BTreeMap<(&str, u32, usize, bool), Vec<usize>> = BTreeMap::new();
    let mut banded: BTreeMap<(&str, u32, bool), Vec<usize>> = BTreeMap::new();
    let mut wide: BTreeMap<(&str, bool), Vec<usize>> = BTreeMap::new();
    for (i, l) in lines.iter().enumerate() {
        narrow.entry((l.category.as_str(), l.price_band, band(l.depth), l.funded)).or_default().push(i);
        banded.entry((l.category.as_str(), l.price_band, l.funded)).or_default().push(i);
        wide.entry((l.category.as_str(), l.funded)).or_default().push(i);
    }
    let funded = |f: bool| if f { "funded" } else { "unfunded" };
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let b = band(l.depth);
        let (c, f) = (l.category.as_str(), funded(l.funded));
        let levels = [
            (
                &narrow[&(c, l.price_band, b, l.funded)],
                format!("{c} band {} · {} · {f}", l.price_band, band_name(b)),
            ),
            (&banded[&(c, l.price_band, l.funded)], format!("{c} band {} · any depth · {f}", l.price_band)),
            (&wide[&(c, l.funded)], format!("{c} · any band or depth · {f}")),
        ];
        let Some((members, group)) = levels.into_iter().find(|(m, _)| m.len() > MIN_PEERS) else {
            continue;
        };
        let mut peers: Vec<f64> = members.iter().filter(|&&j| j != i).map(|&j| lines[j].rate).collect();
        if peers.len() < MIN_PEERS {
            continue;
        }
        let med = median(&mut peers);
        let mut dev: Vec<f64> = peers.iter().map(|r| (r - med).abs()).collect();
        let mad = median(&mut dev).max(MAD_FLOOR);
        let mads = (med - l.rate) / (MAD_SCALE * mad);
        if mads >= threshold {
            out.push(Anomaly { line: i, peer_median: med, mads, peers: peers.len(), group });
        }
    }
    out.sort_by(|a, b| b.mads.total_cmp(&a.mads).then(a.line.cmp(&b.line)));
    out
}

/// The explanation shown to finance, e.g. `SKU-00042 margin rate -12.0% vs peer median 18.0%
/// (garden band 2 · 20–30% · funded, 9 peers), 4.1 MADs below`.
pub fn explain(l: &LineRate, a: &Anomaly) -> String {
    format!(
        "{} margin rate {:.1}% vs peer median {:.1}% ({}, {} peers), {:.1} MADs below",
        l.sku,
        l.rate * 100.0,
        a.peer_median * 100.0,
        a.group,
        a.peers,
        a.mads
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(i: usize, category: &str, depth: f64, funded: bool, rate: f64) -> LineRate {
        LineRate { sku: format!("SKU-{i:05}"), category: category.into(), price_band: 2, depth, funded, rate }
    }

    #[test]
    fn a_line_far_below_its_peers_is_flagged_with_its_explanation() {
        // Ten garden lines at 25% off, funded, margins 17–19%; one at −12%.
        let mut lines: Vec<LineRate> =
            (0..10).map(|i| line(i, "garden", 0.25, true, 0.17 + 0.002 * i as f64)).collect();
        lines.push(line(10, "garden", 0.25, true, -0.12));
        let found = anomalies(&lines, 3.5);
        assert_eq!(found.len(), 1, "{found:?}");
        let a = &found[0];
        assert_eq!((a.line, a.peers), (10, 10));
        assert!((a.peer_median - 0.179).abs() < 1e-9, "{a:?}");
        assert!(a.mads > 3.5, "{a:?}");
        let text = explain(&lines[10], a);
        assert!(
            text.starts_with(
                "SKU-00010 margin rate -12.0% vs peer median 17.9% (garden band 2 · 20–30% · funded, 10 peers)"
            ),
            "{text}"
        );
    }

    #[test]
    fn peers_are_by_category_depth_and_funding_and_small_groups_widen() {
        let mut lines = Vec::new();
        // Deep discounts have low margins by design: compared with their own band they are not
        // anomalies, though they are far below the shallow lines.
        for i in 0..6 {
            lines.push(line(i, "garden", 0.05, false, 0.40));
            lines.push(line(10 + i, "garden", 0.45, false, 0.02));
        }
        assert!(anomalies(&lines, 3.5).is_empty());
        // A lone 25%-off line has no band of its own: it is compared across depths.
        lines.push(line(30, "garden", 0.25, false, -1.50));
        let found = anomalies(&lines, 3.5);
        assert_eq!(found.iter().map(|a| a.line).collect::<Vec<_>>(), [12], "{found:?}");
        assert!(found[0].group.contains("any depth"), "{found:?}");
        // Dearer SKUs of the same category (band 5) at a far higher rate are not peers: pooled,
        // the shallow band-2 lines at 40% would look eroded next to them.
        let mut banded = lines.clone();
        for i in 0..6 {
            banded.push(LineRate { price_band: 5, ..line(40 + i, "garden", 0.05, false, 0.80) });
        }
        let found = anomalies(&banded, 3.5);
        assert_eq!(found.iter().map(|a| a.line).collect::<Vec<_>>(), [12], "{found:?}");
        // Funded lines are not peers of unfunded ones; too few peers: not scored.
        let few = vec![
            line(0, "toys", 0.2, true, 0.3),
            line(1, "toys", 0.2, true, -0.9),
            line(2, "toys", 0.2, false, 0.3),
        ];
        assert!(anomalies(&few, 3.5).is_empty());
    }

    #[test]
    fn identical_peers_do_not_flag_rounding_and_zero_disables() {
        let mut lines: Vec<LineRate> = (0..8).map(|i| line(i, "food", 0.15, true, 0.20)).collect();
        lines.push(line(8, "food", 0.15, true, 0.199));
        assert!(anomalies(&lines, 3.5).is_empty(), "0.1 point is within the MAD floor");
        lines.push(line(9, "food", 0.15, true, 0.14));
        assert!(anomalies(&lines, 3.5).is_empty(), "6 points below a tight group is not an anomaly");
        lines.pop();
        lines.push(line(9, "food", 0.15, true, 0.05));
        assert_eq!(anomalies(&lines, 3.5).len(), 1);
        assert!(anomalies(&lines, 0.0).is_empty());
        // Above the peers is never an anomaly.
        lines.push(line(10, "food", 0.15, true, 0.90));
        assert!(anomalies(&lines, 3.5).iter().all(|a| a.line != 10));
    }
}
