//! The gRPC services. One handler type, [`Handler`], implements every contract of
//! `proto/retail/v1` over the shared [`Systems`]; SQLite work runs on the blocking pool.
//!
//! One file per service, named as fault rules name the service (`Fault.service`): `location`,
//! `product`, `inventory`, `demand`, `funding`, `price`, `replenishment`, `publication`, `sales`,
//! `analytics` (the process-event record), `directory` (signing-key revocations), plus
//! `calendar` and `admin`, which take no faults.
//! This file holds what several of them share: the router, status and timestamp conversions,
//! the selection of stores and SKUs that the inventory and demand streams read, and
//! `batched_stream`, which feeds every server stream that batches rows into messages.

mod admin;
mod analytics;
mod calendar;
mod demand;
mod directory;
mod funding;
mod inventory;
mod location;
mod price;
mod product;
mod publication;
mod replenishment;
mod sales;

use crate::{
    Systems,
    faults::{Call, Malformed},
};
use pbjson_types::Timestamp;
use promo_contracts::{money::FieldError, retail::v1::*};
use std::{
    collections::HashSet,
    ops::{Neg, Sub},
    sync::Arc,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Response, Status, transport::server::Router};

/// Tables the services keep beside the dataset, created when a file is opened (files written
/// before a service existed get its table then).
pub(crate) const SCHEMAS: [&str; 3] = [analytics::SCHEMA, calendar::SCHEMA, directory::SCHEMA];

/// Adds the columns a table gained after it first shipped, to a file written before them.
pub(crate) fn add_columns(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    let have: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('process_events')")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for (column, definition) in analytics::ADDED_COLUMNS {
        if !have.iter().any(|c| c == column) {
            conn.execute_batch(&format!("ALTER TABLE process_events ADD COLUMN {column} {definition}"))?;
        }
    }
    Ok(())
}

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
        .add_service(directory_service_server::DirectoryServiceServer::new(h.clone()))
        .add_service(admin_service_server::AdminServiceServer::new(h)))
}

/// A failed read or write of the file, as the client sees it.
fn db(e: rusqlite::Error) -> Status {
    Status::internal(format!("reference store: sqlite error: {e}"))
}

/// A request field that does not parse, named.
fn field(e: FieldError) -> Status {
    Status::invalid_argument(e.to_string())
}

/// Unix seconds as a wire timestamp.
fn ts(unix_seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds: unix_seconds, nanos: 0 })
}

/// Unix milliseconds, when there are any, as a wire timestamp.
fn ts_ms(ms: Option<i64>) -> Option<Timestamp> {
    ms.map(|ms| Timestamp { seconds: ms.div_euclid(1000), nanos: (ms.rem_euclid(1000) * 1_000_000) as i32 })
}

/// A wire timestamp as Unix milliseconds (the file keeps wall-clock instants in ms).
fn millis(t: &Timestamp) -> i64 {
    t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
}

/// The seconds of a required timestamp field, or the error naming it.
fn seconds(t: &Option<Timestamp>, name: &str) -> Result<i64, Status> {
    t.as_ref().map(|t| t.seconds).ok_or_else(|| Status::invalid_argument(format!("{name}: is required")))
}

/// Refuses a required string field that is empty, naming it.
fn require(value: &str, name: &str) -> Result<(), Status> {
    if value.trim().is_empty() {
        return Err(Status::invalid_argument(format!("{name}: is required")));
    }
    Ok(())
}

/// A call of a service without a channel or region, as fault rules match it.
fn call<'a>(service: &'a str, method: &'a str) -> Call<'a> {
    Call { service, method, channel: 0, region_id: "" }
}

/// Runs blocking SQLite work off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("worker thread failed: {e}")))?
}

/// The body of a server-streaming response.
type Stream<T> = ReceiverStream<Result<T, Status>>;

/// Which stores and SKUs a streaming read covers.
struct Selection {
    stores: Vec<usize>,
    dcs: Vec<usize>,
    /// Product index → position in the dictionary, or u32::MAX when not selected.
    dict_of_sku: Vec<u32>,
    /// The selected SKUs, in the order the request named them (every SKU when it named none):
    /// the first message of a stream carries it, the records index into it.
    dictionary: Vec<String>,
}

