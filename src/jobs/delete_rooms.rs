//! `delete-rooms`: shut rooms down and purge them with the admin API.
//!
//! `DELETE /_synapse/admin/v2/rooms/<room_id>` `{block, purge, message?, new_room_user_id?}`
//! answers at once with a `delete_id`; the work (kicking every local member, moving them and the
//! aliases to a new room when `new_room_user_id` is given, purging the history) runs in the
//! background, for minutes or hours in a room with thousands of members. So:
//!
//! - the `delete_id` is recorded in the results file (a `pending` line) before the run waits;
//! - the run polls `GET /_synapse/admin/v2/rooms/delete_status/<delete_id>` until the task is
//!   `complete` (`ok`) or `failed` (`failed`), for at most `--wait`; a wait that runs out is no
//!   failure of the delete: the row's last line stays `pending`, and `--resume` waits again;
//! - before any DELETE, `GET /_synapse/admin/v2/rooms/<room_id>/delete_status` is read: a delete
//!   still running for the room (this row's, after a crash or a lost answer, or anyone's) is
//!   waited for, never started a second time.
//!
//! Answers that matter on a rerun: a room Synapse no longer knows (`GET /_synapse/admin/v1/
//! rooms/<room_id>` 404) is `unchanged` ("already deleted"), and so is one already blocked when
//! blocking is all that is left to do (`GET .../block`); a deleted room that should be blocked
//! and is not gets `PUT .../block` (`ok`). Without purge, a room no local user is joined to
//! counts as deleted. A purge removes the room's aliases (and `new_room_user_id` moves them to
//! the new room), so the results record the room id: a rerun takes the room id recorded for the
//! row's alias rather than the alias, and an alias that never resolved is `failed`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Args as ClapArgs;

use crate::cli::RowArgs;
use crate::executor::{Attempt, Fail};
use crate::exit::Exit;
use crate::homeserver::{DeleteTask, Homeserver, HsError, RoomDelete};
use crate::input::ids::{self, UserRef};
use crate::input::{FieldDef, ROOM, Row};
use crate::job::recorded::recorded;
use crate::job::{
    ADMIN_API_LOCAL, Check, Context, Intent, Job, Outcome, Planned, Step, boolean, local_user,
    optional, required, text,
};
use crate::results::{Key, Status};

/// Delete rooms (admin API v2; columns: room, [block, purge, message, new_room_user_id])
#[derive(Debug, ClapArgs)]
#[command(
    long_about = "Shut rooms down and purge them through the admin API \
        (DELETE /_synapse/admin/v2/rooms/<room_id>), waiting for each delete to finish.\n\n\
        Columns: room (an alias #name:server or a room id !...), and optionally block, purge \
        (yes/no), message and new_room_user_id, each overriding the option of the same name \
        for its row. Every local member is removed; with new_room_user_id, Synapse creates a \
        new room as that user and moves the local members and aliases there, with the message. \
        block refuses every later join and re-creation of the room id.\n\n\
        Each delete's id is recorded in the results file before the run waits for it. A room \
        already deleted is `unchanged`. After a crash or a --wait that ran out, --resume waits \
        for the delete that is running; it never starts a second one.\n\n\
        Only 2 rooms are deleted at a time unless -j says otherwise: shutting down a room with \
        thousands of members takes Synapse minutes to hours, and several at once can starve \
        its database. This cannot be undone: synbatch asks first on a terminal, and needs \
        --yes anywhere else.",
    after_help = "Examples:\n  \
        synbatch delete-rooms old-project-rooms.csv --block\n  \
        synbatch delete-rooms rooms.csv --new-room-user-id @admin:example.org \\\n    \
        --message 'This project has ended; its rooms were closed' --yes\n  \
        synbatch delete-rooms rooms.csv --resume     # after a crash, or a --wait that ran out"
)]
pub struct Args {
    /// Block every room: nobody can join it or re-create its id afterwards
    #[arg(long)]
    pub block: bool,

    /// Purge the rooms' history from the database (false: only shut them down)
    #[arg(long, value_name = "BOOL", default_value = "true", value_parser = yes_no)]
    pub purge: bool,

