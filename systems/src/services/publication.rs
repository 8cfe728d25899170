//! `retail.v1.PublicationService`: promotional prices published to the channels (POS and store
//! communications per region, eCommerce and loyalty nationally), their acknowledgments, and the
//! prices the channels charge now.
//!
//! A publication is idempotent by key. It is acknowledged when its delay (`ack_profiles`, or a
//! fault's) has passed; nothing runs on a timer: the acknowledgment is recorded by the first
//! read at or after its due instant, and a channel that is down (`Fault.channel_down`) defers
//! it to the first read after the channel is back. `WatchPublications` pushes each change of
//! the publications it watches, waking on writes and on due instants. `GetLivePrices` answers
//! what a channel target applied last, or the price it drifted to since (admin `DriftPrices`).

use super::{Handler, Stream, blocking, call, db, require, ts_ms};
use crate::{
    Systems,
    faults::{Call, Faults, lost_response},
    next_id, now_ms,
};
use promo_contracts::retail::v1::*;
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::{collections::HashMap, sync::Arc};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// The columns of `publications` that [`publication`] reads, in its order.
const PUBLICATION_COLUMNS: &str = "publication_id, idempotency_key, promotion_id, revision, channel, region_id, kind, \
     price_change_id, state, published_ms, acknowledged_ms, ack_due_ms";

/// A `publications` row as the wire carries it, with its acknowledgment's due instant (ms).
fn publication(r: &Row<'_>) -> rusqlite::Result<(Publication, Option<i64>)> {
    Ok((
        Publication {
            publication_id: r.get(0)?,
            idempotency_key: r.get(1)?,
            promotion_id: r.get(2)?,
            revision: r.get(3)?,
            channel: r.get(4)?,
            region_id: r.get(5)?,
            kind: r.get(6)?,
            price_change_id: r.get(7)?,
            state: r.get(8)?,
            published_at: ts_ms(r.get(9)?),
            acknowledged_at: ts_ms(r.get(10)?),
        },
        r.get(11)?,
    ))
}

/// Reads a publication, first recording its acknowledgment if it has come due — unless its
/// channel is down ([`Faults::channel_down`]): then the acknowledgment waits, and arrives at the
/// first read after the channel is back.
pub(super) fn get_publication(
    conn: &Connection,
    faults: &Faults,
    key_column: &str,
    key: &str,
) -> rusqlite::Result<Option<Publication>> {
    Ok(read_publication(conn, faults, key_column, key)?.map(|(p, _)| p))
}

/// [`get_publication`], with the instant (ms) its acknowledgment is due when it is still
/// pending and has one.
fn read_publication(
    conn: &Connection,
    faults: &Faults,
    key_column: &str,
    key: &str,
) -> rusqlite::Result<Option<(Publication, Option<i64>)>> {
    let found = conn
        .query_row(
            &format!("SELECT {PUBLICATION_COLUMNS} FROM publications WHERE {key_column} = ?1"),
            [key],
            publication,
        )
        .optional()?;
    let Some((mut p, ack_due)) = found else { return Ok(None) };
    if p.state == PublicationState::PendingAck as i32
        && let Some(due) = ack_due.filter(|&due| due <= now_ms())
    {
        if faults.channel_down(p.channel, &p.region_id) {
            let deferred = now_ms() + 1;
            conn.execute(
                "UPDATE publications SET ack_due_ms = ?2 WHERE publication_id = ?1",
                params![p.publication_id, deferred],
            )?;
            return Ok(Some((p, Some(deferred))));
        }
        conn.execute(
            "UPDATE publications SET state = ?2, acknowledged_ms = ?3 WHERE publication_id = ?1 AND state = ?4",
            params![p.publication_id, PublicationState::Acknowledged as i32, due, PublicationState::PendingAck as i32],
        )?;
        p.state = PublicationState::Acknowledged as i32;
        p.acknowledged_at = ts_ms(Some(due));
    }
    let pending_due = ack_due.filter(|_| p.state == PublicationState::PendingAck as i32);
    Ok(Some((p, pending_due)))
}

