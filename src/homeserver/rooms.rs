//! Rooms: the admin join API, the room directory, and what the admin API tells of a room.

use std::collections::HashMap;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Homeserver, HsError};

impl Homeserver {
    /// `POST /_synapse/admin/v1/join/<room_id_or_alias>` with `{"user_id"}`: returns the room id.
    pub async fn admin_join(&self, room: &str, user_id: &str) -> Result<String, HsError> {
        #[derive(Deserialize)]
        struct Joined {
            room_id: String,
        }
        let body = json!({ "user_id": user_id });
        let joined: Joined = self
            .call_as(
                Method::POST,
                &["_synapse", "admin", "v1", "join", room],
                Some(&body),
            )
            .await?;
        Ok(joined.room_id)
    }

    /// `GET /_matrix/client/v3/directory/room/<alias>`: the room id an alias points to.
    pub async fn resolve_alias(&self, alias: &str) -> Result<String, HsError> {
        #[derive(Deserialize)]
        struct Directory {
            room_id: String,
        }
        let found: Directory = self
            .call_as(
                Method::GET,
                &["_matrix", "client", "v3", "directory", "room", alias],
                None,
            )
            .await?;
        Ok(found.room_id)
    }

    /// `GET /_synapse/admin/v1/rooms/<room_id>/members`: the users joined to a room.
    pub async fn room_members(&self, room_id: &str) -> Result<Vec<String>, HsError> {
        #[derive(Deserialize)]
        struct Members {
            members: Vec<String>,
        }
        let found: Members = self
            .call_as(
                Method::GET,
                &["_synapse", "admin", "v1", "rooms", room_id, "members"],
                None,
            )
            .await?;
        Ok(found.members)
    }

    /// `GET /_synapse/admin/v1/rooms/<room_id>/state`: every membership, the join rule and who
    /// may invite, read in one request.
    pub async fn room_state(&self, room_id: &str) -> Result<RoomState, HsError> {
        #[derive(Deserialize)]
        struct State {
            state: Vec<Event>,
        }
        #[derive(Deserialize)]
        struct Event {
            #[serde(rename = "type")]
            kind: String,
            #[serde(default)]
            state_key: String,
            #[serde(default)]
            sender: String,
            #[serde(default)]
            content: Value,
        }
        let path = ["_synapse", "admin", "v1", "rooms", room_id, "state"];
        let state: State = self.call_as(Method::GET, &path, None).await?;
        let mut room = RoomState::default();
        for event in state.state {
            match event.kind.as_str() {
                "m.room.member" => {
                    let membership = match event.content["membership"].as_str() {
                        Some("join") => Membership::Join,
                        Some("invite") => Membership::Invite,
                        Some("ban") => Membership::Ban,
                        Some("knock") => Membership::Knock,
                        _ => Membership::Leave,
                    };
                    room.members.insert(event.state_key, membership);
                }
                "m.room.join_rules" => {
                    room.join_rule = event.content["join_rule"].as_str().map(String::from);
                }
                "m.room.power_levels" => room.power_levels = Some(event.content),
                "m.room.create" => room.creators = creators(&event.sender, &event.content),
                _ => {}
            }
        }
        Ok(room)
    }

    /// `POST /_matrix/client/v3/rooms/<room_id>/invite` `{"user_id", "reason"?}` as the token's
    /// user. Rate limited by Synapse, admins included.
    pub async fn invite(
        &self,
        room_id: &str,
        user_id: &str,
        reason: Option<&str>,
    ) -> Result<(), HsError> {
        self.membership_change("invite", room_id, user_id, reason)
            .await
    }

    /// `POST /_matrix/client/v3/rooms/<room_id>/kick` `{"user_id", "reason"?}`.
    pub async fn kick(
        &self,
        room_id: &str,
        user_id: &str,
        reason: Option<&str>,
    ) -> Result<(), HsError> {
        self.membership_change("kick", room_id, user_id, reason)
            .await
    }

    async fn membership_change(
        &self,
        action: &str,
        room_id: &str,
        user_id: &str,
        reason: Option<&str>,
    ) -> Result<(), HsError> {
        let mut body = json!({ "user_id": user_id });
        if let Some(reason) = reason {
            body["reason"] = json!(reason);
        }
        let path = ["_matrix", "client", "v3", "rooms", room_id, action];
        self.call(Method::POST, &path, &[], Some(&body)).await?;
        Ok(())
    }
}

impl Homeserver {
    /// `PUT /_matrix/client/v3/rooms/<room_id>/state/m.room.power_levels/` as the token's user:
    /// the whole content replaces the room's power levels (one event).
    pub async fn put_power_levels(&self, room_id: &str, content: &Value) -> Result<(), HsError> {
        let path = [
            "_matrix",
            "client",
            "v3",
            "rooms",
            room_id,
            "state",
            "m.room.power_levels",
            "",
        ];
        self.call(Method::PUT, &path, &[], Some(content)).await?;
        Ok(())
    }

