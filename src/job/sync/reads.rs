//! The reads a sync plans from, each once per run and under the run's retry policy: aliases,
//! each room's state, email addresses, and the local accounts that would be joined. What no
//! retry fixes ends the run before any change.

use std::collections::HashMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::plan::{Account, Want};
use super::sheet::RoomWant;
use crate::executor::{self, Fail, Limits, Stop};
use crate::exit::Exit;
use crate::homeserver::{Homeserver, HsError, Membership, RoomState};
use crate::input::ids::{self, UserRef};
use crate::job::classify::transient;

/// A room of the sheet with what the server says of it.
pub struct Room {
    /// As the sheet names it first.
    pub name: String,
    pub id: String,
    pub state: RoomState,
    pub wants: Vec<Want>,
}

pub struct Rooms {
    pub rooms: Vec<Room>,
    /// Local accounts that would be joined, by user id.
    pub accounts: HashMap<String, Account>,
}

/// Reads what the plan of `wanted` needs: each room once by id (a sheet may name a room by
/// alias and by id), its state, each email address, each local account that would be joined.
pub async fn rooms(
    reader: &Reader<'_>,
    wanted: Vec<RoomWant>,
    server_name: &str,
) -> Result<Rooms, Exit> {
    let mut named: Vec<(String, String, Vec<super::sheet::Wanted>)> = vec![];
    for want in wanted {
        let id = reader.room_id(&want.room).await?;
        match named.iter_mut().find(|(_, have, _)| *have == id) {
            Some((_, _, users)) => {
                for user in want.users {
                    if !users.iter().any(|u| u.user == user.user) {
                        users.push(user);
                    }
                }
            }
            None => named.push((want.room, id, want.users)),
        }
    }
    let mut emails: HashMap<String, Result<String, String>> = HashMap::new();
    let mut accounts: HashMap<String, Account> = HashMap::new();
    let mut rooms = vec![];
    for (name, id, users) in named {
        let state = reader.state(&name, &id).await?;
        let mut wants = vec![];
        for w in users {
            let user = match &w.user {
                UserRef::Mxid(id) => Ok(id.clone()),
                UserRef::Email(address) => {
                    if !emails.contains_key(address) {
                        emails.insert(address.clone(), reader.email(address).await?);
                    }
                    emails[address].clone()
                }
            };
            if let Ok(user) = &user {
                let joining = !matches!(state.membership(user), Membership::Join | Membership::Ban);
                if joining
                    && ids::server_of(user) == Some(server_name)
                    && !accounts.contains_key(user)
                {
                    accounts.insert(user.clone(), reader.account(user).await?);
                }
            }
            wants.push(Want {
                user,
                shown: w.user.as_str().to_string(),
                power: w.power,
            });
        }
        rooms.push(Room {
            name,
            id,
            state,
            wants,
        });
    }
    Ok(Rooms { rooms, accounts })
}

/// The plan's reads, each under the run's retry policy; what no retry fixes ends the run
/// before any change.
pub struct Reader<'a> {
    hs: &'a Arc<Homeserver>,
    limits: Limits,
    cancel: CancellationToken,
}

impl<'a> Reader<'a> {
    pub fn new(hs: &'a Arc<Homeserver>, retries: u32) -> Self {
        Reader {
            hs,
            limits: Limits::new(1, None, retries),
            cancel: CancellationToken::new(),
        }
    }

    /// One read, retried while it fails for a passing reason.
    async fn read<T, F, Fut>(&self, mut f: F) -> Result<Result<T, HsError>, Exit>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, HsError>>,
    {
        let attempt = || {
            let fut = f();
            async move {
                match fut.await {
                    Ok(v) => Ok(Ok(v)),
                    Err(e) => match transient(&e) {
                        Some(kind) => Err(Fail::Retry { last: Err(e), kind }),
                        None => Ok(Err(e)),
                    },
                }
            }
        };
        match executor::once(&self.limits, &self.cancel, attempt).await {
            Ok((answer, _)) => Ok(answer),
            Err(Stop::Aborted(why)) => Err(Exit::aborted(format!("{why}; nothing was changed"))),
            Err(_) => Err(Exit::Interrupted),
        }
    }

    fn stop(what: String, e: HsError) -> Exit {
        match e.status() {
            Some(401) => Exit::aborted(format!("the homeserver rejected the token ({e})")),
            _ => Exit::aborted(format!("{what}: {e}; nothing was changed")),
        }
    }

    async fn room_id(&self, room: &str) -> Result<String, Exit> {
        if !room.starts_with('#') {
            return Ok(room.to_string());
        }
        match self.read(|| self.hs.resolve_alias(room)).await? {
            Ok(id) => Ok(id),
            Err(HsError::Status { status: 404, .. }) => Err(Exit::usage(format!(
                "room alias {room} does not exist: nothing was planned or changed"
            ))),
            Err(e) => Err(Self::stop(format!("resolving {room}"), e)),
        }
    }

    async fn state(&self, room: &str, id: &str) -> Result<RoomState, Exit> {
        match self.read(|| self.hs.room_state(id)).await? {
            Ok(state) if !state.members.is_empty() => Ok(state),
            Ok(_) | Err(HsError::Status { status: 404, .. }) => Err(Exit::usage(format!(
                "room {room} is not known to this server: nothing was planned or changed"
            ))),
            Err(e) => Err(Self::stop(format!("reading the state of {room}"), e)),
        }
    }

    async fn email(&self, address: &str) -> Result<Result<String, String>, Exit> {
        match self.read(|| self.hs.user_by_email(address)).await? {
            Ok(id) => Ok(Ok(id)),
            Err(HsError::Status { status: 404, .. }) => {
                Ok(Err(format!("no account has the email address {address}")))
            }
            Err(e) => Err(Self::stop(format!("looking up {address}"), e)),
        }
    }

    async fn account(&self, user_id: &str) -> Result<Account, Exit> {
        match self.read(|| self.hs.user(user_id)).await? {
            Ok(user) if user.deactivated => Ok(Account::Deactivated),
            Ok(_) => Ok(Account::Active),
            Err(HsError::Status { status: 404, .. }) => Ok(Account::Missing),
            Err(e) => Err(Self::stop(format!("reading the account {user_id}"), e)),
        }
    }
}
