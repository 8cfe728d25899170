//! What an assessment and a report say, computed from a loaded [`Context`]: the margin and
//! compliance summary, the funding summary, each region's inventory alignment with its
//! remediation options, and the post-event report from sales actuals. Pure over the context:
//! the loading is [`crate::context`]'s.

use crate::{
    context::{Context, Line},
    dec,
    engines::{
        alignment::{self, Alignment},
        anomaly, funding,
        stockout::RegionRisk,
    },
    ts,
};
use promo_contracts::{
    money::{format_money, format_ratio},
    promo::v1 as pb,
    retail::v1::SalesActual,
};
use promo_workflows::api::InventoryAssessment;
use rust_decimal::{
    Decimal,
    prelude::{FromPrimitive, ToPrimitive},
};
use std::collections::{BTreeSet, HashMap};

/// Lines whose fill in region `r` is under `floor`, with their shortfall in units, worst first.
pub(crate) fn short_lines(a: &Alignment, r: usize, floor: f64) -> Vec<(usize, f32)> {
    let mut short: Vec<(usize, f32)> = (0..a.demand[r].len())
        .filter(|&k| a.demand[r][k] > 0.0 && (1.0 - a.short[r][k] / a.demand[r][k]) < floor as f32)
        .map(|k| (k, a.short[r][k]))
        .collect();
    short.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
    short
}

impl Context {
    /// The option of dropping `lines` in region `r` (a `drop-short` kind), with its effect.
    fn drop_option(
        &self,
        a: &Alignment,
        r: usize,
        option_id: String,
        lines: &[usize],
        description: String,
    ) -> pb::RemediationOption {
        let (lost_revenue, lost_margin, resulting) = self.drop_effect(a, r, lines);
        pb::RemediationOption {
            option_id,
            region_id: self.regions[r].clone(),
            kind: "drop-short".into(),
            description,
            revenue_effect: format_money(dec(-lost_revenue)),
            margin_effect: format_money(dec(-lost_margin)),
            resulting_fill_rate: format_ratio(dec(resulting)),
            delay_until: None,
            skus: lines.iter().map(|&k| self.lines[k].sku.clone()).collect(),
            substitutes: vec![],
        }
    }

    /// What dropping `lines` in region `r` costs: the revenue and margin of their covered
    /// demand, and the region's fill rate without them.
    pub(crate) fn drop_effect(&self, a: &Alignment, r: usize, lines: &[usize]) -> (f64, f64, f64) {
        let (mut lost_revenue, mut lost_margin, mut dropped_demand, mut dropped_covered) =
            (0f64, 0f64, 0f64, 0f64);
        for &k in lines {
            let covered = f64::from(a.demand[r][k] - a.short[r][k]);
            lost_revenue += covered * self.lines[k].price_f64;
            lost_margin += covered * self.lines[k].unit_margin_f64;
            dropped_demand += f64::from(a.demand[r][k]);
            dropped_covered += covered;
        }
        let t = &a.regions[r];
        let remaining = t.demand - dropped_demand;
        let fill = if remaining > 0.0 { (t.covered - dropped_covered) / remaining } else { 1.0 };
        (lost_revenue, lost_margin, fill)
    }

