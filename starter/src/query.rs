//! `promo list`: the visibility query built from the filters (the search attributes of
//! `promo_workflows::api`). The rows read back are the read model's
//! ([`promo_insight::list_row`]).

use crate::{cli::ListArgs, error::CliError};
use promo_contracts::promo::v1::Role;
use promo_workflows::{
    api::{self, OPEN_EXCEPTIONS, PENDING_APPROVALS, PROMOTION_REGIONS, PROMOTION_STAGE},
    decisions::{role_name, stage_name},
};

/// Values go into the query between single quotes: only id-like values are accepted, so no
/// quoting rules of the visibility SQL dialect are needed.
fn literal(flag: &str, v: &str) -> Result<String, CliError> {
    let v = v.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        return Err(CliError::Usage(format!("{flag} {v:?}: use an id of letters, digits, '-', '_' or '.'")));
    }
    Ok(format!("'{v}'"))
}

/// The visibility query for the filters: the promotions' current runs ([`api::PROMOTIONS_QUERY`])
/// and one clause per filter given.
pub fn list_query(a: &ListArgs) -> Result<String, CliError> {
    let mut clauses = vec![api::PROMOTIONS_QUERY.to_owned()];
    if let Some(stage) = a.stage {
        clauses.push(format!("{} = '{}'", PROMOTION_STAGE.name(), stage_name(stage)));
    }
    if let Some(region) = &a.region {
        // On a KeywordList attribute `=` means "contains".
        clauses.push(format!("{} = {}", PROMOTION_REGIONS.name(), literal("--region", region)?));
    }
    if a.open_exceptions {
        clauses.push(format!("{} > 0", OPEN_EXCEPTIONS.name()));
    }
    if let Some(role) = a.pending {
        clauses.push(format!("{} = '{}'", PENDING_APPROVALS.name(), role_name(Role::from(role))));
    }
    if a.running {
        clauses.push("ExecutionStatus = 'Running'".into());
    }
    Ok(clauses.join(" AND "))
}

/// The hint for a query the server refuses because the search attributes are not registered.
pub fn registration_hint() -> String {
    let args: Vec<String> =
        api::SEARCH_ATTRIBUTES.iter().map(|(n, t)| format!("--name {n} --type {t}")).collect();
    format!(
        "the server may lack the promotion search attributes; register them with \
         `temporal operator search-attribute create {}` (or start the dev server with \
         --search-attribute Name=Type for each)",
        args.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn args(a: &[&str]) -> ListArgs {
        let mut v = vec!["promo", "list"];
        v.extend_from_slice(a);
        match Cli::try_parse_from(v).unwrap().command {
            Command::List(l) => l,
            _ => unreachable!(),
        }
    }

    #[test]
    fn no_filter_lists_every_promotion() {
        assert_eq!(
            list_query(&args(&[])).unwrap(),
            "WorkflowType = 'PromotionWorkflow' AND ExecutionStatus != 'ContinuedAsNew'"
        );
    }

    #[test]
    fn every_filter_becomes_a_clause() {
        let q = list_query(&args(&[
            "--stage",
            "approval",
            "--region",
            "R3",
            "--open-exceptions",
            "--pending",
            "supply-chain",
            "--running",
        ]))
        .unwrap();
        assert_eq!(
            q,
            "WorkflowType = 'PromotionWorkflow' AND ExecutionStatus != 'ContinuedAsNew' AND PromotionStage = \
             'APPROVAL' AND PromotionRegions = 'R3' \
             AND OpenExceptions > 0 AND PendingApprovals = 'SUPPLY_CHAIN' AND ExecutionStatus = 'Running'"
        );
    }

    #[test]
    fn quotes_cannot_reach_the_query() {
        let e = list_query(&args(&["--region", "R1' OR 1=1"])).unwrap_err().to_string();
        assert!(e.starts_with("--region \"R1' OR 1=1\": use an id"), "{e}");
    }
}
