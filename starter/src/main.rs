//! `promo`: parses the command line, runs the command, prints the result.

use clap::Parser;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = promo_starter::Cli::parse();
    let json = cli.json;
    match promo_starter::run(cli).await {
        Ok(out) => {
            promo_starter::print_output(&out, json);
            ExitCode::SUCCESS
        }
        Err(e) => {
            promo_starter::print_error(&e, json);
            ExitCode::FAILURE
        }
    }
}
