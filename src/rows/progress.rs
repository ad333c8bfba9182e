//! What the person at the terminal sees: a progress bar while rows run (only when stderr is a
//! terminal), the first failures as they happen, and one summary at the end.

use std::collections::BTreeMap;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::results::failures::Failures;
use crate::results::{ResultLine, Status};

/// Failed and invalid rows printed as they happen, before the rest are left to the results file.
const SHOWN_FAILURES: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

/// Counts of a run, by status, and its failures by kind.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub by_status: BTreeMap<&'static str, u64>,
    pub shown_failures: usize,
    pub failures: Failures,
}

impl Tally {
    pub fn count(&self, status: Status) -> u64 {
        self.by_status.get(status.as_str()).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.by_status.values().sum()
    }
}

pub struct Report {
    bar: ProgressBar,
    verbosity: Verbosity,
    tally: Tally,
}

impl Report {
    /// `show_bar`: stderr is a terminal and the run is not quiet.
    pub fn new(show_bar: bool, verbosity: Verbosity) -> Report {
        let bar = if show_bar {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(spinner_style());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        } else {
            ProgressBar::hidden()
        };
        Report {
            bar,
            verbosity,
            tally: Tally::default(),
        }
    }

    /// A handle for other threads: the row counter sets the total, the reader counts skips.
    pub fn bar(&self) -> ProgressBar {
        self.bar.clone()
    }

    pub fn record(&mut self, line: &ResultLine) {
        self.bar.inc(1);
        *self
            .tally
            .by_status
            .entry(line.status.as_str())
            .or_default() += 1;
        self.tally.failures.add_line(line);
        let bad = matches!(line.status, Status::Failed | Status::Invalid);
        let show = match self.verbosity {
            Verbosity::Quiet => false,
            Verbosity::Normal => bad && self.tally.shown_failures < SHOWN_FAILURES,
            Verbosity::Verbose => true,
        };
        if show {
            if bad {
                self.tally.shown_failures += 1;
            }
            let text = describe(line);
            self.bar
                .suspend(|| eprintln!("{}", crate::secret::for_terminal(&text)));
        }
    }

    pub fn finish(self) -> Tally {
        self.bar.finish_and_clear();
        self.tally
    }
}

/// Once the total is known, the spinner becomes a bar with done/total, rate and ETA.
pub fn set_total(bar: &ProgressBar, total: u64) {
    bar.set_length(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30.cyan/blue} {human_pos}/{human_len} rows  {rate}  ETA {eta}  {msg}",
        )
        .expect("template is valid")
        .with_key("rate", rate)
        .progress_chars("=> "),
    );
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {human_pos} rows  {rate}  {elapsed}  {msg}")
        .expect("template is valid")
        .with_key("rate", rate)
}

/// Rows per second, whole numbers (indicatif's own `{per_sec}` prints four decimals).
fn rate(state: &indicatif::ProgressState, out: &mut dyn std::fmt::Write) {
    let _ = write!(out, "{:.0}/s", state.per_sec());
}

fn describe(line: &ResultLine) -> String {
    let mut text = format!("row {}: {} {}", line.row, line.status.as_str(), line.key);
    let detail: Vec<String> = [
        line.http_status.map(|s| s.to_string()).unwrap_or_default(),
        line.errcode.clone(),
    ]
    .into_iter()
    .filter(|s| !s.is_empty())
    .collect();
    if !detail.is_empty() {
        text.push_str(&format!(" ({})", detail.join(" ")));
    }
    if !line.message.is_empty() {
        text.push_str(": ");
        text.push_str(&line.message);
    }
    text
}

/// The closing summary: counts per status, time and rate.
pub fn summary_line(job: &str, tally: &Tally, skipped: u64, elapsed: Duration) -> String {
    let done = tally.total();
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let counts: Vec<String> = Status::ALL
        .iter()
        .map(|s| format!("{} {}", tally.count(*s), s.as_str()))
        .collect();
    let mut line = format!(
        "{job}: {done} rows in {secs:.1}s ({rate:.1}/s): {}",
        counts.join(", ")
    );
    if skipped > 0 {
        line.push_str(&format!(", {skipped} skipped (done in an earlier run)"));
    }
    if tally.shown_failures > 0 {
        let bad = tally.count(Status::Failed) + tally.count(Status::Invalid);
        if bad as usize > tally.shown_failures {
            line.push_str(&format!(
                "\n{} more failed or invalid rows are in the results file",
                bad as usize - tally.shown_failures
            ));
        }
    }
    line
}
