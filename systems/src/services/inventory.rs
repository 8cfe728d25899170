//! `retail.v1.InventoryService`: store and DC positions, streamed from `store_positions` and
//! `dc_positions`.
//!
//! Each location's positions are columns indexed into the SKU dictionary that the first
//! message carries. ETAs are stored as offsets from the dataset anchor and go out as Unix
//! seconds (0 when nothing is inbound). Stores come `locations_per_message` to a message (64 by
//! default); the DCs serving them, when asked for, all ride in the last message, however many
//! records it then holds. A fault breaks the first location that holds positions.

use super::{
    Batches, Handler, Selection, Stop, Stream, StreamItem, batched_stream, call, db, malform_columns,
};
use crate::{Systems, faults::Malformed};
use promo_contracts::retail::v1::*;
use rusqlite::Statement;
use tonic::{Request, Response, Status};

#[tonic::async_trait]
impl inventory_service_server::InventoryService for Handler {
    type StreamPositionsStream = Stream<StreamPositionsResponse>;

    async fn stream_positions(
        &self,
        req: Request<StreamPositionsRequest>,
    ) -> Result<Response<Self::StreamPositionsStream>, Status> {
        let fx = self.0.faults.before(call("inventory", "StreamPositions")).await?;
        let req = req.into_inner();
        let mut sel = self.select(&req.skus, &req.region_ids, &req.store_ids, req.include_dcs)?;
        let per_message =
            if req.locations_per_message == 0 { 64 } else { req.locations_per_message as usize };
        let skus = sel.dictionary.len();
        let mut dictionary = Some(std::mem::take(&mut sel.dictionary));
        let systems = self.0.clone();
        Ok(batched_stream(
            per_message,
            fx.malformed,
            move |locations| StreamPositionsResponse {
                sku_dictionary: dictionary.take().unwrap_or_default(),
                locations,
            },
            move |out| stream_positions(&systems, &sel, skus, out),
        ))
    }
}

impl StreamItem for LocationPositions {
    fn malform(&mut self, mode: Malformed) -> bool {
        malform_columns(mode, self.sku_index.len(), &mut self.location_id, &mut self.on_hand)
    }
}

/// Reads the selected stores' positions, then their DCs', into `out`.
fn stream_positions(
    systems: &Systems,
    sel: &Selection,
    skus: usize,
    out: &mut Batches<'_, LocationPositions, StreamPositionsResponse>,
) -> Result<(), Stop> {
    let m = systems.master();
    let anchor = systems.anchor();
    let conn = systems.reader().map_err(db)?;
    let mut stmt = conn.prepare(&positions_of("store_positions", "store_idx")).map_err(db)?;
    for &s in &sel.stores {
        let store = &m.stores[s];
        let loc = LocationPositions {
            location_id: store.store_id.clone(),
            kind: LocationKind::Store as i32,
            region_id: m.regions[store.region_idx].region_id.clone(),
            ..with_capacity(skus)
        };
        out.push(read_location(&mut stmt, s, sel, anchor, loc).map_err(db)?)?;
    }
    let mut stmt = conn.prepare(&positions_of("dc_positions", "dc_idx")).map_err(db)?;
    for &d in &sel.dcs {
        let loc = LocationPositions {
            location_id: m.dcs[d].0.clone(),
            kind: LocationKind::Dc as i32,
            ..with_capacity(skus)
        };
        out.push_last(read_location(&mut stmt, d, sel, anchor, loc).map_err(db)?);
    }
    Ok(())
}

/// The query of one location's positions in `table`, keyed by `key`, in the columns that
/// [`read_location`] reads.
fn positions_of(table: &str, key: &str) -> String {
    format!(
        "SELECT sku_idx, on_hand, in_transit, in_transit_eta, confirmed, confirmed_eta
         FROM {table} WHERE {key} = ?1 ORDER BY sku_idx"
    )
}

/// Fills `loc` with the selected SKUs' positions that `stmt` ([`positions_of`]) reads for
/// location `idx`; ETAs are stored as offsets from `anchor`.
fn read_location(
    stmt: &mut Statement<'_>,
    idx: usize,
    sel: &Selection,
    anchor: i64,
    mut loc: LocationPositions,
) -> rusqlite::Result<LocationPositions> {
    let eta = |offset: i64, units: i64| if units > 0 { anchor + offset } else { 0 };
    let mut rows = stmt.query([idx as i64])?;
    while let Some(row) = rows.next()? {
        let dict = sel.dict_of_sku[row.get::<_, i64>(0)? as usize];
        if dict == u32::MAX {
            continue;
        }
        loc.sku_index.push(dict);
        loc.on_hand.push(row.get(1)?);
        let (it, ite): (i64, i64) = (row.get(2)?, row.get(3)?);
        loc.in_transit.push(it);
        loc.in_transit_eta.push(eta(ite, it));
        let (c, ce): (i64, i64) = (row.get(4)?, row.get(5)?);
        loc.supplier_confirmed.push(c);
        loc.supplier_confirmed_eta.push(eta(ce, c));
    }
    Ok(loc)
}

/// An empty location with room for `n` positions in every column.
fn with_capacity(n: usize) -> LocationPositions {
    LocationPositions {
        sku_index: Vec::with_capacity(n),
        on_hand: Vec::with_capacity(n),
        in_transit: Vec::with_capacity(n),
        in_transit_eta: Vec::with_capacity(n),
        supplier_confirmed: Vec::with_capacity(n),
        supplier_confirmed_eta: Vec::with_capacity(n),
        ..Default::default()
    }
}
