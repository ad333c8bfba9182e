//! What every job is made of: the [`Job`] trait that a file under `src/jobs/` implements, what a
//! task comes to ([`Outcome`]), and the pieces several jobs share (reading cells, resolving
//! email addresses, rooms, SSO mappings, the account list).
//!
//! A job knows the Matrix meaning of answers (which 403 means "already done"); the executor
//! only learns from it whether to record, retry or stop.

pub mod accounts;
pub mod cache;
pub mod cells;
pub mod classify;
pub mod intent;
pub mod passwords;
pub mod recorded;
pub mod rooms;
pub mod sso;
pub mod sync;
pub mod user_list;
pub mod user_room;
pub mod users;

use std::future::Future;

use crate::executor::{Attempt, Fail};
use crate::homeserver::{Homeserver, HsError};
use crate::input::{FieldDef, Row};
use crate::results::{Cause, Key, Status};

pub use cache::Cache;
pub use cells::{ADMIN_API_LOCAL, boolean, local_user, local_user_cell, optional, required, text};
pub use classify::classify;
pub use intent::Intent;
pub use users::Users;

/// A step of an attempt (resolving a user, reading a room): its value, or how the attempt ends.
pub type Step<T> = Result<T, Fail<Outcome>>;

/// What a finished task comes to, before the executor adds attempts and timing.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: Status,
    pub http_status: Option<u16>,
    pub errcode: String,
    /// Why it failed, when the job knows more than the errcode says (results' `cause`).
    pub cause: Option<Cause>,
    pub message: String,
}

impl Outcome {
    pub fn ok(http_status: u16) -> Self {
        Outcome {
            status: Status::Ok,
            http_status: Some(http_status),
            errcode: String::new(),
            cause: None,
            message: String::new(),
        }
    }

    pub fn unchanged(http_status: Option<u16>, message: impl Into<String>) -> Self {
        Outcome {
            status: Status::Unchanged,
            http_status,
            errcode: String::new(),
            cause: None,
            message: message.into(),
        }
    }

    pub fn failed(error: &HsError) -> Self {
        Outcome {
            status: Status::Failed,
            http_status: error.status(),
            errcode: error.errcode().to_string(),
            cause: None,
            message: error.message(),
        }
    }

    /// A failure that synbatch itself finds (the account exists, a file cannot be written).
    pub fn failed_because(message: String) -> Self {
        Outcome {
            status: Status::Failed,
            http_status: None,
            errcode: String::new(),
            cause: None,
            message,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Outcome {
            status: Status::Invalid,
            http_status: None,
            errcode: String::new(),
            cause: None,
            message: message.into(),
        }
    }

    /// The same outcome with its cause named (a 404 that means the user does not exist).
    pub fn because(mut self, cause: Cause) -> Self {
        self.cause = Some(cause);
        self
    }

    /// The same outcome with another message (a 404 that means "no such user", say).
    pub fn saying(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }
}

/// One task planned from a row: its identity, its normalised fields for the results file, and
/// what to run, or why the row cannot run.
#[derive(Debug)]
pub struct Planned<T> {
    pub row: u64,
    pub key: Key,
    pub fields: Vec<String>,
    pub task: Result<T, String>,
}

impl<T> Planned<T> {
    /// A row that cannot run, showing its `fields` as given. Its key is made of them, or of its
    /// number when the first (the row's identity) is empty.
    pub fn invalid(job: &str, row: u64, fields: &[&str], why: String) -> Self {
        Planned {
            row,
            key: match fields.first() {
                Some(first) if !first.is_empty() => Key::new(job, fields.iter().copied()),
                _ => Key::unreadable(job, row),
            },
            fields: fields.iter().map(|f| f.to_string()).collect(),
            task: Err(why),
        }
    }
}

/// What planning a row needs to know of the server.
#[derive(Debug, Clone)]
pub struct Context {
    /// Qualifies bare localparts; users on other servers are remote.
    pub server_name: String,
    /// The token's own user id (empty for a dry run that did not connect).
    pub me: String,
    /// The server delegates authentication to MAS (some admin APIs act differently then).
    pub delegated: bool,
}

impl Context {
    /// A context for tests of how a job plans rows: this server, no token's user.
    #[cfg(test)]
    pub fn of(server_name: &str) -> Context {
        Context {
            server_name: server_name.into(),
            me: String::new(),
            delegated: false,
        }
    }
}

/// Every task a job plans from one row, for tests.
#[cfg(test)]
pub fn plan_row<J: Job>(job: &J, server_name: &str, row: &Row) -> Vec<Planned<J::Task>> {
    let mut out = vec![];
    job.plan(&Context::of(server_name), row, &mut out);
    out
}

/// What `--dry-run --check` found for a task.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// Nothing stands in its way; the note, if any, says what it would change.
    Runs(Option<String>),
    /// Why it would fail.
    Fails(String),
}

