//! Rows that name a user and a room (`join`, `invite`, `kick`): reading them, the `--room`
//! cross product (every user of the file to every room named), and their keys.

use std::future::Future;

use super::rooms::Rooms;
use super::{Check, Context, Intent, Job, Outcome, Planned, Users, optional, required};
use crate::cli::RowArgs;
use crate::executor::Attempt;
use crate::exit::Exit;
use crate::homeserver::{Homeserver, HsError};
use crate::input::ids::{self, UserRef};
use crate::input::{Cell, FieldDef, Row};
use crate::results::Key;

/// One user and one room, and why (`reason`, for invite and kick).
#[derive(Debug, Clone)]
pub struct UserRoom {
    pub user: UserRef,
    pub room: String,
    pub reason: Option<String>,
}

/// How a job reads user-and-room rows. Cells: user, room, then reason where the job has it.
pub struct UserRoomRows {
    pub job: &'static str,
    /// `--room`: every row's user goes to each of these rooms too.
    pub rooms: Vec<String>,
    /// Why a user of another server cannot be taken, for jobs that take local users only.
    pub local_only: Option<&'static str>,
}

impl UserRoomRows {
    /// Checks the `--room` values (a bad one is a usage error) and drops repeats.
    pub fn new(
        job: &'static str,
        rooms: &[String],
        local_only: Option<&'static str>,
    ) -> Result<Self, String> {
        Ok(UserRoomRows {
            job,
            rooms: checked_rooms("--room", rooms)?,
            local_only,
        })
    }

    pub fn required_fields(&self) -> Vec<&'static str> {
        if self.rooms.is_empty() {
            vec!["user", "room"]
        } else {
            vec!["user"]
        }
    }

    pub fn tasks_per_row(&self) -> usize {
        self.rooms.len().max(1)
    }

    pub fn plan(&self, ctx: &Context, row: &Row, out: &mut Vec<Planned<UserRoom>>) {
        let cells = match &row.cells {
            Ok(cells) => cells,
            Err(why) => {
                out.push(self.invalid(row.number, "", "", why.clone()));
                return;
            }
        };
        let user = required(cells, 0, "user").and_then(|u| match self.local_only {
            Some(why) => super::local_user(u, ctx, why),
            None => ids::user(u, &ctx.server_name),
        });
        let user_text = match (&user, &cells[0]) {
            (Ok(u), _) => u.as_str().to_string(),
            (Err(_), Cell::Text(t)) => t.clone(),
            _ => String::new(),
        };
        let reason = match cells.get(2).map(|_| optional(cells, 2, "reason")) {
            Some(Ok(reason)) => reason.map(String::from),
            Some(Err(why)) => {
                out.push(self.invalid(row.number, &user_text, "", why));
                return;
            }
            None => None,
        };
        let mut rooms: Vec<Result<String, (String, String)>> = vec![];
        match optional(cells, 1, "room") {
            Ok(Some(room)) => rooms.push(ids::room(room).map_err(|e| (room.to_string(), e))),
            Ok(None) => {}
            Err(e) => rooms.push(Err((String::new(), e))),
        }
        for room in &self.rooms {
            if !rooms.iter().any(|have| have.as_ref() == Ok(room)) {
                rooms.push(Ok(room.clone()));
            }
        }
        if rooms.is_empty() {
            let why = "missing room: the cell is empty and no --room was given".to_string();
            out.push(self.invalid(row.number, &user_text, "", why));
            return;
        }
        for room in rooms {
            let planned = match (&user, room) {
                (Ok(user), Ok(room)) => Planned {
                    row: row.number,
                    key: Key::new(self.job, [user.as_str(), room.as_str()]),
                    fields: vec![user.as_str().to_string(), room.clone()],
                    task: Ok(UserRoom {
                        user: user.clone(),
                        room,
                        reason: reason.clone(),
                    }),
                },
                (Err(why), Ok(room)) => self.invalid(row.number, &user_text, &room, why.clone()),
                (_, Err((room, why))) => self.invalid(row.number, &user_text, &room, why),
            };
            out.push(planned);
        }
    }

    fn invalid(&self, row: u64, user: &str, room: &str, why: String) -> Planned<UserRoom> {
        Planned::invalid(self.job, row, &[user, room], why)
    }
}

