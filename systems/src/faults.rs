//! Runtime fault injection: rules added through the admin RPC and consulted by every handler.

use promo_contracts::{money::parse_decimal, retail::v1 as wire};
use rand::{RngExt, SeedableRng, rngs::ChaCha8Rng};
use rust_decimal::prelude::ToPrimitive;
use std::{sync::Mutex, time::Duration};
use tonic::Status;

/// A call being served, as fault rules see it.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// Short service name ("inventory", "publication", ...).
    pub service: &'a str,
    /// Method name ("Publish").
    pub method: &'a str,
    /// Channel (publication calls), 0 otherwise.
    pub channel: i32,
    /// Region (publication calls), empty otherwise.
    pub region_id: &'a str,
}

/// What the matching rules ask of one call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effects {
    /// Latency to add before serving.
    pub latency: Duration,
    /// Fail the call before doing anything: with UNAVAILABLE, or the rule's `error_code`.
    pub fail: bool,
    /// The status a failed call returns (UNAVAILABLE when no rule names one).
    pub fail_code: Option<tonic::Code>,
    /// Commit, then fail with UNAVAILABLE.
    pub lose_response: bool,
    /// Override of the acknowledgment delay.
    pub ack_delay_ms: Option<u64>,
    /// Never acknowledge.
    pub ack_never: bool,
    /// Break the response this way (the first matching rule that asks wins).
    pub malformed: Option<Malformed>,
}

/// A way a response breaks its contract (`Fault.malformed`), for proving that clients check
/// what they read. Each handler applies it to the first record it can (see the proto).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// One column of a columnar record is a value short.
    LengthMismatch,
    /// A record names an id that was not asked for and is in no master data.
    UnknownId,
    /// A quantity that cannot be negative is.
    NegativeStock,
}

impl Malformed {
    /// Every mode with its wire name and the services whose responses it can break.
    pub const ALL: [(Malformed, &'static str, &'static [&'static str]); 3] = [
        (Malformed::LengthMismatch, "length-mismatch", &["inventory", "demand"]),
        (
            Malformed::UnknownId,
            "unknown-id",
            &["inventory", "demand", "product", "funding", "location", "sales"],
        ),
        (Malformed::NegativeStock, "negative-stock", &["inventory", "demand", "sales"]),
    ];

    /// The mode named `name` (as in `Fault.malformed`).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, n, _)| n.eq_ignore_ascii_case(name)).map(|(m, _, _)| *m)
    }

    /// The wire name.
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(m, _, _)| *m == self).map_or("", |(_, n, _)| n)
    }

    /// Services whose responses this mode can break.
    pub fn services(self) -> &'static [&'static str] {
        Self::ALL.iter().find(|(m, _, _)| *m == self).map_or(&[], |(_, _, s)| s)
    }

    /// An id no master data holds, made from a real one so messages stay recognisable.
    pub fn unknown(id: &str) -> String {
        format!("UNKNOWN-{id}")
    }
}

#[derive(Debug)]
struct Rule {
    id: u64,
    fault: wire::Fault,
    error_rate: f64,
    error_code: tonic::Code,
    hits: u32,
}

/// The status codes a rule may fail calls with (`Fault.error_code`), by name.
const ERROR_CODES: [(&str, tonic::Code); 9] = [
    ("UNAVAILABLE", tonic::Code::Unavailable),
    ("DEADLINE_EXCEEDED", tonic::Code::DeadlineExceeded),
    ("RESOURCE_EXHAUSTED", tonic::Code::ResourceExhausted),
    ("ABORTED", tonic::Code::Aborted),
    ("INTERNAL", tonic::Code::Internal),
    ("NOT_FOUND", tonic::Code::NotFound),
    ("FAILED_PRECONDITION", tonic::Code::FailedPrecondition),
    ("INVALID_ARGUMENT", tonic::Code::InvalidArgument),
    ("PERMISSION_DENIED", tonic::Code::PermissionDenied),
];

impl Rule {
    fn matches(&self, call: &Call<'_>) -> bool {
        let f = &self.fault;
        covers(f, call.service, call.channel, call.region_id)
            && (f.method.is_empty() || f.method.eq_ignore_ascii_case(call.method))
            && (f.max_hits == 0 || self.hits < f.max_hits)
    }
}

/// Whether `f` is about `service` (empty: every service), and about `channel` and `region_id`
/// (unset: all).
fn covers(f: &wire::Fault, service: &str, channel: i32, region_id: &str) -> bool {
    (f.service.is_empty() || f.service.eq_ignore_ascii_case(service))
        && (f.channel == 0 || f.channel == channel)
        && (f.region_id.is_empty() || f.region_id == region_id)
}

/// The active rules.
#[derive(Debug)]
pub struct Faults {
    /// The rules, the last id given, and the generator of error-rate failures (seeded, so that
    /// a run's injected failures repeat).
    state: Mutex<(Vec<Rule>, u64, ChaCha8Rng)>,
}