/// A row job: turns input rows into tasks, and runs one task against the homeserver.
pub trait Job: Send + Sync + 'static {
    type Task: Send + Sync + 'static;

    /// The command name, first word of every key.
    fn name(&self) -> &'static str;
    /// The fields read from each input row.
    fn input_fields(&self) -> &'static [FieldDef];
    /// The input fields without which no row can run (others may come from options).
    fn required_fields(&self) -> Vec<&'static str>;
    /// The normalised fields written after the fixed results columns.
    fn result_fields(&self) -> &'static [&'static str];
    /// How many tasks a row makes, for the progress bar's total.
    fn tasks_per_row(&self) -> usize {
        1
    }
    /// Turns a row into tasks (several with `--room`), or into invalid entries.
    fn plan(&self, ctx: &Context, row: &Row, out: &mut Vec<Planned<Self::Task>>);
    /// One attempt at a task. Before it changes anything it records `intent.sending(..)`; when
    /// `intent.in_doubt()`, an earlier attempt may have made the change, and what the server
    /// shows decides (see `job::intent`).
    fn attempt(
        &self,
        hs: &Homeserver,
        task: &Self::Task,
        intent: &Intent<'_>,
    ) -> impl Future<Output = Attempt<Outcome>> + Send;
    /// Tasks with the same serial key never run at the same time (rows that read, change and
    /// write back one account).
    fn serial_key(&self, _task: &Self::Task) -> Option<String> {
        None
    }
    /// Tasks with different spread keys share the requests in flight (a room's: Synapse
    /// serialises membership changes per room, so a room-sorted file would keep every request
    /// on one room); the executor keeps a bounded look-ahead for it.
    fn spread_key(&self, _task: &Self::Task) -> Option<String> {
        None
    }
    /// Requests in flight at once when `-j` does not say.
    fn concurrency(&self) -> u16 {
        8
    }
    /// Why the default concurrency is lower than a person might raise it to: `-j` above it
    /// prints this as a warning.
    fn concurrency_warning(&self) -> Option<&'static str> {
        None
    }
    /// Whether the job sends Client-Server requests as the token's own user (so its rate
    /// limits apply and `--lift-ratelimit` helps).
    fn acts_as_token_user(&self) -> bool {
        false
    }
    /// Whether the job cannot be undone (it then asks for confirmation, or needs `--yes`).
    fn destructive(&self) -> bool {
        false
    }
    /// Opens what a real run writes besides the results file, once the options and the input
    /// are known good and before the first request (a bad input leaves no stray file).
    fn prepare(&mut self) -> Result<(), String> {
        Ok(())
    }
    /// `--dry-run --check`: read-only requests that find why a task would fail.
    fn check(
        &self,
        hs: &Homeserver,
        ctx: &Context,
        task: &Self::Task,
    ) -> impl Future<Output = Result<Check, HsError>> + Send {
        let _ = (hs, ctx, task);
        async { Ok(Check::Runs(None)) }
    }
    /// The request a task will send, for `--dry-run`.
    fn describe(&self, task: &Self::Task) -> String;
    /// Why the job cannot run against a Synapse that delegates accounts to MAS (Synapse then
    /// refuses what it sends), or `None` when it can. A refused job stops before its first row.
    fn refused_under_mas(&self) -> Option<&'static str> {
        None
    }

    /// The result fields once an attempt has run, when it learned what the row did not say
    /// (the room id an alias named, a delete's id); `None` keeps the fields planned.
    fn fields_found(&self, _task: &Self::Task) -> Option<Vec<String>> {
        None
    }
    /// Reads what an earlier run recorded in the results file, before a real run or a check,
    /// for a job whose rows need more than their status from it (the room id behind an alias
    /// that a delete removed). Why the file cannot be read stops the run (exit 2).
    fn remember(&mut self, _results: &std::path::Path) -> Result<(), String> {
        Ok(())
    }
}
