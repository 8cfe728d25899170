//! `promo-demo`: the national launch of docs/design.md, §1 (the canonical scenario), driven end to
//! end and narrated.
//!
//! Expects a Temporal dev server (env config, as the `temporal` CLI), the reference systems with
//! the canonical dataset, and a worker running with a compressed-clock policy; `make demo`
//! starts all three. The driver builds the promotion from the product master (1,200 SKUs, 6
//! regions, stores and digital channels), starts it, plays the planner and the approvers (one
//! unauthorised attempt included), and prints what the workflow reports as it happens. The
//! post-event report at the end is `promo report`'s own screen (run as a command, so the demo
//! shows what planners read, the supplier funding reconciliation per agreement included).

use anyhow::{Context, bail};
use chrono::Timelike;
use clap::Parser;
use promo_contracts::{
    promo::v1::*,
    retail::v1::{
        self as wire, GetDatasetInfoRequest, GetProductsRequest, admin_service_client::AdminServiceClient,
        product_service_client::ProductServiceClient,
    },
};
use promo_workflows::{PromotionWorkflow, api};
use prost::Message;
use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};
use temporalio_client::{
    Client, WorkflowExecuteUpdateOptions, WorkflowFetchHistoryOptions, WorkflowGetResultOptions,
    WorkflowQueryOptions, errors::WorkflowUpdateError,
};

/// Runs the national launch against running servers.
#[derive(Debug, Parser)]
struct Args {
    /// Retail systems address.
    #[arg(long, env = "PROMO_SYSTEMS_ADDR", default_value = "http://127.0.0.1:50051")]
    systems: String,
    /// Promotion id (the workflow id is `promotion-<id>`).
    #[arg(long, default_value = "NATIONAL-LAUNCH")]
    promotion_id: String,
    /// Business days from now to the launch.
    #[arg(long, default_value_t = 2)]
    launch_in_days: i64,
    /// Business days the promotion runs.
    #[arg(long, default_value_t = 14)]
    days: i64,
    /// Web UI base URL, for the link printed at the end.
    #[arg(long, default_value = "http://localhost:8233")]
    ui: String,
    /// The approvers' secret keys (`<employee id>.key`); every decision is signed with them.
    #[arg(long, default_value = ".run/keys")]
    keys: std::path::PathBuf,
    /// Make the approvers' keys instead of running: a key pair per approver of the policy file
    /// into --keys, and the policy with their public keys in [approver_keys] written here.
    #[arg(long, value_name = "FILE", requires = "policy_in")]
    prepare_keys: Option<std::path::PathBuf>,
    /// The policy file to add the approvers' public keys to (with --prepare-keys).
    #[arg(long, value_name = "FILE")]
    policy_in: Option<std::path::PathBuf>,
    /// The `promo` CLI, which prints the post-event report (default: `promo` beside this
    /// binary, as `cargo build` leaves them).
    #[arg(long, value_name = "FILE", env = "PROMO_BIN")]
    promo: Option<std::path::PathBuf>,
}

/// The `promo` binary: `--promo`, or the one beside this binary. Looked for before the run, so a
/// missing one is said at once rather than after the launch.
fn promo_bin(args: &Args) -> anyhow::Result<std::path::PathBuf> {
    let path = match &args.promo {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name(format!("promo{}", std::env::consts::EXE_SUFFIX)),
    };
    if !path.is_file() {
        bail!(
            "the post-event report is printed by `promo report`, and there is no promo at {} \
             (build it with `cargo build -p promo-starter`, in the same profile, or pass --promo)",
            path.display()
        );
    }
    Ok(path)
}

