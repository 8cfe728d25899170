//! Intake with master data: the shape checks of `promo_workflows::plan`, then SKUs, prices,
//! channel eligibility, regions and stores against the product and location masters, then
//! collisions with other running promotions found through Temporal visibility.

use crate::{
    Systems,
    checks::{self, BadResponse},
    status_error,
};
use futures::StreamExt;
use promo_contracts::retail::v1::*;
use promo_workflows::{
    PromotionWorkflow,
    api::{self, IntakeInput, IntakeOutput, RegionInfo},
    plan::{self, Footprint, MasterData, Plan, Problem},
};
use std::collections::HashSet;
use temporalio_client::{Client, WorkflowListOptions, WorkflowQueryOptions};
use temporalio_sdk::activities::ActivityError;
use tonic::Code;

/// Loads the master data a plan refers to, given the location master. Unknown SKUs are left out
/// (and reported by [`plan::check_master`]) rather than failing the call.
pub async fn master_data(
    systems: &Systems,
    plan: &Plan,
    locations: &ListLocationsResponse,
) -> Result<MasterData, ActivityError> {
    let mut skus: Vec<String> = plan.lines.iter().map(|l| l.sku.clone()).collect();
    let products = loop {
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

/// Footprints of other running promotions sharing a region with `plan`.
pub async fn other_footprints(
    client: &Client,
    plan: &Plan,
    regions: &[String],
) -> Result<Vec<Footprint>, ActivityError> {
    if regions.is_empty() {
        return Ok(Vec::new());
    }
    let quoted: Vec<String> = regions.iter().map(|r| format!("'{r}'")).collect();
    let query = format!(
        "WorkflowType = '{}' AND ExecutionStatus = 'Running' AND PromotionRegions IN ({})",
        api::WORKFLOW_TYPE,
        quoted.join(", ")
    );
    let mut listed = client.list_workflows(query, WorkflowListOptions::default());
    let mut out = Vec::new();
    let mut to_query = Vec::new();
    let me = api::workflow_id(&plan.promotion_id);
    while let Some(w) = listed.next().await {
        let w = w.map_err(|e| anyhow::anyhow!("listing promotions: {e}"))?;
        if w.id() == me {
            continue;
        }
        // Revision 1's footprint travels in the listing (memo set at start); a later revision,
        // or a promotion started without the memo, answers the footprint query.
        let revision = w.search_attributes().get(&api::PROMOTION_REVISION).unwrap_or(1);
        let memo = w.memo().get::<Footprint>(api::FOOTPRINT_MEMO).ok().flatten();
        match memo {
            Some(f) if revision <= 1 => out.push(f),
            _ => to_query.push(w.id().to_owned()),
        }
    }
    let queried: Vec<Option<Footprint>> = futures::stream::iter(to_query)
        .map(|id| async move {
            let handle = client.get_workflow_handle::<PromotionWorkflow>(id.clone());
            match handle.query(PromotionWorkflow::footprint, (), WorkflowQueryOptions::default()).await {
                Ok(f) => f,
                // A promotion that ended between the list and the query has no footprint.
                Err(e) => {
                    tracing::debug!(workflow = id, "footprint query failed: {e}");
                    None
                }
            }
        })
        .buffer_unordered(FOOTPRINT_QUERIES_IN_FLIGHT)
        .collect()
        .await;
    out.extend(queried.into_iter().flatten());
    Ok(out)
}

/// Footprint queries in flight at once during a collision check.
const FOOTPRINT_QUERIES_IN_FLIGHT: usize = 8;

/// The whole intake check.
pub async fn validate(
    systems: &Systems,
    client: Option<&Client>,
    input: &IntakeInput,
) -> Result<IntakeOutput, ActivityError> {
    let plan = match plan::validate_spec(&input.spec, input.now) {
        Ok(p) => p,
        Err(problems) => return Ok(IntakeOutput { problems, plan: None, regions: vec![] }),
    };
    let locations = rpc!(systems.locations(), list_locations, ListLocationsRequest {})
        .await
        .map_err(|s| status_error("locations", s))?
        .into_inner();
    checks::locations(&locations).map_err(BadResponse::into_activity_error)?;
    let master = master_data(systems, &plan, &locations).await?;
    let mut problems: Vec<Problem> = plan::check_master(&plan, &master);
    let mut regions: Vec<RegionInfo> = Vec::new();
    for r in locations.regions.iter() {
        let whole = plan.regions.contains(&r.region_id);
        let stores = locations
            .stores
            .iter()
            .filter(|s| s.region_id == r.region_id && (whole || plan.stores.contains(&s.store_id)))
            .count() as u32;
        if stores > 0 {
            regions.push(RegionInfo { region_id: r.region_id.clone(), dc_id: r.dc_id.clone(), stores });
        }
    }
    if let (true, Some(client)) = (problems.is_empty(), client) {
        let ids: Vec<String> = regions.iter().map(|r| r.region_id.clone()).collect();
        for other in other_footprints(client, &plan, &ids).await? {
            problems.extend(plan::collisions(&plan, &other, &master.stores));
        }
    }
    Ok(IntakeOutput { plan: problems.is_empty().then_some(plan), problems, regions })
}
