//! `kick`: remove users from rooms through the Client-Server API, as the token's own user.
//!
//! `POST /_matrix/client/v3/rooms/<room_id>/kick` `{"user_id", "reason"?}` -> 200 `{}`. It takes a
//! room id, so aliases are resolved first, once per alias. Kicking an invited user withdraws the
//! invitation. The kicker must be in the room with power to kick (power level 50 by default).
//!
//! Answers that matter for a rerun: a user who is not in the room gets 403 "The target user is
//! not in the room", recorded `unchanged`.

use clap::Args as ClapArgs;

use crate::cli::RowArgs;
use crate::executor::{Attempt, Fail};
use crate::exit::Exit;
use crate::homeserver::{Homeserver, HsError};
use crate::input::{FieldDef, REASON, ROOM, USER};
use crate::job::rooms::Rooms;
use crate::job::user_room::{self, RoomAction, UserRoom};
use crate::job::{Context, Intent, Outcome, Users};

/// Kick users from rooms (Client-Server API; columns: user, room, [reason])
#[derive(Debug, ClapArgs)]
#[command(
    long_about = "Kick users from rooms through the Client-Server API, as the token's own user \
        (POST /_matrix/client/v3/rooms/<room_id>/kick).\n\n\
        Columns: user, room and an optional reason. Kicking an invited user withdraws the \
        invitation. The token's user must be in the room with power to kick. A user who is \
        not in the room is recorded as `unchanged`.",
    after_help = "Examples:\n  \
        synbatch kick leavers.csv --room '#staff:example.org' --room '#random:example.org'"
)]
pub struct Args {
    /// Kick every user of the input from this room too (repeatable): users x rooms
    #[arg(long = "room", value_name = "ROOM")]
    pub rooms: Vec<String>,

    #[command(flatten)]
    pub rows: RowArgs,
}

pub async fn run(args: Args) -> Result<(), Exit> {
    user_room::run(Kick, &args.rooms, &args.rows).await
}

pub struct Kick;

impl RoomAction for Kick {
    const NAME: &'static str = "kick";
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
        // No membership snapshot here: a user who joined after it was read would be left in
        // the room. Synapse's 403 "not in the room" says `unchanged` just as well, unless an
        // earlier attempt of this row was sent: then the kick is its work.
        let room_id = rooms.id(hs, &task.room).await?;
        let doubt = intent.in_doubt();
        intent.sending("").await?;
        match hs.kick(&room_id, user_id, task.reason.as_deref()).await {
            Ok(()) => Ok(Outcome::ok(200)),
            Err(e @ HsError::Status { status: 403, .. })
                if e.message().contains("not in the room") =>
            {
                Ok(match doubt {
                    true => intent.done_earlier(Some(403), "not in the room"),
                    false => Outcome::unchanged(Some(403), "not in the room"),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The room must resolve and the token's user must be in it with power to kick.
    async fn check(
        &self,
        hs: &Homeserver,
        rooms: &Rooms,
        _users: &Users,
        ctx: &Context,
        task: &UserRoom,
    ) -> Result<Option<String>, HsError> {
        let room_id = match rooms.id(hs, &task.room).await {
            Ok(id) => id,
            Err(Fail::Final(outcome)) => return Ok(Some(outcome.message)),
            Err(_) => return Ok(Some(format!("room {} could not be resolved", task.room))),
        };
        let state = rooms.state(hs, &room_id).await?;
        if !state.can_kick(&ctx.me) {
            return Ok(Some(format!(
                "{} is not in room {} with power to kick",
                ctx.me, task.room
            )));
        }
        Ok(None)
    }

    fn describe(&self, task: &UserRoom) -> String {
        super::invite::describe("kick", task)
    }
}
