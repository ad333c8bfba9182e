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

use super::user_list::Pager;
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

pub struct Accounts {
    state: Mutex<State>,
    max_age: Duration,
}

impl Default for Accounts {
    fn default() -> Self {
        Accounts {
            state: Mutex::default(),
            max_age: MAX_AGE,
        }
    }
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
        if state.read_at.is_none_or(|at| at.elapsed() >= self.max_age) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::homeserver::Token;
    use serde_json::json;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    async fn server(names: &[&str], total: u64) -> (MockServer, Homeserver) {
        let server = MockServer::start().await;
        let users: Vec<_> = names.iter().map(|n| json!({"name": n})).collect();
        Mock::given(method("GET"))
            .and(path("/_synapse/admin/v2/users"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"users": users, "total": total})),
            )
            .mount(&server)
            .await;
        let hs = Homeserver::new(
            server.uri().parse().unwrap(),
            &Token::new("t".into()),
            Duration::from_secs(5),
            1,
        )
        .unwrap();
        (server, hs)
    }

    async fn lists(server: &MockServer) -> usize {
        server.received_requests().await.unwrap().len()
    }

    #[tokio::test]
    async fn read_once_then_again_when_old_keeping_what_the_run_made() {
        let (server, hs) = server(&["@a:x"], 1).await;
        let fresh = Accounts::default();
        assert_eq!(fresh.lookup(&hs, "@a:x").await, Known::Exists);
        assert_eq!(fresh.lookup(&hs, "@b:x").await, Known::Absent);
        fresh.add("@b:x").await;
        assert_eq!(fresh.lookup(&hs, "@b:x").await, Known::Exists);
        assert_eq!(lists(&server).await, 1, "one read while it is young");

        let old = Accounts {
            max_age: Duration::ZERO,
            ..Accounts::default()
        };
        assert_eq!(old.lookup(&hs, "@b:x").await, Known::Absent);
        old.add("@b:x").await;
        assert_eq!(
            old.lookup(&hs, "@b:x").await,
            Known::Exists,
            "kept over a re-read"
        );
        assert_eq!(lists(&server).await, 3, "read again once old");
    }

    #[tokio::test]
    async fn too_many_accounts_or_no_list_means_asking_per_row() {
        let (server, hs) = server(&["@a:x"], LIST_MAX + 1).await;
        let big = Accounts::default();
        assert_eq!(big.lookup(&hs, "@a:x").await, Known::Unknown);
        assert_eq!(big.lookup(&hs, "@b:x").await, Known::Unknown);
        assert_eq!(lists(&server).await, 1, "not read again");

        let gone = Homeserver::new(
            "http://127.0.0.1:9".parse().unwrap(),
            &Token::new("t".into()),
            Duration::from_millis(200),
            1,
        )
        .unwrap();
        assert_eq!(
            Accounts::default().lookup(&gone, "@a:x").await,
            Known::Unknown
        );
    }
}
