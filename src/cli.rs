//! The command line: global options shared by every job, and one subcommand per job.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::homeserver::Token;
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

    /// Map users to an SSO provider's ids, keeping their other mappings (columns: user,
    /// provider, external_id)
    #[command(
        long_about = "Map accounts to an SSO provider's subject ids through the admin API (GET, \
            then PUT /_synapse/admin/v2/users/<user_id> with the recomputed external_ids).\n\n\
            Columns: user (a local user id, localpart or email address), provider (as Synapse \
            stores it: oidc-<idp_id> for OIDC, saml, cas) and external_id (the subject id). The \
            row's pair replaces any other id the account has for that provider; its other \
            mappings are kept. With --drop-provider OLD, OLD's mappings go in the same PUT: the \
            switch from OLD to the new provider is one change per account, so nobody is ever \
            left with neither or both.\n\n\
            An account that does not exist is `failed` (never created). An account already \
            mapped exactly so is `unchanged`. A pair that another account owns (409) is \
            `failed`, and the message names that account. Rows for the same account run one \
            after the other, so they all take effect.",
        after_help = "Examples:\n  \
            synbatch set-external-id mapping.csv --drop-provider oidc-old --dry-run --check\n  \
            synbatch set-external-id mapping.csv --drop-provider oidc-old\n  \
            synbatch set-external-id mapping.csv --retry-failed"
    )]
    SetExternalId(SetExternalIdArgs),

    /// Remove SSO mappings from users, keeping the rest (columns: user, [provider,
    /// external_id]; or --all-users --provider P)
    #[command(
        long_about = "Remove SSO mappings from accounts through the admin API (GET, then PUT \
            /_synapse/admin/v2/users/<user_id> with the rest of the external_ids).\n\n\
            Columns: user, provider and optionally external_id (then only that one id goes). \
            --provider P names the provider for every row, so the input needs only a user \
            column: the output of `synbatch export-users` will do. --all-users --provider P \
            takes every account of the server (deactivated and locked ones included) as the \
            input: the whole-server sweep.\n\n\
            An account with nothing to remove is `unchanged`; a missing account is `failed` \
            (never created). This cannot be undone (the results file records each account's \
            mappings before the change): synbatch asks first on a terminal, and needs --yes \
            anywhere else.",
        after_help = "Examples:\n  \
            synbatch remove-external-id --all-users --provider oidc-old --dry-run\n  \
            synbatch remove-external-id --all-users --provider oidc-old --yes\n  \
            synbatch export-users --provider oidc-old | synbatch remove-external-id - --provider oidc-old --yes\n  \
            synbatch remove-external-id rows.csv"
    )]
    RemoveExternalId(RemoveExternalIdArgs),

    /// Delete media by id (admin API; column: media)
    #[command(
        long_about = "Delete items of the local media repository through the admin API \
            (DELETE /_synapse/admin/v1/media/<server_name>/<media_id>).\n\n\
            Column: media, an mxc:// URI (mxc://example.org/AbCdEf) or a bare media id of this \
            server. Media of other servers are `invalid` (Synapse only caches them). An item \
            that is already gone (404 Unknown media) is `unchanged`. This cannot be undone: \
            synbatch asks first on a terminal, and needs --yes anywhere else.",
        after_help = "Examples:\n  \
            synbatch delete-media reported.csv --dry-run --check\n  \
            synbatch delete-media reported.csv --yes"
    )]
    DeleteMedia(DeleteMediaArgs),

    /// Delete all local media last accessed before a date (admin API; no input file)
    #[command(
        long_about = "Delete every local media item last accessed (or, if never downloaded, \
            uploaded) before a time, in one call to the admin API \
            (POST /_synapse/admin/v1/media/delete?before_ts=...).\n\n\
            --before takes a date (2024-01-01, midnight UTC), an RFC 3339 time \
            (2024-01-01T12:00:00+02:00) or a duration ago (90d, 12h, 2w). A bare number is \
            milliseconds since 1970; one that would mean 1970 (seconds passed by mistake) is \
            refused. --size-gt deletes only larger items; profile pictures and room avatars are \
            kept unless --keep-profiles false. Synapse skips quarantined and protected media.\n\n\
            synbatch shows what it will do and asks first (or needs --yes), then writes one \
            results line per deleted media id.",
        after_help = "Examples:\n  \
            synbatch purge-media --before 2024-01-01 --dry-run\n  \
            synbatch purge-media --before 90d --size-gt 10000000 --yes"
    )]
    PurgeMedia(PurgeMediaArgs),

    /// Export every account to CSV or JSON Lines (usable as input for the row jobs)
    #[command(
        long_about = "Export the server's accounts, every page of the admin account list \
            (GET /_synapse/admin/v2/users), to CSV (default) or JSON Lines, on stdout or -o \
            FILE.\n\n\
            Columns: user, displayname, admin, deactivated, user_type, creation_ts \
            (milliseconds). --with-external-ids adds an external_ids column of \
            provider:id pairs joined by `;` (a `%` or `;` in a value is written %25 or %3B), \
            read with one GET per account through the same concurrent, rate-limited executor \
            as the row jobs. The `user` column makes the output a valid input for every row \
            job.\n\n\
            Filters: --deactivated includes deactivated accounts (locked ones are always \
            in), --guests includes guests, \
            --admins keeps only admins, --name N keeps accounts whose localpart or display name \
            contains N, --provider P keeps only accounts with a mapping for P.",
        after_help = "Examples:\n  \
            synbatch export-users -o users.csv --with-external-ids\n  \
            synbatch export-users --deactivated --format jsonl -o all.jsonl\n  \
            synbatch export-users --provider oidc-old | synbatch remove-external-id - --provider oidc-old --yes"
    )]
    ExportUsers(ExportUsersArgs),

    /// Invite users to rooms (Client-Server API; columns: user, room, [reason])
    #[command(
        long_about = "Invite users to rooms through the Client-Server API, as the token's own user \
            (POST /_matrix/client/v3/rooms/<room_id>/invite).\n\n\
            Columns: user, room and an optional reason. Aliases are resolved once each. Remote \
            users may be invited. The token's user must be in the room with power to invite. A \
            user already invited or already in the room is recorded as `unchanged`. Synapse \
            rate-limits invites, admins included: synbatch waits as it asks, and no row is lost.",
        after_help = "Examples:\n  \
            synbatch invite guests.csv\n  \
            synbatch invite partners.csv --room '#project-x:example.org'"
    )]
    Invite(JoinArgs),

    /// Kick users from rooms (Client-Server API; columns: user, room, [reason])
    #[command(
        long_about = "Kick users from rooms through the Client-Server API, as the token's own user \
            (POST /_matrix/client/v3/rooms/<room_id>/kick).\n\n\
            Columns: user, room and an optional reason. Kicking an invited user withdraws the \
            invitation. The token's user must be in the room with power to kick. A user who is \
            not in the room is recorded as `unchanged`.",
        after_help = "Examples:\n  \
            synbatch kick leavers.csv --room '#staff:example.org' --room '#random:example.org'"
    )]
    Kick(JoinArgs),

    /// Create accounts (admin API; columns: user, [displayname, password, email, admin, ...])
    #[command(
        long_about = "Create accounts through the admin API (PUT \
            /_synapse/admin/v2/users/<user_id>, once the account list or a GET has said the \
            account is absent).\n\n\
            Columns: user (a user id or localpart), and optionally displayname, password, email \
            (becomes an email threepid), admin (true/false/yes/no/1/0), user_type, provider and \
            external_id (an SSO mapping: give both). An account that exists already is left \
            alone (`unchanged`) by default; --on-existing update changes only the columns given; \
            --on-existing fail records it as failed. --join ROOM joins each account to ROOM as \
            part of its row: the row is `ok` only when all of it is done, and a rerun finishes \
            what is missing. Passwords are never written to the results file.",
        after_help = "Examples:\n  \
            synbatch create-users hires.csv --generate-passwords passwords.csv --join '#general:example.org'\n  \
            synbatch create-users hires.csv --on-existing update"
    )]
    CreateUsers(CreateUsersArgs),

    /// Deactivate accounts (admin API; columns: user, [erase])
    #[command(
        long_about = "Deactivate accounts through the admin API \
            (POST /_synapse/admin/v1/deactivate/<user_id>).\n\n\
            Columns: user, and optionally erase (true/false) to override --erase for that row. \
            With erase, Synapse also forgets the user's display name, avatar and messages for \
            users who join later (GDPR erasure). An account already deactivated is recorded as \
            `unchanged`. This cannot be undone: synbatch asks first on a terminal, and needs \
            --yes anywhere else.",
        after_help = "Examples:\n  \
            synbatch deactivate leavers.csv\n  \
            synbatch deactivate gdpr-requests.csv --erase --yes"
    )]
    Deactivate(DeactivateArgs),

    /// Summarise a results file; write its failed rows as a new input
    #[command(
        long_about = "Summarise a results file: the latest status of every key, counts by status \
            and by errcode with a sample message each. With --failed, the rows whose latest \
            status is `failed` are written as a new input file for the same job.\n\n\
            Exit code: 0 when no key is failed or invalid, 1 otherwise, 2 when the file cannot \
            be read.",
        after_help = "Examples:\n  \
            synbatch report new-hires.results.csv\n  \
            synbatch report new-hires.results.csv --failed retry.csv && synbatch join retry.csv"
    )]
    Report(ReportArgs),
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

    /// Seconds to wait for each answer before trying again
    #[arg(long, value_name = "SECS", default_value_t = 30.0, value_parser = positive)]
    pub timeout: f64,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Run")]