/// What a user-and-room job does to one user in one room. [`RoomJob`] does the rest: reading
/// rows, the `--room` cross product, resolving email addresses.
pub trait RoomAction: Send + Sync + 'static {
    const NAME: &'static str;
    const FIELDS: &'static [FieldDef];
    /// Why users of other servers are refused, for actions on local users only.
    const LOCAL_ONLY: Option<&'static str> = None;
    /// Whether the action is a Client-Server request sent as the token's user.
    const AS_TOKEN_USER: bool = false;

    /// One attempt, with the user resolved to a user id.
    fn apply(
        &self,
        hs: &Homeserver,
        rooms: &Rooms,
        user_id: &str,
        task: &UserRoom,
        intent: &Intent<'_>,
    ) -> impl Future<Output = Attempt<Outcome>> + Send;

    /// `--dry-run --check`: why the task would fail, if anything stands in its way.
    fn check(
        &self,
        hs: &Homeserver,
        rooms: &Rooms,
        users: &Users,
        ctx: &Context,
        task: &UserRoom,
    ) -> impl Future<Output = Result<Option<String>, HsError>> + Send;

    /// The request, for `--dry-run`.
    fn describe(&self, task: &UserRoom) -> String;
}

/// A job whose rows name a user and a room, doing `A` to each pair.
pub struct RoomJob<A> {
    action: A,
    rows: UserRoomRows,
    rooms: Rooms,
    users: Users,
}

impl<A: RoomAction> RoomJob<A> {
    /// `rooms` are the `--room` values; a bad one is a usage error.
    pub fn new(action: A, rooms: &[String]) -> Result<Self, String> {
        Ok(RoomJob {
            action,
            rows: UserRoomRows::new(A::NAME, rooms, A::LOCAL_ONLY)?,
            rooms: Rooms::default(),
            users: Users::default(),
        })
    }
}

impl<A: RoomAction> Job for RoomJob<A> {
    type Task = UserRoom;

    fn name(&self) -> &'static str {
        A::NAME
    }

    fn input_fields(&self) -> &'static [FieldDef] {
        A::FIELDS
    }

    fn required_fields(&self) -> Vec<&'static str> {
        self.rows.required_fields()
    }

    fn result_fields(&self) -> &'static [&'static str] {
        &["user", "room"]
    }

    fn tasks_per_row(&self) -> usize {
        self.rows.tasks_per_row()
    }

    fn plan(&self, ctx: &Context, row: &Row, out: &mut Vec<Planned<UserRoom>>) {
        self.rows.plan(ctx, row, out)
    }

    /// Synapse changes one room's memberships one at a time: rows of several rooms go side by
    /// side, however the file is sorted.
    fn spread_key(&self, task: &UserRoom) -> Option<String> {
        Some(task.room.clone())
    }

    fn acts_as_token_user(&self) -> bool {
        A::AS_TOKEN_USER
    }

    async fn attempt(
        &self,
        hs: &Homeserver,
        task: &UserRoom,
        intent: &Intent<'_>,
    ) -> Attempt<Outcome> {
        let user_id = self.users.resolve(hs, &task.user).await?;
        self.action
            .apply(hs, &self.rooms, &user_id, task, intent)
            .await
    }

    async fn check(
        &self,
        hs: &Homeserver,
        ctx: &Context,
        task: &UserRoom,
    ) -> Result<Check, HsError> {
        let why = self
            .action
            .check(hs, &self.rooms, &self.users, ctx, task)
            .await?;
        Ok(why.map_or(Check::Runs(None), Check::Fails))
    }

    fn describe(&self, task: &UserRoom) -> String {
        self.action.describe(task)
    }
}

/// Runs a user-and-room job: `rooms` are its `--room` values (a bad one is a usage error).
pub async fn run<A: RoomAction>(action: A, rooms: &[String], rows: &RowArgs) -> Result<(), Exit> {
    let job = RoomJob::new(action, rooms).map_err(Exit::Usage)?;
    crate::rows::run(job, rows).await
}

/// Checks room options (`--room`, `--join`) and drops repeats.
pub fn checked_rooms(option: &str, rooms: &[String]) -> Result<Vec<String>, String> {
    let mut checked = vec![];
    for room in rooms {
        let room = ids::room(room).map_err(|e| format!("{option}: {e}"))?;
        if !checked.contains(&room) {
            checked.push(room);
        }
    }
    Ok(checked)
}
