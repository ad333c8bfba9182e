//! `invite`: invite users to rooms through the Client-Server API, as the token's own user.
//!
//! `POST /_matrix/client/v3/rooms/<room_id>/invite` `{"user_id", "reason"?}` -> 200 `{}`. It takes a
//! room id, so aliases are resolved first (`GET /_matrix/client/v3/directory/room/<alias>`, once
//! per alias). Remote users may be invited. The inviter must be in the room with power to invite.
//!
//! Answers that matter for a rerun: Synapse answers 200 again to a user already invited, and 403
//! "... is already in the room." to a member, so the room's memberships are read once per room
//! (`GET /_synapse/admin/v1/rooms/<room_id>/state`) and both are recorded `unchanged`.
//!
//! Synapse rate-limits invites, admins included (by default about 10 at once per room, then one
//! every ~3 s): the executor waits out each 429 as Synapse asks, without losing a row.

use super::rooms::Rooms;
use super::user_room::{RoomAction, UserRoom};
use super::{Context, Outcome, Users, classify};
use crate::executor::Attempt;
use crate::homeserver::{Homeserver, HsError, Membership};
use crate::input::ids::{self, UserRef};
use crate::input::{FieldDef, REASON, ROOM, USER};

pub struct Invite;

impl RoomAction for Invite {
    const NAME: &'static str = "invite";
    const FIELDS: &'static [FieldDef] = &[USER, ROOM, REASON];

    async fn apply(
        &self,
        hs: &Homeserver,
        rooms: &Rooms,
        user_id: &str,
        task: &UserRoom,
    ) -> Attempt<Outcome> {
        let (room_id, state) = match rooms.memberships(hs, &task.room).await {
            Ok(found) => found,
            Err(attempt) => return attempt,
        };
        match state.membership(user_id) {
            Membership::Join => {
                return Attempt::Done(Outcome::unchanged(None, "already in the room"));
            }
            Membership::Invite => {
                return Attempt::Done(Outcome::unchanged(None, "already invited"));
            }
            _ => {}
        }
        match hs.invite(&room_id, user_id, task.reason.as_deref()).await {
            // Not recorded in the snapshot: it would grow with the input.
            Ok(()) => Attempt::Done(Outcome::ok(200)),
            Err(e @ HsError::Status { status: 403, .. })
                if e.message().contains("is already in the room") =>
            {
                Attempt::Done(Outcome::unchanged(Some(403), "already in the room"))
            }
            Err(e) => classify(e),
        }
    }

    /// The room must resolve and the token's user must be in it with power to invite; a local
    /// user must exist (Synapse would invite a local user who does not).
    async fn check(
        &self,
        hs: &Homeserver,
        rooms: &Rooms,
        users: &Users,
        ctx: &Context,
        task: &UserRoom,
    ) -> Result<Option<String>, HsError> {
        let local = match &task.user {
            UserRef::Mxid(id) => ids::server_of(id) == Some(&ctx.server_name),
            UserRef::Email(_) => true,
        };
        if local && let Some(why) = users.why_missing(hs, &task.user).await? {
            return Ok(Some(why));
        }
        rooms
            .why_cannot_invite(hs, &ctx.me, &task.room, false)
            .await
    }

    fn describe(&self, task: &UserRoom) -> String {
        describe("invite", task)
    }
}

/// `POST .../rooms/<room>/invite {"user_id": ..., "reason": ...}` for a dry run.
pub fn describe(action: &str, task: &UserRoom) -> String {
    let mut body = serde_json::json!({ "user_id": task.user.as_str() });
    if let Some(reason) = &task.reason {
        body["reason"] = reason.as_str().into();
    }
    format!(
        "POST /_matrix/client/v3/rooms/{}/{action} {body}",
        task.room
    )
}
