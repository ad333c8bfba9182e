//! `report`: what a results file says, and its failed rows as a new input.
//!
//! Reads the file once: the latest line of every key counts (a later line for a key supersedes
//! an earlier one), by status and by errcode with a sample message each. Sends nothing.

use std::path::PathBuf;

use clap::Args as ClapArgs;

use crate::exit::Exit;
use crate::results::summary;

/// Summarise a results file; write its failed rows as a new input
#[derive(Debug, ClapArgs)]
#[command(
    long_about = "Summarise a results file: the latest status of every key, counts by status \
        and by errcode with a sample message each. With --failed, the rows whose latest \
        status is `failed` are written as a new input file for the same job.\n\n\
        Exit code: 0 when every key is ok or unchanged, 1 when any is failed, invalid or \
        pending (a run was killed after sending it: rerun the job with --resume), 2 when the \
        file cannot be read.",
    after_help = "Examples:\n  \
        synbatch report new-hires.results.csv\n  \
        synbatch report new-hires.results.csv --failed retry.csv\n  \
        synbatch join retry.csv -o new-hires.results.csv"
)]
pub struct Args {
    /// The results file of an earlier run
    #[arg(value_name = "RESULTS")]
    pub results: PathBuf,

    /// Write the rows whose latest status is `failed` to OUT, as input for the same job
    #[arg(long, value_name = "OUT")]
    pub failed: Option<PathBuf>,
}

/// Exit 1 while any row's latest status is failed, invalid or pending (not known to be done).
pub async fn run(args: Args) -> Result<(), Exit> {
    let failed = args.failed.as_deref();
    let found = summary::summarise(&args.results, failed).map_err(Exit::usage)?;
    summary::print(&args.results, &found, failed, std::io::stdout().lock())
        .map_err(|e| Exit::usage(format!("cannot print the report: {e}")))?;
    let bad = ["failed", "invalid", "pending"]
        .iter()
        .filter_map(|s| found.by_status.get(s))
        .sum::<u64>();
    if bad > 0 {
        Err(Exit::RowsFailed)
    } else {
        Ok(())
    }
}
