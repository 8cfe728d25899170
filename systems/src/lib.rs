//! Reference retail systems: every integration contract of `proto/retail/v1` served over gRPC
//! from one SQLite file.
//!
//! This is the embedded default that the demo, the tests and the benchmarks run against; in
//! production the worker points at the retailer's own implementation of the same contracts.
//!
//! - [`dataset`] generates a deterministic dataset (the canonical national launch by default);
//! - [`Systems`] owns the file, the anchor instant and the in-memory master data;
//! - [`services`] implements the gRPC services (reads stream from SQLite, writes are idempotent
//!   by key and durable in the file);
//! - [`faults`] holds the fault rules the admin RPC injects;
//! - [`sales`] simulates sales for a window from demand × uplift, capped by stock.
//! - [`world`] is the generating process behind the promotion history and the sales; [`rng`]
//!   the seeded generator every draw of the crate comes from.

// Every public item says what it is: the worker, its tests and the benches build on this API.
#![warn(missing_docs)]
pub mod dataset;
pub mod faults;
pub mod rng;
pub mod sales;
pub mod services;
pub mod world;

use dataset::DatasetSpec;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};
use tokio::net::TcpListener;

/// Errors opening or creating the store.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The dataset spec is invalid.
    #[error("{0}")]
    InvalidSpec(String),
    /// The file holds a different dataset.
    #[error(
        "{path} holds dataset {found:?} (seed {found_seed}), not {wanted:?} (seed {wanted_seed}); \
         use another --db file or pass --reset"
    )]
    Mismatch {
        /// The file.
        path: String,
        /// Dataset found.
        found: String,
        /// Seed found.
        found_seed: u64,
        /// Dataset wanted.
        wanted: String,
        /// Seed wanted.
        wanted_seed: u64,
    },
    /// The file was drawn from another world (or before worlds were recorded).
    #[error("{path} was generated from another world file; use another --db file or pass --reset")]
    WorldMismatch {
        /// The file.
        path: String,
    },
}

/// A region of the master data.
#[derive(Debug, Clone)]
pub struct RegionRow {
    /// Id.
    pub region_id: String,
    /// Name.
    pub name: String,
    /// IANA zone.
    pub time_zone: String,
    /// Serving DC index.
    pub dc_idx: usize,
}

/// A store of the master data.
#[derive(Debug, Clone)]
pub struct StoreRow {
    /// Id.
    pub store_id: String,
    /// Region index.
    pub region_idx: usize,
    /// Name.
    pub name: String,
}

/// A product of the master data.
#[derive(Debug, Clone)]
pub struct ProductRow {
    /// SKU.
    pub sku: String,
    /// Name.
    pub name: String,
    /// Category.
    pub category: String,
    /// Supplier.
    pub supplier_id: String,
    /// Cost, decimal string.
    pub cost: String,
    /// Regular price, decimal string.
    pub regular_price: String,
    /// Band 1–5.
    pub price_band: u32,
    /// Channel bits.
    pub channels: u32,
    /// Category price elasticity of demand uplift.
    pub elasticity: f64,
}

/// Master data, small and read-mostly: loaded once into memory.
#[derive(Debug, Clone)]
pub struct Master {
    /// Dataset name.
    pub name: String,
    /// Seed.
    pub seed: u64,
    /// Days of history behind baselines.
    pub history_days: u32,
    /// The short region id, or empty.
    pub short_region: String,
    /// In the short region, the first this many SKUs (by index) are short.
    pub short_skus: u32,
    /// The late-ack region id, or empty.
    pub late_ack_region: String,
    /// Agreement ids that are not valid.
    pub invalid_agreements: Vec<String>,
    /// Regions by index.
    pub regions: Vec<RegionRow>,
    /// DC ids by index.
    pub dcs: Vec<(String, String)>,
    /// Stores by index.
    pub stores: Vec<StoreRow>,
    /// Products by index.
    pub products: Vec<ProductRow>,
    /// Category index of each product (categories numbered by first appearance).
    pub category_idx: Vec<usize>,
    /// The category names, by index.
    pub categories: Vec<String>,
    /// The world the history and sales are drawn from.
    pub world: world::World,
    /// Identifies the promotion history's content.
    pub history_version: String,
    /// SKU → index.
    pub sku_index: HashMap<String, usize>,
    /// Store id → index.
    pub store_index: HashMap<String, usize>,
    /// Region id → index.
    pub region_index: HashMap<String, usize>,
}

/// The reference systems: the SQLite file, the anchor, master data and fault rules.
#[derive(Debug)]
pub struct Systems {
    path: PathBuf,
    anchor: i64,
    master: Master,
    writer: Mutex<Connection>,
    /// Counts the writer's committed changes: streams that push state (`WatchPublications`)
    /// wake on it instead of polling the file.
    changes: tokio::sync::watch::Sender<u64>,
    /// Active fault rules.
    pub faults: faults::Faults,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
}

