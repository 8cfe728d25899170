//! Streaming throughput of the reference systems over real gRPC.
//!
//! Generates the canonical dataset (600 stores × 1,200 SKUs = 720,000 store positions) into a
//! temporary SQLite file (timed once), serves it with [`promo_systems::RunningSystems`] on
//! 127.0.0.1 at a free port, and times, with a tonic client over loopback HTTP/2:
//!
//! - `InventoryService.StreamPositions` for every store position (default request), and
//! - `DemandService.StreamBaselineDemand` for every store × SKU baseline,
//!
//! each one warm-up run, then [`RUNS`] timed runs. A run is the wall time from sending the request
//! to receiving the last message, decoding every message into the generated prost types and
//! checking that it saw exactly 720,000 entries with equal-length columns. Server (SQLite read
//! on a blocking thread, encode) and client (decode) share one 2-worker tokio runtime in this
//! process, as they would share the machine in the demo.
//!
//! Run with: `cargo bench -p promo-systems --bench stream_positions`

use promo_contracts::retail::v1::{
    StreamBaselineDemandRequest, StreamPositionsRequest, demand_service_client::DemandServiceClient,
    inventory_service_client::InventoryServiceClient,
};
use promo_systems::{RunningSystems, Systems, dataset::DatasetSpec};
use prost::Message;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// Timed runs per stream (after one warm-up).
const RUNS: usize = 10;
/// Store positions in the canonical dataset.
const POSITIONS: usize = 720_000;
/// Largest message the client accepts.
const MAX_MESSAGE: usize = 64 << 20;

/// What one pass over a stream saw.
#[derive(Debug, Default, Clone, Copy)]
struct Pass {
    /// Entries (store × SKU) received.
    entries: usize,
    /// Locations / stores received.
    locations: usize,
    /// Messages received.
    messages: usize,
    /// Encoded protobuf bytes (only counted when asked, outside timed runs).
    bytes: usize,
    /// Wall time from request to end of stream.
    wall: Duration,
}

/// Streams every store position once.
async fn positions(conn: &Channel, count_bytes: bool) -> Pass {
    let t = Instant::now();
    let mut stream = InventoryServiceClient::new(conn.clone())
        .max_decoding_message_size(MAX_MESSAGE)
        .stream_positions(StreamPositionsRequest::default())
        .await
        .expect("StreamPositions")
        .into_inner();
    let mut p = Pass::default();
    while let Some(msg) = stream.message().await.expect("positions message") {
        p.messages += 1;
        if count_bytes {
            p.bytes += msg.encoded_len();
        }
        for l in &msg.locations {
            let n = l.sku_index.len();
            assert!(
                [
                    l.on_hand.len(),
                    l.in_transit.len(),
                    l.in_transit_eta.len(),
                    l.supplier_confirmed.len(),
                    l.supplier_confirmed_eta.len()
                ]
                .iter()
                .all(|&c| c == n),
                "ragged columns at {}",
                l.location_id
            );
            p.entries += n;
            p.locations += 1;
        }
    }
    p.wall = t.elapsed();
    std::hint::black_box(&p);
    p
}

/// Streams every store's baseline demand once.
async fn demand(conn: &Channel, count_bytes: bool) -> Pass {
    let t = Instant::now();
    let mut stream = DemandServiceClient::new(conn.clone())
        .max_decoding_message_size(MAX_MESSAGE)
        .stream_baseline_demand(StreamBaselineDemandRequest::default())
        .await
        .expect("StreamBaselineDemand")
        .into_inner();
    let mut p = Pass::default();
    while let Some(msg) = stream.message().await.expect("demand message") {
        p.messages += 1;
        if count_bytes {
            p.bytes += msg.encoded_len();
        }
        for s in &msg.stores {
            assert_eq!(s.sku_index.len(), s.daily_units.len(), "ragged columns at {}", s.store_id);
            p.entries += s.sku_index.len();
            p.locations += 1;
        }
    }
    p.wall = t.elapsed();
    std::hint::black_box(&p);
    p
}

/// min / median / max of `runs` (sorted in place); the median of an even count is the mean of
/// the two middle runs.
fn stats(runs: &mut [Duration]) -> (Duration, Duration, Duration) {
    runs.sort();
    let n = runs.len();
    let median = if n.is_multiple_of(2) { (runs[n / 2 - 1] + runs[n / 2]) / 2 } else { runs[n / 2] };
    (runs[0], median, runs[n - 1])
}

/// Milliseconds with two decimals.
fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

/// Times one stream and prints its row; returns the median.
async fn bench<F, Fut>(name: &str, conn: &Channel, run: F) -> Duration
where
    F: Fn(Channel, bool) -> Fut,
    Fut: std::future::Future<Output = Pass>,
{
    let warm = run(conn.clone(), true).await;
    assert_eq!(warm.entries, POSITIONS, "{name}: warm-up saw {} entries", warm.entries);
    let mut walls = Vec::with_capacity(RUNS);
    for i in 0..RUNS {
        let p = run(conn.clone(), false).await;
        assert_eq!(p.entries, POSITIONS, "{name}: run {i} saw {} entries", p.entries);
        assert_eq!(p.locations, warm.locations);
        walls.push(p.wall);
    }
    let (min, median, max) = stats(&mut walls);
    let secs = median.as_secs_f64();
    println!(
        "{name:<22} {:>9} {:>9} {:>9} {:>13.0} {:>8.1} {:>6} {:>5} {:>9.1}",
        ms(min),
        ms(median),
        ms(max),
        POSITIONS as f64 / secs,
        warm.bytes as f64 / 1e6 / secs,
        warm.locations,
        warm.messages,
        warm.bytes as f64 / 1e6,
    );
    median
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async_main());
}

async fn async_main() {
    let dir = std::env::temp_dir().join(format!("promo-bench-stream-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("canonical.db");

    let t = Instant::now();
    let systems = Systems::open(&path, &DatasetSpec::canonical(), true, None).expect("generate canonical");
    let generation = t.elapsed();
    let db_bytes: u64 = ["", "-wal"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", path.display())).ok())
        .map(|m| m.len())
        .sum();

    let server = RunningSystems::start(systems).await.expect("start systems");
    let conn = Channel::from_shared(server.url()).expect("url").connect().await.expect("connect");

    println!("stream_positions: canonical dataset over real gRPC (tonic, loopback HTTP/2)");
    println!(
        "  dataset generation (Systems::open canonical, reset): {:.2} s, {:.1} MB on disk (db + wal)",
        generation.as_secs_f64(),
        db_bytes as f64 / 1e6
    );
    println!(
        "  server {} in-process; client and server share a 2-worker tokio runtime; \
         wall time request -> last message, decode included",
        server.url()
    );
    println!("  {RUNS} timed runs per stream after 1 warm-up; each run asserts exactly {POSITIONS} entries");
    println!();
    println!(
        "{:<22} {:>9} {:>9} {:>9} {:>13} {:>8} {:>6} {:>5} {:>9}",
        "stream", "min ms", "median ms", "max ms", "entries/s", "MB/s", "locs", "msgs", "MB/run"
    );
    bench("StreamPositions", &conn, |c, b| async move { positions(&c, b).await }).await;
    bench("StreamBaselineDemand", &conn, |c, b| async move { demand(&c, b).await }).await;
    println!();
    println!("  entries/s and MB/s are at the median; MB = encoded protobuf payload (prost encoded_len)");

    drop(conn);
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
