//! `promo dashboard`: the operations page on localhost. Each request takes a fresh
//! [`Snapshot`] (cached for two seconds) and renders it server-side with `maud`, whose
//! templates escape every value they are given, so no text from a promotion (a name, an
//! exception's detail, an approver's reason) can become markup: HTML tables and SVG charts, no
//! JavaScript, nothing fetched from elsewhere; the page reloads itself every few seconds.
//! `/api/views` serves the same views as JSON.

use crate::render::age;
use axum::{
    Json, Router,
    extract::State,
    response::{Html, IntoResponse},
    routing::get,
};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use promo_activities::Systems;
use promo_insight::{self as insight, PendingApproval, QueuedException, Sla, Snapshot, Spread};
use serde_json::json;
use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};
use temporalio_client::Client;
use tokio::sync::Mutex;

/// What the server needs.
pub struct Dashboard {
    /// Temporal.
    pub client: Client,
    /// The analytics service (the retail systems by default).
    pub systems: Option<Systems>,
    /// Thresholds.
    pub sla: Sla,
    /// Base URL of the Temporal Web UI, for links.
    pub web_ui: String,
    /// The namespace, for links.
    pub namespace: String,
    /// Seconds between reloads of the page.
    pub refresh: u64,
    /// Promotions listed at most.
    pub limit: usize,
    cache: Mutex<Option<(std::time::Instant, Arc<Snapshot>)>>,
}

impl Dashboard {
    /// A dashboard over these sources.
    pub fn new(
        client: Client,
        systems: Option<Systems>,
        sla: Sla,
        web_ui: String,
        namespace: String,
    ) -> Self {
        Self { client, systems, sla, web_ui, namespace, refresh: 5, limit: 500, cache: Mutex::new(None) }
    }

    async fn snapshot(&self) -> Arc<Snapshot> {
        let mut cache = self.cache.lock().await;
        if let Some((at, s)) = cache.as_ref()
            && at.elapsed() < Duration::from_secs(2)
        {
            return s.clone();
        }
        let s = Arc::new(
            insight::snapshot(&self.client, self.systems.as_ref(), self.limit, Duration::from_secs(5)).await,
        );
        *cache = Some((std::time::Instant::now(), s.clone()));
        s
    }

    /// Serves until the process ends; `ready` gets the bound address.
    pub async fn serve(self, addr: SocketAddr, ready: impl FnOnce(SocketAddr)) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        ready(listener.local_addr()?);
        let app = Router::new()
            .route("/", get(page))
            .route("/api/views", get(views))
            .route("/healthz", get(|| async { "ok" }))
            .merge(crate::codec_server::routes())
            .with_state(Arc::new(self));
        axum::serve(listener, app).await
    }
}

async fn page(State(d): State<Arc<Dashboard>>) -> impl IntoResponse {
    let s = d.snapshot().await;
    Html(render(&s, &d.sla, &Links { web_ui: &d.web_ui, namespace: &d.namespace }, d.refresh))
}

async fn views(State(d): State<Arc<Dashboard>>) -> impl IntoResponse {
    let s = d.snapshot().await;
    let pending = insight::pending_approvals(&s, &d.sla);
    Json(json!({
        "takenAt": s.now,
        "byStage": insight::by_stage(&s),
        "pendingApprovals": pending,
        "exceptionQueue": insight::exception_queue(&s, &d.sla),
        "readiness": insight::readiness(&s),
        "cycleTimes": insight::cycle_times(&s.events),
        "approvalWaits": insight::approval_waits(&s.events, &pending),
        "kpis": insight::kpis(&s.events),
        "problems": s.problems,
    }))
}

/// Where promotions link to.
pub struct Links<'a> {
    /// Web UI base URL.
    pub web_ui: &'a str,
    /// Namespace.
    pub namespace: &'a str,
}

