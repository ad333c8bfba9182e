//! The command line: the shared argument groups, and one line per job. Each job's help, examples
//! and own options live in its file under `src/jobs/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::exit::Exit;
use crate::homeserver::Token;
use crate::input::Format;
use crate::jobs;
use crate::results::json::Destination;

const ABOUT: &str = "Bulk administration jobs for a Matrix homeserver (Synapse), from spreadsheets.

Each row of a spreadsheet (CSV, .xlsx, .ods, JSON or JSON Lines) becomes one operation; operations run concurrently \
under a rate limit, with retries, and every row ends with one status in a results CSV, so that \
a run can be resumed (--resume) or only its failed rows rerun (--retry-failed).";

const AFTER: &str = "Exit codes: 0 every row ok or unchanged; 1 some rows failed or invalid; \
2 bad usage or unreadable input; 3 run aborted (token rejected, not an admin, server \
unreachable); 130 interrupted (rerun with --resume).";

#[derive(Debug, Parser)]
#[command(name = "synbatch", version, about = ABOUT, after_help = AFTER)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The jobs, in the order `--help` lists them: `Variant => module` under `src/jobs/`, whose
/// `Args` (with its help) and `run` the variant takes.
macro_rules! jobs {
    ($($variant:ident => $module:ident,)*) => {
        #[derive(Debug, Subcommand)]
        pub enum Command {
            $($variant(jobs::$module::Args),)*
        }

        impl Command {
            pub async fn run(self) -> Result<(), Exit> {
                match self {
                    $(Command::$variant(args) => jobs::$module::run(args).await,)*
                }
            }
        }
    };
}

jobs! {
    // In the order of `--help`: people in rooms, accounts, SSO, rooms, media, then the files.
    Join => join,
    Invite => invite,
    Kick => kick,
    SyncMembers => sync_members,
    CreateUsers => create_users,
    Deactivate => deactivate,
    DiffAccounts => diff_accounts,
    SetExternalId => set_external_id,
    RemoveExternalId => remove_external_id,
    CreateRooms => create_rooms,
    DeleteRooms => delete_rooms,
    Notify => notify,
    DeleteMedia => delete_media,
    PurgeMedia => purge_media,
    ExportUsers => export_users,
    Report => report,
}

/// What every row job takes: the input, the homeserver, and how to run.
#[derive(Debug, Args)]
pub struct RowArgs {
    /// The rows: a .csv/.tsv, .xlsx, .ods, .json (array of objects) or .jsonl/.ndjson file,
    /// or - for stdin
    #[arg(value_name = "INPUT", required = true)]
    pub input: Option<PathBuf>,

    /// Read the input as this format instead of guessing from the file name
    #[arg(long, value_enum, help_heading = "Input")]
    pub format: Option<Format>,

    /// Take FIELD from the column headed HEADER (repeatable), e.g. --column user="Matrix account"
    #[arg(long = "column", value_name = "FIELD=HEADER", help_heading = "Input")]
    pub columns: Vec<String>,

    /// CSV delimiter (default: `,` `;` or tab, whichever the header line uses)
    #[arg(long, value_parser = parse_delimiter, help_heading = "Input")]
    pub delimiter: Option<u8>,

    /// Which sheet of an .xlsx or .ods workbook (default: the first)
    #[arg(long, value_name = "NAME", help_heading = "Input")]
    pub sheet: Option<String>,

    /// What a CSV or JSON input is written in when it is not UTF-8, e.g. windows-1252
    /// (UTF-16 with a byte order mark is read without it)
    #[arg(long, value_name = "LABEL", help_heading = "Input")]
    pub encoding: Option<String>,

    /// Make each user's localpart from the email column: the part before `@`, lowercased
    /// (`Jose.Muller@example.org` -> `jose.muller`); the email stays the account's email
    #[arg(long, value_name = "COLUMN", value_parser = ["email"], help_heading = "Input")]
    pub localpart_from: Option<String>,

    #[command(flatten)]
    pub server: ServerArgs,

    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Homeserver")]
pub struct ServerArgs {
    /// Homeserver base URL, e.g. https://matrix.example.org
    #[arg(long, env = "SYNBATCH_HOMESERVER", value_name = "URL")]
    pub homeserver: Option<String>,

    /// File holding an admin's access token (or set SYNBATCH_TOKEN)
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// Refused: a token on the command line is visible to everyone in `ps`. Kept as a `Token`,
    /// whose Debug output hides it.
    #[arg(long, hide = true, value_parser = |s: &str| Ok::<_, String>(Token::new(s.to_string())))]
    pub token: Option<Token>,

    /// Server name for bare localparts (default: the server of the token's own user)
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,

    /// Allow plain http to a host that is not this machine (the token travels in clear)
    #[arg(long)]
    pub allow_insecure_http: bool,

