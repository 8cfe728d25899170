//! Deterministic dataset generation: the same seed and sizes give the same file content.
//!
//! The "national launch" dataset is the canonical scenario of docs/design.md: 600 stores in 6
//! regions, 3 DCs, 1,200 SKUs in 24 categories, two weeks of baseline demand, promotion history and supplier
//! funding agreements, with the three failures built in:
//! - **incomplete allocation**: the short region's stores hold only days of cover of its first
//!   `short_skus` SKUs (all of them in the canonical dataset); inbound stock
//!   arrives 4–6 days after the dataset anchor, so coverage passes only if the launch waits;
//! - **late acknowledgments**: POS publications in the late region acknowledge only after
//!   `late_ack_ms`;
//! - **missing funding**: some suppliers' agreements are unsigned or expired, so the SKUs they
//!   fund have no valid agreement.
//!
//! Times are stored as offsets (seconds) from the dataset *anchor*, an instant chosen when the
//! server starts (default: now), so inbound ETAs stay meaningful relative to the present.

use crate::{
    rng::mix,
    world::{World, WorldSpec},
};
use rand::{RngExt, SeedableRng, rngs::ChaCha8Rng};
use rusqlite::{Connection, params};

/// Sizes and seed of a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetSpec {
    /// "canonical", "small" or "custom".
    pub name: String,
    /// Seed of every random choice.
    pub seed: u64,
    /// Number of regions.
    pub regions: usize,
    /// Number of stores (spread evenly over regions).
    pub stores: usize,
    /// Number of DCs (each serves a contiguous block of regions).
    pub dcs: usize,
    /// Number of SKUs.
    pub skus: usize,
    /// Number of categories.
    pub categories: usize,
    /// Number of suppliers.
    pub suppliers: usize,
    /// Days of sales history behind the baseline.
    pub history_days: u32,
    /// Index of the region with incomplete allocation, if any.
    pub short_region: Option<usize>,
    /// How many SKUs (the first ones by index) are short in that region; the others are well
    /// stocked there, so a comparable SKU (same category and price band) can stand in for a
    /// short one.
    pub short_skus: usize,
    /// Index of the region whose POS acknowledgments are late, if any.
    pub late_ack_region: Option<usize>,
    /// How late those acknowledgments are, in milliseconds.
    pub late_ack_ms: u64,
    /// Acknowledgment delay of every other channel target, in milliseconds.
    pub ack_ms: u64,
    /// Number of funding agreements that are not valid.
    pub invalid_agreements: usize,
    /// The generating process of promotion history and in-window sales.
    pub world: WorldSpec,
}

impl DatasetSpec {
    /// The canonical national-launch dataset.
    pub fn canonical() -> Self {
        Self {
            name: "canonical".into(),
            seed: 2026,
            regions: 6,
            stores: 600,
            dcs: 3,
            skus: 1200,
            categories: 24,
            suppliers: 40,
            history_days: 14,
            short_region: Some(2),
            short_skus: 1200,
            late_ack_region: Some(4),
            late_ack_ms: 45_000,
            ack_ms: 300,
            invalid_agreements: 3,
            world: WorldSpec::reference(),
        }
    }

    /// A small dataset with the same failure modes, for fast tests.
    pub fn small() -> Self {
        Self {
            name: "small".into(),
            seed: 7,
            regions: 3,
            stores: 12,
            dcs: 2,
            skus: 40,
            categories: 4,
            suppliers: 6,
            history_days: 14,
            short_region: Some(1),
            short_skus: 20,
            late_ack_region: Some(2),
            late_ack_ms: 5_000,
            ack_ms: 100,
            invalid_agreements: 1,
            world: WorldSpec::reference(),
        }
    }

    /// Region id of region `i` (0-based).
    pub fn region_id(i: usize) -> String {
        format!("R{}", i + 1)
    }

    /// Store id of store `i` (0-based).
    pub fn store_id(i: usize) -> String {
        format!("S{:04}", i + 1)
    }

