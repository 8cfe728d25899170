//! `retail.v1.SalesService`: what a promotion sold, simulated from the dataset's world on
//! request (`crate::sales`): nothing is stored, and the same request over the same stock and
//! transfers gets the same answer.
//!
//! `GetSalesActuals` totals each region × SKU; `StreamStoreSellThrough` sends each store's
//! cells, 64 stores to a message (the SKU dictionary, the request's lines, in the first),
//! the last message also carrying what the DCs serving the scopes can still allocate. Faults
//! break `GetSalesActuals` only ("unknown-id": the first row's SKU; "negative-stock": its
//! ending units): the sell-through stream is not one of the answers `Fault.malformed` covers.

use super::{Batches, Handler, Stop, Stream, StreamItem, batched_stream, blocking, call, db, field, seconds};
use crate::{Master, Systems, faults::Malformed, sales};
use promo_contracts::{
    money::{parse_decimal, parse_price},
    retail::v1::*,
};
use rusqlite::{OptionalExtension, params};
use rust_decimal::prelude::ToPrimitive;
use std::{collections::HashMap, ops::ControlFlow};
use tonic::{Request, Response, Status};

/// Stores per message of `StreamStoreSellThrough`.
const STORES_PER_MESSAGE: usize = 64;

#[tonic::async_trait]
impl sales_service_server::SalesService for Handler {
    type StreamStoreSellThroughStream = Stream<StreamStoreSellThroughResponse>;

    async fn stream_store_sell_through(
        &self,
        req: Request<StreamStoreSellThroughRequest>,
    ) -> Result<Response<Self::StreamStoreSellThroughStream>, Status> {
        self.0.faults.before(call("sales", "StreamStoreSellThrough")).await?;
        let req = req.into_inner();
        let (lines, scopes) = sales_request(self.0.master(), &req.lines, &req.scopes)?;
        let systems = self.0.clone();
        let mut dictionary = Some(req.lines.iter().map(|l| l.sku.clone()).collect::<Vec<_>>());
        Ok(batched_stream(
            STORES_PER_MESSAGE,
            None,
            move |stores| StreamStoreSellThroughResponse {
                sku_dictionary: dictionary.take().unwrap_or_default(),
                stores,
                dcs: Vec::new(),
            },
            move |out| stream_sell_through(&systems, &req, &lines, &scopes, out),
        ))
    }

    async fn get_sales_actuals(
        &self,
        req: Request<GetSalesActualsRequest>,
    ) -> Result<Response<GetSalesActualsResponse>, Status> {
        let fx = self.0.faults.before(call("sales", "GetSalesActuals")).await?;
        let req = req.into_inner();
        let (lines, scopes) = sales_request(self.0.master(), &req.lines, &req.scopes)?;
        let systems = self.0.clone();
        let (promotion_id, without) = (req.promotion_id.clone(), req.without_store_transfers);
        let mut actuals = blocking(move || {
            let conn = systems.reader().map_err(db)?;
            sales::simulate(&systems, &conn, &promotion_id, &lines, &scopes, without).map_err(db)
        })
        .await?;
        match (fx.malformed, actuals.first_mut()) {
            (Some(Malformed::UnknownId), Some(a)) => a.sku = Malformed::unknown(&a.sku),
            (Some(Malformed::NegativeStock), Some(a)) => a.ending_units = -a.ending_units - 1,
            _ => {}
        }
        Ok(Response::new(GetSalesActualsResponse { actuals }))
    }
}

impl StreamItem for StoreSellThrough {
    fn malform(&mut self, _: Malformed) -> bool {
        false
    }
}

