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

    /// `default` is the spec's level for `action` when the power levels do not name one.
    fn has_power(&self, user_id: &str, action: &str, default: i64) -> bool {
        if self.membership(user_id) != Membership::Join {
            return false;
        }
        let Some(levels) = &self.power_levels else {
            return true; // no power levels event: every member has every power
        };
        let own = levels["users"][user_id]
            .as_i64()
            .or_else(|| levels["users_default"].as_i64())
            .unwrap_or(0);
        own >= levels[action].as_i64().unwrap_or(default)
    }
}
