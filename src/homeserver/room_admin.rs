//! Rooms through the admin API: details, blocking, and deletion (v2, a background task polled by
//! its `delete_id`).

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Homeserver, HsError};

/// What `DELETE /_synapse/admin/v2/rooms/<room_id>` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct RoomDelete {
    pub block: bool,
    pub purge: bool,
    /// Said in the new room to the users moved there.
    pub message: Option<String>,
    /// Creates a new room with this user, moves the local members and aliases there.
    pub new_room_user_id: Option<String>,
}

/// A delete task as `delete_status` shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct DeleteTask {
    pub delete_id: String,
    /// `scheduled`, `active`, `complete`, `failed` (or `cancelled`).
    pub status: String,
    /// What the shutdown did (`kicked_users`, `new_room_id`, ...), once it did it.
    #[serde(default)]
    pub shutdown_room: Value,
}

impl DeleteTask {
    /// Whether the task has ended, one way or another.
    pub fn ended(&self) -> bool {
        matches!(self.status.as_str(), "complete" | "failed" | "cancelled")
    }
}

/// What `GET /_synapse/admin/v1/rooms/<room_id>` says of a room that matters to deleting it.
#[derive(Debug, Clone, Deserialize)]
pub struct RoomDetails {
    #[serde(default)]
    pub joined_local_members: u64,
}

impl Homeserver {
    /// `DELETE /_synapse/admin/v2/rooms/<room_id>`: starts the delete; returns its `delete_id`.
    pub async fn delete_room(&self, room_id: &str, delete: &RoomDelete) -> Result<String, HsError> {
        #[derive(Deserialize)]
        struct Started {
            delete_id: String,
        }
        let mut body = json!({ "block": delete.block, "purge": delete.purge });
        if let Some(message) = &delete.message {
            body["message"] = json!(message);
        }
        if let Some(user) = &delete.new_room_user_id {
            body["new_room_user_id"] = json!(user);
        }
        let path = ["_synapse", "admin", "v2", "rooms", room_id];
        let started: Started = self.call_as(Method::DELETE, &path, Some(&body)).await?;
        Ok(started.delete_id)
    }

    /// `GET /_synapse/admin/v2/rooms/delete_status/<delete_id>`; 404 for an unknown id.
    pub async fn delete_status(&self, delete_id: &str) -> Result<DeleteTask, HsError> {
        let path = [
            "_synapse",
            "admin",
            "v2",
            "rooms",
            "delete_status",
            delete_id,
        ];
        self.call_as(Method::GET, &path, None).await
    }

    /// `GET /_synapse/admin/v2/rooms/<room_id>/delete_status`: every delete task of a room, none
    /// when Synapse has none (its 404).
    pub async fn room_deletes(&self, room_id: &str) -> Result<Vec<DeleteTask>, HsError> {
        #[derive(Deserialize)]
        struct Tasks {
            results: Vec<DeleteTask>,
        }
        let path = ["_synapse", "admin", "v2", "rooms", room_id, "delete_status"];
        match self.call_as::<Tasks>(Method::GET, &path, None).await {
            Ok(tasks) => Ok(tasks.results),
            Err(HsError::Status { status: 404, .. }) => Ok(vec![]),
            Err(e) => Err(e),
        }
    }

    /// `GET /_synapse/admin/v1/rooms/<room_id>`: `None` for a room Synapse does not know (never
    /// was, or purged).
    pub async fn room_details(&self, room_id: &str) -> Result<Option<RoomDetails>, HsError> {
        let path = ["_synapse", "admin", "v1", "rooms", room_id];
        match self.call_as(Method::GET, &path, None).await {
            Ok(details) => Ok(Some(details)),
            Err(HsError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /_synapse/admin/v1/rooms/<room_id>/block`: whether joins and invites are refused.
    pub async fn room_blocked(&self, room_id: &str) -> Result<bool, HsError> {
        #[derive(Deserialize)]
        struct Block {
            block: bool,
        }
        let path = ["_synapse", "admin", "v1", "rooms", room_id, "block"];
        let block: Block = self.call_as(Method::GET, &path, None).await?;
        Ok(block.block)
    }

    /// `PUT /_synapse/admin/v1/rooms/<room_id>/block` `{"block": true}`.
    pub async fn block_room(&self, room_id: &str) -> Result<(), HsError> {
        let path = ["_synapse", "admin", "v1", "rooms", room_id, "block"];
        let body = json!({ "block": true });
        self.call(Method::PUT, &path, &[], Some(&body)).await?;
        Ok(())
    }
}
