//! The promotion calendar (`retail.v1.CalendarService`) over the reference SQLite file: one
//! reservation per promotion (its latest revision's footprint), checked against every other
//! reservation and written under the store's single writer, so a check and its write cannot be
//! interleaved with another promotion's.

use super::{Handler, blocking, db, millis, require, ts_ms};
use crate::now_ms;
use promo_contracts::retail::v1::*;
use rusqlite::params;
use std::collections::BTreeSet;
use tonic::{Request, Response, Status};

/// The table, created on open beside the dataset.
pub(crate) const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS calendar_reservations(
    promotion_id TEXT PRIMARY KEY, revision INTEGER NOT NULL, starts_ms INTEGER NOT NULL,
    ends_ms INTEGER NOT NULL, footprint TEXT NOT NULL, reserved_ms INTEGER NOT NULL);
    CREATE INDEX IF NOT EXISTS calendar_by_dates ON calendar_reservations(starts_ms, ends_ms);";

/// A footprint's dates, Unix milliseconds (0 for a date it lacks).
fn window(f: &CalendarFootprint) -> (i64, i64) {
    (f.starts_at.as_ref().map_or(0, millis), f.ends_at.as_ref().map_or(0, millis))
}

/// Checks a footprint, naming the field that is wrong.
fn check(f: Option<&CalendarFootprint>) -> Result<&CalendarFootprint, Status> {
    let f = f.ok_or_else(|| Status::invalid_argument("footprint: is required"))?;
    let (start, end) = window(f);
    if f.starts_at.is_none() || f.ends_at.is_none() {
        return Err(Status::invalid_argument("footprint.starts_at, footprint.ends_at: are required"));
    }
    if end <= start {
        return Err(Status::invalid_argument("footprint.ends_at: must be after footprint.starts_at"));
    }
    if f.region_ids.is_empty() && f.store_ids.is_empty() {
        return Err(Status::invalid_argument("footprint.region_ids, footprint.store_ids: one is required"));
    }
    if f.skus.is_empty() {
        return Err(Status::invalid_argument("footprint.skus: at least one is required"));
    }
    Ok(f)
}

/// A footprint's locations: whole regions, and stores with their region.
struct Locations {
    regions: BTreeSet<String>,
    stores: Vec<(String, String)>,
}

/// Where two footprints overlap: the shared SKUs and locations.
struct Overlap {
    skus: Vec<String>,
    locations: Vec<String>,
}

impl Handler {
    /// A footprint's locations (an unknown store is refused, naming it).
    fn locations(&self, f: &CalendarFootprint) -> Result<Locations, Status> {
        let m = self.0.master();
        let mut stores = Vec::new();
        for (i, s) in f.store_ids.iter().enumerate() {
            let row = m.store_index.get(s).map(|&i| &m.stores[i]).ok_or_else(|| {
                Status::invalid_argument(format!("footprint.store_ids[{i}]: unknown store {s:?}"))
            })?;
            stores.push((s.clone(), m.regions[row.region_idx].region_id.clone()));
        }
        Ok(Locations { regions: f.region_ids.iter().cloned().collect(), stores })
    }

    /// Where and on what two footprints overlap (their dates are known to overlap).
    fn overlap(
        &self,
        mine: &CalendarFootprint,
        theirs: &CalendarFootprint,
    ) -> Result<Option<Overlap>, Status> {
        let Locations { regions: my_regions, stores: my_stores } = self.locations(mine)?;
        let Locations { regions: their_regions, stores: their_stores } = self.locations(theirs)?;
        let mut shared: BTreeSet<String> = my_regions.intersection(&their_regions).cloned().collect();
        for (s, r) in &my_stores {
            if their_regions.contains(r) || their_stores.iter().any(|(t, _)| t == s) {
                shared.insert(s.clone());
            }
        }
        for (s, r) in &their_stores {
            if my_regions.contains(r) {
                shared.insert(s.clone());
            }
        }
        if shared.is_empty() {
            return Ok(None);
        }
        let theirs: BTreeSet<&str> = theirs.skus.iter().map(String::as_str).collect();
        let skus: Vec<String> = mine.skus.iter().filter(|s| theirs.contains(s.as_str())).cloned().collect();
        Ok((!skus.is_empty()).then(|| Overlap { skus, locations: shared.into_iter().collect() }))
    }
}

