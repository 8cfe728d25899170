//! `retail.v1.ReplenishmentService`: transfer orders from a DC (or between stores) to a
//! region's stores, created idempotently by key, released, cancelled and listed.
//!
//! An order arrives [`TRANSFER_LEAD_MS`] after its release. Its store-addressed lines are kept
//! in `store_transfer_lines` (a source store of -1 is the order's DC) with release and arrival
//! in Unix seconds, where the sales simulation moves the stock; an order created as proposed
//! moves nothing until it is released.

use super::{Handler, blocking, call, db, millis, require, ts_ms};
use crate::{faults::lost_response, next_id, now_ms};
use promo_contracts::retail::v1::*;
use rusqlite::{Connection, OptionalExtension, Row, params};
use tonic::{Request, Response, Status};

/// The columns of `transfer_orders` that [`order`] reads, in its order.
const ORDER_COLUMNS: &str = "order_id, idempotency_key, promotion_id, from_dc_id, to_region_id, total_units, line_count, eta_ms, state";

/// A `transfer_orders` row as the wire carries it.
fn order(r: &Row<'_>) -> rusqlite::Result<TransferOrder> {
    Ok(TransferOrder {
        order_id: r.get(0)?,
        idempotency_key: r.get(1)?,
        promotion_id: r.get(2)?,
        from_dc_id: r.get(3)?,
        to_region_id: r.get(4)?,
        total_units: r.get(5)?,
        line_count: r.get(6)?,
        eta: ts_ms(r.get(7)?),
        state: r.get(8)?,
    })
}

/// The order whose `key_column` is `key`, if any.
fn get_order(conn: &Connection, key_column: &str, key: &str) -> rusqlite::Result<Option<TransferOrder>> {
    conn.query_row(
        &format!("SELECT {ORDER_COLUMNS} FROM transfer_orders WHERE {key_column} = ?1"),
        [key],
        order,
    )
    .optional()
}

/// Lead time of a transfer order from DC to stores.
const TRANSFER_LEAD_MS: i64 = 24 * 3600 * 1000;