    /// Seconds to wait for each answer before trying again (at most a day)
    #[arg(long, value_name = "SECS", default_value_t = 30.0, value_parser = seconds)]
    pub timeout: f64,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Run")]
pub struct RunArgs {
    /// Requests in flight at once, at most [default: 8; create-users: 16; deactivate: 2]
    #[arg(short = 'j', long, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: Option<u16>,

    /// Rows started per second, at most (each attempt at a row counts; a row may make more
    /// than one request). Default: no limit beyond --concurrency
    #[arg(long, value_name = "N", value_parser = rate)]
    pub rate: Option<f64>,

    /// Retries of a row after a passing failure (500-504, timeout, lost connection), 0 to 100
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = retries)]
    pub retries: u32,

    /// Results file (default: <input>.results.csv beside the input)
    #[arg(short = 'o', long = "results", value_name = "PATH")]
    pub results: Option<PathBuf>,

    /// Skip rows that the results file already records as ok or unchanged
    #[arg(long, conflicts_with = "retry_failed")]
    pub resume: bool,

    /// Run only the rows whose latest status in the results file is failed
    #[arg(long)]
    pub retry_failed: bool,

    /// Show what would be sent; change nothing, write no results
    #[arg(long)]
    pub dry_run: bool,

    /// A dry run that also asks the server, read-only, which rows would fail and why
    #[arg(long)]
    pub check: bool,

    /// Do not ask for confirmation before a job that cannot be undone
    #[arg(short = 'y', long)]
    pub yes: bool,

    /// Print only errors and the summary
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Print every row as it finishes
    #[arg(short, long)]
    pub verbose: bool,

    /// Write a JSON summary of the run (counts, failures by cause, exit code) to FILE, or to
    /// stdout with `-` (nothing else is written there then)
    #[arg(long, value_name = "FILE|-", value_parser = Destination::parse)]
    pub summary_json: Option<Destination>,
    /// Write the input sheet back to OUT (.csv or .xlsx) in its own order, every column kept,
    /// with status, message, resolved_user and sheet_row added; at the end of each run,
    /// --resume included
    #[arg(long, value_name = "OUT")]
    pub annotate: Option<PathBuf>,
    /// Lift the token's own rate limit for the run (invite, kick: jobs that act as the token's
    /// user), and put the previous value back at the end; see README "Rate limits"
    #[arg(long)]
    pub lift_ratelimit: bool,
}

/// A number within `min..=max`, said in the message so that a person can fix it.
fn number_in(s: &str, min: f64, max: f64) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (min..=max).contains(&v) => Ok(v),
        Ok(v) if v.is_finite() => Err(format!("`{s}` is out of range: from {min} to {max}")),
        _ => Err(format!("`{s}` is not a number")),
    }
}

/// `--rate`: from one row in 1000 s to 10,000 a second (no server takes more).
pub fn rate(s: &str) -> Result<f64, String> {
    number_in(s, 0.001, 10_000.0)
}

/// `--timeout`: from a millisecond to a day.
pub fn seconds(s: &str) -> Result<f64, String> {
    number_in(s, 0.001, 86_400.0)
}

/// `--retries`: 0 to 100 (with the 30 s backoff cap, 100 is nearly an hour per row).
pub fn retries(s: &str) -> Result<u32, String> {
    let n: u32 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a whole number from 0 to 100"))?;
    if n > 100 {
        return Err(format!("`{s}` is out of range: from 0 to 100"));
    }
    Ok(n)
}

fn parse_delimiter(s: &str) -> Result<u8, String> {
    match s {
        "\\t" | "tab" => Ok(b'\t'),
        _ if s.len() == 1 && s.is_ascii() => Ok(s.as_bytes()[0]),
        _ => Err(format!(
            "`{s}` is not a single character (use `tab` for a tab)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn numbers_out_of_range_are_refused_not_panicked_on() {
        for bad in ["1e10", "1e-20", "0", "-1", "inf", "NaN", "x"] {
            assert!(rate(bad).is_err(), "--rate {bad}");
        }
        for bad in ["1e20", "0", "-3", "inf"] {
            assert!(seconds(bad).is_err(), "--timeout {bad}");
        }
        for bad in ["4294967295", "101", "-1", "1.5"] {
            assert!(retries(bad).is_err(), "--retries {bad}");
        }
        assert_eq!(rate("2.5"), Ok(2.5));
        assert_eq!(seconds("0.5"), Ok(0.5));
        assert_eq!(retries("100"), Ok(100));
    }

    #[test]
    fn delimiters() {
        assert_eq!(parse_delimiter(";"), Ok(b';'));
        assert_eq!(parse_delimiter("tab"), Ok(b'\t'));
        assert!(parse_delimiter(";;").is_err());
    }
}