    /// SKU of product `i` (0-based).
    pub fn sku(i: usize) -> String {
        format!("SKU-{:05}", i + 1)
    }

    /// DC id of DC `i` (0-based).
    pub fn dc_id(i: usize) -> String {
        format!("DC{}", i + 1)
    }

    /// Supplier id of supplier `i` (0-based).
    pub fn supplier_id(i: usize) -> String {
        format!("SUP-{:03}", i + 1)
    }

    /// Agreement id of supplier `i`'s funding agreement.
    pub fn agreement_id(i: usize) -> String {
        format!("FA-{:03}", i + 1)
    }

    /// Region of store `i`.
    pub fn region_of_store(&self, i: usize) -> usize {
        i * self.regions / self.stores.max(1)
    }

    /// DC serving region `r`.
    pub fn dc_of_region(&self, r: usize) -> usize {
        r * self.dcs / self.regions.max(1)
    }

    /// Suppliers that fund promotions (have an agreement, valid or not): the first 80%.
    pub fn funding_suppliers(&self) -> usize {
        (self.suppliers * 4).div_ceil(5)
    }

    /// Indexes of suppliers whose agreement is invalid, spread over the funding suppliers.
    pub fn invalid_agreement_suppliers(&self) -> Vec<usize> {
        let n = self.funding_suppliers();
        (0..self.invalid_agreements.min(n))
            .map(|k| (k * n / self.invalid_agreements.max(1) + 6) % n)
            .collect()
    }

    /// Validates sizes.
    pub fn check(&self) -> Result<(), String> {
        let positive = [
            ("regions", self.regions),
            ("stores", self.stores),
            ("dcs", self.dcs),
            ("skus", self.skus),
            ("categories", self.categories),
            ("suppliers", self.suppliers),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("dataset {name} must be at least 1"));
            }
        }
        if self.stores < self.regions {
            return Err("dataset needs at least one store per region".into());
        }
        if self.dcs > self.regions {
            return Err("dataset cannot have more DCs than regions".into());
        }
        for (what, r) in [("short_region", self.short_region), ("late_ack_region", self.late_ack_region)] {
            if r.is_some_and(|r| r >= self.regions) {
                return Err(format!("dataset {what} is outside the {} regions", self.regions));
            }
        }
        Ok(())
    }
}

const REGION_NAMES: [(&str, &str); 6] = [
    ("North East", "America/New_York"),
    ("Mid Atlantic", "America/New_York"),
    ("South East", "America/New_York"),
    ("Midwest", "America/Chicago"),
    ("Mountain", "America/Denver"),
    ("Pacific", "America/Los_Angeles"),
];

const CATEGORY_NAMES: [&str; 24] = [
    "outdoor-furniture",
    "grills",
    "garden-tools",
    "planters",
    "lighting",
    "cookware",
    "tableware",
    "storage",
    "bedding",
    "bath",
    "small-appliances",
    "coolers",
    "picnic",
    "pool",
    "camping",
    "sports",
    "toys",
    "snacks",
    "beverages",
    "sun-care",
    "pet",
    "cleaning",
    "party",
    "seasonal-decor",
];

const BAND_PRICES: [f64; 5] = [3.0, 7.0, 13.0, 25.0, 50.0];
const DAY: i64 = 86_400;
/// The layout of `promotion_outcomes`, part of the history version (so a model fitted on outcomes
/// without the store-level moments is not taken for one fitted with them).
const OUTCOMES_FORMAT: &str = "outcomes/2: in-stock moments";
/// The generator every value is drawn with, part of the history version: the same seed drawn
/// by another generator is another history.
const DRAWN_WITH: &str = "rand ChaCha8Rng";

/// Channel eligibility bits, by `retail.v1.Channel` number.
pub fn channel_bit(channel: i32) -> u32 {
    1 << channel
}

