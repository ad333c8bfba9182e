//! The summary for scripts: one JSON object per run (`--summary-json FILE|-`) or per results
//! file (`report --json`), in the shape `schemas/summary.schema.json` describes.
//!
//! A run writes it however it ends: with exit 1, 2 (an input that broke off), 3 (aborted) or
//! 130 (interrupted), `exit_code` says which and `error` why. Its file is opened before the run
//! starts, so that a summary that could not be written stops the run before anything is sent.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use serde::Serialize;

use super::failures::Failures;
use super::file::{self, Output};
use crate::exit::Exit;

/// Where `--summary-json` goes: a file, or stdout (`-`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Stdout,
    File(PathBuf),
}

impl Destination {
    /// `--summary-json`'s value parser.
    pub fn parse(s: &str) -> Result<Destination, String> {
        match s {
            "" => Err("the summary needs a file name, or - for stdout".into()),
            "-" => Ok(Destination::Stdout),
            path => Ok(Destination::File(PathBuf::from(path))),
        }
    }

    /// Opens the file now (a new or replaced regular file, never through a link), so that a
    /// path that cannot be written is found before the run. `others` are the run's own files
    /// (its input, its results): a summary never replaces one of them.
    pub fn open(&self, others: &[&Path]) -> Result<Opened, Exit> {
        Ok(match self {
            Destination::Stdout => Opened::Stdout,
            Destination::File(path) => {
                // By what they are when they exist, by name when one does not yet (a results
                // file the run is about to create).
                let same = |other: &&&Path| match (
                    std::fs::canonicalize(path),
                    std::fs::canonicalize(other),
                ) {
                    (Ok(a), Ok(b)) => a == b,
                    _ => std::path::absolute(path).ok() == std::path::absolute(other).ok(),
                };
                if let Some(other) = others.iter().find(same) {
                    return Err(Exit::usage(format!(
                        "--summary-json {}: that is {} of this run; name another file",
                        path.display(),
                        other.display()
                    )));
                }
                let (file, _) = file::open_output(path, Output::Replace)
                    .map_err(|e| Exit::usage(format!("--summary-json: {e}")))?;
                Opened::File(file, path.clone())
            }
        })
    }
}

/// Opens `--summary-json`'s destination, if one was given; `others` as [`Destination::open`].
pub fn open(dest: Option<&Destination>, others: &[&Path]) -> Result<Option<Opened>, Exit> {
    dest.map(|d| d.open(others)).transpose()
}

/// A summary destination ready to be written.
pub enum Opened {
    Stdout,
    File(File, PathBuf),
}

impl Opened {
    /// Writes the summary, one line of JSON.
    pub fn write(self, summary: &JsonSummary) -> Result<(), String> {
        let mut text = serde_json::to_string(summary).expect("a summary serialises");
        text.push('\n');
        let text = crate::secret::redact(&text);
        match self {
            Opened::Stdout => std::io::stdout()
                .lock()
                .write_all(text.as_bytes())
                .map_err(|e| format!("cannot write the summary to stdout: {e}")),
            Opened::File(mut file, path) => file
                .write_all(text.as_bytes())
                .and_then(|()| file.sync_data())
                .map_err(|e| format!("cannot write the summary to {}: {e}", path.display())),
        }
    }
}

/// Counts per status. `pending`: rows whose change was sent when a run was stopped, and whose
/// outcome is not recorded (a resume settles them).
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub ok: u64,
    pub unchanged: u64,
    pub failed: u64,
    pub invalid: u64,
    pub pending: u64,
}

impl Counts {
    /// From counts keyed by status name (`Tally`, `report`'s summary).
    pub fn of(by_status: &std::collections::BTreeMap<&'static str, u64>) -> Counts {
        let n = |s: &str| by_status.get(s).copied().unwrap_or(0);
        Counts {
            ok: n("ok"),
            unchanged: n("unchanged"),
            failed: n("failed"),
            invalid: n("invalid"),
            pending: n("pending"),
        }
    }
}

