//! Checks of what the integration services answer, made once, where each response is decoded:
//! columns of one record have equal length, ids are ones that were asked for, quantities that
//! cannot be negative are not, values parse. Past this boundary the engines index and count
//! without checking again.
//!
//! A response that breaks its contract is a [`BadResponse`] naming the service, the call, where
//! in the response, and the field. It fails the activity as a non-retryable business failure
//! ([`BadResponse::into_activity_error`]): asking again returns the same data, and an assessment
//! made of silently skipped or truncated rows would be wrong without saying so.

use crate::business;
use promo_contracts::{domain, money::FieldError, retail::v1 as wire};
use std::collections::{HashMap, HashSet};
use temporalio_sdk::activities::ActivityError;

/// A response that breaks its contract, e.g.
/// `inventory: StreamPositions batch 3 location S0042: column on_hand has 997 values, sku_index has 1000`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{service}: {at}: {defect}")]
pub struct BadResponse {
    /// The service, named as in the activities' other errors ("inventory", "demand", ...).
    pub service: &'static str,
    /// The call and where in its response, e.g. `StreamPositions batch 3 location S0042`.
    pub at: String,
    /// What is wrong, naming the field.
    pub defect: Defect,
}

/// What is wrong with a response, naming the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Defect {
    /// Two columns of one columnar record differ in length.
    #[error("column {column} has {len} values, {reference} has {expected}")]
    ColumnLength {
        /// The column that differs.
        column: &'static str,
        /// Its length.
        len: usize,
        /// The column it is measured against (the index column).
        reference: &'static str,
        /// That column's length.
        expected: usize,
    },
    /// An id that was not asked for, or that the rest of the data does not hold.
    #[error("{field} {id:?} {why}")]
    UnknownId {
        /// The field holding the id.
        field: String,
        /// The id.
        id: String,
        /// Why it is unknown, e.g. "is not a store that was asked for".
        why: &'static str,
    },
    /// A quantity below zero.
    #[error("{field} is {value}; it cannot be negative")]
    Negative {
        /// The field, with the record's key where it helps, e.g. `on_hand[4] (SKU-000007)`.
        field: String,
        /// The value.
        value: String,
    },
    /// Anything else the contract rules out.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl From<FieldError> for Defect {
    fn from(e: FieldError) -> Self {
        Defect::Invalid { field: e.field, reason: e.reason }
    }
}

impl BadResponse {
    /// A defect of `service`'s answer at `at`.
    pub fn new(service: &'static str, at: impl Into<String>, defect: impl Into<Defect>) -> Self {
        Self { service, at: at.into(), defect: defect.into() }
    }

    /// The non-retryable activity failure this is. Convert explicitly: `?` on a `BadResponse`
    /// would go through the SDK's blanket `From` impl and make a *retryable* failure.
    pub fn into_activity_error(self) -> ActivityError {
        business(self.to_string())
    }
}

fn unknown(field: impl Into<String>, id: &str, why: &'static str) -> Defect {
    Defect::UnknownId { field: field.into(), id: id.to_owned(), why }
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Defect {
    Defect::Invalid { field: field.into(), reason: reason.into() }
}

/// Checks a stream of columnar batches (inventory positions, baseline demand) message by
/// message: the SKU dictionary arrives once, in the first message, and names only SKUs that
/// were asked for; each record is a store that was asked for, sent once, in its region, with
/// columns of equal length, SKU indexes inside the dictionary and each SKU once; quantities are
/// not negative. Records that pass have their SKU indexes translated to line indexes
/// ([`ColumnarStream::line`]).
#[derive(Debug)]
pub struct ColumnarStream<'a> {
    service: &'static str,
    method: &'static str,
    /// SKUs asked for, in line order.
    skus: &'a [String],
    /// SKU asked for → line index (its position in the request).
    line_of: HashMap<&'a str, u32>,
    /// Stores asked for → region index.
    stores: &'a HashMap<String, u16>,
    /// Region ids by index.
    regions: &'a [String],
    /// Dictionary position → line index, from the first message on.
    lines: Option<Vec<u32>>,
    /// Messages read so far (the current batch, 1-based).
    batch: usize,
    /// Batch each record's store arrived in.
    seen: HashMap<String, usize>,
    /// Per dictionary position, the last record that held it: finds a SKU listed twice in one
    /// record without a set per record.
    last_record: Vec<usize>,
    /// Records read so far.
    records: usize,
}

