//! `retail.v1.LocationService`: the regions, stores and DCs of the master data, answered from
//! memory (master data is loaded once when the file is opened).
//!
//! An "unknown-id" fault names an unknown region for the first store.

use super::{Handler, call};
use crate::faults::Malformed;
use promo_contracts::retail::v1::*;
use tonic::{Request, Response, Status};

#[tonic::async_trait]
impl location_service_server::LocationService for Handler {
    async fn list_locations(
        &self,
        _: Request<ListLocationsRequest>,
    ) -> Result<Response<ListLocationsResponse>, Status> {
        let fx = self.0.faults.before(call("location", "ListLocations")).await?;
        let m = self.0.master();
        let mut resp = ListLocationsResponse {
            regions: m
                .regions
                .iter()
                .map(|r| Region {
                    region_id: r.region_id.clone(),
                    name: r.name.clone(),
                    time_zone: r.time_zone.clone(),
                    dc_id: m.dcs[r.dc_idx].0.clone(),
                })
                .collect(),
            stores: m
                .stores
                .iter()
                .map(|s| Store {
                    store_id: s.store_id.clone(),
                    region_id: m.regions[s.region_idx].region_id.clone(),
                    name: s.name.clone(),
                })
                .collect(),
            dcs: m
                .dcs
                .iter()
                .enumerate()
                .map(|(i, (id, name))| DistributionCenter {
                    dc_id: id.clone(),
                    name: name.clone(),
                    region_ids: m
                        .regions
                        .iter()
                        .filter(|r| r.dc_idx == i)
                        .map(|r| r.region_id.clone())
                        .collect(),
                })
                .collect(),
        };
        if let (Some(Malformed::UnknownId), Some(s)) = (fx.malformed, resp.stores.first_mut()) {
            s.region_id = Malformed::unknown(&s.region_id);
        }
        Ok(Response::new(resp))
    }
}
