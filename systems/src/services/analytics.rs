//! `retail.v1.ProcessEventService`, the process-event record (fault rules name it `analytics`),
//! over the reference SQLite file: events are inserted once per id (a repeated id is counted as
//! a duplicate), and listed oldest first with the filters of the contract. Figures of a report
//! are kept as JSON text. A promotion's audit trail lives here too (kind AUDIT), numbered by
//! `seq` so that it can be paged backwards (`before_seq`).

use super::{Handler, blocking, call, db, millis, require, ts_ms};
use promo_contracts::retail::v1::*;
use rusqlite::{Row, params};
use std::collections::HashMap;
use tonic::{Request, Response, Status};

/// The table, created on open beside the dataset.
pub(crate) const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS process_events(
    seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT UNIQUE NOT NULL, promotion_id TEXT NOT NULL,
    run_id TEXT NOT NULL, revision INTEGER NOT NULL, kind INTEGER NOT NULL, at_ms INTEGER NOT NULL,
    stage TEXT NOT NULL, role TEXT NOT NULL, actor TEXT NOT NULL, region_id TEXT NOT NULL,
    channel TEXT NOT NULL, exception_id TEXT NOT NULL, exception_kind TEXT NOT NULL,
    revenue_at_risk TEXT NOT NULL, wait_seconds INTEGER NOT NULL, detail TEXT NOT NULL,
    kpis TEXT NOT NULL, action TEXT NOT NULL DEFAULT '', signature TEXT NOT NULL DEFAULT '',
    signed_payload TEXT NOT NULL DEFAULT '', trail_seq INTEGER NOT NULL DEFAULT 0,
    repeated INTEGER NOT NULL DEFAULT 0);
    CREATE INDEX IF NOT EXISTS process_events_by_promotion ON process_events(promotion_id, at_ms);
    CREATE INDEX IF NOT EXISTS process_events_by_time ON process_events(at_ms);";

/// Columns added after the table first shipped: a file written before them gets them on open.
pub(crate) const ADDED_COLUMNS: [(&str, &str); 5] = [
    ("action", "TEXT NOT NULL DEFAULT ''"),
    ("signature", "TEXT NOT NULL DEFAULT ''"),
    ("signed_payload", "TEXT NOT NULL DEFAULT ''"),
    ("trail_seq", "INTEGER NOT NULL DEFAULT 0"),
    ("repeated", "INTEGER NOT NULL DEFAULT 0"),
];

/// The columns of `process_events` that [`event`] reads, in its order.
const COLUMNS: &str = "event_id, promotion_id, run_id, revision, kind, at_ms, stage, role, actor, region_id, \
     channel, exception_id, exception_kind, revenue_at_risk, wait_seconds, detail, kpis, action, signature, \
     signed_payload, trail_seq, repeated";

/// A `process_events` row as the wire carries it.
fn event(r: &Row<'_>) -> rusqlite::Result<ProcessEvent> {
    let ms: i64 = r.get(5)?;
    let kpis: String = r.get(16)?;
    Ok(ProcessEvent {
        event_id: r.get(0)?,
        promotion_id: r.get(1)?,
        run_id: r.get(2)?,
        revision: r.get(3)?,
        kind: r.get(4)?,
        at: ts_ms(Some(ms)),
        stage: r.get(6)?,
        role: r.get(7)?,
        actor: r.get(8)?,
        region_id: r.get(9)?,
        channel: r.get(10)?,
        exception_id: r.get(11)?,
        exception_kind: r.get(12)?,
        revenue_at_risk: r.get(13)?,
        wait_seconds: r.get(14)?,
        detail: r.get(15)?,
        kpis: serde_json::from_str::<HashMap<String, String>>(&kpis).unwrap_or_default(),
        action: r.get(17)?,
        signature: r.get(18)?,
        signed_payload: r.get(19)?,
        seq: r.get::<_, i64>(20)?.max(0) as u64,
        repeated: r.get(21)?,
    })
}

/// Checks one event, naming the field that is wrong and the event's position.
fn check(i: usize, e: &ProcessEvent) -> Result<(), Status> {
    require(&e.event_id, &format!("events[{i}].event_id"))?;
    require(&e.promotion_id, &format!("events[{i}].promotion_id"))?;
    if e.kind() == ProcessEventKind::Unspecified {
        return Err(Status::invalid_argument(format!("events[{i}].kind: is required")));
    }
    if e.at.is_none() {
        return Err(Status::invalid_argument(format!("events[{i}].at: is required")));
    }
    Ok(())
}

