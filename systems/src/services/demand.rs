//! `retail.v1.DemandService`: baseline demand per store × SKU (streamed from
//! `store_positions.baseline`), the per-SKU promotion history and the promotion outcomes per
//! SKU × region × week that the uplift model learns from (both drawn from the dataset's world
//! when the file was generated).
//!
//! `StreamBaselineDemand` sends `stores_per_message` stores to a message (64 by default), the
//! SKU dictionary in the first. `StreamPromotionOutcomes` sends `outcomes_per_message` outcomes
//! to a message (4,096 by default), each message naming the history version, and answers with
//! one empty message when the caller already holds that version. A fault breaks the first store
//! with baselines; on the outcomes stream every mode names an unknown SKU in the first outcome,
//! the one way an outcome can break.

use super::{
    Batches, Handler, Selection, Stop, Stream, StreamItem, batched_stream, blocking, call, db,
    malform_columns, ts,
};
use crate::{Systems, faults::Malformed};
use promo_contracts::retail::v1::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

#[tonic::async_trait]
impl demand_service_server::DemandService for Handler {
    type StreamBaselineDemandStream = Stream<StreamBaselineDemandResponse>;

    async fn stream_baseline_demand(
        &self,
        req: Request<StreamBaselineDemandRequest>,
    ) -> Result<Response<Self::StreamBaselineDemandStream>, Status> {
        let fx = self.0.faults.before(call("demand", "StreamBaselineDemand")).await?;
        let req = req.into_inner();
        let mut sel = self.select(&req.skus, &req.region_ids, &req.store_ids, false)?;
        let per_message = if req.stores_per_message == 0 { 64 } else { req.stores_per_message as usize };
        let skus = sel.dictionary.len();
        let mut dictionary = Some(std::mem::take(&mut sel.dictionary));
        let history_days = self.0.master().history_days;
        let systems = self.0.clone();
        Ok(batched_stream(
            per_message,
            fx.malformed,
            move |stores| StreamBaselineDemandResponse {
                sku_dictionary: dictionary.take().unwrap_or_default(),
                stores,
                history_days,
            },
            move |out| stream_demand(&systems, &sel, skus, out),
        ))
    }

    async fn get_promotion_history(
        &self,
        req: Request<GetPromotionHistoryRequest>,
    ) -> Result<Response<GetPromotionHistoryResponse>, Status> {
        let fx = self.0.faults.before(call("demand", "GetPromotionHistory")).await?;
        let skus = req.into_inner().skus;
        self.select(&skus, &[], &[], false)?; // validates SKUs
        let systems = self.0.clone();
        let mut history = blocking(move || {
            let conn = systems.reader().map_err(db)?;
            let mut stmt = conn
                .prepare_cached(
                    "SELECT sku, promotion_id, discount_depth, realised_uplift, duration_days
                     FROM promo_history WHERE sku = ?1 ORDER BY promotion_id",
                )
                .map_err(db)?;
            let mut out = Vec::new();
            for sku in &skus {
                let rows = stmt
                    .query_map([sku], |r| {
                        Ok(PastPromotion {
                            sku: r.get(0)?,
                            promotion_id: r.get(1)?,
                            discount_depth: r.get(2)?,
                            realised_uplift: r.get(3)?,
                            duration_days: r.get(4)?,
                        })
                    })
                    .map_err(db)?;
                for r in rows {
                    out.push(r.map_err(db)?);
                }
            }
            Ok(out)
        })
        .await?;
        if let (Some(Malformed::UnknownId), Some(h)) = (fx.malformed, history.first_mut()) {
            h.sku = Malformed::unknown(&h.sku);
        }
        Ok(Response::new(GetPromotionHistoryResponse { history }))
    }

    type StreamPromotionOutcomesStream = Stream<StreamPromotionOutcomesResponse>;

    async fn stream_promotion_outcomes(
        &self,
        req: Request<StreamPromotionOutcomesRequest>,
    ) -> Result<Response<Self::StreamPromotionOutcomesStream>, Status> {
        let fx = self.0.faults.before(call("demand", "StreamPromotionOutcomes")).await?;
        let req = req.into_inner();
        let per_message =
            if req.outcomes_per_message == 0 { 4096 } else { req.outcomes_per_message as usize };
        let since = req.since.map_or(i64::MIN, |t| t.seconds - self.0.anchor());
        let version = self.0.master().history_version.clone();
        if req.known_history_versions.contains(&version) {
            // The caller holds this history already: say so, without reading it.
            let not_modified = StreamPromotionOutcomesResponse { history_version: version, outcomes: vec![] };
            let (tx, rx) = mpsc::channel(1);
            tx.try_send(Ok(not_modified)).ok();
            return Ok(Response::new(ReceiverStream::new(rx)));
        }
        let systems = self.0.clone();
        Ok(batched_stream(
            per_message,
            fx.malformed,
            move |outcomes| StreamPromotionOutcomesResponse { history_version: version.clone(), outcomes },
            move |out| stream_outcomes(&systems, since, out),
        ))
    }
}

