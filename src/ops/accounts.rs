//! Which accounts exist, read from the account list, so that `create-users` need not ask row by
//! row.
//!
//! A GET per row costs Synapse about a fifth of what the PUT that creates the account costs
//! (measured: 2.4 ms against 10-12 ms of its CPU). On a server with at most `LIST_MAX`
//! accounts, the list (`GET /_synapse/admin/v2/users`, deactivated, locked and guest accounts
//! included, in pages of `PAGE`) answers instead: a new account costs the PUT alone, and a
//! rerun's existing ones cost nothing. A bigger server is asked per row: there the list would
//! cost more than the GETs it saves.
//!
//! The list is read again once it is `MAX_AGE` old, so an account made meanwhile by someone
//! else (a first SSO login, another admin) is seen within that time; one made in the gap shows
//! in the PUT's answer (200 modified, not 201 created) and its row says so. Any failure to
//! read the list only means asking per row.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::export_users::Pager;
use crate::homeserver::{Homeserver, UserQuery};

const LIST_MAX: u64 = 10_000;
const PAGE: u32 = 5_000;
const MAX_AGE: Duration = Duration::from_secs(60);
/// Retries of a page: the list is an optimisation, per-row GETs are the fallback.
const RETRIES: u32 = 2;

/// What the list says of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    Exists,
    Absent,
    /// No list (too big, or unreadable): ask the server.
    Unknown,
}

#[derive(Default)]
pub struct Accounts {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    names: HashSet<String>,
    read_at: Option<Instant>,
    /// The server has too many accounts, or the list could not be read: ask per row.
    off: bool,
}

impl Accounts {
    pub async fn lookup(&self, hs: &Homeserver, user_id: &str) -> Known {
        // Held while the list is read: the rows meanwhile wait for it rather than each GET.
        let mut state = self.state.lock().await;
        if state.off {
            return Known::Unknown;
        }
        if state.read_at.is_none_or(|at| at.elapsed() >= MAX_AGE) {
            let started = Instant::now();
            match read_list(hs).await {
                Some(names) => {
                    // Accounts this run made while the list was read are in it or come after.
                    state.names.extend(names);
                    state.read_at = Some(started);
                }
                None => {
                    state.off = true;
                    state.names = HashSet::new();
                    return Known::Unknown;
                }
            }
        }
        if state.names.contains(user_id) {
            Known::Exists
        } else {
            Known::Absent
        }
    }

    /// An account this run has just made (or found made): later rows for it see it.
    pub async fn add(&self, user_id: &str) {
        let mut state = self.state.lock().await;
        if !state.off {
            state.names.insert(user_id.to_string());
        }
    }
}

/// Every account's name, or `None` when the list is too long to be worth it or unreadable.
async fn read_list(hs: &Homeserver) -> Option<HashSet<String>> {
    let query = UserQuery {
        limit: PAGE,
        deactivated: true,
        guests: true,
        admins_only: false,
        name: None,
    };
    let mut pager = Pager::new(hs, query, RETRIES);
    let mut names = HashSet::new();
    while let Some(page) = pager.next_page().await.ok()? {
        if pager.total > LIST_MAX || names.len() as u64 > LIST_MAX {
            return None;
        }
        names.extend(page.into_iter().map(|u| u.name));
    }
    Some(names)
}
