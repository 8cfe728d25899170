//! The gRPC services. One handler type, [`Handler`], implements every contract over the shared
//! [`Systems`]; SQLite work runs on the blocking pool.

use crate::{
    Systems,
    faults::{Call, Faults, Malformed, lost_response},
    next_id, now_ms, sales,
};
use pbjson_types::Timestamp;
use promo_contracts::{
    money::{FieldError, parse_decimal, parse_price},
    retail::v1::*,
};
use rusqlite::{Connection, OptionalExtension, Row, params};
use rust_decimal::prelude::ToPrimitive;
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, transport::server::Router};

/// Serves every contract from one [`Systems`].
#[derive(Debug, Clone)]
pub struct Handler(pub Arc<Systems>);

/// A router with every service mounted.
pub fn router(
    systems: Arc<Systems>,
    tls: Option<&crate::ServerTls>,
) -> Result<Router, tonic::transport::Error> {
    let h = Handler(systems);
    let mut server = tonic::transport::Server::builder();
    if let Some(t) = tls {
        let mut config = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(&t.cert_pem, &t.key_pem));
        if let Some(ca) = &t.client_ca_pem {
            config = config.client_ca_root(tonic::transport::Certificate::from_pem(ca));
        }
        server = server.tls_config(config)?;
    }
    Ok(server
        .add_service(location_service_server::LocationServiceServer::new(h.clone()))
        .add_service(product_service_server::ProductServiceServer::new(h.clone()))
        .add_service(inventory_service_server::InventoryServiceServer::new(h.clone()))
        .add_service(demand_service_server::DemandServiceServer::new(h.clone()))
        .add_service(funding_service_server::FundingServiceServer::new(h.clone()))
        .add_service(price_service_server::PriceServiceServer::new(h.clone()))
        // A replenishment order can address tens of thousands of store × SKU cells.
        .add_service(
            replenishment_service_server::ReplenishmentServiceServer::new(h.clone())
                .max_decoding_message_size(64 << 20),
        )
        .add_service(publication_service_server::PublicationServiceServer::new(h.clone()))
        .add_service(sales_service_server::SalesServiceServer::new(h.clone()))
        .add_service(process_event_service_server::ProcessEventServiceServer::new(h.clone()))
        .add_service(calendar_service_server::CalendarServiceServer::new(h.clone()))
        .add_service(admin_service_server::AdminServiceServer::new(h)))
}

pub(crate) fn db(e: rusqlite::Error) -> Status {
    Status::internal(format!("reference store: sqlite error: {e}"))
}

fn field(e: FieldError) -> Status {
    Status::invalid_argument(e.to_string())
}

fn ts(unix_seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds: unix_seconds, nanos: 0 })
}

fn ts_ms(ms: Option<i64>) -> Option<Timestamp> {
    ms.map(|ms| Timestamp { seconds: ms.div_euclid(1000), nanos: (ms.rem_euclid(1000) * 1_000_000) as i32 })
}

pub(crate) fn call<'a>(service: &'a str, method: &'a str) -> Call<'a> {
    Call { service, method, channel: 0, region_id: "" }
}

/// Runs blocking SQLite work off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("worker thread failed: {e}")))?
}

/// A server stream fed by blocking SQLite work off the async runtime: `produce` sends messages
/// into a bounded channel (back-pressure from the client), and an error it returns ends the stream.
fn blocking_stream<T: Send + 'static>(
    produce: impl FnOnce(&mpsc::Sender<Result<T, Status>>) -> Result<(), Status> + Send + 'static,
) -> Response<Stream<T>> {
    let (tx, rx) = mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = produce(&tx) {
            let _ = tx.blocking_send(Err(e));
        }
    });
    Response::new(ReceiverStream::new(rx))
}

/// A stream of exactly `item`.
fn one<T>(item: T) -> mpsc::Receiver<T> {
    let (tx, rx) = mpsc::channel(1);
    tx.try_send(item).ok();
    rx
}

/// Which stores and SKUs a streaming read covers.
struct Selection {
    stores: Vec<usize>,
    dcs: Vec<usize>,
    /// Product index → position in the dictionary, or u32::MAX when not selected.
    dict_of_sku: Vec<u32>,
    dictionary: Vec<String>,
}

impl Handler {
    fn select(
        &self,
        skus: &[String],
        region_ids: &[String],
        store_ids: &[String],
        include_dcs: bool,
    ) -> Result<Selection, Status> {
        let m = self.0.master();
        let mut dict_of_sku = vec![u32::MAX; m.products.len()];
        let dictionary: Vec<String> = if skus.is_empty() {
            m.products.iter().map(|p| p.sku.clone()).collect()
        } else {
            let unknown: Vec<&str> =
                skus.iter().filter(|s| !m.sku_index.contains_key(*s)).map(String::as_str).collect();
            if !unknown.is_empty() {
                return Err(Status::not_found(format!("unknown SKUs: {}", unknown.join(", "))));
            }
            let mut seen = HashSet::new();
            skus.iter().filter(|s| seen.insert(s.as_str())).cloned().collect()
        };
        for (i, sku) in dictionary.iter().enumerate() {
            dict_of_sku[m.sku_index[sku]] = i as u32;
        }
        let unknown: Vec<&str> =
            region_ids.iter().filter(|r| !m.region_index.contains_key(*r)).map(String::as_str).collect();
        if !unknown.is_empty() {
            return Err(Status::not_found(format!("unknown regions: {}", unknown.join(", "))));
        }
        let unknown: Vec<&str> =
            store_ids.iter().filter(|s| !m.store_index.contains_key(*s)).map(String::as_str).collect();
        if !unknown.is_empty() {
            return Err(Status::not_found(format!("unknown stores: {}", unknown.join(", "))));
        }
        let regions: HashSet<usize> = region_ids.iter().map(|r| m.region_index[r]).collect();
        let explicit: HashSet<usize> = store_ids.iter().map(|s| m.store_index[s]).collect();
        let all = regions.is_empty() && explicit.is_empty();
        let stores: Vec<usize> = (0..m.stores.len())
            .filter(|&i| all || regions.contains(&m.stores[i].region_idx) || explicit.contains(&i))
            .collect();
        let dcs = if include_dcs {
            let mut dcs: Vec<usize> =
                stores.iter().map(|&s| m.regions[m.stores[s].region_idx].dc_idx).collect();
            dcs.sort_unstable();
            dcs.dedup();
            dcs
        } else {
            Vec::new()
        };
        Ok(Selection { stores, dcs, dict_of_sku, dictionary })
    }
}

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

