//! `promo dashboard`: the operations page on localhost. Each request takes a fresh
//! [`Snapshot`] (cached for two seconds) and renders it server-side: HTML tables and
//! hand-written SVG charts, no JavaScript, nothing fetched from elsewhere; the page reloads
//! itself every few seconds. `/api/views` serves the same views as JSON.

use axum::{
    Json, Router,
    extract::State,
    response::{Html, IntoResponse},
    routing::get,
};
use promo_activities::Systems;
use promo_insight::{self as insight, PendingApproval, QueuedException, Sla, Snapshot, Spread};
use serde_json::json;
use std::{collections::BTreeMap, fmt::Write, net::SocketAddr, sync::Arc, time::Duration};
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
    fn promotion(&self, id: &str) -> String {
        format!(
            "<a class=\"promo\" href=\"{}/namespaces/{}/workflows/{}\">{}</a>",
            esc(self.web_ui.trim_end_matches('/')),
            esc(self.namespace),
            esc(&promo_workflows::api::workflow_id(id)),
            esc(id)
        )
    }
}

/// HTML-escapes text.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A duration for people: `45s`, `12m`, `3h 20m`, `2d 4h`.
pub fn age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
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
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"{refresh}\">\
         <title>Promotions — operations</title><style>{STYLE}</style></head><body>\
         <header><h1>Promotion operations</h1><span id=\"taken\">{} promotions · {} running · refreshed {} UTC</span></header>",
        s.promotions.len(),
        s.statuses.len(),
        chrono::DateTime::from_timestamp(s.now, 0)
            .map_or_else(String::new, |t| t.format("%H:%M:%S").to_string()),
    );
    if !s.problems.is_empty() {
        let _ = write!(
            h,
            "<p class=\"problems\" id=\"problems\">Not everything could be read: {}</p>",
            esc(&s.problems.join("; "))
        );
    }
    h.push_str("<main>");
    section(
        &mut h,
        "stages",
        "Promotions by stage",
        &bar_chart(
            "chart-stages",
            &insight::by_stage(s).into_iter().map(|(k, n)| (k, vec![n as f64])).collect::<Vec<_>>(),
            &["promotions"],
            |v| format!("{v}"),
        ),
    );
    section(&mut h, "approvals-section", "Approvals pending", &approvals_table(&pending, links));
    section(
        &mut h,
        "exceptions-section",
        "Exception queue (by revenue at risk)",
        &exceptions_table(&queue, links),
    );
    section(&mut h, "readiness-section", "Regional readiness", &readiness(s, links));
    let ct = insight::cycle_times(&s.events);
    section(
        &mut h,
        "cycle-times",
        "Cycle time per stage (p50 / p95)",
        &spread_chart("chart-cycle-times", &ct),
    );
    let waits = insight::approval_waits(&s.events, &pending);
    let rows: Vec<(String, Spread)> =
        waits.iter().map(|(r, sp, n)| (format!("{r} · {n} pending"), *sp)).collect();
    section(
        &mut h,
        "bottlenecks",
        "Approval time by role (p50 / p95)",
        &spread_chart("chart-approvals", &rows),
    );
    section(&mut h, "kpis", "Post-event KPIs", &kpis(&insight::kpis(&s.events), links));
    h.push_str("</main></body></html>");
    h
}

fn section(h: &mut String, id: &str, title: &str, body: &str) {
    // The tables with free text take the whole width.
    let class = if matches!(id, "exceptions-section" | "kpis") { " class=\"wide\"" } else { "" };
    let _ = write!(h, "<section id=\"{id}\"{class}><h2>{}</h2>{body}</section>", esc(title));
}

fn approvals_table(pending: &[PendingApproval], links: &Links<'_>) -> String {
    if pending.is_empty() {
        return "<p class=\"empty\">No approval is pending.</p>".into();
    }
    let mut t = String::from(
        "<table id=\"approvals\"><tr><th>Promotion</th><th>Role</th><th>Waiting</th><th>SLA</th><th>Why</th></tr>",
    );
    for p in pending {
        let class = match p.sla {
            "escalated" => "bad",
            "reminder due" => "warn",
            _ => "ok",
        };
        let _ = write!(
            t,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td><span class=\"badge {class}\">{}</span></td><td>{}</td></tr>",
            links.promotion(&p.promotion_id),
            esc(&p.role),
            age(p.age),
            p.sla,
            esc(&p.reason)
        );
    }
    t.push_str("</table>");
    t
}

fn exceptions_table(queue: &[QueuedException], links: &Links<'_>) -> String {
    if queue.is_empty() {
        return "<p class=\"empty\">No open exception.</p>".into();
    }
    let mut t = String::from(
        "<table id=\"exceptions\"><tr><th class=\"num\">#</th><th>Promotion</th><th>Kind</th><th>Region</th><th>Owner</th>\
         <th class=\"num\">Revenue at risk</th><th class=\"num\">Age</th><th>Detail</th></tr>",
    );
    for (i, q) in queue.iter().enumerate() {
        let overdue = if q.overdue { " <span class=\"badge bad\">overdue</span>" } else { "" };
        let _ = write!(
            t,
            "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{:.2}</td><td class=\"num\">{}{overdue}</td><td>{}</td></tr>",
            i + 1,
            links.promotion(&q.promotion_id),
            esc(&q.kind),
            esc(if q.region_id.is_empty() { "national" } else { &q.region_id }),
            esc(&q.owner),
            q.revenue_at_risk,
            age(q.age),
            esc(&q.detail)
        );
    }
    t.push_str("</table>");
    t
}

