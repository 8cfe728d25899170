//! `retail.v1.PriceService`: the ERP's promotional price changes, staged idempotently by key
//! (with their lines in `price_lines`), reverted, and listed.
//!
//! A price change's effective window is kept as Unix seconds as given; a line may narrow the
//! change to some of its regions. Staging the same key for another promotion or revision is
//! refused; reverting applies to a staged change only, and answers its current state otherwise.

use super::{Handler, blocking, call, db, field, require, seconds, ts, ts_ms};
use crate::{faults::lost_response, next_id, now_ms};
use promo_contracts::{money::parse_price, retail::v1::*};
use rusqlite::{Connection, OptionalExtension, Row, params};
use tonic::{Request, Response, Status};

/// A `price_changes` row as the wire carries it, without its lines.
fn price_change(r: &Row<'_>) -> rusqlite::Result<PriceChange> {
    let regions: String = r.get(4)?;
    Ok(PriceChange {
        price_change_id: r.get(0)?,
        idempotency_key: r.get(1)?,
        promotion_id: r.get(2)?,
        revision: r.get(3)?,
        region_ids: regions.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        effective_from: ts(r.get(5)?),
        effective_to: ts(r.get(6)?),
        line_count: r.get(7)?,
        state: r.get(8)?,
        created_at: ts_ms(r.get(9)?),
        reverted_at: ts_ms(r.get(10)?),
        lines: Vec::new(),
    })
}

/// The columns of `price_changes` that [`price_change`] reads, in its order.
const PRICE_CHANGE_COLUMNS: &str = "price_change_id, idempotency_key, promotion_id, revision, region_ids, \
     effective_from, effective_to, line_count, state, created_ms, reverted_ms";

/// The price change whose `key_column` is `key`, if any, without its lines.
fn get_price_change(conn: &Connection, key_column: &str, key: &str) -> rusqlite::Result<Option<PriceChange>> {
    conn.query_row(
        &format!("SELECT {PRICE_CHANGE_COLUMNS} FROM price_changes WHERE {key_column} = ?1"),
        [key],
        price_change,
    )
    .optional()
}

