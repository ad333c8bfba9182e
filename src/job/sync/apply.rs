//! Applying a sync's plan: the plan file's lines are the rows of an ordinary run (executor,
//! results file, resume, exit codes as every job). The job keeps what the plan knows of each
//! room (its id, the power changes of its one event, whether the token's user is made room
//! admin first).
//!
//! Answers that matter on a rerun: an admin join of a member of a room that is not public
//! answers 403 "... is already in the room.", a kick of someone who left 403 "... not in the
//! room": both are `unchanged` (or this run's work when the row is in doubt). The power event
//! is built from the room's power levels read just before it is sent, so keys the sheet does
//! not mention stay as they are.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use serde_json::{Value, json};

use super::plan::{self, Action, RoomPlan};
use crate::executor::Attempt;
use crate::homeserver::{Homeserver, HsError, Membership};
use crate::input::{FieldDef, REASON, ROOM, Row, USER};
use crate::job::{Cache, Context, Intent, Job, Outcome, Planned, Step, required, text};

const ACTION: FieldDef = FieldDef {
    name: "action",
    aliases: &[],
    fallback: &[],
};
const BEFORE: FieldDef = FieldDef {
    name: "before",
    aliases: &[],
    fallback: &[],
};
const AFTER: FieldDef = FieldDef {
    name: "after",
    aliases: &[],
    fallback: &[],
};

/// What the apply knows of a room from the plan.
struct Room {
    id: String,
    make_admin: bool,
    power: Vec<(String, i64)>,
}

pub struct Apply {
    rooms: HashMap<String, Room>,
    me: String,
    reason: Option<String>,
    /// Rooms where the token's user was made room admin (and joined), once per room.
    ready: Cache<()>,
    /// Rooms whose power event this run sent: their other set-power lines are part of it.
    power_sent: Mutex<HashSet<String>>,
    /// Keys of the lines a stopped run sent and the room shows done.
    settled: HashSet<String>,
}

#[derive(Debug)]
pub struct Task {
    action: Action,
    user: String,
    room: String,
    reason: String,
    settled: bool,
}

impl Apply {
    pub fn new(plans: &[RoomPlan], me: &str, reason: Option<String>) -> Apply {
        let rooms = plans
            .iter()
            .map(|p| {
                let room = Room {
                    id: p.room_id.clone(),
                    make_admin: p.make_admin,
                    power: p.power.clone(),
                };
                (p.room.clone(), room)
            })
            .collect();
        let settled = plans
            .iter()
            .flat_map(|p| &p.steps)
            .filter(|s| s.settled)
            .map(|s| s.key().into_string())
            .collect();
        Apply {
            settled,
            rooms,
            me: me.to_string(),
            reason,
            ready: Cache::default(),
            power_sent: Mutex::new(HashSet::new()),
        }
    }

    /// Makes the token's user room admin and joins it, where the plan says so, once per room.
    async fn ready(&self, hs: &Homeserver, room: &Room) -> Step<()> {
        if !room.make_admin {
            return Ok(());
        }
        let fetch = || async {
            hs.make_room_admin(&room.id).await?;
            let state = hs.room_state(&room.id).await?;
            if state.membership(&self.me) != Membership::Join {
                hs.join_self(&room.id).await?;
            }
            Ok::<(), HsError>(())
        };
        self.ready.get_or_try(&room.id, fetch).await?;
        Ok(())
    }

    /// The room's power event: every change of the plan in one `m.room.power_levels` event,
    /// built on the levels read now. `true` when this call sent it.
    async fn send_power(&self, hs: &Homeserver, room: &Room, intent: &Intent<'_>) -> Step<bool> {
        let state = hs.room_state(&room.id).await?;
        let current = state.power_levels.unwrap_or_else(|| json!({}));
        let wanted = with_changes(&current, &room.power);
        if wanted == current {
            return Ok(false);
        }
        intent
            .sending(&format!("users {}", current["users"]))
            .await?;
        hs.put_power_levels(&room.id, &wanted).await?;
        Ok(true)
    }
}

/// The power levels with `changes` made: a user set to `users_default` leaves the `users` map,
/// every other key stays as it was.
pub fn with_changes(current: &Value, changes: &[(String, i64)]) -> Value {
    let mut next = current.clone();
    if !next.is_object() {
        next = json!({});
    }
    let default = current["users_default"].as_i64().unwrap_or(0);
    if !next["users"].is_object() {
        next["users"] = json!({});
    }
    let users = next["users"].as_object_mut().expect("made an object above");
    for (user, level) in changes {
        if *level == default {
            users.remove(user);
        } else {
            users.insert(user.clone(), json!(level));
        }
    }
    next
}

impl Job for Apply {
    type Task = Task;

