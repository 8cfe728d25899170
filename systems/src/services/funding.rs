//! `retail.v1.FundingService`: supplier funding agreements (from the dataset, changed through
//! the admin contract) and the claims submitted against them at close, kept in
//! `funding_claims`.
//!
//! A claim is idempotent by key (the same key for a different claim is refused) and must fit
//! what the agreement's cap has left after every other claim on it; only an active agreement
//! funds claims. An "unknown-id" fault renames the first agreement of `GetAgreements`.

use super::{Handler, blocking, call, db, field, require, ts, ts_ms};
use crate::{
    faults::{Malformed, lost_response},
    next_id, now_ms,
};
use promo_contracts::{money::parse_decimal, retail::v1::*};
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::collections::HashSet;
use tonic::{Request, Response, Status};

#[tonic::async_trait]
impl funding_service_server::FundingService for Handler {
    async fn get_agreements(
        &self,
        req: Request<GetAgreementsRequest>,
    ) -> Result<Response<GetAgreementsResponse>, Status> {
        let fx = self.0.faults.before(call("funding", "GetAgreements")).await?;
        let ids = req.into_inner().agreement_ids;
        let systems = self.0.clone();
        let mut resp = blocking(move || {
            let conn = systems.reader().map_err(db)?;
            let anchor = systems.anchor();
            let mut stmt = conn
                .prepare_cached(
                    "SELECT agreement_id, supplier_id, status, valid_from, valid_to, funding_per_unit, cap_amount
                     FROM agreements WHERE agreement_id = ?1",
                )
                .map_err(db)?;
            let mut skus = conn
                .prepare_cached("SELECT sku FROM agreement_skus WHERE agreement_id = ?1 ORDER BY sku")
                .map_err(db)?;
            let mut out = GetAgreementsResponse::default();
            let mut seen = HashSet::new();
            for id in ids.iter().filter(|i| seen.insert(i.as_str())) {
                let found = stmt
                    .query_row([id], |r| {
                        Ok(FundingAgreement {
                            agreement_id: r.get(0)?,
                            supplier_id: r.get(1)?,
                            status: r.get(2)?,
                            valid_from: ts(anchor + r.get::<_, i64>(3)?),
                            valid_to: ts(anchor + r.get::<_, i64>(4)?),
                            skus: vec![],
                            funding_per_unit: r.get(5)?,
                            cap_amount: r.get(6)?,
                        })
                    })
                    .optional()
                    .map_err(db)?;
                match found {
                    Some(mut a) => {
                        a.skus = skus.query_map([id], |r| r.get(0)).map_err(db)?.collect::<Result<_, _>>().map_err(db)?;
                        out.agreements.push(a);
                    }
                    None => out.unknown_ids.push(id.clone()),
                }
            }
            out.agreements.sort_by(|a, b| a.agreement_id.cmp(&b.agreement_id));
            Ok(out)
        })
        .await?;
        if let (Some(Malformed::UnknownId), Some(a)) = (fx.malformed, resp.agreements.first_mut()) {
            a.agreement_id = Malformed::unknown(&a.agreement_id);
        }
        Ok(Response::new(resp))
    }

