//! synbatch: bulk administration jobs for a Matrix homeserver (Synapse), from spreadsheets.
//!
//! main parses the command line, builds the job, runs it and maps the outcome to an exit code.

mod cli;
mod config;
mod confirm;
mod executor;
mod homeserver;
mod input;
mod ops;
mod pipeline;
mod report;
mod results;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use cli::{Cli, Command, JobArgs};
use config::ConfigError;
use executor::{Limits, Stop};
use input::{Binder, Input, InputSpec};
use ops::user_room::RoomJob;
use ops::{Context, Op};
use pipeline::{Mode, Settings};
use report::Verbosity;
use results::{Latest, Status};

/// Exit codes of the contract (design.md).
mod exit {
    pub const OK: u8 = 0;
    pub const ROWS_FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const ABORTED: u8 = 3;
    pub const INTERRUPTED: u8 = 130;
}

/// An error that ends the program, with the exit code it ends it with.
struct Fatal {
    code: u8,
    message: String,
}

impl Fatal {
    fn usage(message: impl std::fmt::Display) -> Self {
        Fatal {
            code: exit::USAGE,
            message: message.to_string(),
        }
    }
}

impl From<ConfigError> for Fatal {
    fn from(e: ConfigError) -> Self {
        let code = match e {
            ConfigError::Usage(_) => exit::USAGE,
            ConfigError::Abort(_) => exit::ABORTED,
        };
        Fatal {
            code,
            message: e.to_string(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One thread sends and receives: against a fast server, handing tasks between worker
    // threads cost more CPU than the requests (BENCHMARKS.md). Reading the input and writing
    // the results have threads of their own.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(fatal) => {
            eprintln!("synbatch: {}", fatal.message);
            fatal.code
        }
    };
    // Do not wait for the signal listener or a background row counter.
    runtime.shutdown_timeout(Duration::from_millis(100));
    ExitCode::from(code)
}

async fn run(cli: Cli) -> Result<u8, Fatal> {
    match cli.command {
        Command::Join(args) => {
            let join = RoomJob::new(ops::join::Join, &args.rooms).map_err(Fatal::usage)?;
            run_job(join, &args.job).await
        }
        Command::SetExternalId(args) => {
            let op = ops::set_external_id::SetExternalId::new(&args.drop_provider)
                .map_err(Fatal::usage)?;
            run_job(op, &args.job).await
        }
        Command::RemoveExternalId(args) => remove_external_id(args).await,
        Command::DeleteMedia(args) => run_job(ops::delete_media::DeleteMedia, &args.job).await,
        Command::PurgeMedia(args) => Ok(ops::purge_media::run(args).await?),
        Command::ExportUsers(args) => Ok(ops::export_users::run(args).await?),
        Command::Invite(args) => {
            let invite = RoomJob::new(ops::invite::Invite, &args.rooms).map_err(Fatal::usage)?;
            run_job(invite, &args.job).await
        }
        Command::Kick(args) => {
            let kick = RoomJob::new(ops::kick::Kick, &args.rooms).map_err(Fatal::usage)?;
            run_job(kick, &args.job).await
        }
        Command::Deactivate(args) => {
            run_job(ops::deactivate::Deactivate::new(args.erase), &args.job).await
        }
        Command::CreateUsers(args) => {
            let create = ops::create_users::CreateUsers::new(
                args.on_existing,
                args.generate_passwords.clone(),
                &args.join,
            )
            .map_err(Fatal::usage)?;
            run_job(create, &args.job).await
        }
        Command::Report(args) => report_results(&args.results, args.failed.as_deref()),
    }
}

/// `remove-external-id`; with `--all-users`, the server's account list is its input.
async fn remove_external_id(mut args: cli::RemoveExternalIdArgs) -> Result<u8, Fatal> {
    let op = ops::remove_external_id::RemoveExternalId::new(args.provider.as_deref())
        .map_err(Fatal::usage)?;
    if !args.all_users {
        return run_job(op, &args.job).await;
    }
    let job = &mut args.job;
    config::check(&job.server)?;
    if !job.run.dry_run && !job.run.check {
        let what = format!(
            "remove every {} mapping from every account of {}",
            args.provider.as_deref().unwrap_or_default(),
            job.server.homeserver.as_deref().unwrap_or("the homeserver")
        );
        confirm::confirm(&what, job.run.yes).map_err(Fatal::usage)?;
        job.run.yes = true;
    }
    let listing =
        ops::export_users::all_users_file(&job.server, args.page_size, job.run.retries).await?;
    job.input = listing.path().to_path_buf();
    job.format = Some(input::Format::Csv);
    job.columns.clear();
    job.run
        .results
        .get_or_insert_with(|| PathBuf::from("remove-external-id.results.csv"));
    run_job(op, job).await
}

/// The rows of an input file (read once more, for the confirmation); none for stdin.
fn count_rows(spec: &InputSpec, binder: &Binder, required: &[&str]) -> Option<u64> {
    spec.path.as_ref()?;
    let input = Input::open(spec, binder.clone(), required).ok()?;
    let mut rows = 0;
    input
        .for_each_row(|_| {
            rows += 1;
            true
        })
        .ok()?;
    Some(rows)
}

/// Runs a row job: checks options and input before the network, then the server, then the rows.
async fn run_job<O: Op>(mut op: O, args: &JobArgs) -> Result<u8, Fatal> {
    config::check(&args.server)?;
    let mode = match (args.run.resume, args.run.retry_failed) {
        (true, _) => Mode::Resume,
        (_, true) => Mode::RetryFailed,
        _ => Mode::All,
    };
    let spec = InputSpec {
        path: (args.input.as_os_str() != "-").then(|| args.input.clone()),
        format: args.format,
        delimiter: args.delimiter,
    };
    let results = args
        .run
        .results
        .clone()
        .unwrap_or_else(|| default_results_path(spec.path.as_deref(), op.name()));
    if mode == Mode::RetryFailed && !results.exists() {
        return Err(Fatal::usage(format!(
            "--retry-failed: there is no results file at {} to take the failed rows from \
             (name it with -o)",
            results.display()
        )));
    }
    let binder = Binder::new(op.input_fields(), &args.columns).map_err(Fatal::usage)?;
    let input = Input::open(&spec, binder.clone(), &op.required_fields()).map_err(Fatal::usage)?;
    let verbosity = match (args.run.quiet, args.run.verbose) {
        (true, _) => Verbosity::Quiet,
        (_, true) => Verbosity::Verbose,
        _ => Verbosity::Normal,
    };

    // --check is a dry run that also asks the server.
    let planning = args.run.dry_run || args.run.check;
    if planning && !args.run.check {
        let ctx = match &args.server.server_name {
            Some(name) => Context {
                server_name: name.clone(),
                me: String::new(),
            },
            None => {
                let conn = config::connect(&args.server, 1, false).await?;
                Context {
                    server_name: conn.server_name,
                    me: conn.me,
                }
            }
        };
        return dry_run(&op, ctx, input, mode, &results);
    }
    if op.destructive() && !planning {
        // Asked on a terminal: the count there lets a person catch the wrong file.
        let rows = (!args.run.yes && std::io::stdin().is_terminal())
            .then(|| count_rows(&spec, &binder, &op.required_fields()))
            .flatten();
        let what = format!(
            "run {} on {}{} against {}",
            op.name(),
            spec.name(),
            rows.map_or(String::new(), |n| format!(
                " ({n} row{})",
                if n == 1 { "" } else { "s" }
            )),
            args.server
                .homeserver
                .as_deref()
                .unwrap_or("the homeserver")
        );
        confirm::confirm(&what, args.run.yes).map_err(Fatal::usage)?;
    }
    if !planning {
        op.prepare().map_err(Fatal::usage)?;
    }

    let pool = usize::from(args.run.concurrency.unwrap_or(op.concurrency()));
    let conn = config::connect(&args.server, pool, true).await?;
    let check = args.run.check;
    if mode == Mode::All && !check && verbosity != Verbosity::Quiet && has_lines(&results) {
        eprintln!(
            "note: {} exists; new lines are appended (--resume would skip the rows it records \
             as done)",
            results.display()
        );
    }
    let settings = Settings {
        results: results.clone(),
        check,
        mode,
        limits: Limits {
            concurrency: pool,
            rate: args.run.rate,
            retries: args.run.retries,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        },
        // A check lists the rows that would fail on stdout itself.
        verbosity: if check { Verbosity::Quiet } else { verbosity },
        progress: verbosity != Verbosity::Quiet && std::io::stderr().is_terminal(),
    };
    let name = op.name();
    let ctx = Context {
        server_name: conn.server_name,
        me: conn.me,
    };
    let count_from = spec.path.is_some().then(|| (spec.clone(), binder));
    let summary = pipeline::run(Arc::new(op), conn.hs, ctx, input, count_from, settings)
        .await
        .map_err(Fatal::usage)?;

    if check {
        return Ok(check_summary(name, &summary));
    }
    eprintln!(
        "{}",
        report::summary_line(name, &summary.tally, summary.skipped, summary.elapsed)
    );
    eprintln!("results: {}", results.display());
    if let Some(e) = summary.results_error {
        return Err(Fatal {
            code: exit::ABORTED,
            message: format!(
                "cannot write the results file, so the run was stopped: {e}. Rows not recorded \
                 will run again with --resume"
            ),
        });
    }
    match summary.stop {
        Stop::Aborted(reason) => {
            return Err(Fatal {
                code: exit::ABORTED,
                message: format!(
                    "run aborted: {reason}. Rows not recorded were not run; fix the cause and \
                     rerun the same command with --resume"
                ),
            });
        }
        Stop::Interrupted => {
            eprintln!(
                "interrupted: the rows in flight were finished and recorded; rerun the same \
                 command with --resume to do the rest"
            );
            return Ok(exit::INTERRUPTED);
        }
        Stop::Completed => {}
    }
    if let Some(e) = summary.input_error {
        return Err(Fatal::usage(format!(
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
    Ok(if failed + invalid > 0 {
        exit::ROWS_FAILED
    } else {
        exit::OK
    })
}

fn dry_run<O: Op>(
    op: &O,
    ctx: Context,
    input: Input,
    mode: Mode,
    results: &Path,
) -> Result<u8, Fatal> {
    let latest = match mode {
        Mode::All => Latest::default(),
        _ => Latest::load(results).map_err(Fatal::usage)?,
    };
    let name = input.name().to_string();
    let counts = pipeline::dry_run(op, &ctx, input, mode, &latest, std::io::stdout().lock())
        .map_err(Fatal::usage)?;
    eprintln!(
        "dry run of {} on {name}: {} rows -> {} requests, {} invalid, {} skipped as done; \
         nothing was sent or written",
        op.name(),
        counts.rows,
        counts.tasks,
        counts.invalid,
        counts.skipped
    );
    Ok(if counts.invalid > 0 {
        exit::ROWS_FAILED
    } else {
        exit::OK
    })
}

/// `synbatch report`: exit 1 while any row's latest status is failed or invalid.
fn report_results(path: &Path, failed: Option<&Path>) -> Result<u8, Fatal> {
    let summary = results::summary::summarise(path, failed).map_err(Fatal::usage)?;
    results::summary::print(path, &summary, failed, std::io::stdout().lock())
        .map_err(|e| Fatal::usage(format!("cannot print the report: {e}")))?;
    let bad = ["failed", "invalid"]
        .iter()
        .filter_map(|s| summary.by_status.get(s))
        .sum::<u64>();
    Ok(if bad > 0 { exit::ROWS_FAILED } else { exit::OK })
}

/// The end of `--dry-run --check`: what would happen, and exit 1 if any row would not succeed.
fn check_summary(job: &str, summary: &pipeline::Summary) -> u8 {
    let fine = summary.tally.count(Status::Ok);
    let fail = summary.tally.count(Status::Failed);
    let invalid = summary.tally.count(Status::Invalid);
    eprintln!(
        "check of {job}: {fine} rows would run, {fail} would fail, {invalid} invalid, {} skipped \
         as done; nothing was changed",
        summary.skipped
    );
    match &summary.stop {
        Stop::Aborted(reason) => {
            eprintln!("synbatch: check aborted: {reason}");
            return exit::ABORTED;
        }
        Stop::Interrupted => return exit::INTERRUPTED,
        Stop::Completed => {}
    }
    if let Some(e) = &summary.input_error {
        eprintln!("synbatch: {e}\nthe check covers only the rows before this point");
        return exit::USAGE;
    }
    if fail + invalid > 0 {
        exit::ROWS_FAILED
    } else {
        exit::OK
    }
}

/// `<dir>/<stem>.results.csv` beside the input; `<job>.results.csv` here for stdin.
fn default_results_path(input: Option<&Path>, job: &str) -> PathBuf {
    match input {
        Some(path) => {
            let stem = path
                .file_stem()
                .unwrap_or(path.as_os_str())
                .to_string_lossy();
            path.with_file_name(format!("{stem}.results.csv"))
        }
        None => PathBuf::from(format!("{job}.results.csv")),
    }
}

fn has_lines(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_beside_the_input() {
        assert_eq!(
            default_results_path(Some(Path::new("hr/new-hires.csv")), "join"),
            PathBuf::from("hr/new-hires.results.csv")
        );
        assert_eq!(
            default_results_path(None, "join"),
            PathBuf::from("join.results.csv")
        );
    }
}
