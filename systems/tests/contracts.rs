//! Contract tests: real gRPC clients against the reference server over a real SQLite file.

use promo_contracts::{
    pbjson_types::Timestamp,
    retail::v1::{
        admin_service_client::AdminServiceClient, demand_service_client::DemandServiceClient,
        funding_service_client::FundingServiceClient, inventory_service_client::InventoryServiceClient,
        location_service_client::LocationServiceClient, price_service_client::PriceServiceClient,
        product_service_client::ProductServiceClient, publication_service_client::PublicationServiceClient,
        sales_service_client::SalesServiceClient, *,
    },
};
use promo_systems::{RunningSystems, Systems, dataset::DatasetSpec};
use std::{
    collections::HashMap,
    path::PathBuf,
    sync::OnceLock,
    time::{Duration, Instant},
};
use tonic::{Code, transport::Channel as Conn};

/// The canonical dataset is generated once per test binary; each test serves its own copy.
fn canonical_file() -> &'static PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("promo-contracts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("canonical.db");
        let systems = Systems::open(&path, &DatasetSpec::canonical(), true, Some(1_800_000_000)).unwrap();
        // Checkpoint the WAL into the main file so a plain copy carries everything.
        systems.write(|c| c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")).unwrap();
        path
    })
}

async fn serve_canonical(name: &str) -> RunningSystems {
    let src = canonical_file();
    let dst = src.with_file_name(format!("{name}.db"));
    std::fs::copy(src, &dst).unwrap();
    let systems = Systems::open(&dst, &DatasetSpec::canonical(), false, None).unwrap();
    RunningSystems::start(systems).await.unwrap()
}

async fn serve_small(name: &str) -> (RunningSystems, PathBuf) {
    let dir = std::env::temp_dir().join(format!("promo-contracts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.db"));
    let systems = Systems::open(&path, &DatasetSpec::small(), true, None).unwrap();
    (RunningSystems::start(systems).await.unwrap(), path)
}