fn product(p: &crate::ProductRow) -> Product {
    Product {
        sku: p.sku.clone(),
        name: p.name.clone(),
        category: p.category.clone(),
        supplier_id: p.supplier_id.clone(),
        cost: p.cost.clone(),
        regular_price: p.regular_price.clone(),
        price_band: p.price_band,
        eligible_channels: (1..=4).filter(|c| p.channels & crate::dataset::channel_bit(*c) != 0).collect(),
    }
}

#[tonic::async_trait]
impl product_service_server::ProductService for Handler {
    async fn get_products(
        &self,
        req: Request<GetProductsRequest>,
    ) -> Result<Response<GetProductsResponse>, Status> {
        let fx = self.0.faults.before(call("product", "GetProducts")).await?;
        let req = req.into_inner();
        if req.skus.len() > 10_000 {
            return Err(Status::invalid_argument(format!(
                "skus: {} requested; at most 10000 per call",
                req.skus.len()
            )));
        }
        let m = self.0.master();
        let unknown: Vec<&str> =
            req.skus.iter().filter(|s| !m.sku_index.contains_key(*s)).map(String::as_str).collect();
        if !unknown.is_empty() {
            return Err(Status::not_found(format!("unknown SKUs: {}", unknown.join(", "))));
        }
        let mut products: Vec<Product> =
            req.skus.iter().map(|s| product(&m.products[m.sku_index[s]])).collect();
        if let (Some(Malformed::UnknownId), Some(p)) = (fx.malformed, products.first_mut()) {
            p.sku = Malformed::unknown(&p.sku);
        }
        Ok(Response::new(GetProductsResponse { products }))
    }

    async fn list_comparable_products(
        &self,
        req: Request<ListComparableProductsRequest>,
    ) -> Result<Response<ListComparableProductsResponse>, Status> {
        self.0.faults.before(call("product", "ListComparableProducts")).await?;
        let sku = req.into_inner().sku;
        let m = self.0.master();
        let Some(&i) = m.sku_index.get(&sku) else {
            return Err(Status::not_found(format!("unknown SKUs: {sku}")));
        };
        let me = &m.products[i];
        Ok(Response::new(ListComparableProductsResponse {
            products: m
                .products
                .iter()
                .filter(|p| p.sku != me.sku && p.category == me.category && p.price_band == me.price_band)
                .map(product)
                .collect(),
        }))
    }
}

type Stream<T> = ReceiverStream<Result<T, Status>>;

#[tonic::async_trait]
impl inventory_service_server::InventoryService for Handler {
    type StreamPositionsStream = Stream<StreamPositionsResponse>;

    async fn stream_positions(
        &self,
        req: Request<StreamPositionsRequest>,
    ) -> Result<Response<Self::StreamPositionsStream>, Status> {
        let fx = self.0.faults.before(call("inventory", "StreamPositions")).await?;
        let req = req.into_inner();
        let sel = self.select(&req.skus, &req.region_ids, &req.store_ids, req.include_dcs)?;
        let per_message =
            if req.locations_per_message == 0 { 64 } else { req.locations_per_message as usize };
        let systems = self.0.clone();
        Ok(blocking_stream(move |tx| stream_positions(&systems, sel, per_message, fx.malformed, tx)))
    }
}

fn read_positions(
    row: &Row<'_>,
    loc: &mut LocationPositions,
    dict: u32,
    anchor: i64,
) -> rusqlite::Result<()> {
    let eta = |offset: i64, units: i64| if units > 0 { anchor + offset } else { 0 };
    loc.sku_index.push(dict);
    loc.on_hand.push(row.get(1)?);
    let (it, ite): (i64, i64) = (row.get(2)?, row.get(3)?);
    loc.in_transit.push(it);
    loc.in_transit_eta.push(eta(ite, it));
    let (c, ce): (i64, i64) = (row.get(4)?, row.get(5)?);
    loc.supplier_confirmed.push(c);
    loc.supplier_confirmed_eta.push(eta(ce, c));
    Ok(())
}

/// Breaks `loc` the way `mode` says (see `Fault.malformed`); false when it cannot because the
/// location holds no positions (the next one is tried).
fn malform_positions(loc: &mut LocationPositions, mode: Malformed) -> bool {
    if loc.sku_index.is_empty() {
        return false;
    }
    match mode {
        Malformed::LengthMismatch => {
            loc.on_hand.pop();
        }
        Malformed::UnknownId => loc.location_id = Malformed::unknown(&loc.location_id),
        Malformed::NegativeStock => loc.on_hand[0] = -loc.on_hand[0] - 1,
    }
    true
}

