//! Process intelligence on the real stack: three promotions run into different stages (one
//! finished with a report, one stuck waiting on finance, one live with a channel that never
//! acknowledges), then the process-event record, `promo ask` and `promo dashboard` are checked
//! against what happened — the dashboard in headless Chromium, as a person would see it.

use promo_contracts::{
    promo::v1::*,
    retail::v1::{self as wire, ListEventsRequest, ProcessEventKind, RecordEventsRequest},
};
use promo_tests::{
    env::{PromoEnv, spec, test_policy},
    process::WorkerProcess,
    temporal::DevServerOptions,
};
use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::Duration,
};

const LIMIT: Duration = Duration::from_secs(90);

/// The `promo` CLI against this environment (its systems and its policy).
fn promo_cli(env: &PromoEnv) -> Command {
    let mut c = Command::new(promo_tests::process::promo_bin().unwrap());
    c.env("TEMPORAL_ADDRESS", env.dev.address())
        .env("PROMO_SYSTEMS_ADDR", env.systems.url())
        .env("PROMO_POLICY", env.dir().join("policy.toml"));
    c
}

use promo_tests::process::run_to_end as run;

async fn ask(env: &PromoEnv, question: &str) -> String {
    let mut c = promo_cli(env);
    c.args(["ask", question]);
    let (ok, text) = run(c).await;
    assert!(ok, "promo ask {question:?} failed: {text}");
    assert!(text.contains("source: "), "every answer names its source: {text}");
    println!("$ promo ask {question:?}\n{text}");
    text
}

/// `promo dashboard` on a free port; its address once it listens.
struct DashboardProcess(Child);

impl DashboardProcess {
    async fn start(env: &PromoEnv) -> (Self, String) {
        Self::start_on(env, "127.0.0.1:0").await
    }

    async fn start_on(env: &PromoEnv, listen: &str) -> (Self, String) {
        let mut c = promo_cli(env);
        c.args(["dashboard", "--listen", listen, "--web-ui", "http://localhost:8233", "--refresh", "60"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = c.spawn().expect("spawn promo dashboard");
        let stdout = child.stdout.take().unwrap();
        let url = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).unwrap();
            line.trim().trim_start_matches("dashboard: ").to_owned()
        })
        .await
        .unwrap();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        (Self(child), url)
    }
}

impl Drop for DashboardProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The body of `GET path` on 127.0.0.1:`port` (HTTP/1.0, no client library needed).
async fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        out.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
    })
    .await
    .ok()?
}

