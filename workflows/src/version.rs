//! The lifecycle's version: one ordered value that every change to the workflow's command
//! sequence goes behind.
//!
//! A run records its version first thing, once, as a patch marker named
//! [`Version::marker`] (`promotion-v1`, …). The SDK also writes every marker a run records to
//! its `TemporalChangeVersion` search attribute, so visibility can tell which version each open
//! run takes. On replay the marker found in the history gives the version back, and the stages
//! branch on it with `>=`:
//!
//! ```ignore
//! if ctx.state(|s| s.version) >= Version::V2 { new path } else { old path }
//! ```
//!
//! **Adding a version**: add the variant (the next number), its marker and its line in
//! [`Version::SUPPORTED`]; put the new command sequence behind `>=` it; record the changed
//! scenarios' histories into `tests/histories/` (the old files stay, replayed on the old path).
//!
//! **Retiring a version**: a version's path is deleted once no open run can take it. Check with
//! the visibility query of [`open_runs_query`] (what `promo-worker` runs at start, refusing to
//! poll while any open run is older than its oldest supported version); then delete the old
//! branches, the variant's line in [`Version::SUPPORTED`] and its histories.

use serde::{Deserialize, Serialize};

/// A version of the lifecycle's command sequence, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Version {
    /// 1.0: the first released lifecycle.
    V1 = 1,
}

impl Version {
    /// Every version this build can run, oldest first. New runs take the last one.
    pub const SUPPORTED: &'static [Version] = &[Version::V1];

    /// The version new runs take.
    pub const CURRENT: Version = Version::V1;

    /// The oldest version this build can still replay.
    pub const OLDEST: Version = Version::V1;

    /// The patch marker a run of this version records (also its `TemporalChangeVersion` entry).
    /// Released marker names never change.
    pub const fn marker(self) -> &'static str {
        match self {
            Version::V1 => "promotion-v1",
        }
    }

    /// The version a marker names, if it is one of this build's.
    pub fn from_marker(marker: &str) -> Option<Version> {
        Self::SUPPORTED.iter().copied().find(|v| v.marker() == marker)
    }

    /// The version number (1 for [`Version::V1`]).
    pub const fn number(self) -> u32 {
        self as u32
    }

    /// The version a run takes, asking `patched` (the workflow context's) for each supported
    /// marker newest first: a new run records the newest marker and takes it; a replayed run finds
    /// the marker its history holds. `None`: the run predates every supported version (its
    /// history holds none of their markers).
    pub fn of_run(patched: impl Fn(&str) -> bool) -> Option<Version> {
        Self::SUPPORTED.iter().rev().copied().find(|v| patched(v.marker()))
    }
}

/// The visibility query of open promotion runs that took none of this build's versions: every
/// running `PromotionWorkflow` whose `TemporalChangeVersion` names no supported marker. (A run
/// whose first workflow task has not completed yet has no marker either; the worker tells those
/// apart by their history, see `promo-worker`.)
pub fn open_runs_query(workflow_type: &str) -> String {
    let markers: Vec<String> = Version::SUPPORTED.iter().map(|v| format!("'{}'", v.marker())).collect();
    format!(
        "WorkflowType = '{workflow_type}' AND ExecutionStatus = 'Running' AND \
         (TemporalChangeVersion IS NULL OR TemporalChangeVersion NOT IN ({}))",
        markers.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_ordered_and_named_for_good() {
        assert_eq!(Version::V1.marker(), "promotion-v1", "a released marker never changes");
        assert_eq!(Version::SUPPORTED.first(), Some(&Version::OLDEST));
        assert_eq!(Version::SUPPORTED.last(), Some(&Version::CURRENT));
        assert!(Version::SUPPORTED.windows(2).all(|w| w[0] < w[1]), "oldest first");
        for v in Version::SUPPORTED {
            assert_eq!(Version::from_marker(v.marker()), Some(*v));
        }
        assert_eq!(Version::from_marker("activities-carry"), None, "pre-1.0 patches are retired");
    }

    #[test]
    fn a_run_takes_the_newest_marker_it_records_or_finds() {
        // A new run: every `patched` call records its marker and answers true.
        assert_eq!(Version::of_run(|_| true), Some(Version::CURRENT));
        // A replayed run of version 1.
        assert_eq!(Version::of_run(|m| m == "promotion-v1"), Some(Version::V1));
        // A run from before 1.0: none of the markers.
        assert_eq!(Version::of_run(|m| m == "activities-carry"), None);
    }

    #[test]
    fn the_open_runs_query_names_every_supported_marker() {
        let q = open_runs_query("PromotionWorkflow");
        assert!(q.contains("WorkflowType = 'PromotionWorkflow'"), "{q}");
        assert!(q.contains("'promotion-v1'"), "{q}");
        assert!(q.contains("ExecutionStatus = 'Running'"), "{q}");
    }
}