impl Default for Faults {
    fn default() -> Self {
        Self { state: Mutex::new((Vec::new(), 0, ChaCha8Rng::seed_from_u64(0xFA17))) }
    }
}

impl Faults {
    /// Adds a rule after validating it; returns its id.
    pub fn inject(&self, fault: wire::Fault) -> Result<u64, Status> {
        let error_rate = if fault.error_rate.is_empty() {
            0.0
        } else {
            let d = parse_decimal("fault.error_rate", &fault.error_rate, 6)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            let r = d.to_f64().unwrap_or(-1.0);
            if !(0.0..=1.0).contains(&r) {
                return Err(Status::invalid_argument(format!(
                    "fault.error_rate: {:?} must be between 0 and 1",
                    fault.error_rate
                )));
            }
            r
        };
        let error_code = if fault.error_code.is_empty() {
            tonic::Code::Unavailable
        } else {
            ERROR_CODES
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(&fault.error_code))
                .map(|(_, c)| *c)
                .ok_or_else(|| {
                    let names: Vec<&str> = ERROR_CODES.iter().map(|(n, _)| *n).collect();
                    Status::invalid_argument(format!(
                        "fault.error_code: unknown code {:?}; expected one of {}",
                        fault.error_code,
                        names.join(", ")
                    ))
                })?
        };
        const SERVICES: [&str; 13] = [
            "",
            "location",
            "product",
            "inventory",
            "demand",
            "funding",
            "price",
            "replenishment",
            "publication",
            "sales",
            "analytics",
            "calendar",
            "directory",
        ];
        if !SERVICES.iter().any(|s| s.eq_ignore_ascii_case(&fault.service)) {
            return Err(Status::invalid_argument(format!(
                "fault.service: unknown service {:?}; expected one of {}",
                fault.service,
                SERVICES[1..].join(", ")
            )));
        }
        if fault.channel_down
            && !(fault.service.is_empty() || fault.service.eq_ignore_ascii_case("publication"))
        {
            return Err(Status::invalid_argument(format!(
                "fault.channel_down: applies to the publication service, not {:?}",
                fault.service
            )));
        }
        if !fault.malformed.is_empty() {
            let names: Vec<&str> = Malformed::ALL.iter().map(|(_, n, _)| *n).collect();
            let mode = Malformed::parse(&fault.malformed).ok_or_else(|| {
                Status::invalid_argument(format!(
                    "fault.malformed: unknown mode {:?}; expected one of {}",
                    fault.malformed,
                    names.join(", ")
                ))
            })?;
            // A rule for every service would break calls the mode means nothing for.
            if !mode.services().iter().any(|s| s.eq_ignore_ascii_case(&fault.service)) {
                return Err(Status::invalid_argument(format!(
                    "fault.malformed: {:?} applies to the services {}; set fault.service to one of them, not {:?}",
                    mode.name(),
                    mode.services().join(", "),
                    fault.service
                )));
            }
        }
        let mut st = self.state.lock().expect("faults lock");
        st.1 += 1;
        let id = st.1;
        st.0.push(Rule { id, fault, error_rate, error_code, hits: 0 });
        Ok(id)
    }

    /// Removes every rule; returns how many there were.
    pub fn clear(&self) -> u32 {
        let mut st = self.state.lock().expect("faults lock");
        let n = st.0.len() as u32;
        st.0.clear();
        n
    }

    /// The active rules.
    pub fn list(&self) -> Vec<wire::ActiveFault> {
        let st = self.state.lock().expect("faults lock");
        st.0.iter()
            .map(|r| wire::ActiveFault { fault_id: r.id, fault: Some(r.fault.clone()), hits: r.hits })
            .collect()
    }

    /// Whether a `channel_down` rule covers `channel` in `region_id` now (no hit is counted:
    /// this is a state, not a call).
    pub fn channel_down(&self, channel: i32, region_id: &str) -> bool {
        let st = self.state.lock().expect("faults lock");
        st.0.iter().any(|r| r.fault.channel_down && covers(&r.fault, "publication", channel, region_id))
    }

    /// Combines the effects of every rule matching `call`, counting hits.
    pub fn effects(&self, call: Call<'_>) -> Effects {
        let mut st = self.state.lock().expect("faults lock");
        let (rules, _, rng) = &mut *st;
        let mut out = Effects::default();
        for rule in rules.iter_mut().filter(|r| r.matches(&call)) {
            rule.hits += 1;
            let f = &rule.fault;
            out.latency += Duration::from_millis(u64::from(f.latency_ms));
            if rule.error_rate > 0.0 && rng.random_bool(rule.error_rate) {
                out.fail = true;
                // A business refusal wins over a transient failure: it is what the test asked for.
                if out.fail_code.is_none_or(|c| c == tonic::Code::Unavailable) {
                    out.fail_code = Some(rule.error_code);
                }
            }
            out.lose_response |= f.lose_response;
            if f.ack_delay_ms > 0 {
                out.ack_delay_ms = Some(u64::from(f.ack_delay_ms));
            }
            out.ack_never |= f.ack_never;
            // Validated on injection, so a rule's mode always parses.
            out.malformed = out.malformed.or_else(|| Malformed::parse(&f.malformed));
        }
        out
    }

    /// Applies the pre-call effects (latency, injected failure) and returns the rest.
    pub async fn before(&self, call: Call<'_>) -> Result<Effects, Status> {
        let fx = self.effects(call);
        if !fx.latency.is_zero() {
            tokio::time::sleep(fx.latency).await;
        }
        if fx.fail {
            let code = fx.fail_code.unwrap_or(tonic::Code::Unavailable);
            let what =
                if code == tonic::Code::Unavailable { "unavailable".to_owned() } else { format!("{code:?}") };
            return Err(Status::new(
                code,
                format!("injected fault: {}.{} {what}", call.service, call.method),
            ));
        }
        Ok(fx)
    }
}

