//! The `promo` binary with no server at all: spec files are read, parsed and validated before
//! anything connects, so every mistake in a file is reported without Temporal.

use promo_workflows::plan::MAX_SPEC_BYTES;
use std::{path::PathBuf, process::Command};

const SAMPLE: &str = include_str!("data/spring-garden.json");

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `promo` pointed at addresses where nothing listens.
fn promo(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_promo"))
        .args(args)
        .env("TEMPORAL_ADDRESS", "127.0.0.1:1")
        .env("PROMO_SYSTEMS_ADDR", "http://127.0.0.1:1")
        .output()
        .expect("run promo");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Writes `content` to a fresh file under the target's test temp dir.
fn file(name: &str, content: &[u8]) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("promo-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write");
    path
}

#[test]
fn a_valid_spec_dry_runs_without_any_server() {
    let r = promo(&["start", "tests/data/spring-garden.json", "--dry-run"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.starts_with(
            "tests/data/spring-garden.json: promotion SPRING-26, 6 lines, 2 regions: checked locally, OK\n"
        ),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("Temporal not reachable ("), "{}", r.stdout);
    assert!(r.stdout.contains("master-data and collision checks skipped"), "{}", r.stdout);
    assert!(r.stdout.ends_with("dry run: promotion-SPRING-26 not started\n"), "{}", r.stdout);
}

#[test]
fn every_validation_problem_is_printed_one_per_line() {
    let text = SAMPLE
        .replace("\"name\": \"Spring garden\"", "\"name\": \"\"")
        .replace("\"promoPrice\": \"4.99\"", "\"promoPrice\": \"4.999\"")
        .replace("\"discountPercent\": \"25\"", "\"discountPercent\": \"100\"");
    let path = file("invalid.json", text.as_bytes());
    let p = path.display().to_string();
    let r = promo(&["start", &p]);
    assert_eq!(r.code, 1);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines[0], format!("error: {p} has 3 problems:"), "{}", r.stderr);
    assert_eq!(lines[1], "  - name: is required");
    assert_eq!(lines[2], "  - line 4: lines[3].discount_percent: \"100\" must be above 0 and below 100");
    assert!(lines[3].starts_with("  - line 5: lines[4].promo_price: "), "{}", r.stderr);
    assert_eq!(lines[4], format!("fix {p} and run `promo start {p}` again"));
    assert!(r.stdout.is_empty());
}

#[test]
fn problems_come_as_json_with_json() {
    let path = file("no-lines.json", SAMPLE.replace("\"SKU-00001\"", "\"\"").as_bytes());
    let r = promo(&["start", &path.display().to_string(), "--json"]);
    assert_eq!(r.code, 1);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("one JSON document");
    assert_eq!(v["error"]["kind"], "invalid");
    assert_eq!(v["error"]["problems"][0]["line"], 1);
    assert_eq!(v["error"]["problems"][0]["field"], "lines[0].sku");
}

#[test]
fn bad_json_is_located_by_file_line_and_column() {
    let text = SAMPLE.replacen("\"regions\": [\"R1\", \"R3\"],", "\"regions\": [\"R1\" \"R3\"],", 1);
    let path = file("bad.json", text.as_bytes());
    let p = path.display().to_string();
    let r = promo(&["start", &p]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.starts_with(&format!("error: {p}:9:20: invalid JSON: expected `,` or `]`\n")),
        "{}",
        r.stderr
    );
}

#[test]
fn a_file_over_the_limit_is_refused_naming_the_limit() {
    let mut big = SAMPLE.trim_end().trim_end_matches('}').to_owned();
    big.push_str(&format!(",\n  \"description\": \"{}\"\n}}", "x".repeat(MAX_SPEC_BYTES)));
    let path = file("big.json", big.as_bytes());
    let r = promo(&["start", &path.display().to_string()]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(&format!("a promotion spec may be at most {MAX_SPEC_BYTES} bytes (256 KiB)")),
        "{}",
        r.stderr
    );
}

#[test]
fn a_missing_file_says_so() {
    let r = promo(&["start", "no/such/spec.json"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.starts_with("error: cannot read no/such/spec.json: "), "{}", r.stderr);
}

#[test]
fn a_change_request_for_another_promotion_is_refused_before_sending() {
    let r = promo(&[
        "request-changes",
        "AUTUMN-26",
        "--as",
        "E1001",
        "--role",
        "merchandising",
        "--spec",
        "tests/data/spring-garden.json",
    ]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("is a spec for promotion \"SPRING-26\", not \"AUTUMN-26\""), "{}", r.stderr);
}

#[test]
fn usage_errors_exit_with_two() {
    let r = promo(&["approve", "X", "--as", "E1001", "--role", "cfo"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("invalid value 'cfo' for '--role <ROLE>'"), "{}", r.stderr);
}

#[test]
fn without_temporal_the_error_says_how_to_connect() {
    let r = promo(&["status", "SPRING-26"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.starts_with("error: cannot reach Temporal at "), "{}", r.stderr);
    assert!(r.stderr.contains("TEMPORAL_ADDRESS"), "{}", r.stderr);
}
