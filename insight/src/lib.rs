//! The portfolio read model: what operators see of every promotion at once, computed in one
//! place so the operations dashboard, `promo exceptions`, `promo ask` and the worker's business
//! gauges show the same figures (docs/design.md, §4; docs/operations.md, "Process
//! intelligence").
//!
//! A [`Snapshot`] is read from three sources, each named under the answers that use it:
//! Temporal visibility (one [`ListRow`] per promotion, from its search attributes), the
//! `status` query of each running promotion, and the process-event record of the analytics
//! service. Every view — [`by_stage`], [`pending_approvals`], [`exception_queue`],
//! [`readiness`], [`cycle_times`], [`approval_waits`], [`kpis`] — is a pure function of a
//! snapshot and the [`Sla`] thresholds, so the views are tested without servers.
//!
//! Where it sits: it reads the workflow's contract (`promo-workflows`: the workflow, its search
//! attributes, its policy) and the retail systems' clients (`promo-activities`), and is read by
//! the `promo` CLI (`promo-starter`) and the worker (`promo-worker`); neither of those depends
//! on the other. It renders nothing: text and HTML are the CLI's.
//!
//! Inside, each module depends only on the ones before it: `listing` (a promotion as
//! visibility lists it) → `snapshot` (reading the sources) → `views`.

mod listing;
mod snapshot;
mod views;

pub use listing::{ListRow, execution_status, list_row};
pub use snapshot::{SOURCE_EVENTS, SOURCE_STATUS, SOURCE_VISIBILITY, Snapshot, snapshot};
pub use views::{
    PendingApproval, QueuedException, RegionCell, Sla, Spread, approval_waits, by_stage, cycle_times,
    exception_queue, kpis, pending_approvals, readiness, revenue_at_risk_since, stuck,
};