/// The post-event report as `promo report` prints it for planners (sales, money, the supplier
/// funding reconciliation per agreement, execution, price mismatches, cycle times, regions),
/// indented under the demo's heading.
async fn print_report(promo: &std::path::Path, id: &str) -> anyhow::Result<()> {
    let out = tokio::process::Command::new(promo)
        .args(["report", id, "--no-wait"])
        .output()
        .await
        .with_context(|| format!("running {} report {id}", promo.display()))?;
    if !out.status.success() {
        bail!("`promo report {id}` failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    println!("\n== Post-event report ==");
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        println!("{}", format!("  {line}").trim_end());
    }
    Ok(())
}

/// The demo's planner, who chooses remediation options (signed, like every privileged message).
const PLANNER: &str = "E0042";

/// `--prepare-keys`: a key pair per person in the directory (the approvers and the planner), and
/// the policy that knows their public keys.
fn prepare_keys(args: &Args, out: &std::path::Path) -> anyhow::Result<()> {
    let input = args.policy_in.as_ref().context("--policy-in is required")?;
    let text = std::fs::read_to_string(input).with_context(|| input.display().to_string())?;
    let policy = promo_workflows::policy::Policy::from_toml(&text).map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(&args.keys)?;
    let mut keys = String::from(
        "\n# Added by promo-demo --prepare-keys: the demo approvers' public keys.\n[approver_keys]\n",
    );
    for who in policy.approvers.keys() {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let (secret, public) = promo_workflows::signing::keypair_from_seed(seed);
        std::fs::write(args.keys.join(format!("{who}.key")), format!("{secret}\n"))?;
        keys.push_str(&format!("{who} = \"{public}\"\n"));
    }
    std::fs::write(out, format!("{text}{keys}"))?;
    println!(
        "demo: signing keys for the {} people of the directory in {}",
        policy.approvers.len(),
        args.keys.display()
    );
    Ok(())
}

struct Narrator {
    start: Instant,
}

impl Narrator {
    fn say(&self, what: impl AsRef<str>) {
        println!("[{:>6.1}s] {}", self.start.elapsed().as_secs_f64(), what.as_ref());
    }
}

fn stage(s: Stage) -> &'static str {
    s.as_str_name().trim_start_matches("STAGE_")
}