impl Links<'_> {
    /// A promotion's id, linked to its workflow in the Web UI.
    fn promotion(&self, id: &str) -> Markup {
        let href = format!(
            "{}/namespaces/{}/workflows/{}",
            self.web_ui.trim_end_matches('/'),
            self.namespace,
            promo_workflows::api::workflow_id(id)
        );
        html! { a.promo href=(href) { (id) } }
    }
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f5f6f8;color:#1d2330}
header{background:#1d2330;color:#fff;padding:12px 24px;display:flex;justify-content:space-between;align-items:baseline}
header h1{font-size:20px;margin:0}main{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:16px;padding:16px 24px}
section{background:#fff;border-radius:8px;padding:12px 16px;box-shadow:0 1px 2px #0002;min-width:0;overflow-x:auto}
section.wide{grid-column:1/-1}td{overflow-wrap:anywhere}
h2{font-size:15px;margin:0 0 8px}table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:4px 6px;border-bottom:1px solid #e4e6eb;vertical-align:top}th{font-weight:600;color:#555}
td.num,th.num{text-align:right}.badge{border-radius:4px;padding:1px 6px;font-size:12px;white-space:nowrap}
.ok{background:#dff3e4;color:#16632b}.warn{background:#fff1cc;color:#7a5500}.bad{background:#fde0e0;color:#9b1c1c}
.chip{display:inline-block;margin:2px;padding:2px 6px;border-radius:4px;font-size:12px}
.empty{color:#777;font-style:italic}.problems{color:#9b1c1c}svg text{font-size:11px;fill:#333}svg.chart{max-width:760px;display:block}
a.promo{color:#1f5fbf;text-decoration:none;font-weight:600}";

/// The whole page.
pub fn render(s: &Snapshot, sla: &Sla, links: &Links<'_>, refresh: u64) -> String {
    let pending = insight::pending_approvals(s, sla);
    let queue = insight::exception_queue(s, sla);
    let taken = chrono::DateTime::from_timestamp(s.now, 0)
        .map_or_else(String::new, |t| t.format("%H:%M:%S").to_string());
    let stages: Vec<(String, Vec<f64>)> =
        insight::by_stage(s).into_iter().map(|(k, n)| (k, vec![n as f64])).collect();
    let waits: Vec<(String, Spread)> = insight::approval_waits(&s.events, &pending)
        .into_iter()
        .map(|(r, sp, n)| (format!("{r} · {n} pending"), sp))
        .collect();
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content=(refresh);
                title { "Promotions — operations" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    h1 { "Promotion operations" }
                    span #taken {
                        (s.promotions.len()) " promotions · " (s.statuses.len()) " running · refreshed "
                        (taken) " UTC"
                    }
                }
                @if !s.problems.is_empty() {
                    p.problems #problems { "Not everything could be read: " (s.problems.join("; ")) }
                }
                main {
                    (section("stages", "Promotions by stage",
                        bar_chart("chart-stages", &stages, &["promotions"], |v| format!("{v}"))))
                    (section("approvals-section", "Approvals pending", approvals_table(&pending, links)))
                    (section("exceptions-section", "Exception queue (by revenue at risk)",
                        exceptions_table(&queue, links)))
                    (section("readiness-section", "Regional readiness", readiness(s, links)))
                    (section("cycle-times", "Cycle time per stage (p50 / p95)",
                        spread_chart("chart-cycle-times", &insight::cycle_times(&s.events))))
                    (section("bottlenecks", "Approval time by role (p50 / p95)",
                        spread_chart("chart-approvals", &waits)))
                    (section("kpis", "Post-event KPIs", kpis(&insight::kpis(&s.events), links)))
                }
            }
        }
    };
    page.into_string()
}

fn section(id: &str, title: &str, body: Markup) -> Markup {
    // The tables with free text take the whole width.
    let wide = matches!(id, "exceptions-section" | "kpis").then_some("wide");
    html! { section id=(id) class=[wide] { h2 { (title) } (body) } }
}

/// The placeholder of an empty panel.
fn empty(text: &str) -> Markup {
    html! { p.empty { (text) } }
}

fn approvals_table(pending: &[PendingApproval], links: &Links<'_>) -> Markup {
    if pending.is_empty() {
        return empty("No approval is pending.");
    }
    html! {
        table #approvals {
            tr { th { "Promotion" } th { "Role" } th { "Waiting" } th { "SLA" } th { "Why" } }
            @for p in pending {
                @let class = match p.sla {
                    "escalated" => "badge bad",
                    "reminder due" => "badge warn",
                    _ => "badge ok",
                };
                tr {
                    td { (links.promotion(&p.promotion_id)) }
                    td { (p.role) }
                    td.num { (age(p.age)) }
                    td { span class=(class) { (p.sla) } }
                    td { (p.reason) }
                }
            }
        }
    }
}

