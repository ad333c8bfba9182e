//! The server's account list, page by page: `export-users`, `remove-external-id --all-users`
//! and the account set of `create-users` read it.
//!
//! `GET /_synapse/admin/v2/users?from=<next_token>&limit=<n>` -> `{"users": [...], "total": N,
//! "next_token": "..."}`, page after page until `next_token` is absent. Never `limit=0` (its
//! `next_token` is "0" forever). `next_token` is an offset, so an account created during the
//! listing shifts the next page by one: a name already on the previous page is dropped.

use std::collections::HashSet;

use tokio_util::sync::CancellationToken;

use super::{Outcome, classify};
use crate::executor::{self, Limits, Stop};
use crate::homeserver::{Homeserver, ListedUser, UserPage, UserQuery};

#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// No page can be read (token refused, server unreachable, interrupted).
    #[error("{0}")]
    Abort(String),
    #[error("listing accounts from {from}: {message}")]
    Failed { from: String, message: String },
    #[error(
        "listing accounts: the server's next_token did not advance (from {from} to {next}); \
         stopped rather than page forever"
    )]
    Stuck { from: String, next: String },
}

/// Pages through the account list: retries passing failures (the executor's policy), drops a
/// repeat of the previous page's accounts, and stops if the server's token does not move
/// forward.
pub struct Pager<'a> {
    hs: &'a Homeserver,
    query: UserQuery,
    limits: Limits,
    cancel: CancellationToken,
    from: Option<String>,
    previous: HashSet<String>,
    /// `total` of the latest page: how many accounts match, by the server's count.
    pub total: u64,
}

impl<'a> Pager<'a> {
    pub fn new(hs: &'a Homeserver, query: UserQuery, retries: u32) -> Self {
        Pager {
            hs,
            query,
            limits: Limits::new(1, None, retries),
            cancel: CancellationToken::new(),
            from: Some("0".into()),
            previous: HashSet::new(),
            total: 0,
        }
    }

    /// The next page's accounts (not already seen on the previous page); `None` at the end.
    pub async fn next_page(&mut self) -> Result<Option<Vec<ListedUser>>, ListError> {
        let Some(from) = self.from.take() else {
            return Ok(None);
        };
        let page = self.fetch(&from).await?;
        self.total = page.total;
        self.from = match page.next_token {
            Some(next) if page.users.is_empty() || !advances(&from, &next) => {
                return Err(ListError::Stuck { from, next });
            }
            next => next,
        };
        let names: HashSet<String> = page.users.iter().map(|u| u.name.clone()).collect();
        let fresh = page
            .users
            .into_iter()
            .filter(|u| !self.previous.contains(&u.name))
            .collect();
        self.previous = names;
        Ok(Some(fresh))
    }

    async fn fetch(&self, from: &str) -> Result<UserPage, ListError> {
        let attempt = || async {
            match self.hs.users_page(&self.query, from).await {
                Ok(page) => Ok(Ok(page)),
                Err(e) => Err(classify(e).map(Err)),
            }
        };
        match executor::once(&self.limits, &self.cancel, attempt).await {
            Ok((Ok(page), _)) => Ok(page),
            Ok((Err(o), _)) => Err(failed(from, &o)),
            Err(Stop::Aborted(reason)) => Err(ListError::Abort(reason)),
            Err(_) => Err(ListError::Abort("interrupted".into())),
        }
    }
}

fn failed(from: &str, o: &Outcome) -> ListError {
    ListError::Failed {
        from: from.to_string(),
        message: format!("{} {} {}", o.http_status.unwrap_or(0), o.errcode, o.message),
    }
}

/// Whether a next_token moves forward from `from` (both are offsets in Synapse; compared as
/// text when they are not numbers).
fn advances(from: &str, next: &str) -> bool {
    match (from.parse::<u64>(), next.parse::<u64>()) {
        (Ok(a), Ok(b)) => b > a,
        _ => from != next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_must_advance() {
        assert!(advances("0", "100"));
        assert!(!advances("100", "100"));
        assert!(!advances("100", "0"));
        assert!(advances("a", "b"));
    }
}
