//! Publishing what the outside sees of a promotion ([`PromotionWorkflow::outside`]) from the
//! run: its current details at once, its search attributes at the run's next wait, and only
//! those that changed.

use super::state::{Ctx, PromotionWorkflow};
use temporalio_common::search_attributes::{SearchAttributeUpdate, SearchAttributes};

/// Publishes what the outside sees ([`PromotionWorkflow::outside`]) from the run: the search
/// attributes are upserted at the run's next wait on the server ([`publish_pending`]), so that
/// the steps of one workflow task cost one upsert; the details (a query-side value, no history
/// event) go now.
pub(crate) fn publish(ctx: &Ctx) {
    let md = ctx.state_mut(|s| {
        s.attributes_pending = true;
        s.outside().1
    });
    ctx.set_current_details(md);
}

/// Upserts what [`publish`] kept back, if anything: called before the run waits
/// on the server and when it ends.
pub(crate) fn publish_pending(ctx: &Ctx) {
    if ctx.state_mut(|s| std::mem::take(&mut s.attributes_pending)) {
        upsert(ctx);
    }
}

fn upsert(ctx: &Ctx) {
    let (mut sas, md) = ctx.state(PromotionWorkflow::outside);
    changed_only(&mut sas, &ctx.search_attributes());
    if !sas.is_empty() {
        ctx.upsert_search_attributes(sas);
    }
    ctx.set_current_details(md);
}

/// Keeps the updates that change a value (each upsert is a history event, and most stage steps
/// leave the attributes as they were).
fn changed_only(sas: &mut Vec<SearchAttributeUpdate>, current: &SearchAttributes) {
    let next = SearchAttributes::new(sas.iter().cloned());
    sas.retain(|u| next.raw_payload(u.name()) != current.raw_payload(u.name()));
}
