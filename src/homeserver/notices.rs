//! Server notices: sending one, and reading back what a user's notices room holds.

use std::collections::HashMap;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Homeserver, HsError};

/// What tells a notices room from others, as the admin API shows a room.
#[derive(Debug, Clone, Deserialize)]
pub struct RoomSummary {
    #[serde(default)]
    pub creator: Option<String>,
    #[serde(default)]
    pub joined_members: u64,
}

/// A page of `GET /_synapse/admin/v1/rooms/<room_id>/messages`.
#[derive(Debug, Clone, Deserialize)]
pub struct MessagePage {
    #[serde(default)]
    pub chunk: Vec<Value>,
    /// Where the next page starts; absent at the start of the room.
    #[serde(default)]
    pub end: Option<String>,
}

/// Whether Synapse sends server notices, as a probe found it.
#[derive(Debug, Clone, PartialEq)]
pub enum Notices {
    Enabled,
    Disabled(String),
}

impl Homeserver {
    /// `PUT /_synapse/admin/v1/send_server_notice/<txn_id>` `{"user_id", "content"}`, or
    /// without a transaction id `POST /_synapse/admin/v1/send_server_notice`.
    pub async fn send_notice(
        &self,
        txn_id: Option<&str>,
        user_id: &str,
        content: &Value,
    ) -> Result<(), HsError> {
        let body = json!({ "user_id": user_id, "content": content });
        match txn_id {
            Some(txn_id) => {
                let path = ["_synapse", "admin", "v1", "send_server_notice", txn_id];
                self.call(Method::PUT, &path, &[], Some(&body)).await?
            }
            None => {
                let path = ["_synapse", "admin", "v1", "send_server_notice"];
                self.call(Method::POST, &path, &[], Some(&body)).await?
            }
        };
        Ok(())
    }

    /// Asks whether server notices are on, sending nothing: a notice for a user of another
    /// server is refused after the "enabled" check (400 "only ... local users"), before any
    /// lookup or send; with notices off the same request gets 400 "not enabled".
    pub async fn notices_enabled(&self) -> Result<Notices, HsError> {
        let body = json!({
            "user_id": "@synbatch-probe:notices-probe.invalid",
            "content": {"msgtype": "m.text", "body": "probe"},
        });
        let path = ["_synapse", "admin", "v1", "send_server_notice"];
        match self.call(Method::POST, &path, &[], Some(&body)).await {
            Err(HsError::Status {
                status: 400,
                message,
                ..
            }) if message.contains("not enabled") => Ok(Notices::Disabled(message)),
            Err(HsError::Status { status: 400, .. }) => Ok(Notices::Enabled),
            Err(e) => Err(e),
            Ok(_) => Ok(Notices::Enabled),
        }
    }

    /// `GET /_synapse/admin/v1/users/<user_id>/memberships`: room id -> membership.
    pub async fn memberships(&self, user_id: &str) -> Result<HashMap<String, String>, HsError> {
        #[derive(Deserialize)]
        struct Memberships {
            memberships: HashMap<String, String>,
        }
        let path = ["_synapse", "admin", "v1", "users", user_id, "memberships"];
        let found: Memberships = self.call_as(Method::GET, &path, None).await?;
        Ok(found.memberships)
    }

    /// `GET /_synapse/admin/v1/rooms/<room_id>`: who created a room and whether it federates.
    pub async fn room_summary(&self, room_id: &str) -> Result<RoomSummary, HsError> {
        let path = ["_synapse", "admin", "v1", "rooms", room_id];
        self.call_as(Method::GET, &path, None).await
    }

    /// One page of a room's `m.room.message` events from `sender`, newest first, from `from`
    /// (or the end).
    pub async fn messages_back(
        &self,
        room_id: &str,
        sender: &str,
        from: Option<&str>,
        limit: u32,
    ) -> Result<MessagePage, HsError> {
        let limit = limit.to_string();
        let filter = json!({ "types": ["m.room.message"], "senders": [sender] }).to_string();
        let mut query = vec![("dir", "b"), ("limit", limit.as_str()), ("filter", &filter)];
        if let Some(from) = from {
            query.push(("from", from));
        }
        let path = ["_synapse", "admin", "v1", "rooms", room_id, "messages"];
        let (status, value) = self.call(Method::GET, &path, &query, None).await?;
        super::decode(status, value)
    }
}
