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

use super::rooms::Rooms;
use super::user_room::{RoomAction, UserRoom};
use super::{Context, Outcome, Users, classify};
use crate::executor::Attempt;
use crate::homeserver::{Homeserver, HsError};
use crate::input::{FieldDef, ROOM, USER};

pub struct Join;

/// Joins one user to one room: `Ok(true)` when this call joined them, `Ok(false)` when they
/// were in the room already. Shared by `join` and `create-users --join`.
pub async fn join_user(
    hs: &Homeserver,
    rooms: &Rooms,
    user_id: &str,
    room: &str,
) -> Result<bool, Attempt<Outcome>> {
    let room_id = rooms.id(hs, room).await?;
    let joined = rooms.joined(hs, &room_id).await.map_err(classify)?;
    if joined.contains(user_id) {
        return Ok(false);
    }
    let already = match hs.admin_join(&room_id, user_id).await {
        Ok(_) => false,
        // A non-public room answers a member's rejoin with 403 "... is already in the room."
        Err(e @ HsError::Status { status: 403, .. })
            if e.message().contains("is already in the room") =>
        {
            true
        }
        Err(e) => return Err(classify(e)),
    };
    // The users this run joins are not added to the room's set: it would grow with the input
    // (a million rows, a million ids). A repeated row is answered by Synapse instead.
    Ok(!already)
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
    ) -> Attempt<Outcome> {
        match join_user(hs, rooms, user_id, &task.room).await {
            Ok(true) => Attempt::Done(Outcome::ok(200)),
            Ok(false) => Attempt::Done(Outcome::unchanged(None, "already in the room")),
            Err(attempt) => attempt,
        }
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
    use crate::input::{Cell, Row};
    use crate::ops::Op;
    use crate::ops::user_room::RoomJob;

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

    fn plan(
        join: &RoomJob<Join>,
        server_name: &str,
        row: Row,
    ) -> Vec<(String, Result<(), String>)> {
        let mut out = vec![];
        let ctx = Context {
            server_name: server_name.into(),
            me: String::new(),
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
