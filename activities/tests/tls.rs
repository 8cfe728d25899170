//! The activities' client of the integration services over TLS and mutual TLS, against the
//! reference server with the test-only certificates of `systems/tests/certs/`.

use promo_activities::{Systems, SystemsTls};
use promo_contracts::retail::v1::ListLocationsRequest;
use promo_systems::{RunningSystems, ServerTls, Systems as Store, dataset::DatasetSpec};
use std::path::PathBuf;

fn certs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../systems/tests/certs")
}

async fn serve_mutual_tls() -> RunningSystems {
    let dir = std::env::temp_dir().join(format!("promo-activities-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::open(&dir.join("systems.db"), &DatasetSpec::small(), true, None).unwrap();
    let c = certs();
    let tls =
        ServerTls::from_files(&c.join("server.pem"), &c.join("server.key"), Some(&c.join("ca.pem"))).unwrap();
    RunningSystems::start_with_tls(store, Some(tls)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systems_client_speaks_mutual_tls_with_the_configured_ca_and_identity() {
    let s = serve_mutual_tls().await;
    let c = certs();
    let tls = SystemsTls::from_paths(
        Some(&c.join("ca.pem")),
        Some(&c.join("client.pem")),
        Some(&c.join("client.key")),
        None,
    )
    .unwrap();
    let systems = Systems::with_tls(&s.url(), tls.as_ref()).unwrap();
    let regions = systems.locations().list_locations(ListLocationsRequest {}).await.unwrap().into_inner();
    assert_eq!(regions.regions.len(), 3);

    // The server name can be checked against another name in the certificate.
    let by_name = SystemsTls { domain: Some("localhost".into()), ..tls.clone().unwrap() };
    let systems = Systems::with_tls(&s.url(), Some(&by_name)).unwrap();
    assert!(systems.locations().list_locations(ListLocationsRequest {}).await.is_ok());

    // Trusting only the system roots, the test CA's certificate is rejected.
    let roots_only = SystemsTls { ca_pem: None, ..tls.unwrap() };
    let systems = Systems::with_tls(&s.url(), Some(&roots_only)).unwrap();
    let err = systems.locations().list_locations(ListLocationsRequest {}).await.unwrap_err();
    assert!(err.message().contains("transport") || !err.message().is_empty(), "{err}");
    s.stop().await;
}

#[test]
fn tls_settings_are_checked_with_the_setting_named() {
    let c = certs();
    let half = SystemsTls::from_paths(None, Some(&c.join("client.pem")), None, None).unwrap_err().to_string();
    assert_eq!(half, "systems mutual TLS needs both a client certificate and its key");
    let missing =
        SystemsTls::from_paths(Some(&c.join("nope.pem")), None, None, None).unwrap_err().to_string();
    assert!(missing.starts_with("systems CA certificate: cannot read "), "{missing}");
    assert!(SystemsTls::from_paths(None, None, None, None).unwrap().is_none());
    let tls = SystemsTls::from_paths(Some(&c.join("ca.pem")), None, None, None).unwrap();
    let plain = Systems::with_tls("http://127.0.0.1:50051", tls.as_ref()).unwrap_err().to_string();
    assert_eq!(
        plain,
        "systems address \"http://127.0.0.1:50051\": TLS settings are set, so the address must start with https://"
    );
}
