//! Making rooms as the token's user (Client-Server API): createRoom, state events, the room
//! directory; and a room's whole state as the admin API shows it.

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Homeserver, HsError};

/// One state event of a room.
#[derive(Debug, Clone, Deserialize)]
pub struct StateEvent {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub state_key: String,
    #[serde(default)]
    pub content: Value,
}

impl Homeserver {
    /// `POST /_matrix/client/v3/createRoom` as the token's user: returns the new room's id.
    pub async fn create_room(&self, body: &Value) -> Result<String, HsError> {
        #[derive(Deserialize)]
        struct Created {
            room_id: String,
        }
        let path = ["_matrix", "client", "v3", "createRoom"];
        let created: Created = self.call_as(Method::POST, &path, Some(body)).await?;
        Ok(created.room_id)
    }

    /// `PUT /_matrix/client/v3/rooms/<room_id>/state/<type>/<state_key>` as the token's user.
    pub async fn put_state(
        &self,
        room_id: &str,
        kind: &str,
        state_key: &str,
        content: &Value,
    ) -> Result<(), HsError> {
        let path = [
            "_matrix", "client", "v3", "rooms", room_id, "state", kind, state_key,
        ];
        self.call(Method::PUT, &path, &[], Some(content)).await?;
        Ok(())
    }

    /// `GET /_synapse/admin/v1/rooms/<room_id>/state`: every current state event.
    pub async fn room_state_events(&self, room_id: &str) -> Result<Vec<StateEvent>, HsError> {
        #[derive(Deserialize)]
        struct State {
            state: Vec<StateEvent>,
        }
        let path = ["_synapse", "admin", "v1", "rooms", room_id, "state"];
        let state: State = self.call_as(Method::GET, &path, None).await?;
        Ok(state.state)
    }

    /// `GET /_matrix/client/v3/directory/list/room/<room_id>`: whether the room is listed.
    pub async fn in_directory(&self, room_id: &str) -> Result<bool, HsError> {
        #[derive(Deserialize)]
        struct Visibility {
            visibility: String,
        }
        let path = [
            "_matrix",
            "client",
            "v3",
            "directory",
            "list",
            "room",
            room_id,
        ];
        let found: Visibility = self.call_as(Method::GET, &path, None).await?;
        Ok(found.visibility == "public")
    }

    /// `PUT /_matrix/client/v3/directory/list/room/<room_id>` `{"visibility"}`. A Synapse whose
    /// `room_list_publication_rules` do not allow it answers 403.
    pub async fn set_in_directory(&self, room_id: &str, listed: bool) -> Result<(), HsError> {
        let visibility = if listed { "public" } else { "private" };
        let path = [
            "_matrix",
            "client",
            "v3",
            "directory",
            "list",
            "room",
            room_id,
        ];
        let body = json!({ "visibility": visibility });
        self.call(Method::PUT, &path, &[], Some(&body)).await?;
        Ok(())
    }
}