#[tonic::async_trait]
impl price_service_server::PriceService for Handler {
    async fn stage_price_change(
        &self,
        req: Request<StagePriceChangeRequest>,
    ) -> Result<Response<StagePriceChangeResponse>, Status> {
        let c = call("price", "StagePriceChange");
        let fx = self.0.faults.before(c).await?;
        let req = req.into_inner();
        require(&req.idempotency_key, "idempotency_key")?;
        require(&req.promotion_id, "promotion_id")?;
        let (from, to) =
            (seconds(&req.effective_from, "effective_from")?, seconds(&req.effective_to, "effective_to")?);
        if to <= from {
            return Err(Status::invalid_argument("effective_to: must be after effective_from"));
        }
        let m = self.0.master();
        let unknown: Vec<&str> =
            req.lines.iter().map(|l| l.sku.as_str()).filter(|s| !m.sku_index.contains_key(*s)).collect();
        if !unknown.is_empty() {
            return Err(Status::not_found(format!("unknown SKUs: {}", unknown.join(", "))));
        }
        for (i, l) in req.lines.iter().enumerate() {
            parse_price(&format!("lines[{i}].promo_price"), &l.promo_price).map_err(field)?;
        }
        let unknown: Vec<&str> =
            req.region_ids.iter().map(String::as_str).filter(|r| !m.region_index.contains_key(*r)).collect();
        if !unknown.is_empty() {
            return Err(Status::not_found(format!("unknown regions: {}", unknown.join(", "))));
        }
        for (i, l) in req.lines.iter().enumerate() {
            if let Some(r) = l.region_ids.iter().find(|r| !req.region_ids.contains(r)) {
                return Err(Status::invalid_argument(format!(
                    "lines[{i}].region_ids: {r:?} is not one of the price change's regions"
                )));
            }
        }
        let systems = self.0.clone();
        let (pc, replayed) = blocking(move || {
            systems.write(|conn| {
                if let Some(existing) = get_price_change(conn, "idempotency_key", &req.idempotency_key).map_err(db)? {
                    if existing.promotion_id != req.promotion_id || existing.revision != req.revision {
                        return Err(Status::failed_precondition(format!(
                            "idempotency_key {:?} was used for {} revision {}",
                            req.idempotency_key, existing.promotion_id, existing.revision
                        )));
                    }
                    return Ok((existing, true));
                }
                let tx = conn.transaction().map_err(db)?;
                let id = next_id(&tx, "price_changes", "PC").map_err(db)?;
                tx.execute(
                    "INSERT INTO price_changes(price_change_id, idempotency_key, promotion_id, revision, region_ids,
                     effective_from, effective_to, line_count, state, created_ms) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)",
                    params![
                        id,
                        req.idempotency_key,
                        req.promotion_id,
                        req.revision,
                        req.region_ids.join(","),
                        from,
                        to,
                        req.lines.len() as i64,
                        PriceChangeState::Staged as i32,
                        now_ms()
                    ],
                )
                .map_err(db)?;
                {
                    let mut ins = tx
                        .prepare_cached("INSERT OR REPLACE INTO price_lines(price_change_id, sku, promo_price, region_ids) VALUES (?1,?2,?3,?4)")
                        .map_err(db)?;
                    for l in &req.lines {
                        ins.execute(params![id, l.sku, l.promo_price, l.region_ids.join(",")]).map_err(db)?;
                    }
                }
                tx.commit().map_err(db)?;
                let pc = get_price_change(conn, "price_change_id", &id).map_err(db)?.ok_or_else(|| Status::internal("lost write"))?;
                Ok((pc, false))
            })
        })
        .await?;
        if fx.lose_response {
            return Err(lost_response(c));
        }
        Ok(Response::new(StagePriceChangeResponse { price_change: Some(pc), replayed }))
    }

    async fn revert_price_change(
        &self,
        req: Request<RevertPriceChangeRequest>,
    ) -> Result<Response<RevertPriceChangeResponse>, Status> {
        let c = call("price", "RevertPriceChange");
        let fx = self.0.faults.before(c).await?;
        let req = req.into_inner();
        let systems = self.0.clone();
        let pc = blocking(move || {
            systems.write(|conn| {
                conn.execute(
                    "UPDATE price_changes SET state = ?2, reverted_ms = ?3, revert_reason = ?4
                     WHERE price_change_id = ?1 AND state = ?5",
                    params![
                        req.price_change_id,
                        PriceChangeState::Reverted as i32,
                        now_ms(),
                        req.reason,
                        PriceChangeState::Staged as i32
                    ],
                )
                .map_err(db)?;
                get_price_change(conn, "price_change_id", &req.price_change_id).map_err(db)?.ok_or_else(
                    || Status::not_found(format!("unknown price change {:?}", req.price_change_id)),
                )
            })
        })
        .await?;
        if fx.lose_response {
            return Err(lost_response(c));
        }
        Ok(Response::new(RevertPriceChangeResponse { price_change: Some(pc) }))
    }

    async fn list_price_changes(
        &self,
        req: Request<ListPriceChangesRequest>,
    ) -> Result<Response<ListPriceChangesResponse>, Status> {
        self.0.faults.before(call("price", "ListPriceChanges")).await?;
        let ListPriceChangesRequest { promotion_id: promotion, include_lines } = req.into_inner();
        let systems = self.0.clone();
        let price_changes = blocking(move || {
            let conn = systems.reader().map_err(db)?;
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {PRICE_CHANGE_COLUMNS} FROM price_changes WHERE ?1 = '' OR promotion_id = ?1 ORDER BY created_ms, price_change_id"
                ))
                .map_err(db)?;
            let rows = stmt.query_map([promotion], price_change).map_err(db)?;
            let mut out = rows.collect::<Result<Vec<_>, _>>().map_err(db)?;
            if include_lines {
                let mut lines = conn
                    .prepare("SELECT sku, promo_price, region_ids FROM price_lines WHERE price_change_id = ?1 ORDER BY sku")
                    .map_err(db)?;
                for pc in &mut out {
                    pc.lines = lines
                        .query_map([&pc.price_change_id], |r| {
                            let regions: String = r.get(2)?;
                            Ok(PriceLine {
                                sku: r.get(0)?,
                                promo_price: r.get(1)?,
                                region_ids: regions.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
                            })
                        })
                        .map_err(db)?
                        .collect::<Result<_, _>>()
                        .map_err(db)?;
                }
            }
            Ok(out)
        })
        .await?;
        Ok(Response::new(ListPriceChangesResponse { price_changes }))
    }
}