/// The error an ambiguous commit returns after the write succeeded.
pub fn lost_response(call: Call<'_>) -> Status {
    Status::unavailable(format!(
        "injected fault: {}.{} committed but the response was lost",
        call.service, call.method
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call<'a>(service: &'a str, method: &'a str) -> Call<'a> {
        Call { service, method, channel: 1, region_id: "R1" }
    }

    #[test]
    fn rules_match_by_selector_and_expire() {
        let f = Faults::default();
        f.inject(wire::Fault {
            service: "publication".into(),
            ack_never: true,
            max_hits: 1,
            ..Default::default()
        })
        .unwrap();
        assert!(!f.effects(call("inventory", "StreamPositions")).ack_never);
        assert!(f.effects(call("publication", "Publish")).ack_never);
        assert!(!f.effects(call("publication", "Publish")).ack_never, "max_hits=1 expired");
        assert_eq!(f.clear(), 1);
    }

    #[test]
    fn bad_rules_are_refused_with_the_field() {
        let f = Faults::default();
        let e = f.inject(wire::Fault { error_rate: "1.5".into(), ..Default::default() }).unwrap_err();
        assert!(e.message().contains("fault.error_rate"), "{e}");
        let e = f.inject(wire::Fault { service: "erp".into(), ..Default::default() }).unwrap_err();
        assert!(e.message().contains("unknown service \"erp\""), "{e}");
    }

    #[test]
    fn malformed_modes_are_checked_against_the_service() {
        let f = Faults::default();
        let e = f
            .inject(wire::Fault {
                service: "inventory".into(),
                malformed: "garbled".into(),
                ..Default::default()
            })
            .unwrap_err();
        assert!(e.message().starts_with("fault.malformed: unknown mode \"garbled\""), "{e}");
        let e = f.inject(wire::Fault { malformed: "unknown-id".into(), ..Default::default() }).unwrap_err();
        assert!(e.message().contains("set fault.service"), "{e}");
        let e = f
            .inject(wire::Fault {
                service: "funding".into(),
                malformed: "negative-stock".into(),
                ..Default::default()
            })
            .unwrap_err();
        assert!(e.message().contains("inventory, demand, sales"), "{e}");
        f.inject(wire::Fault {
            service: "inventory".into(),
            malformed: "length-mismatch".into(),
            max_hits: 1,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(f.effects(call("demand", "StreamBaselineDemand")).malformed, None);
        assert_eq!(
            f.effects(call("inventory", "StreamPositions")).malformed,
            Some(Malformed::LengthMismatch)
        );
        assert_eq!(f.effects(call("inventory", "StreamPositions")).malformed, None, "max_hits=1 expired");
    }

    #[test]
    fn error_rate_one_always_fails() {
        let f = Faults::default();
        f.inject(wire::Fault { error_rate: "1".into(), ..Default::default() }).unwrap();
        assert!((0..10).all(|_| f.effects(call("sales", "GetSalesActuals")).fail));
    }

    #[tokio::test]
    async fn a_rule_fails_calls_with_the_code_it_names() {
        let f = Faults::default();
        let e = f.inject(wire::Fault { error_code: "TEAPOT".into(), ..Default::default() }).unwrap_err();
        assert!(e.message().contains("fault.error_code: unknown code \"TEAPOT\""), "{e}");
        f.inject(wire::Fault {
            service: "publication".into(),
            method: "Withdraw".into(),
            region_id: "R1".into(),
            error_rate: "1".into(),
            error_code: "not_found".into(),
            ..Default::default()
        })
        .unwrap();
        let withdraw =
            |region| Call { service: "publication", method: "Withdraw", channel: 1, region_id: region };
        assert_eq!(f.before(withdraw("R1")).await.unwrap_err().code(), tonic::Code::NotFound);
        assert!(f.before(withdraw("R2")).await.is_ok(), "another region's publication is withdrawn");
        f.inject(wire::Fault { error_rate: "1".into(), ..Default::default() }).unwrap();
        assert_eq!(f.before(withdraw("R2")).await.unwrap_err().code(), tonic::Code::Unavailable);
        assert_eq!(f.before(withdraw("R1")).await.unwrap_err().code(), tonic::Code::NotFound);
    }
}