fn exceptions_table(queue: &[QueuedException], links: &Links<'_>) -> Markup {
    if queue.is_empty() {
        return empty("No open exception.");
    }
    html! {
        table #exceptions {
            tr {
                th.num { "#" } th { "Promotion" } th { "Kind" } th { "Region" } th { "Owner" }
                th.num { "Revenue at risk" } th.num { "Age" } th { "Detail" }
            }
            @for (i, q) in queue.iter().enumerate() {
                tr {
                    td.num { (i + 1) }
                    td { (links.promotion(&q.promotion_id)) }
                    td { (q.kind) }
                    td { (if q.region_id.is_empty() { "national" } else { &q.region_id }) }
                    td { (q.owner) }
                    td.num { (format!("{:.2}", q.revenue_at_risk)) }
                    td.num {
                        (age(q.age))
                        @if q.overdue { " " span.badge.bad { "overdue" } }
                    }
                    td { (q.detail) }
                }
            }
        }
    }
}

fn readiness(s: &Snapshot, links: &Links<'_>) -> Markup {
    let rows = insight::readiness(s);
    if rows.is_empty() {
        return empty("No promotion is running.");
    }
    html! {
        table #readiness {
            tr { th { "Promotion" } th { "Stage" } th { "Regions" } }
            @for (id, stage, cells) in &rows {
                tr {
                    td { (links.promotion(id)) }
                    td { (stage) }
                    td {
                        @for c in cells {
                            @let class = match c.state.as_str() {
                                "ACTIVE" | "READY" if c.awaiting == 0 => "chip ok",
                                "AT_RISK" | "DROPPED" => "chip bad",
                                _ => "chip warn",
                            };
                            @let awaiting = match c.awaiting {
                                0 => String::new(),
                                1 => " · 1 ack pending".to_owned(),
                                n => format!(" · {n} acks pending"),
                            };
                            span class=(class) title=(c.note) { (c.region_id) " " (c.state) (awaiting) }
                        }
                    }
                }
            }
        }
    }
}

fn kpis(rows: &[(String, BTreeMap<String, String>)], links: &Links<'_>) -> Markup {
    if rows.is_empty() {
        return empty("No promotion has reported yet.");
    }
    // Ratios are shown as percentages; the rest as recorded.
    const COLS: [(&str, &str); 7] = [
        ("sell_through", "Sell-through"),
        ("forecast_variance", "Forecast variance"),
        ("markdown_exposure", "Markdown exposure"),
        ("on_time_launch_rate", "On-time launch"),
        ("on_time_ack_rate", "On-time acks"),
        ("price_accuracy", "Price accuracy"),
        ("stockout_store_days", "Stockout store-days"),
    ];
    let shown = |k: &BTreeMap<String, String>, key: &str| match (k.get(key), key) {
        (None, _) => "–".to_owned(),
        (Some(v), "markdown_exposure" | "stockout_store_days") => v.clone(),
        (Some(v), _) => percent(v),
    };
    let rates: Vec<(String, Vec<f64>)> = rows
        .iter()
        .rev()
        .take(12)
        .rev()
        .map(|(id, k)| {
            let v = |key: &str| k.get(key).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0) * 100.0;
            (id.clone(), vec![v("sell_through"), v("on_time_launch_rate"), v("price_accuracy")])
        })
        .collect();
    html! {
        table #kpi-table {
            tr {
                th { "Promotion" }
                @for (_, name) in COLS { th.num { (name) } }
            }
            @for (id, k) in rows {
                tr {
                    td { (links.promotion(id)) }
                    @for (key, _) in COLS { td.num { (shown(k, key)) } }
                }
            }
        }
        (bar_chart(
            "chart-kpis",
            &rates,
            &["sell-through %", "on-time launch %", "price accuracy %"],
            |v| format!("{v:.0}%"),
        ))
    }
}

/// A ratio ("0.0829") as a percentage ("8.3%"); anything else as it is.
fn percent(v: &str) -> String {
    v.parse::<f64>().map_or_else(|_| v.to_owned(), |x| format!("{:.1}%", x * 100.0))
}

const COLORS: [&str; 3] = ["#3b6fd8", "#e39b2d", "#2e9e5b"];

