//! Spec files: reading one (size limit first), parsing it as a proto3-JSON
//! `promo.v1.PromotionSpec` with the line and column of any JSON error, checking it with the
//! workflow's own pure validation, and the summary and details the Web UI shows for it.

use crate::error::CliError;
use promo_contracts::promo::v1::PromotionSpec;
use promo_workflows::plan::{self, MAX_SPEC_BYTES, Plan};
use std::{io::Read, path::Path};

/// Reads and parses a spec file. Files larger than [`MAX_SPEC_BYTES`] are refused before they
/// are read in full.
pub fn read_spec_file(path: &Path) -> Result<PromotionSpec, CliError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path)
        .map_err(|e| CliError::SpecFile(format!("cannot read {name}: {e}; check the path")))?;
    let mut bytes = Vec::new();
    // `take` also bounds pipes and other files whose size the metadata does not tell.
    file.take(MAX_SPEC_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| CliError::SpecFile(format!("cannot read {name}: {e}")))?;
    if bytes.len() > MAX_SPEC_BYTES {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(bytes.len() as u64);
        return Err(too_large(&name, size));
    }
    parse_spec(&name, &bytes)
}

/// The error for a file over the limit.
pub fn too_large(name: &str, size: u64) -> CliError {
    CliError::SpecFile(format!(
        "{name} is {size} bytes; a promotion spec may be at most {MAX_SPEC_BYTES} bytes ({} KiB) so \
         that the workflow input stays far below Temporal's payload limit. Split the promotion into \
         several (at most {} lines each) and start each one.",
        MAX_SPEC_BYTES / 1024,
        plan::MAX_LINES
    ))
}

/// Parses spec JSON; errors name the file, line and column.
pub fn parse_spec(name: &str, bytes: &[u8]) -> Result<PromotionSpec, CliError> {
    if bytes.len() > MAX_SPEC_BYTES {
        return Err(too_large(name, bytes.len() as u64));
    }
    serde_json::from_slice(bytes).map_err(|e| json_error(name, &e))
}

/// Renders a serde_json error as `file:line:column: what`, plus the format to follow.
pub fn json_error(name: &str, e: &serde_json::Error) -> CliError {
    use serde_json::error::Category;
    let text = e.to_string();
    // serde_json appends " at line L column C"; we lead with the position instead.
    let what = match text.rfind(" at line ") {
        Some(i) => &text[..i],
        None => text.as_str(),
    };
    let kind = match e.classify() {
        Category::Syntax => "invalid JSON",
        Category::Eof => "unexpected end of the file",
        Category::Data => "not a promo.v1.PromotionSpec",
        Category::Io => "read error",
    };
    let detail = if e.classify() == Category::Eof { String::new() } else { format!(": {what}") };
    CliError::SpecFile(format!(
        "{name}:{}:{}: {kind}{detail}\n(a spec is promo.v1.PromotionSpec in proto3 JSON: see \
         proto/promo/v1/spec.proto; field names in camelCase or snake_case, channels like \"CHANNEL_POS\")",
        e.line(),
        e.column()
    ))
}

/// Runs the workflow's shape validation locally (`plan::validate_spec`). `what` names the spec
/// in the error (the file name) and `hint` says what to do next.
pub fn check_locally(what: &str, spec: &PromotionSpec, now: i64, hint: &str) -> Result<Plan, CliError> {
    plan::validate_spec(spec, now).map_err(|problems| CliError::Invalid {
        what: what.to_owned(),
        problems,
        hint: hint.to_owned(),
    })
}

pub use promo_workflows::summary::{channel_name, details, summary};

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../tests/data/spring-garden.json");
    /// 2026-01-01, before the sample's window.
    const NOW: i64 = 1_767_225_600;

    #[test]
    fn the_sample_parses_and_validates() {
        let spec = parse_spec("spring-garden.json", SAMPLE.as_bytes()).unwrap();
        assert_eq!(spec.promotion_id, "SPRING-26");
        check_locally("spring-garden.json", &spec, NOW, "").unwrap();
    }

    #[test]
    fn too_large_is_refused_naming_the_limit() {
        let big = vec![b' '; MAX_SPEC_BYTES + 1];
        let e = parse_spec("big.json", &big).unwrap_err().to_string();
        assert!(e.starts_with(&format!("big.json is {} bytes", MAX_SPEC_BYTES + 1)), "{e}");
        assert!(e.contains(&format!("at most {MAX_SPEC_BYTES} bytes (256 KiB)")), "{e}");
    }

    #[test]
    fn bad_json_names_file_line_and_column() {
        let text = "{\n  \"promotionId\": \"X\",\n  \"name\": \"y\"\n  \"lines\": []\n}";
        let e = parse_spec("bad.json", text.as_bytes()).unwrap_err().to_string();
        assert!(e.starts_with("bad.json:4:3: invalid JSON: expected `,` or `}`\n"), "{e}");
        let e = parse_spec("short.json", b"{\n \"name\": ").unwrap_err().to_string();
        assert!(e.starts_with("short.json:2:9: unexpected end of the file\n"), "{e}");
    }

    #[test]
    fn wrong_fields_and_types_are_located_too() {
        let e = parse_spec("f.json", b"{\n  \"promotionId\": \"X\",\n  \"colour\": 1\n}")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f.json:3:"), "{e}");
        assert!(e.contains("not a promo.v1.PromotionSpec: unknown field `colour`"), "{e}");
        let e = parse_spec("c.json", b"{\"channels\": [\"CHANNEL_FAX\"]}").unwrap_err().to_string();
        assert!(e.starts_with("c.json:1:"), "{e}");
        assert!(e.contains("CHANNEL_FAX"), "{e}");
    }

    #[test]
    fn validation_problems_are_printed_one_per_line() {
        let mut spec = parse_spec("s.json", SAMPLE.as_bytes()).unwrap();
        spec.name = String::new();
        spec.lines[1].sku = spec.lines[0].sku.clone();
        spec.window.as_mut().unwrap().time_zone = "Mars/Olympus".into();
        let e = check_locally("s.json", &spec, NOW, "fix it and run `promo start s.json` again").unwrap_err();
        let text = e.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "s.json has 3 problems:", "{text}");
        assert!(lines[1].starts_with("  - name: is required"), "{text}");
        assert!(lines[2].starts_with("  - window.time_zone: \"Mars/Olympus\""), "{text}");
        assert_eq!(lines[3], "  - line 2: lines[1].sku: SKU-00001 is already on line 1", "{text}");
        assert_eq!(lines[4], "fix it and run `promo start s.json` again");
    }

    #[test]
    fn summary_is_one_readable_line() {
        let spec = parse_spec("s.json", SAMPLE.as_bytes()).unwrap();
        assert_eq!(
            summary(&spec),
            "Promotion SPRING-26: Spring garden, 6 lines, regions R1, R3, \
             2030-04-01T00:00 to 2030-04-15T00:00 America/New_York"
        );
        let d = details(&spec);
        assert!(d.contains("| channels | POS, STORE_COMMS |"), "{d}");
        assert!(d.contains("| lines | 6 (1 supplier-funded) |"), "{d}");
    }
}