fn role(r: Role) -> &'static str {
    r.as_str_name().trim_start_matches("ROLE_")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(out) = &args.prepare_keys {
        return prepare_keys(&args, out);
    }
    let promo = promo_bin(&args)?;
    let n = Narrator { start: Instant::now() };
    let client = api::connect("promo-demo").await.map_err(anyhow::Error::msg)?;

    let mut admin = AdminServiceClient::connect(args.systems.clone())
        .await
        .with_context(|| format!("reference systems at {}", args.systems))?;
    let info = admin.get_dataset_info(GetDatasetInfoRequest {}).await?.into_inner();
    println!("\n== The national launch ==");
    println!(
        "dataset {:?}: {} stores in {} regions, {} DCs, {} SKUs, {} store positions",
        info.name, info.stores, info.regions, info.dcs, info.skus, info.store_positions
    );
    println!("built into it, as in the broken world of docs/design.md, §1:");
    for f in &info.built_in_failures {
        println!("  - {f}");
    }

    let spec = national_launch(&args, &info).await?;
    let json = serde_json::to_vec(&spec)?.len();
    n.say(format!(
        "planner E0042 starts {} — {} lines, {} regions, channels POS / eCommerce / store comms, {} → {} ({} KB of spec)",
        spec.promotion_id,
        spec.lines.len(),
        spec.regions.len(),
        spec.window.as_ref().map_or("", |w| &w.starts_at),
        spec.window.as_ref().map_or("", |w| &w.ends_at),
        json / 1024
    ));
    let opts = api::start_options(api::TASK_QUEUE, &spec);
    client.start_workflow(PromotionWorkflow::run, spec.clone().into(), opts).await.map_err(|e| {
        anyhow::anyhow!(
            "starting {}: {e} (a previous demo run? use --promotion-id or restart the dev server)",
            spec.promotion_id
        )
    })?;
    let handle = client.get_workflow_handle::<PromotionWorkflow>(api::workflow_id(&spec.promotion_id));

    let mut seen_stage = Stage::Unspecified;
    let mut seen_exceptions = BTreeSet::new();
    let mut region_states: BTreeMap<String, RegionState> = BTreeMap::new();
    let mut approved = false;
    let mut remediated = false;
    let mut drifted = false;
    // Replenishment transfers already narrated.
    let mut transfers_seen: BTreeSet<String> = BTreeSet::new();
    loop {
        let status = handle.query(PromotionWorkflow::status, (), WorkflowQueryOptions::default()).await?;
        if status.stage() != seen_stage {
            seen_stage = status.stage();
            n.say(format!(
                "▶ stage {}  (revision {}, risk {})",
                stage(seen_stage),
                status.revision,
                status.risk
            ));
            if seen_stage == Stage::Approval || seen_stage == Stage::Remediation {
                print_assessment(&client, &spec.promotion_id).await?;
            }
        }
        // Transfers waiting for supply chain are narrated with their round below.
        for e in status.open_exceptions.iter().filter(|e| !e.exception_id.starts_with("transfer-")) {
            if seen_exceptions.insert(e.exception_id.clone()) {
                n.say(format!(
                    "  ⚠ exception {} [{} {}] owner {}: {} (revenue at risk {})",
                    e.exception_id,
                    e.kind().as_str_name().trim_start_matches("EXCEPTION_KIND_"),
                    e.severity().as_str_name().trim_start_matches("SEVERITY_"),
                    role(e.owner_role()),
                    e.detail,
                    e.revenue_at_risk
                ));
            }
        }
        for r in &status.regions {
            let before = region_states.insert(r.region_id.clone(), r.state());
            if before != Some(r.state()) && before.is_some() {
                let note = if r.note.is_empty() { String::new() } else { format!(" — {}", r.note) };
                n.say(format!(
                    "  region {} → {}{note}",
                    r.region_id,
                    r.state().as_str_name().trim_start_matches("REGION_STATE_")
                ));
            }
        }
        if status.stage() == Stage::Remediation && !remediated && !status.remediation_options.is_empty() {
            remediated = true;
            print_options(&status.remediation_options);
            let failing: BTreeSet<&str> =
                status.remediation_options.iter().map(|o| o.region_id.as_str()).collect();
            for region in failing {
                let choice = status
                    .remediation_options
                    .iter()
                    .filter(|o| o.region_id == region)
                    .find(|o| o.kind == "delay")
                    .or_else(|| status.remediation_options.iter().find(|o| o.region_id == region))
                    .expect("an option per failing region");
                let comment = "keep the full assortment; launch when the inbound stock lands";
                let subject = format!("remediation {region} {}", choice.option_id);
                let (signature, signed_at) =
                    sign(&args.keys, &status, PLANNER, ("choose_remediation", &subject), "-", comment);
                let r = handle
                    .execute_update(
                        PromotionWorkflow::choose_remediation,
                        serde_json::to_value(RemediationChoice {
                            region_id: region.to_owned(),
                            option_id: choice.option_id.clone(),
                            chosen_by: PLANNER.into(),
                            comment: comment.into(),
                            signature,
                            signed_at,
                        })
                        .unwrap(),
                        WorkflowExecuteUpdateOptions::default(),
                    )
                    .await;
                n.say(format!("  planner {PLANNER} chooses {}, signed: {}", choice.option_id, answer(r)));
            }
        }
        if status.stage() == Stage::Approval && !approved {
            approved = true;
            for a in &status.approvals {
                n.say(format!("  approval required: {} — {}", role(a.role()), a.reason));
            }
            // An unauthorised attempt: finance tries to sign off merchandising.
            let r = approve(&handle, &args.keys, &status, "E2001", Role::Merchandising, "I'll sign this too")
                .await;
            n.say(format!("  E2001 tries to approve as MERCHANDISING: {}", answer(r)));
            let directory =
                [(Role::Merchandising, "E1001"), (Role::Finance, "E2001"), (Role::SupplyChain, "E3001")];
            for a in &status.approvals {
                let Some((_, who)) = directory.iter().find(|(r, _)| *r == a.role()) else { continue };
                let comment = match a.role() {
                    Role::Finance => "accept the unfunded lines at our cost; claim the rest",
                    Role::SupplyChain => "delay accepted; transfer orders released",
                    _ => "assortment and prices approved",
                };
                let r = approve(&handle, &args.keys, &status, who, a.role(), comment).await;
                n.say(format!(
                    "  {who} approves as {}, signed with {who}'s key: {}",
                    role(a.role()),
                    answer(r)
                ));
            }
        }
        // Once R1 is live, its POS silently applies wrong prices for three SKUs (a channel
        // that acknowledged the file and then loaded it badly): the next read-back catches it.
        let r1_live = status.regions.iter().any(|r| r.region_id == "R1" && r.state() == RegionState::Active);
        if r1_live && !drifted {
            drifted = true;
            let drift = wire::DriftPricesRequest {
                channel: wire::Channel::Pos as i32,
                region_id: "R1".into(),
                promotion_id: spec.promotion_id.clone(),
                drift: wire::Drift::Wrong as i32,
                sku_count: 3,
            };
            match admin.drift_prices(drift).await {
                Ok(r) => n.say(format!(
                    "  ⚡ R1's POS silently charges wrong prices for {} (10% over the approved price)",
                    r.into_inner().skus.join(", ")
                )),
                Err(e) => n.say(format!("  (could not make R1's POS drift: {})", e.message())),
            }
        }
        // In-flight replenishment: each monitoring round's transfers, once, with the first
        // round's in detail; supply chain (E3001) approves a round's dearer ones, signed.
        let new: Vec<&Transfer> =
            status.transfers.iter().filter(|t| !transfers_seen.contains(&t.transfer_id)).collect();
        let mut rounds: BTreeMap<String, Vec<&Transfer>> = BTreeMap::new();
        for t in &new {
            let round = t.transfer_id.split('-').nth(1).unwrap_or("").to_owned();
            rounds.entry(round).or_default().push(t);
        }
        for (round, ts) in &rounds {
            let units: i64 = ts.iter().map(|t| t.units).sum();
            let money = |f: fn(&Transfer) -> &str| -> f64 {
                ts.iter().filter_map(|t| f(t).parse::<f64>().ok()).sum()
            };
            n.say(format!(
                "  ↪ replenishment {round}: {} transfers, {units} units, cost {:.2}, protects {:.2} of revenue",
                ts.len(),
                money(|t| &t.cost),
                money(|t| &t.revenue_protected)
            ));
            if transfers_seen.is_empty() {
                for t in ts {
                    n.say(format!(
                        "      {}: {} units to {} store × SKU cells, cost {}, protects {}; {}",
                        t.transfer_id, t.units, t.cells, t.cost, t.revenue_protected, t.rationale
                    ));
                }
            }
            transfers_seen.extend(ts.iter().map(|t| t.transfer_id.clone()));
        }
        if new.iter().any(|t| t.state() == TransferState::AwaitingApproval) {
            let comment = "transfers approved: the stores would run out";
            let r = approve(&handle, &args.keys, &status, "E3001", Role::SupplyChain, comment).await;
            n.say(format!("      E3001 approves as SUPPLY_CHAIN, signed: {}", answer(r)));
        }
        if status.stage() == Stage::Done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let result = handle.get_result(WorkflowGetResultOptions::default()).await?;
    n.say(format!("outcome {}", result.outcome().as_str_name().trim_start_matches("OUTCOME_")));
    if result.report.is_none() {
        bail!("the promotion ended without a report: {}", result.reason);
    }
    print_report(&promo, &spec.promotion_id).await?;
    history_figures(&client, &spec.promotion_id).await?;
    let wid = api::workflow_id(&spec.promotion_id);
    println!("\nWeb UI:   {}/namespaces/default/workflows/{wid}", args.ui.trim_end_matches('/'));
    println!("CLI:      temporal workflow list --query \"PromotionId = '{}'\"", spec.promotion_id);
    println!("          temporal workflow query --workflow-id {wid} --name status");
    Ok(())
}