async fn connect(s: &RunningSystems) -> Conn {
    Conn::from_shared(s.url()).unwrap().connect().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canonical_dataset_has_the_national_launch_shape() {
    let s = serve_canonical("shape").await;
    let conn = connect(&s).await;
    let info = AdminServiceClient::new(conn.clone())
        .get_dataset_info(GetDatasetInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!((info.regions, info.stores, info.dcs, info.skus), (6, 600, 3, 1200));
    assert_eq!(info.store_positions, 720_000);
    assert_eq!(info.built_in_failures.len(), 3, "{:?}", info.built_in_failures);

    let loc = LocationServiceClient::new(conn.clone())
        .list_locations(ListLocationsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!((loc.regions.len(), loc.stores.len(), loc.dcs.len()), (6, 600, 3));
    for r in &loc.regions {
        assert_eq!(
            loc.stores.iter().filter(|st| st.region_id == r.region_id).count(),
            100,
            "{}",
            r.region_id
        );
    }

    // Stream every store position and count them.
    let t = Instant::now();
    let mut stream = InventoryServiceClient::new(conn.clone())
        .stream_positions(StreamPositionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let (mut positions, mut locations, mut dictionary) = (0usize, 0usize, 0usize);
    while let Some(msg) = stream.message().await.unwrap() {
        dictionary += msg.sku_dictionary.len();
        for l in &msg.locations {
            assert_eq!(l.sku_index.len(), l.on_hand.len());
            assert_eq!(l.sku_index.len(), l.supplier_confirmed_eta.len());
            positions += l.sku_index.len();
            locations += 1;
        }
    }
    println!("streamed {positions} positions from {locations} locations in {:?} (debug build)", t.elapsed());
    assert_eq!(dictionary, 1200);
    assert_eq!(locations, 600);
    assert_eq!(positions, 720_000);
    s.stop().await;
}

/// Sums units and demand per region from the two streams.
async fn region_cover(conn: &Conn, anchor: i64) -> HashMap<String, (f64, f64, i64)> {
    let mut demand: HashMap<(String, u32), f64> = HashMap::new();
    let mut ds = DemandServiceClient::new(conn.clone())
        .stream_baseline_demand(StreamBaselineDemandRequest::default())
        .await
        .unwrap()
        .into_inner();
    while let Some(msg) = ds.message().await.unwrap() {
        for st in msg.stores {
            for (k, d) in st.sku_index.iter().zip(&st.daily_units) {
                *demand.entry((st.store_id.clone(), *k)).or_default() += f64::from(*d);
            }
        }
    }
    // region -> (on hand + inbound before anchor+2d, 14-day baseline demand, latest inbound ETA)
    let mut out: HashMap<String, (f64, f64, i64)> = HashMap::new();
    let mut ps = InventoryServiceClient::new(conn.clone())
        .stream_positions(StreamPositionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    while let Some(msg) = ps.message().await.unwrap() {
        for l in msg.locations {
            let e = out.entry(l.region_id.clone()).or_default();
            for i in 0..l.sku_index.len() {
                let mut units = l.on_hand[i] as f64;
                if l.in_transit[i] > 0 && l.in_transit_eta[i] <= anchor + 2 * 86_400 {
                    units += l.in_transit[i] as f64;
                }
                e.0 += units;
                e.1 += 14.0 * demand[&(l.location_id.clone(), l.sku_index[i])];
                e.2 = e.2.max(l.in_transit_eta[i]);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_in_failures_are_observable_through_the_contracts() {
    let s = serve_canonical("failures").await;
    let conn = connect(&s).await;
    let info = AdminServiceClient::new(conn.clone())
        .get_dataset_info(GetDatasetInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let anchor = s.systems.anchor();

    // 1. Incomplete allocation: the short region cannot cover two weeks of baseline by launch,
    //    every other region can; its inbound stock arrives days later.
    let cover = region_cover(&conn, anchor).await;
    for (region, (units, demand, latest_eta)) in &cover {
        let ratio = units / demand;
        println!("{region}: stock by launch / 14-day baseline = {ratio:.2}");
        if *region == info.short_region_id {
            assert!(ratio < 0.7, "{region} should be short: {ratio}");
            assert!(*latest_eta > anchor + 4 * 86_400, "{region} inbound arrives after 4 days");
        } else {
            assert!(ratio > 1.2, "{region} should be covered: {ratio}");
        }
    }

    // 2. Missing funding: every agreement id, 3 not active; an unknown id is listed as unknown.
    let mut ids: Vec<String> = (0..32).map(DatasetSpec::agreement_id).collect();
    ids.push("FA-999".into());
    let funding = FundingServiceClient::new(conn.clone())
        .get_agreements(GetAgreementsRequest { agreement_ids: ids })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(funding.unknown_ids, vec!["FA-999".to_string()]);
    let invalid: Vec<&str> = funding
        .agreements
        .iter()
        .filter(|a| a.status() != AgreementStatus::Active)
        .map(|a| a.agreement_id.as_str())
        .collect();
    assert_eq!(invalid, info.invalid_agreement_ids.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(invalid.len(), 3);

    // 3. Late POS acknowledgments: the late region's POS publication is still pending after a
    //    normal region's has been acknowledged.
    let mut publ = PublicationServiceClient::new(conn.clone());
    let publish = |region: &str| {
        let req = PublishRequest {
            idempotency_key: format!("ack-test:{region}"),
            promotion_id: "ACK-TEST".into(),
            revision: 1,
            channel: Channel::Pos as i32,
            region_id: region.into(),
            kind: PublicationKind::Activate as i32,
            price_change_id: "PC-x".into(),
            ..Default::default()
        };
        let mut c = publ.clone();
        async move { c.publish(req).await.unwrap().into_inner().publication.unwrap() }
    };
    let normal = publish("R1").await;
    let late = publish(&info.late_ack_region_id).await;
    acknowledged(&mut publ, &normal.publication_id).await;
    let p = publ
        .get_publication(GetPublicationRequest { publication_id: late.publication_id.clone() })
        .await
        .unwrap()
        .into_inner()
        .publication
        .unwrap();
    assert_eq!(p.state(), PublicationState::PendingAck, "late region acknowledged too early");
    s.stop().await;
}

fn publish_req(key: &str, channel: Channel, region: &str) -> PublishRequest {
    PublishRequest {
        idempotency_key: key.into(),
        promotion_id: "IDEM-1".into(),
        revision: 1,
        channel: channel as i32,
        region_id: region.into(),
        kind: PublicationKind::Activate as i32,
        price_change_id: "PC-000001".into(),
        effective: Some(TimeRange {
            start: Some(Timestamp { seconds: 1_900_000_000, nanos: 0 }),
            end: Some(Timestamp { seconds: 1_901_209_600, nanos: 0 }),
        }),
        line_count: 3,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_is_idempotent_by_key_and_durable() {
    let (s, path) = serve_small("idempotent").await;
    let mut publ = PublicationServiceClient::new(connect(&s).await);
    let first = publ
        .publish(publish_req("IDEM-1:r1:POS:R1:activate", Channel::Pos, "R1"))
        .await
        .unwrap()
        .into_inner();
    let again = publ
        .publish(publish_req("IDEM-1:r1:POS:R1:activate", Channel::Pos, "R1"))
        .await
        .unwrap()
        .into_inner();
    assert!(!first.replayed);
    assert!(again.replayed);
    assert_eq!(first.publication.as_ref().unwrap().publication_id, again.publication.unwrap().publication_id);
    let listed = publ
        .list_publications(ListPublicationsRequest { promotion_id: "IDEM-1".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.publications.len(), 1);

    // The same key for a different target is refused, not silently replayed.
    let err =
        publ.publish(publish_req("IDEM-1:r1:POS:R1:activate", Channel::Ecommerce, "")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("IDEM-1:r1:POS:R1:activate"), "{err}");

    // Durable: a new server over the same file sees the one record.
    s.stop().await;
    let systems = Systems::open(&path, &DatasetSpec::small(), false, None).unwrap();
    let s = RunningSystems::start(systems).await.unwrap();
    let mut publ = PublicationServiceClient::new(connect(&s).await);
    let listed = publ
        .list_publications(ListPublicationsRequest { promotion_id: "IDEM-1".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.publications.len(), 1);
    assert_eq!(listed.publications[0].publication_id, first.publication.unwrap().publication_id);

    // Price changes too.
    let mut prices = PriceServiceClient::new(connect(&s).await);
    let stage = || StagePriceChangeRequest {
        idempotency_key: "IDEM-1:r1:erp".into(),
        promotion_id: "IDEM-1".into(),
        revision: 1,
        region_ids: vec!["R1".into()],
        effective_from: Some(Timestamp { seconds: 1_900_000_000, nanos: 0 }),
        effective_to: Some(Timestamp { seconds: 1_901_209_600, nanos: 0 }),
        lines: vec![PriceLine { sku: DatasetSpec::sku(0), promo_price: "1.99".into(), ..Default::default() }],
    };
    let a = prices.stage_price_change(stage()).await.unwrap().into_inner();
    let b = prices.stage_price_change(stage()).await.unwrap().into_inner();
    assert_eq!(a.price_change.unwrap().price_change_id, b.price_change.unwrap().price_change_id);
    assert!(b.replayed);
    let all = prices
        .list_price_changes(ListPriceChangesRequest { promotion_id: "IDEM-1".into(), include_lines: true })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.price_changes.len(), 1);
    assert_eq!(all.price_changes[0].lines, stage().lines, "lines come back as staged");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_are_observed_by_clients() {
    let (s, _) = serve_small("faults").await;
    let conn = connect(&s).await;
    let mut admin = AdminServiceClient::new(conn.clone());

    // Error rate 1 on inventory: every stream fails with UNAVAILABLE; other services are untouched.
    admin
        .inject_fault(InjectFaultRequest {
            fault: Some(Fault { service: "inventory".into(), error_rate: "1".into(), ..Default::default() }),
        })
        .await
        .unwrap();
    let err = InventoryServiceClient::new(conn.clone())
        .stream_positions(StreamPositionsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains("injected fault"), "{err}");
    ProductServiceClient::new(conn.clone())
        .get_products(GetProductsRequest { skus: vec![DatasetSpec::sku(0)] })
        .await
        .unwrap();

    // Added latency is observed.
    admin
        .inject_fault(InjectFaultRequest {
            fault: Some(Fault {
                service: "product".into(),
                latency_ms: 300,
                max_hits: 1,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let t = Instant::now();
    ProductServiceClient::new(conn.clone())
        .get_products(GetProductsRequest { skus: vec![DatasetSpec::sku(0)] })
        .await
        .unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300), "latency not applied: {:?}", t.elapsed());
    assert_eq!(admin.list_faults(ListFaultsRequest {}).await.unwrap().into_inner().faults.len(), 2);

    // Ambiguous commit: the publication is written, the response lost; the retry gets it back.
    admin
        .inject_fault(InjectFaultRequest {
            fault: Some(Fault {
                service: "publication".into(),
                method: "Publish".into(),
                lose_response: true,
                max_hits: 1,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let mut publ = PublicationServiceClient::new(conn.clone());
    let err = publ.publish(publish_req("IDEM-1:lost", Channel::Ecommerce, "")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    let retry = publ.publish(publish_req("IDEM-1:lost", Channel::Ecommerce, "")).await.unwrap().into_inner();
    assert!(retry.replayed, "the lost write was committed and must be replayed");
    let all = publ
        .list_publications(ListPublicationsRequest { promotion_id: "IDEM-1".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.publications.len(), 1);

    // Acknowledgment never arrives while the rule is active.
    admin
        .inject_fault(InjectFaultRequest {
            fault: Some(Fault {
                service: "publication".into(),
                channel: Channel::Loyalty as i32,
                ack_never: true,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let p = publ
        .publish(publish_req("IDEM-1:never", Channel::Loyalty, ""))
        .await
        .unwrap()
        .into_inner()
        .publication
        .unwrap();
    let got = s.systems.write(|c| {
        c.query_row(
            "SELECT ack_due_ms FROM publications WHERE publication_id = ?1",
            [&p.publication_id],
            |r| r.get::<_, Option<i64>>(0),
        )
    });
    assert_eq!(got.unwrap(), None, "ack_never publications have no acknowledgment due");

    assert_eq!(admin.clear_faults(ClearFaultsRequest {}).await.unwrap().into_inner().removed, 4);
    InventoryServiceClient::new(conn).stream_positions(StreamPositionsRequest::default()).await.unwrap();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_down_holds_acknowledgments_until_it_returns() {
    let (s, _) = serve_small("channel-down").await;
    let conn = connect(&s).await;
    let mut admin = AdminServiceClient::new(conn.clone());
    let mut publ = PublicationServiceClient::new(conn.clone());
    // Acknowledgments come due at once, so any wait seen below is the outage's.
    let due_now = Fault { service: "publication".into(), ack_delay_ms: 1, ..Default::default() };
    admin.inject_fault(InjectFaultRequest { fault: Some(due_now.clone()) }).await.unwrap();
    let refused = admin
        .inject_fault(InjectFaultRequest {
            fault: Some(Fault { service: "inventory".into(), channel_down: true, ..Default::default() }),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().starts_with("fault.channel_down:"), "{refused}");

    admin
        .inject_fault(InjectFaultRequest {
            fault: Some(Fault {
                channel: Channel::Pos as i32,
                region_id: "R1".into(),
                channel_down: true,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let state = |p: Option<Publication>| p.unwrap().state();
    let down = publ.publish(publish_req("DOWN-1:r1", Channel::Pos, "R1")).await.unwrap().into_inner();
    let other = publ.publish(publish_req("DOWN-1:r2", Channel::Pos, "R2")).await.unwrap().into_inner();
    let down_id = down.publication.unwrap().publication_id;
    let other_id = other.publication.unwrap().publication_id;
    let read = |id: &str| GetPublicationRequest { publication_id: id.to_owned() };
    // Wait on R2's acknowledgment (1 ms away): once it is there, R1's is due too, and held.
    let t = Instant::now();
    loop {
        let p = publ.get_publication(read(&other_id)).await.unwrap().into_inner().publication;
        if state(p) == PublicationState::Acknowledged {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "R2's POS never acknowledged");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for _ in 0..3 {
        let p = publ.get_publication(read(&down_id)).await.unwrap().into_inner().publication;
        assert_eq!(state(p), PublicationState::PendingAck, "R1's POS is down");
    }

    // The channel returns: it acknowledges what it held, stamped after the outage began.
    admin.clear_faults(ClearFaultsRequest {}).await.unwrap();
    let p = publ.get_publication(read(&down_id)).await.unwrap().into_inner().publication.unwrap();
    assert_eq!(p.state(), PublicationState::Acknowledged);
    assert!(p.acknowledged_at.unwrap().seconds >= p.published_at.unwrap().seconds);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_messages_that_name_it() {
    let (s, _) = serve_small("bad-input").await;
    let conn = connect(&s).await;
    let err = ProductServiceClient::new(conn.clone())
        .get_products(GetProductsRequest {
            skus: vec![DatasetSpec::sku(0), "SKU-NOPE".into(), "SKU-GONE".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), "unknown SKUs: SKU-NOPE, SKU-GONE");

    let err = InventoryServiceClient::new(conn.clone())
        .stream_positions(StreamPositionsRequest { region_ids: vec!["R9".into()], ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(err.message(), "unknown regions: R9");

    let mut prices = PriceServiceClient::new(conn.clone());
    let req = |price: &str| StagePriceChangeRequest {
        idempotency_key: format!("bad:{price}"),
        promotion_id: "BAD".into(),
        revision: 1,
        region_ids: vec!["R1".into()],
        effective_from: Some(Timestamp { seconds: 1_900_000_000, nanos: 0 }),
        effective_to: Some(Timestamp { seconds: 1_901_000_000, nanos: 0 }),
        lines: vec![
            PriceLine { sku: DatasetSpec::sku(0), promo_price: "1.99".into(), ..Default::default() },
            PriceLine { sku: DatasetSpec::sku(1), promo_price: price.into(), ..Default::default() },
        ],
    };
    for (bad, why) in [
        ("12,50", "is not a decimal number"),
        ("1.999", "3 decimal places"),
        ("0", "above zero"),
        ("-2", "above zero"),
    ] {
        let err = prices.stage_price_change(req(bad)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad}");
        assert!(err.message().starts_with("lines[1].promo_price: "), "{bad}: {err}");
        assert!(err.message().contains(why), "{bad}: {err}");
    }
    let mut outside = req("2.50");
    outside.lines[1].region_ids = vec!["R2".into()];
    let err = prices.stage_price_change(outside).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "lines[1].region_ids: \"R2\" is not one of the price change's regions");
    let err = SalesServiceClient::new(conn)
        .get_sales_actuals(GetSalesActualsRequest {
            promotion_id: "BAD".into(),
            lines: vec![SalesLine { sku: "SKU-NOPE".into(), promo_price: "1".into(), ..Default::default() }],
            scopes: vec![],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.message(), "unknown SKUs: SKU-NOPE");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sales_simulation_is_deterministic_and_stock_capped() {
    let (s, _) = serve_small("sales").await;
    let conn = connect(&s).await;
    let products = ProductServiceClient::new(conn.clone())
        .get_products(GetProductsRequest { skus: (0..40).map(DatasetSpec::sku).collect() })
        .await
        .unwrap()
        .into_inner()
        .products;
    let lines: Vec<SalesLine> = products
        .iter()
        .map(|p| {
            let regular: f64 = p.regular_price.parse().unwrap();
            SalesLine {
                sku: p.sku.clone(),
                promo_price: format!("{:.2}", regular * 0.8),
                ..Default::default()
            }
        })
        .collect();
    let start = s.systems.anchor() + 2 * 86_400;
    let window = TimeRange {
        start: Some(Timestamp { seconds: start, nanos: 0 }),
        end: Some(Timestamp { seconds: start + 14 * 86_400, nanos: 0 }),
    };
    let req = GetSalesActualsRequest {
        promotion_id: "SALES".into(),
        lines,
        scopes: ["R1", "R2", "R3"]
            .iter()
            .map(|r| SalesScope { region_id: (*r).into(), window: Some(window) })
            .collect(),
        ..Default::default()
    };
    let mut sales = SalesServiceClient::new(conn);
    let a = sales.get_sales_actuals(req.clone()).await.unwrap().into_inner();
    let b = sales.get_sales_actuals(req.clone()).await.unwrap().into_inner();
    assert_eq!(a, b, "same request, same answer");
    assert_eq!(a.actuals.len(), 3 * 40);
    let stockouts =
        |r: &str| a.actuals.iter().filter(|x| x.region_id == r).map(|x| x.stockout_store_days).sum::<u32>();
    let short = DatasetSpec::small().short_region.map(DatasetSpec::region_id).unwrap();
    println!("stockout store-days: R1 {} R2 {} R3 {}", stockouts("R1"), stockouts("R2"), stockouts("R3"));
    assert!(stockouts(&short) > 2 * stockouts("R1").max(1), "the short region stocks out far more");
    for x in &a.actuals {
        assert!(x.units_sold <= x.available_units, "{x:?}");
        assert_eq!(x.ending_units, x.available_units - x.units_sold, "{x:?}");
    }
    // A line on promotion in some regions only (dropped or substituted elsewhere) sells there only.
    let mut scoped = req.clone();
    scoped.lines[0].region_ids = vec!["R3".into()];
    let c = sales.get_sales_actuals(scoped).await.unwrap().into_inner();
    let sku0 = DatasetSpec::sku(0);
    let rows: Vec<&str> = c.actuals.iter().filter(|x| x.sku == sku0).map(|x| x.region_id.as_str()).collect();
    assert_eq!(rows, vec!["R3"]);
    assert_eq!(c.actuals.len(), 3 * 40 - 2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_transfers_move_stock_once_released_and_the_stream_shows_each_store() {
    use promo_contracts::retail::v1::replenishment_service_client::ReplenishmentServiceClient;
    let (s, _) = serve_small("transfers").await;
    let conn = connect(&s).await;
    let sku = DatasetSpec::sku(3);
    let regular: f64 = ProductServiceClient::new(conn.clone())
        .get_products(GetProductsRequest { skus: vec![sku.clone()] })
        .await
        .unwrap()
        .into_inner()
        .products[0]
        .regular_price
        .parse()
        .unwrap();
    let start = s.systems.anchor() + 2 * 86_400;
    let scope = |days: i64| SalesScope {
        region_id: "R1".into(),
        window: Some(TimeRange {
            start: Some(Timestamp { seconds: start, nanos: 0 }),
            end: Some(Timestamp { seconds: start + days * 86_400, nanos: 0 }),
        }),
    };
    let line =
        SalesLine { sku: sku.clone(), promo_price: format!("{:.2}", regular * 0.6), ..Default::default() };
    let stream = |days: i64| StreamStoreSellThroughRequest {
        promotion_id: "MOVE".into(),
        lines: vec![line.clone()],
        scopes: vec![scope(days)],
        without_store_transfers: false,
    };
    let mut sales = SalesServiceClient::new(conn.clone());
    let read = |req: StreamStoreSellThroughRequest| {
        let mut sales = sales.clone();
        async move {
            let mut st = sales.stream_store_sell_through(req).await.unwrap().into_inner();
            let (mut stores, mut dcs) = (Vec::new(), Vec::new());
            while let Some(m) = st.message().await.unwrap() {
                stores.extend(m.stores);
                dcs.extend(m.dcs);
            }
            (stores, dcs)
        }
    };
    let (stores, dcs) = read(stream(3)).await;
    assert!(stores.len() > 2 && stores.iter().all(|x| x.region_id == "R1" && x.sku_index == vec![0]));
    assert_eq!(dcs.len(), 1, "R1's DC: {dcs:?}");
    let before_dc = dcs[0].available[0];
    assert!(before_dc > 0, "{dcs:?}");
    let units = before_dc.min(10);
    // Three weeks at 40% off: the busiest store sells out; the emptiest store receives.
    let (to, from) = (stores[0].store_id.clone(), stores[1].store_id.clone());
    let mut orders = ReplenishmentServiceClient::new(conn.clone());
    let order = |lines: Vec<OrderLine>, dc: &str, key: &str| CreateTransferOrderRequest {
        idempotency_key: key.into(),
        promotion_id: "MOVE".into(),
        from_dc_id: dc.into(),
        to_region_id: "R1".into(),
        lines,
        release_at: Some(Timestamp { seconds: start + 86_400, nanos: 0 }),
        proposed: true,
    };
    // Bad lines are named.
    let wrong = order(
        vec![OrderLine { sku: sku.clone(), units: 5, to_store_id: to.clone(), from_store_id: to.clone() }],
        "",
        "k0",
    );
    let e = orders.create_transfer_order(wrong).await.unwrap_err();
    assert_eq!(e.message(), "lines[0]: from and to are the same store");
    let no_source = order(vec![OrderLine { sku: sku.clone(), units: 5, ..Default::default() }], "", "k0");
    let e = orders.create_transfer_order(no_source).await.unwrap_err();
    assert_eq!(e.message(), "lines[0].from_store_id: is required when the order has no from_dc_id");
    // A proposed DC order moves nothing until released.
    let dc_id = dcs[0].dc_id.clone();
    let proposed = order(
        vec![OrderLine { sku: sku.clone(), units, to_store_id: to.clone(), ..Default::default() }],
        &dc_id,
        "k1",
    );
    let o = orders.create_transfer_order(proposed).await.unwrap().into_inner().order.unwrap();
    assert_eq!(o.state(), OrderState::Proposed);
    let sold = |stores: &[StoreSellThrough], id: &str| {
        let x = stores.iter().find(|x| x.store_id == id).unwrap();
        (x.units_sold[0], x.on_hand[0], x.inbound_units[0])
    };
    let (unreleased, _) = read(stream(14)).await;
    let (unreleased_early, _) = read(stream(1)).await;
    let released_req = ReleaseOrderRequest {
        order_id: o.order_id.clone(),
        release_at: o.eta.map(|_| Timestamp { seconds: start + 86_400, nanos: 0 }),
    };
    let r = orders.release_order(released_req.clone()).await.unwrap().into_inner().order.unwrap();
    assert_eq!(r.state(), OrderState::Released);
    assert_eq!(r.eta.unwrap().seconds, start + 2 * 86_400, "one day's lead");
    // Idempotent.
    assert_eq!(orders.release_order(released_req).await.unwrap().into_inner().order.unwrap(), r);
    let (released, dcs) = read(stream(14)).await;
    assert_eq!(dcs[0].available[0], before_dc - units, "the DC's units are committed");
    let (a, b) = (sold(&unreleased, &to), sold(&released, &to));
    assert_eq!(b.0 + b.1, a.0 + a.1 + units, "the store sold or holds the units: {a:?} -> {b:?}");
    // Before they land they are inbound.
    let (early, _) = read(stream(1)).await;
    assert_eq!(sold(&early, &to).2, sold(&unreleased_early, &to).2 + units);
    // A store -> store transfer leaves its source at release.
    let between = order(
        vec![OrderLine { sku: sku.clone(), units: 3, to_store_id: to.clone(), from_store_id: from.clone() }],
        "",
        "k2",
    );
    let o = orders.create_transfer_order(between).await.unwrap().into_inner().order.unwrap();
    orders
        .release_order(ReleaseOrderRequest {
            order_id: o.order_id,
            release_at: Some(Timestamp { seconds: start, nanos: 0 }),
        })
        .await
        .unwrap();
    let (after, _) = read(stream(14)).await;
    let (x, y) = (sold(&released, &from), sold(&after, &from));
    assert!(y.0 + y.1 <= x.0 + x.1 - 3 + 1, "the source lost 3 units: {x:?} -> {y:?}");
    // The counterfactual: the same draws without any of the promotion's store transfers.
    let mut without = stream(14);
    without.without_store_transfers = true;
    let (none, _) = read(without).await;
    assert_eq!(sold(&none, &to), sold(&unreleased, &to));
    let actuals = sales
        .get_sales_actuals(GetSalesActualsRequest {
            promotion_id: "MOVE".into(),
            lines: vec![line.clone()],
            scopes: vec![scope(14)],
            without_store_transfers: true,
        })
        .await
        .unwrap()
        .into_inner()
        .actuals;
    let units: i64 = none.iter().map(|x| x.units_sold[0]).sum();
    assert!((actuals[0].units_sold - units).abs() <= none.len() as i64, "rounded per store");
    s.stop().await;
}

/// The test-only certificates in `tests/certs/`: a CA, a server certificate for localhost and
/// 127.0.0.1, and a client certificate, all signed by the CA (valid until 2126).
fn cert(name: &str) -> Vec<u8> {
    std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/certs").join(name)).unwrap()
}

async fn tls_client(
    url: &str,
    identity: bool,
) -> Result<LocationServiceClient<Conn>, tonic::transport::Error> {
    let mut tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(cert("ca.pem")));
    if identity {
        tls = tls.identity(tonic::transport::Identity::from_pem(cert("client.pem"), cert("client.key")));
    }
    Ok(LocationServiceClient::new(Conn::from_shared(url.to_owned()).unwrap().tls_config(tls)?.connect_lazy()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificates_is_enforced() {
    let dir = std::env::temp_dir().join(format!("promo-contracts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let systems = Systems::open(&dir.join("tls.db"), &DatasetSpec::small(), true, None).unwrap();
    let tls = promo_systems::ServerTls {
        cert_pem: cert("server.pem"),
        key_pem: cert("server.key"),
        client_ca_pem: Some(cert("ca.pem")),
    };
    let s = RunningSystems::start_with_tls(systems, Some(tls)).await.unwrap();
    assert!(s.url().starts_with("https://127.0.0.1:"), "{}", s.url());

    // A client trusting the CA and presenting its certificate is served.
    let mut ok = tls_client(&s.url(), true).await.unwrap();
    let regions = ok.list_locations(ListLocationsRequest {}).await.unwrap().into_inner().regions;
    assert_eq!(regions.len(), 3);

    // Without a client certificate the handshake is refused.
    let mut anonymous = tls_client(&s.url(), false).await.unwrap();
    assert!(anonymous.list_locations(ListLocationsRequest {}).await.is_err());

    // Plain text to the TLS port gets nothing either.
    let plain = s.url().replace("https://", "http://");
    let mut plain = LocationServiceClient::new(Conn::from_shared(plain).unwrap().connect_lazy());
    assert!(plain.list_locations(ListLocationsRequest {}).await.is_err());
    s.stop().await;
}

/// Polls until `id` is acknowledged.
async fn acknowledged(publ: &mut PublicationServiceClient<Conn>, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let p = publ
            .get_publication(GetPublicationRequest { publication_id: id.into() })
            .await
            .unwrap()
            .into_inner()
            .publication
            .unwrap();
        if p.state() == PublicationState::Acknowledged {
            return;
        }
        assert!(Instant::now() < deadline, "{id} never acknowledged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_prices_follow_acknowledged_publications_and_drift_until_republished() {
    let (s, _) = serve_small("live-prices").await;
    let conn = connect(&s).await;
    let (mut publ, mut prices) =
        (PublicationServiceClient::new(conn.clone()), PriceServiceClient::new(conn.clone()));
    let (mut admin, mut products) = (AdminServiceClient::new(conn.clone()), ProductServiceClient::new(conn));
    let skus: Vec<String> = (0..3).map(DatasetSpec::sku).collect();
    let regular: Vec<String> = products
        .get_products(GetProductsRequest { skus: skus.clone() })
        .await
        .unwrap()
        .into_inner()
        .products
        .into_iter()
        .map(|p| p.regular_price)
        .collect();
    let read = |publ: &mut PublicationServiceClient<Conn>| {
        let req =
            GetLivePricesRequest { channel: Channel::Pos as i32, region_id: "R1".into(), skus: skus.clone() };
        let mut publ = publ.clone();
        async move {
            publ.get_live_prices(req)
                .await
                .unwrap()
                .into_inner()
                .prices
                .into_iter()
                .map(|p| p.price)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(read(&mut publ).await, regular, "nothing published: regular prices");

    let pc = prices
        .stage_price_change(StagePriceChangeRequest {
            idempotency_key: "LIVE-1:r1:erp".into(),
            promotion_id: "LIVE-1".into(),
            revision: 1,
            region_ids: vec!["R1".into()],
            effective_from: Some(Timestamp { seconds: 1_900_000_000, nanos: 0 }),
            effective_to: Some(Timestamp { seconds: 1_901_209_600, nanos: 0 }),
            lines: skus
                .iter()
                .map(|s| PriceLine { sku: s.clone(), promo_price: "1.50".into(), ..Default::default() })
                .collect(),
        })
        .await
        .unwrap()
        .into_inner()
        .price_change
        .unwrap()
        .price_change_id;
    let publish = |key: &str, kind: PublicationKind| PublishRequest {
        idempotency_key: key.into(),
        promotion_id: "LIVE-1".into(),
        kind: kind as i32,
        price_change_id: pc.clone(),
        ..publish_req(key, Channel::Pos, "R1")
    };
    let a = publ.publish(publish("LIVE-1:activate", PublicationKind::Activate)).await.unwrap().into_inner();
    acknowledged(&mut publ, &a.publication.unwrap().publication_id).await;
    assert_eq!(read(&mut publ).await, ["1.50", "1.50", "1.50"], "the acknowledged activation applies");

    // Drift: the POS charges 10% over for the first two SKUs, silently.
    let drift = |d: Drift| DriftPricesRequest {
        channel: Channel::Pos as i32,
        region_id: "R1".into(),
        promotion_id: "LIVE-1".into(),
        drift: d as i32,
        sku_count: 2,
    };
    let drifted = admin.drift_prices(drift(Drift::Wrong)).await.unwrap().into_inner().skus;
    assert_eq!(drifted, skus[..2]);
    assert_eq!(read(&mut publ).await, ["1.65", "1.65", "1.50"]);
    // A republication under a new key, once acknowledged, puts the approved prices back.
    let fix = publ.publish(publish("LIVE-1:activate:correction-1", PublicationKind::Activate)).await.unwrap();
    acknowledged(&mut publ, &fix.into_inner().publication.unwrap().publication_id).await;
    assert_eq!(read(&mut publ).await, ["1.50", "1.50", "1.50"]);
    // The channel takes its acknowledgments back: both publications say so, the target charges
    // regular prices, and only a new publication, once acknowledged, brings the prices back.
    let withdraw = WithdrawAcknowledgmentRequest {
        channel: Channel::Pos as i32,
        region_id: "R1".into(),
        promotion_id: "LIVE-1".into(),
    };
    let taken = admin.withdraw_acknowledgment(withdraw.clone()).await.unwrap().into_inner().publication_ids;
    assert_eq!(taken.len(), 2, "the activation and its correction: {taken:?}");
    for id in &taken {
        let p = publ.get_publication(GetPublicationRequest { publication_id: id.clone() }).await.unwrap();
        assert_eq!(p.into_inner().publication.unwrap().state(), PublicationState::AckWithdrawn);
    }
    assert_eq!(read(&mut publ).await, regular);
    let err = admin.withdraw_acknowledgment(withdraw).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().starts_with("promotion_id:"), "{err}");
    let again =
        publ.publish(publish("LIVE-1:activate:correction-2", PublicationKind::Activate)).await.unwrap();
    acknowledged(&mut publ, &again.into_inner().publication.unwrap().publication_id).await;
    assert_eq!(read(&mut publ).await, ["1.50", "1.50", "1.50"]);
    // An early revert takes every SKU back to its regular price.
    admin.drift_prices(drift(Drift::EarlyRevert)).await.unwrap();
    assert_eq!(read(&mut publ).await, regular);
    // The revert, acknowledged, is what applies then (drift before it no longer does).
    let r = publ.publish(publish("LIVE-1:revert", PublicationKind::Revert)).await.unwrap();
    acknowledged(&mut publ, &r.into_inner().publication.unwrap().publication_id).await;
    assert_eq!(read(&mut publ).await, regular);

    // Refusals name the field.
    let err = admin
        .drift_prices(DriftPricesRequest { promotion_id: "NOPE".into(), ..drift(Drift::Stale) })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().starts_with("promotion_id:"), "{err}");
    let err = publ
        .get_live_prices(GetLivePricesRequest {
            channel: Channel::Pos as i32,
            region_id: "R1".into(),
            skus: vec!["X".into()],
        })
        .await
        .unwrap_err();
    assert!(err.message().starts_with("skus[0]:"), "{err}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_world_changes_after_the_fact_through_the_admin_contract() {
    let (s, _) = serve_small("world").await;
    let conn = connect(&s).await;
    let (mut admin, mut funding) =
        (AdminServiceClient::new(conn.clone()), FundingServiceClient::new(conn.clone()));
    let set = |status: AgreementStatus| SetAgreementStatusRequest {
        agreement_id: "FA-001".into(),
        status: status as i32,
        ..Default::default()
    };
    let before = admin.set_agreement_status(set(AgreementStatus::Expired)).await.unwrap().into_inner();
    assert_eq!(before.previous(), AgreementStatus::Active);
    let a = funding
        .get_agreements(GetAgreementsRequest { agreement_ids: vec!["FA-001".into()] })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.agreements[0].status(), AgreementStatus::Expired);
    let err = admin
        .set_agreement_status(SetAgreementStatusRequest {
            agreement_id: "FA-999".into(),
            status: 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!((err.code(), err.message().starts_with("agreement_id:")), (Code::NotFound, true), "{err}");

    // Claims: idempotent by key, refused over the cap and against an agreement that is not active.
    let claim = |key: &str, agreement: &str, amount: &str| SubmitClaimRequest {
        idempotency_key: key.into(),
        promotion_id: "CL-1".into(),
        agreement_id: agreement.into(),
        amount: amount.into(),
        units: 10,
    };
    let capped = SetAgreementStatusRequest {
        agreement_id: "FA-003".into(),
        cap_amount: "100.00".into(),
        ..Default::default()
    };
    admin.set_agreement_status(capped).await.unwrap();
    let first = funding.submit_claim(claim("CL-1:a", "FA-003", "60.00")).await.unwrap().into_inner();
    let again = funding.submit_claim(claim("CL-1:a", "FA-003", "60.00")).await.unwrap().into_inner();
    assert!(!first.replayed && again.replayed);
    assert_eq!(first.claim.unwrap().claim_id, again.claim.unwrap().claim_id);
    let over = funding.submit_claim(claim("CL-1:b", "FA-003", "40.01")).await.unwrap_err();
    assert_eq!(over.code(), Code::FailedPrecondition);
    assert!(over.message().starts_with("amount:") && over.message().contains("60.00 of 100.00"), "{over}");
    funding.submit_claim(claim("CL-1:b", "FA-003", "40.00")).await.unwrap();
    let expired = funding.submit_claim(claim("CL-1:c", "FA-001", "1.00")).await.unwrap_err();
    assert!(expired.message().contains("EXPIRED"), "{expired}");
    let listed = funding
        .list_claims(ListClaimsRequest { promotion_id: "CL-1".into() })
        .await
        .unwrap()
        .into_inner()
        .claims;
    assert_eq!(listed.iter().map(|c| c.amount.as_str()).collect::<Vec<_>>(), ["60.00", "40.00"]);

    let drained = admin
        .drain_stock(DrainStockRequest { region_id: "R1".into(), skus: vec![DatasetSpec::sku(0)] })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(drained.positions, 4, "R1's four stores (small dataset) hold SKU-00001");
    let err =
        admin.drain_stock(DrainStockRequest { region_id: "R9".into(), skus: vec![] }).await.unwrap_err();
    assert!(err.message().starts_with("region_id:"), "{err}");
    s.stop().await;
}

fn process_event(id: &str, promotion: &str, kind: ProcessEventKind, at: i64) -> ProcessEvent {
    ProcessEvent {
        event_id: id.into(),
        promotion_id: promotion.into(),
        run_id: "run-1".into(),
        revision: 1,
        kind: kind as i32,
        at: Some(Timestamp { seconds: at, nanos: 0 }),
        stage: "APPROVAL".into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_event_record_is_idempotent_filtered_and_survives_a_restart() {
    use promo_contracts::retail::v1::process_event_service_client::ProcessEventServiceClient;
    let (s, path) = serve_small("events").await;
    let mut ev = ProcessEventServiceClient::new(connect(&s).await);
    let mut decided = process_event("P1/run-1/2", "P1", ProcessEventKind::ApprovalDecided, 1_000);
    decided.role = "FINANCE".into();
    decided.wait_seconds = 3_600;
    let mut report = process_event("P1/run-1/3", "P1", ProcessEventKind::Report, 2_000);
    report.kpis = [("sell_through".to_owned(), "0.42".to_owned())].into();
    let batch = vec![
        process_event("P1/run-1/1", "P1", ProcessEventKind::StageEntered, 500),
        decided,
        report,
        process_event("P2/run-9/1", "P2", ProcessEventKind::StageEntered, 1_500),
    ];
    let r = ev.record_events(RecordEventsRequest { events: batch.clone() }).await.unwrap().into_inner();
    assert_eq!((r.recorded, r.duplicates), (4, 0));
    // A retried batch (the worker's, or anyone's) records nothing twice.
    let r = ev.record_events(RecordEventsRequest { events: batch[1..].to_vec() }).await.unwrap().into_inner();
    assert_eq!((r.recorded, r.duplicates), (0, 3));
    // Filters: by promotion, by kind, since a time; oldest first.
    let list = |promotion_id: &str, kinds: Vec<i32>, since: Option<i64>| ListEventsRequest {
        promotion_id: promotion_id.into(),
        kinds,
        since: since.map(|seconds| Timestamp { seconds, nanos: 0 }),
        ..Default::default()
    };
    let p1 = ev.list_events(list("P1", vec![], None)).await.unwrap().into_inner().events;
    assert_eq!(
        p1.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(),
        ["P1/run-1/1", "P1/run-1/2", "P1/run-1/3"]
    );
    assert_eq!(p1[1].wait_seconds, 3_600);
    assert_eq!(p1[2].kpis.get("sell_through").map(String::as_str), Some("0.42"));
    let decisions = ev
        .list_events(list("", vec![ProcessEventKind::ApprovalDecided as i32], None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(decisions.events.len(), 1);
    let recent = ev.list_events(list("", vec![], Some(1_200))).await.unwrap().into_inner().events;
    assert_eq!(recent.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(), ["P2/run-9/1", "P1/run-1/3"]);
    // Bad input names the event and the field, and records nothing of the batch.
    let mut bad = batch[0].clone();
    bad.event_id = "P3/run-1/1".into();
    bad.promotion_id = "P3".into();
    let mut missing = bad.clone();
    missing.event_id = "P3/run-1/2".into();
    missing.kind = ProcessEventKind::Unspecified as i32;
    let err = ev.record_events(RecordEventsRequest { events: vec![bad, missing] }).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("events[1].kind"), "{}", err.message());
    assert!(ev.list_events(list("P3", vec![], None)).await.unwrap().into_inner().events.is_empty());
    // An audit trail pages backwards by its entries' numbers, with what was signed kept as sent.
    let audit = |n: u64| ProcessEvent {
        action: if n == 2 { "approve".into() } else { "monitor".into() },
        signature: if n == 2 { "c2lnbmF0dXJl".into() } else { String::new() },
        signed_payload: if n == 2 { "promo-message/v1\n…".into() } else { String::new() },
        seq: n,
        ..process_event(&format!("P4/chain/{n}"), "P4", ProcessEventKind::Audit, 3_000 + n as i64)
    };
    ev.record_events(RecordEventsRequest { events: (1..=5).map(audit).collect() }).await.unwrap();
    let page = |before_seq: u64, limit: u32| ListEventsRequest {
        promotion_id: "P4".into(),
        kinds: vec![ProcessEventKind::Audit as i32],
        limit,
        before_seq,
        ..Default::default()
    };
    let seqs = |events: &[ProcessEvent]| events.iter().map(|e| e.seq).collect::<Vec<_>>();
    let last = ev.list_events(page(0, 2)).await.unwrap().into_inner().events;
    assert_eq!(seqs(&last), [4, 5], "the latest page, oldest first");
    let older = ev.list_events(page(4, 2)).await.unwrap().into_inner().events;
    assert_eq!(seqs(&older), [2, 3]);
    assert_eq!((older[0].action.as_str(), older[0].signature.as_str()), ("approve", "c2lnbmF0dXJl"));
    assert_eq!(seqs(&ev.list_events(page(2, 2)).await.unwrap().into_inner().events), [1]);
    // Another chain of the same promotion (started again after it failed) numbers its trail
    // from 1 too: a chain's trail is read by its first run id.
    let again = |n: u64| ProcessEvent {
        seq: n,
        ..process_event(&format!("P4/chain2/{n}"), "P4", ProcessEventKind::Audit, 9_000 + n as i64)
    };
    ev.record_events(RecordEventsRequest { events: (1..=2).map(again).collect() }).await.unwrap();
    let chain = |first_run_id: &str| ListEventsRequest { first_run_id: first_run_id.into(), ..page(0, 0) };
    assert_eq!(seqs(&ev.list_events(chain("chain")).await.unwrap().into_inner().events), [1, 2, 3, 4, 5]);
    assert_eq!(seqs(&ev.list_events(chain("chain2")).await.unwrap().into_inner().events), [1, 2]);
    assert!(ev.list_events(chain("chai")).await.unwrap().into_inner().events.is_empty(), "a whole id");
    let orphan = ListEventsRequest { promotion_id: String::new(), ..chain("chain") };
    let err = ev.list_events(orphan).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    // The record is in the SQLite file: a restarted server over it lists the same events.
    drop(ev);
    drop(s);
    let reopened = Systems::open(&path, &DatasetSpec::small(), false, None).unwrap();
    let s = RunningSystems::start(reopened).await.unwrap();
    let mut ev = ProcessEventServiceClient::new(connect(&s).await);
    let all = ev.list_events(list("", vec![], None)).await.unwrap().into_inner().events;
    assert_eq!(all.len(), 4 + 5 + 2, "P1's three, P2's one and P4's seven audit entries");
    assert_eq!(all.iter().filter(|e| e.signature == "c2lnbmF0dXJl").count(), 1);
}

fn footprint(
    regions: &[&str],
    stores: &[&str],
    skus: &[&str],
    days: std::ops::Range<i64>,
) -> CalendarFootprint {
    const DAY: i64 = 86_400;
    CalendarFootprint {
        starts_at: Some(Timestamp { seconds: 1_800_000_000 + days.start * DAY, nanos: 0 }),
        ends_at: Some(Timestamp { seconds: 1_800_000_000 + days.end * DAY, nanos: 0 }),
        region_ids: regions.iter().map(|r| (*r).to_owned()).collect(),
        store_ids: stores.iter().map(|s| (*s).to_owned()).collect(),
        skus: skus.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn reserve(id: &str, revision: u32, f: &CalendarFootprint) -> ReserveRequest {
    ReserveRequest { promotion_id: id.into(), revision, footprint: Some(f.clone()), dry_run: false }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_calendar_reserves_atomically_idempotently_and_releases() {
    use promo_contracts::retail::v1::calendar_service_client::CalendarServiceClient;
    let (s, _) = serve_small("calendar").await;
    let conn = connect(&s).await;
    let mut cal = CalendarServiceClient::new(conn.clone());
    let stores =
        LocationServiceClient::new(conn).list_locations(ListLocationsRequest {}).await.unwrap().into_inner();
    let r1_store = stores.stores.iter().find(|x| x.region_id == "R1").unwrap().store_id.clone();
    let a = footprint(&["R1"], &[], &["SKU-00001", "SKU-00002"], 0..7);
    assert!(cal.reserve(reserve("A", 1, &a)).await.unwrap().into_inner().reserved);
    // The same call again (a retried activity) is reserved again, not a conflict with itself.
    assert!(cal.reserve(reserve("A", 1, &a)).await.unwrap().into_inner().reserved);
    // A store of R1 with a shared SKU over overlapping dates conflicts; nothing is reserved.
    let b = footprint(&[], &[&r1_store], &["SKU-00002", "SKU-00003"], 5..9);
    let r = cal.reserve(reserve("B", 1, &b)).await.unwrap().into_inner();
    assert!(!r.reserved);
    assert_eq!(r.conflicts.len(), 1, "{r:?}");
    assert_eq!(
        (r.conflicts[0].promotion_id.as_str(), r.conflicts[0].skus.clone()),
        ("A", vec!["SKU-00002".to_owned()])
    );
    assert_eq!(r.conflicts[0].locations, std::slice::from_ref(&r1_store));
    assert_eq!(r.conflicts[0].overlap_starts_at.as_ref().unwrap().seconds, 1_800_000_000 + 5 * 86_400);
    assert!(
        cal.list_reservations(ListReservationsRequest { promotion_id: "B".into() })
            .await
            .unwrap()
            .into_inner()
            .reservations
            .is_empty()
    );
    // Disjoint in dates, SKUs or locations: no conflict.
    for (id, f) in [
        ("C", footprint(&["R1"], &[], &["SKU-00002"], 9..11)),
        ("D", footprint(&["R1"], &[], &["SKU-00009"], 0..7)),
        ("E", footprint(&["R2"], &[], &["SKU-00001"], 0..7)),
    ] {
        let r = cal.reserve(reserve(id, 1, &f)).await.unwrap().into_inner();
        assert!(r.reserved && r.conflicts.is_empty(), "{id}: {r:?}");
    }
    // A dry run reports without reserving.
    let dry = ReserveRequest { dry_run: true, ..reserve("B", 1, &b) };
    let r = cal.reserve(dry).await.unwrap().into_inner();
    assert!(!r.reserved && r.conflicts.iter().any(|c| c.promotion_id == "A"), "{r:?}");
    // Twenty promotions with the same footprint reserve at once: exactly one holds it.
    let same = footprint(&["R3"], &[], &["SKU-00004"], 0..3);
    let calls = (0..20).map(|i| {
        let mut c = cal.clone();
        let req = reserve(&format!("RACE-{i:02}"), 1, &same);
        async move { c.reserve(req).await.unwrap().into_inner().reserved }
    });
    let won = futures::future::join_all(calls).await.into_iter().filter(|r| *r).count();
    assert_eq!(won, 1);
    // A new revision replaces the promotion's reservation (and may move off a conflict).
    let a2 = footprint(&["R1"], &[], &["SKU-00001"], 0..7);
    assert!(cal.reserve(reserve("A", 2, &a2)).await.unwrap().into_inner().reserved);
    assert!(
        cal.reserve(reserve("B", 1, &b)).await.unwrap().into_inner().reserved,
        "A no longer holds SKU-00002"
    );
    let held = cal
        .list_reservations(ListReservationsRequest { promotion_id: "A".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(held.reservations[0].revision, 2);
    // Releasing frees the footprint, and releasing twice is not an error.
    assert!(cal.release(ReleaseRequest { promotion_id: "A".into() }).await.unwrap().into_inner().released);
    assert!(!cal.release(ReleaseRequest { promotion_id: "A".into() }).await.unwrap().into_inner().released);
    assert!(
        cal.reserve(reserve("F", 1, &a2)).await.unwrap().into_inner().reserved,
        "A's SKU-00001 is free again"
    );
    // Bad input names the field.
    let mut bad = a.clone();
    bad.ends_at = bad.starts_at;
    let err = cal.reserve(reserve("G", 1, &bad)).await.unwrap_err();
    assert!(err.code() == Code::InvalidArgument && err.message().contains("footprint.ends_at"), "{err:?}");
    let err =
        cal.reserve(reserve("G", 1, &footprint(&[], &["S-NOPE"], &["SKU-00001"], 0..1))).await.unwrap_err();
    assert!(err.message().contains("footprint.store_ids[0]"), "{err:?}");
}

async fn outcomes(
    conn: &Conn,
    since: Option<Timestamp>,
    per_message: u32,
) -> (Vec<String>, Vec<PromotionOutcome>) {
    outcomes_unless(conn, since, per_message, &[]).await
}

/// The outcomes stream of a caller that holds the history `known`.
async fn outcomes_unless(
    conn: &Conn,
    since: Option<Timestamp>,
    per_message: u32,
    known: &[&str],
) -> (Vec<String>, Vec<PromotionOutcome>) {
    let mut stream = DemandServiceClient::new(conn.clone())
        .stream_promotion_outcomes(StreamPromotionOutcomesRequest {
            since,
            outcomes_per_message: per_message,
            known_history_versions: known.iter().map(|v| (*v).to_owned()).collect(),
        })
        .await
        .unwrap()
        .into_inner();
    let (mut versions, mut all) = (Vec::new(), Vec::new());
    while let Some(m) = stream.message().await.unwrap() {
        versions.push(m.history_version);
        all.extend(m.outcomes);
    }
    (versions, all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_outcomes_are_drawn_from_the_world_and_agree_with_the_history() {
    let (s, path) = serve_small("outcomes").await;
    let conn = connect(&s).await;
    let (versions, all) = outcomes(&conn, None, 500).await;
    let version = versions[0].clone();
    assert_eq!(version.len(), 16);
    assert!(versions.len() > 2 && versions.iter().all(|v| *v == version), "{versions:?}");
    let world = &DatasetSpec::small().world;
    let promotions: std::collections::BTreeSet<&str> = all.iter().map(|o| o.promotion_id.as_str()).collect();
    assert_eq!(promotions.len(), world.history.promotions as usize);
    // Oldest week first, all before the anchor; stockouts censor some store-weeks, never more
    // than the totals.
    let weeks: Vec<i64> = all.iter().map(|o| o.week_start.unwrap().seconds).collect();
    assert!(weeks.windows(2).all(|w| w[0] <= w[1]));
    assert!(*weeks.last().unwrap() < s.systems.anchor());
    let stockouts: u32 = all.iter().map(|o| o.stockout_store_weeks).sum();
    let store_weeks: u32 = all.iter().map(|o| o.store_weeks).sum();
    println!("{} outcomes, {stockouts} of {store_weeks} store-weeks stocked out", all.len());
    assert!(stockouts > 0 && stockouts < store_weeks / 5);
    for o in &all {
        assert!(
            o.in_stock_units_sold <= o.units_sold && o.in_stock_baseline_units <= o.baseline_units + 1e-9
        );
        assert!(o.mechanic >= 1 && o.mechanic <= 3);
    }
    // The world's structure shows through: deep discounts lift more than shallow ones.
    let lift = |lo: f64, hi: f64| {
        let (u, b) = all
            .iter()
            .filter(|o| (lo..=hi).contains(&o.discount_depth.parse::<f64>().unwrap()))
            .fold((0.0, 0.0), |a, o| (a.0 + o.in_stock_units_sold as f64, a.1 + o.in_stock_baseline_units));
        u / b
    };
    let (shallow, deep) = (lift(0.0, 0.15), lift(0.4, 0.5));
    assert!(deep > shallow * 1.3, "deep {deep:.2} vs shallow {shallow:.2}");
    // GetPromotionHistory's realised uplift is the same in-stock ratio, per SKU and promotion.
    let sku = all[0].sku.clone();
    let history = DemandServiceClient::new(conn.clone())
        .get_promotion_history(GetPromotionHistoryRequest { skus: vec![sku.clone()] })
        .await
        .unwrap()
        .into_inner()
        .history;
    assert!(!history.is_empty());
    for h in &history {
        let (u, b) = all
            .iter()
            .filter(|o| o.sku == sku && o.promotion_id == h.promotion_id)
            .fold((0.0, 0.0), |a, o| (a.0 + o.in_stock_units_sold as f64, a.1 + o.in_stock_baseline_units));
        assert_eq!(h.realised_uplift, format!("{:.3}", u / b), "{h:?}");
    }
    // `since` keeps the later weeks only.
    let cut = weeks[weeks.len() / 2];
    let (_, later) = outcomes(&conn, Some(Timestamp { seconds: cut, nanos: 0 }), 0).await;
    assert_eq!(later.len(), weeks.iter().filter(|w| **w >= cut).count());
    // A caller holding the current version gets one message naming it and no outcomes; one
    // holding only other versions gets the whole stream.
    let (held, none) = outcomes_unless(&conn, None, 0, &["0123456789abcdef", &version]).await;
    assert_eq!((held, none.len()), (vec![version.clone()], 0));
    let (v3, all3) = outcomes_unless(&conn, None, 0, &["0123456789abcdef"]).await;
    assert_eq!((v3[0].clone(), all3.len()), (version.clone(), all.len()));
    s.stop().await;

    // The same file reopened streams the same history; a file drawn from another world is
    // refused rather than silently served.
    let again = RunningSystems::start(Systems::open(&path, &DatasetSpec::small(), false, None).unwrap())
        .await
        .unwrap();
    let (v2, all2) = outcomes(&connect(&again).await, None, 0).await;
    assert_eq!((v2[0].clone(), all2.len()), (version.clone(), all.len()));
    again.stop().await;
    let mut other = DatasetSpec::small();
    other.world.lift.promotion_sd = 0.3;
    let e = Systems::open(&path, &other, false, None).unwrap_err().to_string();
    assert!(e.contains("another world file") && e.contains("--reset"), "{e}");
    let fresh = Systems::open(&path, &other, true, None).unwrap();
    assert_ne!(fresh.master().history_version, version);
}

/// Every message of a server stream, in order.
async fn messages<M>(r: Result<tonic::Response<tonic::Streaming<M>>, tonic::Status>) -> Vec<M> {
    let mut stream = r.unwrap().into_inner();
    let mut out = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        out.push(m);
    }
    out
}

/// The batched streams cut their records into messages as the contracts say: `N` per message
/// with the rest in the last, what is said once (the SKU dictionary) in the first message, the
/// DCs in the last, and a malformed fault breaking the first record it can, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_streams_cut_their_messages_as_documented() {
    let (s, _) = serve_small("batches").await;
    let conn = connect(&s).await;
    let inventory = InventoryServiceClient::new(conn.clone());
    let positions = |region_ids: Vec<String>, include_dcs: bool, per_message: u32| {
        let mut c = inventory.clone();
        let req = StreamPositionsRequest {
            region_ids,
            include_dcs,
            locations_per_message: per_message,
            ..Default::default()
        };
        async move { messages(c.stream_positions(req).await).await }
    };
    let ids =
        |m: &StreamPositionsResponse| m.locations.iter().map(|l| l.location_id.clone()).collect::<Vec<_>>();

    // R1's four stores, four to a message: its DC gets a message of its own, the last.
    let msgs = positions(vec!["R1".into()], true, 4).await;
    assert_eq!(
        msgs.iter().map(ids).collect::<Vec<_>>(),
        [vec!["S0001", "S0002", "S0003", "S0004"], vec!["DC1"]]
    );
    assert_eq!((msgs[0].sku_dictionary.len(), msgs[1].sku_dictionary.len()), (40, 0));
    // Three to a message: the DC rides with the last store.
    let msgs = positions(vec!["R1".into()], true, 3).await;
    assert_eq!(
        msgs.iter().map(ids).collect::<Vec<_>>(),
        [vec!["S0001", "S0002", "S0003"], vec!["S0004", "DC1"]]
    );
    // One to a message: every DC still goes in the last message, however many.
    let msgs = positions(vec![], true, 1).await;
    let sizes: Vec<usize> = msgs.iter().map(|m| m.locations.len()).collect();
    assert_eq!(sizes, [vec![1; 12], vec![2]].concat());
    assert_eq!(ids(&msgs[12]), ["DC1", "DC2"]);
    assert!(msgs[1..].iter().all(|m| m.sku_dictionary.is_empty()));

    // Baseline demand: five stores to a message, the rest in the last; the history's length
    // in every message.
    let mut demand = DemandServiceClient::new(conn.clone());
    let req = StreamBaselineDemandRequest { stores_per_message: 5, ..Default::default() };
    let msgs = messages(demand.stream_baseline_demand(req.clone()).await).await;
    assert_eq!(msgs.iter().map(|m| m.stores.len()).collect::<Vec<_>>(), [5, 5, 2]);
    assert_eq!(msgs.iter().map(|m| m.sku_dictionary.len()).collect::<Vec<_>>(), [40, 0, 0]);
    assert!(msgs.iter().all(|m| m.history_days == 14));

    // Outcomes: 1,000 to a message, each naming the history version; none after `since` still
    // gets one message, to name it.
    let req = StreamPromotionOutcomesRequest { outcomes_per_message: 1000, ..Default::default() };
    let msgs = messages(demand.stream_promotion_outcomes(req).await).await;
    let (last, full) = msgs.split_last().unwrap();
    assert!(full.len() > 1 && full.iter().all(|m| m.outcomes.len() == 1000), "{}", msgs.len());
    assert!(!last.outcomes.is_empty() && last.outcomes.len() <= 1000);
    assert!(msgs.iter().all(|m| m.history_version == last.history_version));
    let later = Some(Timestamp { seconds: s.systems.anchor() + 86_400, nanos: 0 });
    let req = StreamPromotionOutcomesRequest { since: later, ..Default::default() };
    let msgs = messages(demand.stream_promotion_outcomes(req).await).await;
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].outcomes.is_empty() && msgs[0].history_version == last.history_version);

    // A malformed fault breaks the first record of the stream, once.
    let mut admin = AdminServiceClient::new(conn.clone());
    let inject = |service: &str, malformed: &str| InjectFaultRequest {
        fault: Some(Fault {
            service: service.into(),
            malformed: malformed.into(),
            max_hits: 1,
            ..Default::default()
        }),
    };
    admin.inject_fault(inject("inventory", "negative-stock")).await.unwrap();
    let msgs = positions(vec![], false, 5).await;
    let negative: Vec<(usize, usize, usize)> = msgs
        .iter()
        .enumerate()
        .flat_map(|(m, msg)| msg.locations.iter().enumerate().map(move |(l, loc)| (m, l, loc)))
        .flat_map(|(m, l, loc)| {
            loc.on_hand.iter().enumerate().filter(|(_, u)| **u < 0).map(move |(i, _)| (m, l, i))
        })
        .collect();
    assert_eq!(negative, [(0, 0, 0)]);
    admin.inject_fault(inject("demand", "unknown-id")).await.unwrap();
    let msgs = messages(demand.stream_baseline_demand(StreamBaselineDemandRequest::default()).await).await;
    let stores: Vec<&str> = msgs.iter().flat_map(|m| &m.stores).map(|d| d.store_id.as_str()).collect();
    assert_eq!(stores[..2], ["UNKNOWN-S0001", "S0002"]);
    admin.inject_fault(inject("demand", "length-mismatch")).await.unwrap();
    let msgs =
        messages(demand.stream_promotion_outcomes(StreamPromotionOutcomesRequest::default()).await).await;
    let unknown: Vec<usize> = msgs
        .iter()
        .flat_map(|m| &m.outcomes)
        .enumerate()
        .filter(|(_, o)| o.sku.starts_with("UNKNOWN-"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(unknown, [0], "an outcome breaks the one way it can, whatever the mode");

    // Sell-through: 64 stores to a message, the DCs' availability in the last with the last
    // stores (R1 sixteen times over is 64 stores, one message).
    let mut sales = SalesServiceClient::new(conn);
    let start = s.systems.anchor() + 2 * 86_400;
    let window = TimeRange {
        start: Some(Timestamp { seconds: start, nanos: 0 }),
        end: Some(Timestamp { seconds: start + 3 * 86_400, nanos: 0 }),
    };
    let sell_through = |scopes: usize| StreamStoreSellThroughRequest {
        promotion_id: "BATCHES".into(),
        lines: vec![SalesLine { sku: DatasetSpec::sku(0), promo_price: "1.00".into(), ..Default::default() }],
        scopes: vec![SalesScope { region_id: "R1".into(), window: Some(window) }; scopes],
        without_store_transfers: false,
    };
    let shape = |msgs: &[StreamStoreSellThroughResponse]| {
        msgs.iter().map(|m| (m.sku_dictionary.len(), m.stores.len(), m.dcs.len())).collect::<Vec<_>>()
    };
    let msgs = messages(sales.stream_store_sell_through(sell_through(16)).await).await;
    assert_eq!(shape(&msgs), [(1, 64, 1)]);
    let msgs = messages(sales.stream_store_sell_through(sell_through(17)).await).await;
    assert_eq!(shape(&msgs), [(1, 64, 0), (0, 4, 1)]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_stays_revoked_and_other_keys_do_not() {
    use promo_contracts::retail::v1::directory_service_client::DirectoryServiceClient;
    let (s, _path) = serve_small("directory").await;
    let mut dir = DirectoryServiceClient::new(connect(&s).await);
    let status = |employee: &str, key: &str| GetKeyStatusRequest {
        employee_id: employee.into(),
        public_key: key.into(),
    };
    let fresh = dir.get_key_status(status("E2001", "KEY-A")).await.unwrap().into_inner();
    assert!(!fresh.revoked && fresh.revoked_at.is_none());
    let first = dir
        .revoke_key(RevokeKeyRequest {
            employee_id: "E2001".into(),
            public_key: "KEY-A".into(),
            reason: "left".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let again = dir
        .revoke_key(RevokeKeyRequest {
            employee_id: "E2001".into(),
            public_key: "KEY-A".into(),
            reason: "again".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.revoked_at, again.revoked_at, "the first revocation is kept");
    let revoked = dir.get_key_status(status("E2001", " KEY-A ")).await.unwrap().into_inner();
    assert!(revoked.revoked && revoked.reason == "left", "{revoked:?}");
    assert!(!dir.get_key_status(status("E2001", "KEY-B")).await.unwrap().into_inner().revoked);
    assert!(!dir.get_key_status(status("E1001", "KEY-A")).await.unwrap().into_inner().revoked);
    // Every key of an employee.
    dir.revoke_key(RevokeKeyRequest {
        employee_id: "E1001".into(),
        public_key: String::new(),
        reason: "gone".into(),
    })
    .await
    .unwrap();
    assert!(dir.get_key_status(status("E1001", "ANY")).await.unwrap().into_inner().revoked);
    let err = dir.revoke_key(RevokeKeyRequest::default()).await.unwrap_err();
    assert_eq!((err.code(), err.message()), (Code::InvalidArgument, "employee_id: is required"));
    s.stop().await;
}
