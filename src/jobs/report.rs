//! `report`: what a results file says, and its failed rows as a new input.
//!
//! Reads the file: the latest line of every key counts (a later line for a key supersedes an
//! earlier one), by status, and failed and invalid rows by cause (errcode and what was missing)
//! with a sample message each. With `--json`, the same as one JSON object, in the shape of
//! `--summary-json` (schemas/summary.schema.json). Sends nothing.

use std::io::Write;
use std::path::PathBuf;

use clap::Args as ClapArgs;

use crate::exit::Exit;
use crate::results::summary;

/// Summarise a results file; write its failed rows as a new input
#[derive(Debug, ClapArgs)]
#[command(
    long_about = "Summarise a results file: the latest status of every key, counts by status, \
        and failed and invalid rows by cause (errcode, and what was not found: user, room, \
        email...) with a sample message each. With --failed, the rows whose latest \
        status is `failed` are written as a new input file for the same job. With --json, \
        the summary is one JSON object on stdout, in the shape of --summary-json \
        (schemas/summary.schema.json in the source).\n\n\
        Exit code: 0 when every key is ok or unchanged, 1 when any is failed, invalid or \
        pending (a run was killed after sending it: rerun the job with --resume), 2 when the \
        file cannot be read.",
    after_help = "Examples:\n  \
        synbatch report new-hires.results.csv\n  \
        synbatch report new-hires.results.csv --failed retry.csv\n  \
        synbatch report new-hires.results.csv --json | jq .failures\n  \
        synbatch join retry.csv -o new-hires.results.csv"
)]
pub struct Args {
    /// The results file of an earlier run
    #[arg(value_name = "RESULTS")]
    pub results: PathBuf,

    /// Write the rows whose latest status is `failed` to OUT, as input for the same job
    #[arg(long, value_name = "OUT")]
    pub failed: Option<PathBuf>,

    /// Print the summary as one JSON object (the shape of --summary-json) instead of text
    #[arg(long)]
    pub json: bool,
}

/// Exit 1 while any row's latest status is failed, invalid or pending (not known to be done).
pub async fn run(args: Args) -> Result<(), Exit> {
    let failed = args.failed.as_deref();
    let found = summary::summarise(&args.results, failed).map_err(Exit::usage)?;
    let cannot = |e: std::io::Error| Exit::usage(format!("cannot print the report: {e}"));
    if args.json {
        // stdout holds the JSON alone; what the text report says besides goes to stderr.
        if !found.unreadable.is_empty() {
            eprintln!("warning: {}: {}", args.results.display(), found.unreadable);
        }
        let mut text = serde_json::to_string(&summary::to_json(&args.results, &found))
            .expect("a summary serialises");
        text.push('\n');
        std::io::stdout()
            .lock()
            .write_all(crate::secret::redact(&text).as_bytes())
            .map_err(cannot)?;
        if let Some(out) = failed {
            eprintln!(
                "wrote {} failed rows to {}",
                found.failed_written,
                out.display()
            );
        }
    } else {
        summary::print(&args.results, &found, failed, std::io::stdout().lock()).map_err(cannot)?;
    }
    if found.all_done() {
        Ok(())
    } else {
        Err(Exit::RowsFailed)
    }
}