/// The widest quantity the engines count in (cells hold `i32`).
const MAX_UNITS: i64 = i32::MAX as i64;

impl<'a> ColumnarStream<'a> {
    /// A check of `service`'s `method` stream, asked for `skus` (in line order) at `stores`
    /// (store → region index into `regions`).
    pub fn new(
        service: &'static str,
        method: &'static str,
        skus: &'a [String],
        stores: &'a HashMap<String, u16>,
        regions: &'a [String],
    ) -> Self {
        Self {
            service,
            method,
            skus,
            line_of: skus.iter().enumerate().map(|(k, s)| (s.as_str(), k as u32)).collect(),
            stores,
            regions,
            lines: None,
            batch: 0,
            seen: HashMap::new(),
            last_record: Vec::new(),
            records: 0,
        }
    }

    fn at(&self) -> String {
        format!("{} batch {}", self.method, self.batch)
    }

    fn bad(&self, at: String, defect: Defect) -> BadResponse {
        BadResponse::new(self.service, at, defect)
    }

    /// Starts the next message, checking its SKU dictionary.
    pub fn next_batch(&mut self, dictionary: &[String]) -> Result<(), BadResponse> {
        self.batch += 1;
        if self.batch > 1 {
            if !dictionary.is_empty() {
                return Err(self.bad(
                    self.at(),
                    invalid("sku_dictionary", "sent again; the contract sends it once, in the first message"),
                ));
            }
            return Ok(());
        }
        let mut lines = Vec::with_capacity(dictionary.len());
        let mut taken = HashSet::new();
        for (i, sku) in dictionary.iter().enumerate() {
            let Some(&k) = self.line_of.get(sku.as_str()) else {
                return Err(self.bad(
                    self.at(),
                    unknown(format!("sku_dictionary[{i}]"), sku, "is not a SKU that was asked for"),
                ));
            };
            if !taken.insert(k) {
                return Err(self.bad(
                    self.at(),
                    invalid(format!("sku_dictionary[{i}]"), format!("{sku} is listed twice")),
                ));
            }
            lines.push(k);
        }
        self.last_record = vec![usize::MAX; lines.len()];
        self.lines = Some(lines);
        Ok(())
    }

    /// Checks the store of a record (`field` holds its id; `noun` names records in messages), its
    /// region and that it is new; returns its region index.
    fn store(&mut self, field: &str, noun: &str, id: &str, region_id: &str) -> Result<u16, BadResponse> {
        let Some(&r) = self.stores.get(id) else {
            return Err(self.bad(self.at(), unknown(field, id, "is not a store that was asked for")));
        };
        let (method, batch) = (self.method, self.batch);
        let at = || format!("{method} batch {batch} {noun} {id}");
        let expected = &self.regions[usize::from(r)];
        if region_id != expected {
            let reason = format!("{region_id:?}, but the location master puts {id} in {expected}");
            return Err(self.bad(at(), invalid("region_id", reason)));
        }
        if let Some(first) = self.seen.insert(id.to_owned(), self.batch) {
            return Err(self.bad(at(), invalid(field, format!("{id} was already sent in batch {first}"))));
        }
        self.records += 1;
        Ok(r)
    }

