//! Intake with master data: the shape checks of `promo_workflows::plan`, then SKUs, prices,
//! channel eligibility, regions and stores against the product and location masters, and the
//! approval lead time, all reported together in one list sorted by line; then, for a spec with
//! no problem, collisions with other promotions: a reservation of its footprint in the ERP's
//! promotion calendar (atomic: two promotions cannot both hold overlapping footprints).

use crate::{
    Systems,
    checks::{self, BadResponse},
    status_error,
};
use promo_contracts::retail::v1::*;
use promo_workflows::{
    api::{CalendarCheck, IntakeInput, IntakeOutput, RegionInfo},
    plan::{self, Footprint, MasterData, PartialPlan, Plan, Problem},
};
use std::collections::HashSet;
use temporalio_sdk::activities::ActivityError;
use tonic::Code;

/// Loads the master data for `skus` (unique), given the location master. Unknown SKUs are left
/// out (and reported by [`plan::check_master`]) rather than failing the call.
pub async fn master_data(
    systems: &Systems,
    skus: &[String],
    locations: &ListLocationsResponse,
) -> Result<MasterData, ActivityError> {
    let mut skus = skus.to_vec();
    let products = loop {
        if skus.is_empty() {
            // An empty request is not sent: nothing to look up.
            break Vec::new();
        }
        match rpc!(systems.products(), get_products, GetProductsRequest { skus: skus.clone() }).await {
            Ok(r) => break r.into_inner().products,
            // The contract names every unknown SKU: drop them and ask again.
            Err(s) if s.code() == Code::NotFound && s.message().starts_with("unknown SKUs: ") => {
                let unknown: HashSet<&str> = s.message()["unknown SKUs: ".len()..].split(", ").collect();
                let before = skus.len();
                skus.retain(|k| !unknown.contains(k.as_str()));
                if skus.len() == before {
                    return Err(status_error("product master", s));
                }
            }
            Err(s) => return Err(status_error("product master", s)),
        }
    };
    Ok(MasterData {
        regions: locations.regions.iter().map(|r| r.region_id.clone()).collect(),
        stores: locations.stores.iter().map(|s| (s.store_id.clone(), s.region_id.clone())).collect(),
        products: checks::products(&skus, &products).map_err(BadResponse::into_activity_error)?,
    })
}

/// Reserves `plan`'s footprint in the promotion calendar (or, on a dry run, only asks): each
/// overlap with another promotion's reservation is a problem on every line of a shared SKU
/// ([`plan::collision_problems`]).
pub async fn reserve(
    systems: &Systems,
    plan: &Plan,
    check: CalendarCheck,
) -> Result<Vec<Problem>, ActivityError> {
    let (revision, dry_run) = match check {
        CalendarCheck::Reserve { revision } => (revision, false),
        CalendarCheck::DryRun => (0, true),
    };
    let f = Footprint::of(plan);
    let at = |s: i64| Some(promo_contracts::pbjson_types::Timestamp { seconds: s, nanos: 0 });
    let req = ReserveRequest {
        promotion_id: plan.promotion_id.clone(),
        revision,
        footprint: Some(CalendarFootprint {
            starts_at: at(f.starts_at),
            ends_at: at(f.ends_at),
            region_ids: f.regions,
            store_ids: f.stores,
            skus: f.skus,
        }),
        dry_run,
    };
    let out = rpc!(systems.calendar(), reserve, req.clone())
        .await
        .map_err(|s| status_error("promotion calendar", s))?
        .into_inner();
    let mut problems: Vec<Problem> = out
        .conflicts
        .iter()
        .flat_map(|c| plan::collision_problems(plan, &c.promotion_id, &c.skus, &c.locations))
        .collect();
    if !dry_run && !out.reserved && problems.is_empty() {
        // Refused without an overlap that names a line: say so rather than pass unreserved.
        problems.push(Problem {
            line: None,
            field: "window".into(),
            message: "the promotion calendar refused the reservation".into(),
        });
    }
    Ok(problems)
}

/// The whole intake check: every problem of the spec in one list, sorted by line (problems
/// with the whole spec first), each with its line and field. Master data is checked for every
/// part of the spec that is well-formed, even when other parts are not, so a planner sees an
/// unknown SKU on one line and a negative price on another together.
pub async fn validate(systems: &Systems, input: &IntakeInput) -> Result<IntakeOutput, ActivityError> {
    let partial = plan::validate_spec_partial(&input.spec, input.now);
    let locations = rpc!(systems.locations(), list_locations, ListLocationsRequest {})
        .await
        .map_err(|s| status_error("locations", s))?
        .into_inner();
    checks::locations(&locations).map_err(BadResponse::into_activity_error)?;
    let master = master_data(systems, &partial.skus(), &locations).await?;
    let mut problems: Vec<Problem> = partial.problems.clone();
    problems.extend(plan::check_master_partial(&partial, &master));
    if let (Some((starts_at, _)), Some(tz)) = (partial.window, partial.time_zone) {
        problems.extend(plan::lead_time_problem(starts_at, input.now, input.approval_lead_secs, tz));
    }
    let regions = regions_touched(&partial, &locations);
    if let Some(plan) = partial.plan.as_ref().filter(|_| problems.is_empty()) {
        problems.extend(reserve(systems, plan, input.calendar).await?);
    }
    plan::sort_problems(&mut problems);
    Ok(IntakeOutput { problems, regions })
}

/// The regions `partial` touches: its whole regions and the regions of its individual stores,
/// in the location master's order, each with the number of its stores in the promotion.
fn regions_touched(partial: &PartialPlan, locations: &ListLocationsResponse) -> Vec<RegionInfo> {
    let whole: HashSet<&str> = partial.regions.iter().map(|(_, r)| r.as_str()).collect();
    let named: HashSet<&str> = partial.stores.iter().map(|(_, s)| s.as_str()).collect();
    locations
        .regions
        .iter()
        .filter_map(|r| {
            let all = whole.contains(r.region_id.as_str());
            let stores = locations
                .stores
                .iter()
                .filter(|s| s.region_id == r.region_id && (all || named.contains(s.store_id.as_str())))
                .count() as u32;
            (stores > 0).then(|| RegionInfo {
                region_id: r.region_id.clone(),
                dc_id: r.dc_id.clone(),
                stores,
            })
        })
        .collect()
}
