//! `export-users`: every account of the server, streamed to CSV or JSON Lines.
//!
//! `GET /_synapse/admin/v2/users?from=<next_token>&limit=<n>` -> `{"users": [...], "total": N,
//! "next_token": "..."}`, page after page until `next_token` is absent. Never `limit=0` (its
//! `next_token` is "0" forever). Deactivated accounts are listed only with `deactivated=true`,
//! guests only with `guests=true`. `next_token` is an offset, so an account created during the
//! export shifts the next page by one: a name already on the previous page is not written twice.
//!
//! List entries carry no SSO mappings and no email addresses (threepids): with
//! `--with-external-ids`, `--with-emails` (or `--provider`), each account is read with
//! `GET /_synapse/admin/v2/users/<user_id>`, through the same executor as the row jobs
//! (concurrent, rate-limited, retried). Lines keep the list's order. The list does carry
//! `locked` and `last_seen_ts` (milliseconds, null for an account never seen), and
//! `creation_ts` in milliseconds (the single-user GET gives seconds).
//!
//! Columns: user, displayname, admin, deactivated, locked, user_type, created_at and
//! last_seen_at (RFC 3339, UTC; last_seen_at empty if never seen), creation_ts_ms and
//! last_seen_ts_ms (the list's milliseconds); with emails one `emails` cell (addresses joined by
//! `;`), with external ids one `external_ids` cell: `provider:id` pairs joined by `;` (a `%` or
//! `;` inside a value is written `%25` or `%3B`). The `user` column makes the file a valid input
//! for every row job; `emails` is named so that no job takes it for a user column.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use clap::Args as ClapArgs;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::cli::ServerArgs;
use crate::connect;
use crate::executor::{self, Attempt, Finished, Limits, Stop, Work};
use crate::exit::Exit;
use crate::homeserver::{ExternalId, Homeserver, HsError, ListedUser, UserQuery};
use crate::job::user_list::{ListError, Pager};
use crate::job::{Outcome, classify};
use crate::results::Status;
use crate::results::failures::{Failures, Kind};
use crate::results::json::{self, Destination, JsonSummary};

/// How far the lister may run ahead of the line being written (bounds memory).
const WINDOW: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Csv,
    Jsonl,
}

/// Export every account to CSV or JSON Lines (usable as input for the row jobs)
#[derive(Debug, ClapArgs)]
#[command(
    long_about = "Export the server's accounts, every page of the admin account list \
        (GET /_synapse/admin/v2/users), to CSV (default) or JSON Lines, on stdout or -o \
        FILE.\n\n\
        Columns: user, displayname, admin, deactivated, locked, user_type, created_at, \
        creation_ts_ms, last_seen_at, last_seen_ts_ms (times in RFC 3339, UTC, and in \
        milliseconds; last_seen is empty for an account never seen). --with-emails adds an \
        emails column (addresses joined by `;`), --with-external-ids an external_ids column \
        of provider:id pairs joined by `;` (a `%` or `;` in a value is written %25 or %3B); \
        both are read with one GET per account (the list does not carry them) through the \
        same concurrent, rate-limited executor as the row jobs. The `user` column makes the \
        output a valid input for every row job.\n\n\
        Filters: --deactivated includes deactivated accounts (locked ones are always \
        in), --guests includes guests, \
        --admins keeps only admins, --name N keeps accounts whose localpart or display name \
        contains N, --provider P keeps only accounts with a mapping for P.",
    after_help = "Examples:\n  \
        synbatch export-users -o users.csv --with-external-ids --with-emails\n  \
        synbatch export-users --deactivated --format jsonl -o all.jsonl\n  \
        synbatch export-users --provider oidc-old | \\\n      \
        synbatch remove-external-id - --provider oidc-old --yes"
)]
pub struct Args {
    /// Write to FILE instead of stdout (the format follows a .jsonl/.ndjson extension)
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Output format (default: csv, or jsonl for a .jsonl/.ndjson FILE)
    #[arg(long, value_enum)]
    pub format: Option<ExportFormat>,

    /// Add an external_ids column: provider:id pairs joined by `;` (one GET per account)
    #[arg(long)]
    pub with_external_ids: bool,

    /// Add an emails column: the account's email addresses joined by `;` (one GET per
    /// account, shared with --with-external-ids)
    #[arg(long)]
    pub with_emails: bool,

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
    #[arg(long, value_name = "N", value_parser = crate::cli::rate)]
    pub rate: Option<f64>,

