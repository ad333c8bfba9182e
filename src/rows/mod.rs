//! Runs a row job: the plan from the arguments, the input opened and checked, confirmation,
//! the connection, the pipeline, and what the end of the run means as an exit.

mod annotate;
mod pipeline;
pub mod plan;
pub mod progress;
mod sink;

use std::io::IsTerminal;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::cli::RowArgs;
use crate::confirm::confirm;
use crate::connect;
use crate::executor::Stop;
use crate::exit::Exit;
use crate::homeserver::{Homeserver, UserQuery};
use crate::input::{Binder, Input};
use crate::job::user_list::{ListError, Pager};
use crate::job::{Context, Job};
use crate::results::Status;
use crate::results::json::{self, JsonSummary};
use pipeline::Summary;
use plan::{Kind, Mode, RunPlan};

/// Where a row job's rows come from.
pub enum Source {
    /// The INPUT argument: a file, or stdin.
    Input,
    /// Every account of the server, one row each (user column only), listed as the run goes.
    /// `what` is the confirmation's text.
    Accounts { page_size: u32, what: String },
    /// The rows of a CSV file other than INPUT (`sync-members` applies the plan it wrote); the
    /// results file is still named after INPUT.
    File(std::path::PathBuf),
}

/// Runs a row job on its INPUT.
pub async fn run<J: Job>(job: J, args: &RowArgs) -> Result<(), Exit> {
    run_from(job, args, Source::Input).await
}

/// Runs a row job on the rows of `source`, and writes its `--summary-json` however it ends.
pub async fn run_from<J: Job>(job: J, args: &RowArgs, source: Source) -> Result<(), Exit> {
    run_passes(vec![(job, source)], args).await
}

/// Runs passes of one job one after the other as one run (create-rooms: the spaces, then the
/// rooms that name them), with one `--summary-json` however it ends. A pass starts only when
/// the one before ended with its rows recorded (exit 0 or 1).
pub async fn run_passes<J: Job>(passes: Vec<(J, Source)>, args: &RowArgs) -> Result<(), Exit> {
    let Some(name) = passes.first().map(|(job, _)| job.name()) else {
        return Ok(());
    };
    let clock = json::Clock::start();
    let plan = RunPlan::new(args, name, passes[0].0.concurrency(), false);
    let mut own = vec![plan.results.as_path()];
    own.extend(plan.input.path.as_deref());
    let out = json::open(args.run.summary_json.as_ref(), &own)?;
    let fresh = || {
        let mut summary = JsonSummary::new(json::Source::Run, Some(name));
        summary.dry_run = args.run.dry_run && !args.run.check;
        summary.check = args.run.check;
        summary
    };
    let mut summary = fresh();
    let mut ended = Ok(());
    for (job, source) in passes {
        let mut pass = fresh();
        let this = run_job(job, args, source, &mut pass).await;
        summary.add_pass(pass);
        let stop = matches!(&this, Err(e) if !matches!(e, Exit::RowsFailed));
        ended = match (ended, this) {
            (_, Err(e)) | (Err(e), Ok(())) => Err(e),
            (Ok(()), Ok(())) => Ok(()),
        };
        if stop {
            break;
        }
    }
    json::finish(out, summary, &clock, ended)
}

