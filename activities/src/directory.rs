//! The key directory (`retail.v1.DirectoryService`): whether an employee's signing key was
//! revoked, asked by the promotion before it applies a signed message.

use crate::{Systems, status_error};
use promo_contracts::retail::v1::GetKeyStatusRequest;
use promo_workflows::api::{KeyStatus, KeyStatusInput};
use temporalio_sdk::activities::ActivityError;

/// The status of one employee's key.
pub(crate) async fn key_status(
    systems: &Systems,
    input: &KeyStatusInput,
) -> Result<KeyStatus, ActivityError> {
    let req =
        GetKeyStatusRequest { employee_id: input.employee_id.clone(), public_key: input.public_key.clone() };
    let r = rpc!(systems.directory(), get_key_status, req.clone())
        .await
        .map_err(|s| status_error("key directory", s))?
        .into_inner();
    Ok(KeyStatus { revoked: r.revoked, revoked_at: r.revoked_at, reason: r.reason })
}