#[tonic::async_trait]
impl replenishment_service_server::ReplenishmentService for Handler {
    async fn create_transfer_order(
        &self,
        req: Request<CreateTransferOrderRequest>,
    ) -> Result<Response<CreateTransferOrderResponse>, Status> {
        let c = call("replenishment", "CreateTransferOrder");
        let fx = self.0.faults.before(c).await?;
        let req = req.into_inner();
        require(&req.idempotency_key, "idempotency_key")?;
        require(&req.promotion_id, "promotion_id")?;
        let m = self.0.master();
        let dc_idx =
            if req.from_dc_id.is_empty() {
                if let Some(i) = req.lines.iter().position(|l| l.from_store_id.is_empty()) {
                    return Err(Status::invalid_argument(format!(
                        "lines[{i}].from_store_id: is required when the order has no from_dc_id"
                    )));
                }
                None
            } else {
                Some(m.dcs.iter().position(|d| d.0 == req.from_dc_id).ok_or_else(|| {
                    Status::not_found(format!("from_dc_id: unknown DC {:?}", req.from_dc_id))
                })?)
            };
        let Some(&region_idx) = m.region_index.get(&req.to_region_id) else {
            return Err(Status::not_found(format!("to_region_id: unknown region {:?}", req.to_region_id)));
        };
        let unknown: Vec<&str> =
            req.lines.iter().map(|l| l.sku.as_str()).filter(|s| !m.sku_index.contains_key(*s)).collect();
        if !unknown.is_empty() {
            return Err(Status::not_found(format!("unknown SKUs: {}", unknown.join(", "))));
        }
        // Store-addressed lines: (sku, from store or -1, to store, units).
        let mut store_lines = Vec::new();
        for (i, l) in req.lines.iter().enumerate() {
            if l.units <= 0 {
                return Err(Status::invalid_argument(format!(
                    "lines[{i}].units: {} must be above zero",
                    l.units
                )));
            }
            let store = |field: &str, id: &str| {
                m.store_index
                    .get(id)
                    .copied()
                    .ok_or_else(|| Status::not_found(format!("lines[{i}].{field}: unknown store {id:?}")))
            };
            if l.to_store_id.is_empty() {
                if !l.from_store_id.is_empty() {
                    return Err(Status::invalid_argument(format!(
                        "lines[{i}].to_store_id: is required when the line names a from_store_id"
                    )));
                }
                continue;
            }
            let to = store("to_store_id", &l.to_store_id)?;
            if m.stores[to].region_idx != region_idx {
                return Err(Status::invalid_argument(format!(
                    "lines[{i}].to_store_id: store {:?} is not in region {:?}",
                    l.to_store_id, req.to_region_id
                )));
            }
            let from = if l.from_store_id.is_empty() {
                -1
            } else {
                store("from_store_id", &l.from_store_id)? as i64
            };
            if from == to as i64 {
                return Err(Status::invalid_argument(format!("lines[{i}]: from and to are the same store")));
            }
            store_lines.push((m.sku_index[&l.sku] as i64, from, to as i64, l.units));
        }
        let release_ms = req.release_at.as_ref().map_or_else(now_ms, millis);
        let dc = dc_idx.map_or(-1, |d| d as i64);
        let systems = self.0.clone();
        let (o, replayed) = blocking(move || {
            systems.write(|conn| {
                if let Some(existing) = get_order(conn, "idempotency_key", &req.idempotency_key).map_err(db)? {
                    return Ok((existing, true));
                }
                let id = next_id(conn, "transfer_orders", "TO").map_err(db)?;
                let now = now_ms();
                conn.execute(
                    "INSERT INTO transfer_orders(order_id, idempotency_key, promotion_id, from_dc_id, to_region_id,
                     total_units, line_count, eta_ms, state, created_ms) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)",
                    params![
                        id,
                        req.idempotency_key,
                        req.promotion_id,
                        req.from_dc_id,
                        req.to_region_id,
                        req.lines.iter().map(|l| l.units).sum::<i64>(),
                        req.lines.len() as i64,
                        release_ms + TRANSFER_LEAD_MS,
                        if req.proposed { OrderState::Proposed } else { OrderState::Released } as i32,
                        now
                    ],
                )
                .map_err(db)?;
                let mut insert = conn
                    .prepare_cached(
                        "INSERT INTO store_transfer_lines(order_id, sku_idx, from_store_idx, to_store_idx, units,
                         release_s, eta_s, dc_idx) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
                    )
                    .map_err(db)?;
                for (sku, from, to, units) in &store_lines {
                    insert
                        .execute(params![
                            id,
                            sku,
                            from,
                            to,
                            units,
                            release_ms.div_euclid(1000),
                            (release_ms + TRANSFER_LEAD_MS).div_euclid(1000),
                            dc
                        ])
                        .map_err(db)?;
                }
                let o = get_order(conn, "order_id", &id).map_err(db)?.ok_or_else(|| Status::internal("lost write"))?;
                Ok((o, false))
            })
        })
        .await?;
        if fx.lose_response {
            return Err(lost_response(c));
        }
        Ok(Response::new(CreateTransferOrderResponse { order: Some(o), replayed }))
    }

    async fn release_order(
        &self,
        req: Request<ReleaseOrderRequest>,
    ) -> Result<Response<ReleaseOrderResponse>, Status> {
        let c = call("replenishment", "ReleaseOrder");
        let fx = self.0.faults.before(c).await?;
        let req = req.into_inner();
        require(&req.order_id, "order_id")?;
        let release_ms = req.release_at.as_ref().map_or_else(now_ms, millis);
        let systems = self.0.clone();
        let o = blocking(move || {
            systems.write(|conn| {
                let o = get_order(conn, "order_id", &req.order_id).map_err(db)?.ok_or_else(|| {
                    Status::not_found(format!("order_id: unknown order {:?}", req.order_id))
                })?;
                match o.state() {
                    OrderState::Released => return Ok(o),
                    OrderState::Proposed => {}
                    other => {
                        return Err(Status::failed_precondition(format!(
                            "order {} is {}, not proposed",
                            o.order_id,
                            other.as_str_name()
                        )));
                    }
                }
                let eta = release_ms + TRANSFER_LEAD_MS;
                conn.execute(
                    "UPDATE transfer_orders SET state = ?2, eta_ms = ?3 WHERE order_id = ?1",
                    params![o.order_id, OrderState::Released as i32, eta],
                )
                .map_err(db)?;
                conn.execute(
                    "UPDATE store_transfer_lines SET release_s = ?2, eta_s = ?3 WHERE order_id = ?1",
                    params![o.order_id, release_ms.div_euclid(1000), eta.div_euclid(1000)],
                )
                .map_err(db)?;
                get_order(conn, "order_id", &o.order_id)
                    .map_err(db)?
                    .ok_or_else(|| Status::internal("lost write"))
            })
        })
        .await?;
        if fx.lose_response {
            return Err(lost_response(c));
        }
        Ok(Response::new(ReleaseOrderResponse { order: Some(o) }))
    }

    async fn cancel_order(
        &self,
        req: Request<CancelOrderRequest>,
    ) -> Result<Response<CancelOrderResponse>, Status> {
        let c = call("replenishment", "CancelOrder");
        let fx = self.0.faults.before(c).await?;
        let req = req.into_inner();
        let systems = self.0.clone();
        let o = blocking(move || {
            systems.write(|conn| {
                conn.execute(
                    "UPDATE transfer_orders SET state = ?2, cancel_reason = ?3 WHERE order_id = ?1",
                    params![req.order_id, OrderState::Cancelled as i32, req.reason],
                )
                .map_err(db)?;
                get_order(conn, "order_id", &req.order_id)
                    .map_err(db)?
                    .ok_or_else(|| Status::not_found(format!("unknown order {:?}", req.order_id)))
            })
        })
        .await?;
        if fx.lose_response {
            return Err(lost_response(c));
        }
        Ok(Response::new(CancelOrderResponse { order: Some(o) }))
    }

    async fn list_orders(
        &self,
        req: Request<ListOrdersRequest>,
    ) -> Result<Response<ListOrdersResponse>, Status> {
        self.0.faults.before(call("replenishment", "ListOrders")).await?;
        let promotion = req.into_inner().promotion_id;
        let systems = self.0.clone();
        let orders = blocking(move || {
            let conn = systems.reader().map_err(db)?;
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {ORDER_COLUMNS} FROM transfer_orders WHERE ?1 = '' OR promotion_id = ?1 ORDER BY created_ms, order_id"
                ))
                .map_err(db)?;
            let rows = stmt.query_map([promotion], order).map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })
        .await?;
        Ok(Response::new(ListOrdersResponse { orders }))
    }
}