fn stream_positions(
    systems: &Systems,
    sel: Selection,
    per_message: usize,
    mut malformed: Option<Malformed>,
    tx: &mpsc::Sender<Result<StreamPositionsResponse, Status>>,
) -> Result<(), Status> {
    let m = systems.master();
    let anchor = systems.anchor();
    let conn = systems.reader().map_err(db)?;
    let mut dictionary = Some(sel.dictionary);
    let mut batch: Vec<LocationPositions> = Vec::with_capacity(per_message);
    let cap = dictionary.as_ref().map_or(0, Vec::len);
    let mut flush = |batch: &mut Vec<LocationPositions>, last: bool| -> bool {
        if batch.is_empty() && !(last && dictionary.is_some()) {
            return true;
        }
        let msg = StreamPositionsResponse {
            sku_dictionary: dictionary.take().unwrap_or_default(),
            locations: std::mem::take(batch),
        };
        tx.blocking_send(Ok(msg)).is_ok()
    };
    let mut stmt = conn
        .prepare_cached(
            "SELECT sku_idx, on_hand, in_transit, in_transit_eta, confirmed, confirmed_eta
             FROM store_positions WHERE store_idx = ?1 ORDER BY sku_idx",
        )
        .map_err(db)?;
    for &s in &sel.stores {
        let store = &m.stores[s];
        let mut loc = LocationPositions {
            location_id: store.store_id.clone(),
            kind: LocationKind::Store as i32,
            region_id: m.regions[store.region_idx].region_id.clone(),
            ..with_capacity(cap)
        };
        let mut rows = stmt.query([s as i64]).map_err(db)?;
        while let Some(row) = rows.next().map_err(db)? {
            let dict = sel.dict_of_sku[row.get::<_, i64>(0).map_err(db)? as usize];
            if dict != u32::MAX {
                read_positions(row, &mut loc, dict, anchor).map_err(db)?;
            }
        }
        if malformed.is_some_and(|mode| malform_positions(&mut loc, mode)) {
            malformed = None;
        }
        batch.push(loc);
        if batch.len() >= per_message && !flush(&mut batch, false) {
            return Ok(()); // client went away
        }
    }
    let mut stmt = conn
        .prepare_cached(
            "SELECT sku_idx, on_hand, in_transit, in_transit_eta, confirmed, confirmed_eta
             FROM dc_positions WHERE dc_idx = ?1 ORDER BY sku_idx",
        )
        .map_err(db)?;
    for &d in &sel.dcs {
        let mut loc = LocationPositions {
            location_id: m.dcs[d].0.clone(),
            kind: LocationKind::Dc as i32,
            ..with_capacity(cap)
        };
        let mut rows = stmt.query([d as i64]).map_err(db)?;
        while let Some(row) = rows.next().map_err(db)? {
            let dict = sel.dict_of_sku[row.get::<_, i64>(0).map_err(db)? as usize];
            if dict != u32::MAX {
                read_positions(row, &mut loc, dict, anchor).map_err(db)?;
            }
        }
        if malformed.is_some_and(|mode| malform_positions(&mut loc, mode)) {
            malformed = None;
        }
        batch.push(loc);
    }
    flush(&mut batch, true);
    Ok(())
}

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

#[tonic::async_trait]
impl demand_service_server::DemandService for Handler {
    type StreamBaselineDemandStream = Stream<StreamBaselineDemandResponse>;

    async fn stream_baseline_demand(
        &self,
        req: Request<StreamBaselineDemandRequest>,
    ) -> Result<Response<Self::StreamBaselineDemandStream>, Status> {
        let fx = self.0.faults.before(call("demand", "StreamBaselineDemand")).await?;
        let req = req.into_inner();
        let sel = self.select(&req.skus, &req.region_ids, &req.store_ids, false)?;
        let per_message = if req.stores_per_message == 0 { 64 } else { req.stores_per_message as usize };
        let systems = self.0.clone();
        Ok(blocking_stream(move |tx| stream_demand(&systems, sel, per_message, fx.malformed, tx)))
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
            return Ok(Response::new(ReceiverStream::new(one(Ok(not_modified)))));
        }
        let systems = self.0.clone();
        Ok(blocking_stream(move |tx| stream_outcomes(&systems, since, per_message, fx.malformed, tx)))
    }
}

/// Streams `promotion_outcomes` from week offset `since` (seconds from the anchor), oldest first.
fn stream_outcomes(
    systems: &crate::Systems,
    since: i64,
    per_message: usize,
    mut malformed: Option<Malformed>,
    tx: &mpsc::Sender<Result<StreamPromotionOutcomesResponse, Status>>,
) -> Result<(), Status> {
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
    let mut batch = Vec::with_capacity(per_message);
    let mut sent = false;
    let send = |outcomes: Vec<PromotionOutcome>, sent: &mut bool| {
        *sent = true;
        tx.blocking_send(Ok(StreamPromotionOutcomesResponse {
            history_version: m.history_version.clone(),
            outcomes,
        }))
        .is_ok()
    };
    while let Some(r) = rows.next().map_err(db)? {
        let sku_idx = r.get::<_, i64>(1).map_err(db)? as usize;
        let region_idx = r.get::<_, i64>(2).map_err(db)? as usize;
        let mut sku = m.products[sku_idx].sku.clone();
        if malformed.take().is_some() {
            sku = Malformed::unknown(&sku);
        }
        batch.push(PromotionOutcome {
            promotion_id: r.get(0).map_err(db)?,
            sku,
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
        });
        if batch.len() == per_message
            && !send(std::mem::replace(&mut batch, Vec::with_capacity(per_message)), &mut sent)
        {
            return Ok(());
        }
    }
    // At least one message, so a client learns the history's version even when nothing matched.
    if !batch.is_empty() || !sent {
        send(batch, &mut sent);
    }
    Ok(())
}

/// Breaks `d` the way `mode` says (see `Fault.malformed`); false when it cannot because the
/// store has no baselines (the next one is tried).
fn malform_demand(d: &mut StoreDemand, mode: Malformed) -> bool {
    if d.sku_index.is_empty() {
        return false;
    }
    match mode {
        Malformed::LengthMismatch => {
            d.daily_units.pop();
        }
        Malformed::UnknownId => d.store_id = Malformed::unknown(&d.store_id),
        Malformed::NegativeStock => d.daily_units[0] = -d.daily_units[0] - 1.0,
    }
    true
}