    /// `POST /_matrix/client/v3/rooms/<room_id>/join` `{}`: the token's own user joins (after
    /// `make_room_admin` invited it to a room that is not public).
    pub async fn join_self(&self, room_id: &str) -> Result<(), HsError> {
        let path = ["_matrix", "client", "v3", "rooms", room_id, "join"];
        self.call(Method::POST, &path, &[], Some(&json!({})))
            .await?;
        Ok(())
    }

    /// `POST /_synapse/admin/v1/rooms/<room_id>/make_room_admin` `{}`: Synapse has the room's
    /// most powerful local member give the token's user the same level (100 from a version 12
    /// creator), and invites it to a room that is not public.
    pub async fn make_room_admin(&self, room_id: &str) -> Result<(), HsError> {
        let path = [
            "_synapse",
            "admin",
            "v1",
            "rooms",
            room_id,
            "make_room_admin",
        ];
        self.call(Method::POST, &path, &[], Some(&json!({})))
            .await?;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    Join,
    Invite,
    Leave,
    Ban,
    Knock,
}

/// What a room's state says about who is in it and who may invite.
#[derive(Debug, Clone, Default)]
pub struct RoomState {
    pub members: HashMap<String, Membership>,
    pub join_rule: Option<String>,
    pub power_levels: Option<Value>,
    /// Users who outrank every power level: a room version 12 room's creators, who are not
    /// in the power levels' `users` map.
    pub creators: Vec<String>,
}

/// The level that stands for a creator's unbounded power (real levels are at most 2^53).
pub const CREATOR_POWER: i64 = i64::MAX;

/// The creators of a room whose version gives them unbounded power (MSC4289: room version 12
/// and its prototype `org.matrix.hydra.11`): the create event's sender and
/// `additional_creators`. Older versions: none.
fn creators(sender: &str, content: &Value) -> Vec<String> {
    let version = content["room_version"].as_str().unwrap_or("1");
    let privileged =
        version == "org.matrix.hydra.11" || version.parse::<u32>().is_ok_and(|v| v >= 12);
    if !privileged || sender.is_empty() {
        return vec![];
    }
    let mut creators = vec![sender.to_string()];
    if let Some(more) = content["additional_creators"].as_array() {
        creators.extend(more.iter().filter_map(|u| u.as_str().map(String::from)));
    }
    creators
}

impl RoomState {
    pub fn membership(&self, user_id: &str) -> Membership {
        self.members
            .get(user_id)
            .copied()
            .unwrap_or(Membership::Leave)
    }

    /// Whether `user_id` is joined and has the power to invite (`m.room.power_levels`).
    pub fn can_invite(&self, user_id: &str) -> bool {
        self.has_power(user_id, "invite", 0)
    }

    /// Whether `user_id` is joined and has the power to kick.
    pub fn can_kick(&self, user_id: &str) -> bool {
        self.has_power(user_id, "kick", 50)
    }

    /// A user's power level as Synapse computes it: creators first (unbounded, see
    /// [`CREATOR_POWER`]), then the `users` map, then `users_default`. Without a power levels
    /// event every member has every power.
    pub fn power(&self, user_id: &str) -> i64 {
        if self.creators.iter().any(|c| c == user_id) {
            return CREATOR_POWER;
        }
        let Some(levels) = &self.power_levels else {
            return CREATOR_POWER;
        };
        levels["users"][user_id]
            .as_i64()
            .or_else(|| levels["users_default"].as_i64())
            .unwrap_or(0)
    }

    /// The level an action needs (`kick`, `invite`, `state_default`...), `default` being the
    /// spec's when the power levels do not name one.
    pub fn needed(&self, action: &str, default: i64) -> i64 {
        self.power_levels
            .as_ref()
            .and_then(|levels| levels[action].as_i64())
            .unwrap_or(default)
    }

    /// The level that changing the power levels needs: `events["m.room.power_levels"]`, else
    /// `state_default` (50).
    pub fn needed_for_power_levels(&self) -> i64 {
        self.power_levels
            .as_ref()
            .and_then(|levels| levels["events"]["m.room.power_levels"].as_i64())
            .unwrap_or_else(|| self.needed("state_default", 50))
    }

    /// `default` is the spec's level for `action` when the power levels do not name one.
    fn has_power(&self, user_id: &str, action: &str, default: i64) -> bool {
        self.membership(user_id) == Membership::Join
            && self.power(user_id) >= self.needed(action, default)
    }
}