/// A signature of `message` about `subject` to the promotion whose `status` is given, with
/// `who`'s key from `keys` (as the CLI's `--key` signs), and when it was made.
fn sign(
    keys: &std::path::Path,
    status: &PromotionStatus,
    who: &str,
    (message, subject): (&str, &str),
    role: &str,
    comment: &str,
) -> (String, i64) {
    let signed_at = chrono::Utc::now().timestamp();
    let workflow_id = api::workflow_id(&status.promotion_id);
    let payload = promo_workflows::signing::Signed {
        workflow_id: &workflow_id,
        first_run_id: &status.first_run_id,
        message,
        subject,
        revision: status.revision,
        actor: who,
        role,
        comment,
        signed_at,
    }
    .payload();
    let secret = std::fs::read_to_string(keys.join(format!("{who}.key"))).unwrap_or_default();
    (promo_workflows::signing::sign(secret.trim(), &payload).unwrap_or_default(), signed_at)
}

/// Sends `approve`, signed with the approver's key from `keys` as `promo approve --key` does:
/// for the promotion's run chain and current revision, about what its status says the role
/// decides now (the approval, or the transfers awaiting supply chain).
async fn approve(
    handle: &temporalio_client::WorkflowHandle<Client, PromotionWorkflow>,
    keys: &std::path::Path,
    status: &PromotionStatus,
    who: &str,
    role: Role,
    comment: &str,
) -> Result<ActionResult, WorkflowUpdateError> {
    let subject =
        status.decision_subjects.get(role.as_str_name()).cloned().unwrap_or_else(|| "approval".into());
    let (signature, signed_at) = sign(keys, status, who, ("approve", &subject), role.as_str_name(), comment);
    let revision = status.revision;
    handle
        .execute_update(
            PromotionWorkflow::approve,
            serde_json::to_value(ApprovalDecision {
                approver_id: who.into(),
                role: role as i32,
                revision,
                comment: comment.into(),
                signature,
                signed_at,
            })
            .unwrap(),
            WorkflowExecuteUpdateOptions::default(),
        )
        .await
}

