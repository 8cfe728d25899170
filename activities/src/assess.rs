//! Assessment: margin & compliance, inventory alignment (with stockout risk and remediation
//! options) and supplier funding of one revision, their reads running concurrently
//! (`promo.assess`), and the launch gate's final re-check, which adds a re-read of the channels'
//! acknowledgments (`promo.recheck_gate`).

use crate::{
    Systems, business,
    context::load_context,
    engines::{alignment, stockout},
    learned,
    pulse::Progress,
    substitutes,
};
use promo_contracts::promo::v1 as pb;
use promo_workflows::api::{
    AssessInput, Assessment, InventoryAssessment, RecheckGateInput, RecheckGateOutput,
};
use temporalio_sdk::activities::ActivityError;

/// Cells most likely to run out named per region.
pub(crate) const RISKIEST_CELLS: usize = 5;

pub(crate) async fn margin(
    systems: &Systems,
    input: &AssessInput,
    progress: &Progress,
) -> Result<pb::MarginSummary, ActivityError> {
    let c = load_context(systems, &input.plan, &input.adjustments, &input.only_regions).await?;
    progress.set("master data loaded");
    let demand = c.demand_by_region_line(systems).await?;
    let floor = promo_contracts::money::parse_decimal("min_margin_rate", &input.min_margin_rate, 6)
        .map_err(|e| business(e.to_string()))?;
    // Runs from before the field carry none: no anomaly scoring.
    let mads = optional_threshold("margin_anomaly_mads", &input.margin_anomaly_mads)?;
    let mut summary = c.margin(&demand, floor, mads);
    // Runs from before the field carry none: drift is tracked but never flagged.
    let drift_signal = optional_threshold("model_drift_signal", &input.model_drift_signal)?;
    if let (Some(l), Some(m)) = (&c.learned, summary.forecast_model.as_mut()) {
        m.drift = l.drift(systems, drift_signal).await;
    }
    Ok(summary)
}

pub(crate) async fn inventory(
    systems: &Systems,
    input: &AssessInput,
    progress: &Progress,
) -> Result<InventoryAssessment, ActivityError> {
    let c = load_context(systems, &input.plan, &input.adjustments, &input.only_regions).await?;
    progress.set("master data loaded");
    let cells = c.cells(systems).await?;
    progress.set(format!("{} positions read", cells.len()));
    let floor: f64 = input.min_fill_rate.parse().map_err(|_| business("min_fill_rate is not a number"))?;
    // Histories from before the gate carry none: off.
    let ceiling = optional_threshold("max_stockout_share", &input.max_stockout_share)?;
    let scenario = c.scenario();
    let a = alignment::align(&cells, &scenario, c.regions.len(), c.lines.len());
    // The forecast's store-level uncertainty comes with the learned model (fitted, or
    // from this worker's cache, even when every line has the planner's uplift).
    let size = match &c.learned {
        Some(l) => l.store_size,
        None => match learned::learned_model(systems).await {
            learned::ModelState::Ready(l) => l.store_size,
            learned::ModelState::Unavailable(_) => None,
        },
    };
    let (cells, risks) = match size {
        Some(k) => {
            progress.set("stockout probabilities");
            // CPU-bound for a few hundred ms on the canonical promotion: off the runtime.
            let (regions, lines, s) = (c.regions.len(), c.lines.len(), scenario.clone());
            tokio::task::spawn_blocking(move || {
                let r = stockout::assess(&cells, &s, regions, lines, k, RISKIEST_CELLS);
                (cells, Some(r))
            })
            .await
            .map_err(|e| business(format!("stockout probabilities: {e}")))?
        }
        None => (cells, None),
    };
    let mut summary = c.inventory_summary(&cells, &scenario, &a, floor, risks.as_deref(), ceiling);
    if summary.regions.iter().any(|r| !r.passes) {
        progress.set("looking for substitutes");
        let (options, positions) = substitutes::options(systems, &c, &a, floor).await?;
        summary.options.extend(options);
        summary.positions_read += positions;
        // Options per region, in the order drop-short, delay, substitute.
        let order = |o: &pb::RemediationOption| c.regions.iter().position(|r| r == &o.region_id);
        summary.options.sort_by_key(order);
    }
    Ok(summary)
}

/// One monitoring round: sell-through (as `promo.monitor`) and the live prices read back (as
/// `promo.reconcile_prices`, up to three tries), concurrently. A read-back that fails is
/// returned as its reason, for the round to record as a missed check.
pub(crate) async fn funding(
    systems: &Systems,
    input: &AssessInput,
) -> Result<pb::FundingSummary, ActivityError> {
    let c = load_context(systems, &input.plan, &input.adjustments, &input.only_regions).await?;
    let demand = c.demand_by_region_line(systems).await?;
    Ok(c.funding(&demand))
}

/// Margin, inventory and funding of `input`, their reads running concurrently.
pub(crate) async fn assessment(
    systems: &Systems,
    input: &AssessInput,
    progress: &Progress,
) -> Result<Assessment, ActivityError> {
    let (margin, inventory, funding) = tokio::try_join!(
        margin(systems, input, progress),
        inventory(systems, input, progress),
        funding(systems, input)
    )?;
    Ok(Assessment { margin, inventory, funding })
}

/// The launch gate's final re-check: the assessment, and the acknowledged activations re-read,
/// concurrently; a re-read that fails is returned as its reason (it does not hold the launch).
pub(crate) async fn recheck(
    systems: &Systems,
    input: &RecheckGateInput,
    progress: &Progress,
) -> Result<RecheckGateOutput, ActivityError> {
    let read = async {
        crate::publish::read(systems, &input.publications).await.map_err(|e| crate::client::error_text(&e))
    };
    let (assessment, publications) = tokio::join!(assessment(systems, &input.assess, progress), read);
    Ok(RecheckGateOutput { assessment: assessment?, publications })
}

/// A policy threshold an activity input carries as a decimal string, where empty and "0" both
/// mean off (0).
fn optional_threshold(name: &str, value: &str) -> Result<f64, ActivityError> {
    if value.is_empty() {
        return Ok(0.0);
    }
    value.parse::<f64>().map_err(|e| business(format!("{name}: {value:?}: {e}")))
}