    /// Message to the members, posted in the new room (with --new-room-user-id)
    #[arg(long, value_name = "TEXT")]
    pub message: Option<String>,

    /// Create a new room as this local user and move the members and aliases there
    #[arg(long, value_name = "USER")]
    pub new_room_user_id: Option<String>,

    /// How long to wait for each delete to finish, in seconds; past it the row stays pending
    /// (the delete goes on) and --resume waits again
    #[arg(long, value_name = "SECS", default_value_t = 3600.0, value_parser = crate::cli::seconds)]
    pub wait: f64,

    #[command(flatten)]
    pub rows: RowArgs,
}

fn yes_no(text: &str) -> Result<bool, String> {
    boolean("--purge", text)
}

pub async fn run(args: Args) -> Result<(), Exit> {
    let job = DeleteRooms {
        defaults: Defaults {
            block: args.block,
            purge: args.purge,
            message: args.message.filter(|m| !m.is_empty()),
            new_room_user_id: args.new_room_user_id,
        },
        wait: Duration::from_secs_f64(args.wait),
        earlier: HashMap::new(),
    };
    crate::rows::run(job, &args.rows).await
}

const BLOCK: FieldDef = FieldDef {
    name: "block",
    aliases: &[],
    fallback: &[],
};
const PURGE: FieldDef = FieldDef {
    name: "purge",
    aliases: &[],
    fallback: &[],
};
const MESSAGE: FieldDef = FieldDef {
    name: "message",
    aliases: &[],
    fallback: &[],
};
const NEW_ROOM_USER_ID: FieldDef = FieldDef {
    name: "new_room_user_id",
    aliases: &["newroomuser", "newroomowner"],
    fallback: &[],
};
const FIELDS: &[FieldDef] = &[ROOM, BLOCK, PURGE, MESSAGE, NEW_ROOM_USER_ID];

/// The options, for rows that do not say.
struct Defaults {
    block: bool,
    purge: bool,
    message: Option<String>,
    new_room_user_id: Option<String>,
}

pub struct DeleteRooms {
    defaults: Defaults,
    /// How long a row waits for its delete.
    wait: Duration,
    /// The room id an earlier run recorded for each key (an alias a purge has since removed).
    earlier: HashMap<String, String>,
}

pub struct DeleteRoomTask {
    /// The room as the row names it, normalised.
    room: String,
    key: String,
    delete: RoomDelete,
    /// What the attempts found: the room id and the delete's id.
    found: Mutex<(String, String)>,
}

impl DeleteRoomTask {
    fn found_room(&self, room_id: &str) {
        self.found.lock().unwrap().0 = room_id.to_string();
    }

    fn found_delete(&self, delete_id: &str) {
        self.found.lock().unwrap().1 = delete_id.to_string();
    }
}

/// What a `pending` line of this job says: `deleting room <room_id>`, then `deleting room
/// <room_id>: delete_id <id>, waiting for it`. Room ids and delete ids hold no spaces.
fn pending_says(message: &str) -> (Option<&str>, Option<&str>) {
    let words: Vec<&str> = message.split_whitespace().collect();
    let after = |word: &str| {
        words
            .iter()
            .position(|w| *w == word)
            .and_then(|at| words.get(at + 1))
            .map(|w| w.trim_end_matches([':', ',']))
    };
    (
        after("room").filter(|r| r.starts_with('!')),
        after("delete_id"),
    )
}

impl DeleteRooms {
    fn task(&self, ctx: &Context, cells: &[crate::input::Cell]) -> Result<RoomDelete, String> {
        let flag = |at: usize, name: &str, default: bool| -> Result<bool, String> {
            match optional(cells, at, name)? {
                Some(text) => boolean(name, text),
                None => Ok(default),
            }
        };
        let block = flag(1, "block", self.defaults.block)?;
        let purge = flag(2, "purge", self.defaults.purge)?;
        let message = optional(cells, 3, "message")?
            .map(String::from)
            .or_else(|| self.defaults.message.clone());
        let new_room_user_id = match optional(cells, 4, "new_room_user_id")?
            .or(self.defaults.new_room_user_id.as_deref())
        {
            None => None,
            Some(cell) => match local_user(cell, ctx, ADMIN_API_LOCAL)? {
                UserRef::Mxid(id) => Some(id),
                UserRef::Email(e) => {
                    return Err(format!(
                        "new_room_user_id `{e}`: give the user id (@name:server) or localpart, \
                         not an email address"
                    ));
                }
            },
        };
        Ok(RoomDelete {
            block,
            purge,
            message,
            new_room_user_id,
        })
    }

