//! `report`: what a results file says, and its failed rows as a new input.
//!
//! Reads the file once: the latest line of every key counts (a later line for a key supersedes
//! an earlier one), by status and by errcode with a sample message each. Sends nothing.

use std::path::PathBuf;

use clap::Args as ClapArgs;

use crate::exit::Exit;
use crate::input::InputSpec;
use crate::results::{failed_sheet, summary};

/// Summarise a results file; write its failed rows as a new input
#[derive(Debug, ClapArgs)]
#[command(
    long_about = "Summarise a results file: the latest status of every key, counts by status \
        and by errcode with a sample message each. With --failed, the rows whose latest \
        status is `failed` are written as a new input file for the same job: their normalised \
        fields, or with --input SHEET (the input of that run, unchanged) the sheet's own rows \
        with every column. An existing OUT is replaced only with --force.\n\n\
        Exit code: 0 when every key is ok or unchanged, 1 when any is failed, invalid or \
        pending (a run was killed after sending it: rerun the job with --resume), 2 when the \
        file cannot be read.",
    after_help = "Examples:\n  \
        synbatch report new-hires.results.csv\n  \
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
    // With --input the failed rows come from the sheet, written below.
    let failed = args.failed.as_deref().filter(|_| args.input.is_none());
    let found = summary::summarise(&args.results, failed).map_err(Exit::usage)?;
    summary::print(&args.results, &found, failed, std::io::stdout().lock())
        .map_err(|e| Exit::usage(format!("cannot print the report: {e}")))?;
    if let (Some(out), Some(sheet)) = (&args.failed, &args.input) {
        if std::fs::canonicalize(out).ok() == std::fs::canonicalize(sheet).ok() {
            return Err(Exit::usage(format!(
                "--failed {}: that is the --input sheet; name a new file",
                out.display()
            )));
        }
        let spec = InputSpec {
            path: Some(sheet.clone()),
            format: None,
            delimiter: None,
            encoding: args.encoding.clone(),
            sheet: args.sheet.clone(),
        };
        let written = failed_sheet::write(&args.results, &spec, out).map_err(Exit::usage)?;
        println!(
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
    } else if args.failed.is_some() && found.job.as_deref() == Some("create-users") {
        eprintln!(
            "warning: a results file holds no passwords, so accounts rerun from {} get none \
             (or new ones with --generate-passwords); to keep a password column, add --input \
             with the sheet of that run",
            args.failed
                .as_deref()
                .unwrap_or(std::path::Path::new(""))
                .display()
        );
    }
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
