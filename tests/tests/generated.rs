//! Any message, any moment, any value — by a generator, not a list. A seeded random driver
//! runs promotions on the real dev server (one worker, the reference systems) and sends each a
//! random sequence of the nine messages, as updates and as signals: signed, unsigned, forged,
//! signed with the wrong key, for the wrong subject or revision, at the limits of their types;
//! random field values and inputs of the wrong shape; at random times across stage boundaries,
//! monitoring rounds and deadlines; with pauses of random length and short outages of one
//! service. The history budget is small, so runs continue as new in the middle of it all.
//!
//! Then it drives each promotion to its end, as people would (approving what waits, choosing an
//! option, resuming, overriding, clearing a blocked compensation) or by cancelling it, and
//! checks, for every seed: every update was answered within 10 s; no workflow task of any run of
//! the chain failed; the promotion ended DONE with no open exception and no pending approval;
//! nothing it wrote is live in the systems and its calendar reservation is released.
//!
//! - `PROMO_GEN_SEED=<n>` replays one seed (a failure prints its seed);
//! - `PROMO_GEN_RUNS=<n>` (default 30) and `PROMO_GEN_BASE=<n>` choose the seeds: seed 0, the
//!   fixed script (pause a live promotion across two monitoring rounds, then resume), and
//!   `base + 1 ..= base + runs - 1`. `make soak` runs 200, from a random base.

use promo_contracts::promo::v1::*;
use promo_tests::{
    env::{PromoEnv, now, sign_message, spec, test_keys, test_policy},
    promises,
};
use promo_workflows::{
    PromotionWorkflow,
    api::MessageKind,
    signing::{self, Subject},
};
use rand::{RngExt, SeedableRng, rngs::ChaCha8Rng};
use serde_json::{Value, json};
use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};
use temporalio_client::{WorkflowExecuteUpdateOptions, WorkflowSignalOptions, errors::WorkflowUpdateError};

/// The default first seed after the fixed one.
const BASE: u64 = 20_261_207;
/// How long an update may take to be answered.
const ANSWER_LIMIT: Duration = Duration::from_secs(10);
/// How long the driver gives a promotion to end once it stops sending random messages.
const END_LIMIT: Duration = Duration::from_secs(240);
/// Promotions driven at once.
const PARALLEL: usize = 6;

/// The people: employee id, role (for decisions), key seed.
const PEOPLE: [(&str, Role, u8); 5] = [
    ("E1001", Role::Merchandising, 1),
    ("E2001", Role::Finance, 2),
    ("E3001", Role::SupplyChain, 3),
    ("E4001", Role::Operations, 4),
    ("E0042", Role::Unspecified, 42),
];

fn secret(who: &str) -> String {
    let n = PEOPLE.iter().find(|p| p.0 == who).map_or(99, |p| p.2);
    test_keys(n).0
}

fn person_for(role: Role) -> &'static str {
    PEOPLE.iter().find(|p| p.1 == role).map_or("E4001", |p| p.0)
}

/// How a message is signed.
#[derive(Debug, Clone, Copy)]
enum Signing {
    Valid,
    Unsigned,
    /// Signed, then its comment changed.
    Forged,
    /// Signed with someone else's key.
    WrongKey,
    /// Signed for another subject.
    WrongSubject,
    /// `signedAt` at a limit of its type, or far in the past or future.
    Clock(i64),
    /// A signature that is not base64 of 64 bytes.
    Garbage,
}

