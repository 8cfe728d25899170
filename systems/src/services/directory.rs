//! The key directory (`retail.v1.DirectoryService`) over the reference SQLite file: revocations
//! of employees' signing keys, one row per key (or per employee, for every key of theirs). The
//! first revocation of a key is the one kept, so revoking twice is harmless.

use super::{Handler, blocking, call, db, require, ts_ms};
use crate::now_ms;
use promo_contracts::retail::v1::*;
use rusqlite::{OptionalExtension, params};
use tonic::{Request, Response, Status};

/// The table, created on open beside the dataset. An empty `public_key` revokes every key of
/// the employee.
pub(crate) const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS key_revocations(
    employee_id TEXT NOT NULL, public_key TEXT NOT NULL, reason TEXT NOT NULL,
    revoked_ms INTEGER NOT NULL, PRIMARY KEY(employee_id, public_key)) WITHOUT ROWID;";

#[tonic::async_trait]
impl directory_service_server::DirectoryService for Handler {
    async fn get_key_status(
        &self,
        req: Request<GetKeyStatusRequest>,
    ) -> Result<Response<GetKeyStatusResponse>, Status> {
        self.0.faults.before(call("directory", "GetKeyStatus")).await?;
        let req = req.into_inner();
        require(&req.employee_id, "employee_id")?;
        let systems = self.0.clone();
        let found: Option<(String, i64)> = blocking(move || {
            let conn = systems.reader().map_err(db)?;
            conn.query_row(
                "SELECT reason, revoked_ms FROM key_revocations
                 WHERE employee_id = ?1 AND (public_key = ?2 OR public_key = '')
                 ORDER BY revoked_ms LIMIT 1",
                params![req.employee_id, req.public_key.trim()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(db)
        })
        .await?;
        Ok(Response::new(match found {
            Some((reason, ms)) => GetKeyStatusResponse { revoked: true, revoked_at: ts_ms(Some(ms)), reason },
            None => GetKeyStatusResponse::default(),
        }))
    }

    async fn revoke_key(
        &self,
        req: Request<RevokeKeyRequest>,
    ) -> Result<Response<RevokeKeyResponse>, Status> {
        self.0.faults.before(call("directory", "RevokeKey")).await?;
        let req = req.into_inner();
        require(&req.employee_id, "employee_id")?;
        require(&req.reason, "reason")?;
        let systems = self.0.clone();
        let ms = blocking(move || {
            systems.write(|conn| {
                let key = req.public_key.trim().to_owned();
                conn.execute(
                    "INSERT OR IGNORE INTO key_revocations(employee_id, public_key, reason, revoked_ms)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![req.employee_id, key, req.reason, now_ms()],
                )
                .map_err(db)?;
                conn.query_row(
                    "SELECT revoked_ms FROM key_revocations WHERE employee_id = ?1 AND public_key = ?2",
                    params![req.employee_id, key],
                    |r| r.get::<_, i64>(0),
                )
                .map_err(db)
            })
        })
        .await?;
        Ok(Response::new(RevokeKeyResponse { revoked_at: ts_ms(Some(ms)) }))
    }
}