/// Longest a `WatchPublications` stream waits between two looks at its publications when
/// nothing was written: an acknowledgment comes due by time, and a channel that is down defers
/// it without a write. Server-side reads of the file, not calls.
const WATCH_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Feeds one `WatchPublications` stream: reads the publications (settling acknowledgments that
/// came due), sends those that changed since the last message, then sleeps until the next
/// acknowledgment is due, a write changes the file, or [`WATCH_RECHECK`] — until the caller
/// hangs up.
async fn watch_publications(
    systems: Arc<Systems>,
    ids: Vec<String>,
    tx: &mpsc::Sender<Result<WatchPublicationsResponse, Status>>,
) -> Result<(), Status> {
    let mut changes = systems.changes();
    let mut sent: HashMap<String, Publication> = HashMap::new();
    loop {
        changes.borrow_and_update();
        let (s, look) = (systems.clone(), ids.clone());
        let (pubs, next_due) = blocking(move || {
            s.write(|conn| {
                let mut out = Vec::with_capacity(look.len());
                let mut next_due: Option<i64> = None;
                for id in &look {
                    let (p, due) = read_publication(conn, &s.faults, "publication_id", id)
                        .map_err(db)?
                        .ok_or_else(|| Status::not_found(format!("unknown publication {id:?}")))?;
                    // A channel that is down defers its acknowledgments without a write: look
                    // again after [`WATCH_RECHECK`] rather than at the deferred instant.
                    if let Some(d) = due.filter(|_| !s.faults.channel_down(p.channel, &p.region_id)) {
                        next_due = Some(next_due.map_or(d, |n| n.min(d)));
                    }
                    out.push(p);
                }
                Ok((out, next_due))
            })
        })
        .await?;
        for p in pubs {
            if sent.get(&p.publication_id) != Some(&p) {
                sent.insert(p.publication_id.clone(), p.clone());
                if tx.send(Ok(WatchPublicationsResponse { publication: Some(p) })).await.is_err() {
                    return Ok(());
                }
            }
        }
        let wait = next_due
            .map(|due| std::time::Duration::from_millis((due - now_ms()).max(1) as u64))
            .map_or(WATCH_RECHECK, |d| d.min(WATCH_RECHECK));
        tokio::select! {
            () = tx.closed() => return Ok(()),
            r = changes.changed() => if r.is_err() { return Ok(()) },
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// The live publication a channel target applied for `sku`: the most recently acknowledged
/// publication to the target, not withdrawn, whose price change carries the SKU there — as
/// (publication id, kind, acknowledged ms, promo price). Settles the target's acknowledgments
/// that have come due first.
fn applied_publication(
    conn: &Connection,
    faults: &Faults,
    channel: i32,
    region_id: &str,
    sku: &str,
) -> rusqlite::Result<Option<(String, i32, i64, String)>> {
    let pending: Vec<String> = conn
        .prepare_cached(
            "SELECT publication_id FROM publications WHERE channel = ?1 AND region_id = ?2 AND state = ?3",
        )?
        .query_map(params![channel, region_id, PublicationState::PendingAck as i32], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in &pending {
        get_publication(conn, faults, "publication_id", id)?;
    }
    conn.prepare_cached(
        "SELECT p.publication_id, p.kind, p.acknowledged_ms, l.promo_price
         FROM publications p JOIN price_lines l ON l.price_change_id = p.price_change_id
         WHERE p.channel = ?1 AND p.region_id = ?2 AND l.sku = ?3 AND p.state = ?4
           AND (l.region_ids = '' OR (',' || l.region_ids || ',') LIKE ('%,' || ?2 || ',%'))
         ORDER BY p.acknowledged_ms DESC, p.publication_id DESC LIMIT 1",
    )?
    .query_row(params![channel, region_id, sku, PublicationState::Acknowledged as i32], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    })
    .optional()
}

/// What a channel target charges for `sku` now: the applied publication's price (the promo
/// price of an activation, the regular price after a revert), unless the target drifted after
/// applying it; the regular price when nothing of a promotion applies.
fn live_price(
    conn: &Connection,
    faults: &Faults,
    channel: i32,
    region_id: &str,
    sku: &str,
    regular: &str,
) -> rusqlite::Result<LivePrice> {
    let applied = applied_publication(conn, faults, channel, region_id, sku)?;
    let (publication_id, mut price, applied_ms) = match applied {
        Some((id, kind, ms, promo)) if kind == PublicationKind::Activate as i32 => (id, promo, ms),
        Some((id, _, ms, _)) => (id, regular.to_owned(), ms),
        None => (String::new(), regular.to_owned(), 0),
    };
    let drift: Option<(String, i64)> = conn
        .prepare_cached(
            "SELECT price, since_ms FROM channel_drift WHERE channel = ?1 AND region_id = ?2 AND sku = ?3",
        )?
        .query_row(params![channel, region_id, sku], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    // Drift perturbs what a target applied; a target that applies nothing charges regular prices.
    if let Some((drifted, since)) = drift
        && since > applied_ms
        && !publication_id.is_empty()
    {
        price = drifted;
    }
    Ok(LivePrice { sku: sku.to_owned(), price, publication_id })
}

/// Whether `channel` publishes per region (and so needs a region id).
fn is_regional(channel: Channel) -> bool {
    matches!(channel, Channel::Pos | Channel::StoreComms)
}

#[tonic::async_trait]
impl publication_service_server::PublicationService for Handler {
    async fn publish(&self, req: Request<PublishRequest>) -> Result<Response<PublishResponse>, Status> {
        let req = req.into_inner();
        let target_region = req.region_id.clone();
        let c = Call {
            service: "publication",
            method: "Publish",
            channel: req.channel,
            region_id: &target_region,
        };
        let fx = self.0.faults.before(c).await?;
        require(&req.idempotency_key, "idempotency_key")?;
        require(&req.promotion_id, "promotion_id")?;
        let channel = Channel::try_from(req.channel)
            .ok()
            .filter(|c| *c != Channel::Unspecified)
            .ok_or_else(|| Status::invalid_argument(format!("channel: {} is not a channel", req.channel)))?;
        if PublicationKind::try_from(req.kind).ok().filter(|k| *k != PublicationKind::Unspecified).is_none() {
            return Err(Status::invalid_argument(format!("kind: {} is not a publication kind", req.kind)));
        }
        let m = self.0.master();
        if is_regional(channel) {
            if !m.region_index.contains_key(&req.region_id) {
                return Err(Status::not_found(format!(
                    "region_id: unknown region {:?} (required for {})",
                    req.region_id,
                    channel.as_str_name()
                )));
            }
        } else if !req.region_id.is_empty() {
            return Err(Status::invalid_argument(format!(
                "region_id: {} is a national channel; leave region_id empty",
                channel.as_str_name()
            )));
        }
        let systems = self.0.clone();
        let region = req.region_id.clone();
        let (p, replayed) = blocking(move || {
            systems.write(|conn| {
                if let Some(existing) = get_publication(conn, &systems.faults, "idempotency_key", &req.idempotency_key).map_err(db)? {
                    if existing.promotion_id != req.promotion_id
                        || existing.channel != req.channel
                        || existing.region_id != req.region_id
                        || existing.kind != req.kind
                    {
                        return Err(Status::failed_precondition(format!(
                            "idempotency_key {:?} was used for a different publication ({} {} {})",
                            req.idempotency_key,
                            existing.promotion_id,
                            existing.channel().as_str_name(),
                            existing.region_id
                        )));
                    }
                    return Ok((existing, true));
                }
                let delay: i64 = conn
                    .query_row(
                        "SELECT delay_ms FROM ack_profiles WHERE channel = ?1 AND region_id = ?2",
                        params![req.channel, region],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(db)?
                    .unwrap_or(0);
                let delay = fx.ack_delay_ms.map_or(delay, |d| d as i64);
                let now = now_ms();
                let ack_due = (!fx.ack_never).then_some(now + delay);
                let id = next_id(conn, "publications", "PUB").map_err(db)?;
                conn.execute(
                    "INSERT INTO publications(publication_id, idempotency_key, promotion_id, revision, channel, region_id,
                     kind, price_change_id, state, published_ms, ack_due_ms) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)",
                    params![
                        id,
                        req.idempotency_key,
                        req.promotion_id,
                        req.revision,
                        req.channel,
                        req.region_id,
                        req.kind,
                        req.price_change_id,
                        PublicationState::PendingAck as i32,
                        now,
                        ack_due
                    ],
                )
                .map_err(db)?;
                let p = get_publication(conn, &systems.faults, "publication_id", &id).map_err(db)?.ok_or_else(|| Status::internal("lost write"))?;
                Ok((p, false))
            })
        })
        .await?;
        if fx.lose_response {
            return Err(lost_response(c));
        }
        Ok(Response::new(PublishResponse { publication: Some(p), replayed }))
    }

    async fn get_publication(
        &self,
        req: Request<GetPublicationRequest>,
    ) -> Result<Response<GetPublicationResponse>, Status> {
        self.0.faults.before(call("publication", "GetPublication")).await?;
        let id = req.into_inner().publication_id;
        let systems = self.0.clone();
        let p = blocking(move || {
            systems.write(|conn| {
                get_publication(conn, &systems.faults, "publication_id", &id)
                    .map_err(db)?
                    .ok_or_else(|| Status::not_found(format!("unknown publication {id:?}")))
            })
        })
        .await?;
        Ok(Response::new(GetPublicationResponse { publication: Some(p) }))
    }

    type WatchPublicationsStream = Stream<WatchPublicationsResponse>;

    async fn watch_publications(
        &self,
        req: Request<WatchPublicationsRequest>,
    ) -> Result<Response<Self::WatchPublicationsStream>, Status> {
        self.0.faults.before(call("publication", "WatchPublications")).await?;
        let ids = req.into_inner().publication_ids;
        if ids.is_empty() {
            return Err(Status::invalid_argument("publication_ids: name at least one publication"));
        }
        let systems = self.0.clone();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            if let Err(e) = watch_publications(systems, ids, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn withdraw(&self, req: Request<WithdrawRequest>) -> Result<Response<WithdrawResponse>, Status> {
        let req = req.into_inner();
        // Fault rules may name the publication's channel and region: read them first.
        let (channel, region_id) = {
            let systems = self.0.clone();
            let id = req.publication_id.clone();
            blocking(move || {
                let conn = systems.reader().map_err(db)?;
                Ok(get_publication(&conn, &systems.faults, "publication_id", &id)
                    .map_err(db)?
                    .map(|p| (p.channel, p.region_id))
                    .unwrap_or_default())
            })
            .await?
        };
        let c = Call { service: "publication", method: "Withdraw", channel, region_id: &region_id };
        let fx = self.0.faults.before(c).await?;
        let systems = self.0.clone();
        let p = blocking(move || {
            systems.write(|conn| {
                conn.execute(
                    "UPDATE publications SET state = ?2, withdrawn_ms = ?3, withdraw_reason = ?4
                     WHERE publication_id = ?1 AND state != ?2",
                    params![req.publication_id, PublicationState::Withdrawn as i32, now_ms(), req.reason],
                )
                .map_err(db)?;
                get_publication(conn, &systems.faults, "publication_id", &req.publication_id)
                    .map_err(db)?
                    .ok_or_else(|| Status::not_found(format!("unknown publication {:?}", req.publication_id)))
            })
        })
        .await?;
        if fx.lose_response {
            return Err(lost_response(c));
        }
        Ok(Response::new(WithdrawResponse { publication: Some(p) }))
    }

    async fn list_publications(
        &self,
        req: Request<ListPublicationsRequest>,
    ) -> Result<Response<ListPublicationsResponse>, Status> {
        self.0.faults.before(call("publication", "ListPublications")).await?;
        let promotion = req.into_inner().promotion_id;
        let systems = self.0.clone();
        let publications = blocking(move || {
            systems.write(|conn| {
                let ids: Vec<String> = conn
                    .prepare("SELECT publication_id FROM publications WHERE ?1 = '' OR promotion_id = ?1 ORDER BY published_ms, publication_id")
                    .map_err(db)?
                    .query_map([promotion], |r| r.get(0))
                    .map_err(db)?
                    .collect::<Result<_, _>>()
                    .map_err(db)?;
                ids.iter()
                    .map(|id| get_publication(conn, &systems.faults, "publication_id", id).map_err(db)?.ok_or_else(|| Status::internal("lost row")))
                    .collect::<Result<Vec<_>, _>>()
            })
        })
        .await?;
        Ok(Response::new(ListPublicationsResponse { publications }))
    }

    async fn get_live_prices(
        &self,
        req: Request<GetLivePricesRequest>,
    ) -> Result<Response<GetLivePricesResponse>, Status> {
        let req = req.into_inner();
        let c = Call {
            service: "publication",
            method: "GetLivePrices",
            channel: req.channel,
            region_id: &req.region_id,
        };
        self.0.faults.before(c).await?;
        let m = self.0.master();
        let mut regular = Vec::with_capacity(req.skus.len());
        for (i, sku) in req.skus.iter().enumerate() {
            let idx = m
                .sku_index
                .get(sku)
                .ok_or_else(|| Status::not_found(format!("skus[{i}]: unknown SKU {sku:?}")))?;
            regular.push(m.products[*idx].regular_price.clone());
        }
        let systems = self.0.clone();
        let prices = blocking(move || {
            systems.write(|conn| {
                req.skus
                    .iter()
                    .zip(&regular)
                    .map(|(sku, reg)| {
                        live_price(conn, &systems.faults, req.channel, &req.region_id, sku, reg)
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(db)
            })
        })
        .await?;
        Ok(Response::new(GetLivePricesResponse { prices }))
    }
}