/// Failed or invalid rows of one kind.
#[derive(Debug, Clone, Serialize)]
pub struct FailureGroup {
    /// `failed` or `invalid`.
    pub status: &'static str,
    /// A stable slug (`user_not_found`), or null when the errcode says all that is known.
    pub cause: Option<String>,
    pub errcode: Option<String>,
    pub http_status: Option<u16>,
    /// For people: `user not found (M_NOT_FOUND, HTTP 404)`.
    pub description: String,
    pub count: u64,
    /// The first message of this kind (cut to 200 characters).
    pub example: String,
}

pub fn groups(failures: &Failures) -> Vec<FailureGroup> {
    let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
    failures
        .sorted()
        .into_iter()
        .map(|(kind, group)| FailureGroup {
            status: kind.status.as_str(),
            cause: some(&kind.cause),
            errcode: some(&kind.errcode),
            http_status: kind.http_status,
            description: kind.describe(),
            count: group.count,
            example: group.example.clone(),
        })
        .collect()
}

/// What the object is the summary of.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A run of a job (`--summary-json`).
    Run,
    /// A results file (`report --json`).
    Report,
}

/// The summary object. Every key is always present (null when it does not apply).
#[derive(Debug, Clone, Serialize)]
pub struct JsonSummary {
    pub synbatch_version: &'static str,
    pub source: Source,
    pub job: Option<String>,
    /// RFC 3339, UTC. For a report: the first and last `finished_at` of the lines it counts.
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// The run's wall time; null for a report.
    pub duration_ms: Option<u64>,
    pub dry_run: bool,
    pub check: bool,
    /// The results file written (or read, for a report); null when none was (dry run, check,
    /// export-users).
    pub results: Option<String>,
    /// The exit code the command returns.
    pub exit_code: u8,
    /// Why the run stopped, for exit codes 2, 3 and 130.
    pub error: Option<String>,
    /// Rows run (a run: rows the jobs finished, skipped ones apart; a report: keys).
    pub rows: u64,
    /// Rows an earlier run had finished, skipped by `--resume` / `--retry-failed`.
    pub skipped: u64,
    pub counts: Counts,
    /// Failed and invalid rows by kind, the largest first.
    pub failures: Vec<FailureGroup>,
    /// Failed or invalid rows of kinds beyond the 100 listed.
    pub failures_not_grouped: u64,
}

impl JsonSummary {
    /// An empty summary of `job`: fill in what is known.
    pub fn new(source: Source, job: Option<&str>) -> JsonSummary {
        JsonSummary {
            synbatch_version: env!("CARGO_PKG_VERSION"),
            source,
            job: job.map(String::from),
            started_at: None,
            finished_at: None,
            duration_ms: None,
            dry_run: false,
            check: false,
            results: None,
            exit_code: 0,
            error: None,
            rows: 0,
            skipped: 0,
            counts: Counts::default(),
            failures: vec![],
            failures_not_grouped: 0,
        }
    }

    pub fn set_failures(&mut self, failures: &Failures) {
        self.failures = groups(failures);
        self.failures_not_grouped = failures.others;
    }

    /// Adds what one more pass of the same run did (a job that runs its input in passes, such
    /// as create-rooms with its spaces first): rows, counts and failures add up.
    pub fn add_pass(&mut self, pass: JsonSummary) {
        self.results = pass.results.or(self.results.take());
        self.rows += pass.rows;
        self.skipped += pass.skipped;
        let (a, b) = (&mut self.counts, pass.counts);
        a.ok += b.ok;
        a.unchanged += b.unchanged;
        a.failed += b.failed;
        a.invalid += b.invalid;
        a.pending += b.pending;
        for group in pass.failures {
            let same = self.failures.iter_mut().find(|g| {
                (g.status, &g.cause, &g.errcode, g.http_status)
                    == (
                        group.status,
                        &group.cause,
                        &group.errcode,
                        group.http_status,
                    )
            });
            match same {
                Some(g) => g.count += group.count,
                None => self.failures.push(group),
            }
        }
        self.failures.sort_by_key(|g| std::cmp::Reverse(g.count));
        self.failures_not_grouped += pass.failures_not_grouped;
    }