    /// Retries after a passing failure
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = crate::cli::retries)]
    pub retries: u32,

    /// Write a JSON summary (accounts written as `ok`, unreadable ones as `failed`, exit code)
    /// to FILE, or to stdout with `-` (then the export needs -o)
    #[arg(long, value_name = "FILE|-", value_parser = Destination::parse)]
    pub summary_json: Option<Destination>,

    #[command(flatten)]
    pub server: ServerArgs,
}

/// One account on its way through the executor, numbered in list order.
struct Listed {
    seq: u64,
    user: ListedUser,
}

/// What only the single-user GET tells of an account.
#[derive(Debug, Default)]
struct Details {
    external_ids: Vec<ExternalId>,
    emails: Vec<String>,
}

/// Reads one account's SSO mappings and emails; an account gone since it was listed is
/// `Err(None)`.
struct ReadMappings {
    hs: Arc<Homeserver>,
}

type Mappings = Result<Details, Option<Outcome>>;

impl Work for ReadMappings {
    type Item = Listed;
    type Output = Mappings;

    async fn attempt(&self, item: &Listed) -> Attempt<Mappings> {
        match self.hs.user(&item.user.name).await {
            Ok(user) => Ok(Ok(Details {
                external_ids: user.external_ids,
                emails: user
                    .threepids
                    .into_iter()
                    .filter(|t| t.medium == "email")
                    .map(|t| t.address)
                    .collect(),
            })),
            Err(HsError::Status { status: 404, .. }) => Ok(Err(None)),
            Err(e) => Err(classify(e).map(|o| Err(Some(o)))),
        }
    }
}

/// Writes accounts as CSV or JSON Lines.
struct Sink {
    format: ExportFormat,
    with_ids: bool,
    with_emails: bool,
    csv: Option<csv::Writer<Box<dyn Write + Send>>>,
    plain: Option<Box<dyn Write + Send>>,
}

fn nonempty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// An instant of the list (milliseconds since 1970) in RFC 3339, UTC; empty when unknown.
fn rfc3339_ms(ms: Option<i64>) -> String {
    ms.and_then(|ms| u64::try_from(ms).ok())
        .map(|ms| json::rfc3339(UNIX_EPOCH + Duration::from_millis(ms)))
        .unwrap_or_default()
}

impl Sink {
    fn new(
        out: Box<dyn Write + Send>,
        format: ExportFormat,
        with_ids: bool,
        with_emails: bool,
    ) -> std::io::Result<Sink> {
        let mut sink = Sink {
            format,
            with_ids,
            with_emails,
            csv: None,
            plain: None,
        };
        match format {
            ExportFormat::Csv => {
                let mut csv = csv::Writer::from_writer(out);
                let mut header = vec![
                    "user",
                    "displayname",
                    "admin",
                    "deactivated",
                    "locked",
                    "user_type",
                    "created_at",
                    "creation_ts_ms",
                    "last_seen_at",
                    "last_seen_ts_ms",
                ];
                if with_emails {
                    header.push("emails");
                }
                if with_ids {
                    header.push("external_ids");
                }
                csv.write_record(&header)?;
                sink.csv = Some(csv);
            }
            ExportFormat::Jsonl => sink.plain = Some(out),
        }
        Ok(sink)
    }

