//! The "substitute" remediation: for the short SKUs of a failing region, a comparable SKU (same
//! category and price band, from the product master's `ListComparableProducts`) that is not in
//! the promotion and whose own stock in that region covers the promotional demand of the line
//! it would replace.
//!
//! Candidates are priced at the original line's discount depth and forecast with its uplift
//! (comparable SKUs share category and band), then run through the same alignment engine as the
//! promotion's own lines, over positions streamed for the failing regions only.

use crate::{
    Systems, checks,
    context::Context,
    dec,
    engines::alignment::{self, Alignment},
    status_error,
    summaries::short_lines,
};
use futures::{StreamExt, TryStreamExt, stream};
use promo_contracts::{
    domain::Product,
    money::{format_money, format_ratio},
    promo::v1 as pb,
    retail::v1::ListComparableProductsRequest,
};
use std::collections::{BTreeSet, HashMap};
use temporalio_sdk::activities::ActivityError;

/// Short SKUs per failing region looked at for a substitute, worst shortfall first.
pub const MAX_SHORT_PER_REGION: usize = 50;

/// Product-master lookups in flight at once.
const LOOKUPS_IN_FLIGHT: usize = 8;

/// One "substitute" option per failing region that has at least one short SKU with a
/// comparable SKU in stock, and the number of candidate positions read.
///
/// `a` is the alignment of `c`'s own lines; a region fails when its fill is under `floor`.
pub async fn options(
    systems: &Systems,
    c: &Context,
    a: &Alignment,
    floor: f64,
) -> Result<(Vec<pb::RemediationOption>, u64), ActivityError> {
    let failing: Vec<bool> = a.regions.iter().map(|t| t.fill_rate() < floor).collect();
    // Per region: its short lines (worst first, at most MAX_SHORT_PER_REGION) and how many.
    let short: Vec<(Vec<(usize, f32)>, usize)> = (0..c.regions.len())
        .map(|r| {
            if failing[r] {
                let all = short_lines(a, r, floor);
                let n = all.len();
                (all.into_iter().take(MAX_SHORT_PER_REGION).collect(), n)
            } else {
                (Vec::new(), 0)
            }
        })
        .collect();

    // Comparable products of every short line, minus SKUs already in the promotion.
    let wanted: BTreeSet<usize> = short.iter().flat_map(|(s, _)| s).map(|(k, _)| *k).collect();
    let in_promotion: BTreeSet<&str> = c.lines.iter().map(|l| l.sku.as_str()).collect();
    let lookups: Vec<(usize, Vec<Product>)> = stream::iter(wanted)
        .map(|k| async move {
            let products = rpc!(
                systems.products(),
                list_comparable_products,
                ListComparableProductsRequest { sku: c.lines[k].sku.clone() }
            )
            .await
            .map_err(|s| status_error("product master", s))?
            .into_inner()
            .products;
            let products = checks::comparable_products(&c.lines[k].sku, &products)
                .map_err(checks::BadResponse::into_activity_error)?;
            Ok::<_, ActivityError>((k, products))
        })
        .buffered(LOOKUPS_IN_FLIGHT)
        .try_collect()
        .await?;

    // Each candidate SKU once, forecast as a substitute for the first short line it serves.
    let mut candidates: Vec<(usize, Product)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut comparable: HashMap<usize, Vec<usize>> = HashMap::new();
    for (k, products) in lookups {
        for p in products.into_iter().filter(|p| !in_promotion.contains(p.sku.as_str())) {
            let j = *index.entry(p.sku.clone()).or_insert_with(|| {
                candidates.push((k, p));
                candidates.len() - 1
            });
            comparable.entry(k).or_default().push(j);
        }
    }
    if candidates.is_empty() {
        return Ok((Vec::new(), 0));
    }
    let cc = c.substitute_candidates(&candidates, &failing);
    let cells = cc.cells(systems).await?;
    let b = alignment::align(&cells, &cc.scenario(), cc.regions.len(), cc.lines.len());

    let mut options = Vec::new();
    for (r, region_id) in c.regions.iter().enumerate().filter(|(r, _)| failing[*r]) {
        let mut used = BTreeSet::new();
        let mut pairs: Vec<(usize, usize)> = Vec::new();
        for (k, _) in &short[r].0 {
            let best = comparable
                .get(k)
                .into_iter()
                .flatten()
                .filter(|j| !used.contains(*j))
                .map(|&j| (j, b.demand[r][j], b.demand[r][j] - b.short[r][j]))
                .filter(|(_, demand, covered)| *demand > 0.0 && f64::from(covered / demand) >= floor)
                .max_by(|x, y| x.2.total_cmp(&y.2).then(y.0.cmp(&x.0)));
            if let Some((j, _, _)) = best {
                used.insert(j);
                pairs.push((*k, j));
            }
        }
        if pairs.is_empty() {
            continue;
        }
        let t = &a.regions[r];
        let (mut revenue, mut margin, mut demand, mut covered) = (0f64, 0f64, t.demand, t.covered);
        for &(k, j) in &pairs {
            let (d_k, cov_k) = (f64::from(a.demand[r][k]), f64::from(a.demand[r][k] - a.short[r][k]));
            let (d_j, cov_j) = (f64::from(b.demand[r][j]), f64::from(b.demand[r][j] - b.short[r][j]));
            revenue += cov_j * cc.lines[j].price_f64 - cov_k * c.lines[k].price_f64;
            margin += cov_j * cc.lines[j].unit_margin_f64 - cov_k * c.lines[k].unit_margin_f64;
            demand += d_j - d_k;
            covered += cov_j - cov_k;
        }
        let resulting = if demand > 0.0 { covered / demand } else { 1.0 };
        let n_short = short[r].1;
        options.push(pb::RemediationOption {
            option_id: format!("{region_id}:substitute"),
            region_id: region_id.clone(),
            kind: "substitute".into(),
            description: format!(
                "substitute {} of {} short SKUs in {region_id} with comparable SKUs in stock (same category and \
                 price band, same discount depth)",
                pairs.len(),
                n_short
            ),
            revenue_effect: format_money(dec(revenue)),
            margin_effect: format_money(dec(margin)),
            resulting_fill_rate: format_ratio(dec(resulting)),
            delay_until: None,
            skus: pairs.iter().map(|(k, _)| c.lines[*k].sku.clone()).collect(),
            substitutes: pairs.iter().map(|(_, j)| cc.lines[*j].sku.clone()).collect(),
        });
    }
    Ok((options, cells.len() as u64))
}
