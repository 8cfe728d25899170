//! Deterministic orchestration of a promotion's lifecycle (docs/design.md, "The lifecycle").
//!
//! Start at [`workflow::lifecycle`]: the whole lifecycle in one function, a call per stage. The
//! rest of the crate, from what it depends on least:
//!
//! - [`api`]: the workflow's contract — task queue, workflow id, message names, search
//!   attributes, and the activities it calls (implemented in `promo-activities`);
//! - [`version`]: the one ordered version value behind which the command sequence changes;
//! - [`clock`]: the business clock (the spec's time, compressible for demos and tests);
//! - [`plan`]: intake validation of a spec into a plan (pure);
//! - [`policy`]: thresholds, required approvals, durations and the approver directory;
//! - [`decisions`]: approvals, exceptions, gates, risk and remediation as pure functions;
//! - [`signing`]: signed decisions (Ed25519), verified by the workflow itself;
//! - [`refusal`]: why a message is refused;
//! - [`summary`]: the static summary and details the Web UI shows for a promotion;
//! - [`codec`]: the payload codec (zlib, the Go SDK's format) every client and worker uses;
//! - [`workflow`]: `PromotionWorkflow`, which only sequences activities, timers and waits.

pub mod api;
pub mod clock;
pub mod codec;
pub mod decisions;
pub mod plan;
pub mod policy;
pub mod refusal;
pub mod signing;
pub mod summary;
pub mod version;
pub mod workflow;

pub use workflow::PromotionWorkflow;