fn readiness(s: &Snapshot, links: &Links<'_>) -> String {
    let rows = insight::readiness(s);
    if rows.is_empty() {
        return "<p class=\"empty\">No promotion is running.</p>".into();
    }
    let mut t =
        String::from("<table id=\"readiness\"><tr><th>Promotion</th><th>Stage</th><th>Regions</th></tr>");
    for (id, stage, cells) in rows {
        let chips: String = cells
            .iter()
            .map(|c| {
                let class = match c.state.as_str() {
                    "ACTIVE" | "READY" if c.awaiting == 0 => "ok",
                    "AT_RISK" | "DROPPED" => "bad",
                    _ => "warn",
                };
                let awaiting = match c.awaiting {
                    0 => String::new(),
                    1 => " · 1 ack pending".to_owned(),
                    n => format!(" · {n} acks pending"),
                };
                format!(
                    "<span class=\"chip {class}\" title=\"{}\">{} {}{awaiting}</span>",
                    esc(&c.note),
                    esc(&c.region_id),
                    esc(&c.state)
                )
            })
            .collect();
        let _ =
            write!(t, "<tr><td>{}</td><td>{}</td><td>{chips}</td></tr>", links.promotion(&id), esc(&stage));
    }
    t.push_str("</table>");
    t
}

fn kpis(rows: &[(String, BTreeMap<String, String>)], links: &Links<'_>) -> String {
    if rows.is_empty() {
        return "<p class=\"empty\">No promotion has reported yet.</p>".into();
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
    let mut t = String::from("<table id=\"kpi-table\"><tr><th>Promotion</th>");
    for (_, name) in COLS {
        let _ = write!(t, "<th class=\"num\">{name}</th>");
    }
    t.push_str("</tr>");
    for (id, k) in rows {
        let _ = write!(t, "<tr><td>{}</td>", links.promotion(id));
        for (key, _) in COLS {
            let shown = match (k.get(key), key) {
                (None, _) => "–".to_owned(),
                (Some(v), "markdown_exposure" | "stockout_store_days") => v.clone(),
                (Some(v), _) => percent(v),
            };
            let _ = write!(t, "<td class=\"num\">{}</td>", esc(&shown));
        }
        t.push_str("</tr>");
    }
    t.push_str("</table>");
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
    t.push_str(&bar_chart(
        "chart-kpis",
        &rates,
        &["sell-through %", "on-time launch %", "price accuracy %"],
        |v| format!("{v:.0}%"),
    ));
    t
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
) -> String {
    if rows.is_empty() {
        return "<p class=\"empty\">Nothing to chart yet.</p>".into();
    }
    let max = rows.iter().flat_map(|(_, v)| v.iter().copied()).fold(0.0_f64, f64::max).max(1e-9);
    // Room for the longest row label (about 6.5 px a character at 11 px).
    let longest = rows.iter().map(|(name, _)| name.chars().count()).max().unwrap_or(0);
    let left = (longest as f64 * 6.5 + 12.0).clamp(100.0, 260.0);
    let (width, bar, gap) = (330.0, 12.0, 8.0);
    let group = bar * series.len() as f64 + gap;
    let height = 24.0 + group * rows.len() as f64;
    let mut svg = format!(
        "<svg id=\"{id}\" class=\"chart\" role=\"img\" width=\"100%\" viewBox=\"0 0 {} {height}\" xmlns=\"http://www.w3.org/2000/svg\">",
        left + width + 60.0
    );
    for (i, name) in series.iter().enumerate() {
        let x = left + i as f64 * 120.0;
        let _ = write!(
            svg,
            "<rect class=\"legend\" x=\"{x}\" y=\"4\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"13\">{}</text>",
            COLORS[i % 3],
            x + 14.0,
            esc(name)
        );
    }
    for (r, (name, values)) in rows.iter().enumerate() {
        let y0 = 24.0 + r as f64 * group;
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            left - 6.0,
            y0 + group / 2.0,
            esc(name)
        );
        for (i, v) in values.iter().enumerate() {
            let w = (v / max * width).max(1.0);
            let y = y0 + i as f64 * bar;
            let _ = write!(
                svg,
                "<rect class=\"bar\" data-label=\"{}\" x=\"{left}\" y=\"{y}\" width=\"{w:.1}\" height=\"{}\" fill=\"{}\"><title>{}: {}</title></rect>\
                 <text x=\"{:.1}\" y=\"{}\">{}</text>",
                esc(name),
                bar - 2.0,
                COLORS[i % 3],
                esc(name),
                label(*v),
                left + w + 4.0,
                y + bar - 3.0,
                label(*v)
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// p50 / p95 bars of durations.
fn spread_chart(id: &str, rows: &[(String, Spread)]) -> String {
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
    fn text_is_escaped_and_ages_read_like_people_write_them() {
        assert_eq!(esc("<a href='x'>&\"</a>"), "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;");
        assert_eq!(
            [age(5), age(125), age(3 * 3600 + 1200), age(2 * 86_400 + 4 * 3600)],
            ["5s", "2m", "3h 20m", "2d 4h"]
        );
    }

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
        assert!(!html.contains("<script"), "no JavaScript");
    }
}
