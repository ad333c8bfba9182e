//! Local media: the admin API to look at one item, delete one item, or delete everything last
//! accessed before a date.

use reqwest::Method;
use serde::Deserialize;

use super::{Homeserver, HsError};

/// What Synapse says it deleted: `{"deleted_media": [ids], "total": N}`.
#[derive(Debug, Clone, Deserialize)]
pub struct DeletedMedia {
    #[serde(default)]
    pub deleted_media: Vec<String>,
    #[serde(default)]
    pub total: u64,
}

/// A media item as `GET /_synapse/admin/v1/media/<server_name>/<media_id>` shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct MediaInfo {
    #[serde(default)]
    pub media_length: Option<u64>,
    /// Who uploaded it.
    #[serde(default)]
    pub user_id: Option<String>,
}

/// Which local media `POST /_synapse/admin/v1/media/delete` removes.
#[derive(Debug, Clone)]
pub struct MediaPurge {
    /// Milliseconds since the epoch: media last accessed (or, never accessed, created) before.
    pub before_ts: i64,
    /// Only media larger than this many bytes.
    pub size_gt: Option<u64>,
    /// Keep media still used as a user or room avatar (Synapse's default).
    pub keep_profiles: bool,
}

impl Homeserver {
    /// `DELETE /_synapse/admin/v1/media/<server_name>/<media_id>`: 200 with the id, or 404
    /// "Unknown media" when there is no such item (already deleted, for a rerun).
    pub async fn delete_media(
        &self,
        server_name: &str,
        media_id: &str,
    ) -> Result<DeletedMedia, HsError> {
        let path = ["_synapse", "admin", "v1", "media", server_name, media_id];
        self.call_as(Method::DELETE, &path, None).await
    }

    /// `GET /_synapse/admin/v1/media/<server_name>/<media_id>`: what Synapse knows of an item.
    pub async fn media_info(
        &self,
        server_name: &str,
        media_id: &str,
    ) -> Result<MediaInfo, HsError> {
        #[derive(Deserialize)]
        struct Info {
            media_info: MediaInfo,
        }
        let path = ["_synapse", "admin", "v1", "media", server_name, media_id];
        let info: Info = self.call_as(Method::GET, &path, None).await?;
        Ok(info.media_info)
    }

    /// `POST /_synapse/admin/v1/media/delete?before_ts=&size_gt=&keep_profiles=`: deletes every
    /// matching local media item in one synchronous, unpaginated call. Quarantined and protected
    /// media are skipped by Synapse.
    pub async fn purge_media(&self, purge: &MediaPurge) -> Result<DeletedMedia, HsError> {
        let before = purge.before_ts.to_string();
        let size = purge.size_gt.map(|s| s.to_string());
        let mut query: Vec<(&str, &str)> = vec![("before_ts", &before)];
        if let Some(size) = &size {
            query.push(("size_gt", size));
        }
        query.push((
            "keep_profiles",
            if purge.keep_profiles { "true" } else { "false" },
        ));
        let path = ["_synapse", "admin", "v1", "media", "delete"];
        // Synapse answers only once everything is deleted: allow it an hour, not --timeout
        // (a timed-out purge would be sent again and its first deletions never recorded).
        let hour = std::time::Duration::from_secs(3600);
        let (status, value) = self
            .call_within(hour, Method::POST, &path, &query, None)
            .await?;
        super::decode(status, value)
    }
}
