//! Deterministic orchestration of a promotion's lifecycle (DESIGN.md §3).
//!
//! - [`api`]: the workflow's contract — task queue, workflow id, message names, search
//!   attributes, and the activities it calls (implemented in `promo-activities`);
//! - [`codec`]: the payload codec (zlib, the Go SDK's format) every client and worker uses;
//! - [`plan`]: intake validation of a spec into a plan, and collision checks (pure);
//! - [`policy`]: thresholds, required approvals, durations and the approver directory;
//! - [`summary`]: the static summary and details the Web UI shows for a promotion;
//! - [`decisions`]: approvals, exceptions, risk and auto-remediation as pure functions;
//! - [`workflow`]: `PromotionWorkflow`, which only sequences activities, timers and waits.

pub mod api;
pub mod codec;
pub mod decisions;
pub mod plan;
pub mod policy;
pub mod signing;
pub mod summary;
pub mod workflow;

pub use workflow::PromotionWorkflow;
