//! Wires one run together: input -> operation -> executor -> homeserver -> results.
//!
//! Three lanes, so that no stage waits on another's kind of work: a reader thread parses rows
//! and plans tasks (dropping those an earlier run finished), the async executor sends them, and
//! a writer thread appends each finished row to the results file.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::executor::{self, Attempt, Finished, Limits, Stop, Work};
use crate::homeserver::Homeserver;
use crate::input::{Binder, Input, InputError, InputSpec};
use crate::ops::{Context, Op, Outcome, Planned};
use crate::report::{self, Report, Tally, Verbosity};
use crate::results::{Latest, ResultLine, ResultsError, ResultsWriter, Status};

/// Which rows of the input run, given an earlier results file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every row.
    All,
    /// Rows whose key is not yet `ok` or `unchanged`.
    Resume,
    /// Only rows whose latest status is `failed`.
    RetryFailed,
}

impl Mode {
    fn skips(self, latest: &Latest, key: &str) -> bool {
        match self {
            Mode::All => false,
            Mode::Resume => latest.get(key).is_some_and(Status::is_done),
            Mode::RetryFailed => latest.get(key) != Some(Status::Failed),
        }
    }
}

pub struct Settings {
    /// Where results go, and where `--resume`/`--retry-failed` read the earlier run from.
    pub results: PathBuf,
    /// `--dry-run --check`: run the op's read-only checks instead of the op, print the rows that
    /// would fail, write nothing.
    pub check: bool,
    pub mode: Mode,
    pub limits: Limits,
    pub verbosity: Verbosity,
    /// Draw a progress bar (stderr is a terminal).
    pub progress: bool,
}

/// How a run ended.
pub struct Summary {
    pub tally: Tally,
    pub skipped: u64,
    pub stop: Stop,
    /// The input could not be read to its end; the rows before the fault ran.
    pub input_error: Option<InputError>,
    /// The results file could not be written; the run was stopped.
    pub results_error: Option<ResultsError>,
    pub elapsed: std::time::Duration,
}

/// A task on its way through the executor, with what the results file needs to know of it.
pub struct Item<T> {
    row: u64,
    key: String,
    fields: Vec<String>,
    task: T,
}

struct OpWork<O> {
    op: Arc<O>,
    hs: Arc<Homeserver>,
}

impl<O: Op> Work for OpWork<O> {
    type Item = Item<O::Task>;
    type Output = Outcome;

    fn attempt(&self, item: &Item<O::Task>) -> impl Future<Output = Attempt<Outcome>> + Send {
        self.op.attempt(&self.hs, &item.task)
    }

    fn serial_key(&self, item: &Item<O::Task>) -> Option<String> {
        self.op.serial_key(&item.task)
    }

    fn explain(&self, output: &Outcome) -> String {
        output.message.clone()
    }
}

/// `--dry-run --check`: the op's read-only checks in place of the op.
struct CheckWork<O> {
    op: Arc<O>,
    hs: Arc<Homeserver>,
    ctx: Context,
}

impl<O: Op> Work for CheckWork<O> {
    type Item = Item<O::Task>;
    type Output = Outcome;

    async fn attempt(&self, item: &Item<O::Task>) -> Attempt<Outcome> {
        match self.op.check(&self.hs, &self.ctx, &item.task).await {
            Ok(None) => Attempt::Done(Outcome {
                status: Status::Ok,
                http_status: None,
                errcode: String::new(),
                message: "would run".into(),
            }),
            Ok(Some(why)) => Attempt::Done(Outcome {
                status: Status::Failed,
                http_status: None,
                errcode: String::new(),
                message: why,
            }),
            Err(e) => crate::ops::classify(e),
        }
    }
}

impl<T> From<Finished<Item<T>, Outcome>> for ResultLine {
    fn from(done: Finished<Item<T>, Outcome>) -> Self {
        line(
            done.item.row,
            done.item.key,
            done.item.fields,
            done.output,
            done.attempts,
            done.elapsed,
        )
    }
}

fn line(
    row: u64,
    key: String,
    fields: Vec<String>,
    outcome: Outcome,
    attempts: u32,
    duration: std::time::Duration,
) -> ResultLine {
    ResultLine {
        row,
        key,
        status: outcome.status,
        http_status: outcome.http_status,
        errcode: outcome.errcode,
        message: outcome.message,
        attempts,
        duration,
        fields,
    }
}