    /// Checks the index column of the current record: inside the dictionary, each SKU once.
    fn sku_indexes(&mut self, at: &dyn Fn() -> String, sku_index: &[u32]) -> Result<(), BadResponse> {
        let lines = self.lines.as_deref().unwrap_or_default();
        for (i, &x) in sku_index.iter().enumerate() {
            let Some(slot) = self.last_record.get_mut(x as usize) else {
                let reason = format!("{x} is outside the sku_dictionary of {} SKUs", lines.len());
                return Err(BadResponse::new(self.service, at(), invalid(format!("sku_index[{i}]"), reason)));
            };
            if std::mem::replace(slot, self.records) == self.records {
                return Err(BadResponse::new(
                    self.service,
                    at(),
                    invalid(format!("sku_index[{i}]"), format!("dictionary entry {x} is listed twice")),
                ));
            }
        }
        Ok(())
    }

    fn columns(
        &self,
        at: &dyn Fn() -> String,
        reference: (&'static str, usize),
        columns: &[(&'static str, usize)],
    ) -> Result<(), BadResponse> {
        for &(column, len) in columns {
            if len != reference.1 {
                let defect =
                    Defect::ColumnLength { column, len, reference: reference.0, expected: reference.1 };
                return Err(BadResponse::new(self.service, at(), defect));
            }
        }
        Ok(())
    }

    /// The SKU of dictionary entry `x` of a record whose indexes passed their check.
    fn sku(&self, x: u32) -> &str {
        &self.skus[self.line(x)]
    }

    /// Checks one location of a positions batch; returns its region index.
    pub fn positions(&mut self, loc: &wire::LocationPositions) -> Result<u16, BadResponse> {
        let r = self.store("location_id", "location", &loc.location_id, &loc.region_id)?;
        let (method, batch, id) = (self.method, self.batch, loc.location_id.as_str());
        let at = move || format!("{method} batch {batch} location {id}");
        self.columns(
            &at,
            ("sku_index", loc.sku_index.len()),
            &[
                ("on_hand", loc.on_hand.len()),
                ("in_transit", loc.in_transit.len()),
                ("in_transit_eta", loc.in_transit_eta.len()),
                ("supplier_confirmed", loc.supplier_confirmed.len()),
                ("supplier_confirmed_eta", loc.supplier_confirmed_eta.len()),
            ],
        )?;
        self.sku_indexes(&at, &loc.sku_index)?;
        for (column, values) in [
            ("on_hand", &loc.on_hand),
            ("in_transit", &loc.in_transit),
            ("supplier_confirmed", &loc.supplier_confirmed),
        ] {
            if let Some(i) = values.iter().position(|v| !(0..=MAX_UNITS).contains(v)) {
                let field = format!("{column}[{i}] ({})", self.sku(loc.sku_index[i]));
                let v = values[i];
                let defect = if v < 0 {
                    Defect::Negative { field, value: v.to_string() }
                } else {
                    invalid(field, format!("{v} units is more than the {MAX_UNITS} an assessment counts"))
                };
                return Err(BadResponse::new(self.service, at(), defect));
            }
        }
        Ok(r)
    }

    /// Checks one store of a baseline demand batch; returns its region index.
    pub fn demand(&mut self, st: &wire::StoreDemand) -> Result<u16, BadResponse> {
        let r = self.store("store_id", "store", &st.store_id, &st.region_id)?;
        let (method, batch, id) = (self.method, self.batch, st.store_id.as_str());
        let at = move || format!("{method} batch {batch} store {id}");
        self.columns(&at, ("sku_index", st.sku_index.len()), &[("daily_units", st.daily_units.len())])?;
        self.sku_indexes(&at, &st.sku_index)?;
        if let Some(i) = st.daily_units.iter().position(|d| !(d.is_finite() && *d >= 0.0)) {
            let field = format!("daily_units[{i}] ({})", self.sku(st.sku_index[i]));
            let d = st.daily_units[i];
            let defect = if d < 0.0 {
                Defect::Negative { field, value: d.to_string() }
            } else {
                invalid(field, format!("{d} is not a number of units"))
            };
            return Err(BadResponse::new(self.service, at(), defect));
        }
        Ok(r)
    }

    /// The line index of dictionary entry `x` of a record that passed its check.
    pub fn line(&self, x: u32) -> usize {
        self.lines.as_deref().map_or(0, |l| l[x as usize] as usize)
    }
}

/// The products of a `GetProducts` call for `asked` (unique SKUs): each parses, each was asked
/// for, and every SKU asked for is there.
pub fn products(
    asked: &[String],
    got: &[wire::Product],
) -> Result<HashMap<String, domain::Product>, BadResponse> {
    const SERVICE: &str = "product master";
    let asked_set: HashSet<&str> = asked.iter().map(String::as_str).collect();
    let mut out = HashMap::with_capacity(got.len());
    for (i, p) in got.iter().enumerate() {
        let at = || format!("GetProducts products[{i}]");
        if !asked_set.contains(p.sku.as_str()) {
            return Err(BadResponse::new(
                SERVICE,
                at(),
                unknown("sku", &p.sku, "is not a SKU that was asked for"),
            ));
        }
        let d = domain::Product::try_from(p).map_err(|e| BadResponse::new(SERVICE, at(), e))?;
        out.insert(d.sku.clone(), d);
    }
    let missing: Vec<&str> = asked.iter().map(String::as_str).filter(|s| !out.contains_key(*s)).collect();
    if !missing.is_empty() {
        let reason = format!(
            "{} of the {} SKUs asked for are missing, e.g. {}",
            missing.len(),
            asked.len(),
            missing.iter().take(5).copied().collect::<Vec<_>>().join(", ")
        );
        return Err(BadResponse::new(SERVICE, "GetProducts", invalid("products", reason)));
    }
    Ok(out)
}

/// The comparable products of `sku` from `ListComparableProducts`: each parses.
pub fn comparable_products(sku: &str, got: &[wire::Product]) -> Result<Vec<domain::Product>, BadResponse> {
    got.iter()
        .enumerate()
        .map(|(i, p)| {
            domain::Product::try_from(p).map_err(|e| {
                BadResponse::new("product master", format!("ListComparableProducts {sku} products[{i}]"), e)
            })
        })
        .collect()
}

/// The agreements of a `GetAgreements` call for `asked`: each parses and was asked for, and
/// every id asked for is either returned or listed unknown.
pub fn agreements(
    asked: &[String],
    got: &wire::GetAgreementsResponse,
) -> Result<HashMap<String, domain::FundingAgreement>, BadResponse> {
    const SERVICE: &str = "funding";
    let asked_set: HashSet<&str> = asked.iter().map(String::as_str).collect();
    let mut out = HashMap::with_capacity(got.agreements.len());
    for (i, a) in got.agreements.iter().enumerate() {
        let at = || format!("GetAgreements agreements[{i}]");
        if !asked_set.contains(a.agreement_id.as_str()) {
            let defect = unknown("agreement_id", &a.agreement_id, "is not an agreement that was asked for");
            return Err(BadResponse::new(SERVICE, at(), defect));
        }
        let d = domain::FundingAgreement::try_from(a).map_err(|e| BadResponse::new(SERVICE, at(), e))?;
        out.insert(d.agreement_id.clone(), d);
    }
    let listed: HashSet<&str> = got.unknown_ids.iter().map(String::as_str).collect();
    if let Some(id) = asked.iter().find(|id| !out.contains_key(*id) && !listed.contains(id.as_str())) {
        let reason = format!("{id} was asked for but is neither returned nor listed unknown");
        return Err(BadResponse::new(SERVICE, "GetAgreements", invalid("unknown_ids", reason)));
    }
    Ok(out)
}

/// The past promotions of a `GetPromotionHistory` call for `asked`: each parses, is about a
/// SKU asked for, and has a depth and an uplift that are not negative.
pub fn history(
    asked: &[String],
    got: &[wire::PastPromotion],
) -> Result<Vec<domain::PastPromotion>, BadResponse> {
    const SERVICE: &str = "demand history";
    let asked_set: HashSet<&str> = asked.iter().map(String::as_str).collect();
    got.iter()
        .enumerate()
        .map(|(i, h)| {
            let at = || format!("GetPromotionHistory history[{i}]");
            if !asked_set.contains(h.sku.as_str()) {
                return Err(BadResponse::new(
                    SERVICE,
                    at(),
                    unknown("sku", &h.sku, "is not a SKU that was asked for"),
                ));
            }
            let d = domain::PastPromotion::try_from(h).map_err(|e| BadResponse::new(SERVICE, at(), e))?;
            for (field, v) in [("discount_depth", d.discount_depth), ("realised_uplift", d.realised_uplift)] {
                if v.is_sign_negative() && !v.is_zero() {
                    let defect =
                        Defect::Negative { field: format!("{field} ({})", h.sku), value: v.to_string() };
                    return Err(BadResponse::new(SERVICE, at(), defect));
                }
            }
            Ok(d)
        })
        .collect()
}

/// The location master from `ListLocations`: every store is in a listed region, and every
/// region is served by a listed DC.
pub fn locations(got: &wire::ListLocationsResponse) -> Result<(), BadResponse> {
    const SERVICE: &str = "locations";
    let regions: HashSet<&str> = got.regions.iter().map(|r| r.region_id.as_str()).collect();
    let dcs: HashSet<&str> = got.dcs.iter().map(|d| d.dc_id.as_str()).collect();
    if let Some((i, s)) = got.stores.iter().enumerate().find(|(_, s)| !regions.contains(s.region_id.as_str()))
    {
        let defect = unknown("region_id", &s.region_id, "is not a region of the response");
        return Err(BadResponse::new(SERVICE, format!("ListLocations stores[{i}] ({})", s.store_id), defect));
    }
    if let Some((i, r)) = got.regions.iter().enumerate().find(|(_, r)| !dcs.contains(r.dc_id.as_str())) {
        let defect = unknown("dc_id", &r.dc_id, "is not a DC of the response");
        return Err(BadResponse::new(
            SERVICE,
            format!("ListLocations regions[{i}] ({})", r.region_id),
            defect,
        ));
    }
    Ok(())
}

/// The rows of a `GetSalesActuals` answer to `req`: each is about a region and a SKU asked
/// for, with quantities that are not negative.
pub fn sales_actuals(
    req: &wire::GetSalesActualsRequest,
    got: &[wire::SalesActual],
) -> Result<(), BadResponse> {
    const SERVICE: &str = "sales";
    let regions: HashSet<&str> = req.scopes.iter().map(|s| s.region_id.as_str()).collect();
    let skus: HashSet<&str> = req.lines.iter().map(|l| l.sku.as_str()).collect();
    for (i, a) in got.iter().enumerate() {
        let at = || format!("GetSalesActuals actuals[{i}] ({} in {})", a.sku, a.region_id);
        if !regions.contains(a.region_id.as_str()) {
            let defect = unknown("region_id", &a.region_id, "is not a region that was asked for");
            return Err(BadResponse::new(SERVICE, at(), defect));
        }
        if !skus.contains(a.sku.as_str()) {
            return Err(BadResponse::new(
                SERVICE,
                at(),
                unknown("sku", &a.sku, "is not a SKU that was asked for"),
            ));
        }
        for (field, v) in [
            ("units_sold", a.units_sold),
            ("ending_units", a.ending_units),
            ("available_units", a.available_units),
        ] {
            if v < 0 {
                return Err(BadResponse::new(
                    SERVICE,
                    at(),
                    Defect::Negative { field: field.into(), value: v.to_string() },
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stores() -> HashMap<String, u16> {
        [("S1".to_owned(), 0u16), ("S2".to_owned(), 1u16)].into()
    }

    fn loc(id: &str, region: &str, n: usize) -> wire::LocationPositions {
        wire::LocationPositions {
            location_id: id.into(),
            region_id: region.into(),
            sku_index: (0..n as u32).collect(),
            on_hand: vec![5; n],
            in_transit: vec![0; n],
            in_transit_eta: vec![0; n],
            supplier_confirmed: vec![0; n],
            supplier_confirmed_eta: vec![0; n],
            ..Default::default()
        }
    }

    #[test]
    fn a_well_formed_stream_maps_the_dictionary_onto_lines() {
        let (skus, stores, regions) =
            (["A".to_owned(), "B".to_owned()], stores(), ["R1".to_owned(), "R2".to_owned()]);
        let mut c = ColumnarStream::new("inventory", "StreamPositions", &skus, &stores, &regions);
        c.next_batch(&["B".into(), "A".into()]).unwrap();
        assert_eq!(c.positions(&loc("S1", "R1", 2)).unwrap(), 0);
        c.next_batch(&[]).unwrap();
        assert_eq!(c.positions(&loc("S2", "R2", 1)).unwrap(), 1);
        assert_eq!((c.line(0), c.line(1)), (1, 0), "dictionary order, not request order");
    }

    #[test]
    fn each_defect_names_the_service_the_batch_and_the_field() {
        let (skus, stores, regions) =
            (["A".to_owned(), "B".to_owned()], stores(), ["R1".to_owned(), "R2".to_owned()]);
        let check = |edit: &dyn Fn(&mut wire::LocationPositions)| {
            let mut c = ColumnarStream::new("inventory", "StreamPositions", &skus, &stores, &regions);
            c.next_batch(&skus).unwrap();
            c.positions(&loc("S2", "R2", 2)).unwrap();
            c.next_batch(&[]).unwrap();
            let mut l = loc("S1", "R1", 2);
            edit(&mut l);
            c.positions(&l).unwrap_err().to_string()
        };
        assert_eq!(
            check(&|l| {
                l.on_hand.pop();
            }),
            "inventory: StreamPositions batch 2 location S1: column on_hand has 1 values, sku_index has 2"
        );
        assert_eq!(
            check(&|l| l.location_id = "S9".into()),
            "inventory: StreamPositions batch 2: location_id \"S9\" is not a store that was asked for"
        );
        assert_eq!(
            check(&|l| l.on_hand[1] = -3),
            "inventory: StreamPositions batch 2 location S1: on_hand[1] (B) is -3; it cannot be negative"
        );
        assert_eq!(
            check(&|l| l.sku_index[1] = 2),
            "inventory: StreamPositions batch 2 location S1: sku_index[1]: 2 is outside the sku_dictionary of 2 SKUs"
        );
        assert_eq!(
            check(&|l| l.sku_index[1] = 0),
            "inventory: StreamPositions batch 2 location S1: sku_index[1]: dictionary entry 0 is listed twice"
        );
        assert_eq!(
            check(&|l| {
                l.location_id = "S2".into();
                l.region_id = "R2".into();
            }),
            "inventory: StreamPositions batch 2 location S2: location_id: S2 was already sent in batch 1"
        );
        assert!(
            check(&|l| l.region_id = "R2".into())
                .contains("region_id: \"R2\", but the location master puts S1 in R1")
        );
        assert!(
            check(&|l| l.in_transit[0] = i64::MAX)
                .contains("in_transit[0] (A): 9223372036854775807 units is more")
        );
    }

    #[test]
    fn the_dictionary_is_checked() {
        let (skus, stores, regions) = (["A".to_owned()], stores(), ["R1".to_owned(), "R2".to_owned()]);
        let mut c = ColumnarStream::new("demand", "StreamBaselineDemand", &skus, &stores, &regions);
        let e = c.next_batch(&["A".into(), "Z".into()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "demand: StreamBaselineDemand batch 1: sku_dictionary[1] \"Z\" is not a SKU that was asked for"
        );
        let mut c = ColumnarStream::new("demand", "StreamBaselineDemand", &skus, &stores, &regions);
        c.next_batch(&["A".into()]).unwrap();
        assert!(c.next_batch(&["A".into()]).unwrap_err().to_string().contains("sku_dictionary: sent again"));
    }

    #[test]
    fn demand_rows_are_checked() {
        let (skus, stores, regions) = (["A".to_owned()], stores(), ["R1".to_owned(), "R2".to_owned()]);
        let mut c = ColumnarStream::new("demand", "StreamBaselineDemand", &skus, &stores, &regions);
        c.next_batch(&skus).unwrap();
        let st = |units: Vec<f32>| wire::StoreDemand {
            store_id: "S1".into(),
            region_id: "R1".into(),
            sku_index: vec![0],
            daily_units: units,
        };
        assert_eq!(
            c.demand(&st(vec![])).unwrap_err().to_string(),
            "demand: StreamBaselineDemand batch 1 store S1: column daily_units has 0 values, sku_index has 1"
        );
        let mut c = ColumnarStream::new("demand", "StreamBaselineDemand", &skus, &stores, &regions);
        c.next_batch(&skus).unwrap();
        assert_eq!(
            c.demand(&st(vec![-1.5])).unwrap_err().to_string(),
            "demand: StreamBaselineDemand batch 1 store S1: daily_units[0] (A) is -1.5; it cannot be negative"
        );
    }

    #[test]
    fn master_data_answers_are_checked() {
        let p = |sku: &str| wire::Product {
            sku: sku.into(),
            cost: "1".into(),
            regular_price: "2".into(),
            ..Default::default()
        };
        let asked = ["A".to_owned(), "B".to_owned()];
        assert_eq!(products(&asked, &[p("A"), p("B")]).unwrap().len(), 2);
        assert_eq!(
            products(&asked, &[p("A"), p("X")]).unwrap_err().to_string(),
            "product master: GetProducts products[1]: sku \"X\" is not a SKU that was asked for"
        );
        assert_eq!(
            products(&asked, &[p("A")]).unwrap_err().to_string(),
            "product master: GetProducts: products: 1 of the 2 SKUs asked for are missing, e.g. B"
        );
        let e = products(&asked, &[p("A"), wire::Product { cost: "-1".into(), ..p("B") }]).unwrap_err();
        assert!(
            e.to_string().starts_with("product master: GetProducts products[1]: product B cost: "),
            "{e}"
        );

        let got = wire::GetAgreementsResponse { agreements: vec![], unknown_ids: vec!["F1".into()] };
        assert!(agreements(&["F1".into()], &got).unwrap().is_empty());
        assert_eq!(
            agreements(&["F1".into(), "F2".into()], &got).unwrap_err().to_string(),
            "funding: GetAgreements: unknown_ids: F2 was asked for but is neither returned nor listed unknown"
        );

        let req = wire::GetSalesActualsRequest {
            lines: vec![wire::SalesLine { sku: "A".into(), ..Default::default() }],
            scopes: vec![wire::SalesScope { region_id: "R1".into(), window: None }],
            ..Default::default()
        };
        let row = wire::SalesActual { region_id: "R1".into(), sku: "A".into(), ..Default::default() };
        assert!(sales_actuals(&req, std::slice::from_ref(&row)).is_ok());
        assert_eq!(
            sales_actuals(&req, &[wire::SalesActual { ending_units: -2, ..row.clone() }])
                .unwrap_err()
                .to_string(),
            "sales: GetSalesActuals actuals[0] (A in R1): ending_units is -2; it cannot be negative"
        );
        assert_eq!(
            sales_actuals(&req, &[wire::SalesActual { sku: "B".into(), ..row }]).unwrap_err().to_string(),
            "sales: GetSalesActuals actuals[0] (B in R1): sku \"B\" is not a SKU that was asked for"
        );
    }

    #[test]
    fn a_bad_response_fails_the_activity_for_good() {
        let e =
            BadResponse::new("inventory", "StreamPositions batch 1", invalid("x", "y")).into_activity_error();
        let ActivityError::Application(f) = e else { panic!("not an application failure") };
        assert!(f.is_non_retryable());
        assert_eq!(f.source_error().to_string(), "inventory: StreamPositions batch 1: x: y");
    }
}
