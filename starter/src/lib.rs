//! The `promo` CLI: how planners, approvers and operators drive promotions (docs/design.md, §2).
//!
//! A promotion is one `PromotionWorkflow` execution on Temporal (workflow id `promotion-<id>`,
//! task queue `promotions`, see `promo_workflows::api`). The CLI starts it from a spec file,
//! sends it the approvers' and operators' messages as updates (answered at once with accepted or
//! the refusal's reason) or signals, reads it through its queries and search attributes, and
//! prints its post-event report.
//!
//! Layout, parsing separate from applying:
//! - [`cli`]: the command line (clap derive), no I/O;
//! - [`spec`]: spec files — size limit, JSON errors with line and column, local validation with
//!   the workflow's own `plan::validate_spec`, the Web UI summary and details;
//! - [`messages`]: arguments → `promo.v1` messages, checked before sending;
//! - [`query`]: the visibility query of `promo list`;
//! - [`render`]: the human output, text and tables, one module per family of screens;
//! - [`commands`]: the calls to Temporal and the retail systems, one module per family of
//!   commands;
//! - [`dashboard`] serves the portfolio read model (`promo_insight`: the snapshot of visibility,
//!   `status` queries and the process-event record, and its views) as a page, [`ask`] answers
//!   questions from it;
//! - [`codec_server`]: the dashboard's `/codec` routes, a Temporal codec server for the Web UI
//!   and the `temporal` CLI;
//! - [`error`]: every failure with the next step to take.
//!
//! `main` only parses the command line, calls [`run`] and prints.

pub mod ask;
pub mod cli;
pub mod codec_server;
pub mod commands;
pub mod dashboard;
pub mod error;
pub mod messages;
pub mod query;
pub mod render;
pub mod spec;

pub use cli::Cli;
pub use commands::{Output, run};
pub use error::CliError;

/// Prints a command's output: JSON (pretty) with `json`, the human text otherwise.
pub fn print_output(out: &Output, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(&out.json).unwrap_or_default());
    } else {
        print!("{}", out.human);
    }
}

/// Prints an error: as JSON on stdout with `json` (so scripts read one document either way),
/// as text on stderr otherwise.
pub fn print_error(e: &CliError, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(&e.to_json()).unwrap_or_default());
    } else {
        eprintln!("error: {e}");
    }
}