    async fn submit_claim(
        &self,
        req: Request<SubmitClaimRequest>,
    ) -> Result<Response<SubmitClaimResponse>, Status> {
        let c = call("funding", "SubmitClaim");
        let fx = self.0.faults.before(c).await?;
        let req = req.into_inner();
        require(&req.idempotency_key, "idempotency_key")?;
        require(&req.promotion_id, "promotion_id")?;
        let amount = parse_decimal("amount", &req.amount, 2).map_err(field)?;
        if amount <= rust_decimal::Decimal::ZERO {
            return Err(Status::invalid_argument(format!("amount: {:?} must be more than zero", req.amount)));
        }
        let systems = self.0.clone();
        let (claim, replayed) = blocking(move || {
            systems.write(|conn| {
                let tx = conn.transaction().map_err(db)?;
                if let Some(existing) = get_claim(&tx, "idempotency_key", &req.idempotency_key).map_err(db)? {
                    if existing.agreement_id != req.agreement_id || existing.amount != amount.to_string() {
                        return Err(Status::failed_precondition(format!(
                            "idempotency_key {:?} was used for a different claim ({} {})",
                            req.idempotency_key, existing.agreement_id, existing.amount
                        )));
                    }
                    return Ok((existing, true));
                }
                let agreement: Option<(i32, String)> = tx
                    .query_row(
                        "SELECT status, cap_amount FROM agreements WHERE agreement_id = ?1",
                        [&req.agreement_id],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                    .map_err(db)?;
                let Some((status, cap)) = agreement else {
                    return Err(Status::not_found(format!("agreement_id: unknown agreement {:?}", req.agreement_id)));
                };
                if status != AgreementStatus::Active as i32 {
                    return Err(Status::failed_precondition(format!(
                        "agreement_id: {} is {}, it funds no claims",
                        req.agreement_id,
                        AgreementStatus::try_from(status).unwrap_or_default().as_str_name()
                    )));
                }
                let claimed: Vec<String> = tx
                    .prepare("SELECT amount FROM funding_claims WHERE agreement_id = ?1")
                    .and_then(|mut st| st.query_map([&req.agreement_id], |r| r.get(0))?.collect())
                    .map_err(db)?;
                let claimed: rust_decimal::Decimal =
                    claimed.iter().filter_map(|a| parse_decimal("amount", a, 2).ok()).sum();
                let cap = parse_decimal("cap_amount", &cap, 2).map_err(field)?;
                if claimed + amount > cap {
                    return Err(Status::failed_precondition(format!(
                        "amount: {amount} exceeds what the cap of {} has left ({} of {cap} claimed)",
                        req.agreement_id, claimed
                    )));
                }
                let id = next_id(&tx, "funding_claims", "CL").map_err(db)?;
                tx.execute(
                    "INSERT INTO funding_claims(claim_id, idempotency_key, promotion_id, agreement_id, amount, units, submitted_ms)
                     VALUES (?1,?2,?3,?4,?5,?6,?7)",
                    params![id, req.idempotency_key, req.promotion_id, req.agreement_id, amount.to_string(), req.units, now_ms()],
                )
                .map_err(db)?;
                let claim = get_claim(&tx, "claim_id", &id).map_err(db)?.ok_or_else(|| Status::internal("lost write"))?;
                tx.commit().map_err(db)?;
                Ok((claim, false))
            })
        })
        .await?;
        if fx.lose_response {
            return Err(lost_response(c));
        }
        Ok(Response::new(SubmitClaimResponse { claim: Some(claim), replayed }))
    }

    async fn list_claims(
        &self,
        req: Request<ListClaimsRequest>,
    ) -> Result<Response<ListClaimsResponse>, Status> {
        self.0.faults.before(call("funding", "ListClaims")).await?;
        let promotion = req.into_inner().promotion_id;
        let systems = self.0.clone();
        let claims = blocking(move || {
            let conn = systems.reader().map_err(db)?;
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {CLAIM_COLUMNS} FROM funding_claims WHERE ?1 = '' OR promotion_id = ?1 ORDER BY submitted_ms, claim_id"
                ))
                .map_err(db)?;
            let rows = stmt.query_map([promotion], claim_row).map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })
        .await?;
        Ok(Response::new(ListClaimsResponse { claims }))
    }
}

/// The columns of `funding_claims` that [`claim_row`] reads, in its order.
const CLAIM_COLUMNS: &str =
    "claim_id, idempotency_key, promotion_id, agreement_id, amount, units, submitted_ms";

/// A `funding_claims` row as the wire carries it.
fn claim_row(r: &Row<'_>) -> rusqlite::Result<FundingClaim> {
    Ok(FundingClaim {
        claim_id: r.get(0)?,
        idempotency_key: r.get(1)?,
        promotion_id: r.get(2)?,
        agreement_id: r.get(3)?,
        amount: r.get(4)?,
        units: r.get(5)?,
        submitted_at: ts_ms(r.get(6)?),
    })
}

/// The claim whose `key_column` is `key`, if any.
fn get_claim(conn: &Connection, key_column: &str, key: &str) -> rusqlite::Result<Option<FundingClaim>> {
    conn.query_row(
        &format!("SELECT {CLAIM_COLUMNS} FROM funding_claims WHERE {key_column} = ?1"),
        [key],
        claim_row,
    )
    .optional()
}