    fn write(&mut self, user: &ListedUser, details: Option<&Details>) -> std::io::Result<()> {
        let cell = details.map(|d| external_ids_cell(&d.external_ids));
        let emails = details.map(|d| d.emails.join(";"));
        let ms = |t: Option<i64>| t.map(|t| t.to_string()).unwrap_or_default();
        let (created_at, last_seen_at) =
            (rfc3339_ms(user.creation_ts), rfc3339_ms(user.last_seen_ts));
        match self.format {
            ExportFormat::Csv => {
                let flag = |b: bool| if b { "true" } else { "false" };
                let (created, last_seen) = (ms(user.creation_ts), ms(user.last_seen_ts));
                let mut record = vec![
                    user.name.as_str(),
                    user.displayname.as_deref().unwrap_or(""),
                    flag(user.admin),
                    flag(user.deactivated),
                    flag(user.locked),
                    user.user_type.as_deref().unwrap_or(""),
                    &created_at,
                    &created,
                    &last_seen_at,
                    &last_seen,
                ];
                if self.with_emails {
                    record.push(emails.as_deref().unwrap_or(""));
                }
                if self.with_ids {
                    record.push(cell.as_deref().unwrap_or(""));
                }
                self.csv.as_mut().expect("csv sink").write_record(&record)?;
            }
            ExportFormat::Jsonl => {
                // A struct, not `json!`: its fields keep this order, `user` first.
                #[derive(serde::Serialize)]
                struct Line<'a> {
                    user: &'a str,
                    displayname: Option<&'a str>,
                    admin: bool,
                    deactivated: bool,
                    locked: bool,
                    user_type: Option<&'a str>,
                    created_at: Option<&'a str>,
                    creation_ts_ms: Option<i64>,
                    last_seen_at: Option<&'a str>,
                    last_seen_ts_ms: Option<i64>,
                    #[serde(skip_serializing_if = "Option::is_none")]
                    emails: Option<Vec<&'a str>>,
                    #[serde(skip_serializing_if = "Option::is_none")]
                    external_ids: Option<String>,
                }
                let line = Line {
                    user: &user.name,
                    displayname: user.displayname.as_deref(),
                    admin: user.admin,
                    deactivated: user.deactivated,
                    locked: user.locked,
                    user_type: user.user_type.as_deref(),
                    created_at: nonempty(&created_at),
                    creation_ts_ms: user.creation_ts,
                    last_seen_at: nonempty(&last_seen_at),
                    last_seen_ts_ms: user.last_seen_ts,
                    emails: self.with_emails.then(|| {
                        details.map_or(vec![], |d| d.emails.iter().map(String::as_str).collect())
                    }),
                    external_ids: if self.with_ids {
                        Some(cell.unwrap_or_default())
                    } else {
                        None
                    },
                };
                let out = self.plain.as_mut().expect("jsonl sink");
                serde_json::to_writer(&mut *out, &line)?;
                out.write_all(b"\n")?;
            }
        }
        Ok(())
    }

    fn finish(self) -> std::io::Result<()> {
        if let Some(mut csv) = self.csv {
            csv.flush()?;
        }
        if let Some(mut out) = self.plain {
            out.flush()?;
        }
        Ok(())
    }
}

/// `provider:id;provider:id`, with `%` and `;` inside a value percent-encoded.
pub fn external_ids_cell(ids: &[ExternalId]) -> String {
    let escape = |s: &str| s.replace('%', "%25").replace(';', "%3B");
    ids.iter()
        .map(|m| format!("{}:{}", escape(&m.auth_provider), escape(&m.external_id)))
        .collect::<Vec<_>>()
        .join(";")
}

/// Counts for the summary.
#[derive(Default)]
struct Counts {
    written: u64,
    /// Listed, but without a mapping for `--provider`.
    filtered: u64,
    /// Gone between the list and the GET.
    vanished: u64,
    /// Their mappings could not be read.
    unread: u64,
    /// Why, by kind, for `--summary-json`.
    failures: Failures,
}

/// The export job, and its `--summary-json` however it ends.
pub async fn run(args: Args) -> Result<(), Exit> {
    if args.summary_json == Some(Destination::Stdout) && args.output.is_none() {
        return Err(Exit::usage(
            "--summary-json - and the export would both go to stdout: write the export with \
             -o FILE, or the summary to a file",
        ));
    }
    let clock = json::Clock::start();
    let own: Vec<&Path> = args.output.as_deref().into_iter().collect();
    let out = json::open(args.summary_json.as_ref(), &own)?;
    let mut summary = JsonSummary::new(json::Source::Run, Some("export-users"));
    let ended = export(&args, &mut summary).await;
    json::finish(out, summary, &clock, ended)
}

