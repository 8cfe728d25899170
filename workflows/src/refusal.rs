//! Why a promotion refuses a message: one type for every refusal, so that an update's caller,
//! the audit trail and the tests read the same reason, and a handler that refuses can never
//! forget to say why.

use crate::summary::{role_name, stage_name};
use promo_contracts::promo::v1::{Outcome, Role, Stage};

/// A message refused, with the reason in words (its `Display`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The input does not parse as the message's type.
    #[error("malformed {message} input: {detail}")]
    Malformed {
        /// The message name.
        message: &'static str,
        /// Where and why (`approverId: invalid type: integer, expected a string`).
        detail: String,
    },
    /// A required field is empty.
    #[error("{0} is required")]
    Required(&'static str),
    /// A decision names no role.
    #[error("role is required (ROLE_MERCHANDISING, ROLE_FINANCE, ROLE_SUPPLY_CHAIN)")]
    RoleRequired,
    /// The promotion is not in a stage that takes this message.
    #[error("the promotion is in stage {}, not {awaiting}", stage_name(*stage))]
    WrongStage {
        /// Where it is.
        stage: Stage,
        /// What the message needs (`awaiting approval`).
        awaiting: &'static str,
    },
    /// The promotion has not loaded its policy yet (a message right after the start).
    #[error("the promotion is still loading its policy; try again in a moment")]
    Loading,
    /// The promotion has ended.
    #[error("the promotion has ended ({})", outcome.as_str_name())]
    Ended {
        /// How.
        outcome: Outcome,
    },
    /// The message names another revision than the current one.
    #[error("revision {given} is not the current revision {current}")]
    WrongRevision {
        /// The revision the message names.
        given: u32,
        /// The current one.
        current: u32,
    },
    /// The sender is not in the policy's approver directory.
    #[error("{what} {who:?} is not in the approver directory")]
    NotInDirectory {
        /// `approver` or `operator`.
        what: &'static str,
        /// The id sent.
        who: String,
    },
    /// The sender does not hold the role the message needs.
    #[error("{what} {who:?} does not hold the {} role", role_name(*role))]
    MissingRole {
        /// `approver` or `operator`.
        what: &'static str,
        /// The id sent.
        who: String,
        /// The role needed.
        role: Role,
    },
    /// The sender holds none of the roles an operator action needs.
    #[error("operator {who:?} needs the {} role to {action}", roles.iter().map(|r| role_name(*r)).collect::<Vec<_>>().join(" or "))]
    NeedsRole {
        /// The id sent.
        who: String,
        /// Any of these would do.
        roles: Vec<Role>,
        /// The message name.
        action: &'static str,
    },
    /// The revision needs no approval from this role.
    #[error("the {} role is not required for revision {revision}", role_name(*role))]
    RoleNotRequired {
        /// The role.
        role: Role,
        /// The current revision.
        revision: u32,
    },
    /// The role's approval was given already.
    #[error("the {} approval was already given by {by}", role_name(*role))]
    AlreadyGiven {
        /// The role.
        role: Role,
        /// Who gave it.
        by: String,
    },
    /// The decision's signature does not hold.
    #[error("signature refused: {0}")]
    Signature(#[from] crate::signing::SignatureError),
    /// An amended spec that names another promotion.
    #[error("amended_spec.promotion_id {given:?} must stay {current:?}")]
    PromotionIdChanged {
        /// The id the amended spec names.
        given: String,
        /// This promotion's id.
        current: String,
    },
    /// An amended spec that would fail intake: every problem, one per line.
    #[error("the amended spec is invalid:\n{0}")]
    InvalidAmendment(String),
    /// A remediation option that is not one of the region's.
    #[error("{option:?} is not an option for region {region:?}; options: {}", options.join(", "))]
    NotAnOption {
        /// The option sent.
        option: String,
        /// The region sent.
        region: String,
        /// The region's options.
        options: Vec<String>,
    },
    /// A remediation at the launch gate that is not a delay.
    #[error(
        "{option:?} is not an option for region {region:?} at the launch gate: only a delay until \
         inbound stock arrives can be chosen once prices are published; an operator may override \
         the hold, or the promotion be cancelled"
    )]
    NotAGateOption {
        /// The option sent.
        option: String,
        /// The region sent.
        region: String,
    },
    /// A delay option without its date.
    #[error("{0:?} has no delay date")]
    NoDelayDate(String),
    /// A second cancel.
    #[error("the promotion is already being cancelled")]
    AlreadyCancelling,
    /// An operator action once the window is over (closing, analysis): nothing is live to act on.
    #[error("the promotion is in stage {}: its window is over, there is nothing left to {action}", stage_name(*stage))]
    WindowOver {
        /// Where it is.
        stage: Stage,
        /// The message name.
        action: &'static str,
    },
    /// A pause of a paused promotion.
    #[error("the promotion is already paused")]
    AlreadyPaused,
    /// A resume of a promotion that is not paused.
    #[error("the promotion is not paused")]
    NotPaused,
    /// An override without its reason.
    #[error("reason is required for an override")]
    OverrideReason,
    /// An override where no acknowledgment gate exists.
    #[error("there is no acknowledgment gate to override in stage {}", stage_name(*stage))]
    NoGate {
        /// Where the promotion is.
        stage: Stage,
    },
    /// A region the promotion does not cover.
    #[error("region {0:?} is not in this promotion")]
    UnknownRegion(String),
    /// The sender's signing key was revoked in the key directory.
    #[error("{who:?}'s signing key was revoked{}: {reason}", since.as_ref().map(|t| format!(" at {}", t.seconds)).unwrap_or_default())]
    KeyRevoked {
        /// The sender.
        who: String,
        /// When it was revoked (Unix seconds).
        since: Option<pbjson_types::Timestamp>,
        /// Why.
        reason: String,
    },
    /// The key directory did not answer: a signed message is not applied unverified.
    #[error(
        "the key directory could not confirm the signing key is not revoked ({0}); send the message again"
    )]
    DirectoryUnavailable(String),
    /// The systems did not answer a check the message needs.
    #[error("the retail systems could not check the message ({0}); send it again")]
    SystemsUnavailable(String),
    /// A compensation decision when no compensation is blocked.
    #[error("no compensation is blocked: there is nothing to retry or accept")]
    NothingBlocked,
    /// A second decision on the same blocked compensation.
    #[error("a decision on the blocked compensation was already given and is being acted on")]
    AlreadyDecided,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_say_why_in_words() {
        let r = Refusal::WrongStage { stage: Stage::Active, awaiting: "awaiting approval" };
        assert_eq!(r.to_string(), "the promotion is in stage ACTIVE, not awaiting approval");
        let r = Refusal::MissingRole { what: "approver", who: "E1001".into(), role: Role::Finance };
        assert_eq!(r.to_string(), "approver \"E1001\" does not hold the FINANCE role");
        let r = Refusal::NeedsRole {
            who: "E1".into(),
            roles: vec![Role::Operations, Role::Merchandising],
            action: "cancel",
        };
        assert_eq!(r.to_string(), "operator \"E1\" needs the OPERATIONS or MERCHANDISING role to cancel");
    }
}
