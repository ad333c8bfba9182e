//! Doubt, and settling it by reading the server.
//!
//! A change whose answer was lost (a timeout, a reset, a 502 from a proxy, a torn body) or whose
//! run was killed may have landed. So before a job sends a change it records its intent: a
//! `pending` line in the results file, with the state before the change (what an undo needs),
//! written before the request goes out. A later attempt of the same row — a retry in this run,
//! or `--resume` after a crash — is then *in doubt*: it reads the server's state first, and if
//! the change is there it is `ok` (this run's work, with the recorded before-state), never
//! `unchanged`, and never sent twice.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{mpsc, oneshot};

use super::{Outcome, Step};
use crate::executor::Fail;
use crate::results::{Record, ResultLine, Status};

/// What a row's attempts share across retries, and across runs through its pending line.
#[derive(Debug, Default)]
pub struct RowState {
    /// An attempt of this run recorded its intent (and so may have sent the change).
    sent: AtomicBool,
    /// The before-state of that intent.
    before: Mutex<Option<String>>,
    /// The before-state of an earlier run's pending line, when that is the row's latest line.
    earlier: Option<String>,
}

impl RowState {
    /// A row whose latest line in an earlier run is `pending`, with that line's message.
    pub fn after_crash(before: String) -> RowState {
        RowState {
            earlier: Some(before),
            ..RowState::default()
        }
    }
}

/// Where the pending line goes: the results writer, and the row it is about.
pub struct Log<'a> {
    pub records: &'a mpsc::Sender<Record>,
    /// The writer's thread, woken so that the line is written now.
    pub writer: &'a std::thread::Thread,
    pub row: u64,
    pub key: &'a str,
    pub fields: &'a [String],
}

/// An attempt's view of its row's doubt.
pub struct Intent<'a> {
    state: &'a RowState,
    log: Option<Log<'a>>,
}

impl<'a> Intent<'a> {
    pub fn new(state: &'a RowState, log: Option<Log<'a>>) -> Self {
        Intent { state, log }
    }

    /// Whether the change may already have been made: an earlier attempt of this row sent it,
    /// or an earlier run was stopped after recording it.
    pub fn in_doubt(&self) -> bool {
        self.state.sent.load(Ordering::SeqCst) || self.state.earlier.is_some()
    }

    /// The state before the change, as recorded when it was first about to be sent.
    pub fn before(&self) -> Option<String> {
        let mine = self.state.before.lock().unwrap().clone();
        mine.or_else(|| self.state.earlier.clone())
    }

