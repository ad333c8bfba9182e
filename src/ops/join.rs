//! `join`: put local users in rooms with the admin API.
//!
//! `POST /_synapse/admin/v1/join/<room_id_or_alias>` `{"user_id": "@user:server"}` -> 200
//! `{"room_id"}`. Local users only. For a room that is not public, Synapse invites the user as
//! the admin first, so the admin needs to be in the room with power to invite.
//!
//! Answers that matter for a rerun: a user already in a public room gets 200 again, so the
//! room's members are read once per room (`GET /_synapse/admin/v1/rooms/<room_id>/members`) to
//! tell `unchanged` from `ok`; a user already in a non-public room gets 403 "... is already in
//! the room.", which is `unchanged` too.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use super::{Cache, Context, Op, Outcome, Planned, Users, classify, optional, required};
use crate::executor::Attempt;
use crate::homeserver::{Homeserver, HsError};
use crate::input::ids::{self, UserRef};
use crate::input::{FieldDef, ROOM, Row, USER};

const FIELDS: &[FieldDef] = &[USER, ROOM];

pub struct Join {
    /// `--room`: every row's user is joined to each of these too.
    rooms: Vec<String>,
    room_info: Cache<Arc<RoomInfo>>,
    users: Users,
}

pub struct JoinTask {
    user: UserRef,
    room: String,
}

/// What is known of a room: its id, and who was in it when the run first looked (plus the users
/// this run has joined since).
struct RoomInfo {
    room_id: String,
    members: Mutex<HashSet<String>>,
}

impl Join {
    /// `rooms` are the `--room` values; a bad one is a usage error.
    pub fn new(rooms: &[String]) -> Result<Join, String> {
        let mut checked = vec![];
        for room in rooms {
            let room = ids::room(room).map_err(|e| format!("--room: {e}"))?;
            if !checked.contains(&room) {
                checked.push(room);
            }
        }
        Ok(Join {
            rooms: checked,
            room_info: Cache::default(),
            users: Users::default(),
        })
    }

    /// Resolves the room once per run: alias to id, and its current members.
    async fn room(&self, hs: &Homeserver, room: &str) -> Result<Arc<RoomInfo>, HsError> {
        self.room_info
            .get_or_try(room, || async {
                let room_id = if room.starts_with('#') {
                    hs.resolve_alias(room).await?
                } else {
                    room.to_string()
                };
                let members = match hs.room_members(&room_id).await {
                    Ok(members) => members.into_iter().collect(),
                    // A room this server does not know: the join itself will say why it fails.
                    Err(HsError::Status { status: 404, .. }) => HashSet::new(),
                    Err(e) => return Err(e),
                };
                Ok(Arc::new(RoomInfo {
                    room_id,
                    members: Mutex::new(members),
                }))
            })
            .await
    }
}

impl Op for Join {
    type Task = JoinTask;

    fn name(&self) -> &'static str {
        "join"
    }

    fn input_fields(&self) -> &'static [FieldDef] {
        FIELDS
    }

    fn required_fields(&self) -> Vec<&'static str> {
        if self.rooms.is_empty() {
            vec!["user", "room"]
        } else {
            vec!["user"]
        }
    }

    fn result_fields(&self) -> &'static [&'static str] {
        &["user", "room"]
    }

    fn tasks_per_row(&self) -> usize {
        self.rooms.len().max(1)
    }

    fn plan(&self, ctx: &Context, row: &Row, out: &mut Vec<Planned<JoinTask>>) {
        let cells = match &row.cells {
            Ok(cells) => cells,
            Err(why) => {
                out.push(invalid(row.number, "", "", why.clone()));
                return;
            }
        };
        let user = required(cells, 0, "user").and_then(|u| ids::user(u, &ctx.server_name));
        let user_text = match (&user, &cells[0]) {
            (Ok(u), _) => u.as_str().to_string(),
            (Err(_), crate::input::Cell::Text(t)) => t.clone(),
            _ => String::new(),
        };
        let user = user.and_then(|u| match &u {
            UserRef::Mxid(id) if ids::server_of(id) != Some(&ctx.server_name) => Err(format!(
                "user `{id}` is not on this server ({}): the admin join API only takes local users",
                ctx.server_name
            )),
            _ => Ok(u),
        });
        let mut rooms: Vec<Result<String, (String, String)>> = vec![];
        match optional(cells, 1, "room") {
            Ok(Some(room)) => rooms.push(ids::room(room).map_err(|e| (room.to_string(), e))),
            Ok(None) => {}
            Err(e) => rooms.push(Err((String::new(), e))),
        }
        rooms.extend(
            self.rooms
                .iter()
                .filter(|r| !rooms.iter().any(|have| have.as_ref() == Ok(*r)))
                .map(|r| Ok(r.clone()))
                .collect::<Vec<_>>(),
        );
        if rooms.is_empty() {
            let why = "missing room: the cell is empty and no --room was given".to_string();
            out.push(invalid(row.number, &user_text, "", why));
            return;
        }
        for room in rooms {
            let planned = match (&user, room) {
                (Ok(user), Ok(room)) => Planned {
                    row: row.number,
                    key: format!("join {} {room}", user.as_str()),
                    fields: vec![user.as_str().to_string(), room.clone()],
                    task: Ok(JoinTask {
                        user: user.clone(),
                        room,
                    }),
                },
                (Err(why), Ok(room)) => invalid(row.number, &user_text, &room, why.clone()),
                (_, Err((room, why))) => invalid(row.number, &user_text, &room, why),
            };
            out.push(planned);
        }
    }

    async fn attempt(&self, hs: &Homeserver, task: &JoinTask) -> Attempt<Outcome> {
        let user_id = match self.users.resolve(hs, &task.user).await {
            Ok(id) => id,
            Err(attempt) => return attempt,
        };
        let room = match self.room(hs, &task.room).await {
            Ok(room) => room,
            Err(e @ HsError::Status { status: 404, .. }) => {
                let mut outcome = Outcome::failed(&e);
                outcome.message = format!("room alias {} does not exist", task.room);
                return Attempt::Done(outcome);
            }
            Err(e) => return classify(e),
        };
        if room.members.lock().unwrap().contains(&user_id) {
            return Attempt::Done(Outcome::unchanged(None, "already in the room"));
        }
        match hs.admin_join(&room.room_id, &user_id).await {
            Ok(_) => {
                room.members.lock().unwrap().insert(user_id);
                Attempt::Done(Outcome::ok(200))
            }
            Err(e @ HsError::Status { status: 403, .. })
                if e.message().contains("is already in the room") =>
            {
                room.members.lock().unwrap().insert(user_id);
                Attempt::Done(Outcome::unchanged(Some(403), "already in the room"))
            }
            Err(e) => classify(e),
        }
    }

    fn describe(&self, task: &JoinTask) -> String {
        format!(
            "POST /_synapse/admin/v1/join/{} {{\"user_id\": \"{}\"}}",
            task.room,
            task.user.as_str()
        )
    }
}