/// The schema. Times are offsets in seconds from the anchor unless named `_ms` (wall clock).
pub const SCHEMA: &str = "
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE regions(idx INTEGER PRIMARY KEY, region_id TEXT UNIQUE NOT NULL, name TEXT NOT NULL,
    time_zone TEXT NOT NULL, dc_id TEXT NOT NULL);
CREATE TABLE dcs(idx INTEGER PRIMARY KEY, dc_id TEXT UNIQUE NOT NULL, name TEXT NOT NULL);
CREATE TABLE stores(idx INTEGER PRIMARY KEY, store_id TEXT UNIQUE NOT NULL, region_idx INTEGER NOT NULL,
    name TEXT NOT NULL);
CREATE TABLE products(idx INTEGER PRIMARY KEY, sku TEXT UNIQUE NOT NULL, name TEXT NOT NULL,
    category TEXT NOT NULL, supplier_id TEXT NOT NULL, cost TEXT NOT NULL, regular_price TEXT NOT NULL,
    price_band INTEGER NOT NULL, channels INTEGER NOT NULL, elasticity REAL NOT NULL);
CREATE TABLE store_positions(store_idx INTEGER NOT NULL, sku_idx INTEGER NOT NULL,
    on_hand INTEGER NOT NULL, in_transit INTEGER NOT NULL, in_transit_eta INTEGER NOT NULL,
    confirmed INTEGER NOT NULL, confirmed_eta INTEGER NOT NULL, baseline REAL NOT NULL,
    PRIMARY KEY(store_idx, sku_idx)) WITHOUT ROWID;
CREATE TABLE dc_positions(dc_idx INTEGER NOT NULL, sku_idx INTEGER NOT NULL,
    on_hand INTEGER NOT NULL, in_transit INTEGER NOT NULL, in_transit_eta INTEGER NOT NULL,
    confirmed INTEGER NOT NULL, confirmed_eta INTEGER NOT NULL,
    PRIMARY KEY(dc_idx, sku_idx)) WITHOUT ROWID;
CREATE TABLE agreements(agreement_id TEXT PRIMARY KEY, supplier_id TEXT NOT NULL, status INTEGER NOT NULL,
    valid_from INTEGER NOT NULL, valid_to INTEGER NOT NULL, funding_per_unit TEXT NOT NULL,
    cap_amount TEXT NOT NULL);
CREATE TABLE agreement_skus(agreement_id TEXT NOT NULL, sku TEXT NOT NULL,
    PRIMARY KEY(agreement_id, sku)) WITHOUT ROWID;
CREATE TABLE promo_history(sku TEXT NOT NULL, promotion_id TEXT NOT NULL, discount_depth TEXT NOT NULL,
    realised_uplift TEXT NOT NULL, duration_days INTEGER NOT NULL, PRIMARY KEY(sku, promotion_id));
CREATE TABLE promotion_outcomes(promotion_id TEXT NOT NULL, sku_idx INTEGER NOT NULL,
    region_idx INTEGER NOT NULL, week_offset INTEGER NOT NULL, mechanic INTEGER NOT NULL,
    discount_depth TEXT NOT NULL, store_weeks INTEGER NOT NULL, baseline_units REAL NOT NULL,
    units_sold INTEGER NOT NULL, stockout_store_weeks INTEGER NOT NULL,
    in_stock_baseline_units REAL NOT NULL, in_stock_units_sold INTEGER NOT NULL,
    in_stock_units_squared REAL NOT NULL, in_stock_baseline_squared REAL NOT NULL,
    PRIMARY KEY(week_offset, promotion_id, sku_idx, region_idx)) WITHOUT ROWID;
CREATE TABLE ack_profiles(channel INTEGER NOT NULL, region_id TEXT NOT NULL, delay_ms INTEGER NOT NULL,
    PRIMARY KEY(channel, region_id));
CREATE TABLE price_changes(price_change_id TEXT PRIMARY KEY, idempotency_key TEXT UNIQUE NOT NULL,
    promotion_id TEXT NOT NULL, revision INTEGER NOT NULL, region_ids TEXT NOT NULL,
    effective_from INTEGER NOT NULL, effective_to INTEGER NOT NULL, line_count INTEGER NOT NULL,
    state INTEGER NOT NULL, created_ms INTEGER NOT NULL, reverted_ms INTEGER, revert_reason TEXT);
