//! Arguments → the workflow's messages (`promo.v1` types), checked before anything is sent so
//! that obvious mistakes are refused locally with the flag to fix.

use crate::{
    cli::{ChangeArgs, CompensationArgs, DecisionArgs, OperatorArgs, OverrideArgs, RemediationArgs},
    error::CliError,
};
use promo_contracts::promo::v1::{
    ApprovalDecision, ChangeRequest, CompensationDecision, CompensationResolution, GateOverride,
    OperatorAction, PromotionSpec, RemediationChoice, Role,
};
use promo_workflows::signing;

/// The value of a flag that must not be blank, trimmed.
pub fn required(flag: &str, value: &str) -> Result<String, CliError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(CliError::Usage(format!("{flag} must not be empty")));
    }
    Ok(v.to_owned())
}

/// `approve` / `reject` → `ApprovalDecision` (revision 0 = the current one).
pub fn decision(a: &DecisionArgs) -> Result<ApprovalDecision, CliError> {
    Ok(ApprovalDecision {
        approver_id: required("--as", &a.approver)?,
        role: Role::from(a.role) as i32,
        revision: revision(a.revision)?,
        comment: a.comment.trim().to_owned(),
        ..Default::default()
    })
}

/// Signs a message with the secret key in `key_file` ([`signing::Signed`] names the promotion's
/// run chain, the message, its subject and revision): the signature, base64.
pub fn sign(key_file: &std::path::Path, signed: &signing::Signed<'_>) -> Result<String, CliError> {
    let secret = std::fs::read_to_string(key_file)
        .map_err(|e| CliError::Usage(format!("--key {}: {e}", key_file.display())))?;
    signing::sign(secret.trim(), &signed.payload())
        .map_err(|e| CliError::Usage(format!("--key {}: {e}", key_file.display())))
}

fn revision(r: Option<u32>) -> Result<u32, CliError> {
    match r {
        Some(0) => {
            Err(CliError::Usage("--revision starts at 1; leave it out to act on the current revision".into()))
        }
        Some(n) => Ok(n),
        None => Ok(0),
    }
}

/// `request-changes` → `ChangeRequest` with the amended spec, which must keep the promotion id.
pub fn change_request(a: &ChangeArgs, amended: PromotionSpec) -> Result<ChangeRequest, CliError> {
    if amended.promotion_id != a.id {
        return Err(CliError::Usage(format!(
            "{} is a spec for promotion {:?}, not {:?}: an amended spec keeps the promotion id",
            a.spec.display(),
            amended.promotion_id,
            a.id
        )));
    }
    Ok(ChangeRequest {
        approver_id: required("--as", &a.approver)?,
        role: Role::from(a.role) as i32,
        revision: revision(a.revision)?,
        comment: a.comment.trim().to_owned(),
        amended_spec: Some(amended),
        ..Default::default()
    })
}

/// `choose-remediation` → `RemediationChoice`.
pub fn remediation_choice(a: &RemediationArgs) -> Result<RemediationChoice, CliError> {
    Ok(RemediationChoice {
        region_id: required("--region", &a.region)?,
        option_id: required("--option", &a.option)?,
        chosen_by: required("--as", &a.chosen_by)?,
        comment: a.comment.trim().to_owned(),
        ..Default::default()
    })
}

/// `cancel` / `pause` / `resume` → `OperatorAction`.
pub fn operator_action(a: &OperatorArgs) -> Result<OperatorAction, CliError> {
    Ok(OperatorAction {
        operator_id: required("--as", &a.operator)?,
        reason: required("--reason", &a.reason)?,
        ..Default::default()
    })
}

/// `override` → `GateOverride` (no region: the promotion-wide gate).
pub fn gate_override(a: &OverrideArgs) -> Result<GateOverride, CliError> {
    Ok(GateOverride {
        operator_id: required("--as", &a.operator)?,
        region_id: match &a.region {
            Some(r) => required("--region", r)?,
            None => String::new(),
        },
        reason: required("--reason", &a.reason)?,
        ..Default::default()
    })
}