fn stream_demand(
    systems: &Systems,
    sel: Selection,
    per_message: usize,
    mut malformed: Option<Malformed>,
    tx: &mpsc::Sender<Result<StreamBaselineDemandResponse, Status>>,
) -> Result<(), Status> {
    let m = systems.master();
    let conn = systems.reader().map_err(db)?;
    let mut stmt = conn
        .prepare_cached("SELECT sku_idx, baseline FROM store_positions WHERE store_idx = ?1 ORDER BY sku_idx")
        .map_err(db)?;
    let cap = sel.dictionary.len();
    let mut dictionary = Some(sel.dictionary);
    let mut batch = Vec::with_capacity(per_message);
    let n = sel.stores.len();
    for (k, &s) in sel.stores.iter().enumerate() {
        let store = &m.stores[s];
        let mut d = StoreDemand {
            store_id: store.store_id.clone(),
            region_id: m.regions[store.region_idx].region_id.clone(),
            sku_index: Vec::with_capacity(cap),
            daily_units: Vec::with_capacity(cap),
        };
        let mut rows = stmt.query([s as i64]).map_err(db)?;
        while let Some(row) = rows.next().map_err(db)? {
            let dict = sel.dict_of_sku[row.get::<_, i64>(0).map_err(db)? as usize];
            if dict != u32::MAX {
                d.sku_index.push(dict);
                d.daily_units.push(row.get::<_, f64>(1).map_err(db)? as f32);
            }
        }
        if malformed.is_some_and(|mode| malform_demand(&mut d, mode)) {
            malformed = None;
        }
        batch.push(d);
        if batch.len() >= per_message || k + 1 == n {
            let msg = StreamBaselineDemandResponse {
                sku_dictionary: dictionary.take().unwrap_or_default(),
                stores: std::mem::take(&mut batch),
                history_days: m.history_days,
            };
            if tx.blocking_send(Ok(msg)).is_err() {
                return Ok(());
            }
        }
    }
    if let Some(dictionary) = dictionary {
        let _ = tx.blocking_send(Ok(StreamBaselineDemandResponse {
            sku_dictionary: dictionary,
            stores: vec![],
            history_days: m.history_days,
        }));
    }
    Ok(())
}

#[tonic::async_trait]
impl funding_service_server::FundingService for Handler {
    async fn get_agreements(
        &self,
        req: Request<GetAgreementsRequest>,
    ) -> Result<Response<GetAgreementsResponse>, Status> {
        let fx = self.0.faults.before(call("funding", "GetAgreements")).await?;
        let ids = req.into_inner().agreement_ids;
        let systems = self.0.clone();
        let mut resp = blocking(move || {
            let conn = systems.reader().map_err(db)?;
            let anchor = systems.anchor();
            let mut stmt = conn
                .prepare_cached(
                    "SELECT agreement_id, supplier_id, status, valid_from, valid_to, funding_per_unit, cap_amount
                     FROM agreements WHERE agreement_id = ?1",
                )
                .map_err(db)?;
            let mut skus = conn
                .prepare_cached("SELECT sku FROM agreement_skus WHERE agreement_id = ?1 ORDER BY sku")
                .map_err(db)?;
            let mut out = GetAgreementsResponse::default();
            let mut seen = HashSet::new();
            for id in ids.iter().filter(|i| seen.insert(i.as_str())) {
                let found = stmt
                    .query_row([id], |r| {
                        Ok(FundingAgreement {
                            agreement_id: r.get(0)?,
                            supplier_id: r.get(1)?,
                            status: r.get(2)?,
                            valid_from: ts(anchor + r.get::<_, i64>(3)?),
                            valid_to: ts(anchor + r.get::<_, i64>(4)?),
                            skus: vec![],
                            funding_per_unit: r.get(5)?,
                            cap_amount: r.get(6)?,
                        })
                    })
                    .optional()
                    .map_err(db)?;
                match found {
                    Some(mut a) => {
                        a.skus = skus.query_map([id], |r| r.get(0)).map_err(db)?.collect::<Result<_, _>>().map_err(db)?;
                        out.agreements.push(a);
                    }
                    None => out.unknown_ids.push(id.clone()),
                }
            }
            out.agreements.sort_by(|a, b| a.agreement_id.cmp(&b.agreement_id));
            Ok(out)
        })
        .await?;
        if let (Some(Malformed::UnknownId), Some(a)) = (fx.malformed, resp.agreements.first_mut()) {
            a.agreement_id = Malformed::unknown(&a.agreement_id);
        }
        Ok(Response::new(resp))
    }