pub struct RunArgs {
    /// Requests in flight at once, at most [default: 8; create-users: 16]
    #[arg(short = 'j', long, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: Option<u16>,

    /// Rows started per second, at most (each attempt at a row counts; a row may make more
    /// than one request). Default: no limit beyond --concurrency
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnExisting {
    /// Leave the account as it is (`unchanged`)
    Skip,
    /// Change the columns given (`ok`, or `unchanged` when they already match)
    Update,
    /// Record the row as failed
    Fail,
}

#[derive(Debug, Args)]
pub struct CreateUsersArgs {
    /// What to do with an account that exists already
    #[arg(long, value_enum, default_value = "skip")]
    pub on_existing: OnExisting,

    /// Give every new account without a password a strong random one, written as user,password
    /// to FILE (created with mode 0600; never to the results or the terminal)
    #[arg(long, value_name = "FILE")]
    pub generate_passwords: Option<PathBuf>,

    /// Join every account to this room too, as part of its row (repeatable)
    #[arg(long = "join", value_name = "ROOM")]
    pub join: Vec<String>,

    #[command(flatten)]
    pub job: JobArgs,
}

#[derive(Debug, Args)]
pub struct DeactivateArgs {
    /// Also erase the users (GDPR): rows with an `erase` column say so for themselves
    #[arg(long)]
    pub erase: bool,