/// Lists the accounts (and reads each one when asked for what only that tells) into the output.
async fn export(args: &Args, summary: &mut JsonSummary) -> Result<(), Exit> {
    connect::check(&args.server)?;
    let provider = args.provider.as_deref().map(str::trim).map(String::from);
    if provider.as_deref() == Some("") {
        return Err(Exit::usage("--provider is empty"));
    }
    let format = args
        .format
        .unwrap_or_else(|| by_extension(args.output.as_deref()));
    // Refused before anything is sent; removed again if the export does not end whole.
    let (output, out): (Option<OutputFile>, Box<dyn Write + Send>) = match &args.output {
        Some(path) => {
            let (output, file) = OutputFile::create(path)?;
            (Some(output), Box::new(BufWriter::new(file)))
        }
        None => (None, Box::new(BufWriter::new(std::io::stdout()))),
    };
    let pool = usize::from(args.concurrency);
    let conn = connect::connect(&args.server, pool, true).await?;
    if args.guests && conn.delegated {
        eprintln!(
            "note: the server delegates accounts to MAS, which has no guest accounts: --guests \
             adds none"
        );
    }
    let query = UserQuery {
        limit: args.page_size,
        deactivated: args.deactivated,
        guests: args.guests,
        admins_only: args.admins,
        name: args.name.clone(),
    };
    let where_to = args
        .output
        .as_ref()
        .map_or("stdout".to_string(), |p| p.display().to_string());
    let out_error = |e: std::io::Error| Exit::aborted(format!("cannot write to {where_to}: {e}"));
    let sink =
        Sink::new(out, format, args.with_external_ids, args.with_emails).map_err(out_error)?;

    let started = Instant::now();
    let need_ids = args.with_external_ids || args.with_emails || provider.is_some();
    let limits = Limits::new(pool, args.rate, args.retries);
    let (counts, total, end) = if need_ids {
        export_with_mappings(conn.hs, query, limits, provider.clone(), sink).await
    } else {
        export_list(&conn.hs, query, args.retries, sink).await
    };
    let elapsed = started.elapsed();
    summary.rows = counts.written + counts.unread;
    summary.counts.ok = counts.written;
    summary.counts.failed = counts.unread;
    summary.set_failures(&counts.failures);
    match end {
        Ok(()) => {}
        Err(Ended::List(ListError::Abort(reason))) => {
            return Err(Exit::aborted(format!("export aborted: {reason}")));
        }
        Err(Ended::List(e)) => return Err(Exit::aborted(e)),
        // `| head`: the reader has what it wanted.
        Err(Ended::Output(e)) if output.is_none() && e.kind() == ErrorKind::BrokenPipe => {
            eprintln!("export-users: the reader of stdout closed it (`| head`?); stopped there");
            return Ok(());
        }
        Err(Ended::Output(e)) => return Err(out_error(e)),
    }
    // An export that misses accounts keeps its .partial name: a file under the asked name is
    // always a whole export.
    let partial = output.as_ref().map(|o| o.partial.clone());
    match output {
        Some(output) if counts.unread == 0 => output.rename()?,
        Some(output) => output.keep(),
        None => {}
    }
    let rate = counts.written as f64 / elapsed.as_secs_f64().max(1e-3);
    let mut summary = format!(
        "export-users: {} accounts in {:.1}s ({rate:.0}/s) to {where_to}; the server counts {total}",
        counts.written,
        elapsed.as_secs_f64()
    );
    if let Some(p) = &provider {
        summary.push_str(&format!(
            "; {} without a {p} mapping left out",
            counts.filtered
        ));
    }
    if counts.vanished > 0 {
        summary.push_str(&format!("; {} gone while listing", counts.vanished));
    }
    eprintln!("{summary}");
    if counts.unread > 0 {
        eprintln!(
            "synbatch: the SSO mappings of {} accounts could not be read (named above); they are \
             not in the export, which is left {}",
            counts.unread,
            partial
                .as_deref()
                .map_or("incomplete: run it again".to_string(), |p| format!(
                    "as {}: move it away, then run it again",
                    p.display()
                ))
        );
        return Err(Exit::RowsFailed);
    }
    Ok(())
}

enum Ended {
    List(ListError),
    Output(std::io::Error),
}

/// Without mappings: the list pages alone, written as they come.
async fn export_list(
    hs: &Homeserver,
    query: UserQuery,
    retries: u32,
    mut sink: Sink,
) -> (Counts, u64, Result<(), Ended>) {
    let mut counts = Counts::default();
    let mut pager = Pager::new(hs, query, retries);
    loop {
        let page = match pager.next_page().await {
            Ok(Some(page)) => page,
            Ok(None) => break,
            Err(e) => return (counts, pager.total, Err(Ended::List(e))),
        };
        for user in &page {
            if let Err(e) = sink.write(user, None) {
                return (counts, pager.total, Err(Ended::Output(e)));
            }
            counts.written += 1;
        }
    }
    let end = sink.finish().map_err(Ended::Output);
    (counts, pager.total, end)
}