    async fn submit_claim(
        &self,
        req: Request<SubmitClaimRequest>,
    ) -> Result<Response<SubmitClaimResponse>, Status> {
        let c = call("funding", "SubmitClaim");
        let fx = self.0.faults.before(c).await?;
        let req = req.into_inner();
        require(&req.idempotency_key, "idempotency_key")?;
        require(&req.promotion_id, "promotion_id")?;
        let amount = parse_decimal("amount", &req.amount, 2).map_err(field)?;
        if amount <= rust_decimal::Decimal::ZERO {
            return Err(Status::invalid_argument(format!("amount: {:?} must be more than zero", req.amount)));
        }
        let systems = self.0.clone();
        let (claim, replayed) = blocking(move || {
            systems.write(|conn| {
                let tx = conn.transaction().map_err(db)?;
                if let Some(existing) = get_claim(&tx, "idempotency_key", &req.idempotency_key).map_err(db)? {
                    if existing.agreement_id != req.agreement_id || existing.amount != amount.to_string() {
                        return Err(Status::failed_precondition(format!(
                            "idempotency_key {:?} was used for a different claim ({} {})",
                            req.idempotency_key, existing.agreement_id, existing.amount
                        )));
                    }
                    return Ok((existing, true));
                }
                let agreement: Option<(i32, String)> = tx
                    .query_row(
                        "SELECT status, cap_amount FROM agreements WHERE agreement_id = ?1",
                        [&req.agreement_id],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                    .map_err(db)?;
                let Some((status, cap)) = agreement else {
                    return Err(Status::not_found(format!("agreement_id: unknown agreement {:?}", req.agreement_id)));
                };
                if status != AgreementStatus::Active as i32 {
                    return Err(Status::failed_precondition(format!(
                        "agreement_id: {} is {}, it funds no claims",
                        req.agreement_id,
                        AgreementStatus::try_from(status).unwrap_or_default().as_str_name()
                    )));
                }
                let claimed: Vec<String> = tx
                    .prepare("SELECT amount FROM funding_claims WHERE agreement_id = ?1")
                    .and_then(|mut st| st.query_map([&req.agreement_id], |r| r.get(0))?.collect())
                    .map_err(db)?;
                let claimed: rust_decimal::Decimal =
                    claimed.iter().filter_map(|a| parse_decimal("amount", a, 2).ok()).sum();
                let cap = parse_decimal("cap_amount", &cap, 2).map_err(field)?;
                if claimed + amount > cap {
                    return Err(Status::failed_precondition(format!(
                        "amount: {amount} exceeds what the cap of {} has left ({} of {cap} claimed)",
                        req.agreement_id, claimed
                    )));
                }
                let id = next_id(&tx, "funding_claims", "CL").map_err(db)?;
                tx.execute(
                    "INSERT INTO funding_claims(claim_id, idempotency_key, promotion_id, agreement_id, amount, units, submitted_ms)
                     VALUES (?1,?2,?3,?4,?5,?6,?7)",
                    params![id, req.idempotency_key, req.promotion_id, req.agreement_id, amount.to_string(), req.units, now_ms()],
                )
                .map_err(db)?;
                let claim = get_claim(&tx, "claim_id", &id).map_err(db)?.ok_or_else(|| Status::internal("lost write"))?;
                tx.commit().map_err(db)?;
                Ok((claim, false))
            })
        })
        .await?;
        if fx.lose_response {
            return Err(lost_response(c));
        }
        Ok(Response::new(SubmitClaimResponse { claim: Some(claim), replayed }))
    }

    async fn list_claims(
        &self,
        req: Request<ListClaimsRequest>,
    ) -> Result<Response<ListClaimsResponse>, Status> {
        self.0.faults.before(call("funding", "ListClaims")).await?;
        let promotion = req.into_inner().promotion_id;
        let systems = self.0.clone();
        let claims = blocking(move || {
            let conn = systems.reader().map_err(db)?;
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {CLAIM_COLUMNS} FROM funding_claims WHERE ?1 = '' OR promotion_id = ?1 ORDER BY submitted_ms, claim_id"
                ))
                .map_err(db)?;
            let rows = stmt.query_map([promotion], claim_row).map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })
        .await?;
        Ok(Response::new(ListClaimsResponse { claims }))
    }
}

fn seconds(t: &Option<Timestamp>, name: &str) -> Result<i64, Status> {
    t.as_ref().map(|t| t.seconds).ok_or_else(|| Status::invalid_argument(format!("{name}: is required")))
}

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

const PRICE_CHANGE_COLUMNS: &str = "price_change_id, idempotency_key, promotion_id, revision, region_ids, \
     effective_from, effective_to, line_count, state, created_ms, reverted_ms";

fn get_price_change(conn: &Connection, key_column: &str, key: &str) -> rusqlite::Result<Option<PriceChange>> {
    conn.query_row(
        &format!("SELECT {PRICE_CHANGE_COLUMNS} FROM price_changes WHERE {key_column} = ?1"),
        [key],
        price_change,
    )
    .optional()
}