    #[command(flatten)]
    pub job: JobArgs,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The results file of an earlier run
    #[arg(value_name = "RESULTS")]
    pub results: PathBuf,

    /// Write the rows whose latest status is `failed` to OUT, as input for the same job
    #[arg(long, value_name = "OUT")]
    pub failed: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SetExternalIdArgs {
    /// Also remove this provider's mappings in the same PUT (repeatable): the switch from OLD
    /// to the row's provider is one change per account
    #[arg(long = "drop-provider", value_name = "OLD")]
    pub drop_provider: Vec<String>,

    #[command(flatten)]
    pub job: JobArgs,
}

#[derive(Debug, Args)]
#[command(mut_arg("input", |a| a
    .required(false)
    .required_unless_present("all_users")
    .default_value("-")))]
pub struct RemoveExternalIdArgs {
    /// The provider whose mappings go, for every row (the input then needs only a user column)
    #[arg(long, value_name = "P")]
    pub provider: Option<String>,

    /// Take every account of the server (deactivated and locked ones included) as the input
    #[arg(long, requires = "provider", conflicts_with = "input")]
    pub all_users: bool,

    /// Accounts per page of the account list, with --all-users
    #[arg(long, hide = true, default_value_t = 500,
          value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub page_size: u32,

    #[command(flatten)]
    pub job: JobArgs,
}

#[derive(Debug, Args)]
pub struct DeleteMediaArgs {
    #[command(flatten)]
    pub job: JobArgs,
}

#[derive(Debug, Args)]
pub struct PurgeMediaArgs {
    /// Delete media last accessed before this: 2024-01-01, 2024-01-01T12:00:00Z, or 90d (ago)
    #[arg(long, value_name = "WHEN")]
    pub before: String,

    /// Only media larger than this many bytes
    #[arg(long, value_name = "BYTES")]
    pub size_gt: Option<u64>,

    /// Keep media used as a user's or room's avatar (false deletes them too)
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub keep_profiles: bool,

    /// Results file: one line per deleted media id (default: purge-media.results.csv)
    #[arg(short = 'o', long = "results", value_name = "PATH")]
    pub results: Option<PathBuf>,

    /// Show what would be deleted; send nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Do not ask for confirmation
    #[arg(short = 'y', long)]
    pub yes: bool,

    /// Retries after a passing failure (the purge is safe to repeat)
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub retries: u32,

    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Csv,
    Jsonl,
}

#[derive(Debug, Args)]
pub struct ExportUsersArgs {
    /// Write to FILE instead of stdout (the format follows a .jsonl/.ndjson extension)
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Output format (default: csv, or jsonl for a .jsonl/.ndjson FILE)
    #[arg(long, value_enum)]
    pub format: Option<ExportFormat>,

    /// Add an external_ids column: provider:id pairs joined by `;` (one GET per account)
    #[arg(long)]
    pub with_external_ids: bool,

    /// Include deactivated accounts
    #[arg(long)]
    pub deactivated: bool,

    /// Only server admins
    #[arg(long)]
    pub admins: bool,

    /// Include guest accounts
    #[arg(long)]
    pub guests: bool,

    /// Only accounts whose localpart or display name contains N
    #[arg(long, value_name = "N")]
    pub name: Option<String>,

    /// Only accounts with a mapping for provider P (one GET per account)
    #[arg(long, value_name = "P")]
    pub provider: Option<String>,

    /// Accounts per page of the list (hidden: for tests)
    #[arg(long, hide = true, default_value_t = 500,
          value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub page_size: u32,

    /// GETs in flight at once, at most (with --with-external-ids or --provider)
    #[arg(short = 'j', long, value_name = "N", default_value_t = 8,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,

    /// GETs started per second, at most
    #[arg(long, value_name = "N", value_parser = positive)]
    pub rate: Option<f64>,

    /// Retries after a passing failure
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub retries: u32,

    #[command(flatten)]
    pub server: ServerArgs,
}
