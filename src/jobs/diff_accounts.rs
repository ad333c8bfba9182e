//! `diff-accounts`: the local accounts that an HR list of who should have one does not name,
//! written as an input file for `deactivate`. It changes nothing on the server.
//!
//! Reads: the list's email addresses (`GET /_synapse/admin/v1/threepid/email/users/<address>`,
//! once each) and the account list (`GET /_synapse/admin/v2/users`, page after page, without
//! deactivated accounts and guests). Skipped: admins, deactivated accounts, `--keep` and
//! `--keep-file` users, and the token's own user.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;

use clap::Args as ClapArgs;
use tokio_util::sync::CancellationToken;

use crate::cli::ServerArgs;
use crate::connect;
use crate::executor::{self, Fail, Limits, Stop};
use crate::exit::Exit;
use crate::homeserver::{HsError, UserQuery};
use crate::input::ids::{self, UserRef};
use crate::input::{Binder, Format, Input, InputSpec, USER};
use crate::job::classify::transient;
use crate::job::required;
use crate::job::user_list::Pager;
use crate::results::file::{Output, open_output};

/// Write the local accounts missing from an HR list as a `deactivate` input (changes nothing)
#[derive(Debug, ClapArgs)]
#[command(
    long_about = "Read an HR list of who should have an account (a user column: user id, \
        localpart or email address) and write the server's local accounts that it does not \
        name to -o FILE, a CSV with a user column that `synbatch deactivate` takes as input. \
        Nothing on the server is changed.\n\n\
        Never written: server admins, accounts already deactivated, guests, --keep and \
        --keep-file users, and the token's own user. A list with an unreadable row stops \
        before anything is written: the person on that row would be listed as a leaver.",
    after_help = "Examples:\n  \
        synbatch diff-accounts hr-active.csv -o leavers.csv --keep @bot:example.org\n  \
        synbatch deactivate leavers.csv --dry-run     # look before you leap\n  \
        synbatch deactivate leavers.csv --yes"
)]
pub struct Args {
    /// The HR list: a .csv, .json or .jsonl file with a user column, or - for stdin
    #[arg(value_name = "SHEET")]
    pub input: PathBuf,

    /// Where to write the accounts missing from the list (a `deactivate` input)
    #[arg(short = 'o', long = "output", value_name = "FILE", required = true)]
    pub output: PathBuf,

    /// Replace FILE if it exists
    #[arg(long)]
    pub force: bool,

    /// Never list this user (repeatable)
    #[arg(long, value_name = "USER")]
    pub keep: Vec<String>,

    /// Never list the users in FILE (one a line; blank lines and lines from # ignored)
    #[arg(long, value_name = "FILE")]
    pub keep_file: Option<PathBuf>,

    /// Read the input as this format instead of guessing from the file name
    #[arg(long, value_enum, help_heading = "Input")]
    pub format: Option<Format>,

    /// Take FIELD from the column headed HEADER, e.g. --column user="Work email"
    #[arg(long = "column", value_name = "FIELD=HEADER", help_heading = "Input")]
    pub columns: Vec<String>,

    /// Which sheet of an .xlsx or .ods SHEET (default: the first)
    #[arg(long, value_name = "NAME", help_heading = "Input")]
    pub sheet: Option<String>,

    /// What a CSV SHEET is written in when it is not UTF-8, e.g. windows-1252
    #[arg(long, value_name = "LABEL", help_heading = "Input")]
    pub encoding: Option<String>,

    /// Accounts per page of the list (hidden: for tests)
    #[arg(long, hide = true, default_value_t = 500,
          value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub page_size: u32,

    /// Retries of a read after a passing failure
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = crate::cli::retries)]
    pub retries: u32,

    #[command(flatten)]
    pub server: ServerArgs,
}