CREATE TABLE price_lines(price_change_id TEXT NOT NULL, sku TEXT NOT NULL, promo_price TEXT NOT NULL,
    region_ids TEXT NOT NULL DEFAULT '',
    PRIMARY KEY(price_change_id, sku)) WITHOUT ROWID;
CREATE TABLE transfer_orders(order_id TEXT PRIMARY KEY, idempotency_key TEXT UNIQUE NOT NULL,
    promotion_id TEXT NOT NULL, from_dc_id TEXT NOT NULL, to_region_id TEXT NOT NULL,
    total_units INTEGER NOT NULL, line_count INTEGER NOT NULL, eta_ms INTEGER NOT NULL,
    state INTEGER NOT NULL, created_ms INTEGER NOT NULL, cancel_reason TEXT);
CREATE TABLE publications(publication_id TEXT PRIMARY KEY, idempotency_key TEXT UNIQUE NOT NULL,
    promotion_id TEXT NOT NULL, revision INTEGER NOT NULL, channel INTEGER NOT NULL,
    region_id TEXT NOT NULL, kind INTEGER NOT NULL, price_change_id TEXT NOT NULL,
    state INTEGER NOT NULL, published_ms INTEGER NOT NULL, ack_due_ms INTEGER,
    acknowledged_ms INTEGER, withdrawn_ms INTEGER, withdraw_reason TEXT);
CREATE INDEX publications_by_promotion ON publications(promotion_id);
CREATE INDEX price_changes_by_promotion ON price_changes(promotion_id);
CREATE INDEX orders_by_promotion ON transfer_orders(promotion_id);
";

