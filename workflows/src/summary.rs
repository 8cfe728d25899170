//! What the Web UI shows of a promotion before it runs: the static summary (one line in the
//! workflow list) and details (Markdown on the workflow's page), from the spec; and the names of
//! stages, roles and channels as people read them.

use promo_contracts::{
    promo::v1::{PromotionSpec, Role, Stage},
    retail::v1::Channel,
};

/// Longest static summary sent to Temporal (the Web UI shows one line).
const MAX_SUMMARY_CHARS: usize = 200;
/// Longest description copied into the static details.
const MAX_DESCRIPTION_CHARS: usize = 2_000;

/// Stage name as shown in search attributes (`APPROVAL`).
pub fn stage_name(stage: Stage) -> &'static str {
    stage.as_str_name().trim_start_matches("STAGE_")
}

/// Role name as shown to people and in search attributes (`FINANCE`).
pub fn role_name(role: Role) -> &'static str {
    role.as_str_name().trim_start_matches("ROLE_")
}

/// Channel name without its prefix (`POS`).
pub fn channel_name(c: i32) -> String {
    Channel::try_from(c)
        .map_or_else(|_| c.to_string(), |c| c.as_str_name().trim_start_matches("CHANNEL_").to_owned())
}

fn list(items: &[String], max: usize) -> String {
    let mut out = items.iter().take(max).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > max {
        out.push_str(&format!(" +{} more", items.len() - max));
    }
    out
}

fn window(spec: &PromotionSpec) -> String {
    match &spec.window {
        Some(w) => format!("{} to {} {}", w.starts_at, w.ends_at, w.time_zone),
        None => "no window".into(),
    }
}

/// The one-line static summary shown in the Web UI's workflow list, e.g.
/// `Promotion SPRING-26: Spring garden, 12 lines, regions R1, R2, 2030-04-01T00:00 to …`.
pub fn summary(spec: &PromotionSpec) -> String {
    let n = spec.lines.len();
    let mut where_ = Vec::new();
    if !spec.regions.is_empty() {
        where_.push(format!("regions {}", list(&spec.regions, 6)));
    }
    if !spec.stores.is_empty() {
        where_.push(format!("{} stores", spec.stores.len()));
    }
    let s = format!(
        "Promotion {}: {}, {n} line{}, {}, {}",
        spec.promotion_id,
        spec.name.trim(),
        if n == 1 { "" } else { "s" },
        where_.join(" + "),
        window(spec)
    );
    truncate(&s, MAX_SUMMARY_CHARS)
}

/// The static details (Markdown) shown on the workflow's page in the Web UI.
pub fn details(spec: &PromotionSpec) -> String {
    let funded = spec.lines.iter().filter(|l| !l.funding_agreement_id.is_empty()).count();
    let channels: Vec<String> = spec.channels.iter().map(|c| channel_name(*c)).collect();
    let mut md = format!(
        "**{}** · {}\n\n\
         | | |\n|---|---|\n\
         | planner | {} |\n\
         | window | {} |\n\
         | regions | {} |\n\
         | stores | {} |\n\
         | channels | {} |\n\
         | lines | {} ({funded} supplier-funded) |\n",
        spec.promotion_id,
        spec.name.trim(),
        spec.planner_id,
        window(spec),
        if spec.regions.is_empty() { "—".into() } else { list(&spec.regions, 20) },
        if spec.stores.is_empty() { "—".into() } else { list(&spec.stores, 20) },
        channels.join(", "),
        spec.lines.len(),
    );
    if !spec.description.trim().is_empty() {
        md.push('\n');
        md.push_str(&truncate(spec.description.trim(), MAX_DESCRIPTION_CHARS));
        md.push('\n');
    }
    md
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(max - 1).collect();
    t.push('…');
    t
}