#[tonic::async_trait]
impl calendar_service_server::CalendarService for Handler {
    async fn reserve(&self, req: Request<ReserveRequest>) -> Result<Response<ReserveResponse>, Status> {
        let req = req.into_inner();
        require(&req.promotion_id, "promotion_id")?;
        let f = check(req.footprint.as_ref())?.clone();
        self.locations(&f)?;
        let (start, end) = window(&f);
        let me = self.clone();
        let out = blocking(move || {
            me.0.write(|conn| {
                let tx = conn.transaction().map_err(db)?;
                let mut conflicts = Vec::new();
                {
                    let mut st = tx
                        .prepare(
                            "SELECT promotion_id, revision, starts_ms, ends_ms, footprint FROM calendar_reservations
                             WHERE promotion_id <> ?1 AND starts_ms < ?3 AND ends_ms > ?2 ORDER BY promotion_id",
                        )
                        .map_err(db)?;
                    let rows = st
                        .query_map(params![req.promotion_id, start, end], |r| {
                            Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?, r.get::<_, String>(4)?))
                        })
                        .map_err(db)?;
                    for row in rows {
                        let (id, revision, s, e, json) = row.map_err(db)?;
                        let theirs: CalendarFootprint = serde_json::from_str(&json)
                            .map_err(|e| Status::internal(format!("reservation of {id}: {e}")))?;
                        if let Some(Overlap { skus, locations }) = me.overlap(&f, &theirs)? {
                            conflicts.push(CalendarConflict {
                                promotion_id: id,
                                revision,
                                skus,
                                locations,
                                overlap_starts_at: ts_ms(Some(s.max(start))),
                                overlap_ends_at: ts_ms(Some(e.min(end))),
                            });
                        }
                    }
                }
                if !conflicts.is_empty() || req.dry_run {
                    return Ok(ReserveResponse { reserved: false, conflicts });
                }
                let json = serde_json::to_string(&f).map_err(|e| Status::internal(e.to_string()))?;
                tx.execute(
                    "INSERT INTO calendar_reservations(promotion_id, revision, starts_ms, ends_ms, footprint, reserved_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT(promotion_id) DO UPDATE SET revision = ?2, starts_ms = ?3, ends_ms = ?4,
                     footprint = ?5, reserved_ms = ?6",
                    params![req.promotion_id, req.revision, start, end, json, now_ms()],
                )
                .map_err(db)?;
                tx.commit().map_err(db)?;
                Ok(ReserveResponse { reserved: true, conflicts })
            })
        })
        .await?;
        Ok(Response::new(out))
    }

    async fn release(&self, req: Request<ReleaseRequest>) -> Result<Response<ReleaseResponse>, Status> {
        let req = req.into_inner();
        require(&req.promotion_id, "promotion_id")?;
        let me = self.clone();
        let released = blocking(move || {
            me.0.write(|conn| {
                conn.execute(
                    "DELETE FROM calendar_reservations WHERE promotion_id = ?1",
                    params![req.promotion_id],
                )
                .map_err(db)
            })
        })
        .await?;
        Ok(Response::new(ReleaseResponse { released: released > 0 }))
    }

    async fn list_reservations(
        &self,
        req: Request<ListReservationsRequest>,
    ) -> Result<Response<ListReservationsResponse>, Status> {
        let req = req.into_inner();
        let me = self.clone();
        let reservations = blocking(move || {
            let conn = me.0.reader().map_err(db)?;
            let mut st = conn
                .prepare(
                    "SELECT promotion_id, revision, footprint, reserved_ms FROM calendar_reservations
                     WHERE ?1 = '' OR promotion_id = ?1 ORDER BY promotion_id",
                )
                .map_err(db)?;
            let rows = st
                .query_map(params![req.promotion_id], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, u32>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })
                .map_err(db)?;
            let mut out = Vec::new();
            for row in rows {
                let (promotion_id, revision, json, at) = row.map_err(db)?;
                out.push(Reservation {
                    promotion_id,
                    revision,
                    footprint: serde_json::from_str(&json).ok(),
                    reserved_at: ts_ms(Some(at)),
                });
            }
            Ok(out)
        })
        .await?;
        Ok(Response::new(ListReservationsResponse { reservations }))
    }
}
