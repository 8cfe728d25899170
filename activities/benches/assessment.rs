//! The full inventory assessment of the canonical promotion, as `promo.assess_inventory` runs it:
//! master data over gRPC, 720,000 positions and 720,000 baselines streamed from the reference
//! systems, the alignment pass, and the per-region summary with remediation options.
//!
//! The canonical dataset is generated into a temporary SQLite file and served in-process on
//! 127.0.0.1 (a free port); the promotion is the national launch (all 1,200 SKUs at 25% off in
//! all 6 regions, launching 2 days after the anchor for 14 days). Each of [`RUNS`] timed runs
//! (after one warm-up) reports:
//!
//! - `master data`: products, agreements, history and locations (`load_context`);
//! - `streams`: positions and demand streamed concurrently into cells (`Context::cells`);
//! - `compute`: `alignment::align` plus `Context::inventory_summary`;
//! - `total`: the three together, i.e. the activity minus Temporal's own overhead.
//!
//! To split the stream time into reading and transport, the same run also times the server's
//! side alone: the SQLite reads of the same rows, in process, without gRPC (`sqlite read`).
//! `transport + decode` is `streams − sqlite read` (the two overlap in the real stream, so this
//! is an upper bound of the transport's share).
//!
//! Run with: `cargo bench -p promo-activities --bench assessment`

use promo_activities::{
    Systems,
    context::load_context,
    engines::{alignment, stockout},
};
use promo_contracts::{
    promo::v1::{PromotionLine, PromotionSpec, PromotionWindow, promotion_line::Offer},
    retail::v1::Channel,
};
use promo_systems::{RunningSystems, Systems as Store, dataset::DatasetSpec};
use promo_workflows::{api::Adjustments, plan};
use std::time::{Duration, Instant};

/// Timed runs (after one warm-up).
const RUNS: usize = 10;

fn spec(anchor: i64) -> PromotionSpec {
    let local =
        |t: i64| chrono::DateTime::from_timestamp(t, 0).expect("time").format("%Y-%m-%dT%H:%M").to_string();
    PromotionSpec {
        promotion_id: "BENCH".into(),
        name: "bench".into(),
        window: Some(PromotionWindow {
            starts_at: local(anchor + 2 * 86_400),
            ends_at: local(anchor + 16 * 86_400),
            time_zone: "Etc/UTC".into(),
        }),
        regions: (0..6).map(DatasetSpec::region_id).collect(),
        stores: vec![],
        channels: vec![Channel::Pos as i32],
        lines: (0..1200)
            .map(|i| PromotionLine {
                sku: DatasetSpec::sku(i),
                offer: Some(Offer::DiscountPercent("25".into())),
                funding_agreement_id: String::new(),
                planned_uplift: String::new(),
            })
            .collect(),
        planner_id: "E0042".into(),
        description: String::new(),
    }
}