pub(crate) fn require(value: &str, name: &str) -> Result<(), Status> {
    if value.trim().is_empty() {
        return Err(Status::invalid_argument(format!("{name}: is required")));
    }
    Ok(())
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

const ORDER_COLUMNS: &str = "order_id, idempotency_key, promotion_id, from_dc_id, to_region_id, total_units, line_count, eta_ms, state";

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
        let release_ms = match &req.release_at {
            Some(t) => t.seconds * 1000 + i64::from(t.nanos / 1_000_000),
            None => now_ms(),
        };
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
        let release_ms = match &req.release_at {
            Some(t) => t.seconds * 1000 + i64::from(t.nanos / 1_000_000),
            None => now_ms(),
        };
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

/// Stores per message of `StreamStoreSellThrough`.
const STORES_PER_MESSAGE: usize = 64;

fn stream_sell_through(
    systems: &Systems,
    req: &StreamStoreSellThroughRequest,
    lines: &[sales::Line],
    scopes: &[sales::Scope],
    tx: &mpsc::Sender<Result<StreamStoreSellThroughResponse, Status>>,
) -> Result<(), Status> {
    let m = systems.master();
    let conn = systems.reader().map_err(db)?;
    let moves = if req.without_store_transfers {
        Vec::new()
    } else {
        sales::transfers(&conn, &req.promotion_id).map_err(db)?
    };
    let mut dictionary = Some(req.lines.iter().map(|l| l.sku.clone()).collect::<Vec<_>>());
    let mut batch: Vec<StoreSellThrough> = Vec::new();
    let mut open = true;
    let mut send = |batch: &mut Vec<StoreSellThrough>, dcs: Vec<DcAvailability>| {
        let msg = StreamStoreSellThroughResponse {
            sku_dictionary: dictionary.take().unwrap_or_default(),
            stores: std::mem::take(batch),
            dcs,
        };
        open = open && tx.blocking_send(Ok(msg)).is_ok();
    };
    let mut current: Option<(usize, usize)> = None;
    sales::walk(systems, &conn, &req.promotion_id, lines, scopes, &moves, |si, store_idx, li, cell| {
        if current != Some((si, store_idx)) {
            current = Some((si, store_idx));
            if batch.len() == STORES_PER_MESSAGE {
                send(&mut batch, Vec::new());
            }
            let store = &m.stores[store_idx];
            batch.push(StoreSellThrough {
                store_id: store.store_id.clone(),
                region_id: m.regions[store.region_idx].region_id.clone(),
                ..StoreSellThrough::default()
            });
        }
        let Some(s) = batch.last_mut() else { return };
        s.sku_index.push(li as u32);
        s.baseline.push(cell.baseline);
        s.units_sold.push(cell.sold.round() as i64);
        s.in_stock_units.push(cell.in_stock_units.round() as i64);
        s.in_stock_days.push(cell.in_stock_days);
        s.stockout_days.push(cell.stockout_days);
        s.on_hand.push(cell.ending.round() as i64);
        s.inbound_units.push(cell.inbound_units.round() as i64);
        s.inbound_eta.push(cell.inbound_eta);
    })
    .map_err(db)?;
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
    send(&mut batch, availability);
    Ok(())
}

/// The lines and scopes of a sales request, checked against master data.
fn sales_request(
    m: &crate::Master,
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

const PUBLICATION_COLUMNS: &str = "publication_id, idempotency_key, promotion_id, revision, channel, region_id, kind, \
     price_change_id, state, published_ms, acknowledged_ms, ack_due_ms";

fn publication(r: &Row<'_>) -> rusqlite::Result<(Publication, Option<i64>)> {
    Ok((
        Publication {
            publication_id: r.get(0)?,
            idempotency_key: r.get(1)?,
            promotion_id: r.get(2)?,
            revision: r.get(3)?,
            channel: r.get(4)?,
            region_id: r.get(5)?,
            kind: r.get(6)?,
            price_change_id: r.get(7)?,
            state: r.get(8)?,
            published_at: ts_ms(r.get(9)?),
            acknowledged_at: ts_ms(r.get(10)?),
        },
        r.get(11)?,
    ))
}

/// Reads a publication, first recording its acknowledgment if it has come due — unless its
/// channel is down ([`Faults::channel_down`]): then the acknowledgment waits, and arrives at the
/// first read after the channel is back.
fn get_publication(
    conn: &Connection,
    faults: &Faults,
    key_column: &str,
    key: &str,
) -> rusqlite::Result<Option<Publication>> {
    Ok(read_publication(conn, faults, key_column, key)?.map(|(p, _)| p))
}

/// [`get_publication`], with the instant (ms) its acknowledgment is due when it is still
/// pending and has one.
fn read_publication(
    conn: &Connection,
    faults: &Faults,
    key_column: &str,
    key: &str,
) -> rusqlite::Result<Option<(Publication, Option<i64>)>> {
    let found = conn
        .query_row(
            &format!("SELECT {PUBLICATION_COLUMNS} FROM publications WHERE {key_column} = ?1"),
            [key],
            publication,
        )
        .optional()?;
    let Some((mut p, ack_due)) = found else { return Ok(None) };
    if p.state == PublicationState::PendingAck as i32
        && let Some(due) = ack_due.filter(|&due| due <= now_ms())
    {
        if faults.channel_down(p.channel, &p.region_id) {
            let deferred = now_ms() + 1;
            conn.execute(
                "UPDATE publications SET ack_due_ms = ?2 WHERE publication_id = ?1",
                params![p.publication_id, deferred],
            )?;
            return Ok(Some((p, Some(deferred))));
        }
        conn.execute(
            "UPDATE publications SET state = ?2, acknowledged_ms = ?3 WHERE publication_id = ?1 AND state = ?4",
            params![p.publication_id, PublicationState::Acknowledged as i32, due, PublicationState::PendingAck as i32],
        )?;
        p.state = PublicationState::Acknowledged as i32;
        p.acknowledged_at = ts_ms(Some(due));
    }
    let pending_due = ack_due.filter(|_| p.state == PublicationState::PendingAck as i32);
    Ok(Some((p, pending_due)))
}

/// Longest a `WatchPublications` stream waits between two looks at its publications when
/// nothing was written: an acknowledgment comes due by time, and a channel that is down defers
/// it without a write. Server-side reads of the file, not calls.
const WATCH_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Feeds one `WatchPublications` stream: reads the publications (settling acknowledgments that
/// came due), sends those that changed since the last message, then sleeps until the next
/// acknowledgment is due, a write changes the file, or [`WATCH_RECHECK`] — until the caller
/// hangs up.
async fn watch_publications(
    systems: Arc<Systems>,
    ids: Vec<String>,
    tx: &mpsc::Sender<Result<WatchPublicationsResponse, Status>>,
) -> Result<(), Status> {
    let mut changes = systems.changes();
    let mut sent: HashMap<String, Publication> = HashMap::new();
    loop {
        changes.borrow_and_update();
        let (s, look) = (systems.clone(), ids.clone());
        let (pubs, next_due) = blocking(move || {
            s.write(|conn| {
                let mut out = Vec::with_capacity(look.len());
                let mut next_due: Option<i64> = None;
                for id in &look {
                    let (p, due) = read_publication(conn, &s.faults, "publication_id", id)
                        .map_err(db)?
                        .ok_or_else(|| Status::not_found(format!("unknown publication {id:?}")))?;
                    // A channel that is down defers its acknowledgments without a write: look
                    // again after [`WATCH_RECHECK`] rather than at the deferred instant.
                    if let Some(d) = due.filter(|_| !s.faults.channel_down(p.channel, &p.region_id)) {
                        next_due = Some(next_due.map_or(d, |n| n.min(d)));
                    }
                    out.push(p);
                }
                Ok((out, next_due))
            })
        })
        .await?;
        for p in pubs {
            if sent.get(&p.publication_id) != Some(&p) {
                sent.insert(p.publication_id.clone(), p.clone());
                if tx.send(Ok(WatchPublicationsResponse { publication: Some(p) })).await.is_err() {
                    return Ok(());
                }
            }
        }
        let wait = next_due
            .map(|due| std::time::Duration::from_millis((due - now_ms()).max(1) as u64))
            .map_or(WATCH_RECHECK, |d| d.min(WATCH_RECHECK));
        tokio::select! {
            () = tx.closed() => return Ok(()),
            r = changes.changed() => if r.is_err() { return Ok(()) },
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// The live publication a channel target applied for `sku`: the most recently acknowledged
/// publication to the target, not withdrawn, whose price change carries the SKU there — as
/// (publication id, kind, acknowledged ms, promo price). Settles the target's acknowledgments
/// that have come due first.
fn applied_publication(
    conn: &Connection,
    faults: &Faults,
    channel: i32,
    region_id: &str,
    sku: &str,
) -> rusqlite::Result<Option<(String, i32, i64, String)>> {
    let pending: Vec<String> = conn
        .prepare_cached(
            "SELECT publication_id FROM publications WHERE channel = ?1 AND region_id = ?2 AND state = ?3",
        )?
        .query_map(params![channel, region_id, PublicationState::PendingAck as i32], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in &pending {
        get_publication(conn, faults, "publication_id", id)?;
    }
    conn.prepare_cached(
        "SELECT p.publication_id, p.kind, p.acknowledged_ms, l.promo_price
         FROM publications p JOIN price_lines l ON l.price_change_id = p.price_change_id
         WHERE p.channel = ?1 AND p.region_id = ?2 AND l.sku = ?3 AND p.state = ?4
           AND (l.region_ids = '' OR (',' || l.region_ids || ',') LIKE ('%,' || ?2 || ',%'))
         ORDER BY p.acknowledged_ms DESC, p.publication_id DESC LIMIT 1",
    )?
    .query_row(params![channel, region_id, sku, PublicationState::Acknowledged as i32], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    })
    .optional()
}

/// What a channel target charges for `sku` now: the applied publication's price (the promo
/// price of an activation, the regular price after a revert), unless the target drifted after
/// applying it; the regular price when nothing of a promotion applies.
fn live_price(
    conn: &Connection,
    faults: &Faults,
    channel: i32,
    region_id: &str,
    sku: &str,
    regular: &str,
) -> rusqlite::Result<LivePrice> {
    let applied = applied_publication(conn, faults, channel, region_id, sku)?;
    let (publication_id, mut price, applied_ms) = match applied {
        Some((id, kind, ms, promo)) if kind == PublicationKind::Activate as i32 => (id, promo, ms),
        Some((id, _, ms, _)) => (id, regular.to_owned(), ms),
        None => (String::new(), regular.to_owned(), 0),
    };
    let drift: Option<(String, i64)> = conn
        .prepare_cached(
            "SELECT price, since_ms FROM channel_drift WHERE channel = ?1 AND region_id = ?2 AND sku = ?3",
        )?
        .query_row(params![channel, region_id, sku], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    // Drift perturbs what a target applied; a target that applies nothing charges regular prices.
    if let Some((drifted, since)) = drift
        && since > applied_ms
        && !publication_id.is_empty()
    {
        price = drifted;
    }
    Ok(LivePrice { sku: sku.to_owned(), price, publication_id })
}

const CLAIM_COLUMNS: &str =
    "claim_id, idempotency_key, promotion_id, agreement_id, amount, units, submitted_ms";

fn claim_row(r: &Row<'_>) -> rusqlite::Result<FundingClaim> {
    Ok(FundingClaim {
        claim_id: r.get(0)?,
        idempotency_key: r.get(1)?,
        promotion_id: r.get(2)?,
        agreement_id: r.get(3)?,
        amount: r.get(4)?,
        units: r.get(5)?,
        submitted_at: ts_ms(r.get(6)?),
    })
}

fn get_claim(conn: &Connection, key_column: &str, key: &str) -> rusqlite::Result<Option<FundingClaim>> {
    conn.query_row(
        &format!("SELECT {CLAIM_COLUMNS} FROM funding_claims WHERE {key_column} = ?1"),
        [key],
        claim_row,
    )
    .optional()
}

fn is_regional(channel: Channel) -> bool {
    matches!(channel, Channel::Pos | Channel::StoreComms)
}

#[tonic::async_trait]
impl publication_service_server::PublicationService for Handler {
    async fn publish(&self, req: Request<PublishRequest>) -> Result<Response<PublishResponse>, Status> {
        let req = req.into_inner();
        let target_region = req.region_id.clone();
        let c = Call {
            service: "publication",
            method: "Publish",
            channel: req.channel,
            region_id: &target_region,
        };
        let fx = self.0.faults.before(c).await?;
        require(&req.idempotency_key, "idempotency_key")?;
        require(&req.promotion_id, "promotion_id")?;
        let channel = Channel::try_from(req.channel)
            .ok()
            .filter(|c| *c != Channel::Unspecified)
            .ok_or_else(|| Status::invalid_argument(format!("channel: {} is not a channel", req.channel)))?;
        if PublicationKind::try_from(req.kind).ok().filter(|k| *k != PublicationKind::Unspecified).is_none() {
            return Err(Status::invalid_argument(format!("kind: {} is not a publication kind", req.kind)));
        }
        let m = self.0.master();
        if is_regional(channel) {
            if !m.region_index.contains_key(&req.region_id) {
                return Err(Status::not_found(format!(
                    "region_id: unknown region {:?} (required for {})",
                    req.region_id,
                    channel.as_str_name()
                )));
            }
        } else if !req.region_id.is_empty() {
            return Err(Status::invalid_argument(format!(
                "region_id: {} is a national channel; leave region_id empty",
                channel.as_str_name()
            )));
        }
        let systems = self.0.clone();
        let region = req.region_id.clone();
        let (p, replayed) = blocking(move || {
            systems.write(|conn| {
                if let Some(existing) = get_publication(conn, &systems.faults, "idempotency_key", &req.idempotency_key).map_err(db)? {
                    if existing.promotion_id != req.promotion_id
                        || existing.channel != req.channel
                        || existing.region_id != req.region_id
                        || existing.kind != req.kind
                    {
                        return Err(Status::failed_precondition(format!(
                            "idempotency_key {:?} was used for a different publication ({} {} {})",
                            req.idempotency_key,
                            existing.promotion_id,
                            existing.channel().as_str_name(),
                            existing.region_id
                        )));
                    }
                    return Ok((existing, true));
                }
                let delay: i64 = conn
                    .query_row(
                        "SELECT delay_ms FROM ack_profiles WHERE channel = ?1 AND region_id = ?2",
                        params![req.channel, region],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(db)?
                    .unwrap_or(0);
                let delay = fx.ack_delay_ms.map_or(delay, |d| d as i64);
                let now = now_ms();
                let ack_due = (!fx.ack_never).then_some(now + delay);
                let id = next_id(conn, "publications", "PUB").map_err(db)?;
                conn.execute(
                    "INSERT INTO publications(publication_id, idempotency_key, promotion_id, revision, channel, region_id,
                     kind, price_change_id, state, published_ms, ack_due_ms) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)",
                    params![
                        id,
                        req.idempotency_key,
                        req.promotion_id,
                        req.revision,
                        req.channel,
                        req.region_id,
                        req.kind,
                        req.price_change_id,
                        PublicationState::PendingAck as i32,
                        now,
                        ack_due
                    ],
                )
                .map_err(db)?;
                let p = get_publication(conn, &systems.faults, "publication_id", &id).map_err(db)?.ok_or_else(|| Status::internal("lost write"))?;
                Ok((p, false))
            })
        })
        .await?;
        if fx.lose_response {
            return Err(lost_response(c));
        }
        Ok(Response::new(PublishResponse { publication: Some(p), replayed }))
    }

    async fn get_publication(
        &self,
        req: Request<GetPublicationRequest>,
    ) -> Result<Response<GetPublicationResponse>, Status> {
        self.0.faults.before(call("publication", "GetPublication")).await?;
        let id = req.into_inner().publication_id;
        let systems = self.0.clone();
        let p = blocking(move || {
            systems.write(|conn| {
                get_publication(conn, &systems.faults, "publication_id", &id)
                    .map_err(db)?
                    .ok_or_else(|| Status::not_found(format!("unknown publication {id:?}")))
            })
        })
        .await?;
        Ok(Response::new(GetPublicationResponse { publication: Some(p) }))
    }

    type WatchPublicationsStream = Stream<WatchPublicationsResponse>;

    async fn watch_publications(
        &self,
        req: Request<WatchPublicationsRequest>,
    ) -> Result<Response<Self::WatchPublicationsStream>, Status> {
        self.0.faults.before(call("publication", "WatchPublications")).await?;
        let ids = req.into_inner().publication_ids;
        if ids.is_empty() {
            return Err(Status::invalid_argument("publication_ids: name at least one publication"));
        }
        let systems = self.0.clone();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            if let Err(e) = watch_publications(systems, ids, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn withdraw(&self, req: Request<WithdrawRequest>) -> Result<Response<WithdrawResponse>, Status> {
        let c = call("publication", "Withdraw");
        let fx = self.0.faults.before(c).await?;
        let req = req.into_inner();
        let systems = self.0.clone();
        let p = blocking(move || {
            systems.write(|conn| {
                conn.execute(
                    "UPDATE publications SET state = ?2, withdrawn_ms = ?3, withdraw_reason = ?4
                     WHERE publication_id = ?1 AND state != ?2",
                    params![req.publication_id, PublicationState::Withdrawn as i32, now_ms(), req.reason],
                )
                .map_err(db)?;
                get_publication(conn, &systems.faults, "publication_id", &req.publication_id)
                    .map_err(db)?
                    .ok_or_else(|| Status::not_found(format!("unknown publication {:?}", req.publication_id)))
            })
        })
        .await?;
        if fx.lose_response {
            return Err(lost_response(c));
        }
        Ok(Response::new(WithdrawResponse { publication: Some(p) }))
    }

    async fn list_publications(
        &self,
        req: Request<ListPublicationsRequest>,
    ) -> Result<Response<ListPublicationsResponse>, Status> {
        self.0.faults.before(call("publication", "ListPublications")).await?;
        let promotion = req.into_inner().promotion_id;
        let systems = self.0.clone();
        let publications = blocking(move || {
            systems.write(|conn| {
                let ids: Vec<String> = conn
                    .prepare("SELECT publication_id FROM publications WHERE ?1 = '' OR promotion_id = ?1 ORDER BY published_ms, publication_id")
                    .map_err(db)?
                    .query_map([promotion], |r| r.get(0))
                    .map_err(db)?
                    .collect::<Result<_, _>>()
                    .map_err(db)?;
                ids.iter()
                    .map(|id| get_publication(conn, &systems.faults, "publication_id", id).map_err(db)?.ok_or_else(|| Status::internal("lost row")))
                    .collect::<Result<Vec<_>, _>>()
            })
        })
        .await?;
        Ok(Response::new(ListPublicationsResponse { publications }))
    }

    async fn get_live_prices(
        &self,
        req: Request<GetLivePricesRequest>,
    ) -> Result<Response<GetLivePricesResponse>, Status> {
        let req = req.into_inner();
        let c = Call {
            service: "publication",
            method: "GetLivePrices",
            channel: req.channel,
            region_id: &req.region_id,
        };
        self.0.faults.before(c).await?;
        let m = self.0.master();
        let mut regular = Vec::with_capacity(req.skus.len());
        for (i, sku) in req.skus.iter().enumerate() {
            let idx = m
                .sku_index
                .get(sku)
                .ok_or_else(|| Status::not_found(format!("skus[{i}]: unknown SKU {sku:?}")))?;
            regular.push(m.products[*idx].regular_price.clone());
        }
        let systems = self.0.clone();
        let prices = blocking(move || {
            systems.write(|conn| {
                req.skus
                    .iter()
                    .zip(&regular)
                    .map(|(sku, reg)| {
                        live_price(conn, &systems.faults, req.channel, &req.region_id, sku, reg)
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(db)
            })
        })
        .await?;
        Ok(Response::new(GetLivePricesResponse { prices }))
    }
}

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
        Ok(blocking_stream(move |tx| stream_sell_through(&systems, &req, &lines, &scopes, tx)))
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
