//! synbatch: bulk administration jobs for a Matrix homeserver (Synapse), from spreadsheets.
//!
//! main parses the command line, builds the runtime, runs the command and maps how it ended to
//! an exit code. Everything else starts at `cli.rs` (one line per job) and `src/jobs/`.

mod cli;
mod confirm;
mod connect;
mod executor;
mod exit;
mod file_kind;
mod homeserver;
mod input;
mod job;
mod jobs;
mod lift;
mod results;
mod rows;
mod secret;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // One thread sends and receives: against a fast server, handing tasks between worker
    // threads cost more CPU than the requests (BENCHMARKS.md). Reading the input and writing
    // the results have threads of their own.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let ended = runtime.block_on(cli.command.run());
    // Do not wait for the signal listener or a background row counter.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match ended {
        Ok(()) => ExitCode::SUCCESS,
        Err(exit) => {
            if let Some(message) = exit.message() {
                eprintln!("synbatch: {}", secret::for_terminal(message));
            }
            ExitCode::from(exit.code())
        }
    }
}