/// The server's reads alone: the same rows the two streams read, straight from SQLite.
fn sqlite_read(store: &Store) -> (Duration, usize) {
    let t = Instant::now();
    let conn = store.reader().expect("reader");
    let mut pos = conn
        .prepare(
            "SELECT sku_idx, on_hand, in_transit, in_transit_eta, confirmed, confirmed_eta
             FROM store_positions WHERE store_idx = ?1 ORDER BY sku_idx",
        )
        .expect("prepare");
    let mut dem = conn
        .prepare("SELECT sku_idx, baseline FROM store_positions WHERE store_idx = ?1 ORDER BY sku_idx")
        .expect("prepare");
    let mut rows_read = 0usize;
    let mut checksum = 0i64;
    for s in 0..store.master().stores.len() as i64 {
        let mut rows = pos.query([s]).expect("query");
        while let Some(r) = rows.next().expect("row") {
            checksum += r.get::<_, i64>(1).expect("on_hand") + r.get::<_, i64>(2).expect("in_transit");
            checksum ^= r.get::<_, i64>(3).expect("eta")
                + r.get::<_, i64>(4).expect("c")
                + r.get::<_, i64>(5).expect("ce");
            rows_read += 1;
        }
        let mut rows = dem.query([s]).expect("query");
        while let Some(r) = rows.next().expect("row") {
            checksum += r.get::<_, f64>(1).expect("baseline") as i64;
        }
    }
    std::hint::black_box(checksum);
    (t.elapsed(), rows_read)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    let n = v.len();
    if n.is_multiple_of(2) { (v[n / 2 - 1] + v[n / 2]) / 2 } else { v[n / 2] }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = std::env::temp_dir().join(format!("promo-bench-assessment-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("canonical.db");
    let store = Store::open(&path, &DatasetSpec::canonical(), true, None).expect("canonical dataset");
    store.write(|c| c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")).expect("checkpoint");
    let anchor = store.anchor();
    let reader = Store::open(&path, &DatasetSpec::canonical(), false, Some(anchor)).expect("second handle");
    let running = RunningSystems::start(store).await.expect("serve");
    let systems = Systems::new(&running.url()).expect("client");
    let plan = plan::validate_spec(&spec(anchor), anchor).expect("valid plan");
    let adjustments = Adjustments::default();

    let (mut master_t, mut stream_t, mut compute_t, mut total_t, mut read_t, mut stockout_t) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut size = 0.0;
    let mut summary = None;
    for run in 0..=RUNS {
        let t0 = Instant::now();
        let ctx = load_context(&systems, &plan, &adjustments, &[]).await.expect("context");
        let t1 = Instant::now();
        let cells = ctx.cells(&systems).await.expect("cells");
        let t2 = Instant::now();
        let scenario = ctx.scenario();
        let a = alignment::align(&cells, &scenario, ctx.regions.len(), ctx.lines.len());
        let t3 = Instant::now();
        let k = ctx.learned.as_ref().and_then(|l| l.store_size).expect("the model's store-level size");
        let risks = stockout::assess(&cells, &scenario, ctx.regions.len(), ctx.lines.len(), k, 5);
        let t4 = Instant::now();
        let s = ctx.inventory_summary(&cells, &scenario, &a, 0.9, Some(&risks), 0.0);
        let t5 = Instant::now();
        assert_eq!(cells.len(), 720_000);
        let (read, rows) = sqlite_read(&reader);
        assert_eq!(rows, 720_000);
        if run > 0 {
            master_t.push(t1 - t0);
            stream_t.push(t2 - t1);
            compute_t.push((t3 - t2) + (t5 - t4));
            stockout_t.push(t4 - t3);
            total_t.push(t5 - t0);
            read_t.push(read);
        }
        summary = Some(s);
        size = k;
    }
    let (m, st, c, tot, rd) =
        (median(master_t), median(stream_t), median(compute_t), median(total_t), median(read_t));
    println!(
        "assessment: promo.assess_inventory's work on the canonical promotion (1,200 SKUs × 600 stores)"
    );
    println!("  reference systems in-process on loopback gRPC; {RUNS} timed runs after 1 warm-up; medians");
    println!();
    println!("  {:<28} {:>9}", "step", "median ms");
    println!("  {:<28} {:>9}", "master data", ms(m));
    println!("  {:<28} {:>9}", "streams (positions+demand)", ms(st));
    println!("  {:<28} {:>9}", "  of which sqlite read", ms(rd));
    println!("  {:<28} {:>9}", "  of which transport+decode", ms(st.saturating_sub(rd)));
    println!("  {:<28} {:>9}", "compute (align + summary)", ms(c));
    println!("  {:<28} {:>9}", "stockout probabilities", ms(median(stockout_t)));
    println!("  {:<28} {:>9}", "total", ms(tot));
    println!();
    let s = summary.expect("ran");
    let failing: Vec<&str> = s.regions.iter().filter(|r| !r.passes).map(|r| r.region_id.as_str()).collect();
    println!(
        "  sanity: {} positions, failing regions {failing:?}, {} remediation options (target: total ≤ 1 s)",
        s.positions_read,
        s.options.len()
    );
    println!(
        "  stockout risk (store-level size {size:.2}): {}",
        s.regions
            .iter()
            .map(|r| format!(
                "{} {:.1}%",
                r.region_id,
                100.0 * r.stockout_probability.parse::<f64>().unwrap_or(0.0)
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    running.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
