//! Property tests over spec parsing and validation: whatever a planner (or another client)
//! sends, intake never panics, and every refusal names a field — and the line, when it is about
//! a line.

use promo_contracts::{
    money::parse_money,
    promo::v1::{PromotionLine, PromotionSpec, PromotionWindow, promotion_line::Offer},
};
use promo_workflows::plan::{validate_spec, validate_spec_partial};
use proptest::prelude::*;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[A-Z0-9-]{1,12}",
        "[0-9]{1,4}(\\.[0-9]{0,4})?",
        "-?[0-9]{0,3}[.,e_ ]?[0-9]{0,3}",
        "\\PC{0,20}",
    ]
}

fn line() -> impl Strategy<Value = PromotionLine> {
    (
        text(),
        prop::option::of(prop_oneof![
            text().prop_map(Offer::PromoPrice),
            text().prop_map(Offer::DiscountPercent)
        ]),
        text(),
        text(),
    )
        .prop_map(|(sku, offer, funding_agreement_id, planned_uplift)| PromotionLine {
            sku,
            offer,
            funding_agreement_id,
            planned_uplift,
        })
}

fn spec() -> impl Strategy<Value = PromotionSpec> {
    (
        text(),
        text(),
        prop::option::of((
            prop_oneof!["20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]", text()],
            prop_oneof!["20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]", text()],
            prop_oneof![Just("America/New_York".to_owned()), Just("Etc/UTC".to_owned()), text()],
        )),
        prop::collection::vec(text(), 0..4),
        prop::collection::vec(-2i32..7, 0..5),
        prop::collection::vec(line(), 0..12),
        text(),
    )
        .prop_map(|(promotion_id, name, window, regions, channels, lines, planner_id)| PromotionSpec {
            promotion_id,
            name,
            window: window.map(|(starts_at, ends_at, time_zone)| PromotionWindow {
                starts_at,
                ends_at,
                time_zone,
            }),
            regions,
            stores: vec![],
            channels,
            lines,
            planner_id,
            description: String::new(),
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn intake_never_panics_and_every_refusal_is_located(s in spec(), now in 0i64..4_000_000_000) {
        match validate_spec(&s, now) {
            Ok(plan) => {
                prop_assert!(plan.ends_at > plan.starts_at);
                prop_assert!(plan.starts_at > now);
                prop_assert_eq!(plan.lines.len(), s.lines.len());
            }
            Err(problems) => {
                prop_assert!(!problems.is_empty());
                for p in &problems {
                    prop_assert!(!p.field.is_empty(), "{:?}", p);
                    prop_assert!(!p.message.is_empty(), "{:?}", p);
                    if let Some(n) = p.line {
                        prop_assert!(n >= 1 && n <= s.lines.len(), "{:?}", p);
                        let prefix = format!("lines[{}].", n - 1);
                        prop_assert!(p.field.starts_with(&prefix), "{:?}", p);
                    }
                }
            }
        }
    }

    #[test]
    fn partial_validation_agrees_with_validate_spec(s in spec(), now in 0i64..4_000_000_000) {
        let partial = validate_spec_partial(&s, now);
        match validate_spec(&s, now) {
            Ok(plan) => {
                prop_assert_eq!(partial.plan.as_ref(), Some(&plan));
                prop_assert!(partial.problems.is_empty());
            }
            Err(problems) => {
                prop_assert_eq!(partial.plan.as_ref(), None);
                prop_assert_eq!(&partial.problems, &problems);
            }
        }
        // What intake looks up in the master data is a line's own, unrepeated SKU.
        let mut seen = std::collections::HashSet::new();
        for l in &partial.lines {
            prop_assert!(l.index < s.lines.len());
            prop_assert_eq!(&l.sku, &s.lines[l.index].sku);
            prop_assert!(seen.insert(l.sku.clone()), "{} looked up twice", l.sku);
        }
    }

    #[test]
    fn arbitrary_json_never_panics_the_spec_parser(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = serde_json::from_slice::<PromotionSpec>(&bytes);
    }

    #[test]
    fn money_parsing_never_panics_and_round_trips(s in "\\PC{0,24}") {
        if let Ok(d) = parse_money("amount", &s) {
            prop_assert_eq!(d.to_string().parse::<rust_decimal::Decimal>().unwrap(), d);
            prop_assert!(d.scale() <= 4);
        } else {
            let e = parse_money("amount", &s).unwrap_err();
            prop_assert_eq!(e.field, "amount");
        }
    }
}