/// Writes the dataset into an empty database (schema included), in one transaction.
pub fn generate(conn: &mut Connection, spec: &DatasetSpec) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    tx.execute_batch(SCHEMA)?;
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let meta = |k: &str, v: String| -> rusqlite::Result<()> {
        tx.execute("INSERT INTO meta(key, value) VALUES (?1, ?2)", params![k, v]).map(drop)
    };
    meta("name", spec.name.clone())?;
    meta("seed", spec.seed.to_string())?;
    meta("history_days", spec.history_days.to_string())?;
    meta("short_region", spec.short_region.map(DatasetSpec::region_id).unwrap_or_default())?;
    meta("short_skus", spec.short_skus.min(spec.skus).to_string())?;
    meta("late_ack_region", spec.late_ack_region.map(DatasetSpec::region_id).unwrap_or_default())?;
    let world_toml = spec.world.to_toml();
    meta("world", world_toml.clone())?;
    let version = format!(
        "{:016x}",
        [spec.seed, spec.skus as u64, spec.stores as u64, spec.regions as u64, spec.categories as u64]
            .into_iter()
            .chain(world_toml.bytes().map(u64::from))
            .chain(OUTCOMES_FORMAT.bytes().map(u64::from))
            .chain(DRAWN_WITH.bytes().map(u64::from))
            .fold(0x6869_7374u64, |acc, x| mix(acc ^ x))
    );
    meta("history_version", version)?;

    for d in 0..spec.dcs {
        tx.execute(
            "INSERT INTO dcs(idx, dc_id, name) VALUES (?1, ?2, ?3)",
            params![d, DatasetSpec::dc_id(d), format!("Distribution Centre {}", d + 1)],
        )?;
    }
    for r in 0..spec.regions {
        let (name, tz) = REGION_NAMES[r % REGION_NAMES.len()];
        let name = if r < REGION_NAMES.len() { name.to_owned() } else { format!("{name} {}", r / 6 + 1) };
        tx.execute(
            "INSERT INTO regions(idx, region_id, name, time_zone, dc_id) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![r, DatasetSpec::region_id(r), name, tz, DatasetSpec::dc_id(spec.dc_of_region(r))],
        )?;
    }
    let store_factor: Vec<f64> = (0..spec.stores).map(|_| rng.random_range(0.6..1.6)).collect();
    for s in 0..spec.stores {
        tx.execute(
            "INSERT INTO stores(idx, store_id, region_idx, name) VALUES (?1, ?2, ?3, ?4)",
            params![s, DatasetSpec::store_id(s), spec.region_of_store(s), format!("Store {}", s + 1)],
        )?;
    }

    // Products: category, band and supplier interleave so every supplier spans categories.
    let elasticity: Vec<f64> = (0..spec.categories).map(|_| rng.random_range(1.5..3.5)).collect();
    let mut popularity = Vec::with_capacity(spec.skus);
    {
        let mut ins = tx.prepare(
            "INSERT INTO products(idx, sku, name, category, supplier_id, cost, regular_price, price_band,
             channels, elasticity) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        for i in 0..spec.skus {
            let category = i % spec.categories;
            let band = (i / spec.categories) % 5;
            let supplier = i % spec.suppliers;
            let regular = (BAND_PRICES[band] * rng.random_range(0.85..1.15)).round().max(1.0) - 0.01;
            let cost = (regular * rng.random_range(0.42..0.62) * 100.0).round() / 100.0;
            // Every SKU sells in stores and online; 5% are excluded from the loyalty programme.
            let mut channels = channel_bit(1) | channel_bit(2) | channel_bit(4);
            if rng.random_bool(0.95) {
                channels |= channel_bit(3);
            }
            popularity.push(rng.random_range(0.3..2.5));
            let cat_name = CATEGORY_NAMES[category % CATEGORY_NAMES.len()];
            ins.execute(params![
                i,
                DatasetSpec::sku(i),
                format!("{cat_name} item {}", i + 1),
                if category < CATEGORY_NAMES.len() {
                    cat_name.to_owned()
                } else {
                    format!("{cat_name}-{category}")
                },
                DatasetSpec::supplier_id(supplier),
                format!("{cost:.2}"),
                format!("{regular:.2}"),
                band + 1,
                channels,
                elasticity[category],
            ])?;
        }
    }

    // Store positions and baseline demand.
    let mut dc_demand = vec![vec![0f64; spec.skus]; spec.dcs];
    let mut baselines = vec![0f32; spec.stores * spec.skus];
    {
        let mut ins = tx.prepare(
            "INSERT INTO store_positions(store_idx, sku_idx, on_hand, in_transit, in_transit_eta, confirmed,
             confirmed_eta, baseline) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for (s, factor) in store_factor.iter().enumerate() {
            let region = spec.region_of_store(s);
            let short_region = spec.short_region == Some(region);
            for (k, pop) in popularity.iter().enumerate() {
                let short = short_region && k < spec.short_skus;
                let baseline = (pop * factor * rng.random_range(0.6..1.4) / 2.0) as f32;
                let b = f64::from(baseline);
                baselines[s * spec.skus + k] = baseline;
                dc_demand[spec.dc_of_region(region)][k] += b;
                let (on_hand, in_transit, in_transit_eta, confirmed, confirmed_eta);
                if short {
                    on_hand = (b * rng.random_range(3.0..9.0)).round() as i64;
                    in_transit = (b * rng.random_range(20.0..35.0)).ceil() as i64;
                    in_transit_eta = (rng.random_range(4.0..6.0) * DAY as f64) as i64;
                    confirmed = 0;
                    confirmed_eta = 0;
                } else {
                    on_hand = (b * rng.random_range(25.0..45.0)).round() as i64;
                    if rng.random_bool(0.4) {
                        in_transit = (b * rng.random_range(3.0..10.0)).ceil() as i64;
                        in_transit_eta = (rng.random_range(0.5..2.0) * DAY as f64) as i64;
                    } else {
                        in_transit = 0;
                        in_transit_eta = 0;
                    }
                    if rng.random_bool(0.2) {
                        confirmed = (b * rng.random_range(5.0..15.0)).ceil() as i64;
                        confirmed_eta = (rng.random_range(3.0..9.0) * DAY as f64) as i64;
                    } else {
                        confirmed = 0;
                        confirmed_eta = 0;
                    }
                }
                ins.execute(params![
                    s,
                    k,
                    on_hand,
                    in_transit,
                    in_transit_eta,
                    confirmed,
                    confirmed_eta,
                    baseline
                ])?;
            }
        }
        let mut ins = tx.prepare(
            "INSERT INTO dc_positions(dc_idx, sku_idx, on_hand, in_transit, in_transit_eta, confirmed,
             confirmed_eta) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for (d, demand) in dc_demand.iter().enumerate() {
            for (k, b) in demand.iter().enumerate() {
                let on_hand = (b * rng.random_range(2.0..4.0)).round() as i64;
                let in_transit = (b * rng.random_range(5.0..10.0)).round() as i64;
                let eta = (rng.random_range(7.0..12.0) * DAY as f64) as i64;
                ins.execute(params![d, k, on_hand, in_transit, eta, 0, 0])?;
            }
        }
    }

    history(&tx, spec, &baselines)?;

    // Funding agreements: one per funding supplier covering all its SKUs; some invalid.
    let invalid = spec.invalid_agreement_suppliers();
    let mut invalid_ids = Vec::new();
    for s in 0..spec.funding_suppliers() {
        let id = DatasetSpec::agreement_id(s);
        let (status, from, to) = match invalid.iter().position(|&x| x == s) {
            Some(k) if k % 2 == 1 => (3, -200 * DAY, -DAY), // expired
            Some(_) => (2, -30 * DAY, 180 * DAY),           // pending signature
            None => (1, -30 * DAY, 180 * DAY),              // active
        };
        if status != 1 {
            invalid_ids.push(id.clone());
        }
        let per_unit = BAND_PRICES[s % 5] * 0.06;
        tx.execute(
            "INSERT INTO agreements(agreement_id, supplier_id, status, valid_from, valid_to, funding_per_unit,
             cap_amount) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![id, DatasetSpec::supplier_id(s), status, from, to, format!("{per_unit:.2}"), "5000000.00"],
        )?;
        for i in (s..spec.skus).step_by(spec.suppliers) {
            tx.execute(
                "INSERT INTO agreement_skus(agreement_id, sku) VALUES (?1, ?2)",
                params![id, DatasetSpec::sku(i)],
            )?;
        }
    }
    meta("invalid_agreements", invalid_ids.join(","))?;

    // Acknowledgment profiles: every channel target acknowledges after ack_ms, but POS in the
    // late region.
    for channel in 1..=4 {
        let regional = channel == 1 || channel == 4;
        let targets: Vec<String> = if regional {
            (0..spec.regions).map(DatasetSpec::region_id).collect()
        } else {
            vec![String::new()]
        };
        for region in targets {
            let late =
                channel == 1 && spec.late_ack_region.map(DatasetSpec::region_id).as_deref() == Some(&region);
            let delay = if late { spec.late_ack_ms } else { spec.ack_ms };
            tx.execute(
                "INSERT INTO ack_profiles(channel, region_id, delay_ms) VALUES (?1, ?2, ?3)",
                params![channel, region, delay as i64],
            )?;
        }
    }
    tx.commit()
}