impl StreamItem for StoreDemand {
    fn malform(&mut self, mode: Malformed) -> bool {
        malform_columns(mode, self.sku_index.len(), &mut self.store_id, &mut self.daily_units)
    }
}

/// Reads the selected stores' daily baselines into `out`.
fn stream_demand(
    systems: &Systems,
    sel: &Selection,
    skus: usize,
    out: &mut Batches<'_, StoreDemand, StreamBaselineDemandResponse>,
) -> Result<(), Stop> {
    let m = systems.master();
    let conn = systems.reader().map_err(db)?;
    let mut stmt = conn
        .prepare_cached("SELECT sku_idx, baseline FROM store_positions WHERE store_idx = ?1 ORDER BY sku_idx")
        .map_err(db)?;
    for &s in &sel.stores {
        let store = &m.stores[s];
        let mut d = StoreDemand {
            store_id: store.store_id.clone(),
            region_id: m.regions[store.region_idx].region_id.clone(),
            sku_index: Vec::with_capacity(skus),
            daily_units: Vec::with_capacity(skus),
        };
        let mut rows = stmt.query([s as i64]).map_err(db)?;
        while let Some(row) = rows.next().map_err(db)? {
            let dict = sel.dict_of_sku[row.get::<_, i64>(0).map_err(db)? as usize];
            if dict != u32::MAX {
                d.sku_index.push(dict);
                d.daily_units.push(row.get::<_, f64>(1).map_err(db)? as f32);
            }
        }
        out.push(d)?;
    }
    Ok(())
}

impl StreamItem for PromotionOutcome {
    fn malform(&mut self, _: Malformed) -> bool {
        self.sku = Malformed::unknown(&self.sku);
        true
    }
}

/// Reads `promotion_outcomes` from week offset `since` (seconds from the anchor), oldest first,
/// into `out`.
fn stream_outcomes(
    systems: &Systems,
    since: i64,
    out: &mut Batches<'_, PromotionOutcome, StreamPromotionOutcomesResponse>,
) -> Result<(), Stop> {
    let m = systems.master();
    let anchor = systems.anchor();
    let conn = systems.reader().map_err(db)?;
    let mut stmt = conn
        .prepare(
            "SELECT promotion_id, sku_idx, region_idx, week_offset, mechanic, discount_depth, store_weeks,
             baseline_units, units_sold, stockout_store_weeks, in_stock_baseline_units, in_stock_units_sold,
             in_stock_units_squared, in_stock_baseline_squared
             FROM promotion_outcomes WHERE week_offset >= ?1
             ORDER BY week_offset, promotion_id, sku_idx, region_idx",
        )
        .map_err(db)?;
    let mut rows = stmt.query([since]).map_err(db)?;
    while let Some(r) = rows.next().map_err(db)? {
        let sku_idx = r.get::<_, i64>(1).map_err(db)? as usize;
        let region_idx = r.get::<_, i64>(2).map_err(db)? as usize;
        out.push(PromotionOutcome {
            promotion_id: r.get(0).map_err(db)?,
            sku: m.products[sku_idx].sku.clone(),
            category: m.products[sku_idx].category.clone(),
            region_id: m.regions[region_idx].region_id.clone(),
            week_start: ts(anchor + r.get::<_, i64>(3).map_err(db)?),
            mechanic: r.get(4).map_err(db)?,
            discount_depth: r.get(5).map_err(db)?,
            store_weeks: r.get(6).map_err(db)?,
            baseline_units: r.get(7).map_err(db)?,
            units_sold: r.get(8).map_err(db)?,
            stockout_store_weeks: r.get(9).map_err(db)?,
            in_stock_baseline_units: r.get(10).map_err(db)?,
            in_stock_units_sold: r.get(11).map_err(db)?,
            in_stock_units_squared: r.get(12).map_err(db)?,
            in_stock_baseline_squared: r.get(13).map_err(db)?,
        })?;
    }
    Ok(())
}