/// Horizontal grouped bars: one group per row, one bar per series, values labelled.
fn bar_chart(
    id: &str,
    rows: &[(String, Vec<f64>)],
    series: &[&str],
    label: impl Fn(f64) -> String,
) -> Markup {
    if rows.is_empty() {
        return empty("Nothing to chart yet.");
    }
    let max = rows.iter().flat_map(|(_, v)| v.iter().copied()).fold(0.0_f64, f64::max).max(1e-9);
    // Room for the longest row label (about 6.5 px a character at 11 px).
    let longest = rows.iter().map(|(name, _)| name.chars().count()).max().unwrap_or(0);
    let left = (longest as f64 * 6.5 + 12.0).clamp(100.0, 260.0);
    let (width, bar, gap) = (330.0, 12.0, 8.0);
    let group = bar * series.len() as f64 + gap;
    let height = 24.0 + group * rows.len() as f64;
    // SVG elements get explicit end tags: in HTML, only the SVG parser's self-closing syntax ends
    // an element without one, and maud writes void elements the HTML way.
    html! {
        svg id=(id) class="chart" role="img" width="100%"
            viewBox=(format!("0 0 {} {height}", left + width + 60.0)) xmlns="http://www.w3.org/2000/svg" {
            @for (i, name) in series.iter().enumerate() {
                @let x = left + i as f64 * 120.0;
                rect.legend x=(x) y="4" width="10" height="10" fill=(COLORS[i % 3]) {}
                text x=(x + 14.0) y="13" { (name) }
            }
            @for (r, (name, values)) in rows.iter().enumerate() {
                @let y0 = 24.0 + r as f64 * group;
                text x=(left - 6.0) y=(y0 + group / 2.0) text-anchor="end" { (name) }
                @for (i, v) in values.iter().enumerate() {
                    @let w = (v / max * width).max(1.0);
                    @let y = y0 + i as f64 * bar;
                    rect.bar data-label=(name) x=(left) y=(y) width=(format!("{w:.1}")) height=(bar - 2.0)
                        fill=(COLORS[i % 3]) {
                        title { (name) ": " (label(*v)) }
                    }
                    text x=(format!("{:.1}", left + w + 4.0)) y=(y + bar - 3.0) { (label(*v)) }
                }
            }
        }
    }
}

/// p50 / p95 bars of durations.
fn spread_chart(id: &str, rows: &[(String, Spread)]) -> Markup {
    let data: Vec<(String, Vec<f64>)> = rows
        .iter()
        .filter(|(_, s)| s.n > 0)
        .map(|(k, s)| (format!("{k} (n={})", s.n), vec![s.p50 as f64, s.p95 as f64]))
        .collect();
    bar_chart(id, &data, &["p50", "p95"], |v| age(v as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use promo_contracts::{
        pbjson_types::Timestamp,
        promo::v1::{PromotionException, PromotionStatus},
        retail::v1::{ProcessEvent, ProcessEventKind},
    };

    #[test]
    fn the_page_shows_the_queue_the_charts_and_links_to_the_web_ui() {
        let mut s = Snapshot { now: 10_000, ..Default::default() };
        s.statuses.insert(
            "P<1>".into(),
            PromotionStatus {
                open_exceptions: vec![PromotionException {
                    exception_id: "x".into(),
                    revenue_at_risk: "1234.5".into(),
                    raised_at: Some(Timestamp { seconds: 9_000, nanos: 0 }),
                    detail: "<script>alert('a \"detail\" & more')</script>".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
        s.events = ["INTAKE", "ASSESSMENT", "APPROVAL"]
            .iter()
            .enumerate()
            .map(|(i, st)| ProcessEvent {
                run_id: "r".into(),
                kind: ProcessEventKind::StageEntered as i32,
                stage: (*st).into(),
                at: Some(Timestamp { seconds: i as i64 * 60, nanos: 0 }),
                ..Default::default()
            })
            .collect();
        let sla = Sla { approval_reminder: 60, approval_escalation: 120, exception_age: 600 };
        let html = render(&s, &sla, &Links { web_ui: "http://ui:8233/", namespace: "default" }, 5);
        assert!(html.contains("http://ui:8233/namespaces/default/workflows/promotion-P&lt;1&gt;"), "{html}");
        assert!(html.contains("<table id=\"exceptions\">") && html.contains("1234.50"), "{html}");
        assert!(html.contains("overdue"), "16 minutes old, past 10");
        assert!(
            html.contains("id=\"chart-cycle-times\"") && html.matches("class=\"bar\"").count() >= 4,
            "{html}"
        );
        // Text from a promotion is text: escaped by the template, never markup.
        assert!(
            html.contains("&lt;script&gt;alert('a &quot;detail&quot; &amp; more')&lt;/script&gt;"),
            "{html}"
        );
        assert!(!html.contains("<script"), "no JavaScript");
    }
}
