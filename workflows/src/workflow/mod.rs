//! `PromotionWorkflow`: one durable execution per promotion, from intake to post-event analysis.
//!
//! Start reading at [`lifecycle`]: one call per stage, each stage in its own module under
//! [`stages`]:
//!
//! intake → assessment → remediation → approval → scheduling → publishing → launch gate →
//! active → close → analysis,
//!
//! and every way out of it — REJECTED, EXPIRED, CANCELLED, FAILED, and COMPLETED too — goes
//! through [`stages::ending`], which compensates whatever is still live and resolves every open
//! exception. The rest, from the bottom up (each module uses only those above it in this list):
//!
//! - [`state`]: the workflow's state and what the outside sees of it (status query, search
//!   attributes, Web UI details);
//! - [`stop`]: how a stage ends the lifecycle early;
//! - [`input`], [`publish`], [`time`]: what a run starts from (a spec, or the state handed on),
//!   its one publisher of what the outside sees, its clocks;
//! - [`options`]: the activity options every stage shares (timeouts, retries, heartbeats);
//! - [`carry`]: the checkpoint where a run continues as new, its state handed on;
//! - [`outage`]: how a failed call is read and the next one paced;
//! - [`events`]: the outbox of process events and its flush to the record;
//! - [`wait`]: the one wait primitive every stage uses (timers, activities, conditions), which
//!   always wakes on cancel and on the nudges a stage asks for (pause, resume, override);
//! - [`messages`]: the nine messages, each accepted as a signal and as an update through one
//!   parse → check → apply path that never panics and audits every refusal;
//! - [`persist`]: calls that must not give up (compensation, a live promotion's calls);
//! - [`stages`]: one module per stage;
//! - [`handlers`]: the surface Temporal sees (init, run, signals, updates, queries).
//!
//! The command sequence is versioned by one ordered value, [`crate::version::Version`].

pub mod carry;
pub mod events;
pub mod handlers;
pub mod input;
pub mod messages;
pub mod options;
pub mod outage;
pub mod persist;
pub mod publish;
pub mod stages;
pub mod state;
pub mod stop;
pub mod time;
pub mod wait;

use promo_contracts::promo::v1::PostEventReport;
use stages::*;
use wait::{Ctx, Stop};

pub use state::PromotionWorkflow;

/// The lifecycle proper: one call per stage. `Err` is how a stage ends it early; the report is
/// the workflow's result. A run continued as new ([`carry`]) goes through it again from the top:
/// each stage it is past returns at once, and the stage it was in resumes where it was.
pub async fn lifecycle(ctx: &Ctx) -> Result<PostEventReport, Stop> {
    let policy = intake::start(ctx).await?;
    let plan = loop {
        let plan = intake::run(ctx, &policy).await?;
        let found = assessment::run(ctx, &plan, &policy).await?;
        if !assessment::passes(&found) {
            remediation::run(ctx, &plan, &policy, &found).await?;
        }
        match approval::run(ctx, &policy, &plan).await? {
            approval::Verdict::Approved => break plan,
            approval::Verdict::ChangesRequested => continue,
        }
    };
    scheduling::run(ctx, &plan).await?;
    publishing::run(ctx, &plan, &policy).await?;
    launch_gate::run(ctx, &plan, &policy).await?;
    let windows = active::run(ctx, &plan, &policy).await?;
    close::run(ctx, &plan, &policy).await?;
    analysis::run(ctx, &plan, &policy, windows).await
}
