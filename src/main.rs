//! synbatch: bulk administration jobs for a Matrix homeserver (Synapse), from spreadsheets.
//!
//! main parses the command line, builds the job, runs it and maps the outcome to an exit code.

mod cli;
mod config;
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
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
            let join = ops::join::Join::new(&args.rooms).map_err(Fatal::usage)?;
            run_job(join, &args.job).await
        }
    }
}

/// Runs a row job: checks options and input before the network, then the server, then the rows.
async fn run_job<O: Op>(op: O, args: &JobArgs) -> Result<u8, Fatal> {
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

    if args.run.dry_run {
        let server_name = match &args.server.server_name {
            Some(name) => name.clone(),
            None => config::connect(&args.server, 1, false).await?.server_name,
        };
        return dry_run(&op, Context { server_name }, input, mode, &results);
    }

    let pool = usize::from(args.run.concurrency);
    let conn = config::connect(&args.server, pool, true).await?;
    if mode == Mode::All && verbosity != Verbosity::Quiet && has_lines(&results) {
        eprintln!(
            "note: {} exists; new lines are appended (--resume would skip the rows it records \
             as done)",
            results.display()
        );
    }
    let settings = Settings {
        results: results.clone(),
        mode,
        limits: Limits {
            concurrency: pool,
            rate: args.run.rate,
            retries: args.run.retries,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        },
        verbosity,
        progress: verbosity != Verbosity::Quiet && std::io::stderr().is_terminal(),
    };
    let name = op.name();
    let ctx = Context {
        server_name: conn.server_name,
    };
    let count_from = spec.path.is_some().then(|| (spec.clone(), binder));
    let summary = pipeline::run(Arc::new(op), conn.hs, ctx, input, count_from, settings)
        .await
        .map_err(Fatal::usage)?;

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
