//! Wires one run together: input -> job -> executor -> homeserver -> results.
//!
//! Three lanes, so that no stage waits on another's kind of work: a reader thread parses rows
//! and plans tasks (dropping those an earlier run finished), the async executor sends them, and
//! a writer thread hands each finished row to the sink. A dry run takes the same lanes with
//! nothing sent: the reader describes each task to the sink itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::plan::{Kind, Mode, RunPlan};
use super::progress::{self, Report, Tally};
use super::sink::Sink;
use crate::executor::{self, Attempt, Fail, Finished, Stop, Transient, Work};
use crate::homeserver::Homeserver;
use crate::input::{Input, InputError};
use crate::job::intent::{Log, RowState};
use crate::job::{Check, Context, Intent, Job, Outcome, Planned, classify};
use crate::results::{Key, Latest, Record, ResultLine, ResultsError, ResultsWriter, Status};

/// How a run ended.
pub struct Summary {
    pub tally: Tally,
    /// Input rows read.
    pub rows: u64,
    pub skipped: u64,
    pub stop: Stop,
    /// The input could not be read to its end; the rows before the fault ran.
    pub input_error: Option<InputError>,
    /// The results file could not be written; the run was stopped.
    pub results_error: Option<ResultsError>,
    pub elapsed: std::time::Duration,
}

/// A task on its way through the executor, with what the results file needs to know of it.
struct Item<T> {
    row: u64,
    key: Key,
    fields: Vec<String>,
    task: T,
    /// What its attempts share: whether a change was sent, and what was there before.
    state: RowState,
    /// The result fields as the last attempt found them, when it learned more than the row said.
    found: std::sync::Mutex<Option<Vec<String>>>,
}

/// A run: the job's attempts, and where they record their intent.
struct Attempts<J> {
    job: Arc<J>,
    hs: Arc<Homeserver>,
    records: mpsc::Sender<Record>,
    /// The writer thread, woken for a pending line rather than left to finish its pause.
    writer: std::thread::Thread,
    /// 429s answered so far, when a hint about `--lift-ratelimit` may help (`None`: it would
    /// not: the job acts through the admin API, or the limit is lifted).
    limited: Option<AtomicU32>,
}

/// 429s before the hint about `--lift-ratelimit`: one is a burst, this many a pattern.
const HINT_AFTER: u32 = 3;

impl<J: Job> Work for Attempts<J> {
    type Item = Item<J::Task>;
    type Output = Outcome;

    async fn attempt(&self, item: &Item<J::Task>) -> Attempt<Outcome> {
        let log = Log {
            records: &self.records,
            writer: &self.writer,
            row: item.row,
            key: item.key.as_str(),
            fields: &item.fields,
        };
        let intent = Intent::new(&item.state, Some(log));
        let attempt = self.job.attempt(&self.hs, &item.task, &intent).await;
        if let Some(fields) = self.job.fields_found(&item.task) {
            *item.found.lock().unwrap() = Some(fields);
        }
        if let (
            Some(seen),
            Err(Fail::Retry {
                kind: Transient::RateLimited(_),
                ..
            }),
        ) = (&self.limited, &attempt)
            && seen.fetch_add(1, Ordering::Relaxed) + 1 == HINT_AFTER
        {
            eprintln!(
                "hint: the homeserver keeps answering 429 (too many requests): {} acts as the \
                 token's own user, whose rate limits apply; --lift-ratelimit lifts them for the \
                 run and puts them back at the end (README: \"Rate limits\")",
                self.job.name()
            );
        }
        attempt
    }

    fn serial_key(&self, item: &Item<J::Task>) -> Option<String> {
        self.job.serial_key(&item.task)
    }

    fn spread_key(&self, item: &Item<J::Task>) -> Option<String> {
        self.job.spread_key(&item.task)
    }

    fn explain(&self, output: &Outcome) -> String {
        output.message.clone()
    }
}

/// `--check`: the job's read-only checks in place of its attempts. A row that would run is
/// `ok` with what it would change as its message; one that would fail is `failed`.
struct Checks<J> {
    job: Arc<J>,
    hs: Arc<Homeserver>,
    ctx: Context,
}

impl<J: Job> Work for Checks<J> {
    type Item = Item<J::Task>;
    type Output = Outcome;

    async fn attempt(&self, item: &Item<J::Task>) -> Attempt<Outcome> {
        let verdict = self.job.check(&self.hs, &self.ctx, &item.task).await;
        let outcome = |status, message| Outcome {
            status,
            http_status: None,
            errcode: String::new(),
            cause: None,
            message,
        };
        match verdict.map_err(classify)? {
            Check::Runs(note) => Ok(outcome(Status::Ok, note.unwrap_or_default())),
            // The checks say why in words; the causes are read from them (results::cause).
            Check::Fails(why) => Ok(Outcome {
                cause: crate::results::cause::from_message(&why),
                ..outcome(Status::Failed, why)
            }),
        }
    }