    /// The room id to delete: one an earlier attempt recorded in its pending line, a room id
    /// as given, the one an earlier run recorded for this alias, or the alias resolved now.
    async fn room_id(
        &self,
        hs: &Homeserver,
        task: &DeleteRoomTask,
        pending: Option<&str>,
    ) -> Step<String> {
        if let Some(id) = pending {
            return Ok(id.to_string());
        }
        if task.room.starts_with('!') {
            return Ok(task.room.clone());
        }
        if let Some(id) = self.earlier.get(&task.key) {
            return Ok(id.clone());
        }
        match hs.resolve_alias(&task.room).await {
            Ok(id) => Ok(id),
            Err(e @ HsError::Status { status: 404, .. }) => {
                Err(Fail::Final(Outcome::failed(&e).saying(format!(
                    "room alias {} does not exist (and no earlier run of this row recorded the \
                     room it named)",
                    task.room
                ))))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Polls a delete until it ends or `--wait` runs out.
    async fn wait_for(
        &self,
        hs: &Homeserver,
        task: &DeleteRoomTask,
        delete_id: &str,
    ) -> Step<Outcome> {
        task.found_delete(delete_id);
        let started = Instant::now();
        let mut pause = Duration::from_millis(250);
        loop {
            let status = match hs.delete_status(delete_id).await {
                Ok(status) => status,
                Err(e @ HsError::Status { status: 404, .. }) => {
                    return Err(Fail::Final(Outcome::failed(&e).saying(format!(
                        "Synapse no longer knows delete {delete_id}: rerun with --retry-failed \
                         (a room already deleted is then `unchanged`)"
                    ))));
                }
                Err(e) => return Err(e.into()),
            };
            if status.ended() {
                return Ok(ended(&status));
            }
            let waited = started.elapsed();
            if waited >= self.wait {
                return Ok(Outcome {
                    status: Status::Pending,
                    http_status: None,
                    errcode: String::new(),
                    cause: None,
                    message: format!(
                        "delete {delete_id} still {} after {}s (--wait); it goes on on the \
                         server: rerun with --resume to wait for it",
                        status.status,
                        waited.as_secs()
                    ),
                });
            }
            tokio::time::sleep(pause.min(self.wait - waited)).await;
            pause = (pause * 2).min(Duration::from_secs(10));
        }
    }
}

/// How an ended delete task comes out.
fn ended(task: &DeleteTask) -> Outcome {
    if task.status != "complete" {
        return Outcome::failed_because(format!(
            "delete {} ended {} on the server (its log says why); rerun with --retry-failed to \
             start another",
            task.delete_id, task.status
        ));
    }
    let shutdown = &task.shutdown_room;
    let kicked = shutdown["kicked_users"].as_array().map_or(0, Vec::len);
    let mut message = format!(
        "deleted (delete_id {}), {kicked} local members removed",
        task.delete_id
    );
    if let Some(new_room) = shutdown["new_room_id"].as_str() {
        message.push_str(&format!(", moved to {new_room}"));
    }
    Outcome::ok(200).saying(message)
}

impl Job for DeleteRooms {
    type Task = DeleteRoomTask;

    fn name(&self) -> &'static str {
        "delete-rooms"
    }

    fn input_fields(&self) -> &'static [FieldDef] {
        FIELDS
    }

    fn required_fields(&self) -> Vec<&'static str> {
        vec!["room"]
    }