#[tonic::async_trait]
impl process_event_service_server::ProcessEventService for Handler {
    async fn record_events(
        &self,
        req: Request<RecordEventsRequest>,
    ) -> Result<Response<RecordEventsResponse>, Status> {
        self.0.faults.before(call("analytics", "RecordEvents")).await?;
        let events = req.into_inner().events;
        for (i, e) in events.iter().enumerate() {
            check(i, e)?;
        }
        let systems = self.0.clone();
        let (recorded, duplicates) = blocking(move || {
            systems.write(|conn| {
                let tx = conn.transaction().map_err(db)?;
                let mut recorded = 0u32;
                {
                    let mut insert = tx
                        .prepare(&format!(
                            "INSERT OR IGNORE INTO process_events({COLUMNS})
                             VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22)"
                        ))
                        .map_err(db)?;
                    for e in &events {
                        let kpis: std::collections::BTreeMap<_, _> = e.kpis.iter().collect();
                        let n = insert
                            .execute(params![
                                e.event_id,
                                e.promotion_id,
                                e.run_id,
                                e.revision,
                                e.kind,
                                e.at.as_ref().map_or(0, millis),
                                e.stage,
                                e.role,
                                e.actor,
                                e.region_id,
                                e.channel,
                                e.exception_id,
                                e.exception_kind,
                                e.revenue_at_risk,
                                e.wait_seconds,
                                e.detail,
                                serde_json::to_string(&kpis).unwrap_or_else(|_| "{}".into()),
                                e.action,
                                e.signature,
                                e.signed_payload,
                                i64::try_from(e.seq).unwrap_or(i64::MAX),
                                e.repeated,
                            ])
                            .map_err(db)?;
                        recorded += n as u32;
                    }
                }
                tx.commit().map_err(db)?;
                Ok((recorded, events.len() as u32 - recorded))
            })
        })
        .await?;
        Ok(Response::new(RecordEventsResponse { recorded, duplicates }))
    }

    async fn list_events(
        &self,
        req: Request<ListEventsRequest>,
    ) -> Result<Response<ListEventsResponse>, Status> {
        let req = req.into_inner();
        let limit = if req.limit == 0 { 10_000 } else { req.limit.min(100_000) };
        let kinds: Vec<String> = req.kinds.iter().map(|k| k.to_string()).collect();
        let mut sql = format!(
            "SELECT {COLUMNS} FROM process_events WHERE at_ms >= ?1 AND (?2 = '' OR promotion_id = ?2)"
        );
        if !kinds.is_empty() {
            sql.push_str(&format!(" AND kind IN ({})", kinds.join(",")));
        }
        if req.before_seq > 0 {
            sql.push_str(" AND trail_seq < ?4");
        } else {
            sql.push_str(" AND ?4 = 0");
        }
        if !req.first_run_id.is_empty() && req.promotion_id.is_empty() {
            return Err(Status::invalid_argument(
                "first_run_id needs promotion_id: a run chain is a promotion's",
            ));
        }
        // A prefix compared as text (not LIKE: ids may hold `%` or `_`).
        let chain = if req.first_run_id.is_empty() {
            String::new()
        } else {
            format!("{}/{}/", req.promotion_id, req.first_run_id)
        };
        sql.push_str(" AND (?5 = '' OR substr(event_id, 1, length(?5)) = ?5)");
        sql.push_str(" ORDER BY at_ms DESC, trail_seq DESC, seq DESC LIMIT ?3");
        let since = req.since.as_ref().map_or(0, millis);
        let before = i64::try_from(req.before_seq).unwrap_or(i64::MAX);
        let systems = self.0.clone();
        let mut events = blocking(move || {
            let conn = systems.reader().map_err(db)?;
            let mut st = conn.prepare(&sql).map_err(db)?;
            let rows =
                st.query_map(params![since, req.promotion_id, limit, before, chain], event).map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })
        .await?;
        events.reverse();
        Ok(Response::new(ListEventsResponse { events }))
    }
}