/// The value of the first sample of `name` whose labels contain `label`, in Prometheus text.
fn gauge(text: &str, name: &str, label: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| l.contains(label))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// What headless Chromium showed (see `tests/browser/dashboard.mjs`).
async fn browse(url: &str, shot: &std::path::Path) -> serde_json::Value {
    let root = promo_tests::temporal::workspace_root();
    let mut c = Command::new("node");
    c.arg(root.join("tests/browser/dashboard.mjs")).arg(url).arg(shot);
    let out = tokio::task::spawn_blocking(move || c.output().unwrap()).await.unwrap();
    assert!(
        out.status.success(),
        "the browser script failed (is `make bootstrap` done?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the browser script prints JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_ask_show_the_stuck_approval_the_top_exception_and_the_charts() {
    let env = PromoEnv::start(test_policy()).await.unwrap();
    std::fs::write(env.dir().join("policy.toml"), toml::to_string(&test_policy()).unwrap()).unwrap();
    env.with_worker(async {
        // 1. Stuck: two lines on FA-002 (unsigned) need finance; launch is 60 business days out.
        let mut fin = spec("INS-FIN", &["R1"], 0..8, 60.0, 3.0);
        for l in fin.lines.iter_mut().filter(|l| l.sku == "SKU-00002" || l.sku == "SKU-00008") {
            l.funding_agreement_id = "FA-002".into();
        }
        env.start_promotion(fin).await.unwrap();
        env.wait_status("INS-FIN", "approval", LIMIT, |s| s.stage() == Stage::Approval).await.unwrap();
        env.approve("INS-FIN", "E1001", Role::Merchandising).await.unwrap();

        // 2. Finished, with a report.
        env.start_promotion(spec("INS-DONE", &["R1"], 0..6, 3.0, 2.0)).await.unwrap();
        env.wait_status("INS-DONE", "approval", LIMIT, |s| s.stage() == Stage::Approval).await.unwrap();
        env.approve("INS-DONE", "E1001", Role::Merchandising).await.unwrap();
        assert_eq!(env.result("INS-DONE").await.unwrap().outcome(), Outcome::Completed);

        // 3. Published, launching in 30 business days, R1 held: R1's POS never acknowledges from
        //    now on.
        env.never_acknowledges(wire::Channel::Pos, "R1").await.unwrap();
        env.start_promotion(spec("INS-ACK", &["R1", "R3"], 0..6, 30.0, 2.0)).await.unwrap();
        env.wait_status("INS-ACK", "approval", LIMIT, |s| s.stage() == Stage::Approval).await.unwrap();
        env.approve("INS-ACK", "E1001", Role::Merchandising).await.unwrap();
        let held = env
            .wait_status("INS-ACK", "R1 held", LIMIT, |s| {
                s.open_exceptions
                    .iter()
                    .any(|e| e.kind() == ExceptionKind::ChannelSync && e.region_id == "R1")
            })
            .await
            .unwrap();
        let top = held.open_exceptions.iter().find(|e| e.kind() == ExceptionKind::ChannelSync).unwrap();
        let at_risk: f64 = top.revenue_at_risk.parse().unwrap();
        assert!(at_risk > 0.0, "{top:?}");

        // The record: every stage the finished promotion went through, its approval with the
        // wait, its acknowledgments, the report and the end; written once each.
        let mut events = env.events().await.unwrap();
        let done = events
            .list_events(ListEventsRequest { promotion_id: "INS-DONE".into(), ..Default::default() })
            .await
            .unwrap()
            .into_inner()
            .events;
        let kinds = |k: ProcessEventKind| done.iter().filter(|e| e.kind() == k).count();
        let stages: Vec<&str> = done
            .iter()
            .filter(|e| e.kind() == ProcessEventKind::StageEntered)
            .map(|e| e.stage.as_str())
            .collect();
        for s in ["INTAKE", "ASSESSMENT", "APPROVAL", "PUBLISHING", "ACTIVE", "CLOSING", "ANALYSIS", "DONE"] {
            assert!(stages.contains(&s), "{s} not recorded: {stages:?}");
        }
        assert_eq!(kinds(ProcessEventKind::ApprovalRequested), 1, "{done:#?}");
        let decided = done.iter().find(|e| e.kind() == ProcessEventKind::ApprovalDecided).unwrap();
        assert_eq!((decided.role.as_str(), decided.actor.as_str()), ("MERCHANDISING", "E1001"));
        assert!(kinds(ProcessEventKind::Acknowledged) >= 2, "POS and store comms of R1: {done:#?}");
        assert_eq!(kinds(ProcessEventKind::Report), 1);
        assert_eq!(kinds(ProcessEventKind::Ended), 1);
        let report = done.iter().find(|e| e.kind() == ProcessEventKind::Report).unwrap();
        assert!(report.kpis.contains_key("sell_through"), "{report:?}");
        // Idempotent: the worker's retries (or anyone's) cannot double-count.
        let again =
            events.record_events(RecordEventsRequest { events: done.clone() }).await.unwrap().into_inner();
        assert_eq!(again.recorded, 0, "{again:?}");
        let after = events
            .list_events(ListEventsRequest { promotion_id: "INS-DONE".into(), ..Default::default() })
            .await
            .unwrap()
            .into_inner()
            .events;
        assert_eq!(after.len(), done.len());
        // The held promotion's exception is in the record with its revenue at risk and owner.
        let ack = events
            .list_events(ListEventsRequest { promotion_id: "INS-ACK".into(), ..Default::default() })
            .await
            .unwrap()
            .into_inner()
            .events;
        let raised = ack
            .iter()
            .find(|e| e.kind() == ProcessEventKind::ExceptionRaised && e.exception_kind == "CHANNEL_SYNC")
            .expect("the channel-sync exception is recorded");
        assert_eq!(
            (raised.region_id.as_str(), raised.revenue_at_risk.as_str()),
            ("R1", top.revenue_at_risk.as_str())
        );

        // Questions in plain words.
        let a = ask(&env, "which promotions are waiting on finance?").await;
        assert!(a.contains("INS-FIN") && !a.contains("INS-ACK"), "{a}");
        let a = ask(&env, "What's stuck in R1?").await;
        assert!(a.contains("INS-ACK") && a.contains("POS"), "{a}");
        let a = ask(&env, "why is ins-ack delayed").await;
        assert!(a.contains("INS-ACK") && a.contains("CHANNEL_SYNC"), "{a}");
        let a = ask(&env, "how long do merchandising approvals take?").await;
        assert!(a.contains("MERCHANDISING") && a.contains("median") && a.contains("(3 decisions)"), "{a}");
        let a = ask(&env, "revenue at risk this week?").await;
        assert!(a.contains(&format!("{at_risk:.2}")) || a.contains(&top.revenue_at_risk), "{a}");
        let mut c = promo_cli(&env);
        c.args(["ask", "what's the weather in R1?"]);
        let (ok, text) = run(c).await;
        assert!(!ok && text.contains("which promotions are waiting on"), "lists the forms: {text}");

        // The queue on the command line, ranked, and for one owner.
        let mut c = promo_cli(&env);
        c.args(["exceptions"]);
        let (ok, text) = run(c).await;
        assert!(ok, "{text}");
        println!("$ promo exceptions\n{text}");
        let rows: Vec<&str> = text.lines().filter(|l| l.trim_start().starts_with(char::is_numeric)).collect();
        assert!(rows.len() >= 4, "four open exceptions: {text}");
        assert!(
            rows[0].trim_start().starts_with("1 ") && rows.iter().any(|r| r.contains("CHANNEL_SYNC")),
            "{text}"
        );
        let mut c = promo_cli(&env);
        c.args(["exceptions", "--owner", "finance"]);
        let (ok, text) = run(c).await;
        assert!(ok && text.contains("FUNDING_MISSING") && !text.contains("CHANNEL_SYNC"), "{text}");

        // The dashboard, in a real browser.
        let (_dashboard, url) = DashboardProcess::start(&env).await;
        let shot = env.dir().join("dashboard.png");
        let seen = browse(&url, &shot).await;
        assert_eq!(seen["status"], 200, "{seen:#}");
        assert_eq!(seen["scripts"], 0, "server-rendered, no JavaScript: {seen:#}");
        // The stuck approval: INS-FIN, finance, past its escalation (12 business hours = 1 s).
        let approvals = seen["approvals"].as_array().unwrap();
        let stuck = approvals
            .iter()
            .find(|r| r[0] == "INS-FIN" && r[1] == "FINANCE")
            .unwrap_or_else(|| panic!("INS-FIN waiting on finance is shown: {seen:#}"));
        assert_eq!(stuck[3], "escalated", "{seen:#}");
        // The top exception: the highest revenue at risk first, with owner and age.
        let exceptions = seen["exceptions"].as_array().unwrap();
        let first: Vec<&str> =
            exceptions[0].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
        let queue_max = held
            .open_exceptions
            .iter()
            .map(|e| e.revenue_at_risk.parse::<f64>().unwrap_or(0.0))
            .fold(at_risk, f64::max);
        assert_eq!(first[0], "1", "{seen:#}");
        assert!(
            exceptions
                .iter()
                .all(|r| r[5].as_str().unwrap().parse::<f64>().unwrap() <= first[5].parse::<f64>().unwrap()),
            "ranked by revenue at risk: {seen:#}"
        );
        assert!(first[5].parse::<f64>().unwrap() >= queue_max - 0.005, "{first:?} vs {queue_max}");
        // Every exception carries a computed revenue at risk: the unfunded lines' revenue for
        // FUNDING_MISSING, the region's share for CHANNEL_SYNC, the whole forecast for an SLA.
        assert!(exceptions.iter().all(|r| r[5].as_str().unwrap().parse::<f64>().unwrap() > 0.0), "{seen:#}");
        assert!(
            exceptions.iter().any(|r| r[1] == "INS-ACK" && r[2] == "CHANNEL_SYNC" && r[3] == "R1"),
            "{seen:#}"
        );
        // The charts are drawn, with visible bars.
        let charts = &seen["charts"];
        assert!(charts["chart-stages"]["bars"].as_u64().unwrap() >= 3, "3 stages in use: {charts:#}");
        assert!(charts["chart-cycle-times"]["bars"].as_u64().unwrap() >= 8, "{charts:#}");
        assert!(charts["chart-approvals"]["bars"].as_u64().unwrap() >= 2, "{charts:#}");
        assert!(charts["chart-kpis"]["bars"].as_u64().unwrap() >= 3, "{charts:#}");
        let labels = charts["chart-cycle-times"]["labels"].to_string();
        assert!(labels.contains("APPROVAL") && labels.contains("ACTIVE"), "{labels}");
        // The finished promotion's KPIs, and links to the Web UI.
        assert!(seen["kpis"].as_array().unwrap().iter().any(|r| r[0] == "INS-DONE"), "{seen:#}");
        let links = seen["links"].to_string();
        assert!(
            links.contains("http://localhost:8233/namespaces/default/workflows/promotion-INS-FIN"),
            "{links}"
        );
        assert!(std::fs::metadata(&shot).unwrap().len() > 20_000, "a screenshot with content");
        if let Ok(dir) = std::env::var("PROMO_SCREENSHOT_DIR") {
            std::fs::copy(&shot, std::path::Path::new(&dir).join("dashboard.png")).unwrap();
        }

        // The same figures as Prometheus gauges on a worker's metrics endpoint (a worker
        // process on a queue of its own, so it takes no promotion's tasks).
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut config = env.worker_config();
        config.extra_args = ["--metrics", &format!("127.0.0.1:{port}"), "--business-metrics-every", "1s"]
            .into_iter()
            .chain(["--task-queue", "insight-metrics-only", "--exception-sla", "1h"])
            .map(str::to_owned)
            .collect();
        let mut worker = WorkerProcess::spawn(config).unwrap();
        let deadline = std::time::Instant::now() + LIMIT;
        let metrics = loop {
            worker.check_alive().unwrap();
            let text = http_get(port, "/metrics").await.unwrap_or_default();
            if gauge(&text, "promo_promotions", "stage=\"APPROVAL\"").is_some() {
                break text;
            }
            assert!(std::time::Instant::now() < deadline, "no business gauges on /metrics: {text}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let g = |name: &str, label: &str| {
            gauge(&metrics, name, label).unwrap_or_else(|| panic!("{name}{{{label}}}: {metrics}"))
        };
        assert_eq!(g("promo_promotions", "stage=\"APPROVAL\""), 1.0);
        assert_eq!(g("promo_promotions", "stage=\"FINISHED\""), 1.0);
        assert_eq!(g("promo_approvals_pending", "sla=\"escalated\""), 1.0);
        let channel_sync =
            held.open_exceptions.iter().filter(|e| e.kind() == ExceptionKind::ChannelSync).count();
        assert!(g("promo_open_exceptions", "kind=\"CHANNEL_SYNC\"") >= channel_sync as f64, "{metrics}");
        assert!(g("promo_revenue_at_risk", "kind=\"CHANNEL_SYNC\"") >= at_risk - 0.01, "{metrics}");
        assert_eq!(g("promo_exceptions_overdue", "kind=\"CHANNEL_SYNC\""), 0.0, "none is an hour old");
        assert_eq!(g("promo_business_metrics_problems", ""), 0.0, "{metrics}");
    })
    .await
    .unwrap();
}

/// The body and status of `POST path` on `url` with a JSON body (HTTP/1.0).
async fn http_post(url: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let (path, body) = (path.to_owned(), body.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr.as_str()).expect("connect to the dashboard");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (status, out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default())
    })
    .await
    .unwrap()
}