    /// Region rows and remediation options from an alignment pass (the last step of
    /// `promo.assess_inventory`).
    pub fn inventory_summary(
        &self,
        cells: &alignment::Cells,
        scenario: &alignment::Scenario,
        a: &Alignment,
        floor: f64,
        risks: Option<&[RegionRisk]>,
        max_stockout_share: f64,
    ) -> InventoryAssessment {
        let mut regions = Vec::new();
        let mut options = Vec::new();
        for (r, region_id) in self.regions.iter().enumerate() {
            let t = &a.regions[r];
            let fill = t.fill_rate();
            let risk = risks.and_then(|x| x.get(r));
            // The gate is the policy's ceiling on the model's number, not the model's call.
            let too_risky = risk.is_some_and(|x| max_stockout_share > 0.0 && x.share() > max_stockout_share);
            let fills = fill >= floor;
            let passes = fills && !too_risky;
            let short = short_lines(a, r, floor);
            // Uncovered demand; for a region that fills but fails the stockout ceiling, its
            // forecast revenue weighted by each cell's chance of running out.
            let revenue_at_risk: f64 = match risk {
                Some(x) if fills && too_risky => {
                    x.by_line.iter().zip(&self.lines).map(|(b, l)| b.2 * l.price_f64).sum()
                }
                _ => (0..self.lines.len()).map(|k| f64::from(a.short[r][k]) * self.lines[k].price_f64).sum(),
            };
            let passes_from = if fills {
                None
            } else {
                alignment::earliest_passing_launch(cells, scenario, r as u16, floor, self.ends_at)
            };
            regions.push(pb::RegionAlignment {
                region_id: region_id.clone(),
                stores: self.stores_per_region[r],
                demand_units: t.demand.round() as i64,
                covered_units: t.covered.round() as i64,
                fill_rate: format_ratio(dec(fill)),
                coverage: format_ratio(dec(t.coverage())),
                short_skus: short.iter().take(50).map(|(k, _)| self.lines[*k].sku.clone()).collect(),
                short_sku_count: short.len() as u32,
                passes,
                passes_from: passes_from.map(|(at, _)| at.to_string()).unwrap_or_default(),
                revenue_at_risk: format_money(dec(revenue_at_risk)),
                short_units: short.iter().take(50).map(|(_, u)| u.ceil() as i64).collect(),
                stockout_probability: risk.map_or_else(String::new, |x| format_ratio(dec(x.share()))),
                expected_stockouts: risk.map_or_else(String::new, |x| format!("{:.1}", x.expected_stockouts)),
                riskiest_cells: risk
                    .map(|x| {
                        x.riskiest
                            .iter()
                            .map(|c| pb::StockoutRisk {
                                store_id: cells.store_of(c.cell).unwrap_or_default().to_owned(),
                                sku: self.lines[cells.sku[c.cell] as usize].sku.clone(),
                                probability: format_ratio(dec(c.probability)),
                                demand_units: format!("{:.1}", c.demand),
                                available_units: c.available.round() as i64,
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            });
            if passes {
                continue;
            }
            if let Some(x) = risk.filter(|_| too_risky && fills) {
                // Short of no stock on average but too likely to run out: drop the lines whose
                // cells are the likeliest to, until the region is under the ceiling.
                let (lines, resulting) = x.lines_to_drop(max_stockout_share);
                let description = format!(
                    "drop the {} likeliest to run out in {region_id} (expected stockouts {:.1}% → {:.1}% of cells)",
                    promo_workflows::decisions::plural(lines.len(), "SKU"),
                    100.0 * x.share(),
                    100.0 * resulting
                );
                options.push(self.drop_option(a, r, format!("{region_id}:drop-risky"), &lines, description));
                continue;
            }
            // Option 1: drop the short SKUs in this region.
            let short_lines: Vec<usize> = short.iter().map(|(k, _)| *k).collect();
            let description = format!(
                "drop {} in {region_id} (narrower assortment)",
                promo_workflows::decisions::plural(short.len(), "short SKU")
            );
            options.push(self.drop_option(
                a,
                r,
                format!("{region_id}:drop-short"),
                &short_lines,
                description,
            ));
            // Option 2: delay the region until inbound stock makes it pass.
            if let Some((at, f)) = passes_from {
                let launch = scenario.launch[r];
                let share = (at - launch) as f64 / (self.ends_at - launch).max(1) as f64;
                let region_revenue: f64 = (0..self.lines.len())
                    .map(|k| f64::from(a.demand[r][k] - a.short[r][k]) * self.lines[k].price_f64)
                    .sum();
                let region_margin: f64 = (0..self.lines.len())
                    .map(|k| f64::from(a.demand[r][k] - a.short[r][k]) * self.lines[k].unit_margin_f64)
                    .sum();
                options.push(pb::RemediationOption {
                    option_id: format!("{region_id}:delay"),
                    region_id: region_id.clone(),
                    kind: "delay".into(),
                    description: format!(
                        "delay {region_id} by {}, until inbound stock arrives",
                        promo_workflows::decisions::plural(
                            ((at - launch) as f64 / 86_400.0).round() as usize,
                            "day"
                        )
                    ),
                    revenue_effect: format_money(dec(-region_revenue * share)),
                    margin_effect: format_money(dec(-region_margin * share)),
                    resulting_fill_rate: format_ratio(dec(f)),
                    delay_until: ts(at),
                    skus: vec![],
                    substitutes: vec![],
                });
            }
        }
        InventoryAssessment { regions, options, positions_read: cells.len() as u64 }
    }

    /// Forecast units per line, from summed daily demand per region.
    fn forecast_units(&self, demand: &[Vec<f64>]) -> Vec<f64> {
        let days = self.days();
        (0..self.lines.len())
            .map(|k| {
                (0..self.regions.len())
                    .filter(|&r| !self.excluded[r][k])
                    .map(|r| demand[r][k] * self.lines[k].uplift_by_region[r] * f64::from(days[r]))
                    .sum()
            })
            .collect()
    }

    /// Margin and compliance summary; lines `anomaly_mads` scaled MADs or more below their
    /// peers' margin rate are anomalies (0 disables).
    pub fn margin(&self, demand: &[Vec<f64>], floor: Decimal, anomaly_mads: f64) -> pb::MarginSummary {
        let units = self.forecast_units(demand);
        let (mut revenue, mut margin, mut exposure, mut total_units) =
            (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO, 0f64);
        let mut exceptions = Vec::new();
        let mut exception_revenue = Decimal::ZERO;
        for (l, u) in self.lines.iter().zip(&units) {
            let du = Decimal::from_f64(u.round()).unwrap_or_default();
            total_units += u.round();
            revenue += du * l.promo_price;
            margin += du * l.unit_margin;
            exposure += du * (l.regular - l.promo_price);
            let rate =
                if l.promo_price > Decimal::ZERO { l.unit_margin / l.promo_price } else { Decimal::ZERO };
            if rate < floor {
                exceptions.push((rate, l));
                exception_revenue += du * l.promo_price;
            }
        }
        exceptions.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.sku.cmp(&b.1.sku)));
        let rates: Vec<anomaly::LineRate> = self
            .lines
            .iter()
            .map(|l| anomaly::LineRate {
                sku: l.sku.clone(),
                category: l.category.clone(),
                price_band: l.price_band,
                depth: if l.regular > Decimal::ZERO {
                    ((l.regular - l.promo_price) / l.regular).to_f64().unwrap_or(0.0)
                } else {
                    0.0
                },
                funded: l.funding.is_some(),
                rate: if l.price_f64 > 0.0 { l.unit_margin_f64 / l.price_f64 } else { 0.0 },
            })
            .collect();
        let flagged = anomaly::anomalies(&rates, anomaly_mads);
        let anomaly_revenue: Decimal = flagged
            .iter()
            .map(|a| {
                Decimal::from_f64(units[a.line].round()).unwrap_or_default() * self.lines[a.line].promo_price
            })
            .sum();
        let ratio_f64 = |x: f64| format_ratio(Decimal::from_f64(x).unwrap_or_default());
        pb::MarginSummary {
            anomaly_count: flagged.len() as u32,
            anomaly_revenue: format_money(anomaly_revenue),
            anomalies: flagged
                .iter()
                .take(100)
                .map(|a| pb::MarginAnomaly {
                    sku: rates[a.line].sku.clone(),
                    margin_rate: ratio_f64(rates[a.line].rate),
                    peer_median: ratio_f64(a.peer_median),
                    mads: format!("{:.1}", a.mads),
                    peers: a.peers as u32,
                    peer_group: a.group.clone(),
                    explanation: anomaly::explain(&rates[a.line], a),
                })
                .collect(),
            forecast_units: total_units as i64,
            forecast_revenue: format_money(revenue),
            forecast_margin: format_money(margin),
            margin_rate: format_ratio(if revenue > Decimal::ZERO { margin / revenue } else { Decimal::ZERO }),
            discount_exposure: format_money(exposure),
            exception_count: exceptions.len() as u32,
            exception_revenue: format_money(exception_revenue),
            exceptions: exceptions
                .iter()
                .take(100)
                .map(|(rate, l)| pb::LineMargin {
                    sku: l.sku.clone(),
                    promo_price: format_money(l.promo_price),
                    cost: format_money(l.cost),
                    funding_per_unit: format_money(l.funding.as_ref().map_or(Decimal::ZERO, |f| f.1)),
                    margin_rate: format_ratio(*rate),
                    uplift: format!("{:.3}", l.uplift),
                    uplift_source: l.uplift_source.to_owned(),
                    uplift_explanation: l.uplift_explanation.clone(),
                })
                .collect(),
            lines: self.lines.len() as u32,
            forecast_model: self.forecast_model.clone().map(|mut m| {
                for l in &self.lines {
                    *m.lines_by_source.entry(l.uplift_source.to_owned()).or_default() += 1;
                }
                m.explanations = self
                    .lines
                    .iter()
                    .filter(|l| !l.uplift_explanation.is_empty())
                    .take(20)
                    .map(|l| l.uplift_explanation.clone())
                    .collect();
                m
            }),
        }
    }

    /// Supplier funding summary.
    pub fn funding(&self, demand: &[Vec<f64>]) -> pb::FundingSummary {
        let units = self.forecast_units(demand);
        let mut claims = Vec::new();
        let mut issues = Vec::new();
        let mut invalid = BTreeSet::new();
        let mut funded = 0;
        // Promo revenue per agreement, and of the lines without valid funding.
        let mut revenue_by_agreement: std::collections::BTreeMap<&str, Decimal> = Default::default();
        let mut unfunded_revenue = Decimal::ZERO;
        for (l, u) in self.lines.iter().zip(&units) {
            let line_revenue = Decimal::from_f64(u.round()).unwrap_or_default() * l.promo_price;
            if let Some((id, per_unit)) = &l.funding {
                funded += 1;
                claims.push((id.clone(), Decimal::from_f64(u.round()).unwrap_or_default() * per_unit));
                *revenue_by_agreement.entry(id.as_str()).or_default() += line_revenue;
            }
            if let Some((id, why)) = &l.funding_issue {
                funded += 1;
                unfunded_revenue += line_revenue;
                invalid.insert(id.clone());
                issues.push(pb::FundingIssue {
                    sku: l.sku.clone(),
                    agreement_id: id.clone(),
                    reason: why.clone(),
                });
            }
        }
        let over_cap = funding::over_cap(&claims, &self.agreements);
        unfunded_revenue +=
            over_cap.iter().filter_map(|id| revenue_by_agreement.get(id.as_str())).copied().sum::<Decimal>();
        pb::FundingSummary {
            unfunded_revenue: format_money(unfunded_revenue),
            funded_lines: funded,
            issue_count: issues.len() as u32,
            issues: issues.into_iter().take(100).collect(),
            forecast_claim: format_money(claims.iter().map(|c| c.1).sum()),
            forecast_claims: {
                let mut per: std::collections::BTreeMap<String, Decimal> = Default::default();
                for (id, amount) in &claims {
                    *per.entry(id.clone()).or_default() += *amount;
                }
                per.into_iter().map(|(id, a)| (id, format_money(a))).collect()
            },
            over_cap_agreements: over_cap,
            invalid_agreements: invalid.into_iter().collect(),
        }
    }

    /// The post-event report from region × SKU actuals.
    pub fn report(&self, actuals: &[SalesActual], assessment: &pb::AssessmentSummary) -> pb::PostEventReport {
        let line_of: HashMap<&str, &Line> = self.lines.iter().map(|l| (l.sku.as_str(), l)).collect();
        let (mut sold, mut available, mut stockouts) = (0i64, 0i64, 0u64);
        let (mut revenue, mut margin, mut markdown) = (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
        let mut claims: HashMap<&str, Decimal> = HashMap::new();
        let mut regions: std::collections::BTreeMap<&str, (i64, Decimal, u64, i64)> = Default::default();
        for a in actuals {
            let Some(l) = line_of.get(a.sku.as_str()) else { continue };
            let units = Decimal::from(a.units_sold);
            sold += a.units_sold;
            available += a.available_units;
            stockouts += u64::from(a.stockout_store_days);
            let rev = units * l.promo_price;
            revenue += rev;
            margin += units * l.unit_margin;
            markdown += Decimal::from(a.ending_units) * (l.regular - l.promo_price);
            if let Some((id, per_unit)) = &l.funding {
                *claims.entry(id.as_str()).or_default() += units * per_unit;
            }
            let e = regions.entry(a.region_id.as_str()).or_default();
            e.0 += a.units_sold;
            e.1 += rev;
            e.2 += u64::from(a.stockout_store_days);
            e.3 += a.available_units;
        }
        let claim: Decimal = claims
            .iter()
            .map(|(id, c)| self.agreements.get(*id).map_or(*c, |a| (*c).min(a.cap_amount)))
            .sum();
        let margin_summary = assessment.margin.clone().unwrap_or_default();
        let forecast = margin_summary.forecast_units;
        // Drift is tracked on promotions whose every line the model forecast.
        let forecast_model = margin_summary
            .forecast_model
            .as_ref()
            .filter(|m| {
                !m.version.is_empty() && m.lines_by_source.get("model") == Some(&margin_summary.lines)
            })
            .map(|m| m.version.clone())
            .unwrap_or_default();
        let ratio = |a: Decimal, b: Decimal| format_ratio(if b.is_zero() { Decimal::ZERO } else { a / b });
        pb::PostEventReport {
            units_sold: sold,
            forecast_units: forecast,
            available_units: available,
            sell_through: ratio(Decimal::from(sold), Decimal::from(available)),
            forecast_variance: ratio(Decimal::from(sold - forecast), Decimal::from(forecast)),
            stockout_store_days: stockouts,
            markdown_exposure: format_money(markdown),
            revenue: format_money(revenue),
            realised_margin: format_money(margin),
            planned_margin: margin_summary.forecast_margin.clone(),
            forecast_model,
            funding_claim: format_money(claim),
            regions: regions
                .into_iter()
                .map(|(r, (u, rev, so, av))| pb::RegionResult {
                    region_id: r.to_owned(),
                    units_sold: u,
                    revenue: format_money(rev),
                    stockout_store_days: so,
                    sell_through: ratio(Decimal::from(u), Decimal::from(av)),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }
}
