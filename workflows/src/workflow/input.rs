//! What a run starts from: a planner's spec, or — for a run continued as new — the state the run
//! before it handed on ([`super::carry`]).

use super::state::PromotionWorkflow;
use promo_contracts::promo::v1::PromotionSpec;
use serde::{Deserialize, Serialize};

/// The start input of a promotion: a `PromotionSpec` (or, when what was sent is not one, the
/// reason, naming the field), or the state of the run before. Deserializes from any JSON so that
/// a start input of the wrong shape ends the run with a clear `InvalidSpec` failure instead of
/// failing every workflow task; serializes as the spec, or as `{"continued": <state>}`.
#[derive(Debug)]
// Made once per run and moved straight into the state: boxing the spec would save nothing.
#[allow(clippy::large_enum_variant)]
pub enum StartInput {
    /// A spec, or why the input is not one.
    Spec(Result<PromotionSpec, String>),
    /// The state the run before handed on when it continued as new.
    Continued(Box<PromotionWorkflow>),
}

impl From<PromotionSpec> for StartInput {
    fn from(spec: PromotionSpec) -> Self {
        Self::Spec(Ok(spec))
    }
}

impl StartInput {
    /// The state the run starts from.
    pub(crate) fn into_state(self) -> PromotionWorkflow {
        match self {
            Self::Spec(spec) => PromotionWorkflow::from_spec(spec),
            Self::Continued(state) => PromotionWorkflow::continued(state),
        }
    }
}

/// The key of a continued run's input.
const CONTINUED: &str = "continued";

impl Serialize for StartInput {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Self::Spec(Ok(spec)) => spec.serialize(s),
            Self::Spec(Err(why)) => s.serialize_str(why),
            Self::Continued(state) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry(CONTINUED, state)?;
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for StartInput {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = serde_json::Value::deserialize(d)?;
        Ok(Self::parse(raw))
    }
}

impl StartInput {
    /// Reads a spec (or a continued run's state) from any JSON value; the error names the field
    /// that does not fit.
    pub fn parse(raw: serde_json::Value) -> Self {
        let kind = match &raw {
            serde_json::Value::Null => "null",
            serde_json::Value::Bool(_) => "a boolean",
            serde_json::Value::Number(_) => "a number",
            serde_json::Value::String(_) => "a string",
            serde_json::Value::Array(_) => "an array",
            serde_json::Value::Object(m) if m.len() == 1 && m.contains_key(CONTINUED) => {
                let state = raw.get(CONTINUED).cloned().unwrap_or_default();
                return match serde_path_to_error::deserialize::<_, PromotionWorkflow>(state) {
                    Ok(state) => Self::Continued(Box::new(state)),
                    Err(e) => Self::Spec(Err(format!(
                        "the continued run's state does not read: {}: {}",
                        e.path(),
                        e.inner()
                    ))),
                };
            }
            serde_json::Value::Object(_) => "",
        };
        if !kind.is_empty() {
            return Self::Spec(Err(format!(
                "the start input must be a promo.v1.PromotionSpec JSON object, not {kind}"
            )));
        }
        Self::Spec(serde_path_to_error::deserialize(raw).map_err(|e| {
            format!("the start input is not a promo.v1.PromotionSpec: {}: {}", e.path(), e.inner())
        }))
    }
}
