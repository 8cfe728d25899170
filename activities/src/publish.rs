//! Publication to the channels (POS and store communications per region, eCommerce and loyalty
//! once): idempotent writes keyed by promotion, revision, target, kind and correction; the wait
//! for their acknowledgments, pushed by the channel system over one stream; and the re-read of
//! what a channel shows now (the launch gate's re-check).

use crate::{
    Systems, business, idempotency_key,
    pulse::{Progress, alive},
    status_error, ts,
};
use promo_contracts::retail::v1::{self as wire, *};
use promo_workflows::api::{self, AwaitAcksInput, PublicationRef, PublishInput};
use std::time::Duration;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

/// The longest `promo.publish_and_await` waits for its publications to be written before it
/// fails the attempt (the local `promo.publish_many`'s start-to-close timeout, 20 s).
const PUBLISH_WAIT: Duration = Duration::from_secs(20);

/// One publication to one channel target, idempotent by promotion, revision, target, kind
/// and correction.
pub(crate) async fn publish_one(
    systems: &Systems,
    input: &PublishInput,
) -> Result<PublicationRef, ActivityError> {
    let channel = wire::Channel::try_from(input.target.channel).map_err(|_| business("unknown channel"))?;
    let kind = PublicationKind::try_from(input.kind).map_err(|_| business("unknown publication kind"))?;
    let mut target = format!(
        "publish:{}:{}:{}",
        channel.as_str_name(),
        if input.target.region_id.is_empty() { "national" } else { &input.target.region_id },
        kind.as_str_name()
    );
    if input.correction > 0 {
        target.push_str(&format!(":correction-{}", input.correction));
    }
    let req = PublishRequest {
        idempotency_key: idempotency_key(&input.promotion_id, &input.chain, input.revision, &target),
        promotion_id: input.promotion_id.clone(),
        revision: input.revision,
        channel: input.target.channel,
        region_id: input.target.region_id.clone(),
        kind: input.kind,
        price_change_id: input.price_change_id.clone(),
        effective: Some(TimeRange { start: ts(input.effective.0), end: ts(input.effective.1) }),
        line_count: input.line_count,
    };
    let p = rpc!(systems.publication(), publish, req.clone())
        .await
        .map_err(|s| status_error("publication", s))?
        .into_inner()
        .publication
        .ok_or_else(|| business("publication: empty response"))?;
    Ok(publication_ref(&p, input.target.clone()))
}

/// Publishes to every target at once (concurrently; each write idempotent by its key), in the
/// order given.
pub(crate) async fn publish_many(
    systems: &Systems,
    inputs: &[PublishInput],
) -> Result<Vec<PublicationRef>, ActivityError> {
    futures::future::try_join_all(inputs.iter().map(|i| publish_one(systems, i))).await
}

/// Publishes `input.publish`, then waits for those and `input.publications` to be acknowledged:
/// one ordinary activity for a publication and the wait that follows it. A publication the
/// channel system does not answer within [`PUBLISH_WAIT`] fails the attempt, which is retried.
pub(crate) async fn publish_and_await(
    systems: &Systems,
    ctx: &ActivityContext,
    input: &AwaitAcksInput,
) -> Result<Vec<PublicationRef>, ActivityError> {
    let progress = Progress::default();
    progress.set(format!("publishing to {} channel targets", input.publish.len()));
    // Not cut short by a cancellation: the compensation that follows it sweeps what the
    // channel system holds, so every write this attempt sent must have landed by then.
    let publish = futures::future::try_join_all(input.publish.iter().map(|i| publish_one(systems, i)));
    let published = alive(ctx, &progress, tokio::time::timeout(PUBLISH_WAIT, publish))
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("publication: no answer within {PUBLISH_WAIT:?}").into()))?;
    if ctx.is_cancelled() {
        return Err(ActivityError::cancelled());
    }
    let mut pubs = input.publications.clone();
    pubs.extend(published);
    acknowledgments(systems, ctx, pubs, input).await
}

/// Waits until every publication of `pubs` is acknowledged (with `return_on_change`, until
/// any acknowledgment changes) or `input.timeout_ms` passes, heartbeating.
pub(crate) async fn acknowledgments(
    systems: &Systems,
    ctx: &ActivityContext,
    pubs: Vec<PublicationRef>,
    input: &AwaitAcksInput,
) -> Result<Vec<PublicationRef>, ActivityError> {
    let progress = Progress::default();
    alive(ctx, &progress, async {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(input.timeout_ms);
        let mut pubs = pubs;
        let waiting =
            |pubs: &[PublicationRef]| pubs.iter().filter(|p| p.acknowledged_at_ms.is_none()).count();
        if waiting(&pubs) == 0 {
            return Ok(pubs);
        }
        let publication_ids: Vec<String> = pubs
            .iter()
            .filter(|p| p.acknowledged_at_ms.is_none())
            .map(|p| p.publication_id.clone())
            .collect();
        let mut stream = rpc!(
            systems.publication(),
            watch_publications,
            WatchPublicationsRequest { publication_ids: publication_ids.clone() }
        )
        .await
        .map_err(|s| status_error("publication", s))?
        .into_inner();
        loop {
            progress.set(format!("{} acknowledgments pending", waiting(&pubs)));
            let next = tokio::select! {
                () = ctx.cancelled() => return Err(ActivityError::cancelled()),
                () = tokio::time::sleep_until(deadline) => return Ok(pubs),
                next = stream.message() => next,
            };
            let got = next
                .map_err(|s| status_error("publication", s))?
                .ok_or_else(|| anyhow::anyhow!("publication: the acknowledgment stream ended"))?
                .publication
                .ok_or_else(|| business("publication: empty message"))?;
            let mut changed = false;
            if let Some(p) = pubs.iter_mut().find(|p| p.publication_id == got.publication_id) {
                let now = publication_ref(&got, p.target.clone());
                changed = now.acknowledged_at_ms != p.acknowledged_at_ms;
                *p = now;
            }
            if waiting(&pubs) == 0 || (changed && input.return_on_change) {
                return Ok(pubs);
            }
        }
    })
    .await
}

/// Each publication as its channel shows it now.
pub(crate) async fn read(
    systems: &Systems,
    publications: &[PublicationRef],
) -> Result<Vec<PublicationRef>, ActivityError> {
    let mut out = Vec::with_capacity(publications.len());
    for p in publications {
        let got = rpc!(
            systems.publication(),
            get_publication,
            GetPublicationRequest { publication_id: p.publication_id.clone() }
        )
        .await
        .map_err(|s| status_error("publication", s))?
        .into_inner()
        .publication
        .ok_or_else(|| business("publication: empty response"))?;
        out.push(publication_ref(&got, p.target.clone()));
    }
    Ok(out)
}

pub(crate) fn publication_ref(p: &Publication, target: api::Target) -> PublicationRef {
    PublicationRef {
        publication_id: p.publication_id.clone(),
        target,
        kind: p.kind,
        acknowledged_at_ms: (p.state() == PublicationState::Acknowledged).then(|| {
            p.acknowledged_at.as_ref().map_or(0, |t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
        }),
    }
}
