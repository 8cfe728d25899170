//! Integration tests for the promotion worker, and the harness that starts real Temporal
//! servers for them: an isolated `temporal server start-dev` and the time-skipping test server,
//! both from the project venv that `make bootstrap` installs (see [`temporal`]).

pub mod env;
pub mod process;
pub mod promises;
pub mod temporal;