/// With mappings: a lister task feeds the executor (a GET per account), and a writer thread
/// puts the answers back in list order.
async fn export_with_mappings(
    hs: Arc<Homeserver>,
    query: UserQuery,
    limits: Limits,
    provider: Option<String>,
    sink: Sink,
) -> (Counts, u64, Result<(), Ended>) {
    let window = Arc::new(Semaphore::new(WINDOW));
    let (item_tx, item_rx) = mpsc::channel::<Vec<Listed>>(limits.concurrency * 2);
    let (done_tx, done_rx) = mpsc::channel::<Finished<Listed, Mappings>>(1024);
    let lister = {
        let (hs, window) = (hs.clone(), window.clone());
        let retries = limits.retries;
        tokio::spawn(async move {
            let mut pager = Pager::new(&hs, query, retries);
            let mut seq = 0u64;
            loop {
                let page = match pager.next_page().await {
                    Ok(Some(page)) => page,
                    Ok(None) => return (pager.total, Ok(())),
                    Err(e) => return (pager.total, Err(e)),
                };
                for user in page {
                    // Closed when the run stops: then nothing more is wanted.
                    let Ok(permit) = window.acquire().await else {
                        return (pager.total, Ok(()));
                    };
                    permit.forget();
                    if item_tx.send(vec![Listed { seq, user }]).await.is_err() {
                        return (pager.total, Ok(()));
                    }
                    seq += 1;
                }
            }
        })
    };
    // Cancelled by the writer if the output fails (a closed pipe, a full disk): nothing would
    // take the executor's answers any more.
    let cancel = CancellationToken::new();
    let writer = {
        let (window, cancel) = (window.clone(), cancel.clone());
        std::thread::spawn(move || {
            let written = write_in_order(done_rx, sink, provider, &window);
            if written.1.is_err() {
                window.close();
                cancel.cancel();
            }
            written
        })
    };
    let work = ReadMappings { hs };
    let stop = executor::run(work, limits, item_rx, done_tx, cancel).await;
    // The writer may wait for a line that an aborted run never finishes: let the lister go.
    window.close();
    let (total, listed) = lister.await.expect("the lister does not panic");
    let (counts, written) = tokio::task::spawn_blocking(move || writer.join())
        .await
        .expect("join of the writer thread")
        .expect("the writer does not panic");
    let end = match (stop, listed, written) {
        (Stop::Aborted(reason), _, _) => Err(Ended::List(ListError::Abort(reason))),
        (_, Err(e), _) => Err(Ended::List(e)),
        (_, _, Err(e)) => Err(Ended::Output(e)),
        _ => Ok(()),
    };
    (counts, total, end)
}

/// The writer thread: holds answers that arrive early until the ones before them are written.
fn write_in_order(
    mut done: mpsc::Receiver<Finished<Listed, Mappings>>,
    mut sink: Sink,
    provider: Option<String>,
    window: &Semaphore,
) -> (Counts, std::io::Result<()>) {
    let mut counts = Counts::default();
    let mut early: BTreeMap<u64, Finished<Listed, Mappings>> = BTreeMap::new();
    let mut next = 0u64;
    while let Some(finished) = done.blocking_recv() {
        early.insert(finished.item.seq, finished);
        while let Some(finished) = early.remove(&next) {
            next += 1;
            window.add_permits(1);
            let user = &finished.item.user;
            match &finished.output {
                Ok(details) => {
                    if let Some(p) = &provider
                        && !details.external_ids.iter().any(|m| &m.auth_provider == p)
                    {
                        counts.filtered += 1;
                        continue;
                    }
                    if let Err(e) = sink.write(user, Some(details)) {
                        return (counts, Err(e));
                    }
                    counts.written += 1;
                }
                Err(None) => counts.vanished += 1,
                Err(Some(outcome)) => {
                    counts.unread += 1;
                    let kind = Kind {
                        status: Status::Failed,
                        http_status: outcome.http_status,
                        errcode: outcome.errcode.clone(),
                        cause: String::new(),
                    };
                    counts.failures.add(kind, &outcome.message);
                    eprintln!(
                        "export-users: cannot read the account {}: {} {} {}",
                        user.name,
                        outcome.http_status.map_or(String::new(), |s| s.to_string()),
                        outcome.errcode,
                        outcome.message
                    );
                }
            }
        }
    }
    (counts, sink.finish())
}