fn answer(r: Result<ActionResult, WorkflowUpdateError>) -> String {
    match r {
        Ok(a) => format!("accepted ({})", a.message),
        Err(WorkflowUpdateError::Failed(f)) => format!("REFUSED — {}", f.message),
        Err(e) => format!("error: {e}"),
    }
}

/// The national-launch spec from the product master: every SKU at 20–30% off by price band,
/// supplier-funded where the supplier has a funding agreement (FA-<supplier number>).
async fn national_launch(args: &Args, info: &wire::GetDatasetInfoResponse) -> anyhow::Result<PromotionSpec> {
    let skus: Vec<String> = (1..=info.skus).map(|i| format!("SKU-{i:05}")).collect();
    let products = ProductServiceClient::connect(args.systems.clone())
        .await?
        .get_products(GetProductsRequest { skus })
        .await?
        .into_inner()
        .products;
    let funding_suppliers = (40 * 4_u32).div_ceil(5);
    let lines = products
        .iter()
        .map(|p| {
            let supplier: u32 = p.supplier_id.trim_start_matches("SUP-").parse().unwrap_or(0);
            PromotionLine {
                sku: p.sku.clone(),
                offer: Some(promotion_line::Offer::DiscountPercent(
                    match p.price_band {
                        1 | 2 => "20",
                        3 => "25",
                        _ => "30",
                    }
                    .into(),
                )),
                funding_agreement_id: if supplier >= 1 && supplier <= funding_suppliers {
                    format!("FA-{supplier:03}")
                } else {
                    String::new()
                },
                planned_uplift: String::new(),
            }
        })
        .collect();
    // Launch on the hour, `launch_in_days` business days from now, in New York time.
    let tz = chrono_tz::America::New_York;
    let now = chrono::Utc::now().with_timezone(&tz).naive_local();
    let start = now.date().and_hms_opt(now.hour(), 0, 0).context("local time")?
        + chrono::Duration::days(args.launch_in_days)
        + chrono::Duration::hours(1);
    let end = start + chrono::Duration::days(args.days);
    Ok(PromotionSpec {
        promotion_id: args.promotion_id.clone(),
        name: "Summer National Launch".into(),
        window: Some(PromotionWindow {
            starts_at: start.format("%Y-%m-%dT%H:%M").to_string(),
            ends_at: end.format("%Y-%m-%dT%H:%M").to_string(),
            time_zone: tz.name().into(),
        }),
        regions: (1..=info.regions).map(|r| format!("R{r}")).collect(),
        stores: vec![],
        channels: vec![
            wire::Channel::Pos as i32,
            wire::Channel::Ecommerce as i32,
            wire::Channel::StoreComms as i32,
        ],
        lines,
        planner_id: "E0042".into(),
        description: "Two-week seasonal promotion across every store and the digital channels.".into(),
    })
}