pub async fn run<O: Op>(
    op: Arc<O>,
    hs: Arc<Homeserver>,
    ctx: Context,
    input: Input,
    count_from: Option<(InputSpec, Binder)>,
    settings: Settings,
) -> Result<Summary, ResultsError> {
    let started = Instant::now();
    let results = settings.results.clone();
    let latest = match settings.mode {
        Mode::All => Latest::default(),
        _ => tokio::task::spawn_blocking(move || Latest::load(&results))
            .await
            .expect("results reader does not panic")?,
    };
    let sink = if settings.check {
        Sink::Plan
    } else {
        Sink::File(Box::new(ResultsWriter::open(
            &settings.results,
            op.result_fields(),
        )?))
    };
    let report = Report::new(settings.progress, settings.verbosity);
    if let Some((spec, binder)) = count_from.filter(|_| settings.progress) {
        count_rows_in_background(spec, binder, op.tasks_per_row(), report.bar());
    }

    let cancel = CancellationToken::new();
    stop_on_signals(cancel.clone());
    let concurrency = settings.limits.concurrency.max(1);
    // A few batches ahead of the executor: enough to never starve it, bounded memory.
    let (task_tx, task_rx) = mpsc::channel(concurrency.div_ceil(BATCH).max(2));
    let (line_tx, line_rx) = mpsc::channel::<ResultLine>(4096);

    let bar = report.bar();
    let writer = {
        let cancel = cancel.clone();
        std::thread::spawn(move || write_results(line_rx, sink, report, cancel))
    };
    let ctx2 = ctx.clone();
    let reader = {
        let (op, line_tx, cancel) = (op.clone(), line_tx.clone(), cancel.clone());
        let lanes = Lanes {
            tasks: task_tx,
            lines: line_tx,
            cancel,
            bar,
        };
        std::thread::spawn(move || read_and_plan(&*op, &ctx, input, settings.mode, &latest, lanes))
    };
    let stop = if settings.check {
        let work = CheckWork { op, hs, ctx: ctx2 };
        executor::run(work, settings.limits, task_rx, line_tx, cancel.clone()).await
    } else {
        let work = OpWork { op, hs };
        executor::run(work, settings.limits, task_rx, line_tx, cancel.clone()).await
    };
    let (skipped, input_result) = tokio::task::spawn_blocking(move || reader.join())
        .await
        .expect("join of the reader thread")
        .expect("reader thread does not panic");
    let (tally, results_error) = tokio::task::spawn_blocking(move || writer.join())
        .await
        .expect("join of the writer thread")
        .expect("writer thread does not panic");
    Ok(Summary {
        tally,
        skipped,
        stop,
        input_error: input_result.err(),
        results_error,
        elapsed: started.elapsed(),
    })
}

/// Tasks handed to the executor at a time, at most.
const BATCH: usize = 64;

/// Where the reader sends what it planned.
struct Lanes<T> {
    tasks: mpsc::Sender<Vec<Item<T>>>,
    lines: mpsc::Sender<ResultLine>,
    cancel: CancellationToken,
    bar: indicatif::ProgressBar,
}

/// The reader thread: rows in, tasks out. Invalid rows go straight to the results; rows an
/// earlier run finished are counted and dropped. Returns how many were skipped.
fn read_and_plan<O: Op>(
    op: &O,
    ctx: &Context,
    input: Input,
    mode: Mode,
    latest: &Latest,
    lanes: Lanes<O::Task>,
) -> (u64, Result<(), InputError>) {
    let mut skipped = 0u64;
    let mut planned = Vec::new();
    let mut batch = Vec::with_capacity(BATCH);
    let result = input.for_each_row(|row| {
        if lanes.cancel.is_cancelled() {
            return false;
        }
        op.plan(ctx, &row, &mut planned);
        for Planned {
            row,
            key,
            fields,
            task,
        } in planned.drain(..)
        {
            if mode.skips(latest, &key) && (task.is_ok() || mode == Mode::RetryFailed) {
                skipped += 1;
                lanes.bar.inc(1);
                continue;
            }
            match task {
                Ok(task) => batch.push(Item {
                    row,
                    key,
                    fields,
                    task,
                }),
                Err(why) => {
                    let outcome = Outcome::invalid(why);
                    let invalid = line(row, key, fields, outcome, 0, Default::default());
                    if lanes.lines.blocking_send(invalid).is_err() {
                        return false;
                    }
                }
            }
        }
        // A full batch waits for room; a partial one goes at once if the executor has room for
        // it, so a slow trickle of rows (stdin) is never held back.
        if batch.len() >= BATCH {
            return lanes
                .tasks
                .blocking_send(std::mem::take(&mut batch))
                .is_ok();
        }
        if !batch.is_empty() {
            match lanes.tasks.try_send(std::mem::take(&mut batch)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(back)) => batch = back,
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
            }
        }
        true
    });
    if !batch.is_empty() {
        let _ = lanes.tasks.blocking_send(batch);
    }
    (skipped, result)
}

/// How long the writer lets finished rows gather between writes.
const GATHER: std::time::Duration = std::time::Duration::from_millis(2);

/// Where finished rows go: the results file, or, for `--dry-run --check`, the terminal.
enum Sink {
    File(Box<ResultsWriter>),
    Plan,
}