/// One step of a script.
#[derive(Debug, Clone)]
enum Step {
    /// A message as an update (or a signal), its values drawn when it is sent.
    Send { kind: MessageKind, signal: bool, signing: Signing, plausible: bool },
    /// An input of the wrong shape.
    Raw { kind: MessageKind, signal: bool, input: Value },
    /// Nothing for a while.
    Wait(Duration),
    /// Pause (signed), wait, resume (signed).
    PauseFor(Duration),
    /// One service fails its next calls.
    Outage { service: &'static str, calls: u32 },
    /// Act as a diligent person would until the promotion is in a stage (at most a while).
    TendUntil(Stage, Duration),
    /// What a diligent person would do now (approve what waits, choose an option, resume, …).
    Tend,
}

/// What a seed does.
struct Script {
    regions: Vec<&'static str>,
    skus: std::ops::Range<usize>,
    start_days: f64,
    days: f64,
    steps: Vec<Step>,
    /// Cancel at the end instead of driving the promotion to its natural end.
    cancel: bool,
}

/// What seed `seed` does, in `slot` of its batch (promotions of one batch use SKUs of their own:
/// the calendar would refuse overlapping ones, which is tested elsewhere).
fn script(seed: u64, slot: usize) -> Script {
    if seed == 0 {
        // Pause a live promotion across two monitoring rounds (a business day each, two seconds
        // here), then resume: the rounds it slept through must not wedge it.
        return Script {
            regions: vec!["R1", "R3"],
            skus: 0..4,
            // Eight business days (16 s) to launch: room for the assessment and the approval
            // before the deadline however busy the machine, since this seed must complete.
            start_days: 8.0,
            days: 6.0,
            steps: vec![
                Step::TendUntil(Stage::Active, Duration::from_secs(90)),
                Step::PauseFor(Duration::from_secs(6)),
            ],
            cancel: false,
        };
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let regions: Vec<&str> = ["R1", "R2", "R3"].into_iter().filter(|_| rng.random_bool(0.6)).collect();
    let regions = if regions.is_empty() { vec!["R1"] } else { regions };
    let first = slot * 6 + rng.random_range(0..2);
    let n = rng.random_range(2..5);
    let steps = (0..rng.random_range(4..22)).map(|_| step(&mut rng)).collect();
    Script {
        regions,
        skus: first..first + n,
        start_days: rng.random_range(2.5..5.0),
        days: rng.random_range(2.0..6.0),
        steps,
        cancel: rng.random_bool(0.3),
    }
}

fn step(rng: &mut ChaCha8Rng) -> Step {
    let kind = MessageKind::ALL[rng.random_range(0..MessageKind::ALL.len())];
    match rng.random_range(0..100) {
        0..45 => {
            let signing = match rng.random_range(0..100) {
                0..55 => Signing::Valid,
                55..65 => Signing::Unsigned,
                65..72 => Signing::Forged,
                72..78 => Signing::WrongKey,
                78..84 => Signing::WrongSubject,
                84..94 => Signing::Clock(
                    [i64::MIN, i64::MAX, -1, 0, 4_102_444_801, now() - 86_400][rng.random_range(0..6)],
                ),
                _ => Signing::Garbage,
            };
            let plausible = rng.random_bool(0.75);
            Step::Send { kind, signal: rng.random_bool(0.25), signing, plausible }
        }
        45..53 => Step::Raw { kind, signal: rng.random_bool(0.4), input: wrong_shape(rng) },
        53..68 => Step::Wait(Duration::from_millis(rng.random_range(0..3_000))),
        68..88 => Step::Tend,
        88..95 => Step::PauseFor(Duration::from_millis(rng.random_range(200..7_000))),
        _ => Step::Outage {
            service: ["inventory", "publication", "analytics", "price", "directory", "replenishment"]
                [rng.random_range(0..6)],
            calls: rng.random_range(1..40),
        },
    }
}

/// An input no client should send, but some will.
fn wrong_shape(rng: &mut ChaCha8Rng) -> Value {
    let shapes = [
        Value::Null,
        json!([]),
        json!(42),
        json!("approve"),
        json!({"revision": -1}),
        json!({"revision": 4_294_967_296u64}),
        json!({"signedAt": "9223372036854775808"}),
        json!({"signedAt": 1e300}),
        json!({"approverId": "E1001", "role": 99}),
        json!({"approverId": "E1001", "role": "ROLE_NOPE"}),
        json!({"operatorId": "E4001", "reason": "x".repeat(100_000)}),
        json!({"regionId": "R1", "optionId": "R1:delay", "chosenBy": "\u{0000}\u{202e}"}),
        json!({"amendedSpec": {"promotionId": 7}}),
        json!({"resolution": "COMPENSATION_RESOLUTION_NOPE", "operatorId": "E4001", "reason": "r"}),
        json!({"a": {"b": {"c": {"d": {"e": [[[[[[]]]]]]}}}}}),
    ];
    shapes[rng.random_range(0..shapes.len())].clone()
}

/// A random comment: empty, ordinary, unicode, long.
fn comment(rng: &mut ChaCha8Rng) -> String {
    match rng.random_range(0..5) {
        0 => String::new(),
        1 => "looks right".into(),
        2 => "ok — 好 — 👍 — \u{202e}reversed".into(),
        3 => "x".repeat(rng.random_range(1_000..20_000)),
        _ => format!("note {}", rng.random_range(0..u64::MAX)),
    }
}

/// Sends a message as an update (`Ok(answer)` or `Err(refusal)`) or a signal (`Ok("sent")`);
/// an update not answered within [`ANSWER_LIMIT`] is a failure of the test.
async fn send(
    env: &PromoEnv,
    id: &str,
    kind: MessageKind,
    signal: bool,
    input: Value,
) -> Result<Result<String, String>, String> {
    let h = env.handle(id);
    if signal {
        let o = WorkflowSignalOptions::default;
        let r = match kind {
            MessageKind::Approve => h.signal(PromotionWorkflow::approve_signal, input, o()).await,
            MessageKind::Reject => h.signal(PromotionWorkflow::reject_signal, input, o()).await,
            MessageKind::RequestChanges => {
                h.signal(PromotionWorkflow::request_changes_signal, input, o()).await
            }
            MessageKind::ChooseRemediation => {
                h.signal(PromotionWorkflow::choose_remediation_signal, input, o()).await
            }
            MessageKind::Cancel => h.signal(PromotionWorkflow::cancel_signal, input, o()).await,
            MessageKind::Pause => h.signal(PromotionWorkflow::pause_signal, input, o()).await,
            MessageKind::Resume => h.signal(PromotionWorkflow::resume_signal, input, o()).await,
            MessageKind::Override => h.signal(PromotionWorkflow::override_signal, input, o()).await,
            MessageKind::ResolveCompensation => {
                h.signal(PromotionWorkflow::resolve_compensation_signal, input, o()).await
            }
        };
        return Ok(r.map(|()| "sent".to_owned()).map_err(|e| format!("signal error: {e}")));
    }
    let o = WorkflowExecuteUpdateOptions::default;
    let answer = async {
        match kind {
            MessageKind::Approve => h.execute_update(PromotionWorkflow::approve, input, o()).await,
            MessageKind::Reject => h.execute_update(PromotionWorkflow::reject, input, o()).await,
            MessageKind::RequestChanges => {
                h.execute_update(PromotionWorkflow::request_changes, input, o()).await
            }
            MessageKind::ChooseRemediation => {
                h.execute_update(PromotionWorkflow::choose_remediation, input, o()).await
            }
            MessageKind::Cancel => h.execute_update(PromotionWorkflow::cancel, input, o()).await,
            MessageKind::Pause => h.execute_update(PromotionWorkflow::pause, input, o()).await,
            MessageKind::Resume => h.execute_update(PromotionWorkflow::resume, input, o()).await,
            MessageKind::Override => h.execute_update(PromotionWorkflow::override_gate, input, o()).await,
            MessageKind::ResolveCompensation => {
                h.execute_update(PromotionWorkflow::resolve_compensation, input, o()).await
            }
        }
    };
    let started = Instant::now();
    match tokio::time::timeout(ANSWER_LIMIT, answer).await {
        Err(_) => {
            // What the promotion was doing: the last events of its history, and the whole of it
            // in a file for the post-mortem.
            let history = env.history(id).await.unwrap_or_default();
            let dump = std::env::temp_dir().join(format!("promo-gen-{id}-history.txt"));
            let lines: Vec<String> = history.iter().map(|e| format!("{e:?}")).collect();
            let _ = std::fs::write(&dump, lines.join("\n"));
            let tail: Vec<String> = history
                .iter()
                .rev()
                .take(16)
                .rev()
                .map(|e| format!("{} {:?}", e.event_id, e.event_type()))
                .collect();
            Err(format!(
                "{id}: {} update not answered within {ANSWER_LIMIT:?}; last events: {tail:?} (the whole history: {})",
                kind.name(),
                dump.display()
            ))
        }
        Ok(Ok(a)) => Ok(Ok(a.message)),
        Ok(Err(WorkflowUpdateError::Failed(f))) => {
            if f.message.trim().is_empty() {
                return Err(format!("{id}: {} refused without a reason", kind.name()));
            }
            Ok(Err(f.message.clone()))
        }
        // A promotion that has ended answers no update; anything else after the limit fails.
        Ok(Err(e)) if started.elapsed() < ANSWER_LIMIT => Ok(Err(format!("update error: {e}"))),
        Ok(Err(e)) => Err(format!("{id}: {} update failed after {:?}: {e}", kind.name(), started.elapsed())),
    }
}

/// What to send, from the promotion's status now: `plausible` values are what a person would
/// send (the right sender, the promotion's own regions and options); otherwise anything.
fn message(
    rng: &mut ChaCha8Rng,
    status: &PromotionStatus,
    kind: MessageKind,
    signing: Signing,
    plausible: bool,
) -> Value {
    let any_id = |rng: &mut ChaCha8Rng| {
        ["", " ", "E1001", "E9999", "e4001", "E4001 ", "💥", "'; DROP TABLE x; --"][rng.random_range(0..8)]
            .to_owned()
    };
    let role = match kind {
        MessageKind::Approve | MessageKind::Reject | MessageKind::RequestChanges => Some(
            status
                .approvals
                .iter()
                .find(|a| a.approved_by.is_empty())
                .map(ApprovalRequirement::role)
                .filter(|_| plausible)
                .unwrap_or([Role::Merchandising, Role::Finance, Role::SupplyChain][rng.random_range(0..3)]),
        ),
        _ => None,
    };
    let actor = match (kind, role) {
        _ if !plausible && rng.random_bool(0.5) => any_id(rng),
        (_, Some(r)) => person_for(r).to_owned(),
        (MessageKind::ChooseRemediation, _) => "E0042".to_owned(),
        _ => "E4001".to_owned(),
    };
    let revision = if plausible {
        status.revision
    } else {
        [0, 1, 2, status.revision + 1, u32::MAX][rng.random_range(0..5)]
    };
    let text = comment(rng);
    let region = if plausible {
        status.regions.get(rng.random_range(0..status.regions.len().max(1))).map(|r| r.region_id.clone())
    } else {
        Some(["R9", "", "r1", "R1"][rng.random_range(0..4)].to_owned())
    }
    .unwrap_or_default();
    let option = status
        .remediation_options
        .iter()
        .find(|o| o.region_id == region)
        .map(|o| o.option_id.clone())
        .filter(|_| plausible)
        .unwrap_or_else(|| format!("{region}:{}", ["delay", "drop-short", "nope"][rng.random_range(0..3)]));
    let accept = rng.random_bool(0.3);
    let subject = match kind {
        MessageKind::Approve | MessageKind::Reject => status
            .decision_subjects
            .get(role.unwrap_or(Role::Merchandising).as_str_name())
            .cloned()
            .unwrap_or_else(|| "approval".into()),
        MessageKind::RequestChanges => signing::subject(&Subject::Approval),
        MessageKind::ChooseRemediation => {
            signing::subject(&Subject::Remediation { region: &region, option: &option })
        }
        MessageKind::Cancel | MessageKind::Pause | MessageKind::Resume => {
            signing::subject(&Subject::Promotion)
        }
        MessageKind::Override => signing::subject(&Subject::Override(&region)),
        MessageKind::ResolveCompensation => {
            signing::subject(&Subject::Compensation(if accept { "accept" } else { "retry" }))
        }
    };
    let subject = match signing {
        Signing::WrongSubject => format!("{subject} x"),
        _ => subject,
    };
    let signer = match signing {
        Signing::WrongKey => if actor == "E1001" { "E2001" } else { "E1001" }.to_owned(),
        _ => actor.clone(),
    };
    let role_name = role.map_or("-", |r| r.as_str_name());
    let (mut signature, mut signed_at) = (String::new(), 0);
    if !matches!(signing, Signing::Unsigned) {
        let s = PromotionStatus { revision, ..status.clone() };
        (signature, signed_at) =
            sign_message(&s, kind.name(), &subject, revision, &actor, role_name, &text, &secret(&signer));
    }
    let text = match signing {
        Signing::Forged => format!("{text} (and one more thing)"),
        _ => text,
    };
    match signing {
        Signing::Clock(t) => signed_at = t,
        Signing::Garbage => signature = ["AAAA", "not base64!", "", "=="][rng.random_range(0..4)].to_owned(),
        _ => {}
    }
    let (sig, at) = (json!(signature), json!(signed_at.to_string()));
    match kind {
        MessageKind::Approve | MessageKind::Reject => json!({
            "approverId": actor, "role": role_name, "revision": revision, "comment": text,
            "signature": sig, "signedAt": at,
        }),
        MessageKind::RequestChanges => {
            let mut amended = spec(&status.promotion_id, &["R1"], 0..rng.random_range(1..4), 3.0, 2.0);
            if !plausible || rng.random_bool(0.3) {
                match rng.random_range(0..4) {
                    0 => amended.lines[0].sku = "SKU-NOPE".into(),
                    1 => amended.window.as_mut().unwrap().starts_at = "1970-01-01T00:00:00".into(),
                    2 => {
                        amended.lines[0].offer = Some(promotion_line::Offer::DiscountPercent("1e308".into()))
                    }
                    _ => amended.promotion_id = "SOMEONE-ELSE".into(),
                }
            }
            json!({
                "approverId": actor, "role": role_name, "revision": revision, "comment": text,
                "amendedSpec": serde_json::to_value(&amended).unwrap(), "signature": sig, "signedAt": at,
            })
        }
        MessageKind::ChooseRemediation => json!({
            "regionId": region, "optionId": option, "chosenBy": actor, "comment": text,
            "signature": sig, "signedAt": at,
        }),
        MessageKind::Cancel | MessageKind::Pause | MessageKind::Resume => json!({
            "operatorId": actor, "reason": text, "signature": sig, "signedAt": at,
        }),
        MessageKind::Override => json!({
            "operatorId": actor, "regionId": region, "reason": text, "signature": sig, "signedAt": at,
        }),
        MessageKind::ResolveCompensation => json!({
            "operatorId": actor,
            "resolution": if accept { "COMPENSATION_RESOLUTION_ACCEPT" } else { "COMPENSATION_RESOLUTION_RETRY" },
            "reason": text, "signature": sig, "signedAt": at,
        }),
    }
}

/// Counts of what one seed sent.
#[derive(Debug, Default)]
struct Tally {
    accepted: u32,
    refused: u32,
    signals: u32,
}

struct Driver {
    env: Arc<PromoEnv>,
    id: String,
    rng: ChaCha8Rng,
    tally: Tally,
}

impl Driver {
    async fn status(&self) -> Result<PromotionStatus, String> {
        self.env.wait_status(&self.id, "an answer", ANSWER_LIMIT, |_| true).await.map_err(|e| e.to_string())
    }

    async fn send_step(
        &mut self,
        kind: MessageKind,
        signal: bool,
        signing: Signing,
        plausible: bool,
    ) -> Result<(), String> {
        let status = self.status().await?;
        let input = message(&mut self.rng, &status, kind, signing, plausible);
        self.deliver(kind, signal, input).await
    }

    async fn deliver(&mut self, kind: MessageKind, signal: bool, input: Value) -> Result<(), String> {
        let verbose = std::env::var_os("PROMO_GEN_VERBOSE").is_some();
        let shown = if verbose { input.to_string().chars().take(300).collect() } else { String::new() };
        let answer = send(&self.env, &self.id, kind, signal, input).await?;
        if verbose {
            println!(
                "{} {}{} {shown}\n  -> {answer:?}",
                self.id,
                kind.name(),
                if signal { " (signal)" } else { "" }
            );
        }
        match answer {
            Ok(_) if signal => self.tally.signals += 1,
            Ok(_) => self.tally.accepted += 1,
            Err(_) => self.tally.refused += 1,
        }
        Ok(())
    }

    async fn run(&mut self, s: &Script) -> Result<(), String> {
        for step in s.steps.clone() {
            if self.status().await?.stage() == Stage::Done {
                break;
            }
            match step {
                Step::Send { kind, signal, signing, plausible } => {
                    self.send_step(kind, signal, signing, plausible).await?
                }
                Step::Raw { kind, signal, input } => self.deliver(kind, signal, input).await?,
                Step::Wait(d) => tokio::time::sleep(d).await,
                Step::PauseFor(d) => {
                    self.send_step(MessageKind::Pause, false, Signing::Valid, true).await?;
                    tokio::time::sleep(d).await;
                    self.send_step(MessageKind::Resume, false, Signing::Valid, true).await?;
                }
                Step::Outage { service, calls } => {
                    let fault = promo_contracts::retail::v1::Fault {
                        service: service.into(),
                        error_rate: "1".into(),
                        max_hits: calls,
                        ..Default::default()
                    };
                    let req = promo_contracts::retail::v1::InjectFaultRequest { fault: Some(fault) };
                    let admin = self.env.admin().await.map_err(|e| e.to_string())?;
                    admin.clone().inject_fault(req).await.map_err(|e| e.to_string())?;
                }
                Step::Tend => {
                    let st = self.status().await?;
                    self.act(&st).await?;
                }
                Step::TendUntil(stage, limit) => {
                    let deadline = Instant::now() + limit;
                    loop {
                        let st = self.status().await?;
                        if st.stage() == stage || st.stage() == Stage::Done {
                            break;
                        }
                        if Instant::now() > deadline {
                            return Err(format!("{}: never reached {stage:?}: {st:#?}", self.id));
                        }
                        self.act(&st).await?;
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                }
            }
        }
        if s.cancel {
            self.send_step(MessageKind::Cancel, false, Signing::Valid, true).await?;
        }
        self.finish().await
    }

    /// Drives the promotion to its end as the people would.
    async fn finish(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + END_LIMIT;
        let mut last_act = Instant::now() - Duration::from_secs(10);
        loop {
            let st = self.status().await?;
            if st.stage() == Stage::Done {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("{}: did not end within {END_LIMIT:?}; last status: {st:#?}", self.id));
            }
            // One action per second at most: each changes the status the next one reads.
            if last_act.elapsed() >= Duration::from_secs(1) {
                last_act = Instant::now();
                self.act(&st).await?;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn act(&mut self, st: &PromotionStatus) -> Result<(), String> {
        let open = |k: ExceptionKind| st.open_exceptions.iter().any(|e| e.kind() == k);
        let valid = |kind| (kind, false, Signing::Valid, true);
        let (kind, signal, signing, plausible) = if st.paused {
            valid(MessageKind::Resume)
        } else if open(ExceptionKind::CompensationBlocked) {
            valid(MessageKind::ResolveCompensation)
        } else if st.stage() == Stage::Remediation {
            valid(MessageKind::ChooseRemediation)
        } else if st.approvals.iter().any(|a| a.approved_by.is_empty())
            || st.transfers.iter().any(|t| t.state() == TransferState::AwaitingApproval)
            || st.decision_subjects.values().any(|s| s == "funding-hold")
        {
            valid(MessageKind::Approve)
        } else if matches!(st.stage(), Stage::Publishing | Stage::LaunchGate | Stage::Active)
            && (open(ExceptionKind::ChannelSync) || open(ExceptionKind::StockRisk))
        {
            valid(MessageKind::Override)
        } else {
            return Ok(());
        };
        self.send_step(kind, signal, signing, plausible).await
    }
}

/// Runs one seed: its promotion to the end, then the checks.
async fn run_seed(env: Arc<PromoEnv>, seed: u64, slot: usize) -> Result<(Outcome, String), String> {
    let s = script(seed, slot);
    let id = format!("GEN-{seed}");
    let spec = spec(&id, &s.regions, s.skus.clone(), s.start_days, s.days);
    env.start_promotion(spec).await.map_err(|e| format!("{id}: start: {e}"))?;
    let mut d = Driver {
        env: env.clone(),
        id: id.clone(),
        rng: ChaCha8Rng::seed_from_u64(seed ^ 0x9E37),
        tally: Tally::default(),
    };
    d.run(&s).await?;
    let runs = promises::no_failed_task(&env.client, &id).await?;
    let status = promises::ended_clean(&env, &id, Duration::from_secs(30)).await?;
    let completed = status.outcome() == Outcome::Completed;
    promises::nothing_live(&env.systems.url(), &id, completed).await?;
    if seed == 0 {
        paused_across_rounds(&env, &id, &status).await?;
        // The last run of its chain, which began from the state handed on.
        env.record_history(&id, "continued_after_pause").await.map_err(|e| e.to_string())?;
    }
    let reason: String = status.outcome_reason.chars().take(160).collect();
    let line = format!(
        "{id}: {:?} ({reason}) after {} steps ({} accepted, {} refused, {} signals); {} run(s) of {:?} events",
        status.outcome(),
        s.steps.len(),
        d.tally.accepted,
        d.tally.refused,
        d.tally.signals,
        runs.len(),
        runs
    );
    Ok((status.outcome(), line))
}

/// The fixed seed's promise: it paused while live for at least two monitoring rounds, resumed,
/// and completed.
async fn paused_across_rounds(env: &PromoEnv, id: &str, status: &PromotionStatus) -> Result<(), String> {
    if status.outcome() != Outcome::Completed {
        return Err(format!("{id}: paused across monitoring rounds and did not complete: {status:#?}"));
    }
    // The whole trail, from the record (the query shows its latest entries only).
    let trail = promises::audit_events(&env.systems.url(), id, &status.first_run_id).await?;
    let at = |action: &str| trail.iter().find(|e| e.action == action).and_then(|e| e.at).map(|t| t.seconds);
    let (Some(paused), Some(resumed)) = (at("pause"), at("resume")) else {
        let actions: Vec<&str> = trail.iter().map(|e| e.action.as_str()).collect();
        return Err(format!("{id}: no pause and resume in the trail: {actions:?}"));
    };
    let policy = &env.policy;
    let round = policy.durations.monitor_every.0.as_secs() as i64 / i64::from(policy.time_scale);
    if resumed - paused < 2 * round {
        return Err(format!(
            "{id}: paused {}s, less than two monitoring rounds ({}s)",
            resumed - paused,
            2 * round
        ));
    }
    Ok(())
}

fn seeds() -> Vec<u64> {
    let var = |k: &str| std::env::var(k).ok().and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(seed) = var("PROMO_GEN_SEED") {
        return vec![seed];
    }
    let runs = var("PROMO_GEN_RUNS").unwrap_or(30).max(1);
    let base = var("PROMO_GEN_BASE").unwrap_or(BASE);
    std::iter::once(0).chain((1..runs).map(|i| base + i)).collect()
}

fn generated_policy() -> promo_workflows::policy::Policy {
    let mut p = test_policy();
    p.require_signatures = true;
    for (who, _, n) in PEOPLE {
        p.approver_keys.insert(who.into(), test_keys(n).1);
    }
    // A small history budget: runs continue as new while messages arrive.
    p.history.max_events = 120;
    p.systems_attempts = 4;
    p.compensation_attempts = 3;
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_message_at_any_moment_with_any_value_leaves_every_promotion_answered_ended_and_clean() {
    let env = Arc::new(PromoEnv::start(generated_policy()).await.unwrap());
    let seeds = seeds();
    let started = Instant::now();
    let outcomes = env
        .with_worker(async {
            let mut results = BTreeMap::new();
            for batch in seeds.chunks(PARALLEL) {
                let runs = batch.iter().enumerate().map(|(slot, &seed)| {
                    let env = env.clone();
                    async move { (seed, run_seed(env, seed, slot).await) }
                });
                results.extend(futures::future::join_all(runs).await);
            }
            results
        })
        .await
        .unwrap();
    let mut failed = Vec::new();
    let mut ended: BTreeMap<Outcome, usize> = BTreeMap::new();
    for (seed, r) in &outcomes {
        match r {
            Ok((outcome, line)) => {
                println!("seed {seed}: {line}");
                *ended.entry(*outcome).or_default() += 1;
            }
            Err(why) => {
                println!("seed {seed}: FAILED: {why}");
                failed.push(*seed);
            }
        }
    }
    println!("{} seeds in {:?}: {ended:?}", outcomes.len(), started.elapsed());
    assert!(
        failed.is_empty(),
        "seeds {failed:?} failed (above); replay one with PROMO_GEN_SEED=<seed> cargo test -p promo-tests --test generated"
    );
    // Not a vacuous run: with ten seeds or more, some promotions went all the way, and some were
    // cut short.
    if outcomes.len() >= 10 {
        let completed = ended.get(&Outcome::Completed).copied().unwrap_or(0);
        assert!(completed * 5 >= outcomes.len(), "too few promotions completed: {ended:?}");
        assert!(completed < outcomes.len(), "every promotion completed: {ended:?}");
    }
}
