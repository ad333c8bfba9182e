//! The command line: global options shared by every job, and one subcommand per job.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::input::Format;

const ABOUT: &str = "Bulk administration jobs for a Matrix homeserver (Synapse), from spreadsheets.

Each row of a CSV, JSON or JSON Lines file becomes one operation; operations run concurrently \
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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Join users to rooms (admin API; columns: user, room)
    #[command(
        long_about = "Join users to rooms through the admin API \
            (POST /_synapse/admin/v1/join/<room>).\n\n\
            Columns: user (a user id, a localpart or an email address) and room (a room id or \
            alias). With --room, every user in the file is joined to each named room: the file \
            then needs only a user column. Users must be local. For a room that is not public, \
            the admin must be in the room with power to invite. A user already in the room is \
            recorded as `unchanged`.",
        after_help = "Examples:\n  \
            synbatch join new-hires.csv --homeserver https://matrix.example.org --token-file admin.token\n  \
            synbatch join staff.csv --room '#general:example.org' --room '#random:example.org'\n  \
            synbatch join new-hires.csv --resume"
    )]
    Join(JoinArgs),
}

#[derive(Debug, Args)]
pub struct JoinArgs {
    /// Join every user of the input to this room too (repeatable): users x rooms
    #[arg(long = "room", value_name = "ROOM")]
    pub rooms: Vec<String>,

    #[command(flatten)]
    pub job: JobArgs,
}

/// What every row job takes: the input, the homeserver, and how to run.
#[derive(Debug, Args)]
pub struct JobArgs {
    /// The rows: a .csv, .json (array of objects) or .jsonl/.ndjson file, or - for stdin
    #[arg(value_name = "INPUT")]
    pub input: PathBuf,

    /// Read the input as this format instead of guessing from the file name
    #[arg(long, value_enum, help_heading = "Input")]
    pub format: Option<Format>,

    /// Take FIELD from the column headed HEADER (repeatable), e.g. --column user="Matrix account"
    #[arg(long = "column", value_name = "FIELD=HEADER", help_heading = "Input")]
    pub columns: Vec<String>,

    /// CSV delimiter (default: `,` `;` or tab, whichever the header line uses)
    #[arg(long, value_parser = parse_delimiter, help_heading = "Input")]
    pub delimiter: Option<u8>,

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

    /// Refused: a token on the command line is visible to everyone in `ps`
    #[arg(long, hide = true)]
    pub token: Option<String>,

    /// Server name for bare localparts (default: the server of the token's own user)
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,

    /// Allow plain http to a host that is not this machine (the token travels in clear)
    #[arg(long)]
    pub allow_insecure_http: bool,

    /// Seconds to wait for each answer before trying again
    #[arg(long, value_name = "SECS", default_value_t = 30.0, value_parser = positive)]
    pub timeout: f64,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Run")]
pub struct RunArgs {
    /// Requests in flight at once, at most
    #[arg(short = 'j', long, value_name = "N", default_value_t = 8,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,

    /// Requests started per second, at most (default: no limit beyond --concurrency)
    #[arg(long, value_name = "N", value_parser = positive)]
    pub rate: Option<f64>,

    /// Retries of a row after a passing failure (429, 502-504, timeout, lost connection)
    #[arg(long, value_name = "N", default_value_t = 5)]
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

    /// Show what would be sent; send nothing, write no results
    #[arg(long)]
    pub dry_run: bool,

    /// Print only errors and the summary
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Print every row as it finishes
    #[arg(short, long)]
    pub verbose: bool,
}

fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a positive number")),
    }
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
    fn delimiters() {
        assert_eq!(parse_delimiter(";"), Ok(b';'));
        assert_eq!(parse_delimiter("tab"), Ok(b'\t'));
        assert!(parse_delimiter(";;").is_err());
    }
}