/// The start event's input payload as the `temporal` CLI prints it (`workflow show -o json`).
fn cli_start_input(env: &PromoEnv, wid: &str, codec: Option<&str>) -> serde_json::Value {
    let mut c = Command::new(promo_tests::temporal::temporal_bin());
    c.args(["workflow", "show", "--workflow-id", wid, "-o", "json", "--address", &env.dev.address()]);
    c.args(["--namespace", promo_tests::temporal::NAMESPACE]);
    if let Some(endpoint) = codec {
        c.args(["--codec-endpoint", endpoint]);
    }
    let out = c.output().expect("run the temporal CLI");
    assert!(out.status.success(), "temporal workflow show: {}", String::from_utf8_lossy(&out.stderr));
    let history: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON history");
    history["events"][0]["workflowExecutionStartedEventAttributes"]["input"].clone()
}

/// A large payload travels compressed (the Go SDK's `binary/zlib` format), the worker reads it,
/// and a client without the codec — the `temporal` CLI — reads it as JSON through the dashboard's
/// codec server; what is not a `Payloads` message is refused with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_the_codec_reads_compressed_payloads_through_the_dashboard() {
    use promo_workflows::{
        PromotionWorkflow, api,
        codec::{ENCODING, ZlibCodec, is_compressed},
    };
    use temporalio_common::{
        data_converters::{DataConverter, DefaultFailureConverter, PayloadConverter},
        protos::temporal::api::history::v1::history_event::Attributes,
    };
    // The dev server's Web UI decodes through the dashboard, as `make demo` sets it up.
    let port = promo_tests::temporal::free_port().unwrap();
    let endpoint = format!("http://127.0.0.1:{port}/codec");
    let options = DevServerOptions { ui_codec_endpoint: Some(endpoint.clone()), ..Default::default() };
    let env = PromoEnv::start_with(test_policy(), options).await.unwrap();
    std::fs::write(env.dir().join("policy.toml"), toml::to_string(&test_policy()).unwrap()).unwrap();
    let (_dashboard, url) = DashboardProcess::start_on(&env, &format!("127.0.0.1:{port}")).await;
    // A producer that compresses every payload that shrinks (a small spec is below the default
    // threshold; a national one is far above it).
    let every = DataConverter::new(
        PayloadConverter::default(),
        DefaultFailureConverter::default(),
        ZlibCodec { compress_above: 0 },
    );
    let producer = env.dev.client_with(every).await.unwrap();
    let s = spec("CODEC-1", &["R1"], 0..6, 30.0, 3.0);
    env.with_worker(async {
        producer
            .start_workflow(PromotionWorkflow::run, s.clone().into(), api::start_options(&env.task_queue, &s))
            .await
            .unwrap();
        // The worker decoded the spec: the promotion reached approval with its six lines.
        let status =
            env.wait_status("CODEC-1", "approval", LIMIT, |x| x.stage() == Stage::Approval).await.unwrap();
        assert_eq!(status.promotion_id, "CODEC-1");
    })
    .await
    .unwrap();

    // On the wire, the start input is compressed.
    let events = env.history("CODEC-1").await.unwrap();
    let Some(Attributes::WorkflowExecutionStartedEventAttributes(started)) = &events[0].attributes else {
        panic!("the first event is the start: {:?}", events[0]);
    };
    let raw = started.input.as_ref().unwrap().payloads[0].clone();
    assert!(is_compressed(&raw), "the start input is binary/zlib: {:?}", raw.metadata);
    let plain = ZlibCodec::decode_one(raw.clone()).unwrap();
    assert!(raw.data.len() < plain.data.len(), "{} vs {} bytes", raw.data.len(), plain.data.len());
    let sent: serde_json::Value = serde_json::from_slice(&plain.data).unwrap();
    assert_eq!(sent["promotionId"], "CODEC-1");

    // The `temporal` CLI without a codec sees the compressed payload ...
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let opaque = cli_start_input(&env, &api::workflow_id("CODEC-1"), None);
    assert!(opaque.to_string().contains(&b64(ENCODING)), "without the codec: {opaque}");
    assert!(!opaque.to_string().contains("CODEC-1"), "{opaque}");
    // ... and with the dashboard as its codec server, the spec.
    let decoded = cli_start_input(&env, &api::workflow_id("CODEC-1"), Some(&endpoint));
    let text = decoded.to_string();
    assert_eq!(decoded["payloads"][0]["metadata"]["encoding"], b64("json/plain"), "with the codec: {text}");
    let data = base64::engine::general_purpose::STANDARD
        .decode(decoded["payloads"][0]["data"].as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("with the codec, data is base64: {e}: {text}"));
    let shown: serde_json::Value = serde_json::from_slice(&data).expect("with the codec, the spec's JSON");
    assert_eq!(shown, sent, "the CLI shows the spec the producer sent");
    println!("decoded through {endpoint}: {}", &text[..text.len().min(200)]);

    // So does the Web UI, in a browser: its Input panel shows the spec, not the compressed bytes.
    let page = format!(
        "{}/namespaces/{}/workflows/{}",
        env.dev.ui_url().unwrap(),
        promo_tests::temporal::NAMESPACE,
        api::workflow_id("CODEC-1")
    );
    let shot = env.dir().join("webui-codec.png");
    let out = tokio::process::Command::new("node")
        .arg(promo_tests::temporal::workspace_root().join("tests/browser/webui.mjs"))
        .args([page.as_str(), "\"promotionId\": \"CODEC-1\"", shot.to_str().unwrap()])
        .output()
        .await
        .expect("run node");
    assert!(out.status.success(), "webui.mjs: {}", String::from_utf8_lossy(&out.stderr));
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).expect("webui.mjs prints JSON");
    let calls = seen["codecCalls"].as_array().cloned().unwrap_or_default();
    assert!(seen["found"] == true, "the Web UI never showed the spec: {}", seen["text"]);
    assert!(!calls.is_empty() && calls.iter().all(|c| c["status"] == 200), "codec calls: {calls:?}");
    assert!(seen["zlibShown"] == false, "{}", seen["text"]);
    println!("Web UI decoded the input through {} codec calls; screenshot {}", calls.len(), shot.display());

    // The codec server speaks proto3 JSON both ways and refuses anything else, naming it.
    let encoded = serde_json::json!({ "payloads": [{
        "metadata": { "encoding": b64("json/plain") },
        "data": b64(&"{\"k\":\"0123456789\"}".repeat(1000)),
    }]});
    let (status, body) = http_post(&url, "/codec/encode", &encoded.to_string()).await;
    assert_eq!(status, 200, "{body}");
    let round: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(round["payloads"][0]["metadata"]["encoding"], b64(ENCODING), "{body}");
    let (status, body) = http_post(&url, "/codec/decode", &round.to_string()).await;
    assert_eq!(status, 200, "{body}");
    let back: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(back["payloads"][0]["data"], encoded["payloads"][0]["data"]);
    let (status, body) = http_post(&url, "/codec/decode", "{\"payloads\": 7}").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("payloads"), "{body}");
    let corrupt = serde_json::json!({ "payloads": [{ "metadata": { "encoding": b64(ENCODING) }, "data": b64("nope") }]});
    let (status, body) = http_post(&url, "/codec/decode", &corrupt.to_string()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("payloads[0]") && body.contains("zlib"), "{body}");
}