async fn print_assessment(client: &Client, id: &str) -> anyhow::Result<()> {
    let h = client.get_workflow_handle::<PromotionWorkflow>(api::workflow_id(id));
    let a = h.query(PromotionWorkflow::assessment, (), WorkflowQueryOptions::default()).await?;
    if a.regions.is_empty() {
        return Ok(());
    }
    let forecast = promo_workflows::decisions::forecast_model_audit(&a);
    let stockout = promo_workflows::decisions::stockout_audit(&a);
    let m = a.margin.unwrap_or_default();
    let f = a.funding.unwrap_or_default();
    println!(
        "\n  assessment of revision {} ({} positions read): forecast {} units, revenue {}, margin {} ({}), discount exposure {}",
        a.revision,
        a.positions_read,
        m.forecast_units,
        m.forecast_revenue,
        m.forecast_margin,
        m.margin_rate,
        m.discount_exposure
    );
    println!(
        "  {:<6} {:>7} {:>11} {:>11} {:>9} {:>9} {:>9} {:>6}  verdict",
        "region", "stores", "demand", "covered", "fill", "coverage", "stockout", "short"
    );
    for r in &a.regions {
        println!(
            "  {:<6} {:>7} {:>11} {:>11} {:>9} {:>9} {:>9} {:>6}  {}",
            r.region_id,
            r.stores,
            r.demand_units,
            r.covered_units,
            r.fill_rate,
            r.coverage,
            r.stockout_probability,
            r.short_sku_count,
            if r.passes {
                "pass".to_owned()
            } else {
                format!("FAIL (revenue at risk {})", r.revenue_at_risk)
            }
        );
    }
    if let Some(text) = stockout {
        println!("  stockout risk: {text}");
    }
    println!(
        "  funding: {} funded lines, {} without a valid agreement ({}), forecast claim {}",
        f.funded_lines,
        f.issue_count,
        f.invalid_agreements.join(", "),
        f.forecast_claim
    );
    if let Some(text) = forecast {
        println!("  forecast: {text}");
        if let Some(first) = m.forecast_model.as_ref().and_then(|fm| fm.explanations.first()) {
            println!("    e.g. {first}");
        }
    }
    println!("  margin: {} lines below the floor", m.exception_count);
    match m.anomalies.first() {
        None => println!("  margin anomalies: none (no line far below its peers)\n"),
        Some(first) => println!(
            "  margin anomalies: {} lines far below their peers (revenue {}); the most anomalous:\n    {}\n",
            m.anomaly_count, m.anomaly_revenue, first.explanation
        ),
    }
    Ok(())
}

fn print_options(options: &[RemediationOption]) {
    println!("\n  remediation options:");
    println!("  {:<16} {:<56} {:>12} {:>12} {:>7}", "option", "what", "revenue", "margin", "fill");
    for o in options {
        println!(
            "  {:<16} {:<56} {:>12} {:>12} {:>7}",
            o.option_id, o.description, o.revenue_effect, o.margin_effect, o.resulting_fill_rate
        );
    }
    println!();
}

/// The scale rules of docs/design.md, §5, measured on this run's history.
async fn history_figures(client: &Client, id: &str) -> anyhow::Result<()> {
    let h = client.get_workflow_handle::<PromotionWorkflow>(api::workflow_id(id));
    let events = h.fetch_history(WorkflowFetchHistoryOptions::default()).into_events().await?;
    let largest = events.iter().max_by_key(|e| e.encoded_len());
    let total: usize = events.iter().map(|e| e.encoded_len()).sum();
    println!(
        "\nhistory: {} events, {} KB in all; largest event {} KB, {} (limits: 2,000 events, 256 KB)",
        events.len(),
        total / 1024,
        largest.map_or(0, |e| e.encoded_len() / 1024),
        largest.map_or_else(String::new, |e| format!("#{} {:?}", e.event_id, e.event_type()))
    );
    Ok(())
}