    fn result_fields(&self) -> &'static [&'static str] {
        &[
            "room",
            "block",
            "purge",
            "new_room_user_id",
            "room_id",
            "delete_id",
        ]
    }

    fn plan(&self, ctx: &Context, row: &Row, out: &mut Vec<Planned<DeleteRoomTask>>) {
        let cells = match &row.cells {
            Ok(cells) => cells,
            Err(why) => {
                out.push(Planned::invalid(
                    "delete-rooms",
                    row.number,
                    &[""; 6],
                    why.clone(),
                ));
                return;
            }
        };
        let room = required(cells, 0, "room").and_then(ids::room);
        let planned = room.and_then(|room| Ok((room, self.task(ctx, cells)?)));
        let (room, delete) = match planned {
            Ok(planned) => planned,
            Err(why) => {
                out.push(Planned::invalid(
                    "delete-rooms",
                    row.number,
                    &[text(cells, 0), "", "", "", "", ""],
                    why,
                ));
                return;
            }
        };
        // Blocking and keeping the history change what the row wants: a rerun that asks for
        // them is new work.
        let key = Key::new("delete-rooms", [room.as_str()])
            .and(if delete.block { "block" } else { "" })
            .and(if delete.purge { "" } else { "keep-history" });
        let yes = |b: bool| if b { "true" } else { "false" }.to_string();
        out.push(Planned {
            row: row.number,
            fields: vec![
                room.clone(),
                yes(delete.block),
                yes(delete.purge),
                delete.new_room_user_id.clone().unwrap_or_default(),
                String::new(),
                String::new(),
            ],
            task: Ok(DeleteRoomTask {
                room,
                key: key.as_str().to_string(),
                delete,
                found: Mutex::new(Default::default()),
            }),
            key,
        });
    }

    fn concurrency(&self) -> u16 {
        2
    }

    fn concurrency_warning(&self) -> Option<&'static str> {
        Some(
            "each delete makes Synapse remove every member and, with purge, every event of the \
             room: a room with thousands of members takes it minutes to hours",
        )
    }

    fn destructive(&self) -> bool {
        true
    }

    fn remember(&mut self, results: &std::path::Path) -> Result<(), String> {
        self.earlier = recorded(results, "delete-rooms", "room_id")?;
        Ok(())
    }

    fn fields_found(&self, task: &DeleteRoomTask) -> Option<Vec<String>> {
        let (room_id, delete_id) = task.found.lock().unwrap().clone();
        let d = &task.delete;
        let yes = |b: bool| if b { "true" } else { "false" }.to_string();
        Some(vec![
            task.room.clone(),
            yes(d.block),
            yes(d.purge),
            d.new_room_user_id.clone().unwrap_or_default(),
            room_id,
            delete_id,
        ])
    }

    async fn attempt(
        &self,
        hs: &Homeserver,
        task: &DeleteRoomTask,
        intent: &Intent<'_>,
    ) -> Attempt<Outcome> {
        let before = intent.before();
        let (pending_room, pending_delete) = before.as_deref().map_or((None, None), pending_says);
        let room_id = self.room_id(hs, task, pending_room).await?;
        task.found_room(&room_id);

        // A delete this row started and recorded: wait for it rather than start another.
        if let Some(delete_id) = pending_delete {
            return self.wait_for(hs, task, delete_id).await;
        }
        // One still running for the room (this row's, whose answer was lost, or anyone's):
        // wait for it too; once it has ended, what it left decides, since it may have been
        // asked for less (no purge, no block) than this row.
        let deletes = hs.room_deletes(&room_id).await?;
        if let Some(running) = deletes.iter().find(|d| !d.ended()) {
            match self.wait_for(hs, task, &running.delete_id).await {
                Ok(still) if still.status == Status::Pending => return Ok(still),
                Ok(_) | Err(Fail::Final(_)) => {}
                Err(e) => return Err(e),
            }
        }

        let details = hs.room_details(&room_id).await?;
        let deleted = match &details {
            None => true,
            Some(room) => !task.delete.purge && room.joined_local_members == 0,
        };
        if deleted {
            if task.delete.block && !hs.room_blocked(&room_id).await? {
                intent.sending(&format!("blocking room {room_id}")).await?;
                hs.block_room(&room_id).await?;
                return Ok(Outcome::ok(200).saying("blocked (the room was already deleted)"));
            }
            let now = match (details.is_none(), task.delete.block) {
                (true, true) => "deleted and blocked",
                (true, false) => "deleted (Synapse does not know the room)",
                (false, _) => "shut down (no local member left)",
            };
            return Ok(match intent.in_doubt() {
                true => intent.done_earlier(None, now),
                false => Outcome::unchanged(None, format!("already {now}")),
            });
        }

        intent.sending(&format!("deleting room {room_id}")).await?;
        let delete_id = hs.delete_room(&room_id, &task.delete).await?;
        task.found_delete(&delete_id);
        intent
            .progress(&format!(
                "deleting room {room_id}: delete_id {delete_id}, waiting for it"
            ))
            .await?;
        self.wait_for(hs, task, &delete_id).await
    }

    async fn check(
        &self,
        hs: &Homeserver,
        _ctx: &Context,
        task: &DeleteRoomTask,
    ) -> Result<Check, HsError> {
        let room_id = match self.room_id(hs, task, None).await {
            Ok(id) => id,
            Err(Fail::Final(outcome)) => return Ok(Check::Fails(outcome.message)),
            Err(_) => return Ok(Check::Fails(format!("cannot resolve {}", task.room))),
        };
        Ok(match hs.room_details(&room_id).await? {
            None => Check::Runs(Some(format!("{room_id} is already deleted"))),
            Some(room) => Check::Runs(Some(format!(
                "would delete {room_id} ({} local members)",
                room.joined_local_members
            ))),
        })
    }

    fn describe(&self, task: &DeleteRoomTask) -> String {
        let d = &task.delete;
        format!(
            "DELETE /_synapse/admin/v2/rooms/{} {{\"block\": {}, \"purge\": {}{}{}}}",
            task.room,
            d.block,
            d.purge,
            d.message
                .as_ref()
                .map_or(String::new(), |m| format!(", \"message\": {m:?}")),
            d.new_room_user_id
                .as_ref()
                .map_or(String::new(), |u| format!(", \"new_room_user_id\": {u:?}")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::plan_row;

    fn job() -> DeleteRooms {
        DeleteRooms {
            defaults: Defaults {
                block: false,
                purge: true,
                message: None,
                new_room_user_id: None,
            },
            wait: Duration::from_secs(1),
            earlier: HashMap::new(),
        }
    }

    #[test]
    fn pending_lines_give_back_the_room_and_the_delete() {
        assert_eq!(pending_says("deleting room !abc"), (Some("!abc"), None));
        assert_eq!(
            pending_says("deleting room !abc:x.org: delete_id XyZ, waiting for it"),
            (Some("!abc:x.org"), Some("XyZ"))
        );
        assert_eq!(pending_says("was active"), (None, None));
    }

    #[test]
    fn rows_take_options_unless_they_say_otherwise() {
        let job = job();
        let planned = plan_row(
            &job,
            "x.org",
            &Row::of(1, &["#a:x.org", "yes", "", "", "boss"]),
        );
        let task = planned[0].task.as_ref().unwrap();
        assert!(task.delete.block && task.delete.purge);
        assert_eq!(task.delete.new_room_user_id.as_deref(), Some("@boss:x.org"));
        assert_eq!(planned[0].key.as_str(), "delete-rooms #a:x.org block");
        let planned = plan_row(&job, "x.org", &Row::of(2, &["!r", "", "no", "", ""]));
        assert_eq!(planned[0].key.as_str(), "delete-rooms !r keep-history");
    }

    #[test]
    fn bad_cells_are_invalid_and_named() {
        let job = job();
        for (cells, needle) in [
            (["general", "", "", "", ""], "neither a room id"),
            (["#a:x.org", "maybe", "", "", ""], "block"),
            (
                ["#a:x.org", "", "", "", "@u:other.org"],
                "not on this server",
            ),
            (
                ["#a:x.org", "", "", "", "u@mail.example.org"],
                "new_room_user_id",
            ),
        ] {
            let planned = plan_row(&job, "x.org", &Row::of(1, &cells));
            let why = planned[0].task.as_ref().err().unwrap();
            assert!(why.contains(needle), "{cells:?}: {why}");
            assert_eq!(planned[0].fields.len(), job.result_fields().len());
        }
    }
}