    pub fn set_results(&mut self, path: &Path) {
        self.results = Some(path.display().to_string());
    }

    /// How the command ends: its exit code and, when it did not end with its rows, why.
    pub fn set_exit(&mut self, ended: &Result<(), Exit>) {
        self.exit_code = match ended {
            Ok(()) => 0,
            Err(exit) => exit.code(),
        };
        self.error = match ended {
            Err(Exit::Interrupted) => Some("interrupted".into()),
            Err(exit) => exit.message().map(String::from),
            Ok(()) => None,
        };
    }
}

/// When a run started, on the wall clock (for `started_at`) and the monotonic one (for its
/// duration).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall: SystemTime,
    start: Instant,
}

impl Clock {
    pub fn start() -> Clock {
        Clock {
            wall: SystemTime::now(),
            start: Instant::now(),
        }
    }

    /// Sets the summary's start, end and duration, the end being now.
    pub fn stamp(&self, summary: &mut JsonSummary) {
        let elapsed = self.start.elapsed();
        summary.started_at = Some(rfc3339(self.wall));
        summary.finished_at = Some(rfc3339(self.wall + elapsed));
        summary.duration_ms = Some(elapsed.as_millis() as u64);
    }
}

pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// `--summary-json` as a command ends: writes the summary if one was asked for, and returns
/// how the command ends. A summary that cannot be written turns a success into exit 2, and is
/// said on stderr otherwise (the run's own ending is the more important news).
pub fn finish(
    out: Option<Opened>,
    mut summary: JsonSummary,
    clock: &Clock,
    ended: Result<(), Exit>,
) -> Result<(), Exit> {
    let Some(out) = out else {
        return ended;
    };
    clock.stamp(&mut summary);
    summary.set_exit(&ended);
    match (out.write(&summary), ended) {
        (Ok(()), ended) => ended,
        (Err(e), Ok(())) => Err(Exit::usage(e)),
        (Err(e), ended) => {
            eprintln!("synbatch: {e}");
            ended
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_there_and_exits_say_why() {
        let mut s = JsonSummary::new(Source::Run, Some("join"));
        s.set_exit(&Err(Exit::aborted("the homeserver rejected the token")));
        let value = serde_json::to_value(&s).unwrap();
        assert_eq!(value["exit_code"], 3);
        assert_eq!(value["error"], "the homeserver rejected the token");
        assert_eq!(value["source"], "run");
        assert!(value["results"].is_null());
        assert_eq!(value.as_object().unwrap().len(), 16);
        s.set_exit(&Err(Exit::Interrupted));
        assert_eq!(
            (s.exit_code, s.error.as_deref()),
            (130, Some("interrupted"))
        );
        s.set_exit(&Err(Exit::RowsFailed));
        assert_eq!((s.exit_code, s.error.as_deref()), (1, None));
    }

    #[test]
    fn destinations() {
        assert_eq!(Destination::parse("-"), Ok(Destination::Stdout));
        assert_eq!(
            Destination::parse("s.json"),
            Ok(Destination::File("s.json".into()))
        );
        assert!(Destination::parse("").is_err());
    }

    #[test]
    fn a_summary_never_replaces_the_runs_own_files() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.csv");
        std::fs::write(&input, "user\n@a:x\n").unwrap();
        let results = dir.path().join("in.results.csv"); // not there yet
        let others = [input.as_path(), results.as_path()];
        for path in [&input, &results, &dir.path().join(".").join("in.csv")] {
            let err = Destination::File(path.clone()).open(&others).err().unwrap();
            assert!(err.to_string().contains("name another file"), "{err}");
        }
        assert_eq!(std::fs::read_to_string(&input).unwrap(), "user\n@a:x\n");
        assert!(!results.exists());
        let fine = Destination::File(dir.path().join("s.json"));
        assert!(fine.open(&others).is_ok());
    }
}