/// Walks the promotion's cells store by store into `out`, then sends the last message with the
/// DCs' availability.
fn stream_sell_through(
    systems: &Systems,
    req: &StreamStoreSellThroughRequest,
    lines: &[sales::Line],
    scopes: &[sales::Scope],
    out: &mut Batches<'_, StoreSellThrough, StreamStoreSellThroughResponse>,
) -> Result<(), Stop> {
    let m = systems.master();
    let conn = systems.reader().map_err(db)?;
    let moves = if req.without_store_transfers {
        Vec::new()
    } else {
        sales::transfers(&conn, &req.promotion_id).map_err(db)?
    };
    // The store being walked, with its (scope, store): the walk hands each store's cells in a
    // run, so a store is complete when the next one starts.
    let mut current: Option<((usize, usize), StoreSellThrough)> = None;
    let walked =
        sales::walk(systems, &conn, &req.promotion_id, lines, scopes, &moves, |si, store_idx, li, cell| {
            let at = (si, store_idx);
            if current.as_ref().is_none_or(|(walking, _)| *walking != at) {
                let store = &m.stores[store_idx];
                let next = StoreSellThrough {
                    store_id: store.store_id.clone(),
                    region_id: m.regions[store.region_idx].region_id.clone(),
                    ..StoreSellThrough::default()
                };
                if let Some((_, done)) = current.replace((at, next))
                    && let Err(stop) = out.push(done)
                {
                    return ControlFlow::Break(stop);
                }
            }
            let Some((_, s)) = current.as_mut() else { return ControlFlow::Continue(()) };
            s.sku_index.push(li as u32);
            s.baseline.push(cell.baseline);
            s.units_sold.push(cell.sold.round() as i64);
            s.in_stock_units.push(cell.in_stock_units.round() as i64);
            s.in_stock_days.push(cell.in_stock_days);
            s.stockout_days.push(cell.stockout_days);
            s.on_hand.push(cell.ending.round() as i64);
            s.inbound_units.push(cell.inbound_units.round() as i64);
            s.inbound_eta.push(cell.inbound_eta);
            ControlFlow::Continue(())
        });
    if let ControlFlow::Break(stop) = walked.map_err(db)? {
        return Err(stop);
    }
    // The last store goes out with the DCs, however full its message is.
    if let Some((_, last)) = current {
        out.push_last(last);
    }
    // What the DCs serving the scopes can still allocate: on hand less released store transfers.
    let mut dcs: Vec<usize> = scopes.iter().map(|s| m.regions[s.region_idx].dc_idx).collect();
    dcs.sort_unstable();
    dcs.dedup();
    // Units released to stores from each DC, per SKU, in one pass.
    let mut committed: HashMap<(i64, i64), i64> = HashMap::new();
    {
        let mut stmt = conn
            .prepare(
                "SELECT l.dc_idx, l.sku_idx, SUM(l.units) FROM store_transfer_lines l JOIN transfer_orders o
                 ON o.order_id = l.order_id WHERE l.from_store_idx = -1 AND o.state = 1
                 GROUP BY l.dc_idx, l.sku_idx",
            )
            .map_err(db)?;
        let rows = stmt.query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?))).map_err(db)?;
        for row in rows {
            let (k, v) = row.map_err(db)?;
            committed.insert(k, v);
        }
    }
    let mut on_hand =
        conn.prepare("SELECT on_hand FROM dc_positions WHERE dc_idx = ?1 AND sku_idx = ?2").map_err(db)?;
    let mut availability = Vec::with_capacity(dcs.len());
    for dc in dcs {
        let mut available = Vec::with_capacity(lines.len());
        for l in lines {
            let key = (dc as i64, l.sku_idx as i64);
            let held: i64 =
                on_hand.query_row(params![key.0, key.1], |r| r.get(0)).optional().map_err(db)?.unwrap_or(0);
            available.push((held - committed.get(&key).copied().unwrap_or(0)).max(0));
        }
        availability.push(DcAvailability { dc_id: m.dcs[dc].0.clone(), available });
    }
    out.finish(|last| last.dcs = availability)
}

/// The lines and scopes of a sales request, checked against master data.
fn sales_request(
    m: &Master,
    req_lines: &[SalesLine],
    req_scopes: &[SalesScope],
) -> Result<(Vec<sales::Line>, Vec<sales::Scope>), Status> {
    let unknown: Vec<&str> =
        req_lines.iter().map(|l| l.sku.as_str()).filter(|s| !m.sku_index.contains_key(*s)).collect();
    if !unknown.is_empty() {
        return Err(Status::not_found(format!("unknown SKUs: {}", unknown.join(", "))));
    }
    let mut lines = Vec::with_capacity(req_lines.len());
    for (i, l) in req_lines.iter().enumerate() {
        let price = parse_price(&format!("lines[{i}].promo_price"), &l.promo_price).map_err(field)?;
        let sku_idx = m.sku_index[&l.sku];
        let regular = parse_decimal("regular_price", &m.products[sku_idx].regular_price, 4).map_err(field)?;
        let depth = ((regular - price) / regular).to_f64().unwrap_or(0.0).clamp(0.0, 0.95);
        let mut regions = Vec::with_capacity(l.region_ids.len());
        for r in &l.region_ids {
            regions.push(
                *m.region_index.get(r).ok_or_else(|| {
                    Status::not_found(format!("lines[{i}].region_ids: unknown region {r:?}"))
                })?,
            );
        }
        lines.push(sales::Line { sku_idx, promo_price: price, depth, regions });
    }
    let mut scopes = Vec::with_capacity(req_scopes.len());
    for (i, s) in req_scopes.iter().enumerate() {
        let region_idx = *m.region_index.get(&s.region_id).ok_or_else(|| {
            Status::not_found(format!("scopes[{i}].region_id: unknown region {:?}", s.region_id))
        })?;
        let w = s
            .window
            .as_ref()
            .ok_or_else(|| Status::invalid_argument(format!("scopes[{i}].window: is required")))?;
        let (start, end) = (
            seconds(&w.start, &format!("scopes[{i}].window.start"))?,
            seconds(&w.end, &format!("scopes[{i}].window.end"))?,
        );
        if end < start {
            return Err(Status::invalid_argument(format!("scopes[{i}].window: end is before start")));
        }
        scopes.push(sales::Scope { region_idx, start, end });
    }
    Ok((lines, scopes))
}