    fn spread_key(&self, item: &Item<J::Task>) -> Option<String> {
        self.job.spread_key(&item.task)
    }
}

impl<T> From<Finished<Item<T>, Outcome>> for Record {
    fn from(done: Finished<Item<T>, Outcome>) -> Self {
        let found = done.item.found.into_inner().unwrap();
        Record::Final(line(
            done.item.row,
            done.item.key,
            found.unwrap_or(done.item.fields),
            done.output,
            done.attempts,
            done.elapsed,
        ))
    }
}

fn line(
    row: u64,
    key: Key,
    fields: Vec<String>,
    outcome: Outcome,
    attempts: u32,
    duration: std::time::Duration,
) -> ResultLine {
    ResultLine {
        row,
        key: key.into_string(),
        status: outcome.status,
        http_status: outcome.http_status,
        errcode: outcome.errcode,
        cause: outcome.cause,
        message: outcome.message,
        attempts,
        duration,
        fields,
    }
}

/// Runs the rows of `input` as `plan` says. `hs` is `None` only for a dry run; `count` gives
/// the progress bar its total, on a thread of its own.
pub async fn run<J: Job>(
    job: Arc<J>,
    hs: Option<Arc<Homeserver>>,
    ctx: Context,
    input: Input,
    plan: &RunPlan,
    count: Option<Box<dyn FnOnce() -> Option<u64> + Send>>,
) -> Result<Summary, ResultsError> {
    let started = Instant::now();
    let latest = match plan.mode {
        Mode::All => Latest::default(),
        _ => {
            let (results, name) = (plan.results.clone(), job.name());
            tokio::task::spawn_blocking(move || Latest::load(&results, name))
                .await
                .expect("results reader does not panic")?
        }
    };
    let sink = match plan.kind {
        Kind::Run => Sink::Results(Box::new(ResultsWriter::open(
            &plan.results,
            job.name(),
            job.result_fields(),
        )?)),
        Kind::DryRun => Sink::DryRun {
            requests: 0,
            invalid: 0,
            to_stderr: plan.stdout_taken,
        },
        Kind::Check => Sink::Check {
            to_stderr: plan.stdout_taken,
        },
    };
    let report = Report::new(plan.progress, plan.verbosity);
    if let Some(count) = count.filter(|_| plan.progress) {
        let (bar, per_row) = (report.bar(), job.tasks_per_row() as u64);
        std::thread::spawn(move || {
            if let Some(rows) = count() {
                progress::set_total(&bar, rows * per_row);
            }
        });
    }

    let cancel = CancellationToken::new();
    stop_on_signals(cancel.clone());
    let concurrency = plan.limits.concurrency.max(1);
    // A few batches ahead of the executor: enough to never starve it, bounded memory.
    let (task_tx, task_rx) = mpsc::channel(concurrency.div_ceil(BATCH).max(2));
    let (line_tx, line_rx) = mpsc::channel::<Record>(4096);

    let bar = report.bar();
    let writer = {
        let cancel = cancel.clone();
        std::thread::spawn(move || write_results(line_rx, sink, report, cancel))
    };
    let reader = {
        let (job, line_tx, cancel) = (job.clone(), line_tx.clone(), cancel.clone());
        let lanes = Lanes {
            tasks: task_tx,
            lines: line_tx,
            cancel,
            bar,
        };
        let (ctx, mode, kind) = (ctx.clone(), plan.mode, plan.kind);
        std::thread::spawn(move || read_and_plan(&*job, &ctx, input, mode, kind, &latest, lanes))
    };
    let limits = plan.limits.clone();
    let stop = match (plan.kind, hs) {
        (Kind::Check, Some(hs)) => {
            let work = Checks { job, hs, ctx };
            executor::run(work, limits, task_rx, line_tx, cancel.clone()).await
        }
        (Kind::Run, Some(hs)) => {
            let records = line_tx.clone();
            let writer = writer.thread().clone();
            let limited =
                (job.acts_as_token_user() && !plan.lift_ratelimit).then(AtomicU32::default);
            let work = Attempts {
                job,
                hs,
                records,
                writer,
                limited,
            };
            executor::run(work, limits, task_rx, line_tx, cancel.clone()).await
        }
        // A dry run sends nothing: the reader sends its lines to the sink itself.
        _ => {
            drop((task_rx, line_tx));
            Stop::Completed
        }
    };
    let (rows, skipped, input_result) = tokio::task::spawn_blocking(move || reader.join())
        .await
        .expect("join of the reader thread")
        .expect("reader thread does not panic");
    let (tally, results_error) = tokio::task::spawn_blocking(move || writer.join())
        .await
        .expect("join of the writer thread")
        .expect("writer thread does not panic");
    Ok(Summary {
        tally,
        rows,
        skipped,
        stop: if cancel.is_cancelled() && stop == Stop::Completed {
            Stop::Interrupted
        } else {
            stop
        },
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
    lines: mpsc::Sender<Record>,
    cancel: CancellationToken,
    bar: indicatif::ProgressBar,
}

/// The reader thread: rows in, tasks out. Invalid rows (and, in a dry run, every row) go
/// straight to the sink; rows an earlier run finished are counted and dropped. Returns the rows
/// read and how many were skipped.
fn read_and_plan<J: Job>(
    job: &J,
    ctx: &Context,
    input: Input,
    mode: Mode,
    kind: Kind,
    latest: &Latest,
    lanes: Lanes<J::Task>,
) -> (u64, u64, Result<(), InputError>) {
    let (mut rows, mut skipped) = (0u64, 0u64);
    let mut planned = Vec::new();
    let mut batch = Vec::with_capacity(BATCH);
    let result = input.for_each_row(|row| {
        if lanes.cancel.is_cancelled() {
            return false;
        }
        rows += 1;
        job.plan(ctx, &row, &mut planned);
        for Planned {
            row,
            key,
            fields,
            task,
        } in planned.drain(..)
        {
            if mode.skips(latest, key.as_str(), task.is_ok()) {
                skipped += 1;
                lanes.bar.inc(1);
                continue;
            }
            let direct = match task {
                Ok(task) if kind == Kind::DryRun => Outcome {
                    status: Status::Ok,
                    http_status: None,
                    errcode: String::new(),
                    cause: None,
                    message: job.describe(&task),
                },
                Ok(task) => {
                    // An earlier run recorded its intent and was stopped before the answer.
                    let state = match latest.pending(key.as_str()) {
                        Some(before) if mode != Mode::All => RowState::after_crash(before.into()),
                        _ => RowState::default(),
                    };
                    batch.push(Item {
                        row,
                        key,
                        fields,
                        task,
                        state,
                        found: Default::default(),
                    });
                    continue;
                }
                Err(why) => Outcome::invalid(why),
            };
            let line = line(row, key, fields, direct, 0, Default::default());
            if lanes.lines.blocking_send(Record::Final(line)).is_err() {
                return false;
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
    (rows, skipped, result)
}

/// How long the writer lets finished rows gather between writes.
const GATHER: std::time::Duration = std::time::Duration::from_millis(2);

/// The writer thread: hands each finished row to the sink, flushes each batch as soon as the
/// channel is momentarily empty, and syncs at the end. A pending line is flushed at once and
/// acknowledged, so its change goes out only once it is recorded. A row is counted once its
/// line is flushed. If the results cannot be written, the run is stopped (rows not recorded
/// will run again on resume).
fn write_results(
    mut records: mpsc::Receiver<Record>,
    mut sink: Sink,
    mut report: Report,
    cancel: CancellationToken,
) -> (Tally, Option<ResultsError>) {
    let mut error = None;
    let mut written = vec![];
    let fail = |e, error: &mut Option<ResultsError>| {
        error.get_or_insert(e);
        cancel.cancel();
    };
    while let Some(first) = records.blocking_recv() {
        let mut next = Some(first);
        while let Some(record) = next {
            match record {
                // Dropping the acknowledgement tells the attempt that nothing may be sent.
                _ if error.is_some() => {}
                Record::Final(line) => match sink.write(&line) {
                    Ok(()) => written.push(line),
                    Err(e) => fail(e, &mut error),
                },
                // The rows finished before it are flushed and counted first: a pending line
                // that does not fit (a full disk) must not cost them their count.
                Record::Pending(line, ack) => match sink.flush() {
                    Ok(()) => {
                        written.drain(..).for_each(|line| report.record(&line));
                        match sink.write(&line).and_then(|()| sink.flush()) {
                            Ok(()) => {
                                let _ = ack.send(());
                            }
                            Err(e) => fail(e, &mut error),
                        }
                    }
                    Err(e) => fail(e, &mut error),
                },
            }
            next = records.try_recv().ok();
        }
        if error.is_none()
            && let Err(e) = sink.flush()
        {
            fail(e, &mut error);
        }
        if error.is_none() {
            written.drain(..).for_each(|line| report.record(&line));
        }
        // Lets the next rows gather: one write and one wake-up for many rows instead of one
        // each, at the cost of a line reaching the file up to this much later. A pending line
        // wakes the writer at once: its request waits for it.
        std::thread::park_timeout(GATHER);
    }
    if error.is_none()
        && let Err(e) = sink.finish()
    {
        error = Some(e);
    }
    (report.finish(), error)
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