/// Promotion history, drawn from the world: outcomes per SKU × region × week (what the uplift
/// model learns from) and, per SKU × promotion, the realised uplift over the store-weeks that
/// stayed in stock (what the per-SKU slope reads). Weeks are stored as offsets from the anchor.
fn history(tx: &rusqlite::Transaction<'_>, spec: &DatasetSpec, baselines: &[f32]) -> rusqlite::Result<()> {
    let world = World::new(spec.world.clone(), spec.seed, spec.categories, spec.regions);
    let mut stores_by_region = vec![Vec::new(); spec.regions];
    for s in 0..spec.stores {
        stores_by_region[spec.region_of_store(s)].push(s);
    }
    let category_of: Vec<usize> = (0..spec.skus).map(|k| k % spec.categories).collect();
    let mut outcome = tx.prepare(
        "INSERT INTO promotion_outcomes(promotion_id, sku_idx, region_idx, week_offset, mechanic,
         discount_depth, store_weeks, baseline_units, units_sold, stockout_store_weeks,
         in_stock_baseline_units, in_stock_units_sold, in_stock_units_squared, in_stock_baseline_squared)
         VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14)",
    )?;
    let mut past = tx.prepare(
        "INSERT INTO promo_history(sku, promotion_id, discount_depth, realised_uplift, duration_days)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let weeks = i64::from(spec.world.history.weeks);
    for p in world.past_promotions(spec.skus, spec.regions) {
        // (line, region, week) → [store-weeks, baseline, sold, stockouts, in-stock baseline,
        // in-stock sold, in-stock Σ sold², in-stock Σ baseline²]
        let mut cells: std::collections::BTreeMap<(usize, usize, u32), [f64; 8]> = Default::default();
        world.simulate_promotion(
            &p,
            &stores_by_region,
            &category_of,
            |s, k| f64::from(baselines[s * spec.skus + k]),
            |c| {
                let a = cells.entry((c.line, c.region, c.week)).or_default();
                a[0] += 1.0;
                a[1] += c.baseline_units;
                a[2] += c.sold;
                if c.stocked_out {
                    a[3] += 1.0;
                } else {
                    a[4] += c.baseline_units;
                    a[5] += c.sold;
                    a[6] += c.sold * c.sold;
                    a[7] += c.baseline_units * c.baseline_units;
                }
            },
        );
        let mut per_line = vec![(0f64, 0f64); p.lines.len()];
        for ((line, region, week), a) in &cells {
            let (sku, depth) = p.lines[*line];
            let week_offset = (i64::from(*week) - weeks) * 7 * DAY;
            outcome.execute(params![
                p.id,
                sku,
                region,
                week_offset,
                p.mechanic + 1,
                format!("{depth:.2}"),
                a[0] as i64,
                a[1],
                a[2] as i64,
                a[3] as i64,
                a[4],
                a[5] as i64,
                a[6],
                a[7],
            ])?;
            per_line[*line].0 += a[4];
            per_line[*line].1 += a[5];
        }
        for (line, (baseline, sold)) in per_line.into_iter().enumerate() {
            let (sku, depth) = p.lines[line];
            if baseline <= 0.0 {
                continue;
            }
            past.execute(params![
                DatasetSpec::sku(sku),
                p.id,
                format!("{depth:.2}"),
                format!("{:.3}", sold / baseline),
                p.weeks * 7,
            ])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic() {
        let dump = |spec: &DatasetSpec| {
            let mut c = Connection::open_in_memory().unwrap();
            generate(&mut c, spec).unwrap();
            let mut st = c
                .prepare("SELECT sum(on_hand), sum(in_transit), sum(baseline), count(*) FROM store_positions")
                .unwrap();
            st.query_row([], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, f64>(2)?, r.get::<_, i64>(3)?))
            })
            .unwrap()
        };
        let a = dump(&DatasetSpec::small());
        assert_eq!(a, dump(&DatasetSpec::small()));
        assert_eq!(a.3, 12 * 40);
        let other = DatasetSpec { seed: 8, ..DatasetSpec::small() };
        assert_ne!(a, dump(&other));
    }

    #[test]
    fn sizes_are_checked() {
        assert!(DatasetSpec { stores: 2, ..DatasetSpec::small() }.check().is_err());
        assert!(DatasetSpec { short_region: Some(9), ..DatasetSpec::small() }.check().is_err());
        assert!(DatasetSpec::canonical().check().is_ok());
        assert_eq!(DatasetSpec::canonical().invalid_agreement_suppliers().len(), 3);
    }
}
