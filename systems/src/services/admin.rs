//! `retail.v1.AdminService`: what tests and the demo use to look at the dataset and to change
//! the world after the fact — fault rules (`crate::faults`), agreement status and caps, drained
//! stock, prices that drift on a channel, acknowledgments taken back.
//!
//! Admin calls are not subject to fault rules themselves. `DriftPrices` and
//! `WithdrawAcknowledgment` first record the acknowledgments that have come due on the target,
//! so that what they change is what a reader would see at that moment.

use super::{Handler, blocking, db, field, publication::get_publication, require};
use crate::now_ms;
use promo_contracts::{money::parse_decimal, retail::v1::*};
use rusqlite::{Connection, OptionalExtension, params};
use tonic::{Request, Response, Status};

#[tonic::async_trait]
impl admin_service_server::AdminService for Handler {
    async fn get_dataset_info(
        &self,
        _: Request<GetDatasetInfoRequest>,
    ) -> Result<Response<GetDatasetInfoResponse>, Status> {
        let systems = self.0.clone();
        let (store_positions, dc_positions, agreements) = blocking(move || {
            let conn = systems.reader().map_err(db)?;
            let count = |t: &str| {
                conn.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get::<_, i64>(0)).map_err(db)
            };
            Ok((count("store_positions")?, count("dc_positions")?, count("agreements")?))
        })
        .await?;
        let m = self.0.master();
        let mut built_in_failures = Vec::new();
        if !m.short_region.is_empty() {
            built_in_failures.push(format!(
                "{}: allocation incomplete for {} of {} SKUs — stores hold days of cover; inbound stock arrives 4–6 days after the anchor",
                m.short_region,
                m.short_skus,
                m.products.len()
            ));
        }
        if !m.late_ack_region.is_empty() {
            built_in_failures.push(format!("{}: POS acknowledgments arrive late", m.late_ack_region));
        }
        if !m.invalid_agreements.is_empty() {
            built_in_failures.push(format!(
                "funding agreements {} are not valid (unsigned or expired)",
                m.invalid_agreements.join(", ")
            ));
        }
        Ok(Response::new(GetDatasetInfoResponse {
            seed: m.seed,
            regions: m.regions.len() as u32,
            stores: m.stores.len() as u32,
            dcs: m.dcs.len() as u32,
            skus: m.products.len() as u32,
            store_positions: store_positions as u64,
            dc_positions: dc_positions as u64,
            agreements: agreements as u32,
            built_in_failures,
            short_region_id: m.short_region.clone(),
            short_skus: m.short_skus,
            late_ack_region_id: m.late_ack_region.clone(),
            invalid_agreement_ids: m.invalid_agreements.clone(),
            name: m.name.clone(),
        }))
    }

    async fn inject_fault(
        &self,
        req: Request<InjectFaultRequest>,
    ) -> Result<Response<InjectFaultResponse>, Status> {
        let fault = req.into_inner().fault.ok_or_else(|| Status::invalid_argument("fault: is required"))?;
        Ok(Response::new(InjectFaultResponse { fault_id: self.0.faults.inject(fault)? }))
    }

    async fn clear_faults(
        &self,
        _: Request<ClearFaultsRequest>,
    ) -> Result<Response<ClearFaultsResponse>, Status> {
        Ok(Response::new(ClearFaultsResponse { removed: self.0.faults.clear() }))
    }

    async fn list_faults(
        &self,
        _: Request<ListFaultsRequest>,
    ) -> Result<Response<ListFaultsResponse>, Status> {
        Ok(Response::new(ListFaultsResponse { faults: self.0.faults.list() }))
    }

    async fn set_agreement_status(
        &self,
        req: Request<SetAgreementStatusRequest>,
    ) -> Result<Response<SetAgreementStatusResponse>, Status> {
        let req = req.into_inner();
        let cap = if req.cap_amount.is_empty() {
            None
        } else {
            Some(parse_decimal("cap_amount", &req.cap_amount, 2).map_err(field)?.to_string())
        };
        let valid_to = req.valid_to.as_ref().map(|t| t.seconds - self.0.anchor());
        let systems = self.0.clone();
        let previous = blocking(move || {
            systems.write(|conn| {
                let tx = conn.transaction().map_err(db)?;
                let previous: Option<i32> = tx
                    .query_row(
                        "SELECT status FROM agreements WHERE agreement_id = ?1",
                        [&req.agreement_id],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(db)?;
                let Some(previous) = previous else {
                    return Err(Status::not_found(format!(
                        "agreement_id: unknown agreement {:?}",
                        req.agreement_id
                    )));
                };
                tx.execute(
                    "UPDATE agreements SET status = CASE WHEN ?2 = 0 THEN status ELSE ?2 END,
                     valid_to = coalesce(?3, valid_to), cap_amount = coalesce(?4, cap_amount)
                     WHERE agreement_id = ?1",
                    params![req.agreement_id, req.status, valid_to, cap],
                )
                .map_err(db)?;
                tx.commit().map_err(db)?;
                Ok(previous)
            })
        })
        .await?;
        Ok(Response::new(SetAgreementStatusResponse { previous }))
    }

    async fn drain_stock(
        &self,
        req: Request<DrainStockRequest>,
    ) -> Result<Response<DrainStockResponse>, Status> {
        let req = req.into_inner();
        let m = self.0.master();
        let Some(&region) = m.region_index.get(&req.region_id) else {
            return Err(Status::not_found(format!("region_id: unknown region {:?}", req.region_id)));
        };
        let stores: Vec<usize> =
            m.stores.iter().enumerate().filter(|(_, s)| s.region_idx == region).map(|(i, _)| i).collect();
        let mut skus = Vec::with_capacity(req.skus.len());
        for (i, sku) in req.skus.iter().enumerate() {
            let idx = m.sku_index.get(sku).copied();
            skus.push(idx.ok_or_else(|| Status::not_found(format!("skus[{i}]: unknown SKU {sku:?}")))?);
        }
        let systems = self.0.clone();
        let positions = blocking(move || {
            systems.write(|conn| {
                let tx = conn.transaction().map_err(db)?;
                let mut n = 0;
                {
                    let mut by_store = tx
                        .prepare(
                            "UPDATE store_positions SET on_hand = 0, in_transit = 0, confirmed = 0
                             WHERE store_idx = ?1",
                        )
                        .map_err(db)?;
                    let mut by_cell = tx
                        .prepare(
                            "UPDATE store_positions SET on_hand = 0, in_transit = 0, confirmed = 0
                             WHERE store_idx = ?1 AND sku_idx = ?2",
                        )
                        .map_err(db)?;
                    for &store in &stores {
                        if skus.is_empty() {
                            n += by_store.execute([store as i64]).map_err(db)?;
                        }
                        for &sku in &skus {
                            n += by_cell.execute([store as i64, sku as i64]).map_err(db)?;
                        }
                    }
                }
                tx.commit().map_err(db)?;
                Ok(n as u64)
            })
        })
        .await?;
        Ok(Response::new(DrainStockResponse { positions }))
    }

    async fn drift_prices(
        &self,
        req: Request<DriftPricesRequest>,
    ) -> Result<Response<DriftPricesResponse>, Status> {
        let req = req.into_inner();
        if req.drift() == Drift::Unspecified {
            return Err(Status::invalid_argument("drift: is required"));
        }
        require(&req.promotion_id, "promotion_id")?;
        let systems = self.0.clone();
        let skus = blocking(move || {
            systems.write(|conn| {
                let (channel, region) = (req.channel, req.region_id.clone());
                let pending: Vec<String> = conn
                    .prepare("SELECT publication_id FROM publications WHERE channel = ?1 AND region_id = ?2 AND state = ?3")
                    .and_then(|mut st| {
                        st.query_map(params![channel, region, PublicationState::PendingAck as i32], |r| r.get(0))?
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .map_err(db)?;
                for id in &pending {
                    get_publication(conn, &systems.faults, "publication_id", id).map_err(db)?;
                }
                let live: Option<(String, i64)> = conn
                    .query_row(
                        "SELECT price_change_id, acknowledged_ms FROM publications
                         WHERE promotion_id = ?1 AND channel = ?2 AND region_id = ?3 AND kind = ?4 AND state = ?5
                         ORDER BY acknowledged_ms DESC LIMIT 1",
                        params![req.promotion_id, channel, region, PublicationKind::Activate as i32, PublicationState::Acknowledged as i32],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                    .map_err(db)?;
                let Some((price_change_id, acked_ms)) = live else {
                    return Err(Status::failed_precondition(format!(
                        "promotion_id: {:?} has no acknowledged activation on channel {} {:?}",
                        req.promotion_id, channel, region
                    )));
                };
                let mut lines: Vec<(String, String)> = conn
                    .prepare(
                        "SELECT sku, promo_price FROM price_lines WHERE price_change_id = ?1
                         AND (region_ids = '' OR (',' || region_ids || ',') LIKE ('%,' || ?2 || ',%')) ORDER BY sku",
                    )
                    .and_then(|mut st| st.query_map(params![price_change_id, region], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
                    .map_err(db)?;
                if req.sku_count > 0 && req.drift() != Drift::EarlyRevert {
                    lines.truncate(req.sku_count as usize);
                }
                let m = systems.master();
                let since = now_ms().max(acked_ms + 1);
                let tx = conn.transaction().map_err(db)?;
                for (sku, promo) in &lines {
                    let regular = m.sku_index.get(sku).map(|&i| m.products[i].regular_price.clone()).unwrap_or_default();
                    let price = match req.drift() {
                        Drift::Wrong => {
                            let p = parse_decimal("promo_price", promo, 4).map_err(field)?;
                            (p * rust_decimal::Decimal::new(110, 2)).round_dp(2).to_string()
                        }
                        _ => regular,
                    };
                    tx.execute(
                        "INSERT OR REPLACE INTO channel_drift(channel, region_id, sku, price, since_ms) VALUES (?1,?2,?3,?4,?5)",
                        params![channel, region, sku, price, since],
                    )
                    .map_err(db)?;
                }
                tx.commit().map_err(db)?;
                Ok(lines.into_iter().map(|(sku, _)| sku).collect())
            })
        })
        .await?;
        Ok(Response::new(DriftPricesResponse { skus }))
    }

    async fn withdraw_acknowledgment(
        &self,
        req: Request<WithdrawAcknowledgmentRequest>,
    ) -> Result<Response<WithdrawAcknowledgmentResponse>, Status> {
        let req = req.into_inner();
        require(&req.promotion_id, "promotion_id")?;
        let systems = self.0.clone();
        let publication_ids = blocking(move || {
            systems.write(|conn| {
                let (channel, region) = (req.channel, req.region_id.clone());
                // Settle what has come due first: an acknowledgment can only be taken back once given.
                let mine = "SELECT publication_id FROM publications
                     WHERE promotion_id = ?1 AND channel = ?2 AND region_id = ?3 AND kind = ?4 AND state = ?5";
                let ids = |conn: &Connection, state: PublicationState| -> rusqlite::Result<Vec<String>> {
                    conn.prepare(mine)?
                        .query_map(
                            params![req.promotion_id, channel, region, PublicationKind::Activate as i32, state as i32],
                            |r| r.get(0),
                        )?
                        .collect()
                };
                for id in ids(conn, PublicationState::PendingAck).map_err(db)? {
                    get_publication(conn, &systems.faults, "publication_id", &id).map_err(db)?;
                }
                let acked = ids(conn, PublicationState::Acknowledged).map_err(db)?;
                if acked.is_empty() {
                    return Err(Status::failed_precondition(format!(
                        "promotion_id: {:?} has no acknowledged activation on channel {} {:?}",
                        req.promotion_id, channel, region
                    )));
                }
                for id in &acked {
                    conn.execute(
                        "UPDATE publications SET state = ?2 WHERE publication_id = ?1 AND state = ?3",
                        params![id, PublicationState::AckWithdrawn as i32, PublicationState::Acknowledged as i32],
                    )
                    .map_err(db)?;
                }
                Ok(acked)
            })
        })
        .await?;
        Ok(Response::new(WithdrawAcknowledgmentResponse { publication_ids }))
    }
}
