//! Worker memory with many promotions in flight: starts N small promotions (default 1,000; set
//! `PROMO_BENCH_PROMOTIONS`) on an isolated dev server, runs one worker until every one of them
//! waits for approval, and reports the process's resident memory before the worker started, with
//! all N in flight, and its peak — per in-flight promotion.
//!
//! The worker caches at most `PROMO_MAX_CACHED_WORKFLOWS` promotions (default
//! `promo_worker::DEFAULT_MAX_CACHED_WORKFLOWS`); the rest are evicted and replay on their next
//! task. The reference systems run in this process too (small dataset); their share is in the
//! "before" figure. Collision checks are off for this run (the worker gets no visibility client):
//! with them, each intake would query every running promotion.
//!
//! Run with: `make bootstrap && cargo bench -p promo-tests --bench in_flight`
//!
//! With `--features dhat-heap` it writes a heap profile instead (`tests/dhat-heap.json`, taken
//! the moment every promotion is in flight; `scripts/heap_breakdown.py` sums it by owner).
//! Allocation is then ~100 times slower: use a few dozen promotions (`PROMO_BENCH_PROMOTIONS`);
//! workflow tasks get 2 minutes instead of 10 s so that the slowed worker does not time them out.

use promo_tests::{
    env::{small_systems, spec, test_policy, worker_options},
    temporal::{run_worker_until, start_dev_server},
};
use promo_workflows::{PromotionWorkflow, api};
use std::time::{Duration, Instant};
use temporalio_client::WorkflowCountOptions;

/// Counts the bytes live on the heap and their peak. RSS keeps what the allocator once took from
/// the kernel (a burst's peak stays resident); the live heap is what the process still holds,
/// so the two together tell what the worker keeps from a high-water mark it reached once.
#[cfg(not(feature = "dhat-heap"))]
#[global_allocator]
static ALLOCATOR: peak_alloc::PeakAlloc = peak_alloc::PeakAlloc;

/// Profiles every allocation with its backtrace (`--features dhat-heap`).
#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

/// Live heap now and its peak so far, in MiB.
#[cfg(not(feature = "dhat-heap"))]
fn heap() -> (f64, f64) {
    (f64::from(ALLOCATOR.current_usage_as_mb()), f64::from(ALLOCATOR.peak_usage_as_mb()))
}

/// Live heap now and its peak so far, in MiB.
#[cfg(feature = "dhat-heap")]
fn heap() -> (f64, f64) {
    let s = dhat::HeapStats::get();
    (s.curr_bytes as f64 / 1_048_576.0, s.max_bytes as f64 / 1_048_576.0)
}

/// The heap profile, written when dropped (with every promotion in flight).
#[cfg(feature = "dhat-heap")]
fn profiler() -> Option<dhat::Profiler> {
    Some(dhat::Profiler::builder().trim_backtraces(Some(40)).build())
}

/// Stands for the profiler without `--features dhat-heap`.
#[cfg(not(feature = "dhat-heap"))]
struct NoProfile;

/// No profile without `--features dhat-heap`.
#[cfg(not(feature = "dhat-heap"))]
fn profiler() -> Option<NoProfile> {
    None
}

/// `VmRSS` and `VmHWM` of this process, in MiB.
fn rss() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut profile = profiler();
    let n: usize = std::env::var("PROMO_BENCH_PROMOTIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let dev = start_dev_server().await?;
    let client = dev.client();
    let systems = small_systems().await?;
    let mut policy = test_policy();
    // Nobody approves here: keep every deadline far away.
    policy.durations.approval_reminder = "400d".parse().map_err(anyhow::Error::msg)?;
    policy.durations.approval_escalation = "400d".parse().map_err(anyhow::Error::msg)?;
    let opts = worker_options(&systems.url(), &policy)?;
    let (before, _) = rss();
    let (heap_before, _) = heap();
    let t = Instant::now();
    let in_flight = run_worker_until(&client, opts, async {
        for i in 0..n {
            // Distinct one-day windows far ahead: each waits for approval.
            let s = spec(&format!("MEM-{i:05}"), &["R1"], (i % 30)..(i % 30 + 3), 300.0 + i as f64, 1.0);
            let mut o = api::start_options(api::TASK_QUEUE, &s);
            if profile.is_some() {
                o.task_timeout = Some(Duration::from_secs(120));
            }
            client.start_workflow(PromotionWorkflow::run, s.into(), o).await.expect("start");
        }
        let query = "WorkflowType = 'PromotionWorkflow' AND PromotionStage = 'APPROVAL'";
        loop {
            let c =
                client.count_workflows(query, WorkflowCountOptions::default()).await.expect("count").count();
            if c >= n {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(1800), "only {c} of {n} reached approval");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let measured = (rss(), heap(), t.elapsed());
        profile = None; // writes the heap profile (with dhat-heap)
        measured
    })
    .await?;
    let ((now, peak), (heap_now, heap_peak), elapsed) = in_flight;
    let cached = std::env::var("PROMO_MAX_CACHED_WORKFLOWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(promo_worker::DEFAULT_MAX_CACHED_WORKFLOWS);
    println!(
        "in_flight: {n} promotions waiting for approval on one worker caching at most {cached} (dev server, small dataset)"
    );
    println!("  reached in {:.1} s", elapsed.as_secs_f64());
    println!("  process RSS before the worker started   {before:>8.1} MiB");
    println!("  process RSS with {n} in flight        {now:>8.1} MiB");
    println!("  process peak RSS (VmHWM)                {peak:>8.1} MiB   (target: ≤ 150 MB)");
    println!(
        "  per in-flight promotion: {:.1} KiB (RSS with them minus before, / {n})",
        (now - before) * 1024.0 / n as f64
    );
    println!("  live heap before the worker started     {heap_before:>8.1} MiB");
    println!("  live heap with {n} in flight          {heap_now:>8.1} MiB");
    println!("  peak live heap                          {heap_peak:>8.1} MiB");
    println!(
        "  live heap per in-flight promotion: {:.1} KiB (live heap with them minus before, / {n}; target ≤ 40 KiB cached)",
        (heap_now - heap_before) * 1024.0 / n as f64
    );
    systems.stop().await;
    dev.shutdown().await?;
    Ok(())
}