/// `resolve-compensation` → `CompensationDecision`.
pub fn compensation_decision(a: &CompensationArgs) -> Result<CompensationDecision, CliError> {
    let resolution = if a.accept { CompensationResolution::Accept } else { CompensationResolution::Retry };
    Ok(CompensationDecision {
        operator_id: required("--as", &a.operator)?,
        resolution: resolution as i32,
        reason: required("--reason", &a.reason)?,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Command {
        let mut v = vec!["promo"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).unwrap().command
    }

    #[test]
    fn approve_maps_to_an_approval_decision() {
        let Command::Approve(a) = parse(&[
            "approve",
            "SPRING-26",
            "--as",
            "E2001",
            "--role",
            "finance",
            "--comment",
            " margin ok ",
            "--revision",
            "2",
        ]) else {
            panic!("not approve")
        };
        assert!(!a.delivery.signal);
        let d = decision(&a).unwrap();
        assert_eq!(
            d,
            ApprovalDecision {
                approver_id: "E2001".into(),
                role: Role::Finance as i32,
                revision: 2,
                comment: "margin ok".into(),
                ..Default::default()
            }
        );
        // On the wire: proto3 JSON, enums by their full names.
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["approverId"], "E2001");
        assert_eq!(json["role"], "ROLE_FINANCE");
    }

    #[test]
    fn reject_by_signal_defaults_to_the_current_revision() {
        let Command::Reject(a) =
            parse(&["reject", "X", "--as", "E3001", "--role", "supply-chain", "--signal"])
        else {
            panic!("not reject")
        };
        assert!(a.delivery.signal);
        let d = decision(&a).unwrap();
        assert_eq!((d.role(), d.revision, d.comment.as_str()), (Role::SupplyChain, 0, ""));
    }

    #[test]
    fn empty_ids_and_revision_zero_are_refused_locally() {
        let Command::Approve(a) = parse(&["approve", "X", "--as", " ", "--role", "merchandising"]) else {
            panic!()
        };
        assert_eq!(decision(&a).unwrap_err().to_string(), "--as must not be empty");
        let Command::Approve(a) =
            parse(&["approve", "X", "--as", "E1", "--role", "merchandising", "--revision", "0"])
        else {
            panic!()
        };
        assert!(decision(&a).unwrap_err().to_string().starts_with("--revision starts at 1"));
    }

    #[test]
    fn operator_messages_need_a_reason() {
        let Command::Pause(a) = parse(&["pause", "X", "--as", "E4001", "--reason", "stock count"]) else {
            panic!()
        };
        assert_eq!(
            operator_action(&a).unwrap(),
            OperatorAction {
                operator_id: "E4001".into(),
                reason: "stock count".into(),
                ..Default::default()
            }
        );
        let Command::Cancel(a) = parse(&["cancel", "X", "--as", "E4001", "--reason", ""]) else { panic!() };
        assert_eq!(operator_action(&a).unwrap_err().to_string(), "--reason must not be empty");
    }

    #[test]
    fn override_without_region_opens_the_promotion_wide_gate() {
        let Command::Override(a) =
            parse(&["override", "X", "--as", "E4001", "--reason", "POS acked by phone"])
        else {
            panic!()
        };
        let o = gate_override(&a).unwrap();
        assert_eq!(o.region_id, "");
        let Command::Override(a) =
            parse(&["override", "X", "--as", "E4001", "--region", "R3", "--reason", "ok"])
        else {
            panic!()
        };
        assert_eq!(gate_override(&a).unwrap().region_id, "R3");
    }

    #[test]
    fn remediation_choice_carries_region_option_and_planner() {
        let Command::ChooseRemediation(a) =
            parse(&["choose-remediation", "X", "--region", "R2", "--option", "R2:delay", "--as", "E0042"])
        else {
            panic!()
        };
        assert_eq!(
            remediation_choice(&a).unwrap(),
            RemediationChoice {
                region_id: "R2".into(),
                option_id: "R2:delay".into(),
                chosen_by: "E0042".into(),
                comment: String::new(),
                ..Default::default()
            }
        );
    }

    #[test]
    fn a_compensation_decision_is_retry_or_accept() {
        let Command::ResolveCompensation(a) = parse(&[
            "resolve-compensation",
            "X",
            "--as",
            "E4001",
            "--accept",
            "--reason",
            "withdrawn by hand",
        ]) else {
            panic!()
        };
        assert_eq!(compensation_decision(&a).unwrap().resolution(), CompensationResolution::Accept);
        let mut v = vec!["promo", "resolve-compensation", "X", "--as", "E4001", "--reason", "r"];
        assert!(crate::cli::Cli::try_parse_from(&v).is_err(), "retry or accept is required");
        v.push("--retry");
        assert!(crate::cli::Cli::try_parse_from(&v).is_ok());
        v.push("--accept");
        assert!(crate::cli::Cli::try_parse_from(&v).is_err(), "not both");
    }

    #[test]
    fn an_amended_spec_keeps_the_promotion_id() {
        let Command::RequestChanges(a) = parse(&[
            "request-changes",
            "SPRING-26",
            "--as",
            "E1001",
            "--role",
            "merchandising",
            "--spec",
            "amended.json",
            "--comment",
            "drop SKU-00004",
        ]) else {
            panic!()
        };
        let spec = PromotionSpec { promotion_id: "OTHER".into(), ..Default::default() };
        let e = change_request(&a, spec).unwrap_err().to_string();
        assert_eq!(
            e,
            "amended.json is a spec for promotion \"OTHER\", not \"SPRING-26\": an amended spec keeps the promotion id"
        );
        let spec = PromotionSpec { promotion_id: "SPRING-26".into(), ..Default::default() };
        let c = change_request(&a, spec).unwrap();
        assert_eq!(c.comment, "drop SKU-00004");
        assert_eq!(c.amended_spec.unwrap().promotion_id, "SPRING-26");
    }
}
