//! `retail-systems`: the reference implementation of every integration contract, over SQLite.
//!
//! ```text
//! retail-systems --db .run/systems.db --listen 127.0.0.1:50051            # canonical dataset
//! retail-systems --dataset small --db /tmp/small.db --listen 127.0.0.1:0
//! retail-systems --tls-cert server.pem --tls-key server.key --tls-client-ca ca.pem   # mutual TLS
//! ```

use anyhow::Context;
use clap::{Parser, ValueEnum};
use promo_systems::{Systems, dataset::DatasetSpec, now_ms};
use std::{path::PathBuf, sync::Arc, time::Instant};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Dataset {
    /// The national launch: 600 stores, 6 regions, 3 DCs, 1,200 SKUs.
    Canonical,
    /// 12 stores, 3 regions, 40 SKUs, same failure modes: for quick experiments.
    Small,
}

/// Reference retail systems (product master, inventory, demand, funding, ERP prices,
/// replenishment, channel publication, sales) served over gRPC from one SQLite file.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// SQLite file; created and filled with the dataset when new.
    #[arg(long, env = "PROMO_SYSTEMS_DB", default_value = ".run/systems.db")]
    db: PathBuf,
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, env = "PROMO_SYSTEMS_LISTEN", default_value = "127.0.0.1:50051")]
    listen: String,
    /// Dataset to generate into a new file.
    #[arg(long, value_enum, default_value = "canonical")]
    dataset: Dataset,
    /// Override the dataset seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Delete the file first and generate the dataset again.
    #[arg(long)]
    reset: bool,
    /// Re-anchor dataset times: "now" or Unix seconds. Inbound ETAs and agreement validity are
    /// offsets from the anchor. Default: keep the stored anchor (now, for a new file).
    #[arg(long)]
    anchor: Option<String>,
    /// World file: the generating process of promotion history and in-window sales (default: the
    /// compiled-in config/world.toml). A file drawn from another world needs --reset.
    #[arg(long, env = "PROMO_SYSTEMS_WORLD")]
    world: Option<PathBuf>,
    /// POS acknowledgment delay of the late region, in milliseconds (new files only).
    #[arg(long)]
    late_ack_ms: Option<u64>,
    /// Serve TLS with this PEM certificate (chain); needs --tls-key.
    #[arg(long, env = "PROMO_SYSTEMS_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "PROMO_SYSTEMS_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates chaining to this PEM CA (mutual TLS); needs --tls-cert.
    #[arg(long, env = "PROMO_SYSTEMS_TLS_CLIENT_CA", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let mut spec = match args.dataset {
        Dataset::Canonical => DatasetSpec::canonical(),
        Dataset::Small => DatasetSpec::small(),
    };
    if let Some(seed) = args.seed {
        spec.seed = seed;
    }
    if let Some(path) = &args.world {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("--world: reading {}", path.display()))?;
        spec.world = promo_systems::world::WorldSpec::from_toml(&text)
            .with_context(|| format!("--world {}", path.display()))?;
    }
    if let Some(ms) = args.late_ack_ms {
        spec.late_ack_ms = ms;
    }
    let anchor = match args.anchor.as_deref() {
        None => None,
        Some("now") => Some(now_ms() / 1000),
        Some(s) => Some(
            s.parse::<i64>()
                .with_context(|| format!("--anchor: {s:?} is neither \"now\" nor Unix seconds"))?,
        ),
    };
    if let Some(dir) = args.db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(
            promo_systems::ServerTls::from_files(cert, key, args.tls_client_ca.as_deref())
                .context("--tls-cert/--tls-key/--tls-client-ca")?,
        ),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let t = Instant::now();
    let db = args.db.clone();
    let systems =
        tokio::task::spawn_blocking(move || Systems::open(&db, &spec, args.reset, anchor)).await??;
    let m = systems.master();
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("--listen: cannot bind {}", args.listen))?;
    println!(
        "retail-systems: dataset {} (seed {}, {} regions, {} stores, {} SKUs) ready in {:.1}s; listening on {scheme}://{}{} (db {})",
        m.name,
        m.seed,
        m.regions.len(),
        m.stores.len(),
        m.products.len(),
        t.elapsed().as_secs_f64(),
        listener.local_addr()?,
        if args.tls_client_ca.is_some() { ", client certificates required" } else { "" },
        args.db.display()
    );
    promo_systems::serve(Arc::new(systems), listener, tls, async {
        let _ = tokio::signal::ctrl_c().await;
        println!("retail-systems: shutting down");
    })
    .await?;
    Ok(())
}
