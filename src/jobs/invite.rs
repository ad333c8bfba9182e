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

use clap::Args as ClapArgs;

use crate::cli::RowArgs;
use crate::executor::{Attempt, Fail};
use crate::exit::Exit;
use crate::homeserver::{Homeserver, HsError, Membership};
use crate::input::ids::{self, UserRef};
use crate::input::{FieldDef, REASON, ROOM, USER};
use crate::job::rooms::Rooms;
use crate::job::user_room::{self, RoomAction, UserRoom};
use crate::job::{Context, Intent, Outcome, Users};
use crate::results::Cause;

/// Invite users to rooms (Client-Server API; columns: user, room, [reason])
#[derive(Debug, ClapArgs)]
#[command(
    long_about = "Invite users to rooms through the Client-Server API, as the token's own user \
        (POST /_matrix/client/v3/rooms/<room_id>/invite).\n\n\
        Columns: user, room and an optional reason. Aliases are resolved once each. Remote \
        users may be invited. The token's user must be in the room with power to invite. A \
        user already invited or already in the room is recorded as `unchanged`. Synapse \
        rate-limits invites, admins included: synbatch waits as it asks, and no row is lost.",
    after_help = "Examples:\n  \
        synbatch invite guests.csv\n  \
        synbatch invite partners.csv --room '#project-x:example.org'"
)]
pub struct Args {
    /// Invite every user of the input to this room too (repeatable): users x rooms
    #[arg(long = "room", value_name = "ROOM")]
    pub rooms: Vec<String>,

    #[command(flatten)]
    pub rows: RowArgs,
}

pub async fn run(args: Args) -> Result<(), Exit> {
    user_room::run(Invite, &args.rooms, &args.rows).await
}

pub struct Invite;

impl RoomAction for Invite {
    const NAME: &'static str = "invite";
    const FIELDS: &'static [FieldDef] = &[USER, ROOM, REASON];
    const AS_TOKEN_USER: bool = true;

    async fn apply(
        &self,
        hs: &Homeserver,
        rooms: &Rooms,
        user_id: &str,
        task: &UserRoom,
        intent: &Intent<'_>,
    ) -> Attempt<Outcome> {
        let (room_id, state) = rooms.memberships(hs, &task.room).await?;
        let doubt = intent.in_doubt();
        // In doubt, an invitation (or the join that followed it) is this row's earlier work.
        match state.membership(user_id) {
            Membership::Invite if doubt => return Ok(intent.done_earlier(None, "invited")),
            Membership::Join if doubt => return Ok(intent.done_earlier(None, "in the room")),
            Membership::Join => return Ok(Outcome::unchanged(None, "already in the room")),
            Membership::Invite => return Ok(Outcome::unchanged(None, "already invited")),
            _ => {}
        }
        intent.sending("").await?;
        match hs.invite(&room_id, user_id, task.reason.as_deref()).await {
            // Not recorded in the snapshot: it would grow with the input.
            Ok(()) => Ok(Outcome::ok(200)),
            Err(e @ HsError::Status { status: 403, .. })
                if e.message().contains("is already in the room") =>
            {
                Ok(match doubt {
                    true => intent.done_earlier(Some(403), "in the room"),
                    false => Outcome::unchanged(Some(403), "already in the room"),
                })
            }
            // A room whose state the server does not have (404 when it was read): Synapse
            // answers the invite with 403 "Unknown room".
            Err(e @ HsError::Status { status: 403, .. }) if state.members.is_empty() => Err(
                Fail::Final(Outcome::failed(&e).because(Cause::RoomNotFound)),
            ),
            Err(e) => Err(e.into()),
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
