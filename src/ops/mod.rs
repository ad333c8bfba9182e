//! The jobs: each turns an input row into tasks and runs one task against the homeserver.
//!
//! An op knows the Matrix meaning of answers (which 403 means "already done"); the executor
//! only learns from it whether to record, retry or stop.

mod accounts;
mod cache;
pub mod create_users;
pub mod deactivate;
pub mod delete_media;
pub mod export_users;
pub mod invite;
pub mod join;
pub mod kick;
pub mod passwords;
pub mod purge_media;
pub mod remove_external_id;
mod rooms;
pub mod set_external_id;
mod sso;
pub mod user_room;

use std::future::Future;

use crate::executor::{Attempt, Transient};
use crate::homeserver::{Homeserver, HsError};
use crate::input::ids::UserRef;
use crate::input::{Cell, FieldDef, Row};
use crate::results::Status;

pub use cache::Cache;

/// What a finished task comes to, before the executor adds attempts and timing.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: Status,
    pub http_status: Option<u16>,
    pub errcode: String,
    pub message: String,
}

impl Outcome {
    pub fn ok(http_status: u16) -> Self {
        Outcome {
            status: Status::Ok,
            http_status: Some(http_status),
            errcode: String::new(),
            message: String::new(),
        }
    }

    pub fn unchanged(http_status: Option<u16>, message: impl Into<String>) -> Self {
        Outcome {
            status: Status::Unchanged,
            http_status,
            errcode: String::new(),
            message: message.into(),
        }
    }

    pub fn failed(error: &HsError) -> Self {
        Outcome {
            status: Status::Failed,
            http_status: error.status(),
            errcode: error.errcode().to_string(),
            message: error.message(),
        }
    }

    /// A failure that synbatch itself finds (the account exists, a file cannot be written).
    pub fn failed_because(message: String) -> Self {
        Outcome {
            status: Status::Failed,
            http_status: None,
            errcode: String::new(),
            message,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Outcome {
            status: Status::Invalid,
            http_status: None,
            errcode: String::new(),
            message: message.into(),
        }
    }
}

/// One task planned from a row: its identity, its normalised fields for the results file, and
/// what to run, or why the row cannot run.
#[derive(Debug)]
pub struct Planned<T> {
    pub row: u64,
    pub key: String,
    pub fields: Vec<String>,
    pub task: Result<T, String>,
}

/// What planning a row needs to know of the server.
#[derive(Debug, Clone)]
pub struct Context {
    /// Qualifies bare localparts; users on other servers are remote.
    pub server_name: String,
    /// The token's own user id (empty for a dry run that did not connect).
    pub me: String,
}

/// The key of a row that names nothing (it could not be read, or its identifying cell is
/// empty): the row number keeps such rows apart in the results and in `report`.
pub fn unreadable_key(job: &str, row: u64) -> String {
    format!("{job} row:{row}")
}

pub trait Op: Send + Sync + 'static {
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
    /// One attempt at a task.
    fn attempt(
        &self,
        hs: &Homeserver,
        task: &Self::Task,
    ) -> impl Future<Output = Attempt<Outcome>> + Send;
    /// Tasks with the same serial key never run at the same time (rows that read, change and
    /// write back one account).
    fn serial_key(&self, _task: &Self::Task) -> Option<String> {
        None
    }
    /// Requests in flight at once when `-j` does not say.
    fn concurrency(&self) -> u16 {
        8
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
    /// `--dry-run --check`: read-only requests that find why a task would fail; `None` when
    /// nothing stands in its way.
    fn check(
        &self,
        hs: &Homeserver,
        ctx: &Context,
        task: &Self::Task,
    ) -> impl Future<Output = Result<Option<String>, HsError>> + Send {
        let _ = (hs, ctx, task);
        async { Ok(None) }
    }
    /// The request a task will send, for `--dry-run`.
    fn describe(&self, task: &Self::Task) -> String;
}

/// Sorts an error into: stop the run (the token cannot do this job), retry, or record it.
pub fn classify(error: HsError) -> Attempt<Outcome> {
    let last = Outcome::failed(&error);
    match &error {
        HsError::Status { status: 401, .. } => Attempt::Abort(format!(
            "the homeserver rejected the token ({error}); check --token-file or SYNBATCH_TOKEN"
        )),
        HsError::Status {
            status: 403,
            message,
            ..
        } if message.contains("not a server admin") => Attempt::Abort(format!(
            "the token's user is not a server admin ({error}); this job needs an admin's token"
        )),
        HsError::Status {
            status: 429,
            retry_after,
            ..
        } => Attempt::Retry {
            last,
            kind: Transient::RateLimited(*retry_after),
        },
        HsError::Status {
            status: 502..=504, ..
        }
        | HsError::Timeout(_)
        | HsError::Transport(_) => Attempt::Retry {
            last,
            kind: Transient::Failed,
        },
        HsError::Connect(_) => Attempt::Retry {
            last,
            kind: Transient::Unreachable,
        },
        _ => Attempt::Done(last),
    }
}

/// A required cell's text, or why the row is invalid.
pub fn required<'r>(row: &'r [Cell], at: usize, field: &str) -> Result<&'r str, String> {
    match &row[at] {
        Cell::Text(text) => Ok(text),
        Cell::Empty => Err(format!("missing {field}: the cell is empty")),
        Cell::Bad(why) => Err(format!("{field} {why}")),
    }
}

