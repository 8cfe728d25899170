//! How the run reads a call that failed and paces the next: the innermost message of a failure,
//! whether it is for good, and the pauses between tries while the systems are down.

use super::{state::Ctx, time::now};
use promo_contracts::promo::v1::ExceptionKind;
use std::time::Duration;
use temporalio_common::protos::temporal::api::failure::v1::{Failure, failure::FailureInfo};

/// The pauses between calls while the systems fail ([`crate::policy::Policy::outage_pauses`]),
/// taken up where they were when an exception of `shows` is already open — raised before a
/// continue-as-new — so that a long outage keeps its long cadence across runs instead of
/// starting again from 5 s.
pub(crate) fn pauses(ctx: &Ctx, shows: Option<ExceptionKind>) -> Box<dyn Iterator<Item = Duration>> {
    let (policy, since) = ctx.state(|s| {
        let since = shows.and_then(|k| {
            s.open_exceptions()
                .iter()
                .find(|e| e.kind() == k)
                .and_then(|e| e.raised_at.as_ref())
                .map(|t| t.seconds)
        });
        (s.policy.clone().unwrap_or_default(), since)
    });
    let waited = since.map_or(0, |t| now(ctx).saturating_sub(t).max(0)).unsigned_abs();
    Box::new(policy.outage_pauses_after(Duration::from_secs(waited)))
}

/// The message of the deepest cause (the activity's own error, not "activity task failed").
pub(crate) fn innermost_message(f: &Failure) -> String {
    let mut f = f;
    while let Some(c) = f.cause.as_deref() {
        f = c;
    }
    f.message.clone()
}

/// Whether any failure in the chain is a non-retryable application failure.
pub(crate) fn non_retryable(f: &Failure) -> bool {
    let mut next = Some(f);
    while let Some(f) = next {
        if let Some(FailureInfo::ApplicationFailureInfo(info)) = &f.failure_info
            && info.non_retryable
        {
            return true;
        }
        next = f.cause.as_deref();
    }
    false
}