fn invalid(row: u64, user: &str, room: &str, why: String) -> Planned<JoinTask> {
    Planned {
        row,
        key: format!("join {user} {room}").trim_end().to_string(),
        fields: vec![user.to_string(), room.to_string()],
        task: Err(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::Cell;

    fn row(user: &str, room: &str) -> Row {
        let cell = |s: &str| {
            if s.is_empty() {
                Cell::Empty
            } else {
                Cell::Text(s.into())
            }
        };
        Row {
            number: 4,
            cells: Ok(vec![cell(user), cell(room)]),
        }
    }

    fn plan(join: &Join, server_name: &str, row: Row) -> Vec<(String, Result<(), String>)> {
        let mut out = vec![];
        let ctx = Context {
            server_name: server_name.into(),
        };
        join.plan(&ctx, &row, &mut out);
        out.into_iter()
            .map(|p| {
                assert_eq!(p.row, 4);
                (p.key, p.task.map(|_| ()))
            })
            .collect()
    }

    #[test]
    fn plans_a_row() {
        let join = Join::new(&[]).unwrap();
        assert_eq!(
            plan(&join, "example.org", row("alice", "#general:example.org")),
            vec![(
                "join @alice:example.org #general:example.org".into(),
                Ok(())
            )]
        );
    }

    #[test]
    fn cross_product_with_room_option() {
        let join = Join::new(&["#a:x.org".into(), "!b".into()]).unwrap();
        let keys: Vec<_> = plan(&join, "x.org", row("@u:x.org", ""))
            .into_iter()
            .map(|p| p.0)
            .collect();
        assert_eq!(keys, vec!["join @u:x.org #a:x.org", "join @u:x.org !b"]);
        // A row's own room comes first; a --room it repeats is not joined twice.
        let keys: Vec<_> = plan(&join, "x.org", row("u", "!b"))
            .into_iter()
            .map(|p| p.0)
            .collect();
        assert_eq!(keys, vec!["join @u:x.org !b", "join @u:x.org #a:x.org"]);
    }

    #[test]
    fn invalid_rows_say_which_field_and_value() {
        let join = Join::new(&[]).unwrap();
        let out = plan(&join, "x.org", row("@bob:other.org", "#r:x.org"));
        let why = out[0].1.clone().unwrap_err();
        assert!(
            why.contains("@bob:other.org") && why.contains("local users"),
            "{why}"
        );

        let out = plan(&join, "x.org", row("", "#r:x.org"));
        assert!(out[0].1.clone().unwrap_err().contains("missing user"));

        let out = plan(&join, "x.org", row("alice", "general"));
        let why = out[0].1.clone().unwrap_err();
        assert!(why.contains("`general`"), "{why}");
        assert_eq!(out[0].0, "join @alice:x.org general");

        let out = plan(&join, "x.org", row("alice", ""));
        assert!(out[0].1.clone().unwrap_err().contains("missing room"));
    }

    #[test]
    fn bad_room_option_is_refused() {
        assert!(Join::new(&["general".into()]).is_err());
    }
}