/// An optional cell's text.
pub fn optional<'r>(row: &'r [Cell], at: usize, field: &str) -> Result<Option<&'r str>, String> {
    match &row[at] {
        Cell::Text(text) => Ok(Some(text)),
        Cell::Empty => Ok(None),
        Cell::Bad(why) => Err(format!("{field} {why}")),
    }
}

/// A yes/no cell: true/false, yes/no, 1/0, in any case.
pub fn boolean(field: &str, text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Ok(true),
        "false" | "no" | "0" => Ok(false),
        _ => Err(format!(
            "{field} `{text}` is not a yes/no value (true/false, yes/no, 1/0)"
        )),
    }
}

/// A user cell that must name an account of this server (by id, localpart or email); `why`
/// says why a remote user will not do.
pub fn local_user(cell: &str, ctx: &Context, why: &str) -> Result<UserRef, String> {
    let user = crate::input::ids::user(cell, &ctx.server_name)?;
    if let UserRef::Mxid(id) = &user
        && crate::input::ids::server_of(id) != Some(&ctx.server_name)
    {
        return Err(format!(
            "user `{id}` is not on this server ({}): {why}",
            ctx.server_name
        ));
    }
    Ok(user)
}

/// Why admin-API jobs refuse remote users.
pub const ADMIN_API_LOCAL: &str = "the admin API only manages local accounts";

/// Resolves email addresses to user ids through the admin threepid lookup, once per address.
#[derive(Default)]
pub struct Users {
    by_email: Cache<String>,
}

impl Users {
    /// The user id a user cell names. An email without an account is a final failure.
    pub async fn resolve(
        &self,
        hs: &Homeserver,
        user: &UserRef,
    ) -> Result<String, Attempt<Outcome>> {
        let address = match user {
            UserRef::Mxid(id) => return Ok(id.clone()),
            UserRef::Email(address) => address,
        };
        match self
            .by_email
            .get_or_try(address, || hs.user_by_email(address))
            .await
        {
            Ok(id) => Ok(id),
            Err(e @ HsError::Status { status: 404, .. }) => {
                let mut outcome = Outcome::failed(&e);
                outcome.message = format!("no account has the email address {address}");
                Err(Attempt::Done(outcome))
            }
            Err(e) => Err(classify(e)),
        }
    }

    /// For `--check`: why a user cell names no existing account, if it does not.
    pub async fn why_missing(
        &self,
        hs: &Homeserver,
        user: &UserRef,
    ) -> Result<Option<String>, HsError> {
        let user_id = match user {
            UserRef::Mxid(id) => id.clone(),
            UserRef::Email(address) => {
                match self
                    .by_email
                    .get_or_try(address, || hs.user_by_email(address))
                    .await
                {
                    Ok(id) => id,
                    Err(HsError::Status { status: 404, .. }) => {
                        return Ok(Some(format!("no account has the email address {address}")));
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        match hs.user(&user_id).await {
            Ok(_) => Ok(None),
            Err(HsError::Status { status: 404, .. }) => Ok(Some(format!("no account {user_id}"))),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn status(status: u16, errcode: &str, message: &str) -> HsError {
        HsError::Status {
            status,
            errcode: errcode.into(),
            message: message.into(),
            retry_after: Some(Duration::from_secs(2)),
        }
    }

    #[test]
    fn classification() {
        assert!(matches!(
            classify(status(401, "M_UNKNOWN_TOKEN", "Invalid access token")),
            Attempt::Abort(m) if m.contains("rejected the token")
        ));
        assert!(matches!(
            classify(status(403, "M_FORBIDDEN", "You are not a server admin")),
            Attempt::Abort(m) if m.contains("not a server admin")
        ));
        assert!(matches!(
            classify(status(403, "M_FORBIDDEN", "You don't have permission")),
            Attempt::Done(Outcome {
                status: Status::Failed,
                http_status: Some(403),
                ..
            })
        ));
        assert!(matches!(
            classify(status(429, "M_LIMIT_EXCEEDED", "")),
            Attempt::Retry { kind: Transient::RateLimited(Some(d)), .. } if d == Duration::from_secs(2)
        ));
        for transient in [503, 502, 504] {
            assert!(matches!(
                classify(status(transient, "", "")),
                Attempt::Retry {
                    kind: Transient::Failed,
                    ..
                }
            ));
        }
        assert!(matches!(
            classify(HsError::Connect("refused".into())),
            Attempt::Retry {
                kind: Transient::Unreachable,
                ..
            }
        ));
        assert!(matches!(
            classify(status(500, "M_UNKNOWN", "Internal server error")),
            Attempt::Done(_)
        ));
    }
}