impl Handler {
    /// The stores (and with `include_dcs`, the DCs serving them) and SKUs a request selects;
    /// every store and SKU when it names none. Unknown ids are refused, listed.
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

/// A record of a batched stream, which a `Malformed` fault rule can break.
trait StreamItem {
    /// Breaks the record the way `mode` says (see `Fault.malformed`); false when this one
    /// cannot be broken (it holds no entries), so the next record is tried.
    fn malform(&mut self, mode: Malformed) -> bool;
}

/// Breaks a columnar record, which names `id` and holds `entries` values in each column, the
/// way `mode` says: `column` a value short, `id` unknown, or `column`'s first value negative.
/// False when the record holds no entries.
fn malform_columns<V>(mode: Malformed, entries: usize, id: &mut String, column: &mut Vec<V>) -> bool
where
    V: Copy + From<u8> + Neg<Output = V> + Sub<Output = V>,
{
    if entries == 0 {
        return false;
    }
    match mode {
        Malformed::LengthMismatch => {
            column.pop();
        }
        Malformed::UnknownId => *id = Malformed::unknown(id),
        Malformed::NegativeStock => column[0] = -column[0] - V::from(1),
    }
    true
}

/// Why the producer of a batched stream stopped before its end.
enum Stop {
    /// The client hung up: nothing more is read or sent, and there is no one to tell.
    HungUp,
    /// The read failed: the stream ends with this error after the messages already sent.
    Failed(Status),
}

impl From<Status> for Stop {
    fn from(e: Status) -> Self {
        Self::Failed(e)
    }
}

/// The most records a batched stream reserves room for ahead of a message: `per_message`
/// comes from the client, which may ask for more than the stream holds.
const PREALLOCATE: usize = 4096;

/// The sending end of a batched stream: cuts the records it is handed into messages of
/// `per_message`, breaks the first record a `Malformed` rule can break, and sends each message
/// as soon as it is full, waiting while the channel is full (back-pressure from the client).
struct Batches<'a, T, M> {
    tx: &'a mpsc::Sender<Result<M, Status>>,
    /// Makes the message of a batch (the first call makes the first message).
    message: &'a mut dyn FnMut(Vec<T>) -> M,
    per_message: usize,
    items: Vec<T>,
    /// The fault to apply, until a record took it.
    malformed: Option<Malformed>,
    /// Whether a message went out: a stream sends at least one, so that the client learns
    /// what the first message says (a SKU dictionary, a history version) even about nothing.
    sent: bool,
}

impl<T: StreamItem, M> Batches<'_, T, M> {
    /// Adds `item`; a message that this fills goes out now. [`Stop::HungUp`] when the client
    /// is gone.
    fn push(&mut self, item: T) -> Result<(), Stop> {
        self.add(item);
        if self.items.len() < self.per_message {
            return Ok(());
        }
        let items = std::mem::replace(&mut self.items, Vec::with_capacity(self.per_message.min(PREALLOCATE)));
        self.send(items, |_| {})
    }

    /// Adds `item` to the stream's last message: no message is cut after it, whatever the
    /// number of records that message then holds.
    fn push_last(&mut self, item: T) {
        self.add(item);
    }

    fn add(&mut self, mut item: T) {
        if let Some(mode) = self.malformed
            && item.malform(mode)
        {
            self.malformed = None;
        }
        self.items.push(item);
    }

    /// Sends the last message: the records left, or no records when no message went out yet;
    /// `last` adds what only the last message carries. A stream whose last message carries more calls
    /// this itself; [`batched_stream`] calls it for the others (a second call sends nothing).
    fn finish(&mut self, last: impl FnOnce(&mut M)) -> Result<(), Stop> {
        if self.items.is_empty() && self.sent {
            return Ok(());
        }
        let items = std::mem::take(&mut self.items);
        self.send(items, last)
    }

    fn send(&mut self, items: Vec<T>, last: impl FnOnce(&mut M)) -> Result<(), Stop> {
        let mut msg = (self.message)(items);
        last(&mut msg);
        self.sent = true;
        self.tx.blocking_send(Ok(msg)).map_err(|_| Stop::HungUp)
    }
}

/// A server stream of records batched into messages, read by blocking SQLite work off the
/// async runtime: `produce` hands the records to [`Batches`] in stream order, `message` makes
/// the response carrying one batch, and `malformed` (the call's fault, if any) breaks the first
/// record it can. The stream ends after the last message; a client that hangs up stops the
/// reading at the next message that cannot be delivered; an error ends the stream after the
/// messages already sent.
fn batched_stream<T, M>(
    per_message: usize,
    malformed: Option<Malformed>,
    mut message: impl FnMut(Vec<T>) -> M + Send + 'static,
    produce: impl FnOnce(&mut Batches<'_, T, M>) -> Result<(), Stop> + Send + 'static,
) -> Response<Stream<M>>
where
    T: StreamItem,
    M: Send + 'static,
{
    let (tx, rx) = mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let mut out = Batches {
            tx: &tx,
            message: &mut message,
            per_message,
            items: Vec::with_capacity(per_message.min(PREALLOCATE)),
            malformed,
            sent: false,
        };
        let end = produce(&mut out).and_then(|()| out.finish(|_| {}));
        if let Err(Stop::Failed(e)) = end {
            let _ = tx.blocking_send(Err(e));
        }
    });
    Response::new(ReceiverStream::new(rx))
}
