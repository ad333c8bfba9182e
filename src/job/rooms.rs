//! Rooms as several jobs need them: each alias resolved once per run, each room's members read
//! once and kept up to date as the run changes them, and the `--check` question "may the admin
//! invite into this room?".

use std::collections::HashSet;
use std::sync::Arc;

use super::{Cache, Outcome, Step};
use crate::executor::Fail;
use crate::homeserver::{Homeserver, HsError, RoomState};
use crate::results::Cause;

#[derive(Default)]
pub struct Rooms {
    ids: Cache<String>,
    joined: Cache<Arc<HashSet<String>>>,
    states: Cache<Arc<RoomState>>,
}

impl Rooms {
    /// The room id for a room cell (an id is itself; an alias is looked up once).
    pub async fn id(&self, hs: &Homeserver, room: &str) -> Step<String> {
        self.lookup_id(hs, room).await.map_err(|e| match e {
            HsError::Status { status: 404, .. } => Fail::Final(
                Outcome::failed(&e)
                    .because(Cause::RoomNotFound)
                    .saying(format!("room alias {room} does not exist")),
            ),
            e => e.into(),
        })
    }

    async fn lookup_id(&self, hs: &Homeserver, room: &str) -> Result<String, HsError> {
        if !room.starts_with('#') {
            return Ok(room.to_string());
        }
        self.ids.get_or_try(room, || hs.resolve_alias(room)).await
    }

    /// The users joined to a room when the run first asked (admin members API: one request per
    /// room). A room the server does not know is empty.
    pub async fn joined(
        &self,
        hs: &Homeserver,
        room_id: &str,
    ) -> Result<Arc<HashSet<String>>, HsError> {
        let fetch = || async {
            let members = match hs.room_members(room_id).await {
                Ok(members) => members.into_iter().collect(),
                // The request that follows will say why this room cannot be used.
                Err(HsError::Status { status: 404, .. }) => HashSet::new(),
                Err(e) => return Err(e),
            };
            Ok(Arc::new(members))
        };
        self.joined.get_or_try(room_id, fetch).await
    }

    /// Every membership of a room (joined, invited, left, banned), read once. A room the server
    /// does not know has no members.
    pub async fn state(&self, hs: &Homeserver, room_id: &str) -> Result<Arc<RoomState>, HsError> {
        let fetch = || async {
            let state = match hs.room_state(room_id).await {
                Ok(state) => state,
                Err(HsError::Status { status: 404, .. }) => RoomState::default(),
                Err(e) => return Err(e),
            };
            Ok(Arc::new(state))
        };
        self.states.get_or_try(room_id, fetch).await
    }

    /// A room's id and memberships, for jobs that change memberships (invite, kick).
    pub async fn memberships(&self, hs: &Homeserver, room: &str) -> Step<(String, Arc<RoomState>)> {
        let room_id = self.id(hs, room).await?;
        let state = self.state(hs, &room_id).await?;
        Ok((room_id, state))
    }

    /// For `--check`: why `me` could not bring a user into `room`, if anything stands in the
    /// way: an unknown alias or room, or a room that is not public where `me` lacks the power
    /// to invite (`public_ok`: a public room needs no invitation, as with the admin join).
    pub async fn why_cannot_invite(
        &self,
        hs: &Homeserver,
        me: &str,
        room: &str,
        public_ok: bool,
    ) -> Result<Option<String>, HsError> {
        let room_id = match self.lookup_id(hs, room).await {
            Ok(id) => id,
            Err(HsError::Status { status: 404, .. }) => {
                return Ok(Some(format!("room alias {room} does not exist")));
            }
            Err(e) => return Err(e),
        };
        let state = self.state(hs, &room_id).await?;
        if state.members.is_empty() {
            return Ok(Some(format!("room {room} is not known to this server")));
        }
        if public_ok && state.join_rule.as_deref() == Some("public") {
            return Ok(None);
        }
        if !state.can_invite(me) {
            return Ok(Some(format!(
                "{me} is not in room {room} with power to invite: make it room admin first \
                 (POST /_synapse/admin/v1/rooms/<room>/make_room_admin)"
            )));
        }
        Ok(None)
    }
}
