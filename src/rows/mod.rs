//! Runs a row job: the plan from the arguments, the input opened and checked, confirmation,
//! the connection, the pipeline, and what the end of the run means as an exit.

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
use pipeline::Summary;
use plan::{Kind, Mode, RunPlan};

/// Where a row job's rows come from.
pub enum Source {
    /// The INPUT argument: a file, or stdin.
    Input,
    /// Every account of the server, one row each (user column only), listed as the run goes.
    /// `what` is the confirmation's text.
    Accounts { page_size: u32, what: String },
}

/// Runs a row job on its INPUT.
pub async fn run<J: Job>(job: J, args: &RowArgs) -> Result<(), Exit> {
    run_from(job, args, Source::Input).await
}

/// Runs a row job on the rows of `source`. Everything that can be checked without the network
/// (options, the input's header, the results file for `--retry-failed`) is checked first.
pub async fn run_from<J: Job>(mut job: J, args: &RowArgs, source: Source) -> Result<(), Exit> {
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
    let binder = Binder::new(job.input_fields(), &args.columns)?;
    let input = match &source {
        Source::Input => Some(Input::open(
            &plan.input,
            binder.clone(),
            &job.required_fields(),
        )?),
        Source::Accounts { .. } => None,
    };
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
            Source::Input => {
                if !plan.yes && std::io::stdin().is_terminal() {
                    rows = Input::count_rows(&plan.input, binder.clone());
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
    if plan.kind == Kind::Run {
        job.prepare().map_err(Exit::Usage)?;
    }

    // A dry run of a file with --server-name needs no server at all.
    let (hs, ctx, url) = match (&args.server.server_name, &source, plan.kind) {
        (Some(name), Source::Input, Kind::DryRun) => {
            let ctx = Context {
                server_name: name.clone(),
                me: String::new(),
            };
            (None, ctx, None)
        }
        _ => {
            let need_admin = plan.kind != Kind::DryRun || matches!(source, Source::Accounts { .. });
            let pool = if plan.kind == Kind::DryRun {
                1
            } else {
                plan.limits.concurrency
            };
            let conn = connect::connect(&args.server, pool, need_admin).await?;
            let ctx = Context {
                server_name: conn.server_name,
                me: conn.me,
            };
            (Some(conn.hs), ctx, Some(conn.url))
        }
    };
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
        (None, Source::Input) => {
            let spec = plan.input.clone();
            Some(Box::new(move || Input::count_rows(&spec, binder)))
        }
        (None, Source::Accounts { .. }) => None,
    };
    let name = job.name();
    let summary = pipeline::run(Arc::new(job), hs, ctx, input, &plan, count).await;
    // However the run ended, the account gets its own rate limit back before the exit.
    let restored = match lift {
        Some(lift) => lift.restore().await,
        None => Ok(()),
    };
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
    if failed > 0 {
        eprintln!("to rerun only the failed rows: the same command with --retry-failed");
    }
    if invalid > 0 {
        eprintln!("invalid rows were not sent: fix them in the input, then rerun with --resume");
    }
    if failed + invalid > 0 {
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
