//! `report`: what a results file says, and its failed rows as a new input.
//!
//! Reads the file: the latest line of every key counts (a later line for a key supersedes an
//! earlier one), by status, and failed and invalid rows by cause (errcode and what was missing)
//! with a sample message each. With `--json`, the same as one JSON object, in the shape of
//! `--summary-json` (schemas/summary.schema.json). With `--failed OUT --input SHEET`, the failed
//! rows are taken from the run's own sheet with every column. Sends nothing.

use std::io::Write;
use std::path::PathBuf;

use clap::Args as ClapArgs;

use crate::exit::Exit;
use crate::input::InputSpec;
use crate::results::{failed_sheet, summary};

/// Summarise a results file; write its failed rows as a new input
#[derive(Debug, ClapArgs)]
#[command(
    long_about = "Summarise a results file: the latest status of every key, counts by status, \
        and failed and invalid rows by cause (errcode, and what was not found: user, room, \
        email...) with a sample message each. With --json, the summary is one JSON object on \
        stdout, in the shape of --summary-json (schemas/summary.schema.json in the source).\n\n\
        With --failed, the rows whose latest status is `failed` are written as a new input \
        file for the same job: their normalised fields, or with --input SHEET (the input of \
        that run, unchanged) the sheet's own rows with every column. An existing OUT is \
        replaced only with --force.\n\n\
        Exit code: 0 when every key is ok or unchanged, 1 when any is failed, invalid or \
        pending (a run was killed after sending it: rerun the job with --resume), 2 when the \
        file cannot be read.",
    after_help = "Examples:\n  \
        synbatch report new-hires.results.csv\n  \
        synbatch report new-hires.results.csv --json | jq .failures\n  \
        synbatch report new-hires.results.csv --failed retry.csv\n  \
        synbatch report new-hires.results.csv --failed retry.csv --input new-hires.xlsx --force\n  \
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

    /// With --failed: take the failed rows from SHEET, the input of that run, keeping every
    /// column (passwords too; OUT is then made readable by you only)
    #[arg(long, value_name = "SHEET", requires = "failed")]
    pub input: Option<PathBuf>,

    /// Which sheet of an .xlsx or .ods --input
    #[arg(long, value_name = "NAME", requires = "input")]
    pub sheet: Option<String>,

    /// What a CSV --input is written in when it is not UTF-8, e.g. windows-1252
    #[arg(long, value_name = "LABEL", requires = "input")]
    pub encoding: Option<String>,

    /// Replace OUT if it exists
    #[arg(long, requires = "failed")]
    pub force: bool,
}

/// Exit 1 while any row's latest status is failed, invalid or pending (not known to be done).
pub async fn run(args: Args) -> Result<(), Exit> {
    if let Some(out) = &args.failed
        && !args.force
        && std::fs::symlink_metadata(out).is_ok()
    {
        return Err(Exit::usage(format!(
            "--failed {}: the file exists; pass --force to replace it",
            out.display()
        )));
    }
    if let (Some(out), Some(sheet)) = (&args.failed, &args.input)
        && std::fs::canonicalize(out).ok() == std::fs::canonicalize(sheet).ok()
    {
        return Err(Exit::usage(format!(
            "--failed {}: that is the --input sheet; name a new file",
            out.display()
        )));
    }
    // With --input the failed rows come from the sheet, written below.
    let failed = args.failed.as_deref().filter(|_| args.input.is_none());
    let found = summary::summarise(&args.results, failed).map_err(Exit::usage)?;
    let cannot = |e: std::io::Error| Exit::usage(format!("cannot print the report: {e}"));
    if args.json {
        // stdout holds the JSON alone; what the text report says besides goes to stderr.
        if !found.unreadable.is_empty() {
            eprintln!(
                "warning: {}: {}",
                args.results.display(),
                crate::secret::for_terminal(&found.unreadable.to_string())
            );
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
    // Messages about the failed file go to stderr, so that --json keeps stdout to itself.
    if let (Some(out), Some(sheet)) = (&args.failed, &args.input) {
        let spec = InputSpec {
            path: Some(sheet.clone()),
            format: None,
            delimiter: None,
            encoding: args.encoding.clone(),
            sheet: args.sheet.clone(),
        };
        let written = failed_sheet::write(&args.results, &spec, out).map_err(Exit::usage)?;
        eprintln!(
            "failed rows: {} written to {}, every column of {} kept",
            written.rows,
            out.display(),
            sheet.display()
        );
        if written.passwords {
            eprintln!(
                "warning: {} holds the password column: it was made readable by you only \
                 (0600); delete it once the rerun is done",
                out.display()
            );
        }
    } else if let Some(out) = &args.failed
        && found.job.as_deref() == Some("create-users")
    {
        eprintln!(
            "warning: a results file holds no passwords, so accounts rerun from {} get none \
             (or new ones with --generate-passwords); to keep a password column, add --input \
             with the sheet of that run",
            out.display()
        );
    }
    if found.all_done() {
        Ok(())
    } else {
        Err(Exit::RowsFailed)
    }
}
