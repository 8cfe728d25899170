//! The read model's commands: `promo dashboard` (served until interrupted), `promo exceptions`
//! (the dashboard's exception queue as a table) and `promo ask` (a question in plain words),
//! each from a fresh [`promo_insight::Snapshot`].

use super::{Output, connect};
use crate::{
    ask,
    cli::{AskArgs, DashboardArgs, ExceptionsArgs, InsightArgs},
    dashboard::Dashboard,
    error::CliError,
    render,
};
use promo_activities::{Systems, SystemsTls};
use promo_insight::{self as insight, Sla};
use promo_workflows::policy::{Policy, Span};
use serde_json::json;
use std::time::Duration;

/// The SLA thresholds and the analytics client of `dashboard` and `ask`.
fn insight_sources(a: &InsightArgs) -> Result<(Sla, Option<Systems>), CliError> {
    let policy = match std::fs::read_to_string(&a.policy) {
        Ok(text) => Policy::from_toml(&text)
            .map_err(|e| CliError::Usage(format!("--policy {}: {e}", a.policy.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Policy::default(),
        Err(e) => return Err(CliError::Usage(format!("--policy {}: {e}", a.policy.display()))),
    };
    let age: Span = a
        .exception_sla
        .parse()
        .map_err(|e| CliError::Usage(format!("--exception-sla {:?}: {e}", a.exception_sla)))?;
    let tls = SystemsTls::from_env().map_err(|e| CliError::Usage(e.to_string()))?;
    let systems = Systems::with_tls(&a.systems, tls.as_ref())
        .map_err(|e| CliError::Usage(format!("--systems: {e}")))?;
    Ok((Sla::from_policy(&policy, age.0), Some(systems)))
}

/// `promo dashboard`: serves until interrupted.
pub(super) async fn dashboard(a: &DashboardArgs) -> Result<Output, CliError> {
    let (sla, systems) = insight_sources(&a.insight)?;
    let addr: std::net::SocketAddr =
        a.listen.parse().map_err(|e| CliError::Usage(format!("--listen {:?}: {e}", a.listen)))?;
    let namespace = std::env::var("TEMPORAL_NAMESPACE").unwrap_or_else(|_| "default".into());
    let mut d = Dashboard::new(connect().await?, systems, sla, a.web_ui.clone(), namespace);
    d.refresh = a.refresh.max(1);
    d.serve(addr, |bound| {
        println!("dashboard: http://{bound}/");
    })
    .await
    .map_err(|e| CliError::Usage(format!("--listen {addr}: {e}")))?;
    Ok(Output { human: String::new(), json: json!({}) })
}

/// `promo exceptions`: the exception queue of the dashboard, as a table.
pub(super) async fn exceptions(a: &ExceptionsArgs, timeout: Duration) -> Result<Output, CliError> {
    let (sla, _) = insight_sources(&a.insight)?;
    // The queue comes from the running promotions' status; the event record is not needed.
    let snap = insight::snapshot(&connect().await?, None, 1000, timeout.min(Duration::from_secs(10))).await;
    let owner = a.owner.as_deref().map(|o| o.trim().to_uppercase().replace('-', "_"));
    let queue: Vec<_> = insight::exception_queue(&snap, &sla)
        .into_iter()
        .filter(|q| owner.as_deref().is_none_or(|o| q.owner == o))
        .take(a.limit)
        .collect();
    let mut human = render::exceptions(&queue);
    human.push_str(&not_read(&snap));
    Ok(Output { human, json: json!({ "exceptions": queue, "notRead": snap.problems }) })
}

/// `promo ask`.
pub(super) async fn ask(a: &AskArgs, timeout: Duration) -> Result<Output, CliError> {
    let question = a.question.join(" ");
    let (sla, systems) = insight_sources(&a.insight)?;
    let snap =
        insight::snapshot(&connect().await?, systems.as_ref(), 1000, timeout.min(Duration::from_secs(10)))
            .await;
    match ask::answer(&question, &snap, &sla) {
        Ok(ans) => {
            let human = format!("{}\n\nsource: {}\n{}", ans.text, ans.source, not_read(&snap));
            Ok(Output {
                human,
                json: json!({ "question": question, "answer": ans.text, "source": ans.source, "notRead": snap.problems }),
            })
        }
        Err(forms) => Err(CliError::Usage(forms)),
    }
}

/// The line naming the sources a snapshot could not read, under what was shown from the others.
fn not_read(snap: &insight::Snapshot) -> String {
    if snap.problems.is_empty() { String::new() } else { format!("not read: {}\n", snap.problems.join("; ")) }
}
