//! `join`: put local users in rooms with the admin API.
//!
//! `POST /_synapse/admin/v1/join/<room_id_or_alias>` `{"user_id": "@user:server"}` -> 200
//! `{"room_id"}`. Local users only. For a room that is not public, Synapse invites the user as
//! the admin first, so the admin needs to be in the room with power to invite.
//!
//! Answers that matter for a rerun: a user already in a public room gets 200 again, so the
//! room's members are read once per room (`GET /_synapse/admin/v1/rooms/<room_id>/members`) to
//! tell `unchanged` from `ok`; a user already in a non-public room gets 403 "... is already in
//! the room.", which is `unchanged` too. Aliases are resolved once per run
//! (`GET /_matrix/client/v3/directory/room/<alias>`); an unknown one is a 404.

use clap::Args as ClapArgs;

use crate::cli::RowArgs;
use crate::executor::{Attempt, Fail};
use crate::exit::Exit;
use crate::homeserver::{Homeserver, HsError};
use crate::input::{FieldDef, ROOM, USER};
use crate::job::rooms::Rooms;
use crate::job::user_room::{self, RoomAction, UserRoom};
use crate::job::{Context, Intent, Outcome, Step, Users};
use crate::results::Cause;

/// Join users to rooms (admin API; columns: user, room)
#[derive(Debug, ClapArgs)]
#[command(
    long_about = "Join users to rooms through the admin API \
        (POST /_synapse/admin/v1/join/<room>).\n\n\
        Columns: user (a user id, a localpart or an email address) and room (a room id or \
        alias). With --room, every user in the file is joined to each named room: the file \
        then needs only a user column. Users must be local. For a room that is not public, \
        the admin must be in the room with power to invite. A user already in the room is \
        recorded as `unchanged`.",
    after_help = "Examples:\n  \
        synbatch join new-hires.csv --homeserver https://matrix.example.org --token-file admin.token\n  \
        synbatch join staff.csv --room '#general:example.org' --room '#random:example.org'\n  \
        synbatch join new-hires.csv --resume"
)]
pub struct Args {
    /// Join every user of the input to this room too (repeatable): users x rooms
    #[arg(long = "room", value_name = "ROOM")]
    pub rooms: Vec<String>,

    #[command(flatten)]
    pub rows: RowArgs,
}

pub async fn run(args: Args) -> Result<(), Exit> {
    user_room::run(Join, &args.rooms, &args.rows).await
}

pub struct Join;

/// Joins one user to one room: `true` when this row joined them (now, or in an attempt whose
/// answer was lost), `false` when they were in the room already. Shared by `join` and
/// `create-users --join`.
pub async fn join_user(
    hs: &Homeserver,
    rooms: &Rooms,
    user_id: &str,
    room: &str,
    intent: &Intent<'_>,
) -> Step<bool> {
    let room_id = rooms.id(hs, room).await?;
    let joined = rooms.joined(hs, &room_id).await?;
    let doubt = intent.in_doubt();
    if joined.contains(user_id) {
        return Ok(doubt);
    }
    intent.sending("").await?;
    match hs.admin_join(&room_id, user_id).await {
        // The users this run joins are not added to the room's set: it would grow with the
        // input (a million rows, a million ids). A repeated row is answered by Synapse instead.
        Ok(_) => Ok(true),
        // A non-public room answers a member's rejoin with 403 "... is already in the room."
        Err(e @ HsError::Status { status: 403, .. })
            if e.message().contains("is already in the room") =>
        {
            Ok(doubt)
        }
        // The room is an id by now (an alias was resolved above). Synapse checks the user
        // first: 404 M_NOT_FOUND "User not found"; a room id it does not know is 404 M_UNKNOWN
        // "Can't join remote room ...".
        Err(e @ HsError::Status { status: 404, .. }) => {
            let cause = match e.errcode() {
                "M_NOT_FOUND" => Cause::UserNotFound,
                _ => Cause::RoomNotFound,
            };
            Err(Fail::Final(Outcome::failed(&e).because(cause)))
        }
        Err(e) => Err(Fail::from(e)),
    }
}

impl RoomAction for Join {
    const NAME: &'static str = "join";
    const FIELDS: &'static [FieldDef] = &[USER, ROOM];
    const LOCAL_ONLY: Option<&'static str> = Some("the admin join API only takes local users");

    async fn apply(
        &self,
        hs: &Homeserver,
        rooms: &Rooms,
        user_id: &str,
        task: &UserRoom,
        intent: &Intent<'_>,
    ) -> Attempt<Outcome> {
        Ok(
            match join_user(hs, rooms, user_id, &task.room, intent).await? {
                true => Outcome::ok(200),
                false => Outcome::unchanged(None, "already in the room"),
            },
        )
    }

    /// The user must exist, the room must resolve, and for a room that is not public the admin
    /// must be in it with power to invite (Synapse invites as the admin, then joins).
    async fn check(
        &self,
        hs: &Homeserver,
        rooms: &Rooms,
        users: &Users,
        ctx: &Context,
        task: &UserRoom,
    ) -> Result<Option<String>, HsError> {
        if let Some(why) = users.why_missing(hs, &task.user).await? {
            return Ok(Some(why));
        }
        rooms.why_cannot_invite(hs, &ctx.me, &task.room, true).await
    }

    fn describe(&self, task: &UserRoom) -> String {
        format!(
            "POST /_synapse/admin/v1/join/{} {{\"user_id\": \"{}\"}}",
            task.room,
            task.user.as_str()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::Row;
    use crate::job::user_room::RoomJob;

    fn row(user: &str, room: &str) -> Row {
        Row::of(4, &[user, room])
    }

    fn plan(
        join: &RoomJob<Join>,
        server_name: &str,
        row: Row,
    ) -> Vec<(String, Result<(), String>)> {
        crate::job::plan_row(join, server_name, &row)
            .into_iter()
            .map(|p| {
                assert_eq!(p.row, 4);
                (p.key.into_string(), p.task.map(|_| ()))
            })
            .collect()
    }

    #[test]
    fn plans_a_row() {
        let join = RoomJob::new(Join, &[]).unwrap();
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
        let join = RoomJob::new(Join, &["#a:x.org".into(), "!b".into()]).unwrap();
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
        let join = RoomJob::new(Join, &[]).unwrap();
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
        assert!(RoomJob::new(Join, &["general".into()]).is_err());
    }
}