fn by_extension(path: Option<&Path>) -> ExportFormat {
    let ext = path
        .and_then(|p| p.extension())
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("jsonl" | "ndjson") => ExportFormat::Jsonl,
        _ => ExportFormat::Csv,
    }
}

/// `-o PATH`: the export is written to `PATH.partial`, created new, and renamed over PATH once
/// it is whole, so that a file under the asked name is always a whole export. The rename
/// replaces whatever PATH names, so PATH must be a regular file or nothing: a device
/// (`/dev/null`, as root), a pipe or a symbolic link would become a regular file. A
/// `PATH.partial` that exists, whatever it is, is neither written through nor removed.
struct OutputFile {
    path: PathBuf,
    partial: PathBuf,
    /// The partial file stays: renamed, or kept for the admin. Otherwise it is removed.
    settled: bool,
}

impl OutputFile {
    fn create(path: &Path) -> Result<(OutputFile, File), Exit> {
        renamable(path)?;
        let partial = partial_path(path);
        let mut options = OpenOptions::new();
        // O_EXCL: nothing that is there already, a symbolic link or a pipe, is opened.
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.custom_flags(libc::O_NOFOLLOW);
        }
        let file = options.open(&partial).map_err(|e| {
            if e.kind() == ErrorKind::AlreadyExists {
                Exit::usage(format!(
                    "-o {}: {} exists already (an export that did not finish? or not synbatch's); \
                     synbatch does not write through it or remove it: look at it, remove it, \
                     and run again",
                    path.display(),
                    partial.display()
                ))
            } else {
                Exit::usage(format!("cannot create {}: {e}", partial.display()))
            }
        })?;
        Ok((
            OutputFile {
                path: path.to_path_buf(),
                partial,
                settled: false,
            },
            file,
        ))
    }

    /// The whole export under its name, if that name is still a regular file or nothing.
    fn rename(mut self) -> Result<(), Exit> {
        if let Err(refused) = renamable(&self.path) {
            self.settled = true;
            return Err(Exit::usage(format!(
                "{}; the export is left as {}",
                refused.message().unwrap_or_default(),
                self.partial.display()
            )));
        }
        std::fs::rename(&self.partial, &self.path).map_err(|e| {
            self.settled = true;
            Exit::usage(format!(
                "cannot rename {} to {}: {e}; the export is left there",
                self.partial.display(),
                self.path.display()
            ))
        })?;
        self.settled = true;
        Ok(())
    }

    fn keep(mut self) {
        self.settled = true;
    }
}

impl Drop for OutputFile {
    /// An export that failed leaves nothing behind (a next run would refuse its .partial).
    fn drop(&mut self) {
        if !self.settled {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

/// Whether the export may be renamed over `path`: only a regular file or nothing.
fn renamable(path: &Path) -> Result<(), Exit> {
    let name = path.display();
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Exit::usage(format!("-o {name}: {e}"))),
    };
    if meta.file_type().is_symlink() {
        return Err(Exit::usage(format!(
            "-o {name} is a symbolic link: the export would replace the link, not write where \
             it points; name the file itself"
        )));
    }
    if meta.is_dir() {
        return Err(Exit::usage(format!(
            "-o {name} is a directory: name a file"
        )));
    }
    if !meta.is_file() {
        return Err(Exit::usage(format!(
            "-o {name} is {}, not a regular file: the export is renamed over the name it is \
             given, and would replace it; to write there, redirect stdout instead (`> {name}`)",
            crate::file_kind::describe(&meta)
        )));
    }
    Ok(())
}

/// Written beside the output and renamed over it at the end.
fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_ids_layout() {
        let m = |p: &str, id: &str| ExternalId {
            auth_provider: p.into(),
            external_id: id.into(),
        };
        assert_eq!(
            external_ids_cell(&[m("oidc-new", "abc"), m("saml", "a;b%c:d")]),
            "oidc-new:abc;saml:a%3Bb%25c:d"
        );
        assert_eq!(external_ids_cell(&[]), "");
    }

    #[test]
    fn partial_file_beside_the_output() {
        assert_eq!(
            partial_path(Path::new("out/users.csv")),
            PathBuf::from("out/users.csv.partial")
        );
        assert!(matches!(
            by_extension(Some(Path::new("u.ndjson"))),
            ExportFormat::Jsonl
        ));
        assert!(matches!(by_extension(None), ExportFormat::Csv));
    }
}