impl Sink {
    fn write(&mut self, line: &ResultLine) -> Result<(), ResultsError> {
        match self {
            Sink::File(writer) => writer.write(line),
            Sink::Plan => {
                if matches!(line.status, Status::Failed | Status::Invalid) {
                    let verdict = match line.status {
                        Status::Invalid => "invalid",
                        _ => "would fail",
                    };
                    println!(
                        "row {}: {verdict}: {}: {}",
                        line.row, line.key, line.message
                    );
                }
                Ok(())
            }
        }
    }

    fn flush(&mut self) -> Result<(), ResultsError> {
        match self {
            Sink::File(writer) => writer.flush(),
            Sink::Plan => Ok(()),
        }
    }

    fn sync(&mut self) -> Result<(), ResultsError> {
        match self {
            Sink::File(writer) => writer.sync(),
            Sink::Plan => Ok(()),
        }
    }
}

/// The writer thread: appends each finished row, hands each batch to the OS as soon as the
/// channel is momentarily empty, and syncs at the end. If the file cannot be written, the run
/// is stopped (rows not recorded will run again on resume).
fn write_results(
    mut lines: mpsc::Receiver<ResultLine>,
    mut sink: Sink,
    mut report: Report,
    cancel: CancellationToken,
) -> (Tally, Option<ResultsError>) {
    let mut error = None;
    while let Some(first) = lines.blocking_recv() {
        let mut next = Some(first);
        while let Some(line) = next {
            if error.is_none() {
                match sink.write(&line) {
                    Ok(()) => report.record(&line),
                    Err(e) => {
                        error = Some(e);
                        cancel.cancel();
                    }
                }
            }
            next = lines.try_recv().ok();
        }
        if error.is_none()
            && let Err(e) = sink.flush()
        {
            error = Some(e);
            cancel.cancel();
        }
        // Lets the next rows gather: one write and one wake-up for many rows instead of one
        // each, at the cost of a line reaching the file up to this much later.
        std::thread::sleep(GATHER);
    }
    if error.is_none()
        && let Err(e) = sink.sync()
    {
        error = Some(e);
    }
    (report.finish(), error)
}

/// Counts the input's rows on a thread of its own, so the bar can show a total and an ETA
/// without delaying the first request.
fn count_rows_in_background(
    spec: InputSpec,
    binder: Binder,
    per_row: usize,
    bar: indicatif::ProgressBar,
) {
    std::thread::spawn(move || {
        let Ok(input) = Input::open(&spec, binder, &[]) else {
            return;
        };
        let mut rows = 0u64;
        if input
            .for_each_row(|_| {
                rows += 1;
                true
            })
            .is_ok()
        {
            report::set_total(&bar, rows * per_row as u64);
        }
    });
}

/// Ctrl-C (or SIGTERM): start nothing new, let the rows in flight finish and be recorded. A
/// second Ctrl-C quits at once; every line recorded so far is already in the file.
fn stop_on_signals(cancel: CancellationToken) {
    tokio::spawn(async move {
        interrupt().await;
        eprintln!("\ninterrupted: finishing the rows in flight (Ctrl-C again to quit now)");
        cancel.cancel();
        interrupt().await;
        std::process::exit(130);
    });
}

#[cfg(unix)]
async fn interrupt() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(not(unix))]
async fn interrupt() {
    let _ = tokio::signal::ctrl_c().await;
}

/// `--dry-run`: plans every row and prints what would be sent; sends and writes nothing.
pub fn dry_run<O: Op>(
    op: &O,
    ctx: &Context,
    input: Input,
    mode: Mode,
    latest: &Latest,
    mut out: impl std::io::Write,
) -> Result<DryRun, InputError> {
    const SHOWN: u64 = 20;
    let mut counts = DryRun::default();
    let mut planned = Vec::new();
    let mut lines = Vec::new();
    input.for_each_row(|row| {
        counts.rows += 1;
        op.plan(ctx, &row, &mut planned);
        for p in planned.drain(..) {
            if mode.skips(latest, &p.key) && (p.task.is_ok() || mode == Mode::RetryFailed) {
                counts.skipped += 1;
                continue;
            }
            match &p.task {
                Ok(task) => {
                    counts.tasks += 1;
                    if counts.tasks <= SHOWN {
                        lines.push(format!("row {}: {}", p.row, op.describe(task)));
                    }
                }
                Err(why) => {
                    counts.invalid += 1;
                    if counts.invalid <= SHOWN * 5 {
                        lines.push(format!("row {}: invalid: {why}", p.row));
                    }
                }
            }
        }
        true
    })?;
    for line in &lines {
        let _ = writeln!(out, "{line}");
    }
    if counts.tasks > SHOWN {
        let _ = writeln!(out, "... and {} more requests", counts.tasks - SHOWN);
    }
    if counts.invalid > SHOWN * 5 {
        let _ = writeln!(
            out,
            "... and {} more invalid rows",
            counts.invalid - SHOWN * 5
        );
    }
    Ok(counts)
}

#[derive(Debug, Default)]
pub struct DryRun {
    pub rows: u64,
    pub tasks: u64,
    pub invalid: u64,
    pub skipped: u64,
}