impl Systems {
    /// Opens `path`, generating `spec` into it first when the file is new (or `reset` is set).
    /// `anchor` (Unix seconds) re-anchors dataset times; `None` keeps the stored anchor (or now,
    /// for a new file).
    pub fn open(
        path: &Path,
        spec: &DatasetSpec,
        reset: bool,
        anchor: Option<i64>,
    ) -> Result<Self, OpenError> {
        spec.check().map_err(OpenError::InvalidSpec)?;
        if reset {
            for suffix in ["", "-wal", "-shm"] {
                let mut p = path.as_os_str().to_owned();
                p.push(suffix);
                let _ = std::fs::remove_file(PathBuf::from(p));
            }
        }
        let mut conn = Connection::open(path)?;
        configure(&conn)?;
        let has_meta: bool =
            conn.query_row("SELECT count(*) FROM sqlite_master WHERE name = 'meta'", [], |r| {
                r.get::<_, i64>(0)
            })? > 0;
        if !has_meta {
            dataset::generate(&mut conn, spec)?;
        }
        let get = |k: &str| -> rusqlite::Result<Option<String>> {
            conn.query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| r.get(0)).optional()
        };
        let (found, found_seed) = (get("name")?.unwrap_or_default(), get("seed")?.unwrap_or_default());
        let found_seed: u64 = found_seed.parse().unwrap_or(0);
        if found != spec.name || found_seed != spec.seed {
            return Err(OpenError::Mismatch {
                path: path.display().to_string(),
                found,
                found_seed,
                wanted: spec.name.clone(),
                wanted_seed: spec.seed,
            });
        }
        let found_world = get("world")?.and_then(|t| world::WorldSpec::from_toml(&t).ok());
        if found_world.as_ref() != Some(&spec.world) {
            return Err(OpenError::WorldMismatch { path: path.display().to_string() });
        }
        let anchor = match (anchor, get("anchor")?) {
            (Some(a), _) => a,
            (None, Some(a)) => a.parse().unwrap_or(0),
            (None, None) => now_ms() / 1000,
        };
        conn.execute(
            "INSERT INTO meta(key, value) VALUES ('anchor', ?1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [anchor.to_string()],
        )?;
        // Channel drift (admin `DriftPrices`), funding claims and process events live beside the dataset; files
        // written before they existed get the tables on open.
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS channel_drift(channel INTEGER NOT NULL, region_id TEXT NOT NULL,
             sku TEXT NOT NULL, price TEXT NOT NULL, since_ms INTEGER NOT NULL,
             PRIMARY KEY(channel, region_id, sku)) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS funding_claims(claim_id TEXT PRIMARY KEY,
             idempotency_key TEXT UNIQUE NOT NULL, promotion_id TEXT NOT NULL, agreement_id TEXT NOT NULL,
             amount TEXT NOT NULL, units INTEGER NOT NULL, submitted_ms INTEGER NOT NULL);",
        )?;
        for schema in services::SCHEMAS {
            conn.execute_batch(schema)?;
        }
        services::add_columns(&conn)?;
        conn.execute_batch(sales::SCHEMA)?;
        let master = load_master(&conn)?;
        Ok(Self {
            path: path.to_owned(),
            anchor,
            master,
            writer: Mutex::new(conn),
            changes: tokio::sync::watch::Sender::new(0),
            faults: Default::default(),
        })
    }

    /// The dataset anchor, Unix seconds: stored offsets are relative to it.
    pub fn anchor(&self) -> i64 {
        self.anchor
    }

    /// Master data.
    pub fn master(&self) -> &Master {
        &self.master
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A fresh read-only connection (streams read concurrently with writes under WAL).
    pub fn reader(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        Ok(conn)
    }

    /// Runs `f` with the single writer connection; subscribers of [`Self::changes`] are woken
    /// when it changed a row.
    pub fn write<T>(&self, f: impl FnOnce(&mut Connection) -> T) -> T {
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let before = conn.total_changes();
        let out = f(&mut conn);
        if conn.total_changes() != before {
            self.changes.send_modify(|n| *n = n.wrapping_add(1));
        }
        out
    }

    /// A receiver that sees a new value after each write that changed a row.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

fn load_master(conn: &Connection) -> rusqlite::Result<Master> {
    let meta = |k: &str| -> rusqlite::Result<String> {
        conn.query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| r.get(0))
            .optional()
            .map(Option::unwrap_or_default)
    };
    let dcs: Vec<(String, String)> = conn
        .prepare("SELECT dc_id, name FROM dcs ORDER BY idx")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let regions: Vec<RegionRow> = conn
        .prepare("SELECT region_id, name, time_zone, dc_id FROM regions ORDER BY idx")?
        .query_map([], |r| {
            let dc: String = r.get(3)?;
            Ok(RegionRow {
                region_id: r.get(0)?,
                name: r.get(1)?,
                time_zone: r.get(2)?,
                dc_idx: dcs.iter().position(|d| d.0 == dc).unwrap_or(0),
            })
        })?
        .collect::<Result<_, _>>()?;
    let stores: Vec<StoreRow> = conn
        .prepare("SELECT store_id, region_idx, name FROM stores ORDER BY idx")?
        .query_map([], |r| {
            Ok(StoreRow { store_id: r.get(0)?, region_idx: r.get::<_, i64>(1)? as usize, name: r.get(2)? })
        })?
        .collect::<Result<_, _>>()?;
    let products: Vec<ProductRow> = conn
        .prepare(
            "SELECT sku, name, category, supplier_id, cost, regular_price, price_band, channels, elasticity
             FROM products ORDER BY idx",
        )?
        .query_map([], |r| {
            Ok(ProductRow {
                sku: r.get(0)?,
                name: r.get(1)?,
                category: r.get(2)?,
                supplier_id: r.get(3)?,
                cost: r.get(4)?,
                regular_price: r.get(5)?,
                price_band: r.get(6)?,
                channels: r.get(7)?,
                elasticity: r.get(8)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut categories: Vec<String> = Vec::new();
    let category_idx = products
        .iter()
        .map(|p| {
            categories.iter().position(|c| *c == p.category).unwrap_or_else(|| {
                categories.push(p.category.clone());
                categories.len() - 1
            })
        })
        .collect();
    let seed = meta("seed")?.parse().unwrap_or(0);
    let spec = world::WorldSpec::from_toml(&meta("world")?).unwrap_or_else(|_| world::WorldSpec::reference());
    let world = world::World::new(spec, seed, categories.len(), regions.len());
    Ok(Master {
        name: meta("name")?,
        seed,
        category_idx,
        categories,
        world,
        history_version: meta("history_version")?,
        history_days: meta("history_days")?.parse().unwrap_or(14),
        short_region: meta("short_region")?,
        short_skus: meta("short_skus")?.parse().unwrap_or(0),
        late_ack_region: meta("late_ack_region")?,
        invalid_agreements: meta("invalid_agreements")?
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        sku_index: products.iter().enumerate().map(|(i, p)| (p.sku.clone(), i)).collect(),
        store_index: stores.iter().enumerate().map(|(i, s)| (s.store_id.clone(), i)).collect(),
        region_index: regions.iter().enumerate().map(|(i, r)| (r.region_id.clone(), i)).collect(),
        regions,
        dcs,
        stores,
        products,
    })
}

/// Serves every service on `listener` until `shutdown` resolves.
pub async fn serve(
    systems: Arc<Systems>,
    listener: TcpListener,
    tls: Option<ServerTls>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    services::router(systems, tls.as_ref())?.serve_with_incoming_shutdown(incoming, shutdown).await
}

/// TLS for the reference server: its certificate and key, and optionally the CA that client
/// certificates must chain to (then every client must present one: mutual TLS).
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// PEM certificate (chain) of the server.
    pub cert_pem: Vec<u8>,
    /// PEM private key of the server.
    pub key_pem: Vec<u8>,
    /// PEM CA that client certificates must chain to, for mutual TLS.
    pub client_ca_pem: Option<Vec<u8>>,
}

impl ServerTls {
    /// Reads the PEM files; errors name the file.
    pub fn from_files(cert: &Path, key: &Path, client_ca: Option<&Path>) -> std::io::Result<Self> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))
        };
        Ok(Self {
            cert_pem: read(cert)?,
            key_pem: read(key)?,
            client_ca_pem: client_ca.map(read).transpose()?,
        })
    }
}

/// A server running in the background (tests, benches, demo).
#[derive(Debug)]
pub struct RunningSystems {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The systems it serves.
    pub systems: Arc<Systems>,
    tls: bool,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl RunningSystems {
    /// Starts serving `systems` on 127.0.0.1 at a free port.
    pub async fn start(systems: Systems) -> std::io::Result<Self> {
        Self::start_with_tls(systems, None).await
    }

    /// Starts serving `systems` on 127.0.0.1 at a free port, over TLS when `tls` is set.
    pub async fn start_with_tls(systems: Systems, tls: Option<ServerTls>) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let systems = Arc::new(systems);
        let tls_on = tls.is_some();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(systems.clone(), listener, tls, async {
            let _ = stopped.await;
        }));
        Ok(Self { addr, systems, tls: tls_on, stop: Some(stop), task })
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.addr)
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Inserts a row and returns the next sequential id `PREFIX-000001` for `table`.
pub(crate) fn next_id(conn: &Connection, table: &str, prefix: &str) -> rusqlite::Result<String> {
    let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {table}"), params![], |r| r.get(0))?;
    Ok(format!("{prefix}-{:06}", n + 1))
}