    fn name(&self) -> &'static str {
        "sync-members"
    }

    fn input_fields(&self) -> &'static [FieldDef] {
        &[ACTION, USER, ROOM, BEFORE, AFTER, REASON]
    }

    fn required_fields(&self) -> Vec<&'static str> {
        vec!["action", "room"]
    }

    fn result_fields(&self) -> &'static [&'static str] {
        &["action", "user", "room", "before", "after"]
    }

    fn plan(&self, _ctx: &Context, row: &Row, out: &mut Vec<Planned<Task>>) {
        let Ok(cells) = &row.cells else {
            out.push(Planned::invalid(
                self.name(),
                row.number,
                &[],
                "unreadable".into(),
            ));
            return;
        };
        let fields: Vec<String> = [0, 1, 2, 3, 4]
            .iter()
            .map(|&i| text(cells, i).to_string())
            .collect();
        let action = required(cells, 0, "action").map(Action::parse);
        let key = plan::key(&fields[0], &fields[1], &fields[2], &fields[4]);
        let task = match action {
            Ok(Some(action)) if self.rooms.contains_key(&fields[2]) => Ok(Task {
                action,
                user: fields[1].clone(),
                room: fields[2].clone(),
                reason: text(cells, 5).to_string(),
                settled: self.settled.contains(key.as_str()),
            }),
            Ok(Some(Action::Invalid)) => Err(text(cells, 5).to_string()),
            _ => Err(format!("row {}: not a line of this run's plan", row.number)),
        };
        out.push(Planned {
            row: row.number,
            key,
            fields,
            task,
        });
    }

    async fn attempt(&self, hs: &Homeserver, task: &Task, intent: &Intent<'_>) -> Attempt<Outcome> {
        let room = &self.rooms[&task.room];
        let reason = self.reason.as_deref();
        if task.settled {
            return Ok(intent.done_earlier(None, "the room's state shows it done"));
        }
        if task.action.changes() {
            self.ready(hs, room).await?;
        }
        let doubt = intent.in_doubt();
        let already = |now: &str| match doubt {
            true => intent.done_earlier(Some(403), now),
            false => Outcome::unchanged(Some(403), now),
        };
        Ok(match task.action {
            Action::MakeRoomAdmin => Outcome::ok(200),
            Action::Join => {
                intent.sending("").await?;
                match hs.admin_join(&room.id, &task.user).await {
                    Ok(_) => Outcome::ok(200),
                    Err(e @ HsError::Status { status: 403, .. })
                        if e.message().contains("is already in the room") =>
                    {
                        already("already in the room")
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Action::Invite => {
                intent.sending("").await?;
                match hs.invite(&room.id, &task.user, reason).await {
                    Ok(()) => Outcome::ok(200),
                    Err(e @ HsError::Status { status: 403, .. })
                        if e.message().contains("is already in the room") =>
                    {
                        already("already in the room")
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Action::Kick => {
                intent.sending("").await?;
                match hs.kick(&room.id, &task.user, reason).await {
                    Ok(()) => Outcome::ok(200),
                    Err(e @ HsError::Status { status: 403, .. })
                        if e.message().contains("not in the room") =>
                    {
                        already("not in the room")
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Action::SetPower => {
                let sent = self.power_sent.lock().unwrap().contains(&room.id);
                if sent {
                    Outcome::ok(200).saying("in the room's one power-levels event")
                } else if self.send_power(hs, room, intent).await? {
                    self.power_sent.lock().unwrap().insert(room.id.clone());
                    Outcome::ok(200).saying("in the room's one power-levels event")
                } else if doubt {
                    intent.done_earlier(None, "power levels as planned")
                } else {
                    Outcome::unchanged(None, "power levels already as planned")
                }
            }
            Action::Unchanged | Action::Keep => Outcome::unchanged(None, task.reason.clone()),
            Action::Fail => Outcome::failed_because(task.reason.clone()),
            Action::Invalid => Outcome::invalid(task.reason.clone()),
        })
    }

    /// The set-power lines of a room go one at a time: the first sends the room's one event,
    /// the others find it sent.
    fn serial_key(&self, task: &Task) -> Option<String> {
        (task.action == Action::SetPower).then(|| format!("power {}", task.room))
    }

    fn acts_as_token_user(&self) -> bool {
        true
    }

    fn describe(&self, task: &Task) -> String {
        format!("{} {} {}", task.action.as_str(), task.user, task.room)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_changes_keep_every_other_key() {
        let current = json!({
            "users": {"@a:x": 100, "@b:x": 50},
            "users_default": 0,
            "events": {"m.room.name": 50},
            "kick": 50,
        });
        let next = with_changes(&current, &[("@b:x".into(), 0), ("@c:x".into(), 50)]);
        assert_eq!(
            next,
            json!({
                "users": {"@a:x": 100, "@c:x": 50},
                "users_default": 0,
                "events": {"m.room.name": 50},
                "kick": 50,
            })
        );
        assert_eq!(with_changes(&next, &[("@c:x".into(), 50)]), next);
    }
}