    /// Records that the change is about to be sent, with the state before it (what an undo
    /// needs), and returns once the line is in the results file. Recorded once per row: a
    /// retry keeps the first attempt's before-state, and so does a row in doubt from a crash.
    pub async fn sending(&self, before: &str) -> Step<()> {
        if self.in_doubt() {
            self.state.sent.store(true, Ordering::SeqCst);
            return Ok(());
        }
        *self.state.before.lock().unwrap() = Some(before.to_string());
        self.write_pending(before).await?;
        self.state.sent.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Records what an attempt learned after its change was sent and before it ends (the id of
    /// a delete it now waits for): another `pending` line, whose message becomes the row's
    /// before-state, so that a retry or a `--resume` after a crash starts from it. Returns once
    /// the line is in the results file.
    pub async fn progress(&self, message: &str) -> Step<()> {
        *self.state.before.lock().unwrap() = Some(message.to_string());
        self.write_pending(message).await?;
        self.state.sent.store(true, Ordering::SeqCst);
        Ok(())
    }

    async fn write_pending(&self, message: &str) -> Step<()> {
        if let Some(log) = &self.log {
            let line = ResultLine {
                row: log.row,
                key: log.key.to_string(),
                status: Status::Pending,
                http_status: None,
                errcode: String::new(),
                cause: None,
                message: message.to_string(),
                attempts: 0,
                duration: Default::default(),
                fields: log.fields.to_vec(),
            };
            let (written, ack) = oneshot::channel();
            let stopped = || {
                Fail::Abort(
                    "the results file cannot be written, so no change is sent that it could not \
                     record"
                        .into(),
                )
            };
            log.records
                .send(Record::Pending(line, written))
                .await
                .map_err(|_| stopped())?;
            log.writer.unpark();
            ack.await.map_err(|_| stopped())?;
        }
        Ok(())
    }

    /// What a row in doubt finds already done: `ok`, this run's work, with what it was before.
    pub fn done_earlier(&self, http_status: Option<u16>, now: &str) -> Outcome {
        let message = match self.before() {
            Some(before) if !before.is_empty() => {
                format!("{before}; now {now} (answer lost, state read back)")
            }
            _ => format!("{now} (answer lost, state read back)"),
        };
        Outcome {
            status: Status::Ok,
            http_status,
            errcode: String::new(),
            cause: None,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn intent_is_written_once_and_before_it_returns() {
        let (tx, mut rx) = mpsc::channel(4);
        let state = RowState::default();
        let fields = vec!["@a:x".to_string()];
        let me = std::thread::current();
        let log = || Log {
            records: &tx,
            writer: &me,
            row: 3,
            key: "deactivate @a:x",
            fields: &fields,
        };
        let writer = tokio::spawn(async move {
            let mut lines = vec![];
            while let Some(Record::Pending(line, ack)) = rx.recv().await {
                lines.push(line);
                let _ = ack.send(());
            }
            lines
        });
        let first = Intent::new(&state, Some(log()));
        assert!(!first.in_doubt());
        first.sending("was active").await.unwrap();
        let retry = Intent::new(&state, Some(log()));
        assert!(retry.in_doubt(), "a retry after a sent change is in doubt");
        retry.sending("was deactivated").await.unwrap();
        assert_eq!(
            retry.before().as_deref(),
            Some("was active"),
            "the first before-state stays"
        );
        drop(tx);
        let lines = writer.await.unwrap();
        assert_eq!(lines.len(), 1, "one pending line per row");
        assert_eq!(lines[0].status, Status::Pending);
        assert_eq!((lines[0].row, lines[0].message.as_str()), (3, "was active"));
    }

    #[tokio::test]
    async fn progress_writes_another_pending_line_that_a_retry_starts_from() {
        let (tx, mut rx) = mpsc::channel(4);
        let state = RowState::default();
        let fields = vec![];
        let me = std::thread::current();
        let log = || Log {
            records: &tx,
            writer: &me,
            row: 1,
            key: "delete-rooms !r",
            fields: &fields,
        };
        let writer = tokio::spawn(async move {
            let mut messages = vec![];
            while let Some(Record::Pending(line, ack)) = rx.recv().await {
                messages.push(line.message);
                let _ = ack.send(());
            }
            messages
        });
        let first = Intent::new(&state, Some(log()));
        first.sending("deleting room !r").await.unwrap();
        first
            .progress("deleting room !r: delete_id D")
            .await
            .unwrap();
        let retry = Intent::new(&state, Some(log()));
        assert!(retry.in_doubt());
        assert_eq!(
            retry.before().as_deref(),
            Some("deleting room !r: delete_id D")
        );
        drop(tx);
        let messages = writer.await.unwrap();
        assert_eq!(
            messages,
            ["deleting room !r", "deleting room !r: delete_id D"]
        );
    }

    #[tokio::test]
    async fn a_crashed_runs_intent_puts_the_row_in_doubt() {
        let state = RowState::after_crash("was [saml:a]".into());
        let intent = Intent::new(&state, None);
        assert!(intent.in_doubt());
        let ok = intent.done_earlier(Some(200), "[oidc:b]");
        assert_eq!(ok.status, Status::Ok);
        assert!(
            ok.message.starts_with("was [saml:a]; now [oidc:b]"),
            "{}",
            ok.message
        );
    }

    #[tokio::test]
    async fn no_change_is_sent_that_the_results_file_could_not_record() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let state = RowState::default();
        let fields = vec![];
        let me = std::thread::current();
        let log = Log {
            records: &tx,
            writer: &me,
            row: 1,
            key: "k",
            fields: &fields,
        };
        let failed = Intent::new(&state, Some(log)).sending("").await;
        assert!(matches!(failed, Err(Fail::Abort(_))));
    }
}
