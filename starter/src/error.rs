//! What can go wrong in a command, each with the next step for the person at the terminal.

use promo_workflows::{
    decisions::plural,
    plan::{Problem, describe},
};
use serde_json::{Value, json};

/// A failed command. Every message says what happened and what to do next; the process exits
/// with status 1 (clap's own usage errors exit with 2).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The spec file cannot be used: unreadable, too large, or not a `PromotionSpec` in JSON.
    #[error("{0}")]
    SpecFile(String),
    /// The spec (or amended spec) has problems; all of them are listed.
    #[error("{what} has {}:\n{}\n{hint}", plural(problems.len(), "problem"), describe(problems))]
    Invalid {
        /// What was checked, e.g. `spring.json`.
        what: String,
        /// Every problem found.
        problems: Vec<Problem>,
        /// What to do next.
        hint: String,
    },
    /// The promotion was started before.
    #[error(
        "promotion {promotion_id} already exists (workflow {workflow_id} {state}); use `promo status {promotion_id}`"
    )]
    AlreadyExists {
        /// Promotion id.
        promotion_id: String,
        /// Workflow id.
        workflow_id: String,
        /// How the existing execution stands, e.g. `is running`.
        state: String,
    },
    /// No workflow for this promotion (or none running, for messages).
    #[error("{0}")]
    NotFound(String),
    /// The workflow refused an update; the message is the workflow's reason.
    #[error("{action} refused: {reason}")]
    Refused {
        /// The message sent, e.g. `approve`.
        action: String,
        /// The workflow's reason.
        reason: String,
    },
    /// Nothing answered in time (usually: no worker is polling the task queue).
    #[error("{0}")]
    Timeout(String),
    /// Talking to Temporal failed.
    #[error("{0}")]
    Temporal(String),
    /// The arguments cannot be turned into a message.
    #[error("{0}")]
    Usage(String),
}

impl CliError {
    /// A short machine-readable kind, used in `--json` output.
    pub fn kind(&self) -> &'static str {
        match self {
            CliError::SpecFile(_) => "spec-file",
            CliError::Invalid { .. } => "invalid",
            CliError::AlreadyExists { .. } => "already-exists",
            CliError::NotFound(_) => "not-found",
            CliError::Refused { .. } => "refused",
            CliError::Timeout(_) => "timeout",
            CliError::Temporal(_) => "temporal",
            CliError::Usage(_) => "usage",
        }
    }

    /// The error as JSON for `--json`: `{"error": {"kind", "message", "problems"?}}`.
    pub fn to_json(&self) -> Value {
        let mut e = json!({ "kind": self.kind(), "message": self.to_string() });
        match self {
            CliError::Invalid { problems, .. } => e["problems"] = json!(problems),
            CliError::Refused { action, reason } => {
                e["action"] = json!(action);
                e["reason"] = json!(reason);
            }
            _ => {}
        }
        json!({ "error": e })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_lists_every_problem_and_the_next_step() {
        let e = CliError::Invalid {
            what: "spring.json".into(),
            problems: vec![
                Problem { line: None, field: "name".into(), message: "is required".into() },
                Problem { line: Some(2), field: "lines[1].sku".into(), message: "is required".into() },
            ],
            hint: "fix the file and run `promo start spring.json` again".into(),
        };
        assert_eq!(
            e.to_string(),
            "spring.json has 2 problems:\n  - name: is required\n  - line 2: lines[1].sku: is required\n\
             fix the file and run `promo start spring.json` again"
        );
        let j = e.to_json();
        assert_eq!(j["error"]["kind"], "invalid");
        assert_eq!(j["error"]["problems"][1]["line"], 2);
    }

    #[test]
    fn already_exists_points_to_status() {
        let e = CliError::AlreadyExists {
            promotion_id: "SPRING-26".into(),
            workflow_id: "promotion-SPRING-26".into(),
            state: "is running".into(),
        };
        assert_eq!(
            e.to_string(),
            "promotion SPRING-26 already exists (workflow promotion-SPRING-26 is running); use `promo status SPRING-26`"
        );
    }
}