pub async fn run(args: Args) -> Result<(), Exit> {
    connect::check(&args.server)?;
    let out_name = args.output.display().to_string();
    if !args.force && std::fs::symlink_metadata(&args.output).is_ok() {
        return Err(Exit::usage(format!(
            "-o {out_name} exists already: pass --force to replace it"
        )));
    }
    let keep_lines = match &args.keep_file {
        Some(path) => super::sync_members::read_keep_file(path)?,
        None => vec![],
    };
    let spec = InputSpec {
        path: Some(args.input.clone()).filter(|p| p.as_os_str() != "-"),
        format: args.format,
        delimiter: None,
        encoding: args.encoding.clone(),
        sheet: args.sheet.clone(),
    };
    let input = Input::open(&spec, Binder::new(&[USER], &args.columns)?, &["user"])?;
    let conn = connect::connect(&args.server, 1, true).await?;
    let (hs, me, server_name) = (conn.hs, conn.me, conn.server_name);
    let mut keep: HashSet<String> = HashSet::from([me.clone()]);
    for user in args.keep.iter().chain(&keep_lines) {
        match ids::user(user, &server_name) {
            Ok(UserRef::Mxid(id)) => keep.insert(id),
            _ => {
                return Err(Exit::usage(format!(
                    "--keep: `{user}` is not a user id or localpart"
                )));
            }
        };
    }

    let mut listed: Vec<UserRef> = vec![];
    let mut invalid: Vec<String> = vec![];
    input.for_each_row(|row| {
        let user =
            row.cells.as_ref().map_err(Clone::clone).and_then(|cells| {
                required(cells, 0, "user").and_then(|u| ids::user(u, &server_name))
            });
        match user {
            Ok(user) => listed.push(user),
            Err(why) => invalid.push(format!("row {}: {why}", row.number)),
        }
        true
    })?;
    if !invalid.is_empty() {
        for why in &invalid {
            eprintln!("invalid: {why}");
        }
        return Err(Exit::usage(format!(
            "{} row(s) of {} cannot be read (listed above): nothing was written. The people \
             on them would be listed as leavers; fix the rows and rerun",
            invalid.len(),
            spec.name()
        )));
    }

    let limits = Limits::new(1, None, args.retries);
    let cancel = CancellationToken::new();
    let mut wanted: HashSet<String> = HashSet::new();
    let mut unknown_emails = 0;
    for user in listed {
        match user {
            UserRef::Mxid(id) => {
                wanted.insert(id);
            }
            UserRef::Email(address) => {
                let attempt = || async {
                    match hs.user_by_email(&address).await {
                        Ok(id) => Ok(Ok(id)),
                        Err(e) => match transient(&e) {
                            Some(kind) => Err(Fail::Retry { last: Err(e), kind }),
                            None => Ok(Err(e)),
                        },
                    }
                };
                match executor::once(&limits, &cancel, attempt).await {
                    Ok((Ok(id), _)) => {
                        wanted.insert(id);
                    }
                    Ok((Err(HsError::Status { status: 404, .. }), _)) => unknown_emails += 1,
                    Ok((Err(e), _)) => {
                        return Err(Exit::aborted(format!(
                            "looking up {address}: {e}; nothing was written"
                        )));
                    }
                    Err(Stop::Aborted(why)) => {
                        return Err(Exit::aborted(format!("{why}; nothing was written")));
                    }
                    Err(_) => return Err(Exit::Interrupted),
                }
            }
        }
    }

    let query = UserQuery {
        limit: args.page_size,
        deactivated: false,
        guests: false,
        admins_only: false,
        name: None,
    };
    let mut pager = Pager::new(&hs, query, args.retries);
    let mut leavers = vec![];
    let (mut accounts, mut skipped) = (0u64, 0u64);
    while let Some(page) = pager
        .next_page()
        .await
        .map_err(|e| Exit::aborted(format!("{e}; nothing was written")))?
    {
        for user in page {
            accounts += 1;
            if wanted.contains(&user.name) {
                continue;
            }
            // The list without `deactivated=true` has none; an answer that says otherwise is
            // still not written.
            if user.admin || user.deactivated || keep.contains(&user.name) {
                skipped += 1;
                continue;
            }
            leavers.push(user.name);
        }
    }

    let (file, _) = open_output(&args.output, Output::Replace)
        .map_err(|e| Exit::usage(format!("-o {out_name}: {e}")))?;
    let mut out = csv::Writer::from_writer(std::io::BufWriter::new(file));
    let written = (|| -> Result<(), Box<dyn std::error::Error>> {
        out.write_record(["user"])?;
        for user in &leavers {
            out.write_record([user])?;
        }
        out.into_inner().map_err(|e| e.into_error())?.flush()?;
        Ok(())
    })();
    written.map_err(|e| Exit::usage(format!("cannot write {out_name}: {e}")))?;
    eprintln!(
        "diff-accounts: {accounts} active accounts, {} on the list, {} not on it written to \
         {out_name} ({skipped} skipped: admins, --keep, the token's user){}",
        wanted.len(),
        leavers.len(),
        match unknown_emails {
            0 => String::new(),
            n => format!("; {n} email address(es) of the list have no account"),
        }
    );
    eprintln!("next: synbatch deactivate {out_name} --dry-run, then without --dry-run");
    Ok(())
}