/// Runs a row job on the rows of `source`. Everything that can be checked without the network
/// (options, the input's header, the results file for `--retry-failed`) is checked first.
/// What the run did goes into `facts`, for `--summary-json`.
async fn run_job<J: Job>(
    mut job: J,
    args: &RowArgs,
    source: Source,
    facts: &mut JsonSummary,
) -> Result<(), Exit> {
    connect::check(&args.server)?;
    if args.run.lift_ratelimit && !job.acts_as_token_user() {
        return Err(Exit::Usage(format!(
            "--lift-ratelimit: {} sends its requests through the admin API, which no account \
             rate limit slows; the option is for jobs that act as the token's user (invite, kick)",
            job.name()
        )));
    }
    let terminal = std::io::stderr().is_terminal();
    let plan = RunPlan::new(args, job.name(), job.concurrency(), terminal);
    if let (Some(asked), Some(why)) = (args.run.concurrency, job.concurrency_warning())
        && asked > job.concurrency()
    {
        eprintln!(
            "warning: -j {asked} runs more {} requests at once than its default of {}: {why}",
            job.name(),
            job.concurrency()
        );
    }
    if plan.mode == Mode::RetryFailed && !plan.results.exists() {
        return Err(Exit::usage(format!(
            "--retry-failed: there is no results file at {} to take the failed rows from \
             (name it with -o)",
            plan.results.display()
        )));
    }
    let annotate = match &args.run.annotate {
        None => None,
        Some(_) if plan.kind != Kind::Run => {
            return Err(Exit::usage(
                "--annotate is made from the results file, which --dry-run and --check do not \
                 write",
            ));
        }
        Some(_) if matches!(source, Source::Accounts { .. }) => {
            return Err(Exit::usage(
                "--annotate writes an input sheet back; this run has none",
            ));
        }
        Some(_) if matches!(source, Source::File(_)) => {
            return Err(Exit::usage(format!(
                "--annotate: {} runs the rows of its plan, not of the sheet; the plan file and \
                 the results file say what happened to each person",
                job.name()
            )));
        }
        Some(out) => {
            Some(annotate::Annotate::new(out, &plan.input, &plan.results).map_err(Exit::Usage)?)
        }
    };
    let (binder, spec) = match &source {
        // A file synbatch wrote itself (a plan): plain CSV with the job's own headers.
        Source::File(path) => {
            let spec = crate::input::InputSpec {
                path: Some(path.clone()),
                format: Some(crate::input::Format::Csv),
                delimiter: Some(b','),
                encoding: None,
                sheet: None,
            };
            (Binder::new(job.input_fields(), &[])?, spec)
        }
        _ => {
            let mut binder = Binder::new(job.input_fields(), &args.columns)?;
            if args.localpart_from.is_some() {
                binder = binder.localpart_from_email()?;
            }
            (binder, plan.input.clone())
        }
    };
    let input = match &source {
        Source::Input | Source::File(_) => {
            Some(Input::open(&spec, binder.clone(), &job.required_fields())?)
        }
        Source::Accounts { .. } => None,
    };
    if annotate.is_some() && input.as_ref().is_some_and(|i| i.headers().is_none()) {
        return Err(Exit::usage(
            "--annotate writes a sheet back: it needs a CSV or workbook input, not JSON",
        ));
    }
    if let Some(input) = &input
        && !input.ignored_columns().is_empty()
    {
        eprintln!(
            "note: {}: {} does not use {}; ignored",
            plan.input.name(),
            job.name(),
            input
                .ignored_columns()
                .iter()
                .map(|c| format!(
                    "column `{}`",
                    crate::secret::for_terminal(&crate::input::quote(c))
                ))
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    let homeserver = args
        .server
        .homeserver
        .as_deref()
        .unwrap_or("the homeserver");
    // The rows, counted once: for the confirmation (a person can catch the wrong file) and the
    // progress bar's total.
    let mut rows = None;
    if plan.kind == Kind::Run && job.destructive() {
        let what = match &source {
            Source::Accounts { what, .. } => what.clone(),
            Source::Input | Source::File(_) => {
                if !plan.yes && std::io::stdin().is_terminal() {
                    rows = Input::count_rows(&spec, binder.clone());
                }
                let count = rows.map_or(String::new(), |n| {
                    format!(" ({n} row{})", if n == 1 { "" } else { "s" })
                });
                format!(
                    "run {} on {}{count} against {homeserver}",
                    job.name(),
                    plan.input.name()
                )
            }
        };
        confirm(&what, plan.yes).map_err(Exit::Usage)?;
    }
    if plan.kind != Kind::DryRun {
        job.remember(&plan.results).map_err(Exit::Usage)?;
    }

    // A dry run of a file with --server-name needs no server at all.
    let (hs, ctx, url) = match (&args.server.server_name, &source, plan.kind) {
        (Some(name), Source::Input, Kind::DryRun) => {
            let ctx = Context {
                server_name: name.clone(),
                me: String::new(),
                delegated: false,
            };
            (None, ctx, None)
        }
        _ => {
            // A job Synapse may refuse under MAS needs the admin check, which finds MAS out,
            // even for a dry run: that would otherwise show rows that can never run.
            let need_admin = plan.kind != Kind::DryRun
                || matches!(source, Source::Accounts { .. })
                || job.refused_under_mas().is_some();
            let pool = if plan.kind == Kind::DryRun {
                1
            } else {
                plan.limits.concurrency
            };
            let conn = connect::connect(&args.server, pool, need_admin).await?;
            if let Some(why) = job.refused_under_mas().filter(|_| conn.delegated) {
                return Err(connect::refused_under_mas(job.name(), homeserver, why));
            }
            let ctx = Context {
                server_name: conn.server_name,
                me: conn.me,
                delegated: conn.delegated,
            };
            (Some(conn.hs), ctx, Some(conn.url))
        }
    };
    // After the server is known to take the job, so that a refused one leaves no stray file.
    if plan.kind == Kind::Run {
        job.prepare().map_err(Exit::Usage)?;
    }
    let lift = match (&hs, url) {
        (Some(hs), Some(url)) if plan.kind == Kind::Run && args.run.lift_ratelimit => {
            crate::lift::Lift::apply(hs.clone(), &url, &ctx.me).await?
        }
        _ => None,
    };
    let (input, lister) = match (input, &source, &hs) {
        (Some(input), ..) => (input, None),
        (None, Source::Accounts { page_size, .. }, Some(hs)) => {
            let (tx, rx) = mpsc::channel(4096);
            let lister = tokio::spawn(list_accounts(hs.clone(), *page_size, tx));
            let input =
                Input::from_values("the server's account list", job.input_fields().len(), rx);
            (input, Some(lister))
        }
        _ => unreachable!("every source has an input once connected"),
    };
    if plan.kind == Kind::Run
        && plan.mode == Mode::All
        && plan.verbosity != progress::Verbosity::Quiet
        && std::fs::metadata(&plan.results).is_ok_and(|m| m.len() > 0)
    {
        eprintln!(
            "note: {} exists; new lines are appended (--resume would skip the rows it records \
             as done)",
            plan.results.display()
        );
    }
    let count: Option<Box<dyn FnOnce() -> Option<u64> + Send>> = match (rows, &source) {
        (Some(n), _) => Some(Box::new(move || Some(n))),
        (None, Source::Input | Source::File(_)) => {
            let (spec, binder) = (spec.clone(), binder.clone());
            Some(Box::new(move || Input::count_rows(&spec, binder)))
        }
        (None, Source::Accounts { .. }) => None,
    };
    let name = job.name();
    let job = Arc::new(job);
    let hs_for_annotate = hs.clone();
    let summary = pipeline::run(job.clone(), hs, ctx.clone(), input, &plan, count).await;
    // However the run ended, the account gets its own rate limit back before the exit.
    let restored = match lift {
        Some(lift) => lift.restore().await,
        None => Ok(()),
    };
    if let Ok(summary) = &summary {
        if plan.kind == Kind::Run {
            facts.set_results(&plan.results);
        }
        facts.rows = summary.tally.total();
        facts.skipped = summary.skipped;
        facts.counts = json::Counts::of(&summary.tally.by_status);
        facts.set_failures(&summary.tally.failures);
    }
    let summary = match (summary, restored) {
        (Ok(summary), Ok(())) => summary,
        (Err(e), Ok(())) => return Err(Exit::usage(e)),
        (Err(e), Err(why)) => return Err(Exit::usage(format!("{e}\n{why}"))),
        (Ok(summary), Err(why)) => {
            // The run's own ending is said first; the exit is the lift's, which needs acting on.
            if let Err(exit) = ended(name, &plan, summary)
                && let Some(message) = exit.message()
            {
                eprintln!("{message}");
            }
            eprintln!("{why}");
            return Err(Exit::aborted(
                "the run ended, but the account's rate limit is still lifted (see above)",
            ));
        }
    };
    if let Some(lister) = lister {
        let listed = lister.await.expect("the account lister does not panic");
        match listed {
            Ok(n) => eprintln!(
                "{name} --all-users: {n} accounts listed (deactivated and locked ones included)"
            ),
            Err(e) => {
                return Err(Exit::aborted(format!(
                    "{e}; the accounts listed before were run: rerun the same command with \
                     --resume"
                )));
            }
        }
    }
    if let Some(annotate) = annotate
        && summary.results_error.is_none()
    {
        let (name_, results) = (job.name(), plan.results.clone());
        let finals = tokio::task::spawn_blocking(move || annotate::finals(&results, name_))
            .await
            .expect("the results reader does not panic");
        let written = match finals {
            Err(e) => Err(e),
            Ok(finals) => {
                let by_email = match &hs_for_annotate {
                    Some(hs) => annotate::resolve_emails(hs, &finals).await,
                    None => Default::default(),
                };
                let (job, spec) = (job.clone(), plan.input.clone());
                let annotate = annotate.clone();
                tokio::task::spawn_blocking(move || {
                    annotate.write(&*job, &ctx, &spec, binder, &finals, &by_email)
                })
                .await
                .expect("the annotator does not panic")
            }
        };
        let out = annotate.path.clone();
        match written {
            Ok(rows) => eprintln!("annotated sheet: {} ({rows} rows)", out.display()),
            Err(e) => {
                let ended = ended(name, &plan, summary);
                let message = format!("cannot write the annotated sheet {}: {e}", out.display());
                return match ended {
                    Ok(()) => Err(Exit::usage(message)),
                    Err(exit) => {
                        eprintln!("synbatch: {}", crate::secret::for_terminal(&message));
                        Err(exit)
                    }
                };
            }
        }
    }
    match plan.kind {
        Kind::Run => ended(name, &plan, summary),
        Kind::DryRun => dry_run_ended(name, &plan, &summary),
        Kind::Check => check_ended(name, &summary),
    }
}

/// Pages through every account (deactivated, locked and guests included) into `rows`.
async fn list_accounts(
    hs: Arc<Homeserver>,
    page_size: u32,
    rows: mpsc::Sender<String>,
) -> Result<u64, ListError> {
    let query = UserQuery {
        limit: page_size,
        deactivated: true,
        guests: true,
        admins_only: false,
        name: None,
    };
    let mut pager = Pager::new(&hs, query, 5);
    let mut n = 0;
    while let Some(page) = pager.next_page().await? {
        for user in page {
            // The reader stopped (Ctrl-C, a failed results file): nothing more is wanted.
            if rows.send(user.name).await.is_err() {
                return Ok(n);
            }
            n += 1;
        }
    }
    Ok(n)
}

/// The end of a real run: the summary, how to rerun, and the exit.
fn ended(job: &str, plan: &RunPlan, summary: Summary) -> Result<(), Exit> {
    eprintln!(
        "{}",
        progress::summary_line(job, &summary.tally, summary.skipped, summary.elapsed)
    );
    eprintln!("results: {}", plan.results.display());
    if let Some(e) = summary.results_error {
        return Err(Exit::aborted(format!(
            "cannot write the results file, so the run was stopped: {e}. Rows not recorded \
             will run again with --resume"
        )));
    }
    match summary.stop {
        Stop::Aborted(reason) => {
            return Err(Exit::aborted(format!(
                "run aborted: {reason}. Rows not recorded were not run; fix the cause and \
                 rerun the same command with --resume"
            )));
        }
        Stop::Interrupted => {
            eprintln!(
                "interrupted: the rows in flight were finished and recorded; rerun the same \
                 command with --resume to do the rest"
            );
            return Err(Exit::Interrupted);
        }
        Stop::Completed => {}
    }
    if let Some(e) = summary.input_error {
        return Err(Exit::usage(format!(
            "{e}\nthe rows before this point were run; fix the input and rerun with --resume"
        )));
    }
    let failed = summary.tally.count(Status::Failed);
    let invalid = summary.tally.count(Status::Invalid);
    // A row still pending ended without knowing how its change ended (a room delete still
    // running when the wait ran out): not done, and not failed either.
    let pending = summary.tally.count(Status::Pending);
    if pending > 0 {
        eprintln!(
            "{pending} rows still pending: their change was sent and is still under way on the \
             server; rerun the same command with --resume to wait for them"
        );
    }
    if failed > 0 {
        eprintln!("to rerun only the failed rows: the same command with --retry-failed");
    }
    if invalid > 0 {
        eprintln!("invalid rows were not sent: fix them in the input, then rerun with --resume");
    }
    if failed + invalid + pending > 0 {
        Err(Exit::RowsFailed)
    } else {
        Ok(())
    }
}

fn dry_run_ended(job: &str, plan: &RunPlan, summary: &Summary) -> Result<(), Exit> {
    if let Some(e) = &summary.input_error {
        return Err(Exit::usage(e));
    }
    let invalid = summary.tally.count(Status::Invalid);
    eprintln!(
        "dry run of {job} on {}: {} rows -> {} requests, {invalid} invalid, {} skipped as done; \
         nothing was sent or written",
        plan.input.name(),
        summary.rows,
        summary.tally.count(Status::Ok),
        summary.skipped
    );
    if invalid > 0 {
        Err(Exit::RowsFailed)
    } else {
        Ok(())
    }
}

/// The end of `--check`: what would happen, and exit 1 if any row would not succeed.
fn check_ended(job: &str, summary: &Summary) -> Result<(), Exit> {
    let fine = summary.tally.count(Status::Ok);
    let fail = summary.tally.count(Status::Failed);
    let invalid = summary.tally.count(Status::Invalid);
    eprintln!(
        "check of {job}: {fine} rows would run, {fail} would fail, {invalid} invalid, {} skipped \
         as done; nothing was changed",
        summary.skipped
    );
    match &summary.stop {
        Stop::Aborted(reason) => return Err(Exit::aborted(format!("check aborted: {reason}"))),
        Stop::Interrupted => return Err(Exit::Interrupted),
        Stop::Completed => {}
    }
    if let Some(e) = &summary.input_error {
        return Err(Exit::usage(format!(
            "{e}\nthe check covers only the rows before this point"
        )));
    }
    if fail + invalid > 0 {
        Err(Exit::RowsFailed)
    } else {
        Ok(())
    }
}
