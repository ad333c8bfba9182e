//! The run plan: what a row job's arguments ask for, decided before anything runs (which kind
//! of run, which rows, where the results go, the limits, how much to say).

use std::path::{Path, PathBuf};

use crate::cli::RowArgs;
use crate::executor::Limits;
use crate::input::InputSpec;
use crate::results::json::Destination;
use crate::results::{Latest, Status};
use crate::rows::progress::Verbosity;

/// What the run does with the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Send the requests and record every row.
    Run,
    /// `--dry-run`: print the requests; send nothing, write nothing.
    DryRun,
    /// `--check`: ask the server, read-only, which rows would fail and why; write nothing.
    Check,
}

/// Which rows of the input run, given an earlier results file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every row.
    All,
    /// Rows whose key is not yet `ok` or `unchanged` (a `pending` one runs again).
    Resume,
    /// Only rows whose latest status is `failed`, or `pending` (in doubt: a run was stopped
    /// after sending them).
    RetryFailed,
}

impl Mode {
    /// Whether a planned row is left out. An invalid row is left out only by `--retry-failed`
    /// (it was never failed); `--resume` records it again so that it is seen.
    pub fn skips(self, latest: &Latest, key: &str, valid: bool) -> bool {
        match self {
            Mode::All => false,
            Mode::Resume => valid && latest.get(key).is_some_and(Status::is_done),
            Mode::RetryFailed => !matches!(latest.get(key), Some(Status::Failed | Status::Pending)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunPlan {
    pub kind: Kind,
    pub mode: Mode,
    pub input: InputSpec,
    /// Where results go, and where `--resume`/`--retry-failed` read the earlier run from.
    pub results: PathBuf,
    pub limits: Limits,
    /// What the person at the terminal is told as rows finish.
    pub verbosity: Verbosity,
    /// Draw a progress bar (stderr is a terminal and the run is not quiet).
    pub progress: bool,
    /// `--yes`: the confirmation of a destructive job was given in advance.
    pub yes: bool,
    /// `--summary-json -`: stdout holds the summary alone; a dry run's and a check's lines go
    /// to stderr.
    pub stdout_taken: bool,
    /// `--lift-ratelimit`: the token's account runs without rate limits.
    pub lift_ratelimit: bool,
}

impl RunPlan {
    /// `concurrency` is the job's default for `-j`; `terminal` says whether stderr is one.
    pub fn new(args: &RowArgs, job: &str, concurrency: u16, terminal: bool) -> RunPlan {
        let run = &args.run;
        let kind = match (run.check, run.dry_run) {
            (true, _) => Kind::Check,
            (_, true) => Kind::DryRun,
            _ => Kind::Run,
        };
        let mode = match (run.resume, run.retry_failed) {
            (true, _) => Mode::Resume,
            (_, true) => Mode::RetryFailed,
            _ => Mode::All,
        };
        let path = args
            .input
            .as_ref()
            .filter(|p| p.as_os_str() != "-")
            .cloned();
        let results = run
            .results
            .clone()
            .unwrap_or_else(|| default_results_path(path.as_deref(), job));
        let verbosity = match (run.quiet, run.verbose) {
            (true, _) => Verbosity::Quiet,
            (_, true) => Verbosity::Verbose,
            _ => Verbosity::Normal,
        };
        let concurrency = usize::from(run.concurrency.unwrap_or(concurrency));
        RunPlan {
            kind,
            mode,
            input: InputSpec {
                path,
                format: args.format,
                delimiter: args.delimiter,
                encoding: args.encoding.clone(),
                sheet: args.sheet.clone(),
            },
            results,
            limits: Limits::new(concurrency, run.rate, run.retries),
            // A check and a dry run print their own lines on stdout; nothing goes to stderr
            // per row.
            verbosity: if kind == Kind::Run {
                verbosity
            } else {
                Verbosity::Quiet
            },
            progress: kind == Kind::Run && verbosity != Verbosity::Quiet && terminal,
            yes: run.yes,
            stdout_taken: run.summary_json == Some(Destination::Stdout),
            lift_ratelimit: run.lift_ratelimit,
        }
    }
}

/// `<dir>/<stem>.results.csv` beside the input; `<job>.results.csv` here for stdin.
pub fn default_results_path(input: Option<&Path>, job: &str) -> PathBuf {
    beside_input(input, job, "results.csv")
}

/// `<dir>/<stem>.<suffix>` beside the input (a results file, a plan); `<job>.<suffix>` here
/// for stdin.
pub fn beside_input(input: Option<&Path>, job: &str, suffix: &str) -> PathBuf {
    match input {
        Some(path) => {
            let stem = path
                .file_stem()
                .unwrap_or(path.as_os_str())
                .to_string_lossy();
            path.with_file_name(format!("{stem}.{suffix}"))
        }
        None => PathBuf::from(format!("{job}.{suffix}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{RunArgs, ServerArgs};

    fn args(input: &str, flags: impl FnOnce(&mut RunArgs)) -> RowArgs {
        let mut run = RunArgs {
            concurrency: None,
            rate: None,
            retries: 5,
            results: None,
            resume: false,
            retry_failed: false,
            dry_run: false,
            check: false,
            yes: false,
            quiet: false,
            verbose: false,
            summary_json: None,
            annotate: None,
            lift_ratelimit: false,
        };
        flags(&mut run);
        RowArgs {
            input: Some(input.into()),
            format: None,
            columns: vec![],
            delimiter: None,
            sheet: None,
            encoding: None,
            localpart_from: None,
            server: ServerArgs {
                homeserver: None,
                token_file: None,
                token: None,
                server_name: None,
                allow_insecure_http: false,
                timeout: 30.0,
            },
            run,
        }
    }

    #[test]
    fn results_beside_the_input_or_named_after_the_job() {
        let plan = RunPlan::new(&args("hr/new-hires.csv", |_| {}), "join", 8, false);
        assert_eq!(plan.results, PathBuf::from("hr/new-hires.results.csv"));
        assert_eq!(plan.input.path, Some(PathBuf::from("hr/new-hires.csv")));
        let stdin = RunPlan::new(&args("-", |_| {}), "join", 8, false);
        assert_eq!(stdin.results, PathBuf::from("join.results.csv"));
        assert_eq!(stdin.input.path, None);
        let named = RunPlan::new(
            &args("a.csv", |r| r.results = Some("o.csv".into())),
            "join",
            8,
            false,
        );
        assert_eq!(named.results, PathBuf::from("o.csv"));
    }

    #[test]
    fn kinds_and_modes() {
        let plan = |f: fn(&mut RunArgs)| RunPlan::new(&args("a.csv", f), "join", 8, true);
        assert_eq!(plan(|_| {}).kind, Kind::Run);
        assert_eq!(plan(|r| r.dry_run = true).kind, Kind::DryRun);
        // --check alone, or with --dry-run, is a check.
        assert_eq!(plan(|r| r.check = true).kind, Kind::Check);
        assert_eq!(
            plan(|r| (r.check, r.dry_run) = (true, true)).kind,
            Kind::Check
        );
        assert_eq!(plan(|_| {}).mode, Mode::All);
        assert_eq!(plan(|r| r.resume = true).mode, Mode::Resume);
        assert_eq!(plan(|r| r.retry_failed = true).mode, Mode::RetryFailed);
    }

    #[test]
    fn limits_take_the_jobs_default_unless_told() {
        let plan = RunPlan::new(&args("a.csv", |_| {}), "create-users", 16, false);
        assert_eq!(plan.limits.concurrency, 16);
        let told = RunPlan::new(&args("a.csv", |r| r.concurrency = Some(3)), "x", 16, false);
        assert_eq!(told.limits.concurrency, 3);
        assert_eq!(told.limits.retries, 5);
    }

    #[test]
    fn only_a_real_run_on_a_terminal_talks_per_row() {
        let run = RunPlan::new(&args("a.csv", |_| {}), "join", 8, true);
        assert!(run.progress);
        assert_eq!(run.verbosity, Verbosity::Normal);
        let quiet = RunPlan::new(&args("a.csv", |r| r.quiet = true), "join", 8, true);
        assert!(!quiet.progress);
        let dry = RunPlan::new(&args("a.csv", |r| r.dry_run = true), "join", 8, true);
        assert!(!dry.progress);
        assert_eq!(dry.verbosity, Verbosity::Quiet);
        let piped = RunPlan::new(&args("a.csv", |_| {}), "join", 8, false);
        assert!(!piped.progress);
    }

    #[test]
    fn resume_keeps_invalid_rows_retry_failed_takes_only_failed() {
        let latest = Latest::default();
        assert!(!Mode::All.skips(&latest, "k", true));
        assert!(!Mode::Resume.skips(&latest, "k", true));
        assert!(Mode::RetryFailed.skips(&latest, "k", true));
        assert!(Mode::RetryFailed.skips(&latest, "k", false));
    }

    #[test]
    fn a_pending_row_is_not_done_and_is_in_doubt() {
        let latest = Latest::of([
            ("join ok", Status::Ok),
            ("join same", Status::Unchanged),
            ("join failed", Status::Failed),
            ("join invalid", Status::Invalid),
            ("join pending", Status::Pending),
        ]);
        let runs = |mode: Mode| -> Vec<&str> {
            [
                "join ok",
                "join same",
                "join failed",
                "join invalid",
                "join pending",
                "join new",
            ]
            .into_iter()
            .filter(|key| !mode.skips(&latest, key, true))
            .collect()
        };
        assert_eq!(
            runs(Mode::Resume),
            ["join failed", "join invalid", "join pending", "join new"]
        );
        assert_eq!(runs(Mode::RetryFailed), ["join failed", "join pending"]);
        assert_eq!(runs(Mode::All).len(), 6);
    }
}