/// The record of a promotion that waits on an activity (patch `activities-carry`): the activity
/// carries the events recorded since the last wait, so the record shows the approval decided and
/// publishing begun while the channels take their time — with no `promo.record_events` of its
/// own before the wait — and events whose write failed there are recorded by the run's next
/// flush, none lost and none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_follows_a_wait_on_the_channels_and_loses_nothing_when_it_is_down() {
    use promo_contracts::retail::v1::{Fault, InjectFaultRequest};
    use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
    let mut policy = test_policy();
    // 20 s of wall clock: the acknowledgment wait below ends when the channels answer.
    policy.durations.ack_deadline = "10d".parse().unwrap();
    let env = PromoEnv::start(policy).await.unwrap();
    let inject = |fault: Fault| {
        let env = &env;
        async move {
            let mut admin = env.admin().await.unwrap();
            admin.inject_fault(InjectFaultRequest { fault: Some(fault) }).await.unwrap().into_inner().fault_id
        }
    };
    let list = |id: &'static str| {
        let env = &env;
        async move {
            let req = ListEventsRequest { promotion_id: id.into(), ..Default::default() };
            env.events().await.unwrap().list_events(req).await.unwrap().into_inner().events
        }
    };
    env.with_worker(async {
        // 1. The record down for the write the acknowledgment wait makes: every attempt of it
        //    fails (six in place), and the run's next flush records what it carried.
        env.start_promotion(spec("REC-DOWN", &["R3"], 0..4, 3.0, 2.0)).await.unwrap();
        env.wait_status("REC-DOWN", "approval", LIMIT, |s| s.stage() == Stage::Approval).await.unwrap();
        let down = inject(Fault {
            service: "analytics".into(),
            method: "RecordEvents".into(),
            error_rate: "1".into(),
            max_hits: 6,
            ..Default::default()
        })
        .await;
        env.approve("REC-DOWN", "E1001", Role::Merchandising).await.unwrap();
        assert_eq!(env.result("REC-DOWN").await.unwrap().outcome(), Outcome::Completed);
        assert_eq!(env.calls(down).await.unwrap(), 6, "the carried write met the outage");
        let done = list("REC-DOWN").await;
        let stages: Vec<&str> = done
            .iter()
            .filter(|e| e.kind() == ProcessEventKind::StageEntered)
            .map(|e| e.stage.as_str())
            .collect();
        for s in ["INTAKE", "APPROVAL", "SCHEDULING", "PUBLISHING", "ACTIVE", "CLOSING", "DONE"] {
            assert_eq!(stages.iter().filter(|x| **x == s).count(), 1, "{s} recorded once: {stages:?}");
        }
        let kinds = |k: ProcessEventKind| done.iter().filter(|e| e.kind() == k).count();
        assert_eq!(kinds(ProcessEventKind::ApprovalDecided), 1, "{done:#?}");
        assert!(kinds(ProcessEventKind::Acknowledged) >= 2, "POS and store comms of R3: {done:#?}");

        // 2. The channels of R1 acknowledge 6 s after each publication: while the run waits for
        //    them, the record already holds the approval and the publishing stage.
        let slow = Fault {
            service: "publication".into(),
            region_id: "R1".into(),
            ack_delay_ms: 6_000,
            ..Default::default()
        };
        inject(slow).await;
        env.start_promotion(spec("REC-WAIT", &["R1"], 0..4, 30.0, 2.0)).await.unwrap();
        env.wait_status("REC-WAIT", "approval", LIMIT, |s| s.stage() == Stage::Approval).await.unwrap();
        env.approve("REC-WAIT", "E1001", Role::Merchandising).await.unwrap();
        let deadline = std::time::Instant::now() + LIMIT;
        let seen = loop {
            let seen = list("REC-WAIT").await;
            if seen.iter().any(|e| e.kind() == ProcessEventKind::StageEntered && e.stage == "PUBLISHING") {
                break seen;
            }
            assert!(std::time::Instant::now() < deadline, "publishing never recorded: {seen:#?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let status = env.wait_status("REC-WAIT", "status", LIMIT, |_| true).await.unwrap();
        assert_eq!(status.stage(), Stage::Publishing, "recorded while the run waits on its channels");
        assert!(seen.iter().any(|e| e.kind() == ProcessEventKind::ApprovalDecided), "{seen:#?}");
        // From the approval to the wait: no local activity of the record's own.
        let history = env.history("REC-WAIT").await.unwrap();
        let names: Vec<String> = history
            .iter()
            .map(|e| match &e.attributes {
                Some(Attributes::WorkflowExecutionUpdateCompletedEventAttributes(_)) => "update".into(),
                Some(Attributes::ActivityTaskScheduledEventAttributes(a)) => {
                    a.activity_type.as_ref().map_or(String::new(), |t| t.name.clone())
                }
                Some(Attributes::MarkerRecordedEventAttributes(m)) => m
                    .details
                    .values()
                    .filter_map(|p| p.payloads.first())
                    .filter_map(|p| serde_json::from_slice::<serde_json::Value>(&p.data).ok())
                    .find_map(|v| v["activity_type"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| m.marker_name.clone()),
                _ => String::new(),
            })
            .collect();
        let from = names.iter().position(|n| n == "update").expect("the approval");
        let to = names.iter().position(|n| n == "promo.publish_and_await").expect("the wait");
        assert!(from < to, "{names:?}");
        assert!(!names[from..to].iter().any(|n| n == "promo.record_events"), "{names:?}");
        assert!(names[from..to].iter().any(|n| n == "promo.stage_prices"), "{names:?}");
    })
    .await
    .unwrap();
}
